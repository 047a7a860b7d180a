#!/usr/bin/env bash
# From a fresh machine to a running QuorumKV node you can talk to over mutual TLS:
# installs what is missing, builds, issues certificates, starts node n1 on 127.0.0.11:7411,
# and shows put / get / delete working. The node keeps running: `scripts/cluster.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "demo: building (the first build takes a few minutes)" >&2
swift build --product kvd
swift build --product kvctl
scripts/cluster.sh start "${1:-1}"

# shellcheck disable=SC1091
source .cluster/env
set -x
kvctl status
kvctl put greeting "hello, quorum"
kvctl get greeting; echo
kvctl get greeting --json
echo -n "binary-safe value from stdin" | kvctl put from-stdin
kvctl get from-stdin; echo
kvctl delete greeting
kvctl get greeting || echo "exit code $? (2 = not found)"
