#!/usr/bin/env bash
# node.sh BUILD [OPS] -- the provincial node with real PostgreSQL clusters:
# 3 nodes + hub; OPS (default 100,000) mixed inserts/updates/deletes on
# 110000 routed to 440000 and to topic:shared (mps subscribes) leave all
# three tables identical; concurrent updates of one record on two nodes
# converge everywhere; a bad entry lands in dead letters while the rest of
# its batch applies, and applies after the fix (tbctl node retry); a node
# joining late loads a 200,000-row catalog (tbctl node resync) while live
# changes continue, without gap or duplicate.
set -euo pipefail
BUILD=$(cd "${1:?usage: node.sh BUILD_DIR [OPS]}" && pwd)
OPS=${2:-100000}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-node-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT
# cat_sum ID CATALOG: count + order-independent checksum of one catalog
cat_sum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY key)), '-') FROM tongban.records WHERE catalog = '$2'"
}
ms() { date +%s%3N; }

fed_setup "$ROOT" "$BUILD"
FED_TOPICS='topics:
  - name: shared
    publishers: ["110000", "440000"]' fed_hub $(( 30000 + RANDOM % 10000 ))
fed_node 110000 ed25519 440000 topic:shared
fed_node 440000 p256 110000 topic:shared
fed_node mps sm2
fed_node 320000 ed25519
# an inbox retention shorter than the hub's journal's (default 168 h): the
# node keeps its inbox 8 days instead, and says so
printf 'retention:\n  inbox_days: 1\n' >>"$ROOT/etc/320000.yaml"
fed_register 110000
fed_register 440000
fed_register mps shared
fed_register 320000 shared
fed_start_hub || fail "hub did not start"
for n in 110000 440000 mps; do fed_start_node $n; done
for n in 110000 440000 mps; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 15 || fail "$n did not connect"; done

echo "== $OPS mixed operations on 110000 -> 440000 and topic:shared (mps)"
ins=$(( OPS * 7 / 10 )); upd=$(( OPS * 2 / 10 )); del=$(( OPS - ins - upd ))
t0=$(ms)
for ((off = 0; off < ins; off += 1000)); do
  fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
    SELECT 'people', 'p' || g, jsonb_build_object('n', g, 'name', '李四' || g, 'pad', repeat('y', 300))
    FROM generate_series($off + 1, $off + 1000) g"
done
for ((off = 0; off < upd; off += 1000)); do
  fed_psql 110000 -c "UPDATE tongban.records SET body = body || '{\"v\": 2}' WHERE catalog = 'people'
    AND key IN (SELECT 'p' || g FROM generate_series($off + 1, $off + 1000) g)"
done
for ((off = 0; off < del; off += 1000)); do
  fed_psql 110000 -c "DELETE FROM tongban.records WHERE catalog = 'people'
    AND key IN (SELECT 'p' || g FROM generate_series($ins - $off - 999, $ins - $off) g)"
done
want=$(fed_psql 110000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'people'")
for n in 440000 mps; do
  fed_wait_sql $n "SELECT count(*) FROM tongban.records WHERE catalog = 'people'" "$want" 180 || fail "$n incomplete"
done
fed_wait_sql 110000 "SELECT count(*) FROM tongban.outbox" 0 60 || fail "outbox not drained"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.sent_batches" 0 60 || fail "batches not acked"
# the drained outbox is truncated (node.c outbox_upkeep): its files keep none
# of the ~200,000 rows taken, whose dead index entries every take would
# otherwise walk until a VACUUM -- which would not shrink the index (~6 MB)
sizes="SELECT pg_relation_size('tongban.outbox') || ' ' || pg_relation_size('tongban.outbox_dest_id')"
fed_wait_sql 110000 "SELECT pg_relation_size('tongban.outbox') + pg_relation_size('tongban.outbox_dest_id') < 1048576" t 30 ||
  fail "outbox not compacted: heap and index bytes $(fed_psql 110000 -c "$sizes")"
sleep 1
a=$(cat_sum 110000 people)
for n in 440000 mps; do
  b=$(cat_sum $n people); [ "$a" = "$b" ] || fail "$n differs: $a vs $b"
  d=$(fed_psql $n -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
  [ "$d" = 0 ] || fail "$n applied a batch twice"
done
echo "METRIC node_mixed_ops=$OPS rows=$want ms=$(( $(ms) - t0 )) tables_equal=3"

echo "== concurrent updates of one record on two nodes converge"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('cases', 'c1', '{\"state\": \"new\"}')"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE key = 'c1'" 1 30 || fail "c1 not shared"
for i in 1 2 3 4 5; do
  fed_psql 110000 -c "UPDATE tongban.records SET body = '{\"by\": \"110000\", \"i\": $i}' WHERE key = 'c1'" & u1=$!
  fed_psql 440000 -c "UPDATE tongban.records SET body = '{\"by\": \"440000\", \"i\": $i}' WHERE key = 'c1'" & u2=$!
  wait $u1 $u2
done
sleep 3
v1=$(fed_psql 110000 -c "SELECT body::text || hlc || origin FROM tongban.records WHERE key = 'c1'")
for n in 440000 mps; do
  fed_wait_sql $n "SELECT body::text || hlc || origin FROM tongban.records WHERE key = 'c1'" "$v1" 30 || fail "$n did not converge"
done
echo "converged on $v1"

echo "== a bad entry goes to dead letters, the rest of its batch applies, retry after the fix"
fed_psql 440000 -c "ALTER TABLE tongban.records ADD CONSTRAINT test_no_forbidden CHECK (NOT (body ? 'forbidden'))"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
  SELECT 'dl', 'd' || g, CASE WHEN g = 5 THEN '{\"forbidden\": 1}'::jsonb ELSE jsonb_build_object('g', g) END
  FROM generate_series(1, 10) g"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'dl'" 9 30 || fail "rest of the batch not applied"
"$BUILD/tbctl" node dead-letters -c "$ROOT/etc/440000.yaml" | tee "$ROOT/dl.txt"
id=$(awk '$2 == "110000" {print $1; exit}' "$ROOT/dl.txt")
[ -n "$id" ] || fail "dead letter not listed"
grep -q 'test_no_forbidden' "$ROOT/dl.txt" || fail "dead letter has no reason"
rc=0; "$BUILD/tbctl" node retry "$id" -c "$ROOT/etc/440000.yaml" || rc=$?
[ $rc = 1 ] || fail "retry before the fix should fail (rc=$rc)"
fed_psql 440000 -c "ALTER TABLE tongban.records DROP CONSTRAINT test_no_forbidden"
"$BUILD/tbctl" node retry "$id" -c "$ROOT/etc/440000.yaml" || fail "retry after the fix"
[ "$(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'dl'")" = 10 ] || fail "retried entry not applied"
[ "$(cat_sum 110000 dl)" = "$(cat_sum 440000 dl)" ] || fail "dl catalog differs after retry"

echo "== tbctl node status"
"$BUILD/tbctl" node status -c "$ROOT/etc/110000.yaml" | tee "$ROOT/status.txt"
grep -q 'connected' "$ROOT/status.txt" || fail "status"
"$BUILD/tbctl" node status --json -c "$ROOT/etc/440000.yaml" >"$ROOT/status.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['hub']['connected'] and j['database']['dead_letters']==0, j
r = j['retention']; assert (r['inbox_days'], r['inbox_days_configured'], r['hub_journal_retention_hours']) == (30, 30, 168), r
assert r['pruned_rows']['inbox'] == 0 and r['errors'] == 0, r" "$ROOT/status.json" \
  || fail "status json"
grep -q '^retention  inbox 30 days, tombstones 30' "$ROOT/status.txt" || fail "status text: retention"

echo "== initial load: 320000 joins late, loads 200,000 rows of 'registry' while changes continue"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
  SELECT 'registry', 'r' || g, jsonb_build_object('g', g, 'pad', repeat('z', 200)) FROM generate_series(1, 200000) g"
fed_wait_sql mps "SELECT count(*) FROM tongban.records WHERE catalog = 'registry'" 200000 120 || fail "registry not on mps"
fed_start_node 320000
fed_wait_log "$ROOT/log/320000.log" 'event=hub_connected' 15 || fail "320000 did not connect"
grep -q 'event=inbox_retention_raised node=320000 inbox_days=1 hub_journal_retention_hours=168 effective_days=8' \
  "$ROOT/log/320000.log" || fail "320000 did not raise its inbox retention to the hub's journal retention"
grep -q 'event=inbox_retention_raised' "$ROOT/log/110000.log" && fail "110000 (inbox_days 30) raised its inbox retention"
"$BUILD/tbctl" node status --json -c "$ROOT/etc/320000.yaml" >"$ROOT/status320.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['retention']
assert (r['inbox_days'], r['inbox_days_configured'], r['hub_journal_retention_hours']) == (8, 1, 168), r" \
  "$ROOT/status320.json" || fail "320000 status: inbox retention in effect"
"$BUILD/tbctl" node status -c "$ROOT/etc/320000.yaml" | grep -q '^retention  inbox 8 days (retention.inbox_days 1, raised' \
  || fail "320000 status text: inbox retention"
( for i in $(seq 1 20); do
    fed_psql 110000 -c "UPDATE tongban.records SET body = body || '{\"live\": $i}' WHERE catalog = 'registry' AND key IN ('r$i', 'r$((i * 1000))')"
    fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('registry', 'new$i', '{}')"
    sleep 0.1
  done ) &
live=$!
t0=$(ms)
"$BUILD/tbctl" node resync --catalog registry --from 110000 -c "$ROOT/etc/320000.yaml" | tee "$ROOT/resync.txt" || fail "resync"
wait $live
grep -q 'rows queued' "$ROOT/resync.txt" || fail "resync not acknowledged by the owner"
want=$(fed_psql 110000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'registry'")
fed_wait_sql 320000 "SELECT count(*) FROM tongban.records WHERE catalog = 'registry'" "$want" 120 || fail "initial load incomplete"
sleep 2
[ "$(cat_sum 110000 registry)" = "$(cat_sum 320000 registry)" ] || fail "registry differs on the late node"
d=$(fed_psql 320000 -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
[ "$d" = 0 ] || fail "late node applied a batch twice"
echo "METRIC initial_load_rows=$want ms=$(( $(ms) - t0 ))"
echo "PASS node"
