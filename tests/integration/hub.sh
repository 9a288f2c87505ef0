#!/usr/bin/env bash
# hub.sh BUILD -- the durable hub with light nodes (no PostgreSQL needed):
# store-and-forward to an offline node (50,000 records, in order), topic
# fan-out to 10 subscribers (one offline, catching up later), ACL refusals
# with their reason, a resent batch stored once, revocation, status, SIGHUP
# reload, and journal recovery (torn tail cut, damage reported).
set -euo pipefail
BUILD=$(cd "${1:?usage: hub.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-hub-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT
# jget FILE PYEXPR: evaluates PYEXPR on the JSON object j read from FILE.
jget() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
status() { "$BUILD/tbctl" hub status --json -c "$ROOT/etc/hub.yaml" >"$ROOT/status.json" || fail "tbctl hub status"; }

fed_setup "$ROOT" "$BUILD"
FED_TOPICS='topics:
  - name: licences
    publishers: ["p1"]
  - name: identity
    publishers: ["mps"]' fed_hub $(( 30000 + RANDOM % 10000 ))
for id in p1 s1 mps tester p2; do fed_light "$id"; fed_register "$id"; done
for i in $(seq 1 10); do fed_light "t$i"; fed_register "t$i" licences; done
fed_start_hub || fail "hub did not start"

# sub ID ARGS...: a subscriber in the background (JSON summary in $ROOT/ID.json)
sub() {
  local id=$1; shift
  fed_lightnode subscribe "$id" --json --timeout-ms 120000 "$@" >"$ROOT/$id.json" 2>>"$ROOT/log/$id.log" &
  echo $! >"$ROOT/run/$id.pid"
}
# await ID: waits for a background light node and checks its exit code
await() { local rc=0; wait "$(fed_pid "$1")" || rc=$?; rm -f "$ROOT/run/$1.pid"; [ $rc = 0 ] || fail "$1 exited $rc: $(cat "$ROOT/$1.json")"; }

echo "== store and forward: s1 offline while p1 sends 50 x 1,000 records"
fed_lightnode publish p1 --dest s1 --batches 50 --entries 1000 --json >"$ROOT/p1.json" 2>>"$ROOT/log/p1.log" \
  || fail "publish to offline s1: $(cat "$ROOT/p1.json")"
[ "$(jget "$ROOT/p1.json" "j['acks']")" = 50 ] || fail "p1 not acked by the hub while s1 offline"
status
[ "$(jget "$ROOT/status.json" "[n for n in j['nodes'] if n['id']=='s1'][0]['backlog_batches']")" = 50 ] || fail "s1 backlog is not 50"
sub s1 --expect-entries 50000
await s1
[ "$(jget "$ROOT/s1.json" "(j['entries_received'], j['out_of_order'], j['duplicates'], j['bad_signatures'])")" = "(50000, 0, 0, 0)" ] \
  || fail "s1 catch-up: $(cat "$ROOT/s1.json")"
echo "s1 received 50,000 records in order after coming online: $(jget "$ROOT/s1.json" "j['entries_per_s']") records/s"

echo "== topic fan-out: licences to 10 subscribers, t10 offline"
for i in $(seq 1 9); do sub "t$i" --expect-entries 2000; done
for i in $(seq 1 9); do fed_wait_log "$ROOT/log/t$i.log" "t$i: welcomed" 15 || fail "t$i not welcomed"; done
fed_lightnode publish p1 --dest topic:licences --batches 20 --entries 100 --json >"$ROOT/p1.json" 2>>"$ROOT/log/p1.log" \
  || fail "publish to topic: $(cat "$ROOT/p1.json")"
for i in $(seq 1 9); do await "t$i"; [ "$(jget "$ROOT/t$i.json" "j['entries_received']")" = 2000 ] || fail "t$i got $(cat "$ROOT/t$i.json")"; done
sub t10 --expect-entries 2000
await t10
[ "$(jget "$ROOT/t10.json" "(j['entries_received'], j['out_of_order'])")" = "(2000, 0)" ] || fail "t10 catch-up"
status
[ "$(jget "$ROOT/status.json" "j['journal']['last_seq']")" = 70 ] || fail "topic batches journaled more than once: $(jget "$ROOT/status.json" "j['journal']")"

echo "== ACL: only mps may publish to topic:identity; unknown destinations refused"
rc=0; fed_lightnode publish p1 --dest topic:identity --batches 1 --entries 1 --json >"$ROOT/acl.json" 2>"$ROOT/acl.err" || rc=$?
[ $rc = 4 ] || fail "ACL violation: rc=$rc"
grep -q 'reason=acl' "$ROOT/acl.err" || fail "no acl reason: $(cat "$ROOT/acl.err")"
rc=0; fed_lightnode publish p1 --dest nowhere --batches 1 --entries 1 --json >/dev/null 2>"$ROOT/dest.err" || rc=$?
[ $rc = 4 ] && grep -q 'reason=unknown_dest' "$ROOT/dest.err" || fail "unknown destination not refused: $(cat "$ROOT/dest.err")"
grep -q 'event=batch_rejected node=p1 .*reason=acl' "$ROOT/log/hub.log" || fail "hub did not log the ACL refusal"
fed_lightnode publish mps --dest topic:identity --batches 1 --entries 1 --json >/dev/null 2>&1 || fail "mps may publish to identity"

echo "== a resent batch is acked twice and stored once"
before=$(status; jget "$ROOT/status.json" "j['journal']['last_seq']")
"$BUILD/tb_testpeer" resend --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
  --curve-dir "$ROOT/pki/tester" --node tester --key "$ROOT/pki/tester/node.key" \
  --cert "$ROOT/pki/tester/node.crt" --dest s1 || fail "resend not acked twice"
status
[ "$(jget "$ROOT/status.json" "j['journal']['last_seq']")" = $((before + 1)) ] || fail "resent batch stored twice"
[ "$(jget "$ROOT/status.json" "j['totals']['duplicates']")" -ge 1 ] || fail "duplicate not counted"

echo "== revocation: p2 is cut off and cannot come back"
sub p2 --idle-exit-ms 100000
fed_wait_log "$ROOT/log/p2.log" "p2: welcomed" 15 || fail "p2 not welcomed"
"$BUILD/tbctl" hub revoke p2 -c "$ROOT/etc/hub.yaml" || fail "tbctl hub revoke"
status
[ "$(jget "$ROOT/status.json" "[(n['revoked'], n['online']) for n in j['nodes'] if n['id']=='p2'][0]")" = "(True, False)" ] \
  || fail "p2 not shown revoked/offline"
fed_stop_proc p2 KILL
rc=0; fed_lightnode subscribe p2 --timeout-ms 3000 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "revoked p2 reconnected (rc=$rc)"
grep -q 'event=connection_refused reason=revoked node=p2' "$ROOT/log/hub.log" || fail "refused reconnection of the revoked node not logged"
grep -q 'event=node_revoked node=p2' "$ROOT/log/hub.log" || fail "revocation not logged"

echo "== tbctl hub status (text)"
"$BUILD/tbctl" hub status -c "$ROOT/etc/hub.yaml" | tee "$ROOT/status.txt" | head -n 8
grep -Eq '^p2 +REVOKED' "$ROOT/status.txt" || fail "text status does not show p2 revoked"

echo "== SIGHUP reloads the registry without dropping anyone"
sed -i 's|^  - id: "s1"|  - id: "s1"\n    subscribe: [licences]|' "$ROOT/etc/hub.yaml"
kill -HUP "$(fed_pid hub)"
fed_wait_log "$ROOT/log/hub.log" 'event=registry_reloaded' 10 || fail "no reload"
sub s1 --expect-entries 100 --idle-exit-ms 20000
fed_wait_log "$ROOT/log/s1.log" "s1: welcomed" 15 || fail "s1 not welcomed"
fed_lightnode publish p1 --dest topic:licences --batches 1 --entries 100 --json >/dev/null 2>&1 || fail "publish after reload"
await s1

echo "== journal recovery: a torn tail is cut, damage in the middle is reported"
fed_stop_proc hub
seg=$(ls "$ROOT/hubdata/journal/"*.tbj | tail -n 1)
cp "$seg" "$ROOT/segment.bak"
head -c 100 /dev/urandom >>"$seg"
fed_start_hub || fail "hub did not start after a torn tail"
fed_wait_log "$ROOT/log/hub.log" 'event=journal_torn_tail' 5 || fail "torn tail not reported"
[ "$(status; jget "$ROOT/status.json" "j['journal']['last_seq']")" = $((before + 2)) ] || fail "records lost with the torn tail"
fed_stop_proc hub
size=$(stat -c %s "$seg")
printf '\xff' | dd of="$seg" bs=1 seek=$((size / 2)) conv=notrunc status=none
rc=0; "$BUILD/tongban-hub" -c "$ROOT/etc/hub.yaml" 2>"$ROOT/damaged.err" || rc=$?
[ $rc = 1 ] || fail "hub started on a damaged journal (rc=$rc)"
grep -Eq "$(basename "$seg").*offset [0-9]+" "$ROOT/damaged.err" || fail "damage not named: $(cat "$ROOT/damaged.err")"
echo "damaged journal refused: $(head -c 200 "$ROOT/damaged.err")"
echo "PASS hub"
