#!/usr/bin/env bash
# Restarts every node of a QuorumKV cluster one at a time, with no failed requests:
#
#   scripts/rolling-restart.sh [--restart 'COMMAND'] [--nodes n1,n2,...] [--drain-timeout S] [--wait-timeout S]
#
# For each node: `kvctl drain ID` (it refuses new requests with shuttingDown, so clients answer from
# the other replicas and hand its writes off as hints, finishes those in flight and flushes), then
# COMMAND with {id} replaced by the node's id, then `kvctl wait-ready ID`: the next node is drained
# only once this one takes requests again, holds the newest map, every other member answers and none
# suspects it, and no member holds hints for it. The script stops at the first node that does not
# come back (exit 1), so at most one node is ever out.
#
# COMMAND must stop the node (SIGTERM) and start it again, e.g. 'ssh {id}.example systemctl restart
# kvd' on real hosts; the default, 'scripts/cluster.sh restart {id}', is the local cluster's. The
# nodes default to every member of the cluster map that is not down or removed. kvctl's connection
# settings come from the environment (QUORUMKV_CLUSTER, QUORUMKV_CA, QUORUMKV_CERT, QUORUMKV_KEY with
# an admin certificate; `source .cluster/env` for the local cluster). To upgrade: install the new
# binaries first, then run this.
set -euo pipefail
cd "$(dirname "$0")/.."

restart='scripts/cluster.sh restart {id}'
nodes=''
drain_timeout=10
wait_timeout=300
usage() {
    echo "usage: scripts/rolling-restart.sh [--restart 'COMMAND with {id}'] [--nodes n1,n2,...] [--drain-timeout S] [--wait-timeout S]" >&2
    exit 64
}
while (($# > 0)); do
    case "$1" in
    --restart) restart=${2:-}; shift 2 || usage ;;
    --nodes) nodes=${2:-}; shift 2 || usage ;;
    --drain-timeout) drain_timeout=${2:-}; shift 2 || usage ;;
    --wait-timeout) wait_timeout=${2:-}; shift 2 || usage ;;
    *) usage ;;
    esac
done
[[ "$restart" == *"{id}"* ]] || { echo "rolling-restart: --restart must contain {id}" >&2; exit 64; }

kvctl=${KVCTL:-kvctl}
command -v "$kvctl" >/dev/null || { echo "rolling-restart: $kvctl is not on PATH (source .cluster/env, or set KVCTL)" >&2; exit 1; }

if [[ -z "$nodes" ]]; then
    nodes=$("$kvctl" cluster show --json | python3 -c '
import json, sys
print(",".join(n["node"] for n in json.load(sys.stdin)["nodes"] if n["state"] not in ("down", "removed")))')
fi
IFS=, read -r -a ids <<<"$nodes"
((${#ids[@]} > 0)) || { echo "rolling-restart: no nodes to restart" >&2; exit 1; }

# Every node must be ready before the first one goes: a restart with another node out could cost
# a quorum.
for id in "${ids[@]}"; do
    "$kvctl" wait-ready "$id" --wait-timeout "$wait_timeout"
done
for id in "${ids[@]}"; do
    started=$SECONDS
    echo "rolling-restart: $id: draining" >&2
    "$kvctl" drain "$id" --drain-timeout "$drain_timeout" >&2
    echo "rolling-restart: $id: restarting" >&2
    if ! bash -c "${restart//\{id\}/$id}"; then
        echo "rolling-restart: the restart command failed for $id; stopping here" >&2
        exit 1
    fi
    if ! "$kvctl" wait-ready "$id" --wait-timeout "$wait_timeout" >&2; then
        echo "rolling-restart: $id did not come back ready; stopping here" >&2
        exit 1
    fi
    echo "rolling-restart: $id: back in service after $((SECONDS - started)) s" >&2
done
echo "rolling-restart: restarted ${ids[*]}" >&2
