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
alerts_pid=
half_pid=
trap 'for pid in "$fuzz_pid" "$alerts_pid" "$half_pid"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; done; printf "test.sh: %s\n" "${timings[@]}" >&2' EXIT

step setup scripts/setup.sh
step lint swift format lint --strict -r Sources Tests Package.swift
step build swift build --build-tests
# The SDK's DocC documentation, warnings as errors, and a doc comment on every public symbol.
step docs scripts/docs.sh
# Unit and in-process tests run in parallel; the simulator's runs (which keep both cores busy) after
# them, so that they do not starve the TLS and RPC tests' event loops; the tests that start real kvd
# processes last, in two halves side by side, each one test at a time (see
# Tests/ClusterTests/RealProcessTests.swift), waiting for events with deadlines that leave room for a
# busy machine.
step "unit tests" swift test --skip-build --skip ClusterTests --skip SimulationTests
step simulator swift test --skip-build --filter SimulationTests
# A short bounded libFuzzer pass over the wire decoder (its own build in .build-fuzz/), beside the
# real-process tests: they mostly wait on timers and sockets, and the machine's idle cores take the
# fuzzer's build and run (CI's 20 minutes); the tests keep working on a busy machine, as they must.
# Beside them too: the alerting rules' checks and their live run (scripts/check-alerts.sh --live: 4
# nodes of its own on 127.0.0.145-148 and a Prometheus that must see "2 nodes down" fire), which
# mostly waits for Prometheus's `for:`. Binaries named here: `swift build --show-bin-path` would wait
# for the lock `swift test` holds.
mkdir -p .build-fuzz
scripts/fuzz.sh 30 >.build-fuzz/test.log 2>&1 &
fuzz_pid=$!
bin=$(swift build --show-bin-path)
QUORUMKV_BIN=$bin scripts/check-alerts.sh --live >.build-fuzz/alerts.log 2>&1 &
alerts_pid=$!
# The real-process tests' two halves, each in a test process of its own (one `swift test` would hold
# the build folder's lock for the other): the second half's output is kept and shown at its end.
real_processes() {
    local tests=("$bin/QuorumKVPackageTests.xctest" --testing-library swift-testing) first=0 second=0
    "${tests[@]}" --filter RealProcessTests/SecondHalf/ >.build-fuzz/second-half.log 2>&1 &
    half_pid=$!
    "${tests[@]}" --filter ClusterTests --skip RealProcessTests/SecondHalf/ || first=$?
    wait "$half_pid" || second=$?
    half_pid=
    echo "test.sh: the second half of the real-process tests (Tests/ClusterTests/RealProcessTests.swift):" >&2
    cat .build-fuzz/second-half.log
    ((first == 0 && second == 0))
}
step "real processes (fuzzing and alert checks beside them)" real_processes
background_result() {
    local pid=$1 log=$2 status=0
    wait "$pid" || status=$?
    tail -n 3 "$log" >&2
    return "$status"
}
step "fuzz (its end)" background_result "$fuzz_pid" .build-fuzz/test.log
fuzz_pid=
step "alert checks (their end)" background_result "$alerts_pid" .build-fuzz/alerts.log
alerts_pid=
