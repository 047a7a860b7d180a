#!/usr/bin/env bash
# The pictures in docs/monitoring.md, from a real run: 4 nodes (N=3) on 127.0.0.145-148 in a temporary
# folder, a Prometheus scraping them (scripts/monitoring.sh), and kvbench's mixed load for SECONDS
# (default 90) during which n3 is SIGKILLed at a third of the run and started again at two thirds.
# Writes docs/images/scrape.svg (Prometheus's range queries, drawn by scripts/prometheus-graph.py)
# and docs/images/kvbench.svg (kvbench --plot, the kill and restart marked). Stops everything it
# started on exit. Uses debug binaries from `swift build` unless QUORUMKV_BIN says otherwise.
#
#   scripts/scrape-picture.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-90}
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 30 && "$seconds" -le 600 ]] ||
    { echo "usage: scripts/scrape-picture.sh [SECONDS, 30...600]" >&2; exit 64; }
if [[ -z "${QUORUMKV_BIN:-}" ]]; then
    swift build --product kvd >&2 && swift build --product kvctl >&2 && swift build --product kvbench >&2
    QUORUMKV_BIN=$(swift build --show-bin-path)
fi
work=$(mktemp -d /tmp/quorumkv-picture.XXXXXX)
export QUORUMKV_BIN QUORUMKV_CLUSTER_DIR="$work/cluster" QUORUMKV_CLUSTER_FIRST_HOST=145
cleanup() {
    scripts/monitoring.sh stop >/dev/null 2>&1 || true
    scripts/cluster.sh stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/cluster.sh start 4 >&2
url=$(scripts/monitoring.sh start)
# shellcheck disable=SC1091
source "$QUORUMKV_CLUSTER_DIR/env"
kill_at=$((seconds / 3))
restart_at=$((2 * seconds / 3))
(
    sleep "$kill_at"
    scripts/cluster.sh kill n3 >&2
    sleep $((restart_at - kill_at))
    scripts/cluster.sh restart n3 >&2
) &
"$QUORUMKV_BIN/kvbench" --workload mixed --skip-load --concurrency 20 --duration "$seconds" --keys 10000 \
    --plot docs/images/kvbench.svg --mark "$kill_at:n3 SIGKILLed" --mark "$restart_at:n3 restarted" \
    --output "$work/kvbench.json" || true
wait
sleep 10
python3 scripts/prometheus-graph.py "$url" $((seconds + 20)) docs/images/scrape.svg \
    'Requests answered per node (per second)=sum by (node) (rate(quorumkv_requests_total{type=~"putRequest|getRequest"}[15s]) or rate(quorumkv_batch_items_total{type=~"putBatchRequest|getBatchRequest"}[15s]))' \
    'Members each node sees healthy=quorumkv_healthy_nodes' \
    'Hints queued per holder=sum by (node) (quorumkv_hint_queue_size)' \
    'Oldest hint per target (replica lag, s)=max by (target) (quorumkv_hint_oldest_age_seconds)'
echo "scrape-picture: docs/images/scrape.svg and docs/images/kvbench.svg written" >&2
