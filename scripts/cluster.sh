#!/usr/bin/env bash
# A local QuorumKV cluster on loopback: node nI listens on 127.0.0.(10+I):7411 and serves its
# Prometheus metrics on https://127.0.0.(10+I):9411/metrics (mutual TLS), with its own
# certificate and data folder under .cluster/, all sharing .cluster/cluster.yaml (replication
# factor min(3, N), or QUORUMKV_RF). Writes .cluster/env for an admin kvctl.
#
# Two overrides, for running a second cluster beside the default one (the defaults are as above):
#   QUORUMKV_CLUSTER_DIR         the folder instead of .cluster/ (an absolute path, or relative to the
#                                repository); the addresses are fixed when its certificates are issued
#   QUORUMKV_CLUSTER_FIRST_HOST  the last address byte of n1 (11): nI listens on 127.0.0.(FIRST_HOST-1+I).
#                                The folder keeps it (first-host): later commands on the folder use it
#                                without being told, and refuse another
#
#   scripts/cluster.sh start N      write cluster.yaml and certificates (once), start n1..nN (less the
#                                   nodes removed since, plus those added since), wait until they answer
#   scripts/cluster.sh stop         stop every node (SIGTERM, then SIGKILL after 10 s)
#   scripts/cluster.sh kill ID      SIGKILL one node (e.g. n2)
#   scripts/cluster.sh restart ID   stop one node if running, start it again
#   scripts/cluster.sh status       kvctl status for every node
#   scripts/cluster.sh add          start one more node (next id and address) and join it (kvctl join)
#   scripts/cluster.sh remove ID    decommission a node (kvctl leave), then stop it and set its folder aside
#
# After add/remove, cluster.yaml still lists the first nodes: the nodes keep the current map (epoch
# and members) in their data folders and hand it to every client, so the file only seeds them; kvctl
# join and leave set its `seeds:` to the members' addresses, which a client asks too.
#
# Binaries come from `swift build` (built if missing); set QUORUMKV_BIN to use another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${QUORUMKV_CLUSTER_DIR:-$root/.cluster}
[[ "$dir" == /* ]] || dir="$root/$dir"
first_host=${QUORUMKV_CLUSTER_FIRST_HOST:-11}
# The folder's certificates name the addresses it was set up with: a restart elsewhere would not answer.
if [[ -f "$dir/first-host" ]]; then
    kept=$(<"$dir/first-host")
    if [[ -z "${QUORUMKV_CLUSTER_FIRST_HOST:-}" ]]; then
        first_host=$kept
    elif [[ "$first_host" != "$kept" ]]; then
        echo "cluster.sh: $dir was set up with QUORUMKV_CLUSTER_FIRST_HOST=$kept (its certificates name" \
            "those addresses), not $first_host" >&2
        exit 64
    fi
fi
[[ "$first_host" =~ ^[0-9]+$ ]] && ((first_host >= 1 && first_host <= 254)) || {
    echo "cluster.sh: QUORUMKV_CLUSTER_FIRST_HOST (or $dir/first-host) must be 1..254, not '$first_host'" >&2
    exit 64
}
port=7411
metrics_port=9411

bin=${QUORUMKV_BIN:-}
if [[ -z "$bin" ]]; then
    bin=$(swift build --show-bin-path)
    if [[ ! -x "$bin/kvd" || ! -x "$bin/kvctl" ]]; then
        swift build --product kvd >&2
        swift build --product kvctl >&2
    fi
fi
kvctl="$bin/kvctl"
kvd="$bin/kvd"

address_of() { echo "127.0.0.$((first_host - 1 + ${1#n}))"; }

# The most nodes the addresses allow: 200, fewer when n1 starts above 127.0.0.55 (nI must stay <= .254).
id_max=$((255 - first_host < 200 ? 255 - first_host : 200))

valid_id() {
    [[ "$1" =~ ^n[0-9]+$ ]] && ((${1#n} >= 1 && ${1#n} <= id_max)) || {
        echo "cluster.sh: node id must be n1..n$id_max, not '$1'" >&2
        exit 64
    }
}

ensure_certs() {
    local count=$1
    mkdir -p "$dir/certs"
    echo "$first_host" >"$dir/first-host"
    [[ -f "$dir/certs/ca-key.pem" ]] || "$kvctl" certs init --dir "$dir/certs" >&2
    [[ -f "$dir/certs/admin.pem" ]] || "$kvctl" certs issue --dir "$dir/certs" --role admin --name admin >&2
    [[ -f "$dir/certs/client.pem" ]] || "$kvctl" certs issue --dir "$dir/certs" --role client --name client >&2
    for ((i = 1; i <= count; i++)); do
        [[ -f "$dir/certs/n$i.pem" ]] ||
            "$kvctl" certs issue --dir "$dir/certs" --role node --name "n$i" --ip "$(address_of "n$i")" >&2
    done
}

pid_of() {
    local file="$dir/$1/kvd.pid"
    [[ -f "$file" ]] || return 1
    local pid
    pid=$(cat "$file")
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

start_node() {
    local id=$1
    local address
    address=$(address_of "$id")
    if pid_of "$id" >/dev/null; then
        echo "cluster.sh: $id is already running" >&2
        return 0
    fi
    mkdir -p "$dir/$id"
    [[ -f "$dir/certs/$id.pem" ]] ||
        "$kvctl" certs issue --dir "$dir/certs" --role node --name "$id" --ip "$address" >&2
    nohup "$kvd" --id "$id" --listen "$address:$port" --data "$dir/$id/data" --cluster "$dir/cluster.yaml" \
        --ca "$dir/certs/ca.pem" --cert "$dir/certs/$id.pem" --key "$dir/certs/$id-key.pem" \
        --metrics "$address:$metrics_port" >>"$dir/$id/kvd.log" 2>&1 </dev/null &
    echo $! >"$dir/$id/kvd.pid"
}

wait_node() {
    local id=$1
    local address
    address=$(address_of "$id")
    for _ in $(seq 1 150); do
        # `ring` fetches the cluster map from this node alone: it answers iff the node is up.
        if "$kvctl" ring --endpoints "$address:$port" --ca "$dir/certs/ca.pem" \
            --cert "$dir/certs/admin.pem" --key "$dir/certs/admin-key.pem" --timeout 1 >/dev/null 2>&1; then
            echo "cluster.sh: $id up on $address:$port" >&2
            return 0
        fi
        if ! pid_of "$id" >/dev/null; then
            echo "cluster.sh: $id exited; last lines of $dir/$id/kvd.log:" >&2
            tail -n 5 "$dir/$id/kvd.log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "cluster.sh: $id did not answer within 30 s (see $dir/$id/kvd.log)" >&2
    return 1
}

stop_node() {
    local id=$1 signal=${2:-TERM}
    local pid
    pid=$(pid_of "$id") || return 0
    kill "-$signal" "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$id/kvd.pid"
}

node_ids() {
    local id
    for path in "$dir"/n*/; do
        [[ -d "$path" ]] || continue
        id=$(basename "$path")
        [[ "$id" =~ ^n[0-9]+$ ]] && echo "$id"
    done | sort -V
}

write_cluster_file() {
    local count=$1
    local file="$dir/cluster.yaml"
    if [[ -f "$file" ]]; then
        local existing
        existing=$(grep -c '^  - id: ' "$file")
        if ((existing != count)); then
            echo "cluster.sh: $file has $existing nodes, not $count; 'scripts/cluster.sh stop && rm -rf $dir' to start over" >&2
            exit 1
        fi
        return 0
    fi
    local rf=${QUORUMKV_RF:-$((count < 3 ? count : 3))}
    mkdir -p "$dir"
    {
        echo "# Written by scripts/cluster.sh: a local cluster of $count nodes on loopback."
        echo "cluster-id: quorumkv"
        echo "replication-factor: $rf"
        echo "nodes:"
        for ((i = 1; i <= count; i++)); do
            echo "  - id: n$i"
            echo "    address: $(address_of "n$i"):$port"
        done
    } >"$file"
}

write_env() {
    local endpoints=()
    for id in $(node_ids); do endpoints+=("$(address_of "$id"):$port"); done
    {
        echo "# Source this file for an admin kvctl against the local cluster."
        echo "export QUORUMKV_CLUSTER=$dir/cluster.yaml"
        echo "export QUORUMKV_ENDPOINTS=$(IFS=,; echo "${endpoints[*]}")"
        echo "export QUORUMKV_CA=$dir/certs/ca.pem"
        echo "export QUORUMKV_CERT=$dir/certs/admin.pem"
        echo "export QUORUMKV_KEY=$dir/certs/admin-key.pem"
        echo "export PATH=$bin:\$PATH"
    } >"$dir/env"
}

command=${1:-}
case "$command" in
start)
    count=${2:-3}
    [[ "$count" =~ ^[0-9]+$ ]] && ((count >= 1 && count <= id_max)) || {
        echo "cluster.sh: start takes a node count between 1 and $id_max" >&2
        exit 64
    }
    write_cluster_file "$count"
    ensure_certs "$count"
    # The first nodes, less those removed since, and every node added since (it has a folder).
    ids=$({
        for ((i = 1; i <= count; i++)); do [[ -d "$dir/n$i.removed" ]] || echo "n$i"; done
        node_ids
    } | sort -V -u)
    for id in $ids; do start_node "$id"; done
    for id in $ids; do wait_node "$id"; done
    write_env
    echo "cluster.sh: $(echo $ids | wc -w) node(s) running ($(echo $ids)); 'source $dir/env' then 'kvctl status'" >&2
    ;;
stop)
    for id in $(node_ids); do stop_node "$id" TERM; done
    echo "cluster.sh: stopped" >&2
    ;;
kill)
    valid_id "${2:-}"
    pid_of "$2" >/dev/null || {
        echo "cluster.sh: $2 is not running in $dir (set QUORUMKV_CLUSTER_DIR for another cluster)" >&2
        exit 1
    }
    stop_node "$2" KILL
    echo "cluster.sh: killed $2" >&2
    ;;
restart)
    valid_id "${2:-}"
    [[ -d "$dir/$2" ]] || {
        echo "cluster.sh: $2 is not a node of this cluster (no folder $dir/$2$([[ -d "$dir/$2.removed" ]] && echo "; it was removed"))" >&2
        exit 1
    }
    stop_node "$2" TERM
    start_node "$2"
    wait_node "$2"
    write_env
    ;;
status)
    # shellcheck disable=SC1091
    source "$dir/env"
    "$kvctl" status
    ;;
add)
    [[ -f "$dir/cluster.yaml" ]] || {
        echo "cluster.sh: no cluster yet: 'scripts/cluster.sh start N' first" >&2
        exit 1
    }
    last=0
    for id in $(node_ids) $(cd "$dir" && ls -d n*.removed 2>/dev/null | sed 's/\.removed$//'); do
        ((${id#n} > last)) && last=${id#n}
    done
    id="n$((last + 1))"
    valid_id "$id"
    start_node "$id"
    wait_node "$id"
    write_env
    # shellcheck disable=SC1091
    source "$dir/env"
    "$kvctl" join --node "$id" --address "$(address_of "$id"):$port"
    echo "cluster.sh: $id joined" >&2
    ;;
remove)
    valid_id "${2:-}"
    pid_of "$2" >/dev/null || {
        echo "cluster.sh: $2 is not running" >&2
        exit 1
    }
    # shellcheck disable=SC1091
    source "$dir/env"
    "$kvctl" leave "$2"
    stop_node "$2" TERM
    rm -rf "$dir/$2.removed"
    mv "$dir/$2" "$dir/$2.removed"
    write_env
    echo "cluster.sh: $2 left the cluster and stopped (its folder is $dir/$2.removed)" >&2
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
    exit 64
    ;;
esac
