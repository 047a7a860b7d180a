#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, builds with warnings as
# errors (set in Package.swift), checks formatting, and runs every test (unit, TLS over loopback,
# RPC, storage, and real kvd processes).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's wall time goes to stderr at its end, and all of them at the end of the run.
timings=()
step() {
    local name=$1 started=$SECONDS
    shift
    "$@"
    timings+=("$(printf '%5d s  %s' $((SECONDS - started)) "$name")")
    echo "test.sh: $name took $((SECONDS - started)) s" >&2
}
fuzz_pid=
trap '[[ -n "$fuzz_pid" ]] && kill "$fuzz_pid" 2>/dev/null; printf "test.sh: %s\n" "${timings[@]}" >&2' EXIT

step setup scripts/setup.sh
step lint swift format lint --strict -r Sources Tests Package.swift
step build swift build --build-tests
# Unit and in-process tests run in parallel; the simulator's runs (which keep both cores busy) after
# them, so that they do not starve the TLS and RPC tests' event loops; the tests that start real kvd
# processes last, one at a time (see Tests/ClusterTests/RealProcessTests.swift), waiting for events
# with deadlines that leave room for a busy machine.
step "unit tests" swift test --skip-build --skip ClusterTests --skip SimulationTests
step simulator swift test --skip-build --filter SimulationTests
# A short bounded libFuzzer pass over the wire decoder (its own build in .build-fuzz/), beside the
# real-process tests: they mostly wait on timers and sockets, and the machine's idle cores take the
# fuzzer's build and run (CI's 20 minutes); the tests keep working on a busy machine, as they must.
mkdir -p .build-fuzz
scripts/fuzz.sh 30 >.build-fuzz/test.log 2>&1 &
fuzz_pid=$!
step "real processes (fuzzing beside them)" swift test --skip-build --filter ClusterTests
fuzz_result() {
    local status=0
    wait "$fuzz_pid" || status=$?
    fuzz_pid=
    tail -n 3 .build-fuzz/test.log >&2
    return "$status"
}
step "fuzz (its end)" fuzz_result
