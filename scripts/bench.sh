#!/usr/bin/env bash
# Throughput and latency, measured with release builds; docs/benchmarks.md records the figures.
#
#   scripts/bench.sh single [SECONDS]   one kvd; kvbench put and get, then redis-benchmark --tls on
#                                       the same machine with the same certificates for comparison
#   scripts/bench.sh cluster [SECONDS]  4 kvd, N=3, R=W=2: kvbench put and get, then a mixed run in
#                                       which node n2 is SIGKILLed halfway (p99 before and after,
#                                       after a 2 s warm-up);
#                                       closed loop (as fast as it goes), or with QUORUMKV_KILL_RATE
#                                       set, open loop at that many ops/s (latency from the intended
#                                       start: what a client at a steady load sees); before it, puts
#                                       and gets in batches of 100 keys, 10 in flight (kvbench --batch 100)
#   scripts/bench.sh hints [SECONDS]    4 kvd: puts with all nodes up (baseline); n2 SIGKILLed and
#                                       puts until HINTS (default 100000) hints wait for it (keys
#                                       drawn HINTS_DISTRIBUTION, default uniform; zipfian writes
#                                       a few keys many times); n2 restarted: time until every
#                                       queue is empty, and puts while the replay runs
#   scripts/bench.sh repair [SECONDS]   4 kvd, KEYS (default 1000000) keys: n2 misses 1 % of them
#                                       (rewritten while it is down, no hints); `kvctl repair --node
#                                       n2` time and bytes; a pass over identical replicas; puts with
#                                       back-to-back repair passes running vs none
#   scripts/bench.sh antientropy [SECONDS]
#                                       4 kvd, KEYS (default 1333334, about 1,000,000 per node) keys:
#                                       puts with periodic anti-entropy off, then with every node
#                                       restarted with --anti-entropy-interval AE_INTERVAL (default
#                                       10 s), ROUNDS (default 2) times each, alternating
#   scripts/bench.sh grow [SECONDS]     4 kvd holding KEYS (default 1000000) keys of VALUE_BYTES (default
#                                       1000: about 1 GB of values), SETTLE_SECONDS (default 60) idle,
#                                       puts for SECONDS (baseline), then
#                                       n5..n8 join one by one (kvctl join): before each join, puts for
#                                       SECONDS with the new node up but not joined; during it and until
#                                       the old owners dropped what moved, puts in DURING_SECONDS
#                                       (default 10) slices; then puts for SECONDS on 8
#                                       nodes. Time of each join, throughput during the move against the
#                                       baseline and against the slice before each join, records copied
#                                       vs the minimum (each joiner's replica share × KEYS)
#   scripts/bench.sh backup [SECONDS]   4 kvd holding KEYS (default 100000) keys of VALUE_BYTES (default
#                                       10000: about 1 GB of values): puts for SECONDS (baseline), then
#                                       `kvctl backup` while puts run in 5 s slices (backup MB/s, puts
#                                       during it against the baseline); 1 % of the keys rewritten and
#                                       a second backup (bytes copied against the first); then the
#                                       first backup restored into 4 fresh nodes (restore MB/s);
#                                       QUORUMKV_BACKUP_RATE=B: `kvctl backup --rate B` (bytes/s per node);
#                                       QUORUMKV_BACKUP_OVERLAP=S: `--overlap S` (default 1)
#   scripts/bench.sh stale [SECONDS]    4 kvd, 100,000 keys: read p99 on a clean cluster, then with
#                                       1 % of the keys rewritten while n2 was down and no hints
#                                       (n2 stale on them; reads repair in the background)
#   scripts/bench.sh ycsb [SECONDS]     one kvd: YCSB workloads A and B with zipfian and uniform keys,
#                                       C, D and F, then A at --target-rate RATE (default 5000 ops/s,
#                                       open loop, 2 s warm-up within SECONDS); 10,000 keys; SEED
#                                       (default 1) for every run
#   scripts/bench.sh ycsbcluster [SECONDS]
#                                       the same against 4 kvd, N=3, R=W=2 (RATE default 2000)
#   scripts/bench.sh arithmetic [SECONDS]
#                                       the seed's capacity arithmetic, each kvd capped at
#                                       QUORUMKV_NODE_CPU (default 0.1) of a core (needs root): puts/s
#                                       and gets/s of 1 node (n5, a cluster of its own: N=1, R=W=1) and
#                                       of 4 nodes N=3 (n1-n4) at W=2 / R=2 and at W=1 / R=1, the runs
#                                       alternating over ROUNDS (default 2) rounds so that the machine's
#                                       drift falls on all alike; each against one node and the seed's
#                                       ratio (puts 4/3 at any W: every put goes to all 3 replicas, W is
#                                       only how many are awaited; gets 4/R), with the replica requests
#                                       per operation (each node's /metrics), kvbench's own CPU and the
#                                       nodes' CPU against their cap beside each figure. Requests in
#                                       flight: DEPTH (default 64) per node, so DEPTH × the seed's ratio
#                                       in each run (64, 85, 85 for puts; 64, 128, 256 for gets): every
#                                       node sees the same queue on average, as a node's CPU per request
#                                       depends on it (group commit, requests per wakeup)
#   scripts/bench.sh delays [SECONDS]   3 kvd, N=3, whose writes (replies to kvbench included) are held
#                                       5, 10 and 20 ms (n1, n2, n3; QUORUMKV_LINK_FAULTS): put and get
#                                       p50/p99 at 4 in flight with no delay, then at W/R = 2, 1 and all
#                                       (gets also with --read-from-all), then n1 (the fastest)
#                                       SIGKILLed and W/R = 2 again; measured against the delay of the
#                                       replica that completes the quorum, and the failed requests
#
# 50 requests in flight (arithmetic and delays: as said above) and 100-byte values; default 10 s per
# run. QUORUMKV_DURABILITY=none (or interval:<N>ms) runs the nodes without an fsync per write, to see
# what the fsyncs cost; QUORUMKV_HINT_REPLAY_RATE=N sets each node's --hint-replay-rate,
# QUORUMKV_STREAM_RATE=N its --stream-rate (bytes/s). QUORUMKV_NODE_CPU=F (say 0.15) caps each kvd at
# F of a core in a cgroup of
# its own, as if every node had a small host to itself (needs root): on one box all nodes otherwise
# share the same cores, so a node added brings no capacity and "more nodes" reads as "slower". Uses 127.0.0.21-28 (kvd) and 127.0.0.29 (redis); everything it starts is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-single}
seconds=${2:-10}
[[ "$mode" =~ ^(single|cluster|hints|stale|repair|antientropy|grow|backup|ycsb|ycsbcluster|arithmetic|delays)$ ]] ||
    { sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2; exit 64; }
if [[ "$mode" == arithmetic ]]; then
    export QUORUMKV_NODE_CPU=${QUORUMKV_NODE_CPU:-0.1}
    [[ $(id -u) -eq 0 ]] || { echo "bench.sh arithmetic caps each kvd in a cgroup of its own: run it as root" >&2; exit 1; }
    command -v curl >/dev/null || { echo "bench.sh arithmetic reads each node's /metrics with curl" >&2; exit 1; }
fi
if [[ "$mode" == arithmetic || "$mode" == delays ]]; then
    [[ -x /usr/bin/time ]] || { echo "bench.sh $mode measures kvbench's CPU with /usr/bin/time (apt-get install time)" >&2; exit 1; }
fi
scripts/setup.sh

bin=$(scripts/release-build.sh)

work=$(mktemp -d /tmp/quorumkv-bench.XXXXXX)
declare -A pids=()
cgroups=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for group in "${cgroups[@]}"; do rmdir "$group" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

count=1
[[ "$mode" != single && "$mode" != ycsb ]] && count=4
[[ "$mode" == delays ]] && count=3
"$bin/kvctl" certs init --dir "$work/certs" 2>/dev/null
"$bin/kvctl" certs issue --dir "$work/certs" --role client --name bench 2>/dev/null
{
    echo "cluster-id: bench"
    echo "replication-factor: $((count < 3 ? count : 3))"
    echo "nodes:"
} >"$work/cluster.yaml"
joiners=0
[[ "$mode" == grow ]] && joiners=4
# arithmetic: n5 is a cluster of one node of its own, started beside n1-n4.
[[ "$mode" == arithmetic ]] && joiners=1
for ((i = 1; i <= count + joiners; i++)); do
    host=127.0.0.$((20 + i))
    "$bin/kvctl" certs issue --dir "$work/certs" --role node --name "n$i" --ip "$host" --ip 127.0.0.29 2>/dev/null
    ((i <= count)) && printf '  - id: n%d\n    address: %s:7411\n' "$i" "$host" >>"$work/cluster.yaml"
done
# Makes the cgroup `group` capping a process at QUORUMKV_NODE_CPU of a core (cgroup v2, or v1's cpu
# controller).
cpu_cap() {
    local quota
    quota=$(python3 -c "print(max(1000, int(float('$QUORUMKV_NODE_CPU') * 100000)))")
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        group=/sys/fs/cgroup/quorumkv-bench-$$-$1
        echo +cpu >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
        mkdir -p "$group"
        echo "$quota 100000" >"$group/cpu.max"
    else
        group=/sys/fs/cgroup/cpu/quorumkv-bench-$$-$1
        mkdir -p "$group"
        echo 100000 >"$group/cpu.cfs_period_us"
        echo "$quota" >"$group/cpu.cfs_quota_us"
    fi
    cgroups+=("$group")
}
start_node() {
    local i=$1
    local capped=()
    if [[ -n "${QUORUMKV_NODE_CPU:-}" ]]; then
        # The shell moves itself into the group, then becomes kvd: every thread of kvd is in it.
        cpu_cap "n$i"
        capped=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$group")
    fi
    # delays: node i holds its writes as the rules file $work/n$i.link-faults says (none while it is
    # missing). arithmetic: its request counters on plain HTTP, port 9411 of its own address.
    local faults=() metrics=()
    [[ "$mode" == delays ]] && faults=(env "QUORUMKV_LINK_FAULTS=$work/n$i.link-faults")
    [[ "$mode" == arithmetic ]] && metrics=(--metrics-local "127.0.0.$((20 + i)):9411")
    "${capped[@]}" "${faults[@]}" "$bin/kvd" --id "n$i" --listen "127.0.0.$((20 + i)):7411" --data "$work/n$i" \
        --cluster "${cluster_file:-$work/cluster.yaml}" "${metrics[@]}" \
        --ca "$work/certs/ca.pem" --cert "$work/certs/n$i.pem" --key "$work/certs/n$i-key.pem" \
        --durability "${QUORUMKV_DURABILITY:-sync}" --log-level warning \
        ${QUORUMKV_HINT_REPLAY_RATE:+--hint-replay-rate "$QUORUMKV_HINT_REPLAY_RATE"} \
        ${QUORUMKV_ANTI_ENTROPY_INTERVAL:+--anti-entropy-interval "$QUORUMKV_ANTI_ENTROPY_INTERVAL"} \
        ${QUORUMKV_STREAM_RATE:+--stream-rate "$QUORUMKV_STREAM_RATE"} &
    pids[n$i]=$!
}
for ((i = 1; i <= count; i++)); do
    start_node "$i"
done
export QUORUMKV_CLUSTER="$work/cluster.yaml" QUORUMKV_CA="$work/certs/ca.pem"
export QUORUMKV_CERT="$work/certs/bench.pem" QUORUMKV_KEY="$work/certs/bench-key.pem"
# Waits until node i answers (a node recovering a large log takes a while).
wait_up() {
    for _ in $(seq 1 600); do
        "$bin/kvctl" ring --endpoints "127.0.0.$((20 + $1)):7411" --cluster-id bench >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "n$1 did not answer within 60 s" >&2
    return 1
}
for ((i = 1; i <= count; i++)); do
    wait_up "$i"
done

bench=("$bin/kvbench" --concurrency 50 --value-bytes 100 --duration "$seconds")
# QUORUMKV_BENCH_EVENT_LOOPS=N: these runs use kvbench --event-loops N (docs/sdk.md, "Event loops").
if [[ -n "${QUORUMKV_BENCH_EVENT_LOOPS:-}" ]]; then bench+=(--event-loops "$QUORUMKV_BENCH_EVENT_LOOPS"); fi
# Hints queued on all nodes, from `kvctl status --json` (-1 when it cannot tell).
queued() {
    "$bin/kvctl" status --json --timeout 5 2>/dev/null |
        python3 -c 'import json,sys
try: print(sum(n.get("hintsQueued") or 0 for n in json.load(sys.stdin)["nodes"]))
except Exception: print(-1)'
}

if [[ "$mode" == hints ]]; then
    hints=${HINTS:-100000}
    echo "== baseline: kvbench put, 4 nodes up, 50 concurrent, 100-byte values, ${seconds}s"
    "${bench[@]}" --workload put
    kill -KILL "${pids[n2]}"
    wait "${pids[n2]}" 2>/dev/null || true
    # n2 replicates about 3/4 of the keys: every put of those leaves a hint for it.
    echo "== n2 SIGKILLed; puts until $hints hints are queued for it"
    while (($(queued) < hints)); do # -1 (status failed) also goes on
        "$bin/kvbench" --concurrency 50 --value-bytes 100 --duration 600 --workload put \
            --distribution "${HINTS_DISTRIBUTION:-uniform}" --requests-max $(((hints - $(queued)) * 4 / 3 + 500)) >/dev/null
    done
    echo "queued: $(queued) hints"
    start_node 2
    started=$(date +%s.%N)
    (
        for _ in $(seq 1 1200); do (($(queued) != 0)) || break; sleep 0.5; done
        (($(queued) == 0)) || { echo "== hints still queued after 600 s: $(queued)"; exit 1; }
        echo "== every hint queue empty $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s after n2 restarted"
    ) &
    poller=$!
    echo "== kvbench put while the hints are replayed, ${seconds}s"
    "${bench[@]}" --workload put
    wait "$poller"
    exit 0
fi

if [[ "$mode" == repair ]]; then
    keys=${KEYS:-1000000}
    stale=$((keys / 100))
    "$bin/kvctl" certs issue --dir "$work/certs" --role admin --name admin 2>/dev/null
    admin=(env QUORUMKV_CERT="$work/certs/admin.pem" QUORUMKV_KEY="$work/certs/admin-key.pem" "$bin/kvctl")
    echo "== loading $keys keys (QUORUM, 100-byte values)"
    time "$bin/kvbench" --concurrency 50 --value-bytes 100 --workload get --keys "$keys" --requests-max 1 >/dev/null
    kill -KILL "${pids[n2]}"
    wait "${pids[n2]}" 2>/dev/null || true
    # The first 1 % of the keys get a new version while n2 is down, with no hints: n2 stays stale on
    # the ones it replicates (about 3/4 of them).
    QUORUMKV_HINTED_HANDOFF=0 "$bin/kvbench" --concurrency 50 --value-bytes 100 --workload get --keys "$stale" \
        --requests-max 1 >/dev/null 2>&1
    start_node 2
    wait_up 2
    echo "== kvctl repair --node n2: $stale keys rewritten while n2 was down"
    time "${admin[@]}" repair --node n2 --json || true
    echo "== kvctl repair --node n2 again: identical replicas"
    time "${admin[@]}" repair --node n2 --json || true
    echo "== kvbench put, ${seconds}s, no anti-entropy"
    "${bench[@]}" --workload put --keys "$keys"
    echo "== kvbench put, ${seconds}s, repair passes on every node back to back"
    (
        end=$((SECONDS + seconds))
        while ((SECONDS < end)); do "${admin[@]}" repair >/dev/null 2>&1 || true; done
    ) &
    passes=$!
    "${bench[@]}" --workload put --keys "$keys"
    wait "$passes"
    exit 0
fi

if [[ "$mode" == antientropy ]]; then
    keys=${KEYS:-1333334}
    interval=${AE_INTERVAL:-10}
    "$bin/kvctl" certs issue --dir "$work/certs" --role admin --name admin 2>/dev/null
    echo "== loading $keys keys (QUORUM, 100-byte values)"
    time "$bin/kvbench" --concurrency 50 --value-bytes 100 --workload get --keys "$keys" --requests-max 1 >/dev/null
    # Stops every node and starts it again with --anti-entropy-interval $1 (0 = off).
    restart_all() {
        for ((i = 1; i <= count; i++)); do kill -TERM "${pids[n$i]}"; done
        for ((i = 1; i <= count; i++)); do wait "${pids[n$i]}" 2>/dev/null || true; done
        for ((i = 1; i <= count; i++)); do QUORUMKV_ANTI_ENTROPY_INTERVAL=$1 start_node "$i"; done
        for ((i = 1; i <= count; i++)); do wait_up "$i"; done
    }
    for round in $(seq 1 "${ROUNDS:-2}"); do
        restart_all 0
        echo "== round $round: kvbench put, ${seconds}s, periodic anti-entropy off"
        "${bench[@]}" --workload put --keys "$keys" --skip-load
        restart_all "$interval"
        echo "== round $round: kvbench put, ${seconds}s, every node runs a pass every ${interval}s (±20 %)"
        "${bench[@]}" --workload put --keys "$keys" --skip-load
        QUORUMKV_CERT="$work/certs/admin.pem" QUORUMKV_KEY="$work/certs/admin-key.pem" \
            "$bin/kvctl" status --json 2>/dev/null | python3 -c 'import json,sys
for n in json.load(sys.stdin)["nodes"]:
    print(n["node"], {k: v for k, v in n.items() if k.startswith("antiEntropy") and not isinstance(v, (list, dict))})'
    done
    exit 0
fi

if [[ "$mode" == grow ]]; then
    keys=${KEYS:-1000000}
    value=${VALUE_BYTES:-1000}
    slice=${DURING_SECONDS:-10}
    "$bin/kvctl" certs issue --dir "$work/certs" --role admin --name admin 2>/dev/null
    admin=(env QUORUMKV_CERT="$work/certs/admin.pem" QUORUMKV_KEY="$work/certs/admin-key.pem" "$bin/kvctl")
    echo "== loading $keys keys of $value bytes (QUORUM)"
    time "$bin/kvbench" --concurrency 50 --value-bytes "$value" --workload get --keys "$keys" --requests-max 1 >/dev/null
    # The load leaves RocksDB compacting for a while: the baseline is taken once that has settled.
    sleep "${SETTLE_SECONDS:-60}"
    echo "== baseline: kvbench put, 4 nodes, ${seconds}s"
    "${bench[@]}" --workload put --keys "$keys" | tee "$work/baseline"
    copied_minimum=0
    moving=0
    # Whether the old owners dropped at least as many records as the joiners received (each received
    # record is dropped by the old owner it replaces once that one compared it with the new owners).
    dropped() {
        "${admin[@]}" status --json --timeout 5 2>/dev/null | python3 -c "import json,sys
nodes = json.load(sys.stdin)['nodes']
received = sum(n.get('streamKeysReceived') or 0 for n in nodes)
deleted = sum(n.get('handoffKeysDeleted') or 0 for n in nodes)
sys.exit(0 if received > 0 and deleted >= received else 1)"
    }
    started=$(date +%s.%N)
    for i in 5 6 7 8; do
        start_node "$i"
        wait_up "$i"
        # The same processes as during the join, nothing moving: this join's own "before".
        "${bench[@]}" --workload put --keys "$keys" | tee "$work/before-n$i" | sed "s/^/before n$i joins: /"
        joined=$(date +%s.%N)
        "${admin[@]}" join --node "n$i" --address "127.0.0.$((20 + i)):7411" --wait-timeout 7200 >"$work/join-n$i" 2>&1 &
        join=$!
        # The move lasts until the join is done and the old owners dropped what n$i took over.
        give_up=$(($(date +%s) + 7200))
        while kill -0 "$join" 2>/dev/null || { ! dropped && (($(date +%s) < give_up)); }; do
            "$bin/kvbench" --concurrency 50 --value-bytes 100 --duration "$slice" --workload put --keys "$keys" |
                tee -a "$work/during-n$i" | sed "s/^/while n$i joins: /"
            if ! kill -0 "$join" 2>/dev/null && [[ -z "${switched:-}" ]]; then
                switched=$(python3 -c "print(round($(date +%s.%N) - $joined, 1))")
                give_up=$(($(date +%s) + 600))
            fi
        done
        wait "$join" || { echo "kvctl join n$i failed:" >&2; cat "$work/join-n$i" >&2; exit 1; }
        took=$(python3 -c "print(round($(date +%s.%N) - $joined, 1))")
        moving=$(python3 -c "print($moving + $took)")
        echo "== n$i joined (ownership switched) within $switched s; old copies dropped within $took s"
        unset switched
        share=$("${admin[@]}" ring --json 2>/dev/null | python3 -c "import json,sys
print(next(n['replicaShare'] for n in json.load(sys.stdin)['nodes'] if n['node'] == 'n$i'))")
        copied_minimum=$(python3 -c "print(int($copied_minimum + $share * $keys))")
    done
    echo "== 4 → 8 nodes: $moving s of moves ($(python3 -c "print(round($(date +%s.%N) - $started, 1))") s with the slices before each join)"
    echo "== after: kvbench put, 8 nodes, ${seconds}s"
    "${bench[@]}" --workload put --keys "$keys" | tee "$work/after"
    "${admin[@]}" status --json 2>/dev/null | python3 -c "import json,sys
nodes = json.load(sys.stdin)['nodes']
copied = sum(n.get('streamKeysReceived') or 0 for n in nodes)
print('records copied:', copied, 'minimum:', $copied_minimum, 'ratio: %.3f' % (copied / max(1, $copied_minimum)))
print('dropped by old owners:', sum(n.get('handoffKeysDeleted') or 0 for n in nodes))"
    # Puts per second of a file of kvbench lines ('put: N ops in S s = ...'), over all its runs.
    python3 - "$work" "$PWD/scripts" <<'PY'
import sys
work = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import kvbench_rates
def rate(name):
    return kvbench_rates.rate(work, name)
base = rate("baseline")
during = [rate(f"during-n{i}") for i in range(5, 9)]
print("puts/s before (4 nodes): %.0f" % (base[0] / base[1]))
for i, (ops, secs) in zip(range(5, 9), during):
    before = rate(f"before-n{i}")
    print("n%d: before %.0f/s, while it joins %.0f/s (%.0f s): %.1f %%" % (
        i, before[0] / before[1], ops / secs, secs, 100 * (ops / secs) / (before[0] / before[1])))
ops = sum(d[0] for d in during); secs = sum(d[1] for d in during)
befores = [rate(f"before-n{i}") for i in range(5, 9)]
steady = sum(b[0] for b in befores) / sum(b[1] for b in befores)
print("during the move: %.0f/s = %.1f %% of the 4-node baseline, %.1f %% of the same nodes before each join" % (
    ops / secs, 100 * (ops / secs) / (base[0] / base[1]), 100 * (ops / secs) / steady))
after = rate("after")
print("after (8 nodes, nothing moving): %.0f/s = %.1f %% of the 4-node baseline" % (
    after[0] / after[1], 100 * (after[0] / after[1]) / (base[0] / base[1])))
PY
    exit 0
fi

if [[ "$mode" == backup ]]; then
    keys=${KEYS:-100000}
    value_bytes=${VALUE_BYTES:-10000}
    "$bin/kvctl" certs issue --dir "$work/certs" --role admin --name admin >/dev/null 2>&1
    admin=(env QUORUMKV_CERT="$work/certs/admin.pem" QUORUMKV_KEY="$work/certs/admin-key.pem" "$bin/kvctl")
    echo "== loading $keys keys of $value_bytes bytes ($(python3 -c "print(round($keys * $value_bytes / 1e9, 2))") GB of values, 3 copies)"
    started=$(date +%s.%N)
    "$bin/kvbench" --concurrency 50 --value-bytes "$value_bytes" --workload get --keys "$keys" --requests-max 1 >/dev/null
    echo "loaded in $(python3 -c "print(round($(date +%s.%N) - $started, 1))") s; data folders: $(du -sb "$work"/n[1-4] | awk '{s += $1} END {print s}') bytes"
    # The puts beside the backups go to 10,000 keys of their own (about 1 MB), so that the data the
    # backups measure stays the loaded keys and the 1 % rewritten.
    beside=("${bench[@]}" --workload put --keys 10000 --key-prefix beside-)
    echo "== baseline: kvbench put, 100-byte values, ${seconds}s"
    "${beside[@]}" | tee "$work/baseline"
    # Seconds since the epoch with a fraction.
    now() { date +%s.%N; }
    backup_with_load() {
        local name=$1 started
        started=$(now)
        # --overlap: how far before the first backup's cut the second (incremental) one reaches back.
        # Its default, 60 s, is for clocks of different hosts; here every node shares one clock, and
        # 60 s would take in the end of the load just before the first backup.
        "${admin[@]}" backup --dest "$work/backups" --json ${QUORUMKV_BACKUP_RATE:+--rate "$QUORUMKV_BACKUP_RATE"} \
            --overlap "${QUORUMKV_BACKUP_OVERLAP:-1}" \
            >"$work/$name.json" 2>"$work/$name.err" &
        local backup=$!
        : >"$work/during-$name"
        while kill -0 "$backup" 2>/dev/null; do
            "${beside[@]}" --duration 5 >>"$work/during-$name"
        done
        wait "$backup" || { cat "$work/$name.err" >&2; return 1; }
        echo "$(python3 -c "print($(now) - $started)")" >"$work/$name.seconds"
    }
    echo "== first backup, puts running beside it"
    backup_with_load first
    echo "== 1 % of the keys rewritten, then the second backup, puts running beside it"
    "$bin/kvbench" --concurrency 50 --value-bytes "$value_bytes" --workload put --keys "$((keys / 100))" \
        --requests-max "$((keys / 100))" --duration 600 >/dev/null
    backup_with_load second
    # The first backup into 4 fresh nodes (new data folders, same addresses).
    for i in 1 2 3 4; do kill "${pids[n$i]}"; done
    for i in 1 2 3 4; do wait "${pids[n$i]}" 2>/dev/null || true; done
    first=$(python3 -c "import json; print(json.load(open('$work/first.json'))['id'])")
    for i in 1 2 3 4; do
        mv "$work/n$i" "$work/old-n$i"
        start_node "$i"
    done
    for i in 1 2 3 4; do wait_up "$i"; done
    echo "== restore of the first backup into 4 empty nodes"
    started=$(now)
    "${admin[@]}" restore --from "$work/backups" --backup "$first" --json >"$work/restore.json" 2>"$work/restore.err" ||
        { cat "$work/restore.err" >&2; exit 1; }
    restore_seconds=$(python3 -c "print($(now) - $started)")
    python3 - "$work" "$keys" "$value_bytes" "$restore_seconds" "$PWD/scripts" <<'PY'
import json, sys
work, keys, value_bytes, restore_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
sys.path.insert(0, sys.argv[5])
import kvbench_rates
def rate(name):
    ops, secs = kvbench_rates.rate(work, name)
    return ops / secs if secs else 0.0
base = rate("baseline")
print("puts/s without a backup: %.0f" % base)
first_total = None
for name in ("first", "second"):
    doc = json.load(open(f"{work}/{name}.json"))
    secs = float(open(f"{work}/{name}.seconds").read())
    total = doc["bytesCopied"] + doc["bytesSkipped"]
    first_total = first_total or total
    during = rate(f"during-{name}")
    kind = "incremental on %s" % doc["base"] if doc.get("base") else "full"
    print("%s backup (%s): %.1f s, %d bytes copied (%.2f %% of the first backup's %d), %.1f MB/s copied; puts/s beside it %.0f = %.1f %% of the baseline" % (
        name, kind, secs, doc["bytesCopied"], 100 * doc["bytesCopied"] / max(1, first_total), first_total,
        doc["bytesCopied"] / secs / 1e6, during, 100 * during / base if base else 0))
restore = json.load(open(f"{work}/restore.json"))
values = keys * value_bytes
print("restore: %.1f s, %d keys, %.1f MB/s of values (%.0f keys/s)" % (
    restore_seconds, restore["keysRestored"], values / restore_seconds / 1e6, restore["keysRestored"] / restore_seconds))
PY
    exit 0
fi

if [[ "$mode" == stale ]]; then
    echo "== kvbench get, 100,000 keys, clean cluster, ${seconds}s"
    "${bench[@]}" --workload get --keys 100000
    kill -KILL "${pids[n2]}"
    wait "${pids[n2]}" 2>/dev/null || true
    # The first 1,000 keys (1 %) get a new version while n2 is down, with no hints: n2 stays stale.
    QUORUMKV_HINTED_HANDOFF=0 "$bin/kvbench" --concurrency 50 --value-bytes 100 --workload get --keys 1000 \
        --requests-max 1 >/dev/null 2>&1
    start_node 2
    wait_up 2
    echo "== kvbench get, 100,000 keys, 1 % stale on n2 (background read repair), ${seconds}s"
    "${bench[@]}" --workload get --keys 100000 --skip-load
    "$bin/kvctl" certs issue --dir "$work/certs" --role admin --name admin 2>/dev/null
    QUORUMKV_CERT="$work/certs/admin.pem" QUORUMKV_KEY="$work/certs/admin-key.pem" \
        "$bin/kvctl" status --json 2>/dev/null | python3 -c 'import json,sys
for n in json.load(sys.stdin)["nodes"]:
    print(n["node"], "read repairs received", n.get("readRepairsReceived"), "applied", n.get("readRepairsApplied"))'
    exit 0
fi

if [[ "$mode" == ycsb || "$mode" == ycsbcluster ]]; then
    rate=${RATE:-$((count == 1 ? 5000 : 2000))}
    ycsb=("${bench[@]}" --keys 10000 --seed "${SEED:-1}" --quiet)
    echo "== kvbench YCSB: $count node(s), durability ${QUORUMKV_DURABILITY:-sync}, 50 concurrent, 100-byte values, 10,000 keys, ${seconds}s per run"
    echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    "$bin/kvbench" --keys 10000 --mode get --requests-max 1 --quiet >/dev/null # writes the keys once
    for run in "a zipfian" "a uniform" "b zipfian" "b uniform" "c zipfian" "d latest" "f zipfian"; do
        read -r workload distribution <<<"$run"
        echo "== workload $workload, $distribution keys (load average $(cut -d' ' -f1 /proc/loadavg))"
        "${ycsb[@]}" --workload "$workload" --distribution "$distribution" --skip-load
    done
    warmup=2
    echo "== workload a, zipfian, --target-rate $rate, ${warmup}s warm-up (load average $(cut -d' ' -f1 /proc/loadavg))"
    "${ycsb[@]}" --workload a --skip-load --target-rate "$rate" --warmup "$warmup" \
        --duration "$((seconds > warmup + 1 ? seconds - warmup : 1))"
    echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

# CPU seconds (user+sys) each running kvd has used so far, one "nI SECONDS" a line.
nodes_cpu() {
    local name
    for name in "${!pids[@]}"; do
        [[ "$name" == n* && -r /proc/${pids[$name]}/stat ]] || continue
        # Fields 14 and 15 of /proc/PID/stat (kvd's name has no space): user and system clock ticks.
        awk -v name="$name" -v hz="$(getconf CLK_TCK)" '{print name, ($14 + $15) / hz}' "/proc/${pids[$name]}/stat"
    done
}
# Requests each running kvd has served so far by type, "nI TYPE COUNT" a line, from its /metrics
# (arithmetic only: nothing in the other modes).
nodes_served() {
    local name
    [[ "$mode" == arithmetic ]] || return 0
    for name in "${!pids[@]}"; do
        [[ "$name" == n* ]] || continue
        curl -s --max-time 5 "http://127.0.0.$((20 + ${name#n})):9411/metrics" |
            sed -n "s/^quorumkv_requests_total{.*type=\"\([a-zA-Z]*\)\".*} \([0-9.e+]*\)$/$name \1 \2/p" || true
    done
}
# Runs kvbench ARGS… as figure NAME under /usr/bin/time, as scripts/compare.sh does: its JSON report
# in $work/NAME.json, its own CPU ("user sys wall") in $work/NAME.cpu, every node's CPU seconds and
# requests served before and after it in $work/NAME.{before,after}{,.served}. Failed requests do not
# stop the script (kvbench exits 1 on them): the report counts them.
figure() {
    local name=$1
    shift
    nodes_served >"$work/$name.before.served"
    nodes_cpu >"$work/$name.before"
    /usr/bin/time -f '%U %S %e' -o "$work/$name.cpu" "$bin/kvbench" "$@" --quiet --output "$work/$name.json" \
        >"$work/$name.out" 2>"$work/$name.err" || true
    nodes_cpu >"$work/$name.after"
    nodes_served >"$work/$name.after.served"
    [[ -s "$work/$name.json" ]] || { echo "kvbench ($name) failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
    echo "$name: $(cat "$work/$name.out")"
}

if [[ "$mode" == arithmetic ]]; then
    depth=${DEPTH:-64}
    rounds=${ROUNDS:-2}
    # n5 beside n1-n4: a cluster of one node, N=1, with a cluster file of its own.
    printf 'cluster-id: bench\nreplication-factor: 1\nnodes:\n  - id: n5\n    address: 127.0.0.25:7411\n' \
        >"$work/cluster-one.yaml"
    cluster_file="$work/cluster-one.yaml" start_node 5
    wait_up 5
    one=(--cluster "$work/cluster-one.yaml")
    arith=(--value-bytes 100 --keys 10000 --duration "$seconds")
    # A node's CPU per request depends on how many wait for it (group commit, reads and writes per
    # wakeup): each run keeps DEPTH requests in flight per node, as the seed's ratio spreads them.
    declare -A flight=([one-put]="$depth" [quorum-put]=$((depth * 4 / 3)) [one4-put]=$((depth * 4 / 3))
        [one-get]="$depth" [quorum-get]=$((depth * 2)) [one4-get]=$((depth * 4)))
    echo "== arithmetic: each kvd capped at $QUORUMKV_NODE_CPU of a core, durability ${QUORUMKV_DURABILITY:-sync}," \
        "$depth requests in flight per node, 100-byte values, 10,000 keys, ${seconds}s per run, $rounds rounds;" \
        "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    # Every key on every replica of both clusters before the first get.
    for cluster in "$work/cluster-one.yaml" "$work/cluster.yaml"; do
        "$bin/kvbench" --cluster "$cluster" --concurrency 256 --value-bytes 100 --keys 10000 --workload get \
            --consistency all --requests-max 1 --quiet >/dev/null
    done
    for round in $(seq 1 "$rounds"); do
        echo "== round $round: 1 node N=1 (n5), 4 nodes N=3 (n1-n4) at quorum (2), at one (1)"
        for workload in put get; do
            skip=()
            [[ "$workload" == get ]] && skip=(--skip-load)
            figure "one-$workload-$round" "${arith[@]}" "${one[@]}" --concurrency "${flight[one-$workload]}" \
                --workload "$workload" --consistency one "${skip[@]}"
            figure "quorum-$workload-$round" "${arith[@]}" --concurrency "${flight[quorum-$workload]}" \
                --workload "$workload" --consistency quorum "${skip[@]}"
            figure "one4-$workload-$round" "${arith[@]}" --concurrency "${flight[one4-$workload]}" \
                --workload "$workload" --consistency one "${skip[@]}"
        done
    done
    echo "== load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 - "$work" "$QUORUMKV_NODE_CPU" "$(nproc)" "$rounds" <<'PY'
import json, sys
work, cap, cores, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def table(path):
    rows = [line.split() for line in open(path) if line.strip()]
    return {tuple(r[:-1]): float(r[-1]) for r in rows}
def figure(name, nodes):
    """Operations, seconds, p99, errors, kvbench CPU (cores), each node's CPU / cap, replica requests
    of the run's kind (put or get) per operation."""
    report = json.load(open(f"{work}/{name}.json"))
    user, system, wall = map(float, open(f"{work}/{name}.cpu").read().split())
    before, after = table(f"{work}/{name}.before"), table(f"{work}/{name}.after")
    # Over the measured seconds: the nodes are all but idle while kvbench starts and stops.
    cpu = [(after[(n,)] - before[(n,)]) / report["whole"]["seconds"] / cap for n in nodes]
    kind = "putRequest" if report["workload"] == "put" else "getRequest"
    sb, sa = table(f"{work}/{name}.before.served"), table(f"{work}/{name}.after.served")
    served = sum(sa.get((n, kind), 0) - sb.get((n, kind), 0) for n in nodes)
    used = sum(after[(n,)] - before[(n,)] for n in nodes)
    whole = report["whole"]
    return dict(ops=whole["operations"], secs=whole["seconds"], p99=whole["p99Millis"], errors=report["errors"],
                bench=(user + system) / wall, cpu=cpu, per_op=served / max(1, whole["operations"]),
                flight=report["concurrency"], used=used, served=served)
quad, single = ["n1", "n2", "n3", "n4"], ["n5"]
rows = [
    ("puts", "1 node, N=1, W=1", "one-put", single, None, "1"),
    ("puts", "4 nodes, N=3, W=2", "quorum-put", quad, 4 / 3, "4/3 = 1.33"),
    ("puts", "4 nodes, N=3, W=1", "one4-put", quad, 4 / 3, "4/3 = 1.33 (3 copies still)"),
    ("gets", "1 node, N=1, R=1", "one-get", single, None, "1"),
    ("gets", "4 nodes, N=3, R=2", "quorum-get", quad, 2, "4/2 = 2"),
    ("gets", "4 nodes, N=3, R=1", "one4-get", quad, 4, "4/1 = 4"),
]
print("%-5s %-18s %6s %-16s %-16s %-27s %6s %5s %9s %8s %13s %9s" % (
    "", "run", "flight", "ops/s by round", "ratio by round", "seed's ratio", "p99 ms", "errs", "requests", "kvbench",
    "nodes CPU/cap", "node CPU"))
print("%-5s %-18s %6s %-16s %-16s %-27s %6s %5s %9s %8s %13s %9s" % (
    "", "", "", "", "(all rounds)", "", "", "", "per op", "CPU", "", "µs/req"))
notes = []
for op, label, name, nodes, seed_ratio, seed in rows:
    figures = [figure(f"{name}-{r}", nodes) for r in range(1, rounds + 1)]
    base = [figure(f"one-{name.split('-')[1]}-{r}", single) for r in range(1, rounds + 1)]
    rates = [f["ops"] / f["secs"] for f in figures]
    ratios = [a / (b["ops"] / b["secs"]) for a, b in zip(rates, base)]
    overall = (sum(f["ops"] for f in figures) / sum(f["secs"] for f in figures)) / (
        sum(b["ops"] for b in base) / sum(b["secs"] for b in base))
    cpu = [c for f in figures for c in f["cpu"]]
    bench = max(f["bench"] for f in figures)
    print("%-5s %-18s %6d %-16s %-16s %-27s %6.0f %5d %9.2f %7.0f%% %13s %9.0f" % (
        op, label, figures[0]["flight"], " ".join("%.0f" % r for r in rates),
        "1" if seed_ratio is None else " ".join("%.2f" % r for r in ratios) + " (%.2f)" % overall,
        seed, max(f["p99"] for f in figures), sum(f["errors"] for f in figures),
        sum(f["per_op"] for f in figures) / rounds, 100 * bench,
        "%.0f-%.0f%%" % (100 * min(cpu), 100 * max(cpu)),
        1e6 * sum(f["used"] for f in figures) / max(1, sum(f["served"] for f in figures))))
    left = cores - len(nodes) * cap
    if min(cpu) < 0.9:
        notes.append("%s: a node used under 90 %% of its cap, so the nodes were not the only limit" % label)
    if bench >= 0.9 * left:
        notes.append("%s: kvbench used %.0f %% of a core, 90 %% or more of the %.1f cores the capped nodes leave: "
                     "kvbench may be the bottleneck" % (label, 100 * bench, left))
for note in notes:
    print("  ! " + note)
print("""
The seed's arithmetic: with N=3 each put is sent to all 3 replicas whatever W is (W only says how
many acknowledgements the client awaits before it answers; the others still arrive and cost their
node as much), so 4 nodes hold 4 x (one node's put capacity) / 3 puts/s: 4/3 of one node at W=2 and
at W=1 alike. A get asks R replicas (those that answered fastest lately), so 4 nodes serve 4/R
of one node's gets: 2x at R=2, 4x at R=1. One node with N=1 writes and reads one copy.
"requests per op": replica requests of the run's kind the nodes served per operation (3 for a put; R
for a get, more when the SDK's speculative reads asked another replica because the first were slower
than their recent p99). "kvbench CPU": the load generator's own user+sys over its wall time, in % of
one core (the highest round). "flight": requests kvbench keeps in flight. "nodes CPU/cap": each
node's user+sys over the run against its cgroup cap (about 100 %: the nodes were the limit). "node
CPU µs/req": the nodes' CPU over the replica requests they served (the cost of one copy written or
read); where it is the same for 1 and 4 nodes, the ratio is the seed's.""")
PY
    exit 0
fi

if [[ "$mode" == delays ]]; then
    delay=(0 5 10 20)
    low=(--concurrency 4 --value-bytes 100 --keys 10000 --duration "$seconds" --skip-load)
    echo "== delays: 3 nodes, N=3, durability ${QUORUMKV_DURABILITY:-sync}, 4 in flight, ${seconds}s per run;" \
        "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    # Every key on all three nodes, before any delay.
    "$bin/kvbench" --concurrency 64 --value-bytes 100 --keys 10000 --workload get --consistency all \
        --requests-max 1 --quiet >/dev/null
    echo "== no delay"
    figure base-put "${low[@]}" --workload put --consistency quorum
    figure base-get "${low[@]}" --workload get --consistency quorum
    # Each node holds every write it makes (to peers and to kvbench) for its delay; kvd reads its file
    # again within 100 ms of a change.
    for i in 1 2 3; do echo "* ${delay[$i]}" >"$work/n$i.link-faults"; done
    sleep 1
    echo "== n1, n2, n3 hold their writes ${delay[1]}, ${delay[2]}, ${delay[3]} ms"
    figure put-2 "${low[@]}" --workload put --consistency quorum
    figure get-2 "${low[@]}" --workload get --consistency quorum
    figure get-2-all "${low[@]}" --workload get --consistency quorum --read-from-all
    figure put-1 "${low[@]}" --workload put --consistency one
    figure get-1 "${low[@]}" --workload get --consistency one
    figure get-1-all "${low[@]}" --workload get --consistency one --read-from-all
    figure put-all "${low[@]}" --workload put --consistency all
    figure get-all "${low[@]}" --workload get --consistency all
    kill -KILL "${pids[n1]}"
    wait "${pids[n1]}" 2>/dev/null || true
    unset "pids[n1]"
    echo "== n1 (${delay[1]} ms) SIGKILLed"
    figure killed-put-2 "${low[@]}" --workload put --consistency quorum
    figure killed-get-2 "${low[@]}" --workload get --consistency quorum
    figure killed-get-2-all "${low[@]}" --workload get --consistency quorum --read-from-all
    echo "== load average after the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
# name, label, the seed's expectation (ms: the delay of the replica that completes the quorum).
rows = [
    ("base-put", "put W=2, no delay", None, None),
    ("base-get", "get R=2, no delay", None, None),
    ("put-2", "put W=2", 10, None),
    ("get-2", "get R=2", 10, None),
    ("get-2-all", "get R=2 read-from-all", 10, None),
    ("put-1", "put W=1", 5, None),
    ("get-1", "get R=1", 5, None),
    ("get-1-all", "get R=1 read-from-all", 5, None),
    ("put-all", "put ALL", 20, None),
    ("get-all", "get ALL", 20, None),
    ("killed-put-2", "n1 killed: put W=2", 20, None),
    ("killed-get-2", "n1 killed: get R=2", 20, None),
    ("killed-get-2-all", "n1 killed: get R=2 all", 20, None),
]
def load(name):
    report = json.load(open(f"{work}/{name}.json"))
    user, system, wall = map(float, open(f"{work}/{name}.cpu").read().split())
    return report["whole"], report["errors"], report.get("lastError"), (user + system) / wall
base = {op: load(f"base-{op}")[0]["p50Millis"] for op in ("put", "get")}
print("%-24s %8s %8s %8s %9s %6s %9s" % ("run", "ops/s", "p50 ms", "p99 ms", "expected", "errors", "kvbench"))
failed = 0
for name, label, expected in rows:
    whole, errors, last, cpu = load(name)
    failed += errors
    print("%-24s %8.0f %8.2f %8.2f %9s %6d %8.0f%%" % (
        label, whole["opsPerSecond"], whole["p50Millis"], whole["p99Millis"],
        "-" if expected is None else "~%d" % expected, errors, 100 * cpu))
    if errors:
        print("      last error: %s" % last)
print("""
expected: the delay of the replica whose reply completes the quorum (the W-th or R-th fastest of those
asked), plus the no-delay time (p50 %.2f ms for puts, %.2f ms for gets: TLS, the fsync, the SDK).
Every node holds each write it makes, its replies to kvbench included, for its delay (one way: kvbench
itself holds nothing). A put goes to all 3 replicas, so W=2 waits for the second fastest (10 ms); a
get asks the R replicas that answered fastest lately (the SDK's fastestReplicasFirst), so R=2 waits
for the second fastest too, as with --read-from-all, which asks all 3. Failed requests over all
runs: %d.""" % (base["put"], base["get"], failed))
PY
    exit 0
fi

echo "== kvbench: $count node(s), durability ${QUORUMKV_DURABILITY:-sync}, 50 concurrent, 100-byte values, ${seconds}s per run"
"${bench[@]}" --workload put
"${bench[@]}" --workload get

if [[ "$mode" == cluster ]]; then
    # 10 batches of 100 in flight: 1,000 keys, a quarter of a node's storage queue (4096 jobs), which
    # 50 batches (5,000 keys at once) overflow (`overloaded` answers for the keys past it).
    echo "== kvbench, 10 batches of 100 keys in flight (get(keys:) and put(_:); ops/s counts keys)"
    batches=("$bin/kvbench" --concurrency 10 --batch 100 --value-bytes 100 --duration "$seconds" --skip-load)
    "${batches[@]}" --workload put
    "${batches[@]}" --workload get
    # After a 2 s warm-up (not counted: a run's first second carries its connections' set-up), so the
    # half before the kill is as warm as the half after it.
    echo "== kvbench mixed, 2 s warm-up, then n2 SIGKILLed after $((seconds / 2)) s"
    (sleep "$((2 + seconds / 2))"; kill -KILL "${pids[n2]}") &
    "${bench[@]}" --workload mixed --skip-load --warmup 2 --split "$((seconds / 2))" \
        ${QUORUMKV_KILL_RATE:+--target-rate "$QUORUMKV_KILL_RATE"}
    exit 0
fi

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis-server --port 0 --tls-port 6390 --bind 127.0.0.29 --save "" --appendonly no \
        --tls-cert-file "$work/certs/n1.pem" --tls-key-file "$work/certs/n1-key.pem" \
        --tls-ca-cert-file "$work/certs/ca.pem" --tls-auth-clients yes --tls-protocols TLSv1.3 \
        --dir "$work" --daemonize no >/dev/null 2>&1 &
    pids[redis]=$!
    sleep 1
    requests=$((seconds * 30000))
    echo "== redis-benchmark --tls: 50 clients, 100-byte values, $requests requests (no persistence)"
    redis-benchmark --tls --cacert "$work/certs/ca.pem" --cert "$work/certs/bench.pem" \
        --key "$work/certs/bench-key.pem" -h 127.0.0.29 -p 6390 -c 50 -d 100 -n "$requests" \
        -r 10000 -t set,get -q 2>/dev/null | tr '\r' '\n' | grep "requests per second"
else
    echo "== redis-benchmark: not installed (apt-get install redis-server redis-tools) - skipped"
fi
