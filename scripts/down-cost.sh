#!/usr/bin/env bash
# What a dead node costs the nodes that stay up, once it is down (issue 21; docs/benchmarks.md,
# "Hints share the data's fsync"):
#
#   scripts/down-cost.sh [--kvd PATH] [--runs N] [SECONDS]   (default: 2 runs of 8 s)
#
# Starts a fresh 4-node cluster (N=3, R=W=2, `sync`) with scripts/cluster.sh on 127.0.0.61-64, with
# the release build of this tree (or --kvd, e.g. a kvd built from an earlier commit in a worktree),
# writes 10,000 keys, and runs kvbench's 50/50 mixed load (50 in flight, 100-byte values, two event
# loops, strict quorum unless QUORUMKV_SLOPPY_QUORUM=1) once with every node up, then SIGKILLs n2
# and runs it N times more: three writes in four then leave a hint on a fallback. Each run prints
# kvbench's line with the nodes' CPU per operation (user+sys from /proc/PID/stat, summed) and
# kvbench's (from /usr/bin/time). The hint queues stay below their bound (100,000 a node) for a few
# runs; more runs measure refused hints and their repair marks instead. Everything it starts is
# stopped on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
kvd_bin=
runs=2
while [[ "${1:-}" == --* ]]; do
    case "$1" in
    --kvd) kvd_bin=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) sed -n '2,15p' "$0" >&2; exit 64 ;;
    esac
done
seconds=${1:-8}
[[ "$seconds" =~ ^[0-9]+$ && "$runs" =~ ^[0-9]+$ ]] && ((seconds > 0 && runs > 0 && runs <= 20)) ||
    { sed -n '2,15p' "$0" >&2; exit 64; }
scripts/setup.sh
[[ -x /usr/bin/time ]] || { echo "down-cost: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
for host in 127.0.0.61 127.0.0.62 127.0.0.63 127.0.0.64; do
    if ss -ltnH | awk '{print $4}' | grep -q "^$host:"; then
        echo "down-cost: something already listens on $host (a test cluster, or another run): stop it first" >&2
        exit 1
    fi
done
bin=$(scripts/release-build.sh)
work=$(mktemp -d /tmp/quorumkv-down-cost.XXXXXX)
# cluster.sh takes kvd and kvctl from one folder.
mkdir "$work/bin"
ln -s "${kvd_bin:-$bin/kvd}" "$work/bin/kvd"
ln -s "$bin/kvctl" "$work/bin/kvctl"
export QUORUMKV_CLUSTER_DIR=$work/cluster QUORUMKV_CLUSTER_FIRST_HOST=61 QUORUMKV_BIN=$work/bin
cleanup() {
    scripts/cluster.sh stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
scripts/cluster.sh start 4 >"$work/start.log" 2>&1 || { cat "$work/start.log" >&2; exit 1; }
export QUORUMKV_CA=$work/cluster/certs/ca.pem
export QUORUMKV_CERT=$work/cluster/certs/client.pem QUORUMKV_KEY=$work/cluster/certs/client-key.pem
bench=("$bin/kvbench" --cluster "$work/cluster/cluster.yaml" --concurrency 50 --value-bytes 100 --keys 10000
    --event-loops 2 --quiet)
"${bench[@]}" --workload put --duration 1 >/dev/null 2>&1

# The nodes' user+sys seconds, summed over those still running.
cpu() {
    for node in n1 n2 n3 n4; do
        local pid
        pid=$(cat "$work/cluster/$node/kvd.pid" 2>/dev/null) || continue
        [[ -r /proc/$pid/stat ]] && cat "/proc/$pid/stat"
    done | awk -v hz="$(getconf CLK_TCK)" '{total += $14 + $15} END {print total / hz}'
}

measure() {
    local before after
    before=$(cpu)
    /usr/bin/time -f "%U %S" -o "$work/kvbench.cpu" "${bench[@]}" --workload mixed --skip-load \
        --duration "$seconds" >"$work/kvbench.out" 2>&1
    after=$(cpu)
    python3 - "$1" "$(grep -E "ops/s" "$work/kvbench.out" | head -1)" "$before" "$after" \
        "$(cat "$work/kvbench.cpu")" "$(grep -oE "[0-9]+ errors" "$work/kvbench.out" | head -1)" <<'PY'
import re, sys
label, line, before, after, bench, errors = sys.argv[1:]
operations = int(re.match(r"^\w+: (\d+) ops", line).group(1))
user, system = map(float, bench.split())
print("%-18s %s" % (label, line))
print("%-18s nodes' CPU %.1f us/op, kvbench's %.1f us/op, %s" % (
    "", (float(after) - float(before)) * 1e6 / operations, (user + system) * 1e6 / operations, errors))
PY
}

echo "== down-cost: 4 nodes, mixed 50/50, 50 in flight, ${seconds}s a run, load average $(cut -d' ' -f1 /proc/loadavg)"
measure "all up"
scripts/cluster.sh kill n2 >/dev/null 2>&1
for run in $(seq 1 "$runs"); do measure "n2 down, run $run"; done
