#!/usr/bin/env bash
# Builds kvd, kvctl and kvbench for release (in .build-release, apart from the debug build the tests
# use) and prints the folder holding them: `bin=$(scripts/release-build.sh)`. The benchmark scripts
# (bench.sh, compare.sh, cpu-per-op.sh) measure these builds. Build output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
for product in kvd kvctl kvbench; do
    swift build -c release --scratch-path .build-release --product "$product" >&2
done
swift build -c release --scratch-path .build-release --show-bin-path
