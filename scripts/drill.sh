#!/usr/bin/env bash
# A failure drill on the local cluster (scripts/cluster.sh: the one there is, else 4 nodes, N=3): loads data, then practises
# each recovery of docs/operations.md ("Runbooks") under a QUORUM load and reports how long each took:
#
#   scripts/drill.sh [KEYS]          (default 20000 keys of 100 bytes)
#
#   1. rolling restart   scripts/rolling-restart.sh over every node, under load
#   2. node killed       SIGKILL n2 under load, restart it, `kvctl wait-ready n2` (hints replayed)
#   3. disk lost         stop n3, wipe its data folder, start it empty, `kvctl repair --node n3`
#                        (its ranges copied back from the co-replicas), then check a sample of keys
#                        on n3 alone
#   4. backup, restore   `kvctl backup` to .cluster/drill-backup, `kvctl backup verify`
#
# Steps 1 and 2 run under a mixed QUORUM load (kvbench, 60 s and 30 s) and report its failed requests;
# the drill fails (exit 1) when a step fails. The cluster is started if needed and left running; `scripts/
# cluster.sh stop && rm -rf .cluster` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-20000}
[[ "$keys" =~ ^[0-9]+$ ]] && ((keys >= 100)) || { echo "usage: scripts/drill.sh [KEYS ≥ 100]" >&2; exit 64; }

scripts/setup.sh
swift build --product kvd >&2
swift build --product kvctl >&2
swift build --product kvbench >&2
# The local cluster as it is, or a new one of 4 nodes.
nodes=4
if [[ -f .cluster/cluster.yaml ]]; then nodes=$(grep -c '^  - id: ' .cluster/cluster.yaml); fi
((nodes >= 3)) || { echo "drill: the local cluster has $nodes node(s); it needs 3 or more" >&2; exit 1; }
scripts/cluster.sh start "$nodes"
# shellcheck disable=SC1091
source .cluster/env
report=()
step() { report+=("$(printf '%-16s %5d s  %s' "$1" "$2" "$3")"); echo "drill: $1: $2 s ($3)" >&2; }

echo "drill: loading $keys keys (kvbench's random keys: most of them)" >&2
kvbench --workload put --keys "$keys" --concurrency 32 --requests-max "$keys" --duration 600 >/dev/null

# Runs a mixed QUORUM load in the background for $1 seconds; `load_end` waits for it to end and sets
# `failed` to its failed-request count (not in a $(…): a subshell cannot wait for it).
load_start() {
    kvbench --workload mixed --skip-load --keys "$keys" --concurrency 8 --duration "$1" \
        --output .cluster/drill-load.json >/dev/null 2>.cluster/drill-load.err &
    load_pid=$!
}
load_end() {
    wait "$load_pid" 2>/dev/null || true
    failed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' .cluster/drill-load.json) ||
        failed="unknown (see .cluster/drill-load.err)"
    rm -f .cluster/drill-load.json
}

# 1. Rolling restart.
load_start 60
started=$SECONDS
scripts/rolling-restart.sh
took=$((SECONDS - started))
load_end
step "rolling restart" "$took" "failed requests under load: $failed"

# 2. A node killed under load, then back.
load_start 30
scripts/cluster.sh kill n2
sleep 5
started=$SECONDS
scripts/cluster.sh restart n2
kvctl wait-ready n2 --wait-timeout 600
took=$((SECONDS - started))
load_end
step "node killed" "$took" "back and caught up after a 5 s outage; failed requests under load: $failed"

# 3. A node's disk lost: rebuilt from its co-replicas.
started=$SECONDS
scripts/cluster.sh kill n3
rm -rf .cluster/n3/data
scripts/cluster.sh restart n3
kvctl repair --node n3 >/dev/null
took=$((SECONDS - started))
missing=0
for i in $(seq 0 97 $((keys - 1))); do
    key=$(printf 'bench-%d' "$i")
    replicas=$(kvctl ring "$key" --json | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["replicas"]))')
    # A key the load never wrote exists nowhere; one that reads at QUORUM must be on n3 again.
    if [[ " $replicas " == *" n3 "* ]] && kvctl get "$key" >/dev/null 2>&1 &&
        ! kvctl get "$key" --node n3 >/dev/null 2>&1; then
        missing=$((missing + 1))
    fi
done
step "disk lost" "$took" "n3 wiped, restarted empty and repaired; sampled keys missing on n3: $missing"
((missing == 0)) || { echo "drill: n3 misses $missing sampled keys after the repair" >&2; exit 1; }

# 4. Backup and verify.
started=$SECONDS
kvctl backup --dest .cluster/drill-backup >/dev/null
kvctl backup verify .cluster/drill-backup >/dev/null
step "backup+verify" $((SECONDS - started)) "$(du -sh .cluster/drill-backup | cut -f1) in .cluster/drill-backup"

printf '\ndrill: %s keys, %s nodes, N=3\n' "$keys" "$nodes"
printf '  %s\n' "${report[@]}"
