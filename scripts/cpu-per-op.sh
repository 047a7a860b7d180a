#!/usr/bin/env bash
# CPU per operation of one node and of the load generator, for before/after measurements of the hot
# path (issue 21; docs/benchmarks.md, "The hot path, step by step"):
#
#   scripts/cpu-per-op.sh [--kvd PATH] [--kvbench PATH] [--keys N] [--value-bytes N] [--event-loops N]
#                         [--concurrency N] [--batch N] [--nodes N] [--kvd-event-loops N]
#                         [--kvd-wal-sync thread|event-loop] [--mallocs] put|get [SECONDS]   (default 6 s)
#
# Starts one kvd (release build of this tree unless --kvd names another binary, e.g. one built from
# an earlier commit in a worktree) on 127.0.0.40, durability QUORUMKV_DURABILITY (default none),
# or with --nodes N that many on 127.0.0.40, .41, ... with N replicas of each key (at most 3; the
# node CPU is then the sum over the nodes, which shows what the SDK's coordinating costs),
# and runs kvbench (this tree's unless --kvbench) with 50 requests in flight (--concurrency; with
# --batch N, that many batches of N keys each, and the figures count keys), kvd's event loops at its
# default (one a CPU) or at --kvd-event-loops N (kvd's --event-loops; --kvd-wal-sync passes kvd's
# --wal-sync), 100-byte values (or --value-bytes: larger values show what copying them costs), its
# workers on Swift's global executor (--event-loops N: kvbench's option, N clients each with its
# workers on its event loop), 100,000 keys (--keys: more than fit in the memtables, to measure reads
# from table files); gets run after every key was written. Prints kvbench's line, the node's CPU
# (user+sys from /proc/PID/stat over the run) per operation, and kvbench's CPU per operation (from
# /usr/bin/time). CPU per operation moves much less with the machine's load than ops/s does, which
# is why the steps are compared on it. With --mallocs (root; installs linux-perf when missing), it
# also counts the calls to libc's malloc (Swift's objects and arrays, NIO's buffers, RocksDB and
# OpenSSL all allocate through it) in the nodes and in kvbench, per operation: a count that does not
# move with the machine's load at all, for steps too small for the CPU figures' noise. The counting
# (a uprobe on every malloc) slows both sides, so the ops/s and CPU of such a run are not comparable
# with a run without it. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
kvd_bin=
kvbench_bin=
keys=100000
value_bytes=100
event_loops=0
concurrency=50
batch=1
nodes=1
kvd_event_loops=0
kvd_wal_sync=
mallocs=false
while [[ "${1:-}" == --* ]]; do
    case "$1" in
    --kvd) kvd_bin=$2; shift 2 ;;
    --kvbench) kvbench_bin=$2; shift 2 ;;
    --keys) keys=$2; shift 2 ;;
    --value-bytes) value_bytes=$2; shift 2 ;;
    --event-loops) event_loops=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --kvd-event-loops) kvd_event_loops=$2; shift 2 ;;
    --kvd-wal-sync) kvd_wal_sync=$2; shift 2 ;;
    --mallocs) mallocs=true; shift ;;
    *) sed -n '2,26p' "$0" >&2; exit 64 ;;
    esac
done
workload=${1:-}
seconds=${2:-6}
[[ "$workload" =~ ^(put|get)$ && "$seconds" =~ ^[0-9]+$ && "$keys" =~ ^[0-9]+$ && "$value_bytes" =~ ^[0-9]+$ &&
    "$event_loops" =~ ^[0-9]+$ && "$concurrency" =~ ^[0-9]+$ && "$batch" =~ ^[0-9]+$ && "$nodes" =~ ^[0-9]+$ &&
    "$kvd_event_loops" =~ ^[0-9]+$ ]] &&
    ((seconds > 0 && keys > 0 && concurrency > 0 && batch > 0 && nodes > 0 && nodes <= 8)) ||
    { sed -n '2,26p' "$0" >&2; exit 64; }
scripts/setup.sh
[[ -x /usr/bin/time ]] || { echo "cpu-per-op: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
libc=
if $mallocs; then
    command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf >/dev/null; }
    libc=$(ldconfig -p | awk '$1 == "libc.so.6" && /x86-64|x86_64|64bit/ {print $NF; exit}')
    [[ -n "$libc" ]] || { echo "cpu-per-op: --mallocs cannot find libc.so.6" >&2; exit 1; }
    perf probe -l 2>/dev/null | grep -q "probe_libc:malloc " || perf probe -q -x "$libc" malloc ||
        { echo "cpu-per-op: --mallocs needs a uprobe on malloc (root, perf)" >&2; exit 1; }
fi
bin=$(scripts/release-build.sh)
kvd_bin=${kvd_bin:-$bin/kvd}
kvbench_bin=${kvbench_bin:-$bin/kvbench}
hosts=()
for i in $(seq 1 "$nodes"); do hosts+=("127.0.0.$((39 + i))"); done
for host in "${hosts[@]}"; do
    if ss -ltnH | awk '{print $4}' | grep -q "^$host:7411$"; then
        echo "cpu-per-op: something already listens on $host:7411: stop it first" >&2
        exit 1
    fi
done

work=$(mktemp -d /tmp/quorumkv-cpu-per-op.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"$bin/kvctl" certs init --dir "$work/certs" >/dev/null 2>&1
"$bin/kvctl" certs issue --dir "$work/certs" --role client --name bench >/dev/null 2>&1
printf 'cluster-id: cpu-per-op\nreplication-factor: %d\nnodes:\n' $((nodes < 3 ? nodes : 3)) >"$work/cluster.yaml"
for i in $(seq 1 "$nodes"); do
    printf '  - id: n%d\n    address: %s:7411\n' "$i" "${hosts[i - 1]}" >>"$work/cluster.yaml"
done
kvd_options=()
# Only when asked: a kvd built before --event-loops (--kvd) runs without it.
((kvd_event_loops > 0)) && kvd_options+=(--event-loops "$kvd_event_loops")
[[ -n "$kvd_wal_sync" ]] && kvd_options+=(--wal-sync "$kvd_wal_sync")
for i in $(seq 1 "$nodes"); do
    host=${hosts[i - 1]}
    "$bin/kvctl" certs issue --dir "$work/certs" --role node --name "n$i" --ip "$host" >/dev/null 2>&1
    "$kvd_bin" --id "n$i" --listen "$host:7411" --data "$work/n$i" --cluster "$work/cluster.yaml" \
        --ca "$work/certs/ca.pem" --cert "$work/certs/n$i.pem" --key "$work/certs/n$i-key.pem" \
        --durability "${QUORUMKV_DURABILITY:-none}" --log-level warning "${kvd_options[@]}" &
    pids+=($!)
done
export QUORUMKV_CLUSTER=$work/cluster.yaml QUORUMKV_CA=$work/certs/ca.pem
export QUORUMKV_CERT=$work/certs/bench.pem QUORUMKV_KEY=$work/certs/bench-key.pem
for host in "${hosts[@]}"; do
    for _ in $(seq 1 300); do
        "$bin/kvctl" ring --endpoints "$host:7411" --cluster-id cpu-per-op >/dev/null 2>&1 && break
        sleep 0.1
    done
done
common=(--concurrency "$concurrency" --value-bytes "$value_bytes" --keys "$keys" --quiet)
# Only when asked, as --event-loops.
((batch > 1)) && common+=(--batch "$batch")
# Only when asked: a kvbench built before --event-loops (--kvbench) runs without it.
((event_loops > 0)) && common+=(--event-loops "$event_loops")
extra=()
if [[ "$workload" == get ]]; then
    "$kvbench_bin" --workload get --duration 1 "${common[@]}" >/dev/null # writes every key first
    extra=(--skip-load)
fi
# Fields 14 and 15 of /proc/PID/stat: user and system clock ticks, summed over the nodes.
ticks() { for pid in "${pids[@]}"; do cat "/proc/$pid/stat"; done | awk '{total += $14 + $15} END {print total}'; }
counter=()
if $mallocs; then
    node_list=$(IFS=,; echo "${pids[*]}")
    perf stat -x, -e probe_libc:malloc -p "$node_list" -o "$work/node.mallocs" &
    pids+=($!)
    counter=(perf stat -x, -e probe_libc:malloc -o "$work/kvbench.mallocs")
    sleep 0.5 # perf attaches to the nodes
fi
before=$(ticks)
/usr/bin/time -f "%U %S" -o "$work/kvbench.cpu" "${counter[@]}" "$kvbench_bin" --workload "$workload" \
    --duration "$seconds" "${common[@]}" "${extra[@]}" >"$work/kvbench.out" 2>&1
after=$(ticks)
if $mallocs; then
    kill -INT "${pids[-1]}" && wait "${pids[-1]}" || true
    unset 'pids[-1]'
fi
count() { [[ -f "$1" ]] && awk -F, '/probe_libc:malloc/ {print $1}' "$1" || echo 0; }
line=$(grep -E "ops/s" "$work/kvbench.out" | head -1)
grep -iE "error" "$work/kvbench.out" | head -2 >&2 || true
python3 - "$line" "$before" "$after" "$(getconf CLK_TCK)" "$(cat "$work/kvbench.cpu")" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$($mallocs && count "$work/node.mallocs")" "$($mallocs && count "$work/kvbench.mallocs")" <<'PY'
import re, sys
line, before, after, hz, bench, load, node_mallocs, bench_mallocs = sys.argv[1:]
operations = int(re.match(r"^\w+: (\d+) ops", line).group(1))
node = (float(after) - float(before)) / float(hz)
user, system = map(float, bench.split())
print(line)
print("  node CPU %.2f s = %.1f us/op; kvbench CPU %.2f s = %.1f us/op; load average %s" % (
    node, node * 1e6 / operations, user + system, (user + system) * 1e6 / operations, load))
if node_mallocs:
    print("  mallocs: nodes %.1f/op, kvbench %.1f/op (kvbench's start and load included)" % (
        int(node_mallocs) / operations, int(bench_mallocs) / operations))
PY
