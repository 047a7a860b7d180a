#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, builds with warnings as
# errors (set in Package.swift), checks formatting, and runs every test (unit, TLS over loopback,
# RPC, storage, and real kvd processes).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift format lint --strict -r Sources Tests Package.swift
swift build --build-tests
swift test --skip-build 2>&1 | tee .build/test-output.txt
