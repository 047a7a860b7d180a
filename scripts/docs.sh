#!/usr/bin/env bash
# Builds the SDK's DocC documentation (Sources/KVClient/KVClient.docc and the doc comments) with
# warnings as errors, then checks that every public symbol of KVClient has a doc comment: DocC
# itself does not warn about a missing one. The archive lands in
# .build/plugins/Swift-DocC/outputs/KVClient.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."

swift package --disable-sandbox generate-documentation --target KVClient --warnings-as-errors
symbols=$(find .build -path '*extracted-symbols*' -name 'KVClient*.symbols.json')
# shellcheck disable=SC2086
python3 - $symbols <<'PYTHON'
import json, sys
missing = []
for path in sys.argv[1:]:
    with open(path) as file:
        graph = json.load(file)
    for symbol in graph["symbols"]:
        if symbol["accessLevel"] in ("public", "open") and not symbol.get("docComment"):
            missing.append(".".join(symbol["pathComponents"]) + " (" + symbol["kind"]["displayName"] + ")")
if missing:
    print("docs.sh: public symbols of KVClient without a doc comment:", *missing, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("docs.sh: every public symbol of KVClient is documented", file=sys.stderr)
PYTHON
