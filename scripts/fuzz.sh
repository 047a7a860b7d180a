#!/usr/bin/env bash
# Fuzzes the wire decoder (every frame and message decoder) with libFuzzer for SECONDS (default 60):
#   scripts/fuzz.sh [SECONDS]
# FUZZ_CONFIGURATION=release builds the target optimised (several times the executions per second).
# The target is `kvfuzz` built with -sanitize=fuzzer,address (in .build-fuzz/), seeded with the golden
# vectors of proto-spec/vectors and the regression inputs of Tests/KVWireTests/FuzzRegressions. A crash
# is copied into Tests/KVWireTests/FuzzRegressions (commit it: the suite replays every one) and the
# script fails. It prints the executions reached.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 64; }

scripts/setup.sh
scratch=.build-fuzz
configuration=${FUZZ_CONFIGURATION:-debug}
# lld: gold crashes on the sanitizer runtime's debug information.
flags=(-c "$configuration" -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
    -Xswiftc -Xclang-linker -Xswiftc -fuse-ld=lld)
swift build --scratch-path "$scratch" --product kvfuzz "${flags[@]}" >&2
target=$(swift build --scratch-path "$scratch" -c "$configuration" --show-bin-path)/kvfuzz

corpus=$scratch/corpus
crashes=$scratch/crashes
mkdir -p "$corpus" "$crashes"
# Seeds: each golden vector as binary (its hex lines without the comments).
python3 - "$corpus" proto-spec/vectors/*.hex <<'PY'
import os, sys
corpus = sys.argv[1]
for path in sys.argv[2:]:
    text = "".join(line for line in open(path) if not line.startswith("#"))
    name = os.path.basename(path)[: -len(".hex")]
    open(os.path.join(corpus, name), "wb").write(bytes.fromhex("".join(text.split())))
PY
cp Tests/KVWireTests/FuzzRegressions/* "$corpus/" 2>/dev/null || true

log=$scratch/fuzz.log
status=0
"$target" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1 || status=$?
executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
if ((status != 0)); then
    tail -n 40 "$log" >&2
    for crash in "$crashes"/*; do
        [[ -f $crash ]] || continue
        cp "$crash" Tests/KVWireTests/FuzzRegressions/
        echo "fuzz: saved $(basename "$crash") in Tests/KVWireTests/FuzzRegressions" >&2
    done
    echo "fuzz: the decoder failed after $executions executions (log: $log)" >&2
    exit 1
fi
echo "fuzz: $executions executions in $seconds s without a crash ($(ls "$corpus" | wc -l) inputs in the corpus)"
