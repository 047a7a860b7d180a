#!/usr/bin/env bash
# Installs what QuorumKV needs to build and test on Debian, when it is missing:
# OpenSSL and RocksDB development files (reached through SwiftPM C module maps), and python3 (the
# symbol-graph checks of scripts/docs.sh).
set -euo pipefail

packages=(libssl-dev librocksdb-dev python3)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}" >&2
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: swift is not on PATH (Swift 6.3 or later is needed; on this image it is /opt/swift/usr/bin)" >&2
    exit 1
fi
