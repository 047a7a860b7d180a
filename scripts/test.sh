#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, builds with warnings as
# errors (set in Package.swift), checks formatting, and runs every test (unit, TLS over loopback,
# RPC, storage, and real kvd processes).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
swift format lint --strict -r Sources Tests Package.swift
swift build --build-tests
# A short bounded libFuzzer pass over the wire decoder (its own build in .build-fuzz/).
scripts/fuzz.sh 30
# Unit and in-process tests run in parallel; the tests that start real kvd processes run after them,
# one at a time (see Tests/ClusterTests/RealProcessTests.swift), so their deadlines are not noise.
swift test --skip-build --skip ClusterTests
swift test --skip-build --filter ClusterTests
