#!/usr/bin/env bash
# QuorumKV side by side with Redis and etcd on this machine, in one run (issue 21):
#
#   scripts/compare.sh [SECONDS] [ROUNDS]   (default 10 s per run, 3 rounds)
#
#   1. one kvd, durability none, vs redis-server with TLS 1.3, client certificates required and no
#      persistence, driven by redis-benchmark --tls: puts (SET) and gets (GET);
#   2. one kvd, durability sync, vs redis-server with appendonly yes, appendfsync always: puts, with
#      kvd's defaults (an event loop a CPU, a thread for the fsyncs), as redis runs, its commands
#      and fsyncs on one thread (--event-loops 1 --wal-sync event-loop), and with an event loop a CPU
#      each fsyncing its own writes (--wal-sync event-loop);
#   3. 3 kvd, N=3 R=W=2, sync, vs a 3-member etcd cluster with mutual TLS on client and peer links
#      (Debian's etcd-server, every commit fsynced as etcd always does): puts and gets, with kvd's
#      defaults (an event loop a CPU in each node) and with one event loop a node (--event-loops 1:
#      three nodes share the CPUs, etcd's members run with Go's defaults). Debian does not
#      package etcd's `benchmark` tool and `etcdctl check perf` only runs rate-capped puts for a fixed
#      60 s, so etcd is driven by scripts/etcd_load.py over its v3 JSON gateway (see there).
#
# Each round runs every pair above once, QuorumKV then its competitor, so each pair's two runs are
# minutes apart at most; the rounds follow each other. The machine's speed drifts by ±20 % within
# minutes, and it moves both sides of a pair but not always equally: the summary at the end gives,
# for each pair, the median over the rounds of each side's ops/s and p99 and of the pair's ratios,
# with the lowest and highest ratio. The goals are read from those medians.
#
# The summary also goes into docs/benchmarks.md, as a table with the machine's description (CPUs,
# memory, kernel, the competitors' and the toolchain's versions, the commit, the load average before
# the run), between the markers "<!-- compare.sh: latest run -->" and "<!-- compare.sh: end -->" under
# "## Side by side with Redis and etcd (issue 21)", replacing the run written there before; with
# QUORUMKV_COMPARE_DOCS=0 it is only printed.
#
# Always 50 requests in flight (50 redis-benchmark clients, 50 etcd connections), 100-byte values,
# 10,000 keys. kvbench runs with --event-loops E, one SDK client per event loop with its workers on
# that loop (docs/sdk.md, "Event loops"), as redis-benchmark runs its clients on its own event
# loop; E is QUORUMKV_BENCH_EVENT_LOOPS, by default the number of CPUs (0: the SDK's defaults,
# workers on Swift's global executor). Each figure is printed with the load generator's own CPU time (user+sys, from
# /usr/bin/time) and each pair with the ratio QuorumKV / competitor. Installs redis-server,
# redis-tools, etcd-server, etcd-client and time when missing (as root, or with sudo). Uses
# 127.0.0.31-37, ports 7611 (kvd), 7634 (redis), 7620/7621 (etcd client/peer), and refuses to start
# when anything listens there; everything it starts is stopped on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
event_loops=${QUORUMKV_BENCH_EVENT_LOOPS:-$(nproc)}
[[ "$seconds" =~ ^[0-9]+$ && "$rounds" =~ ^[0-9]+$ && "$event_loops" =~ ^[0-9]+$ ]] &&
    ((seconds > 0 && rounds > 0 && rounds <= 20)) || { sed -n '2,40p' "$0" >&2; exit 64; }
write_docs=${QUORUMKV_COMPARE_DOCS:-1}
scripts/setup.sh

missing=()
for package in redis-server redis-tools etcd-server etcd-client time; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]} > 0)); then
    echo "compare: installing ${missing[*]}" >&2
    sudo_cmd=()
    [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

busy=$(ss -ltnH | awk '{print $4}' | grep -E '^127\.0\.0\.3[1-8]:|^(\*|0\.0\.0\.0|\[::\]):(7611|7620|7621|7634)$' || true)
if [[ -n "$busy" ]]; then
    echo "compare: something already listens on $(echo $busy): stop it first" >&2
    exit 1
fi

bin=$(scripts/release-build.sh)

work=$(mktemp -d /tmp/quorumkv-compare.XXXXXX)
declare -A pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# One CA (kvctl's) for everything: its node certificates carry serverAuth and clientAuth and the IPs
# given, which is what redis and etcd's client and peer listeners need too.
# etcd checks a peer certificate's IPs against the connection's source address, which is 127.0.0.1
# (Go dials without binding a source): its certificates name 127.0.0.1 too.
certs=$work/certs
"$bin/kvctl" certs init --dir "$certs" 2>/dev/null
"$bin/kvctl" certs issue --dir "$certs" --role client --name bench 2>/dev/null
for i in 1 2 3; do
    "$bin/kvctl" certs issue --dir "$certs" --role node --name "n$i" --ip "127.0.0.3$i" 2>/dev/null
    "$bin/kvctl" certs issue --dir "$certs" --role node --name "etcd$i" --ip "127.0.0.3$((4 + i))" --ip 127.0.0.1 2>/dev/null
done
"$bin/kvctl" certs issue --dir "$certs" --role node --name redis --ip 127.0.0.34 2>/dev/null
export QUORUMKV_CA="$certs/ca.pem" QUORUMKV_CERT="$certs/bench.pem" QUORUMKV_KEY="$certs/bench-key.pem"

stop() {
    kill "${pids[$1]}" 2>/dev/null || true
    wait "${pids[$1]}" 2>/dev/null || true
    unset "pids[$1]"
}
# Starts COUNT kvd nodes (fresh data) with durability DURABILITY and kvd's options ARGS.
start_kvd() {
    local count=$1 durability=$2 i
    shift 2
    printf 'cluster-id: compare\nreplication-factor: %d\nnodes:\n' "$count" >"$work/cluster.yaml"
    for ((i = 1; i <= count; i++)); do
        printf '  - id: n%d\n    address: 127.0.0.3%d:7611\n' "$i" "$i" >>"$work/cluster.yaml"
    done
    for ((i = 1; i <= count; i++)); do
        rm -rf "$work/n$i"
        "$bin/kvd" --id "n$i" --listen "127.0.0.3$i:7611" --data "$work/n$i" --cluster "$work/cluster.yaml" \
            --ca "$certs/ca.pem" --cert "$certs/n$i.pem" --key "$certs/n$i-key.pem" \
            --durability "$durability" --log-level warning "$@" &
        pids[n$i]=$!
    done
    for ((i = 1; i <= count; i++)); do
        for _ in $(seq 1 600); do
            "$bin/kvctl" ring --endpoints "127.0.0.3$i:7611" --cluster-id compare >/dev/null 2>&1 && continue 2
            sleep 0.1
        done
        echo "kvd n$i did not answer within 60 s" >&2
        return 1
    done
}
stop_kvd() { for i in 1 2 3; do [[ -n "${pids[n$i]:-}" ]] && stop "n$i"; done; return 0; }

# Runs a load generator under /usr/bin/time; writes its output to $work/NAME.out and its CPU to
# $work/NAME.cpu ("user sys wall").
measure() {
    local name=$1
    shift
    /usr/bin/time -f '%U %S %e' -o "$work/$name.cpu" "$@" >"$work/$name.raw" 2>"$work/$name.err" ||
        { echo "$name failed:" >&2; cat "$work/$name.err" >&2; return 1; }
}
# kvbench WORKLOAD NAME [SECONDS]: loads the keys first (outside the measurement) for gets.
kvbench() {
    local workload=$1 name=$2 duration=${3:-$seconds}
    local args=(--cluster "$work/cluster.yaml" --concurrency 50 --value-bytes 100 --keys 10000 --consistency quorum
        --event-loops "$event_loops")
    if [[ "$workload" == get ]]; then
        "$bin/kvbench" "${args[@]}" --workload get --requests-max 1 --quiet >/dev/null
        args+=(--skip-load)
    fi
    measure "$name" "$bin/kvbench" "${args[@]}" --duration "$duration" --workload "$workload" --quiet
    grep -E "^$workload: " "$work/$name.raw" | head -1 >"$work/$name.out"
}
# Starts redis on 127.0.0.34:7634 with TLS 1.3 and client certificates required, plus ARGS.
start_redis() {
    rm -rf "$work"/appendonly*
    redis-server --port 0 --tls-port 7634 --bind 127.0.0.34 --save "" \
        --tls-cert-file "$certs/redis.pem" --tls-key-file "$certs/redis-key.pem" \
        --tls-ca-cert-file "$certs/ca.pem" --tls-auth-clients yes --tls-protocols TLSv1.3 \
        --dir "$work" --daemonize no --logfile "$work/redis.log" "$@" &
    pids[redis]=$!
    for _ in $(seq 1 100); do
        redis-cli --tls --cacert "$certs/ca.pem" --cert "$certs/bench.pem" --key "$certs/bench-key.pem" \
            -h 127.0.0.34 -p 7634 ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis did not answer" >&2
    return 1
}
# redis-benchmark TEST NAME: one test, 50 clients, 100-byte values, 10,000 keys. It has no duration
# option: REQUESTS (rate guess × SECONDS) requests, and the run is capped at 3 × SECONDS.
redis_bench() {
    local test=$1 name=$2 requests=$3
    measure "$name" timeout "$((3 * seconds))" redis-benchmark --tls --cacert "$certs/ca.pem" \
        --cert "$certs/bench.pem" --key "$certs/bench-key.pem" -h 127.0.0.34 -p 7634 \
        -c 50 -d 100 -r 10000 -n "$requests" -t "$test" --csv
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    python3 - "$work/$name.raw" "$test" "$requests" >"$work/$name.out" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if r and r[0] != "test"]
r = rows[-1]
rps = float(r[1])
print("%s: %s ops in %.1f s = %.0f ops/s, p50 %.2f ms, p95 %.2f ms, p99 %.2f ms" % (
    sys.argv[2].lower(), sys.argv[3], int(sys.argv[3]) / rps, rps, float(r[4]), float(r[5]), float(r[6])))
PY
}
# Prints figure NAME with its load generator's CPU.
show() {
    local cpu
    read -r user sys wall <"$work/$1.cpu"
    cpu=$(python3 -c "print('load generator CPU %.1f s user+sys over %.1f s = %.0f %% of a core' % ($user + $sys, $wall, 100 * ($user + $sys) / $wall))")
    printf '  %-34s %s\n  %-34s (%s)\n' "$2" "$(cat "$work/$1.out")" "" "$cpu"
}
# Prints the ratio of the ops/s and p99 of figure A (QuorumKV) and figure B (competitor).
ratio() {
    python3 - "$work/$1.out" "$work/$2.out" <<'PY'
import re, sys
def parse(path):
    text = open(path).read()
    return float(re.search(r"= ([0-9.]+) ops/s", text).group(1)), float(re.search(r"p99 ([0-9.]+) ms", text).group(1))
(a, a99), (b, b99) = parse(sys.argv[1]), parse(sys.argv[2])
print("  => QuorumKV / competitor: ops/s %.2fx, p99 %.2fx (%s)" % (
    a / b, a99 / b99 if b99 else float("nan"), "faster" if a >= b else "slower"))
PY
}

# Starts the 3-member etcd cluster (fresh data) and waits until it is healthy.
start_etcd() {
    local i host cluster=etcd1=https://127.0.0.35:7621,etcd2=https://127.0.0.36:7621,etcd3=https://127.0.0.37:7621
    for i in 1 2 3; do
        host=127.0.0.3$((4 + i))
        rm -rf "$work/etcd$i"
        etcd --name "etcd$i" --data-dir "$work/etcd$i" --logger zap --log-level error \
            --listen-client-urls "https://$host:7620" --advertise-client-urls "https://$host:7620" \
            --listen-peer-urls "https://$host:7621" --initial-advertise-peer-urls "https://$host:7621" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token compare \
            --client-cert-auth --trusted-ca-file "$certs/ca.pem" \
            --cert-file "$certs/etcd$i.pem" --key-file "$certs/etcd$i-key.pem" \
            --peer-client-cert-auth --peer-trusted-ca-file "$certs/ca.pem" \
            --peer-cert-file "$certs/etcd$i.pem" --peer-key-file "$certs/etcd$i-key.pem" \
            2>"$work/etcd$i.log" &
        pids[etcd$i]=$!
    done
    for _ in $(seq 1 300); do
        "${etcdctl[@]}" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    "${etcdctl[@]}" endpoint health >/dev/null || { echo "etcd did not become healthy" >&2; tail "$work"/etcd*.log >&2; return 1; }
}
endpoints=127.0.0.35:7620,127.0.0.36:7620,127.0.0.37:7620
etcdctl=(env ETCDCTL_API=3 etcdctl --endpoints "https://${endpoints//,/,https://}" --cacert "$certs/ca.pem"
    --cert "$certs/bench.pem" --key "$certs/bench-key.pem")

# The pairs of the summary: QuorumKV's figure, the competitor's, and what they are.
pairs=(
    "kvd-none-put redis-set 1. one node none, puts vs Redis SET"
    "kvd-none-get redis-get 1. one node none, gets vs Redis GET"
    "kvd-sync-put redis-aof-set 2. one node sync (defaults), puts vs Redis appendfsync always"
    "kvd-sync1-put redis-aof-set 2. one node sync --event-loops 1 --wal-sync event-loop, puts"
    "kvd-syncn-put redis-aof-set 2. one node sync --wal-sync event-loop, puts"
    "kvd3-put etcd-put 3. 3 nodes N=3 W=2 sync (defaults), puts vs etcd"
    "kvd3e1-put etcd-put 3. 3 nodes --event-loops 1, puts vs etcd"
    "kvd3-get etcd-get 3. 3 nodes N=3 R=2 (defaults), gets vs etcd linearizable"
    "kvd3e1-get etcd-get 3. 3 nodes --event-loops 1, gets vs etcd linearizable"
)

# One round: every pair once, each figure NAME written to $work/NAME.ROUND.out.
round() {
    local r=$1
    echo "== round $r of $rounds, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "== 1. one kvd, durability none, vs redis TLS 1.3, client certificates, no persistence"
    start_kvd 1 none
    kvbench put "kvd-none-put.$r"
    kvbench get "kvd-none-get.$r"
    stop_kvd
    start_redis --appendonly no
    redis_bench set "redis-set.$r" $((seconds * 60000))
    redis_bench get "redis-get.$r" $((seconds * 60000))
    stop redis
    show "kvd-none-put.$r" "kvd none, puts"
    show "redis-set.$r" "redis no persistence, SET"
    ratio "kvd-none-put.$r" "redis-set.$r"
    show "kvd-none-get.$r" "kvd none, gets"
    show "redis-get.$r" "redis no persistence, GET"
    ratio "kvd-none-get.$r" "redis-get.$r"

    echo "== 2. one kvd, durability sync, vs redis appendonly yes, appendfsync always"
    # A short sync run first, not measured: without it kvd's first sync run after pair 1 made 30-35k
    # puts/s in three runs and 42k in one where it came second (docs/benchmarks.md, "The fsync on the
    # event loop"), for a reason not found.
    start_kvd 1 sync
    kvbench put "kvd-sync-warm-up.$r" 3
    stop_kvd
    start_kvd 1 sync
    kvbench put "kvd-sync-put.$r"
    stop_kvd
    # Redis runs its commands and its fsyncs on one thread; kvd by default runs an event loop a CPU
    # and a thread for the fsyncs. Run as Redis is too: one event loop that fsyncs its own writes
    # (docs/benchmarks.md, "The fsync on the event loop").
    start_kvd 1 sync --event-loops 1 --wal-sync event-loop
    kvbench put "kvd-sync1-put.$r"
    stop_kvd
    # And every loop fsyncing its own writes: the fastest of the three when fsyncs are fast
    # (docs/benchmarks.md, "A hash memtable for the records").
    start_kvd 1 sync --wal-sync event-loop
    kvbench put "kvd-syncn-put.$r"
    stop_kvd
    start_redis --appendonly yes --appendfsync always
    redis_bench set "redis-aof-set.$r" $((seconds * 40000))
    stop redis
    show "kvd-sync-put.$r" "kvd sync, puts"
    show "redis-aof-set.$r" "redis appendfsync always, SET"
    ratio "kvd-sync-put.$r" "redis-aof-set.$r"
    show "kvd-sync1-put.$r" "kvd sync, --event-loops 1 --wal-sync event-loop, puts"
    ratio "kvd-sync1-put.$r" "redis-aof-set.$r"
    show "kvd-syncn-put.$r" "kvd sync, --wal-sync event-loop, puts"
    ratio "kvd-syncn-put.$r" "redis-aof-set.$r"

    echo "== 3. 3 kvd N=3 R=W=2 sync vs 3-member etcd, mutual TLS on client and peer links"
    start_kvd 3 sync
    kvbench put "kvd3-put.$r"
    kvbench get "kvd3-get.$r"
    stop_kvd
    # Three nodes on this machine's CPUs: with an event loop a CPU each, more threads than CPUs wake
    # and sleep (docs/benchmarks.md, "Frames without a heap box; where `sync` goes with three nodes").
    start_kvd 3 sync --event-loops 1
    kvbench put "kvd3e1-put.$r"
    kvbench get "kvd3e1-get.$r"
    stop_kvd
    start_etcd
    local load=(python3 scripts/etcd_load.py)
    local tls=("$endpoints" "$certs/ca.pem" "$certs/bench.pem" "$certs/bench-key.pem" --concurrency 50 --keys 10000
        --value-bytes 100)
    measure "etcd-put.$r" "${load[@]}" put "${tls[@]}" --seconds "$seconds"
    cp "$work/etcd-put.$r.raw" "$work/etcd-put.$r.out"
    "${load[@]}" load "${tls[@]}" >/dev/null
    measure "etcd-get.$r" "${load[@]}" get "${tls[@]}" --seconds "$seconds"
    cp "$work/etcd-get.$r.raw" "$work/etcd-get.$r.out"
    for i in 1 2 3; do stop "etcd$i"; done
    show "kvd3-put.$r" "kvd x3 N=3 W=2 sync, puts"
    show "etcd-put.$r" "etcd x3, puts (etcd_load.py)"
    ratio "kvd3-put.$r" "etcd-put.$r"
    show "kvd3e1-put.$r" "kvd x3 --event-loops 1, puts"
    ratio "kvd3e1-put.$r" "etcd-put.$r"
    show "kvd3-get.$r" "kvd x3 N=3 R=2, gets"
    show "etcd-get.$r" "etcd x3, linearizable gets"
    ratio "kvd3-get.$r" "etcd-get.$r"
    show "kvd3e1-get.$r" "kvd x3 --event-loops 1, gets"
    ratio "kvd3e1-get.$r" "etcd-get.$r"
}

# For each pair: the median over the rounds of each side's ops/s, p99 and load generator's CPU, and
# of the pair's ratios (each round's QuorumKV figure over the same round's competitor figure), with
# their range.
# Also writes the summary as a markdown table to $work/summary.md.
summary() {
    python3 - "$work" "$rounds" "${pairs[@]}" <<'PY'
import re, statistics, sys
work, rounds, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
rows = ["| pair | QuorumKV (median) | competitor (median) | ops/s ratio, median (range) | p99 ratio, median (range) |",
        "|---|---|---|---|---|"]
def parse(name, r):
    """ops/s, p99 (ms) and the load generator's CPU (% of a core) of figure NAME in round R."""
    text = open("%s/%s.%d.out" % (work, name, r)).read()
    user, system, wall = map(float, open("%s/%s.%d.cpu" % (work, name, r)).read().split())
    return (float(re.search(r"= ([0-9.]+) ops/s", text).group(1)), float(re.search(r"p99 ([0-9.]+) ms", text).group(1)),
            100 * (user + system) / wall if wall else 0.0)
def side(xs):
    return "%s ops/s, p99 %.2f ms, load generator %.0f %% of a core" % (
        format(round(med(x[0] for x in xs)), ","), med(x[1] for x in xs), med(x[2] for x in xs))
print("== summary: medians over %d round%s (ratio = QuorumKV / competitor, each round's pair; lowest-highest)" % (
    rounds, "" if rounds == 1 else "s"))
for pair in pairs:
    ours, theirs, label = pair.split(" ", 2)
    a = [parse(ours, r) for r in range(1, rounds + 1)]
    b = [parse(theirs, r) for r in range(1, rounds + 1)]
    rate = [x[0] / y[0] for x, y in zip(a, b)]
    p99 = [x[1] / y[1] for x, y in zip(a, b) if y[1]]
    print("  %s" % label)
    print("    QuorumKV %s; competitor %s" % (side(a), side(b)))
    print("    => ops/s %.2fx (%.2f-%.2f), p99 %.2fx (%.2f-%.2f)" % (
        med(rate), min(rate), max(rate), med(p99), min(p99), max(p99)))
    rows.append("| %s | %s | %s | **%.2f×** (%.2f–%.2f) | %.2f× (%.2f–%.2f) |" % (
        label, side(a), side(b), med(rate), min(rate), max(rate), med(p99), min(p99), max(p99)))
open("%s/summary.md" % work, "w").write("\n".join(rows) + "\n")
PY
}

# This machine and the software measured, one paragraph of markdown.
machine() {
    local cpu memory
    cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    memory=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
    printf 'Machine: %s cores (`nproc`; %s), %s GiB of memory, kernel %s; %s, %s; etcd %s; %s; Python %s; %s.\n' \
        "$(nproc)" "${cpu:-model not given}" "$memory" "$(uname -r)" \
        "$(redis-server --version | awk '{print $1, $2, $3}')" "$(redis-benchmark --version 2>/dev/null | head -1)" \
        "$(etcd --version 2>/dev/null | awk -F': ' '/etcd Version/ {print $2}')" \
        "$(swift --version 2>&1 | grep -o 'Swift version [0-9.]*' | head -1)" \
        "$(python3 -c 'import platform; print(platform.python_version())')" "$(openssl version | awk '{print $1, $2}')"
}

# Replaces the run between the markers in docs/benchmarks.md (adding them under the issue 21 heading
# the first time) with this one's summary.
write_summary_to_docs() {
    local commit block
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git diff --quiet HEAD -- Sources Package.swift scripts 2>/dev/null || commit="$commit plus uncommitted changes"
    block=$work/block.md
    {
        echo "<!-- compare.sh: latest run -->"
        echo "Latest \`scripts/compare.sh $seconds $rounds\`, written by the script: $started to $(date -u +%FT%TZ), commit"
        echo "$commit, release builds, load average $load_before before. $(machine)"
        echo
        cat "$work/summary.md"
        echo "<!-- compare.sh: end -->"
    } >"$block"
    python3 - docs/benchmarks.md "$block" <<'PY'
import sys
path, block = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(path).read()
begin, end = "<!-- compare.sh: latest run -->", "<!-- compare.sh: end -->"
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    heading = "## Side by side with Redis and etcd (issue 21)\n"
    if heading not in text:
        sys.exit("compare: docs/benchmarks.md has no heading %r to write under" % heading.strip())
    text = text.replace(heading, heading + "\n" + block + "\n", 1)
open(path, "w").write(text)
PY
    echo "== written to docs/benchmarks.md (\"Side by side with Redis and etcd\"; QUORUMKV_COMPARE_DOCS=0 does not)"
}

started=$(date -u +%FT%TZ)
load_before=$(cut -d' ' -f1 /proc/loadavg)
echo "== compare: 50 in flight, 100-byte values, 10,000 keys, ${seconds}s per run, $rounds round(s)," \
    "kvbench --event-loops ${event_loops}, $(date -u +%FT%TZ)"
for ((r = 1; r <= rounds; r++)); do round "$r"; done
summary
[[ "$write_docs" == 0 ]] || write_summary_to_docs
