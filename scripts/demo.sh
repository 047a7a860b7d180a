#!/usr/bin/env bash
# From a fresh machine to a running QuorumKV cluster you can talk to over mutual TLS:
# installs what is missing, builds, issues certificates, starts 4 nodes (N=3) on 127.0.0.11-14,
# shows put / get / delete, kills a node and shows quorum reads and writes going on, then brings it
# back, and scrapes n1's Prometheus metrics. The cluster keeps running: `scripts/cluster.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "demo: building (the first build takes a few minutes)" >&2
swift build --product kvd
swift build --product kvctl
scripts/cluster.sh start "${1:-4}"

# shellcheck disable=SC1091
source .cluster/env
set -x
kvctl status
kvctl put greeting "hello, quorum"
kvctl get greeting; echo
kvctl get greeting --json
echo -n "binary-safe value from stdin" | kvctl put from-stdin
kvctl get from-stdin; echo
kvctl ring greeting
kvctl delete greeting
kvctl get greeting || echo "exit code $? (2 = not found)"
kvctl put colour blue --consistency all
for node in $(kvctl ring colour --json | sed -E 's/.*"replicas":\[([^]]*)\].*/\1/; s/[",]/ /g'); do
    kvctl get colour --node "$node"; echo
done
scripts/cluster.sh kill n2
kvctl put colour green
kvctl get colour; echo
kvctl status || echo "exit code $? (1 = a node is down)"
scripts/cluster.sh restart n2
kvctl status
# Each node's Prometheus metrics, over mutual TLS (any certificate of the cluster CA):
if command -v curl >/dev/null; then
    curl -sS --cacert .cluster/certs/ca.pem --cert .cluster/certs/client.pem --key .cluster/certs/client-key.pem \
        https://127.0.0.11:9411/metrics | grep -E '^quorumkv_(requests_total|peer_up|hint_queue_size)'
fi
