#!/usr/bin/env bash
# Checks the alerting rules (docs/monitoring.md): `promtool check rules` on deploy/prometheus/alerts.yml
# and `promtool test rules` on its unit tests, deploy/prometheus/alerts_test.yml. Installs Debian's
# prometheus (promtool comes with it), curl and jq when missing.
#
#   scripts/check-alerts.sh          the two promtool checks (a few seconds)
#   scripts/check-alerts.sh --live   then, on a real cluster (about 1.5 minutes):
#     1. starts 4 nodes with scripts/cluster.sh in a temporary folder, on 127.0.0.145-148 (or from
#        QUORUMKV_CLUSTER_FIRST_HOST: away from cluster.sh's default 11, so a local cluster running
#        there is left alone), binaries from QUORUMKV_BIN or `swift build --show-bin-path`;
#     2. starts a Prometheus of its own on n1's address, port 9090 (QUORUMKV_PROMETHEUS_PORT), with
#        the configuration of scripts/monitoring.sh but scraping and evaluating every second, and
#        the rules of alerts.yml as they are (QuorumKVNodesDown has `for: 1m`; nothing is rewritten);
#     3. waits until the 4 targets are up (60 s at most);
#     4. SIGKILLs n2, waits until Prometheus and most peers see it down (30 s at most), and checks
#        that QuorumKVNodesDown is neither pending nor firing 5 s later: one node counted once;
#     5. SIGKILLs n3 and polls /api/v1/alerts until QuorumKVNodesDown fires (120 s at most),
#        printing how long it took.
#     Everything it started is stopped and its folder deleted on exit, on failure too (the last
#     lines of the logs are printed first).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=scripts/prometheus-common.sh
source "$root/scripts/prometheus-common.sh"

live=0
case "${1:-}" in
"") ;;
--live) live=1 ;;
*)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
    exit 64
    ;;
esac

prometheus_install
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
((live)) || exit 0

say() { echo "check-alerts: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

if [[ -z "${QUORUMKV_BIN:-}" ]]; then
    QUORUMKV_BIN=$(swift build --show-bin-path)
    if [[ ! -x "$QUORUMKV_BIN/kvd" || ! -x "$QUORUMKV_BIN/kvctl" ]]; then
        swift build --product kvd >&2
        swift build --product kvctl >&2
    fi
fi
first_host=${QUORUMKV_CLUSTER_FIRST_HOST:-145}
if ! [[ "$first_host" =~ ^[0-9]+$ ]] || ((first_host < 1 || first_host > 251)); then
    fail "QUORUMKV_CLUSTER_FIRST_HOST must leave room for 4 nodes (1..251), not '$first_host'"
fi
work=$(mktemp -d /tmp/quorumkv-check-alerts.XXXXXX)
export QUORUMKV_BIN QUORUMKV_CLUSTER_DIR="$work/cluster" QUORUMKV_CLUSTER_FIRST_HOST="$first_host"
state="$work/prometheus"
url="http://127.0.0.$first_host:${QUORUMKV_PROMETHEUS_PORT:-9090}"

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if ((status != 0)); then
        for log in "$work"/cluster/n*/kvd.log "$state/prometheus.log"; do
            [[ -f "$log" ]] || continue
            say "last lines of $log:"
            tail -n 5 "$log" >&2
        done
    fi
    prometheus_stop "$state"
    scripts/cluster.sh stop 2>/dev/null || true
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The alert's state in Prometheus: firing, pending, or nothing (also when Prometheus does not answer).
alert_state() {
    curl -fsS --max-time 2 "$url/api/v1/alerts" 2>/dev/null |
        jq -r --arg name "$1" '[.data.alerts[] | select(.labels.alertname == $name) | .state] | sort | first // ""' ||
        true
}

# A PromQL query's first value, or nothing.
query() {
    curl -fsS --max-time 2 --get --data-urlencode "query=$1" "$url/api/v1/query" 2>/dev/null |
        jq -r '.data.result[0].value[1] // ""' || true
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }
seconds_since() { awk -v ms=$(($(now_ms) - $1)) 'BEGIN { printf "%.1f", ms / 1000 }'; }

say "starting 4 nodes in $work/cluster on 127.0.0.$first_host-$((first_host + 3))"
scripts/cluster.sh start 4 2>"$work/cluster-start.log" || {
    cat "$work/cluster-start.log" >&2
    fail "the cluster did not start"
}
mkdir -p "$state"
prometheus_write_config "$QUORUMKV_CLUSTER_DIR" "$first_host" 1s "$state/prometheus.yml"
prometheus_start "$state" "${url#http://}" || fail "Prometheus did not start"
say "Prometheus on $url, scraping every second"

deadline=$((SECONDS + 60))
until [[ "$(query 'count(up{job="quorumkv"} == 1)')" == 4 ]]; do
    ((SECONDS < deadline)) || fail "the 4 targets were not all up within 60 s"
    sleep 1
done
say "4 targets up"
[[ -z "$(alert_state QuorumKVNodesDown)" ]] || fail "QuorumKVNodesDown is $(alert_state QuorumKVNodesDown) with every node up"

start=$(now_ms)
scripts/cluster.sh kill n2 2>/dev/null
deadline=$((SECONDS + 30))
until [[ "$(query 'count(up{node="n2"} == 0) + count(quorumkv_peer_up{peer="n2"} == 0) >= 3')" != "" ]]; do
    ((SECONDS < deadline)) || fail "n2 was not seen down by Prometheus and 2 of its 3 peers within 30 s"
    [[ -z "$(alert_state QuorumKVNodesDown)" ]] || fail "QuorumKVNodesDown with one node down"
    sleep 1
done
say "n2 killed: down for Prometheus and its peers after $(seconds_since "$start") s"
for _ in 1 2 3 4 5; do
    sleep 1
    state_now=$(alert_state QuorumKVNodesDown)
    [[ -z "$state_now" ]] || fail "QuorumKVNodesDown is $state_now with one node down"
done
say "QuorumKVNodesDown neither pending nor firing with one node down"

start=$(now_ms)
scripts/cluster.sh kill n3 2>/dev/null
deadline=$((SECONDS + 120))
pending_seen=0
while :; do
    state_now=$(alert_state QuorumKVNodesDown)
    if [[ "$state_now" == pending && $pending_seen == 0 ]]; then
        pending_seen=1
        say "n3 killed: QuorumKVNodesDown pending after $(seconds_since "$start") s (for: 1m)"
    fi
    [[ "$state_now" == firing ]] && break
    ((SECONDS < deadline)) || fail "QuorumKVNodesDown not firing within 120 s of the second kill (state: '${state_now:-none}')"
    sleep 1
done
summary=$(curl -fsS --max-time 2 "$url/api/v1/alerts" |
    jq -r '.data.alerts[] | select(.labels.alertname == "QuorumKVNodesDown") | .annotations.summary' || true)
say "QuorumKVNodesDown firing $(seconds_since "$start") s after n3 was killed: \"$summary\""
say "passed"
