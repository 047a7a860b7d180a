#!/usr/bin/env bash
# Builds the SDK's DocC documentation (Sources/KVClient/KVClient.docc and the doc comments) with
# warnings as errors, then checks in the extracted symbol graph that every public symbol of KVClient
# has a doc comment (DocC itself does not warn about a missing one) and that no public declaration
# names a type of the package's other modules (KVCore, KVWire, KVRPC, KVTLS, ...): `import KVClient`
# is all an application needs, and the transport and wire stay internal. The archive lands in
# .build/plugins/Swift-DocC/outputs/KVClient.doccarchive.
set -euo pipefail
cd "$(dirname "$0")/.."

swift package --disable-sandbox generate-documentation --target KVClient --warnings-as-errors
symbols=$(find .build -path '*extracted-symbols*' -name 'KVClient*.symbols.json')
# shellcheck disable=SC2086
python3 - $symbols <<'PYTHON'
import json, sys
# Mangled module names of the package's modules other than KVClient.
internal = ("s:6KVCore", "s:6KVWire", "s:5KVRPC", "s:5KVTLS", "s:8KVConfig", "s:9KVCluster", "s:8KVBackup",
            "s:9KVStorage", "s:6KVNode")
missing, leaking = [], []
for path in sys.argv[1:]:
    with open(path) as file:
        graph = json.load(file)
    for symbol in graph["symbols"]:
        if symbol["accessLevel"] not in ("public", "open"):
            continue
        name = ".".join(symbol["pathComponents"]) + " (" + symbol["kind"]["displayName"] + ")"
        if not symbol.get("docComment"):
            missing.append(name)
        for fragment in symbol.get("declarationFragments", []):
            if fragment.get("preciseIdentifier", "").startswith(internal):
                leaking.append(name + ": " + fragment["spelling"])
if missing:
    print("docs.sh: public symbols of KVClient without a doc comment:", *missing, sep="\n  ", file=sys.stderr)
if leaking:
    print("docs.sh: public declarations naming an internal module's type:", *leaking, sep="\n  ", file=sys.stderr)
if missing or leaking:
    sys.exit(1)
print("docs.sh: every public symbol of KVClient is documented and names only public types", file=sys.stderr)
PYTHON
