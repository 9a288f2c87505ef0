#!/usr/bin/env bash
# smoke.sh BUILD -- the bench's smoke test (ctest label bench): every scenario
# of bench/run.sh at its tiny size with the binaries of BUILD; passes when
# each scenario printed one JSON line that parses, without an error, with
# positive figures. Not a performance assertion: targets may be missed.
set -euo pipefail
BUILD=$(cd "${1:?usage: smoke.sh BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mktemp "${TMPDIR:-/tmp}/tb-bench-smoke-XXXXXX")
trap 'rm -f "$OUT"' EXIT
rc=0
"$HERE/run.sh" --tiny --no-build --build-dir "$BUILD" >"$OUT" || rc=$?
cat "$OUT"
[ $rc = 0 ] || { echo "FAIL: run.sh exited $rc" >&2; exit 1; }
python3 - "$OUT" <<'PY'
import json, sys
want = ["raw_zmq_relay", "hub_relay", "e2e_sync", "e2e_latency", "catch_up", "sm2", "fanout", "hub_memory"]
seen = {}
for line in open(sys.argv[1]):
    if not line.startswith("{"):
        continue                      # the table
    j = json.loads(line)              # must parse
    seen[j["scenario"]] = j
bad = []
for s in want:
    j = seen.get(s)
    if j is None:
        bad.append(f"{s}: no JSON line"); continue
    if "error" in j:
        bad.append(f"{s}: {j['error']}"); continue
    for k in ("records", "seconds", "records_per_s", "rss_mib"):
        v = j.get(k)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
            bad.append(f"{s}: {k} = {v!r}, want a positive number")
    for k in ("p50_ms", "p99_ms"):
        v = j.get(k, "missing")
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            bad.append(f"{s}: {k} = {v!r}, want a number >= 0 or null")
    if j.get("target_met") not in (True, False, None):
        bad.append(f"{s}: target_met = {j.get('target_met')!r}")
if bad:
    print("FAIL bench smoke:\n  " + "\n  ".join(bad), file=sys.stderr)
    sys.exit(1)
print(f"PASS bench smoke: {len(want)} scenarios")
PY
