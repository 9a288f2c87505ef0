#!/usr/bin/env bash
# quickstart.sh BUILD -- the README's first command as a newcomer runs it:
# `./deploy/quickstart.sh` (start), `status`, `stop`, `clean`, each with exit
# code 0. Start must show the three nodes connecting, the record crossing to
# 440000 and mps and the 1,000-record line; status must list the hub and the
# three nodes running (live tongban processes of this quick start); after stop
# no process of this quick start (daemon or PostgreSQL) may remain and status
# says so; clean removes the directory. Runs in a temporary directory
# (TB_QUICKSTART_DIR) with a free hub port (TB_QUICKSTART_PORT) and the
# binaries of BUILD, not rebuilt (TB_QUICKSTART_BUILD), so it neither touches
# /var/tmp/tongban-quickstart nor races a parallel ctest over the build tree.
set -euo pipefail
BUILD=$(cd "${1:?usage: quickstart.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
QS=$SRC/deploy/quickstart.sh

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tb-quickstart-XXXXXX")
export TB_QUICKSTART_DIR=$TMP/qs TB_QUICKSTART_BUILD=$BUILD
TB_QUICKSTART_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export TB_QUICKSTART_PORT

# PIDs of live processes whose command line names this quick start's directory.
ours() {
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = $$ ] && continue
    { tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null | grep -qF -- "$TB_QUICKSTART_DIR" && echo "$p"
  done
  return 0
}
cleanup() {
  "$QS" clean >/dev/null 2>&1 || true
  local p
  for p in $(ours); do kill -KILL "$p" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$TMP"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$TMP"/*.out; do [ -e "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  for f in "$TB_QUICKSTART_DIR"/log/*.log; do [ -e "$f" ] && { echo "--- $f" >&2; tail -n 10 "$f" >&2; }; done
  exit 1
}
# expect FILE REGEX WHAT: FILE has a line matching REGEX (ANSI colours removed).
expect() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | grep -Eq -- "$2" || fail "$3: no line matching /$2/ in $(basename "$1")"
}

# ---- start ----
rc=0
"$QS" >"$TMP/start.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "quickstart start exited $rc"
expect "$TMP/start.out" 'using the binaries in .*not rebuilt' "start did not use TB_QUICKSTART_BUILD"
if grep -q '2/7 building' "$TMP/start.out"; then fail "start rebuilt although TB_QUICKSTART_BUILD is set"; fi
for n in 110000 440000 mps; do
  expect "$TMP/start.out" "^node $n connected to the hub$" "node $n"
done
expect "$TMP/start.out" '^110000 INSERT residence_permit/qs-[0-9]+$' "the INSERT in Beijing"
for n in 440000 mps; do
  expect "$TMP/start.out" "^$n sees: residence_permit/qs-[0-9]+ .*\"holder\": \"张三\".*\(origin 110000\)$" "the record crossing to $n"
done
expect "$TMP/start.out" '^1,000 records signed, routed through the hub and applied in [0-9]+ ms$' "the 1,000 records line"
expect "$TMP/start.out" '^440000 issued licence 1\.2\.156\.3005\.2\.[0-9A-Z.]+ \(sealed with SM2/SM3\)' "the licence issued in 440000"
expect "$TMP/start.out" '^110000 verifies it, asking the issuer: verdict=valid seal=ok source=issuer issuer=answered' "the licence verified in 110000"
expect "$TMP/start.out" '^110000 submitted case 110000-[0-9]{8}-[0-9a-f]{12} for 440000$' "the case submitted in 110000"
for a in "440000: accept -> accepted" "440000: start -> in_progress" "440000: decide -> decided" "110000: deliver -> delivered"; do
  expect "$TMP/start.out" "^$a \(both regions agree\)$" "case step $a"
done
expect "$TMP/start.out" '^110000: rated 5 .*reached the handling region 440000$' "the rating"
grep -q "listen: tcp://127.0.0.1:$TB_QUICKSTART_PORT\$" "$TB_QUICKSTART_DIR/etc/hub.yaml" \
  || fail "the hub is not configured on TB_QUICKSTART_PORT=$TB_QUICKSTART_PORT"
echo "ok: start (hub on port $TB_QUICKSTART_PORT): $(sed 's/\x1b\[[0-9;]*m//g' "$TMP/start.out" | grep '^1,000 records')"

# ---- status: the hub and three nodes, running ----
rc=0
"$QS" status >"$TMP/status.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "quickstart status exited $rc"
for n in hub 110000 440000 mps; do
  expect "$TMP/status.out" "^$n: running \(pid [0-9]+\)$" "status of $n"
  pid=$(sed -n "s/^$n: running (pid \([0-9]*\))$/\1/p" "$TMP/status.out")
  want=tongban-node; [ "$n" = hub ] && want=tongban-hub
  # the pid may be a wrapper shell (fed_start_* backgrounds the daemon); the
  # daemon is the pid itself or its child
  found=0
  for p in "$pid" $(pgrep -P "$pid" || true); do
    { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -q "$want .*$TB_QUICKSTART_DIR" && found=1
  done
  [ "$found" = 1 ] || fail "status says $n runs as pid $pid, but that is not a $want of this quick start"
done
[ "$(grep -c ': running' "$TMP/status.out")" = 4 ] || fail "status does not list exactly four running processes"
# the check after stop can see them: 4 daemons + 3 PostgreSQL servers (and their workers)
n=$(ours | wc -l)
[ "$n" -ge 7 ] || fail "only $n processes of this quick start found while it runs (want >= 7)"
echo "ok: status: $(tr '\n' ';' <"$TMP/status.out") ($n processes of this quick start)"

# ---- stop: nothing of this quick start remains ----
rc=0
"$QS" stop >"$TMP/stop.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "quickstart stop exited $rc"
expect "$TMP/stop.out" '^quickstart federation stopped' "stop's message"
left=
for _ in $(seq 1 50); do
  left=$(ours)
  [ -z "$left" ] && break
  sleep 0.2
done
if [ -n "$left" ]; then
  for p in $left; do echo "left: $p $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null)" >&2; done
  fail "processes of this quick start remain after stop"
fi
"$QS" status >"$TMP/status2.out" 2>&1 || fail "quickstart status after stop exited non-zero"
expect "$TMP/status2.out" '^nothing running$' "status after stop"
[ -d "$TB_QUICKSTART_DIR/pg" ] || fail "stop removed the data (it must keep it)"
echo "ok: stop: no process left, data kept"

# ---- clean ----
rc=0
"$QS" clean >"$TMP/clean.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || fail "quickstart clean exited $rc"
expect "$TMP/clean.out" '^quickstart federation removed$' "clean's message"
[ ! -e "$TB_QUICKSTART_DIR" ] || fail "clean left $TB_QUICKSTART_DIR"
echo "ok: clean removed $TB_QUICKSTART_DIR"
echo "quickstart.sh: all checks passed"
