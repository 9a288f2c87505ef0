#!/usr/bin/env bash
# console.sh BUILD -- the hub's web console end to end, in a real browser.
#
# Configuration: http.listen on a non-loopback address without http.token is
# refused (FILE:LINE, exit 3, at --check-config and at start), and so are a
# short token and half a TLS pair. Then a hub with a token and light nodes
# 110000 (sends all the time: to 310000 and to topic:licences, which 440000
# and mps receive; and once to topic:identity, which it may not: one ACL
# refusal), 310000, 440000 and mps: every path but /healthz wants the token
# (bearer, basic, ?token= and its cookie; wrong ones refused), types,
# security headers and caching are right. Headless Chromium (Debian's
# chromium, driven over its DevTools protocol by tests/lib/cdp.py) opens the
# page: the nodes appear online, 110000 is amber (refused batch), the grid
# has the 32 platforms at distinct places coloured as /api/status says, the
# chart is drawn; 440000 is stopped and the page shows exactly that node
# offline; the screenshot goes to BUILD/artifacts/console.png; no page
# error, no request leaves the hub. /api/status is then checked against
# `tbctl hub status --json` (journal, totals, rejects, every node) and the
# history. Last, the endpoint over TLS (http.tls_cert, http.tls_key).
#
# Without chromium the test is skipped (exit 0) unless TB_REQUIRE_BROWSER is
# set (CI sets it): then it fails.
set -euo pipefail
BUILD=$(cd "${1:?usage: console.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  if [ -n "${TB_REQUIRE_BROWSER:-}" ] && [ "${TB_REQUIRE_BROWSER}" != 0 ]; then
    echo "FAIL: chromium is not installed and TB_REQUIRE_BROWSER is set (apt-get install chromium)" >&2
    exit 1
  fi
  echo "SKIP console: chromium is not installed (apt-get install chromium; TB_REQUIRE_BROWSER=1 makes this a failure)"
  exit 0
fi

. "$SRC/deploy/federation.sh"
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-console-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
# stop_sub ID: stops a light node started by sub (its program; the shell
# around it then ends and is waited for, so nothing is left unreaped)
stop_sub() {
  local pid; pid=$(fed_pid "$1") || return 0
  [ -n "$pid" ] || return 0
  pkill -TERM -P "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$ROOT/run/$1.pid"
}
cleanup() {
  touch "$ROOT/stop-traffic" 2>/dev/null || true
  for id in 310000 440000 mps traffic; do stop_sub "$id"; done
  fed_stop_all
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT

PY=$(python3 -c 'import sys; print(sys.executable)')
page() { "$PY" "$SRC/tests/integration/console_page.py" "$@"; }
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
TOKEN=$("$PY" -c 'import secrets; print(secrets.token_hex(24))')

fed_setup "$ROOT" "$BUILD"
HUB_PORT=$(free_port)
FED_HTTP_PORT=$(free_port)
[ "$FED_HTTP_PORT" != "$HUB_PORT" ] || FED_HTTP_PORT=$(free_port)
URL="http://127.0.0.1:$FED_HTTP_PORT"
FED_TOPICS='topics:
  - name: licences
    publishers: ["*"]
  - name: identity
    publishers: ["mps"]' FED_HTTP_PORT=$FED_HTTP_PORT fed_hub "$HUB_PORT"
fed_light 110000; fed_register 110000
fed_light 310000; fed_register 310000
for id in 440000 mps; do fed_light "$id"; fed_register "$id" licences; done
HTTP_LINE="http: {listen: '127.0.0.1:$FED_HTTP_PORT'}"
grep -qxF "$HTTP_LINE" "$ROOT/etc/hub.yaml" || fail "fed_hub did not write http.listen"
LINE=$(grep -nxF "$HTTP_LINE" "$ROOT/etc/hub.yaml" | cut -d: -f1)
mv "$ROOT/etc/hub.yaml" "$ROOT/etc/hub.orig.yaml"

# variant NAME HTTP: the hub's configuration with another http line, as $ROOT/etc/NAME.yaml
variant() { awk -v l="$LINE" -v h="$2" 'NR == l { print h; next } { print }' "$ROOT/etc/hub.orig.yaml" >"$ROOT/etc/$1.yaml"; }
# refused NAME HTTP WANT: the hub refuses that http line with the message WANT (exit 3)
refused() {
  variant "$1" "$2"
  local rc=0 out
  out=$("$BUILD/tongban-hub" -c "$ROOT/etc/$1.yaml" --check-config 2>&1) || rc=$?
  [ $rc = 3 ] || fail "$1: --check-config exited $rc: $out"
  grep -qF "$ROOT/etc/$1.yaml:$LINE: $3" <<<"$out" || fail "$1: no \"FILE:$LINE: $3\" in: $out"
}

echo "== configuration: never open to other machines by accident"
refused open "http: {listen: '0.0.0.0:$FED_HTTP_PORT'}" \
  "http.token: required when http.listen (0.0.0.0:$FED_HTTP_PORT) is not a loopback address"
refused open6 "http: {listen: '[::]:$FED_HTTP_PORT'}" "http.token: required when http.listen"
refused empty "http: {listen: '0.0.0.0:$FED_HTTP_PORT', token: ''}" "http.token: required when http.listen"
refused short "http: {listen: '127.0.0.1:$FED_HTTP_PORT', token: 'abc'}" "http.token: expected 16 to 256 characters"
refused chars "http: {listen: '127.0.0.1:$FED_HTTP_PORT', token: 'abcdefghijklmnop qrs'}" "http.token: expected 16"
refused halftls "http: {listen: '127.0.0.1:$FED_HTTP_PORT', token: '$TOKEN', tls_cert: /x/c.pem}" \
  "http.tls_key: required with http.tls_cert"
rc=0; "$BUILD/tongban-hub" -c "$ROOT/etc/open.yaml" >"$ROOT/open.out" 2>&1 || rc=$?
[ $rc = 3 ] && grep -q "http.token: required" "$ROOT/open.out" || fail "the hub started open to the world (rc=$rc): $(cat "$ROOT/open.out")"
variant exposed "http: {listen: '0.0.0.0:$FED_HTTP_PORT', token: '$TOKEN'}"
"$BUILD/tongban-hub" -c "$ROOT/etc/exposed.yaml" --check-config >/dev/null || fail "a non-loopback address with a token is refused"
variant loop "http: {listen: '127.0.0.1:$FED_HTTP_PORT'}"
"$BUILD/tongban-hub" -c "$ROOT/etc/loop.yaml" --check-config >/dev/null || fail "loopback without a token is refused"

echo "== a hub with a token, four light nodes"
variant hub "http: {listen: '127.0.0.1:$FED_HTTP_PORT', token: '$TOKEN'}"
fed_start_hub || fail "hub did not start"
fed_wait_log "$ROOT/log/hub.log" "event=http_listening .*port=$FED_HTTP_PORT tls=off auth=token" 5 || fail "no http_listening tls=off auth=token"
sub() {
  fed_lightnode subscribe "$1" --timeout-ms 600000 --json >"$ROOT/$1.json" 2>>"$ROOT/log/$1.log" &
  echo $! >"$ROOT/run/$1.pid"
}
for id in 310000 440000 mps; do sub "$id"; done
for id in 310000 440000 mps; do fed_wait_log "$ROOT/log/$id.log" "$id: welcomed" 15 || fail "$id not welcomed"; done

echo "== one ACL refusal: 110000 may not publish to topic:identity"
rc=0; fed_lightnode publish 110000 --dest topic:identity --batches 1 --entries 1 --json >/dev/null 2>"$ROOT/acl.err" || rc=$?
[ $rc = 4 ] && grep -q 'reason=acl' "$ROOT/acl.err" || fail "ACL violation not refused (rc=$rc): $(cat "$ROOT/acl.err")"

echo "== traffic: 110000 to 310000 and to topic:licences until told to stop"
traffic() {
  while [ ! -e "$ROOT/stop-traffic" ]; do
    fed_lightnode publish 110000 --dest 310000 --batches 3 --entries 40 --json >/dev/null 2>>"$ROOT/log/110000.log" || true
    fed_lightnode publish 110000 --dest topic:licences --batches 2 --entries 20 --json >/dev/null 2>>"$ROOT/log/110000.log" || true
    sleep 0.3
  done
}
traffic &
echo $! >"$ROOT/run/traffic.pid"

echo "== access control, types, headers"
page http "$URL" "$TOKEN" || fail "HTTP checks"

echo "== the page in headless Chromium ($("$CHROMIUM" --version 2>/dev/null | head -n 1))"
mkdir -p "$BUILD/artifacts"
SHOT="$BUILD/artifacts/console.png"
rm -f "$SHOT"
page browser --chromium "$CHROMIUM" --profile "$ROOT/chromium" --url "$URL" --token "$TOKEN" \
  --online 110000,310000,440000,mps --warn 110000 --stop-node 440000 --stop-pid "$(fed_pid 440000)" \
  --traffic-stop "$ROOT/stop-traffic" --screenshot "$SHOT" --log "$ROOT/log/chromium.log" || fail "browser checks"
[ -s "$SHOT" ] && [ "$(head -c 8 "$SHOT" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "no PNG screenshot"
wait "$(fed_pid traffic)" || true
rm -f "$ROOT/run/traffic.pid"
stop_sub 440000                       # stopped already: its shell is waited for

echo "== /api/status against the hub's own state (tbctl hub status --json)"
# 110000 stopped sending with the traffic: wait until the hub has it offline too, then compare at rest.
for _ in $(seq 1 100); do
  page get "$URL" "$TOKEN" "$ROOT/api.json" || fail "GET /api/status"
  "$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if [n["id"] for n in s["nodes"] if not n["online"]] == ["110000", "440000"] else 1)' "$ROOT/api.json" && break
  sleep 0.2
done
page get "$URL" "$TOKEN" "$ROOT/api.json" || fail "GET /api/status"
"$BUILD/tbctl" hub status --json -c "$ROOT/etc/hub.yaml" >"$ROOT/tbctl.json" || fail "tbctl hub status"
page compare "$ROOT/api.json" "$ROOT/tbctl.json" --offline 440000 --offline 110000 --online 310000 --online mps \
  --hub-log "$ROOT/log/hub.log" \
  || fail "/api/status differs from the hub's state"
"$PY" - "$ROOT/api.json" <<'PY' || fail "/api/status content"
import json, sys
s = json.load(open(sys.argv[1]))
n = {x['id']: x for x in s['nodes']}
assert s['rejected']['acl'] == 1, s['rejected']
assert n['110000']['rejected_by_reason'] == {'acl': 1}, n['110000']
assert all(n[i]['rejected_by_reason'] == {} for i in ('310000', '440000', 'mps'))
assert n['110000']['last_reject_ms_ago'] >= 0 and n['310000']['last_reject_ms_ago'] == -1
assert n['440000']['backlog_batches'] > 0 and n['440000']['lag_hub_seq'] > 0, n['440000']
assert n['310000']['backlog_batches'] == 0 and n['mps']['backlog_batches'] == 0
assert n['310000']['records_in'] == 0 and n['110000']['records_in'] > 0
assert n['440000']['subscribe'] == ['licences'] and n['310000']['subscribe'] == []
assert 800 <= n['mps']['cert_days_left'] <= 825, n['mps']
assert s['summary'] == dict(s['summary'], nodes=4, registered=4, online=2, revoked=0), s['summary']
print('journal last_seq %d, %d history samples, 440000 backlog %d' % (
    s['journal']['last_seq'], len(s['history']['samples']), n['440000']['backlog_batches']))
PY
# and against /metrics of the same hub
"$PY" - "$URL" "$TOKEN" "$ROOT/api.json" <<'PY' || fail "/api/status differs from /metrics"
import json, re, sys, urllib.request
url, token, path = sys.argv[1:4]
s = json.load(open(path))
req = urllib.request.Request(url + '/metrics', headers={'Authorization': 'Bearer ' + token})
m = urllib.request.urlopen(req, timeout=10).read().decode()
val = lambda name: int(float(re.search('^' + re.escape(name) + r' (\S+)$', m, re.M).group(1)))
assert val('tongban_hub_journal_last_seq') == s['journal']['last_seq']
assert val('tongban_hub_node_online{node="440000"}') == 0 and val('tongban_hub_node_online{node="310000"}') == 1
assert val('tongban_hub_node_backlog_batches{node="440000"}') == [n for n in s['nodes'] if n['id'] == '440000'][0]['backlog_batches']
assert val('tongban_hub_rejected_total{reason="acl"}') == 1
PY

echo "== TLS: the same endpoint over HTTPS only"
fed_stop_proc hub
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$ROOT/pki/http.key" -out "$ROOT/pki/http.crt" 2>/dev/null \
  || fail "openssl could not make a certificate"
chmod 600 "$ROOT/pki/http.key"
variant hub "http: {listen: '127.0.0.1:$FED_HTTP_PORT', token: '$TOKEN', tls_cert: $ROOT/pki/http.crt, tls_key: $ROOT/pki/http.key}"
fed_start_hub || fail "hub did not restart with TLS"
fed_wait_log "$ROOT/log/hub.log" "event=http_listening .*tls=on auth=token" 5 || fail "no http_listening tls=on"
page tls "https://127.0.0.1:$FED_HTTP_PORT" "$TOKEN" "$ROOT/pki/http.crt" || fail "TLS checks"
fed_stop_proc hub
grep -q 'event=stopped' "$ROOT/log/hub.log" || fail "hub did not stop cleanly"
echo "PASS console (screenshot: $SHOT)"
