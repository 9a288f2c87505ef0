#!/usr/bin/env bash
# skeleton.sh BUILD -- hub + two nodes, each with its own PostgreSQL:
# 1,000 records inserted with SQL on 110000 arrive on 440000 with identical
# bodies; updates and deletes follow; a tampered batch and a forged sender
# are refused and not applied; an unregistered CURVE key cannot connect.
set -euo pipefail
BUILD=$(cd "${1:?usage: skeleton.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-skeleton-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 30 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
fed_node 110000 ed25519 440000
fed_node 440000 p256 110000
fed_register 110000
fed_register 440000
"$BUILD/tbctl" pki issue --ca "$ROOT/pki/ca" --node intruder --out "$ROOT/pki/intruder" >/dev/null

"$BUILD/tongban-hub" -c "$ROOT/etc/hub.yaml" --check-config || fail "hub config does not check"
"$BUILD/tongban-node" -c "$ROOT/etc/110000.yaml" --check-config || fail "node config does not check"

fed_start_hub || fail "hub did not start"
fed_start_node 110000
fed_start_node 440000
fed_wait_log "$ROOT/log/110000.log" 'event=hub_connected' 15 || fail "110000 did not connect"
fed_wait_log "$ROOT/log/440000.log" 'event=hub_connected' 15 || fail "440000 did not connect"

echo "== 1,000 records inserted on 110000 reach 440000"
t0=$(date +%s%N)
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
  SELECT 'people', 'p' || g, jsonb_build_object('n', g, 'name', '张三' || g, 'note', 'quote \" backslash \\ brace {', 'pad', repeat('x', 400))
  FROM generate_series(1, 1000) g"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'people'" 1000 60 || fail "records did not arrive"
echo "METRIC skeleton_1000_records_ms=$(( ($(date +%s%N) - t0) / 1000000 ))"
a=$(fed_checksum 110000); b=$(fed_checksum 440000)
[ "$a" = "$b" ] || fail "tables differ after insert: $a vs $b"
echo "checksum $a"

echo "== updates and deletes follow"
fed_psql 110000 -c "UPDATE tongban.records SET body = body || '{\"updated\": true}' WHERE key IN ('p1','p2','p3')"
fed_psql 110000 -c "DELETE FROM tongban.records WHERE key IN ('p10','p11')"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records" 998 30 || fail "deletes did not arrive"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE body ? 'updated'" 3 30 || fail "updates did not arrive"
a=$(fed_checksum 110000); b=$(fed_checksum 440000)
[ "$a" = "$b" ] || fail "tables differ after update/delete: $a vs $b"

echo "== a change made on 440000 travels back, and is not echoed"
fed_psql 440000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('cases', 'c1', '{\"from\": \"guangdong\"}')"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.records WHERE catalog = 'cases'" 1 30 || fail "reverse sync"
sleep 1
[ "$(fed_psql 110000 -c 'SELECT count(*) FROM tongban.outbox')" = 0 ] || fail "applied change was echoed into the outbox"

echo "== no double apply: every (sender, seq) once, outboxes drained"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.sent_batches" 0 30 || fail "110000 has unacked batches"
dups=$(fed_psql 440000 -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
[ "$dups" = 0 ] || fail "inbox has duplicates"

echo "== a tampered batch is refused and not applied"
out=$("$BUILD/tb_testpeer" tampered --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
  --curve-dir "$ROOT/pki/110000" --node 110000 --key "$ROOT/pki/110000/node.key" \
  --cert "$ROOT/pki/110000/node.crt" --dest 440000) || fail "tampered batch not refused: $out"
echo "$out"
grep -q 'event=batch_rejected node=110000 .*reason=bad_signature' "$ROOT/log/hub.log" || fail "hub did not log bad_signature"

echo "== a batch claiming another sender is refused"
out=$("$BUILD/tb_testpeer" forge-sender --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
  --curve-dir "$ROOT/pki/110000" --node 110000 --key "$ROOT/pki/110000/node.key" \
  --cert "$ROOT/pki/110000/node.crt" --dest 440000 --claim 440000) || fail "forged sender not refused: $out"
echo "$out"
sleep 1
[ "$(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'tamper'")" = 0 ] || fail "forged data applied"

echo "== an unregistered CURVE key cannot connect"
set +e
out=$("$BUILD/tb_testpeer" hello --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
  --curve-dir "$ROOT/pki/intruder" --node intruder --timeout-ms 3000)
rc=$?
set -e
[ $rc = 3 ] || fail "intruder got rc=$rc: $out"
grep -q 'event=connection_refused reason=unregistered_key' "$ROOT/log/hub.log" || fail "hub did not log the refused key"

echo "== the honest nodes still work afterwards"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('people', 'after', '{}')"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE key = 'after'" 1 30 || fail "sync after attacks"

echo "== SIGHUP: the node reloads routes and says what needs a restart"
sed -i -e '/^routes:/,$d' -e 's|^  endpoint: tcp://127.0.0.1:\([0-9]*\)|  endpoint: tcp://localhost:\1|' "$ROOT/etc/110000.yaml"
printf 'routes:\n  - catalog: "people"\n    to: ["440000"]\n' >>"$ROOT/etc/110000.yaml"
"$BUILD/tongban-node" -c "$ROOT/etc/110000.yaml" --check-config >/dev/null || { cat "$ROOT/etc/110000.yaml"; fail "edited config invalid"; }
kill -HUP "$(fed_pid 110000)"
fed_wait_log "$ROOT/log/110000.log" 'event=config_reloaded node=110000 routes=1 restart_needed=1' 10 || fail "node did not reload"
grep -q 'event=reload_needs_restart node=110000 key=hub.endpoint' "$ROOT/log/110000.log" || fail "restart-only change not reported"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('unrouted', 'u1', '{}'), ('people', 'after-hup', '{}')"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE key = 'after-hup'" 1 30 || fail "routed catalog after reload"
[ "$(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'unrouted'")" = 0 ] || fail "catalog no longer routed was sent"

echo "== SIGTERM stops everything cleanly"
for n in 110000 440000 hub; do
  pid=$(fed_pid $n); kill -TERM "$pid"; rc=0; wait "$pid" || rc=$?
  [ $rc = 0 ] || fail "$n exited $rc on SIGTERM"
  rm -f "$ROOT/run/$n.pid"
done
echo "PASS skeleton"
