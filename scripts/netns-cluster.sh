#!/usr/bin/env bash
# A QuorumKV cluster across several "hosts" on one machine: each node in its own Linux network
# namespace (qkv-h1, qkv-h2, …) with its own address 10.77.0.(10+I), linked by a bridge (qkv-br0,
# 10.77.0.1 in the root namespace, where clients run). Each node's certificate names its host's IP,
# as on real hosts. Needs root (namespaces, veth pairs and bridges); the state lives in .netns/.
#
#   scripts/netns-cluster.sh up N        create N hosts, certificates and cluster.yaml (N=3 unless
#                                        QUORUMKV_RF), start a node on each, wait until each answers
#   scripts/netns-cluster.sh cut hI      cut host I off the network (its link goes down)
#   scripts/netns-cluster.sh heal hI     bring its link back
#   scripts/netns-cluster.sh rate hI R   limit host I's outgoing traffic to R (tc tbf, e.g. 1mbit);
#                                        `rate hI off` removes the limit
#   scripts/netns-cluster.sh delay hI MS [LOSS]
#                                        delay every message between host I and the others (and the
#                                        clients) by MS milliseconds each way, and "lose" LOSS percent
#                                        of them (a lost one costs a 200 ms retransmission, as in TCP);
#                                        `delay hI 0` removes it. Injected in user space by each
#                                        node's transport (QUORUMKV_LINK_FAULTS, a test-only layer)
#   scripts/netns-cluster.sh kill hI     SIGKILL host I's node
#   scripts/netns-cluster.sh start hI    start host I's node again (after kill or wipe)
#   scripts/netns-cluster.sh wipe hI     SIGKILL host I's node and delete its data folder (a lost disk);
#                                        `start hI` then `kvctl repair --node nI` rebuild it
#   scripts/netns-cluster.sh status      kvctl status from the root namespace
#   scripts/netns-cluster.sh down        stop every node, remove the namespaces, the bridge and .netns/
#
# Writes .netns/env for an admin kvctl (QUORUMKV_NETNS_DIR sets another folder than .netns). With
# QUORUMKV_NETNS_OWNER=PID in the environment, `up` leaves a watcher that runs `down` once that
# process ends (tests set it, so that a crashed test leaves no namespace or node behind). This kernel
# has no sch_netem and the machine no iptables, so `delay` asks the nodes themselves to hold their
# writes (KVRPC's LinkFaults, armed by QUORUMKV_LINK_FAULTS=FILE, which `start` sets for every node).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=${QUORUMKV_NETNS_DIR:-$root/.netns}
port=7411
subnet=10.77.0
bridge=qkv-br0

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

fail() {
    echo "netns-cluster: $*" >&2
    exit 1
}
need_root() {
    [[ $(id -u) -eq 0 ]] || fail "needs root (network namespaces, veth pairs and a bridge)"
    command -v ip >/dev/null || fail "needs iproute2 ('apt-get install -y iproute2')"
}
host_index() {
    [[ "$1" =~ ^h([0-9]+)$ ]] && ((BASH_REMATCH[1] >= 1 && BASH_REMATCH[1] <= 200)) || {
        echo "netns-cluster: a host is h1..h200, not '$1'" >&2
        exit 64
    }
    echo "${BASH_REMATCH[1]}"
}
address_of() { echo "$subnet.$((10 + $1))"; }

up() {
    local count=$1 rf=${QUORUMKV_RF:-3}
    need_root
    [[ -d "$dir" ]] && fail "$dir exists: 'scripts/netns-cluster.sh down' first"
    ((count >= 1 && count <= 200)) || fail "up takes a host count between 1 and 200"
    ((rf > count)) && rf=$count
    mkdir -p "$dir/certs"
    echo "$count" >"$dir/hosts"
    ip link add "$bridge" type bridge
    ip addr add "$subnet.1/24" dev "$bridge"
    ip link set "$bridge" up
    "$kvctl" certs init --dir "$dir/certs" >&2
    "$kvctl" certs issue --dir "$dir/certs" --role admin --name admin >&2
    "$kvctl" certs issue --dir "$dir/certs" --role client --name client >&2
    {
        echo "# Written by scripts/netns-cluster.sh: $count hosts in network namespaces."
        echo "cluster-id: quorumkv-netns"
        echo "replication-factor: $rf"
        echo "nodes:"
    } >"$dir/cluster.yaml"
    local i address
    for ((i = 1; i <= count; i++)); do
        address=$(address_of "$i")
        ip netns add "qkv-h$i"
        ip link add "qkv-h$i-br" type veth peer name "qkv-h$i-eth"
        ip link set "qkv-h$i-br" master "$bridge" up
        ip link set "qkv-h$i-eth" netns "qkv-h$i"
        ip -n "qkv-h$i" addr add "$address/24" dev "qkv-h$i-eth"
        ip -n "qkv-h$i" link set "qkv-h$i-eth" up
        ip -n "qkv-h$i" link set lo up
        "$kvctl" certs issue --dir "$dir/certs" --role node --name "n$i" --ip "$address" >&2
        printf '  - id: n%d\n    address: %s:%d\n' "$i" "$address" "$port" >>"$dir/cluster.yaml"
    done
    if [[ -n "${QUORUMKV_NETNS_OWNER:-}" ]]; then
        [[ "$QUORUMKV_NETNS_OWNER" =~ ^[0-9]+$ ]] || fail "QUORUMKV_NETNS_OWNER must be a process id"
        nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; QUORUMKV_NETNS_DIR="$2" bash "$3" down' \
            watcher "$QUORUMKV_NETNS_OWNER" "$dir" "$root/scripts/netns-cluster.sh" >/dev/null 2>&1 &
    fi
    for ((i = 1; i <= count; i++)); do start_node "$i"; done
    for ((i = 1; i <= count; i++)); do wait_node "$i"; done
    {
        echo "# Source this file for an admin kvctl against the namespace cluster."
        echo "export QUORUMKV_CLUSTER=$dir/cluster.yaml"
        echo "export QUORUMKV_CA=$dir/certs/ca.pem"
        echo "export QUORUMKV_CERT=$dir/certs/admin.pem"
        echo "export QUORUMKV_KEY=$dir/certs/admin-key.pem"
        echo "export PATH=$bin:\$PATH"
    } >"$dir/env"
    echo "netns-cluster: $count hosts up ($subnet.11…); 'source .netns/env' then 'kvctl status'" >&2
}

start_node() {
    local i=$1
    mkdir -p "$dir/n$i"
    ip netns exec "qkv-h$i" env -u QUORUMKV_EXIT_WITH_PARENT QUORUMKV_LINK_FAULTS="$dir/n$i/link-faults" "$kvd" --id "n$i" --listen "$(address_of "$i"):$port" --data "$dir/n$i/data" \
        --cluster "$dir/cluster.yaml" --ca "$dir/certs/ca.pem" --cert "$dir/certs/n$i.pem" \
        --key "$dir/certs/n$i-key.pem" >>"$dir/n$i/kvd.log" 2>&1 </dev/null &
    echo $! >"$dir/n$i/kvd.pid"
}

wait_node() {
    local i=$1
    for _ in $(seq 1 150); do
        if "$kvctl" ring --endpoints "$(address_of "$i"):$port" --cluster-id quorumkv-netns --ca "$dir/certs/ca.pem" \
            --cert "$dir/certs/admin.pem" --key "$dir/certs/admin-key.pem" --timeout 1 >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$dir/n$i/kvd.pid")" 2>/dev/null || {
            tail -n 5 "$dir/n$i/kvd.log" >&2
            fail "n$i exited"
        }
        sleep 0.2
    done
    fail "n$i did not answer within 30 s (see $dir/n$i/kvd.log)"
}

# Sets (or with 0 ms and 0 % removes) the rule for ADDRESS in a node's link-faults file, atomically.
set_rule() {
    local file=$1 address=$2 millis=$3 loss=$4
    touch "$file"
    {
        awk -v a="$address" '$1 != a' "$file"
        [[ "$millis" != 0 || "$loss" != 0 ]] && echo "$address $millis $loss"
    } >"$file.new" || true
    mv "$file.new" "$file"
}

down() {
    need_root
    local pids=() i count=0
    [[ -f "$dir/hosts" ]] && count=$(cat "$dir/hosts")
    for ((i = 1; i <= count; i++)); do
        [[ -f "$dir/n$i/kvd.pid" ]] && pids+=("$(cat "$dir/n$i/kvd.pid")")
    done
    ((${#pids[@]} > 0)) && kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive == 0)) && break
        sleep 0.1
    done
    ((${#pids[@]} > 0)) && kill -KILL "${pids[@]}" 2>/dev/null || true
    # Every namespace and link this script may have made, also after a failed `up`.
    for namespace in $(ip netns list | awk '{print $1}' | grep '^qkv-h[0-9]*$' || true); do
        ip netns del "$namespace"
    done
    for link in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^qkv-' || true); do
        ip link del "$link" 2>/dev/null || true
    done
    rm -rf "$dir"
    echo "netns-cluster: down" >&2
}

command=${1:-}
case "$command" in
up)
    [[ "${2:-}" =~ ^[0-9]+$ ]] || { echo "usage: scripts/netns-cluster.sh up N" >&2; exit 64; }
    up "$2"
    ;;
cut)
    need_root
    i=$(host_index "${2:-}")
    ip link set "qkv-h$i-br" down
    echo "netns-cluster: h$i cut off" >&2
    ;;
heal)
    need_root
    i=$(host_index "${2:-}")
    ip link set "qkv-h$i-br" up
    echo "netns-cluster: h$i back on the network" >&2
    ;;
rate)
    need_root
    i=$(host_index "${2:-}")
    [[ -n "${3:-}" ]] || { echo "usage: scripts/netns-cluster.sh rate hI RATE|off" >&2; exit 64; }
    ip netns exec "qkv-h$i" tc qdisc del dev "qkv-h$i-eth" root 2>/dev/null || true
    if [[ "$3" != off ]]; then
        ip netns exec "qkv-h$i" tc qdisc add dev "qkv-h$i-eth" root tbf rate "$3" burst 32kbit latency 400ms
    fi
    echo "netns-cluster: h$i outgoing rate ${3}" >&2
    ;;
delay)
    i=$(host_index "${2:-}")
    millis=${3:-}
    loss=${4:-0}
    [[ "$millis" =~ ^[0-9]+$ && "$loss" =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        { echo "usage: scripts/netns-cluster.sh delay hI MS [LOSS_PERCENT]" >&2; exit 64; }
    count=$(cat "$dir/hosts")
    set_rule "$dir/n$i/link-faults" "*" "$millis" "$loss"
    for ((j = 1; j <= count; j++)); do
        ((j == i)) || set_rule "$dir/n$j/link-faults" "$(address_of "$i")" "$millis" "$loss"
    done
    echo "netns-cluster: h$i delayed ${millis} ms each way, ${loss} % lost" >&2
    ;;
kill | wipe)
    i=$(host_index "${2:-}")
    if [[ -f "$dir/n$i/kvd.pid" ]]; then
        pid=$(cat "$dir/n$i/kvd.pid")
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    [[ "$command" == wipe ]] && rm -rf "$dir/n$i/data"
    echo "netns-cluster: n$i $([[ "$command" == wipe ]] && echo "killed and its data deleted" || echo killed)" >&2
    ;;
start)
    need_root
    i=$(host_index "${2:-}")
    start_node "$i"
    wait_node "$i"
    ;;
status)
    # shellcheck disable=SC1091
    source "$dir/env"
    "$kvctl" status
    ;;
down)
    down
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | grep '^#' >&2
    exit 64
    ;;
esac
