#!/usr/bin/env bash
# crash.sh BUILD [RECORDS] -- nothing acknowledged is lost or applied twice
# when processes die: while node 110000 commits RECORDS (default 100,000)
# records in 1,000-row transactions routed to 440000, the hub is killed
# with SIGKILL and restarted, then the sending node, then the receiving
# node, then the receiving node's PostgreSQL (immediate shutdown). At the
# end both tables are identical (count + order-independent checksum) and
# the receiver's inbox holds every (sender, seq) once.
set -euo pipefail
BUILD=$(cd "${1:?usage: crash.sh BUILD_DIR [RECORDS]}" && pwd)
RECORDS=${2:-100000}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-crash-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
fed_node 110000 ed25519 440000
fed_node 440000 ed25519 110000
fed_register 110000
fed_register 440000
fed_start_hub || fail "hub did not start"
fed_start_node 110000
fed_start_node 440000
fed_wait_log "$ROOT/log/110000.log" 'event=hub_connected' 15 || fail "110000 did not connect"
fed_wait_log "$ROOT/log/440000.log" 'event=hub_connected' 15 || fail "440000 did not connect"

txns=$((RECORDS / 1000))
( for t in $(seq 1 "$txns"); do
    fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
      SELECT 'crash', 't$t-' || g, jsonb_build_object('t', $t, 'g', g, 'pad', repeat('x', 400))
      FROM generate_series(1, 1000) g" || exit 1
    sleep 0.05
  done ) >"$ROOT/log/load.log" 2>&1 &
load=$!

received() { fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'crash'" 2>/dev/null || echo 0; }
# at FRACTION: waits until the receiver holds that fraction of the records
at() {
  local want=$(( RECORDS * $1 / 100 )) i
  for i in $(seq 1 600); do [ "$(received)" -ge "$want" ] && return 0; sleep 0.1; done
  fail "stalled below $want records (have $(received))"
}
faults=0
at 15; echo "kill -9 hub at $(received) records"; fed_stop_proc hub KILL; faults=$((faults+1))
cp -a "$ROOT/hubdata" "$ROOT/hubdata.backup"     # an old backup, restored at the end
sleep 1; fed_start_hub
at 35; echo "kill -9 sender 110000 at $(received)"; fed_stop_proc 110000 KILL; faults=$((faults+1)); sleep 1; fed_start_node 110000
at 55; echo "kill -9 receiver 440000 at $(received)"; fed_stop_proc 440000 KILL; faults=$((faults+1)); sleep 1; fed_start_node 440000
at 70; echo "immediate stop of 440000's PostgreSQL at $(received)"
pgd="$ROOT/pg/440000"
pg_as_owner "$(pg_bindir)/pg_ctl" -D "$pgd/pgdata" -m immediate stop >/dev/null; faults=$((faults+1))
sleep 2
pg_as_owner "$(pg_bindir)/pg_ctl" -D "$pgd/pgdata" -l "$pgd/server.log" -w start >/dev/null
at 85; echo "kill -9 hub again at $(received)"; fed_stop_proc hub KILL; faults=$((faults+1)); sleep 0.5; fed_start_hub

wait $load || fail "load generator failed: $(tail -3 "$ROOT/log/load.log")"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'crash'" "$RECORDS" 120 || fail "records lost"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.sent_batches" 0 60 || fail "sender still has unacked batches"
a=$(fed_checksum 110000); b=$(fed_checksum 440000)
[ "$a" = "$b" ] || fail "tables differ: $a vs $b"
dups=$(fed_psql 440000 -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
[ "$dups" = 0 ] || fail "inbox holds duplicates"
skipped=$(grep -c 'event=duplicate_skipped' "$ROOT/log/440000.log" || true)
hubdups=$(grep -c 'event=duplicate_batch' "$ROOT/log/hub.log" || true)
echo "METRIC crash_faults=$faults records=$RECORDS lost=0 applied_twice=0 redeliveries_skipped_by_inbox=$skipped resends_deduplicated_by_hub=$hubdups"
echo "== the hub is restored from an old backup: nodes carry on, nothing applied twice"
fed_stop_proc hub KILL
rm -rf "$ROOT/hubdata"
mv "$ROOT/hubdata.backup" "$ROOT/hubdata"
fed_start_hub || fail "hub did not start on its old data directory"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) SELECT 'after', 'a' || g, '{}' FROM generate_series(1, 1000) g"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'after'" 1000 60 || fail "batches refused after the hub was restored"
grep -q 'event=sender_ahead node=110000' "$ROOT/log/hub.log" || fail "hub did not learn the node's position"
[ "$(fed_checksum 110000)" = "$(fed_checksum 440000)" ] || fail "tables differ after the restore"
[ "$(fed_psql 440000 -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")" = 0 ] || fail "double apply after the restore"
echo "PASS crash"
