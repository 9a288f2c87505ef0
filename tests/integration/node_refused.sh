#!/usr/bin/env bash
# node_refused.sh BUILD -- deliveries a node refuses are parked, acked and
# retried; the stream behind them does not stall. Hub (deliver_window 4) +
# senders xsend, ysend, zsend + receiver recv, all full nodes with
# PostgreSQL. recv is stopped; xsend sends 6 batches, ysend 2, zsend 1; the
# operator revokes xsend and registers a new certificate for zsend at the
# hub; recv comes back: it parks xsend's 6 batches (signer revoked) and
# zsend's (signer not in the directory), applies ysend's and ysend's next
# one (without parking, xsend's 6 unacked batches would fill the window of
# 4 and nothing behind them would ever arrive). tbctl node refused / status
# and /metrics show exactly those. zsend's old certificate restored: its
# parked batch is applied by itself. xsend's: tbctl node retry-refused
# refuses (exit 3) while xsend is revoked, applies them once it is not;
# every table then equals its sender's.
set -euo pipefail
BUILD=$(cd "${1:?usage: node_refused.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-refused-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT
# jq_ FILE PYEXPR: PYEXPR over the JSON j read from FILE
jq_() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
cat_sum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY key)), '-') FROM tongban.records WHERE catalog = '$2'"
}
count() { fed_psql recv -c "SELECT count(*) FROM tongban.records WHERE catalog = '$1'"; }
node_ctl() { "$BUILD/tbctl" node "$@" -c "$ROOT/etc/recv.yaml"; }
hub_ctl() { "$BUILD/tbctl" hub "$@" -c "$ROOT/etc/hub.yaml"; }
# send ID CATALOG N: one batch of N records from ID, acked by the hub before returning
send() {
  local id=$1 cat=$2 n=$3
  fed_psql "$id" -c "INSERT INTO tongban.records(catalog, key, body)
    SELECT '$cat', '$id-' || (SELECT count(*) FROM tongban.records WHERE catalog = '$cat') + g,
           jsonb_build_object('g', g, 'from', '$id') FROM generate_series(1, $n) g"
  fed_wait_sql "$id" "SELECT (SELECT count(*) FROM tongban.outbox) + (SELECT count(*) FROM tongban.sent_batches)" 0 30 \
    || fail "$id: batch not acked by the hub"
}
# metric NAME WANT: waits (10 s) until recv's /metrics shows NAME = WANT
metric() {
  local got=
  for _ in $(seq 1 50); do
    got=$(python3 -c "import urllib.request,sys
for l in urllib.request.urlopen('http://127.0.0.1:$HTTP/metrics', timeout=5).read().decode().splitlines():
    if l.split(' ')[0] == sys.argv[1]: print(l.split(' ')[1])" "$1" 2>/dev/null) || got=
    [ "$got" = "$2" ] && return 0
    sleep 0.2
  done
  fail "metric $1 is '$got', want $2"
}
parked() { fed_psql recv -c "SELECT count(*) FROM tongban.refused_deliveries $*"; }

fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
sed -i 's/^limits:$/limits:\n  deliver_window: 4/' "$ROOT/etc/hub.yaml"
fed_node xsend ed25519 recv
fed_node ysend p256 recv
fed_node zsend ed25519 recv
fed_node recv ed25519
HTTP=$(( 40000 + RANDOM % 10000 ))
printf 'http:\n  listen: "127.0.0.1:%s"\n' "$HTTP" >>"$ROOT/etc/recv.yaml"
for n in xsend ysend zsend recv; do fed_register $n; done
fed_start_hub || fail "hub did not start"
for n in xsend ysend zsend recv; do fed_start_node $n; done
for n in xsend ysend zsend recv; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 15 || fail "$n did not connect"; done

echo "== baseline: one batch from each sender reaches recv"
for n in xsend ysend zsend; do send $n base 1; done
fed_wait_sql recv "SELECT count(*) FROM tongban.records WHERE catalog = 'base'" 3 30 || fail "baseline not applied"

echo "== recv offline: xsend sends 6 batches, ysend 2, zsend 1; xsend revoked, zsend's certificate replaced at the hub"
fed_stop_proc recv
for i in 1 2 3 4 5 6; do send xsend fromx 10; done
for i in 1 2; do send ysend fromy 10; done
send zsend fromz 10
xseqs=$(fed_psql xsend -c "SELECT string_agg(g::text, ',' ORDER BY g) FROM generate_series(2, (SELECT next_seq - 1 FROM tongban.node_state)) g")
[ "$xseqs" = "2,3,4,5,6,7" ] || fail "xsend's batches are $xseqs, not 2..7 (one batch per send)"
hub_ctl revoke xsend || fail "tbctl hub revoke"
"$BUILD/tbctl" pki issue --ca "$ROOT/pki/ca" --node zsend --out "$ROOT/pki/zsend-new" >/dev/null
sed -i "s|$ROOT/pki/zsend/node.crt|$ROOT/pki/zsend-new/node.crt|" "$ROOT/etc/hub.yaml"
hub_ctl reload || fail "hub reload (zsend's new certificate)"

echo "== recv back: parks 7 deliveries, applies ysend's, and ysend's next one"
fed_start_node recv
fed_wait_sql recv "SELECT count(*) FROM tongban.records WHERE catalog = 'fromy'" 20 30 || fail "ysend's batches not applied"
fed_wait_sql recv "SELECT count(*) FROM tongban.refused_deliveries" 7 30 || fail "refused deliveries not parked"
send ysend fromy 5
fed_wait_sql recv "SELECT count(*) FROM tongban.records WHERE catalog = 'fromy'" 25 30 || fail "the stream stalled: ysend's later batch not applied"
[ "$(count fromx)" = 0 ] && [ "$(count fromz)" = 0 ] || fail "a refused batch was applied"
[ "$(parked "WHERE sender = 'xsend' AND reason = 'signer revoked'")" = 6 ] || fail "xsend's parked rows"
[ "$(fed_psql recv -c "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM tongban.refused_deliveries WHERE sender = 'xsend'")" = "$xseqs" ] \
  || fail "xsend's parked seqs"
[ "$(parked "WHERE sender = 'zsend' AND seq = 2 AND reason = 'signer not in the directory'")" = 1 ] || fail "zsend's parked row"
[ "$(parked "WHERE hub_seq IS NULL OR retries <> 0 OR octet_length(delivery) < 100")" = 0 ] || fail "parked rows incomplete"
for _ in $(seq 1 50); do
  hub_ctl status --json >"$ROOT/hub.json"
  [ "$(jq_ "$ROOT/hub.json" "[(n['in_flight'], n['lag_hub_seq']) for n in j['nodes'] if n['id'] == 'recv'][0]")" = "(0, 0)" ] && break
  sleep 0.2
done
[ "$(jq_ "$ROOT/hub.json" "[(n['in_flight'], n['lag_hub_seq']) for n in j['nodes'] if n['id'] == 'recv'][0]")" = "(0, 0)" ] \
  || fail "the hub's cursor for recv did not pass everything: $(jq_ "$ROOT/hub.json" "[n for n in j['nodes'] if n['id'] == 'recv'][0]")"
[ "$(grep -c 'event=delivery_parked node=recv .*sender=xsend .*reason="signer revoked"' "$ROOT/log/recv.log")" = 6 ] \
  || fail "delivery_parked not logged 6 times for xsend"
[ "$(grep -c 'event=delivery_parked node=recv .*sender=zsend .*reason="signer not in the directory"' "$ROOT/log/recv.log")" = 1 ] \
  || fail "delivery_parked not logged for zsend"

echo "== tbctl node refused / status, /metrics"
node_ctl refused | tee "$ROOT/refused.txt"
[ "$(grep -c ' xsend .*signer revoked$' "$ROOT/refused.txt")" = 6 ] || fail "tbctl node refused: xsend's rows"
[ "$(grep -c ' zsend .*signer not in the directory$' "$ROOT/refused.txt")" = 1 ] || fail "tbctl node refused: zsend's row"
node_ctl refused --json >"$ROOT/refused.json"
[ "$(jq_ "$ROOT/refused.json" "(len(j), sorted(set((r['sender'], r['reason']) for r in j)), [r['seq'] for r in j if r['sender'] == 'xsend'])")" = \
  "(7, [('xsend', 'signer revoked'), ('zsend', 'signer not in the directory')], [2, 3, 4, 5, 6, 7])" ] || fail "tbctl node refused --json: $(cat "$ROOT/refused.json")"
node_ctl status | tee "$ROOT/status.txt" | grep -q '7 refused deliveries (tbctl node refused)' || fail "text status: $(cat "$ROOT/status.txt")"
node_ctl status --json >"$ROOT/status.json"
[ "$(jq_ "$ROOT/status.json" "(j['database']['refused_deliveries'], j['totals']['deliveries_parked'], j['totals']['rejected_in'], j['totals']['parked_applied'])")" = "(7, 7, 7, 0)" ] \
  || fail "status --json: $(cat "$ROOT/status.json")"
metric tongban_node_deliveries_parked_total 7
metric tongban_node_rejected_in_total 7
metric tongban_node_parked_applied_total 0

echo "== zsend's old certificate back at the hub: its parked batch is applied by itself"
sed -i "s|$ROOT/pki/zsend-new/node.crt|$ROOT/pki/zsend/node.crt|" "$ROOT/etc/hub.yaml"
hub_ctl reload || fail "hub reload (zsend's certificate restored)"
fed_wait_sql recv "SELECT count(*) FROM tongban.records WHERE catalog = 'fromz'" 10 30 || fail "zsend's parked batch not retried"
[ "$(parked)" = 6 ] && [ "$(parked "WHERE sender = 'zsend'")" = 0 ] || fail "zsend's row not removed after the apply"
grep -q 'event=refused_retried node=recv .*sender=zsend seq=2 result=applied' "$ROOT/log/recv.log" || fail "automatic retry not logged"
[ "$(cat_sum zsend fromz)" = "$(cat_sum recv fromz)" ] || fail "fromz differs"
metric tongban_node_parked_applied_total 1

echo "== tbctl node retry-refused: refused while xsend is revoked (exit 3), applied once it is not"
id=$(jq_ "$ROOT/refused.json" "[r['id'] for r in j if r['sender'] == 'xsend'][0]")
rc=0; node_ctl retry-refused "$id" >"$ROOT/retry.txt" || rc=$?
[ $rc = 3 ] && grep -q "delivery $id is still refused: signer revoked" "$ROOT/retry.txt" || fail "retry while revoked: rc=$rc $(cat "$ROOT/retry.txt")"
[ "$(parked "WHERE id = $id AND retries = 1 AND reason = 'signer revoked' AND retried_at IS NOT NULL")" = 1 ] || fail "retry not recorded"
rc=0; node_ctl retry-refused 999999 >/dev/null || rc=$?; [ $rc = 1 ] || fail "retry of an unknown id: rc=$rc"
rc=0; node_ctl retry-refused abc 2>/dev/null || rc=$?; [ $rc = 2 ] || fail "retry-refused abc: rc=$rc"
sed -i '/^xsend /d' "$ROOT/hubdata/revoked"
hub_ctl reload || fail "hub reload (xsend's revocation lifted)"
sleep 2
[ "$(parked)" = 6 ] || fail "revoked deliveries must wait for the operator, not be retried by themselves"
for r in $(jq_ "$ROOT/refused.json" "' '.join(str(r['id']) for r in j if r['sender'] == 'xsend')"); do
  node_ctl retry-refused "$r" | tee -a "$ROOT/retry.txt" | grep -q "^ok: refused delivery $r: batch xsend/[2-7] (10 entries) applied" \
    || fail "retry-refused $r: $(tail -n 1 "$ROOT/retry.txt")"
done
[ "$(parked)" = 0 ] || fail "rows left after the retries"
[ "$(cat_sum xsend fromx)" = "$(cat_sum recv fromx)" ] && [ "$(count fromx)" = 60 ] || fail "fromx differs after the retries"
[ "$(cat_sum ysend fromy)" = "$(cat_sum recv fromy)" ] || fail "fromy differs"
[ "$(fed_psql recv -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")" = 0 ] || fail "a batch applied twice"
rc=0; node_ctl retry-refused "$id" >/dev/null || rc=$?; [ $rc = 1 ] || fail "retry of an applied (removed) delivery: rc=$rc"
metric tongban_node_parked_applied_total 7
metric tongban_node_deliveries_parked_total 7
node_ctl status --json >"$ROOT/status.json"
[ "$(jq_ "$ROOT/status.json" "(j['database']['refused_deliveries'], j['totals']['parked_applied'])")" = "(0, 7)" ] || fail "final status"
echo "PASS node_refused: 7 parked (6 revoked, 1 unknown signer), 25 + 60 + 10 records applied, no stall"
