#!/usr/bin/env bash
# disk_full.sh BUILD -- storage that cannot be written (needs root: mounts tmpfs).
# Hub: its data_dir (journal, cursors) is a 16 MiB tmpfs. Light node p1
# publishes to s1 (offline): acked. A filler file takes every free byte:
# new batches are nacked "storage" (the hub logs journal_append_failed and
# reason=storage), nothing of them is acked; s1 still receives everything
# journaled before. The filler is deleted: new batches are acked again
# (journal_writable_again) and delivered; after a restart the journal
# recovers clean and nothing is delivered twice. Everything acked was
# delivered exactly once.
# Node: 440000's tongban.records lives in a tablespace on a 16 MiB tmpfs;
# filled up, 440000 cannot apply what 110000 sends: it logs apply_failed with
# PostgreSQL's "No space left on device", acks nothing it did not apply (the
# hub keeps a backlog and redelivers; no inbox row, no dead letter), and
# applies everything once the filler is gone: tables equal, no duplicate.
set -euo pipefail
BUILD=$(cd "${1:?usage: disk_full.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP disk_full: needs root to mount tmpfs"; exit 0; }

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-diskfull-XXXXXX")
MOUNTS=()
fail() {
  echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2
  tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1
}
cleanup() {
  local m
  fed_stop_all || true
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
lines() { grep -c -E -- "$2" "$1" 2>/dev/null || true; }
fill() { dd if=/dev/zero of="$1/filler" bs=64k >/dev/null 2>&1 || true; sync; }   # until ENOSPC
free_kb() { df -k --output=avail "$1" | tail -1 | tr -d ' '; }
# light ID MODE ARGS...: tb_lightnode with the common options, JSON report
light() { fed_lightnode "$@" --timeout-ms "${LIGHT_TIMEOUT:-60000}" --json; }
num() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }
backlog() {   # backlog ID: the hub's backlog_batches for ID
  "$BUILD/tbctl" hub status --json -c "$ROOT/etc/hub.yaml" | python3 -c '
import json, sys
for n in json.load(sys.stdin)["nodes"]:
    if n["id"] == sys.argv[1]: print(n["backlog_batches"])' "$1"
}

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + $$ % 10000 ))
mount -t tmpfs -o size=16m,mode=755 tb-hubdata "$ROOT/hubdata"; MOUNTS+=("$ROOT/hubdata")
for id in p1 s1; do fed_light "$id"; fed_register "$id"; done
fed_node 110000 ed25519 440000
fed_node 440000 ed25519
fed_register 110000
fed_register 440000
ts="$ROOT/ts"; mkdir -p "$ts"
mount -t tmpfs -o "size=16m,mode=700,uid=$(id -u "${TB_PG_USER:-postgres}")" tb-tablespace "$ts"; MOUNTS+=("$ts")
fed_start_hub || fail "hub did not start"
fed_start_node 110000
fed_start_node 440000
for n in 110000 440000; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 15 || fail "$n did not connect"; done
# the node created its schema at start: move 440000's records onto the small tmpfs
fed_psql 440000 -c "CREATE TABLESPACE tbfull LOCATION '$ts'"
fed_psql 440000 -c "ALTER TABLE tongban.records SET TABLESPACE tbfull"
ins() {   # ins FROM TO: rows FROM..TO on 110000 (routed to 440000), 500 a transaction
  local off
  for ((off = $1; off <= $2; off += 500)); do
    fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body)
      SELECT 'full', 'k' || g, jsonb_build_object('g', g, 'pad', repeat(md5(g::text), 12))
      FROM generate_series($off, $off + 499) g"
  done
}
rows440() { fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'full'"; }

echo "== hub: journal on a 16 MiB tmpfs ($(free_kb "$ROOT/hubdata") KiB free)"
publish() {   # publish TAG BATCHES: p1 -> s1, 100 entries of 256 bytes a batch
  local rc=0
  light publish p1 --dest s1 --batches "$2" --entries 100 --entry-bytes 256 --resend-ms 500 \
    >"$ROOT/pub-$1.json" 2>>"$ROOT/log/p1.log" || rc=$?
  echo "publish $1: rc=$rc $(cat "$ROOT/pub-$1.json")"
  return $rc
}
publish before 40 || fail "publishing with space left"
[ "$(num "$ROOT/pub-before.json" acks)" = 40 ] || fail "not every batch acked with space left"
ins 1 1000
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'full'" 1000 30 || fail "440000 did not apply with space left"

fill "$ROOT/hubdata"
echo "filled: $(free_kb "$ROOT/hubdata") KiB free"
refused0=$(lines "$ROOT/log/110000.log" 'event=batch_(refused|out_of_order|resent)')
ins 1001 2000    # a real node's batches while the journal is full
rc=0; LIGHT_TIMEOUT=6000 publish full 20 || rc=$?
acked_full=$(num "$ROOT/pub-full.json" acks); nacks=$(num "$ROOT/pub-full.json" nacks)
# exit 4: the publisher was refused (nacks); 3 would be a plain timeout
[ "$rc" = 4 ] || fail "publishing to a full journal should end refused (exit 4), got $rc"
[ "${nacks:-0}" -gt 0 ] || fail "no nack while the journal is full"
[ "$acked_full" = 0 ] || fail "$acked_full batches acked while the journal was full"
grep -m1 -E 'event=journal_append_failed' "$ROOT/log/hub.log" || true
grep -Eq 'reason=storage' "$ROOT/log/hub.log" || fail "the hub log has no reason=storage"
grep -Eq 'storage' "$ROOT/log/p1.log" || fail "p1 was not told reason storage"
grep -m1 -E 'storage' "$ROOT/log/p1.log" || true
kill -0 "$(fed_pid hub)" || fail "the hub died on a full disk"
grep -m1 -E 'event=batch_refused.*reason=storage' "$ROOT/log/110000.log" || true
grep -Eq 'event=batch_refused.*reason=storage' "$ROOT/log/110000.log" || fail "110000 was not told reason storage"
unacked=$(fed_psql 110000 -c "SELECT count(*) FROM tongban.sent_batches")
[ "$unacked" -gt 0 ] || fail "110000's batches were acked by a hub that could not journal them"
[ "$(rows440)" = 1000 ] || fail "440000 got rows the hub could not journal"
# a refused batch is retried every resend_ms (3 s), not in a loop: bounded refusals/resends
storm=$(( $(lines "$ROOT/log/110000.log" 'event=batch_(refused|out_of_order|resent)') - refused0 ))
echo "110000 while the journal is full: $unacked batches kept unacked, $storm refusals + resends logged in ~6 s"
[ "$storm" -lt 200 ] || fail "110000 resends in a loop to a full hub ($storm refusals/resends in ~6 s)"

echo "== still full: s1 receives everything journaled before"
rc=0; light subscribe s1 --expect-entries 4000 --idle-exit-ms 4000 >"$ROOT/sub-full.json" 2>>"$ROOT/log/s1.log" || rc=$?
echo "subscribe while full: rc=$rc $(cat "$ROOT/sub-full.json")"
[ "$rc" = 0 ] || fail "s1 did not receive the journaled batches while the disk was full"
[ "$(num "$ROOT/sub-full.json" entries_received)" = 4000 ] || fail "s1 got the wrong count"
[ "$(num "$ROOT/sub-full.json" duplicates)" = 0 ] || fail "s1 got duplicates"
cursor_errors=$(lines "$ROOT/log/hub.log" 'event=cursors_save_failed')

echo "== space returns"
rm -f "$ROOT/hubdata/filler"
echo "freed: $(free_kb "$ROOT/hubdata") KiB free"
publish after 20 || fail "publishing after space returned"
[ "$(num "$ROOT/pub-after.json" acks)" = 20 ] || fail "not every batch acked after space returned"
grep -Eq 'event=journal_writable_again' "$ROOT/log/hub.log" || fail "no journal_writable_again"
rc=0; light subscribe s1 --expect-entries 2000 --idle-exit-ms 4000 >"$ROOT/sub-after.json" 2>>"$ROOT/log/s1.log" || rc=$?
echo "subscribe after: rc=$rc $(cat "$ROOT/sub-after.json")"
[ "$rc" = 0 ] && [ "$(num "$ROOT/sub-after.json" entries_received)" = 2000 ] || fail "s1 did not receive the new batches"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'full'" 2000 30 || fail "110000's batches not delivered after space returned"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.sent_batches" 0 30 || fail "110000's batches not acked after space returned"

echo "== restart: the journal recovers clean, nothing is delivered again"
fed_stop_proc hub
before=$(lines "$ROOT/log/hub.log" 'event=started')
fed_start_hub
for _ in $(seq 1 100); do [ "$(lines "$ROOT/log/hub.log" 'event=started')" -gt "$before" ] && break; sleep 0.1; done
grep -E 'event=journal_recovered' "$ROOT/log/hub.log" | tail -1
! grep -Eq 'event=journal_torn_tail' "$ROOT/log/hub.log" || fail "journal damaged after the disk-full episode"
rc=0; light subscribe s1 --idle-exit-ms 3000 >"$ROOT/sub-restart.json" 2>>"$ROOT/log/s1.log" || rc=$?
got=$(num "$ROOT/sub-restart.json" entries_received)
echo "subscribe after restart: rc=$rc entries_received=$got"
[ "${got:-x}" = 0 ] || fail "batches delivered again after the restart: $got entries"
hub_acked=$(( 40 + acked_full + 20 ))
hub_delivered=$(( ($(num "$ROOT/sub-full.json" entries_received) + $(num "$ROOT/sub-after.json" entries_received)) / 100 ))
[ "$hub_acked" = "$hub_delivered" ] || fail "acked $hub_acked batches, delivered $hub_delivered"

echo "== node: 440000's tongban.records in a tablespace on a 16 MiB tmpfs"
fill "$ts"
echo "filled: $(free_kb "$ts") KiB free"
inbox0=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.inbox")
rows0=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'full'")
ins 2001 12000
fed_wait_sql 110000 "SELECT count(*) FROM tongban.sent_batches" 0 30 || fail "the hub did not take 110000's batches"
fed_wait_log "$ROOT/log/440000.log" 'event=apply_failed' 20 || fail "440000 did not report the failed apply"
sleep 8   # the hub redelivers (redeliver_ms 3000); each attempt must fail the same way
grep -m1 -E 'event=apply_failed' "$ROOT/log/440000.log" || true
grep -Eq 'event=apply_failed.*(No space left on device|SQLSTATE 53100)' "$ROOT/log/440000.log" \
  || fail "apply_failed does not say the disk is full"
fails=$(lines "$ROOT/log/440000.log" 'event=apply_failed')
inbox1=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.inbox")
rows1=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'full'")
dead=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.dead_letters")
bl=$(backlog 440000)
echo "while full: 440000 rows $rows0 -> $rows1, inbox $inbox0 -> $inbox1, apply_failed $fails, dead letters $dead, hub backlog for 440000 $bl batches"
[ "$dead" = 0 ] || fail "a disk-full apply was dead-lettered (acked without applying)"
[ "${bl:-0}" -gt 0 ] || fail "the hub holds no backlog for 440000: something was acked that was not applied"
kill -0 "$(fed_pid 440000)" || fail "440000 died on a full disk"

echo "== space returns"
rm -f "$ts/filler"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'full'" 12000 60 || fail "440000 did not catch up"
sleep 1
a=$(fed_checksum 110000); b=$(fed_checksum 440000)
[ "$a" = "$b" ] || fail "tables differ: $a vs $b"
d=$(fed_psql 440000 -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
[ "$d" = 0 ] || fail "440000 applied a batch twice"
[ "$(fed_psql 440000 -c "SELECT count(*) FROM tongban.dead_letters")" = 0 ] || fail "dead letters after recovery"
for _ in $(seq 1 50); do [ "$(backlog 440000)" = 0 ] && break; sleep 0.2; done
echo "recovered: 110000 $a, 440000 $b, hub backlog for 440000 $(backlog 440000)"
echo "METRIC disk_full_hub_nacks=$nacks hub_acked_while_full=$acked_full hub_batches_acked=$hub_acked hub_batches_delivered=$hub_delivered cursor_save_errors=$cursor_errors node_apply_failed=$fails node_rows=12000 lost=0 duplicated=0"
echo "PASS disk_full"
