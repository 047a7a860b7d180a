#!/usr/bin/env bash
# Audits a running node's TLS with testssl.sh (Debian's `testssl.sh`, installed when missing):
#   scripts/tls-audit.sh            starts a node of its own on 127.0.0.110:7411 and audits it
#   scripts/tls-audit.sh HOST:PORT CA CERT KEY   audits a running node with that client certificate
# Fails unless TLS 1.3 is the only protocol offered, a handshake without a client certificate is
# refused, and key exchange is X25519 or P-256 only. Prints a summary (docs/security.md records one).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v testssl >/dev/null 2>&1; then
    echo "tls-audit: installing testssl.sh" >&2
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq testssl.sh >/dev/null
fi

work=$(mktemp -d)
node_pid=
cleanup() {
    if [[ -n $node_pid ]]; then kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; fi
    [[ -n ${KEEP_AUDIT:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

if (($# == 4)); then
    target=$1 ca=$2 cert=$3 key=$4
else
    scripts/setup.sh
    swift build --product kvd >&2 && swift build --product kvctl >&2
    bin=$(swift build --show-bin-path)
    host=127.0.0.110
    target=$host:7411
    "$bin/kvctl" certs init --dir "$work/certs" >&2
    "$bin/kvctl" certs issue --dir "$work/certs" --role node --name n1 --ip "$host" >&2
    "$bin/kvctl" certs issue --dir "$work/certs" --role client --name client >&2
    ca=$work/certs/ca.pem cert=$work/certs/client.pem key=$work/certs/client-key.pem
    "$bin/kvd" --id n1 --listen "$target" --data "$work/data" --ca "$ca" --cert "$work/certs/n1.pem" \
        --key "$work/certs/n1-key.pem" >"$work/kvd.log" 2>&1 &
    node_pid=$!
    for _ in $(seq 1 100); do
        "$bin/kvctl" status --endpoints "$target" --ca "$ca" --cert "$cert" --key "$key" --timeout 1 \
            >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

failures=()
# Protocols and key exchange: testssl.sh 3.0 cannot present a client certificate, but a TLS 1.3 server
# shows its protocol and key exchange in its ServerHello, before it asks for one.
testssl --quiet --color 0 --warnings off --protocols --fs \
    --jsonfile "$work/audit.json" "$target" >"$work/audit.txt" 2>&1 || true
offered() { python3 - "$work/audit.json" "$1" <<'PY'
import json, sys
findings = {entry["id"]: entry["finding"] for entry in json.load(open(sys.argv[1]))}
print(findings.get(sys.argv[2], "missing"))
PY
}
for protocol in SSLv2 SSLv3 TLS1 TLS1_1 TLS1_2; do
    finding=$(offered "$protocol")
    [[ $finding == "not offered"* ]] || failures+=("$protocol: $finding")
done
tls13=$(offered TLS1_3)
[[ $tls13 == offered* ]] || failures+=("TLS1_3: $tls13")
groups=$(offered PFS_ECDHE_curves)
[[ $groups == "missing" ]] && groups=$(offered FS_ECDHE_curves)
[[ $groups == "missing" ]] && failures+=("testssl.sh reported no key exchange groups")
for group in ffdhe2048 ffdhe3072 ffdhe4096 ffdhe6144 ffdhe8192 secp384r1 secp521r1 X448 sect; do
    [[ $groups != *"$group"* ]] || failures+=("key exchange group $group offered")
done
# Without a client certificate: no session.
if openssl s_client -connect "$target" -tls1_3 -CAfile "$ca" </dev/null 2>&1 |
    grep -q "^    Protocol  : TLSv1.3" && ! openssl s_client -connect "$target" -tls1_3 -CAfile "$ca" </dev/null 2>&1 |
    grep -qi "alert certificate required\|alert handshake failure"; then
    failures+=("a handshake without a client certificate was not refused")
fi

echo "tls-audit of $target (testssl.sh $(testssl --version 2>/dev/null | grep -o '3\.[0-9.]*' | head -1)):"
for protocol in SSLv2 SSLv3 TLS1 TLS1_1 TLS1_2 TLS1_3; do echo "  $protocol: $(offered "$protocol")"; done
echo "  key exchange groups: $groups"
echo "  without a client certificate: refused (alert certificate required)"
if ((${#failures[@]} > 0)); then
    printf 'tls-audit: FAILED: %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "tls-audit: passed"
