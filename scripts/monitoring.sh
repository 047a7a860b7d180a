#!/usr/bin/env bash
# A Prometheus for the local cluster of scripts/cluster.sh, with deploy/prometheus/alerts.yml loaded
# (docs/monitoring.md). Same overrides as cluster.sh: QUORUMKV_CLUSTER_DIR (.cluster) and
# QUORUMKV_CLUSTER_FIRST_HOST (11). Prometheus listens on n1's address, port 9090 (or
# QUORUMKV_PROMETHEUS_PORT), scrapes every node each 5 s with the cluster's admin certificate, and
# keeps its data and log in CLUSTER_DIR/prometheus/. Installs Debian's prometheus when missing.
#
#   scripts/monitoring.sh [start]   start it (or, when it runs, rewrite its configuration and reload
#                                   it: run it again after `cluster.sh add` or `remove`), print the URL
#   scripts/monitoring.sh stop      stop it (SIGTERM, then SIGKILL after 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/prometheus-common.sh
source "$root/scripts/prometheus-common.sh"

dir=${QUORUMKV_CLUSTER_DIR:-$root/.cluster}
[[ "$dir" == /* ]] || dir="$root/$dir"
first_host=${QUORUMKV_CLUSTER_FIRST_HOST:-11}
port=${QUORUMKV_PROMETHEUS_PORT:-9090}
[[ "$first_host" =~ ^[0-9]+$ && "$port" =~ ^[0-9]+$ ]] || {
    echo "monitoring.sh: QUORUMKV_CLUSTER_FIRST_HOST and QUORUMKV_PROMETHEUS_PORT must be numbers" >&2
    exit 64
}
listen="127.0.0.$first_host:$port"
state="$dir/prometheus"

case "${1:-start}" in
start)
    prometheus_install
    mkdir -p "$state"
    prometheus_write_config "$dir" "$first_host" 5s "$state/prometheus.yml"
    if pid=$(prometheus_pid "$state"); then
        kill -HUP "$pid"
        echo "monitoring.sh: Prometheus was running; configuration reloaded" >&2
    else
        prometheus_start "$state" "$listen"
    fi
    echo "monitoring.sh: Prometheus on http://$listen (alerts: http://$listen/alerts; log: $state/prometheus.log); 'scripts/monitoring.sh stop' stops it" >&2
    echo "http://$listen"
    ;;
stop)
    prometheus_stop "$state"
    echo "monitoring.sh: stopped" >&2
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
    exit 64
    ;;
esac
