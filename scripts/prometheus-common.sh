# shellcheck shell=bash
# Shared by scripts/monitoring.sh and scripts/check-alerts.sh (sourced, not run): installs
# Prometheus, writes the one Prometheus configuration for a local cluster of scripts/cluster.sh,
# starts and stops a Prometheus of our own. Expects `root` (the repository) to be set.
#
# The configuration scrapes every node folder of the cluster (n1, n2, ... less those removed) at
# https://127.0.0.(FIRST_HOST-1+I):9411/metrics with the cluster's admin certificate, labels each
# target with its node id and honours the node's own `node` label (deploy/prometheus/alerts.yml
# relies on both), and loads deploy/prometheus/alerts.yml.

prometheus_rules="${root:?set root to the repository before sourcing}/deploy/prometheus/alerts.yml"

# Installs Debian's prometheus (promtool comes with it), and curl and jq, when missing. Services
# the package would start (a Prometheus on *:9090) are held back by a policy-rc.d for the install,
# and its Recommends (node exporter) are not installed.
prometheus_install() {
    local missing=()
    if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
        missing+=(prometheus)
    fi
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v jq >/dev/null 2>&1 || missing+=(jq)
    ((${#missing[@]} > 0)) || return 0
    echo "prometheus: installing ${missing[*]}" >&2
    local sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
    local policy=/usr/sbin/policy-rc.d policy_added=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$policy" >/dev/null
        "${sudo_cmd[@]}" chmod 755 "$policy"
        policy_added=1
    fi
    local status=0
    timeout 300 "${sudo_cmd[@]}" apt-get update -qq || status=$?
    if ((status == 0)); then
        DEBIAN_FRONTEND=noninteractive timeout 600 "${sudo_cmd[@]}" \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    fi
    if ((policy_added)); then "${sudo_cmd[@]}" rm -f "$policy"; fi
    if ((status != 0)); then
        echo "prometheus: installing ${missing[*]} failed (exit $status)" >&2
        return 1
    fi
}

# prometheus_write_config CLUSTER_DIR FIRST_HOST INTERVAL FILE: FILE scrapes and evaluates every
# INTERVAL (e.g. 1s, 5s). Fails when the cluster has no certificates or no node yet.
prometheus_write_config() {
    local cluster_dir=$1 first_host=$2 interval=$3 file=$4
    local certs="$cluster_dir/certs"
    [[ -f "$certs/admin.pem" ]] || {
        echo "prometheus: no cluster in $cluster_dir (no certs/admin.pem): scripts/cluster.sh start N first" >&2
        return 1
    }
    local ids=() path id
    for path in "$cluster_dir"/n*/; do
        [[ -d "$path" ]] || continue
        id=$(basename "$path")
        [[ "$id" =~ ^n[0-9]+$ ]] && ids+=("$id")
    done
    ((${#ids[@]} > 0)) || {
        echo "prometheus: no node folder in $cluster_dir" >&2
        return 1
    }
    {
        echo "# Written by scripts/prometheus-common.sh for the cluster in $cluster_dir."
        echo "global:"
        echo "  scrape_interval: $interval"
        echo "  scrape_timeout: $interval"
        echo "  evaluation_interval: $interval"
        echo "rule_files:"
        echo "  - $prometheus_rules"
        echo "scrape_configs:"
        echo "  - job_name: quorumkv"
        echo "    scheme: https"
        echo "    honor_labels: true"
        echo "    tls_config:"
        echo "      ca_file: $certs/ca.pem"
        echo "      cert_file: $certs/admin.pem"
        echo "      key_file: $certs/admin-key.pem"
        echo "    static_configs:"
        for id in $(printf '%s\n' "${ids[@]}" | sort -V); do
            echo "      - targets: [\"127.0.0.$((first_host - 1 + ${id#n})):9411\"]"
            echo "        labels: {node: $id}"
        done
    } >"$file"
    promtool check config "$file" >/dev/null
}

# prometheus_start STATE_DIR LISTEN: starts Prometheus with STATE_DIR/prometheus.yml, its data in
# STATE_DIR/data, its log in STATE_DIR/prometheus.log, its pid in STATE_DIR/prometheus.pid, and
# waits (30 s at most) until it is ready.
prometheus_start() {
    local state=$1 listen=$2
    mkdir -p "$state/data"
    nohup prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/data" \
        --storage.tsdb.retention.time=7d --web.listen-address="$listen" \
        >>"$state/prometheus.log" 2>&1 </dev/null &
    echo $! >"$state/prometheus.pid"
    local pid=$!
    for _ in $(seq 1 150); do
        if curl -fsS --max-time 1 "http://$listen/-/ready" >/dev/null 2>&1; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "prometheus: exited; last lines of $state/prometheus.log:" >&2
            tail -n 5 "$state/prometheus.log" >&2
            rm -f "$state/prometheus.pid"
            return 1
        fi
        sleep 0.2
    done
    echo "prometheus: not ready on $listen within 30 s (see $state/prometheus.log)" >&2
    return 1
}

# The pid of the Prometheus started in STATE_DIR, if it still runs.
prometheus_pid() {
    local file="$1/prometheus.pid" pid
    [[ -f "$file" ]] || return 1
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

# prometheus_stop STATE_DIR: SIGTERM, then SIGKILL after 10 s.
prometheus_stop() {
    local state=$1 pid
    pid=$(prometheus_pid "$state") || {
        rm -f "$state/prometheus.pid"
        return 0
    }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$state/prometheus.pid"
}
