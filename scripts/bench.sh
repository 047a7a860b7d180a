#!/usr/bin/env bash
# Single-node throughput and latency: kvbench against one kvd (release build), and, for comparison,
# redis-benchmark --tls against redis-server on the same machine with the same certificates,
# concurrency and value size. Prints the figures; docs/benchmarks.md records them.
#
#   scripts/bench.sh [SECONDS]      default 10 s per workload, 50 concurrent requests, 100-byte values
#
# Uses 127.0.0.21 (kvd) and 127.0.0.22 (redis); everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
scripts/setup.sh

swift build -c release --scratch-path .build-release --product kvd >&2
swift build -c release --scratch-path .build-release --product kvctl >&2
swift build -c release --scratch-path .build-release --product kvbench >&2
bin=$(swift build -c release --scratch-path .build-release --show-bin-path)

work=$(mktemp -d /tmp/quorumkv-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/kvctl" certs init --dir "$work/certs" 2>/dev/null
"$bin/kvctl" certs issue --dir "$work/certs" --role node --name n1 --ip 127.0.0.21 --ip 127.0.0.22 2>/dev/null
"$bin/kvctl" certs issue --dir "$work/certs" --role client --name bench 2>/dev/null

"$bin/kvd" --id n1 --listen 127.0.0.21:7411 --data "$work/data" --ca "$work/certs/ca.pem" \
    --cert "$work/certs/n1.pem" --key "$work/certs/n1-key.pem" --log-level warning &
pids+=($!)
export QUORUMKV_ENDPOINTS=127.0.0.21:7411 QUORUMKV_CA="$work/certs/ca.pem"
export QUORUMKV_CERT="$work/certs/bench.pem" QUORUMKV_KEY="$work/certs/bench-key.pem"
for _ in $(seq 1 100); do "$bin/kvctl" status >/dev/null 2>&1 && break; sleep 0.1; done

echo "== kvbench: 1 node, durability sync, 50 concurrent, 100-byte values, ${seconds}s"
"$bin/kvbench" --workload put --concurrency 50 --value-bytes 100 --duration "$seconds"
"$bin/kvbench" --workload get --concurrency 50 --value-bytes 100 --duration "$seconds"

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis-server --port 0 --tls-port 6390 --bind 127.0.0.22 --save "" --appendonly no \
        --tls-cert-file "$work/certs/n1.pem" --tls-key-file "$work/certs/n1-key.pem" \
        --tls-ca-cert-file "$work/certs/ca.pem" --tls-auth-clients yes --tls-protocols TLSv1.3 \
        --dir "$work" --daemonize no >/dev/null 2>&1 &
    pids+=($!)
    sleep 1
    requests=$((seconds * 30000))
    echo "== redis-benchmark --tls: 50 clients, 100-byte values, $requests requests (no persistence)"
    redis-benchmark --tls --cacert "$work/certs/ca.pem" --cert "$work/certs/bench.pem" \
        --key "$work/certs/bench-key.pem" -h 127.0.0.22 -p 6390 -c 50 -d 100 -n "$requests" \
        -r 10000 -t set,get -q 2>/dev/null | tr '\r' '\n' | grep "requests per second"
else
    echo "== redis-benchmark: not installed (apt-get install redis-server redis-tools) - skipped"
fi
