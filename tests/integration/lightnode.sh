#!/usr/bin/env bash
# lightnode.sh BUILD -- a hub and light nodes (tb_lightnode, no PostgreSQL):
# subscribers s1 and s2 are online, p1 publishes 50 batches x 100 entries to
# s1 and then (a second run, new seqs) 50 x 100 to s2. Every run exits 0;
# each subscriber receives exactly 5,000 entries, verified against the CA,
# in order, without duplicates; the publisher gets 50 acks and no nack.
set -euo pipefail
BUILD=$(cd "${1:?usage: lightnode.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-lightnode-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 30 "$ROOT"/log/*.log >&2 || true; exit 1; }
# fed_stop_all returns non-zero when there is no PostgreSQL to stop (none here).
cleanup() { fed_stop_all || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
for id in p1 s1 s2; do
  "$BUILD/tbctl" pki issue --ca "$ROOT/pki/ca" --node "$id" --out "$ROOT/pki/$id" >/dev/null
  fed_register "$id"
done
fed_start_hub || fail "hub did not start"

# light ID MODE ARGS...: tb_lightnode with the common options for node ID.
light() {
  local id=$1 mode=$2; shift 2
  "$BUILD/tb_lightnode" "$mode" --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
    --curve-dir "$ROOT/pki/$id" --node "$id" --ca "$ROOT/pki/ca/ca.crt" --timeout-ms 60000 --json "$@"
}
# num FILE KEY: a numeric member of the one-line JSON summary in FILE.
num() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1"; }
# expect_num FILE KEY WANT
expect_num() {
  local got; got=$(num "$1" "$2")
  [ "$got" = "$3" ] || fail "$(basename "$1"): $2 = '${got}', want $3: $(cat "$1")"
}

echo "== subscribers s1 and s2 come online"
for id in s1 s2; do
  light "$id" subscribe --expect-entries 5000 >"$ROOT/$id.json" 2>>"$ROOT/log/$id.log" &
  echo $! >"$ROOT/run/$id.pid"
done
fed_wait_log "$ROOT/log/s1.log" 'tb_lightnode s1: welcomed ' 15 || fail "s1 was not welcomed"
fed_wait_log "$ROOT/log/s2.log" 'tb_lightnode s2: welcomed ' 15 || fail "s2 was not welcomed"

for dest in s1 s2; do
  echo "== p1 publishes 50 batches x 100 entries to $dest"
  rc=0
  light p1 publish --key "$ROOT/pki/p1/node.key" --cert "$ROOT/pki/p1/node.crt" --dest "$dest" \
    --batches 50 --entries 100 --entry-bytes 256 >"$ROOT/p1-$dest.json" 2>>"$ROOT/log/p1.log" || rc=$?
  [ $rc = 0 ] || fail "publish to $dest exited $rc: $(cat "$ROOT/p1-$dest.json")"
  cat "$ROOT/p1-$dest.json"
  expect_num "$ROOT/p1-$dest.json" batches_sent 50
  expect_num "$ROOT/p1-$dest.json" entries_sent 5000
  expect_num "$ROOT/p1-$dest.json" acks 50
  expect_num "$ROOT/p1-$dest.json" nacks 0
done

echo "== each subscriber got its 5,000 entries, verified, in order, once"
for id in s1 s2; do
  pid=$(fed_pid "$id"); rc=0; wait "$pid" || rc=$?
  rm -f "$ROOT/run/$id.pid"
  [ $rc = 0 ] || fail "$id exited $rc: $(cat "$ROOT/$id.json")"
  cat "$ROOT/$id.json"
  expect_num "$ROOT/$id.json" entries_received 5000
  expect_num "$ROOT/$id.json" batches_received 50
  expect_num "$ROOT/$id.json" duplicates 0
  expect_num "$ROOT/$id.json" out_of_order 0
  expect_num "$ROOT/$id.json" bad_signatures 0
done
grep -q 'event=batch_rejected' "$ROOT/log/hub.log" && fail "the hub rejected a batch"
echo "METRIC lightnode_publish_entries_per_s=$(num "$ROOT/p1-s1.json" entries_per_s)"
echo "PASS lightnode"
