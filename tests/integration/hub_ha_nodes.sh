#!/usr/bin/env bash
# hub_ha_nodes.sh BUILD [RECORDS] -- high availability with real nodes: two
# hubs (store: postgresql, active / standby) on a PostgreSQL primary with a
# synchronous streaming standby; three nodes (110000, 440000, mps), each
# with its own PostgreSQL, list both hub endpoints (hub.endpoints).
#   1. 110000 and 440000 each insert RECORDS/2 rows (1,000-row statements),
#      routed to the two others; the active hub is killed with SIGKILL
#      mid-stream: the standby takes over, the nodes fail over and resend;
#      at the end every node's tables are equal (count + order-independent
#      checksum per catalog), no (sender, seq) applied twice, none stored
#      twice by the hub; takeover time (kill -> first batch acked by the new
#      active hub) and records/s are printed.
#   2. the same again, and mid-stream the hub store's PostgreSQL primary is
#      stopped (immediate) and its standby promoted (pg_ctl promote): the
#      hubs reconnect (conninfo lists both hosts, target_session_attrs=
#      read-write) and carry on; same equality at the end.
# RECORDS defaults to 100,000 per scenario.
set -euo pipefail
BUILD=$(cd "${1:?usage: hub_ha_nodes.sh BUILD_DIR [RECORDS]}" && pwd)
RECORDS=${2:-100000}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-hubhanodes-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 25 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() {
  local p
  for p in "${INSERTERS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
INSERTERS=()
trap cleanup EXIT
now_ms() { date +%s%3N; }
jget() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
# cat_sum ID CATALOG: count + order-independent checksum of one catalog
cat_sum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY key)), '-') FROM tongban.records WHERE catalog = '$2'"
}
# log_ms FILE REGEX: unix ms of the first matching line's ts=
log_ms() {
  local ts; ts=$(grep -m1 -E -- "$2" "$1" | sed -n 's/^ts=\([^ ]*\) .*/\1/p')
  [ -n "$ts" ] && date -d "$ts" +%s%3N
}

fed_setup "$ROOT" "$BUILD"
PA=$(( 30000 + RANDOM % 10000 )); PB=$((PA + 1))

echo "== hub store: PostgreSQL primary + synchronous streaming standby"
P1="$ROOT/pg/hubdb"; P1PORT=$(pg_free_port); mkdir -p "$P1"; echo "$P1PORT" >"$P1/port"
pg_start "$P1" "$P1PORT" || fail "primary did not start"
P2="$ROOT/pg/hubdb2"; P2PORT=$(pg_free_port); while [ "$P2PORT" = "$P1PORT" ]; do P2PORT=$(pg_free_port); done
mkdir -p "$P2"; echo "$P2PORT" >"$P2/port"
[ "$(id -u)" = 0 ] && chown "${TB_PG_USER:-postgres}" "$P2"
PGBIN=$(pg_bindir)
pg_as_owner "$PGBIN/pg_basebackup" -D "$P2/pgdata" -R -X stream -c fast \
  -d "host=$P1 port=$P1PORT user=postgres" >"$P2/basebackup.log" 2>&1 || { cat "$P2/basebackup.log"; fail "pg_basebackup"; }
cat >>"$P2/pgdata/postgresql.conf" <<CONF
port = $P2PORT
unix_socket_directories = '$P2'
CONF
# -R wrote primary_conninfo into postgresql.auto.conf; name the standby for synchronous_standby_names
echo "primary_conninfo = 'host=$P1 port=$P1PORT user=postgres application_name=hubstandby'" \
  | pg_as_owner tee -a "$P2/pgdata/postgresql.auto.conf" >/dev/null
pg_as_owner "$PGBIN/pg_ctl" -D "$P2/pgdata" -l "$P2/server.log" -w -t 60 start >/dev/null || { cat "$P2/server.log"; fail "standby did not start"; }
pg_psql "$P1" "$P1PORT" -c "ALTER SYSTEM SET synchronous_standby_names = 'hubstandby'" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 100); do
  [ "$(pg_psql "$P1" "$P1PORT" -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'hubstandby'")" = sync ] && break
  sleep 0.1
done
[ "$(pg_psql "$P1" "$P1PORT" -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'hubstandby'")" = sync ] \
  || fail "standby is not a synchronous standby"
FED_HUB_CONNINFO="host=$P1,$P2 port=$P1PORT,$P2PORT user=postgres dbname=postgres connect_timeout=2 target_session_attrs=read-write"

echo "== two hubs (hub1 active, hub2 standby), three nodes listing both"
fed_hub_pg "$PA" "$PB"
fed_node 110000 ed25519 440000 mps
fed_node 440000 p256 110000 mps
fed_node mps sm2
for n in 110000 440000 mps; do fed_register $n; done
grep -q "endpoints: \[tcp://127.0.0.1:$PA, tcp://127.0.0.1:$PB\]" "$ROOT/etc/mps.yaml" || fail "node config without hub.endpoints"
fed_start_hubs || fail "hubs did not start"
grep -q 'event=started .*role=standby' "$ROOT/log/hub2.log" || fail "hub2 is not a standby"
for n in 110000 440000 mps; do fed_start_node $n; done
for n in 110000 440000 mps; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected .*hub=hub1' 20 || fail "$n did not connect to hub1"; done

# insert_all ID CATALOG PREFIX COUNT: COUNT rows in 1,000-row statements;
# half way it leaves $ROOT/half-PREFIX-ID and, until $ROOT/go-PREFIX exists
# (the fault was injected), waits: there is always traffic after the fault
insert_all() {
  local id=$1 cat=$2 pre=$3 count=$4 off
  for ((off = 0; off < count; off += 1000)); do
    if [ $off -ge $((count / 2)) ] && [ ! -e "$ROOT/go-$pre" ]; then
      touch "$ROOT/half-$pre-$id"
      for _ in $(seq 1 1200); do [ -e "$ROOT/go-$pre" ] && break; sleep 0.1; done
    fi
    fed_psql "$id" -c "INSERT INTO tongban.records(catalog, key, body)
      SELECT '$cat', '$pre' || g, jsonb_build_object('n', g, 'by', '$id', 'pad', repeat('x', 200))
      FROM generate_series($off + 1, LEAST($off + 1000, $count)) g" || return 1
  done
}
# batches_in HUB: batches the hub accepted (tbctl hub status)
batches_in() {
  "$BUILD/tbctl" hub status --json -c "$ROOT/etc/$1.yaml" >"$ROOT/status-$1.json" 2>/dev/null \
    && jget "$ROOT/status-$1.json" "j['totals']['batches_in']" || echo 0
}
# start_inserts PREFIX: both senders in the background
start_inserts() {
  INSERTERS=()
  insert_all 110000 a "$1" $((RECORDS / 2)) & INSERTERS+=($!)
  insert_all 440000 b "$1" $((RECORDS - RECORDS / 2)) & INSERTERS+=($!)
}
wait_inserts() {
  local p
  for p in "${INSERTERS[@]}"; do wait "$p" || fail "inserts failed"; done
  INSERTERS=()
}
# check_equal PREFIX: every node has every row of both catalogs, tables equal
check_equal() {
  local pre=$1 n c want
  for c in a b; do
    want=$(fed_psql $([ $c = a ] && echo 110000 || echo 440000) -c "SELECT count(*) FROM tongban.records WHERE catalog = '$c'")
    for n in 110000 440000 mps; do
      fed_wait_sql $n "SELECT count(*) FROM tongban.records WHERE catalog = '$c'" "$want" 240 || fail "$n: catalog $c incomplete"
    done
  done
  for n in 110000 440000; do
    fed_wait_sql $n "SELECT count(*) FROM tongban.outbox" 0 60 || fail "$n: outbox not drained"
    fed_wait_sql $n "SELECT count(*) FROM tongban.sent_batches" 0 60 || fail "$n: batches not acked"
  done
  for c in a b; do
    local s0; s0=$(cat_sum 110000 $c)
    for n in 440000 mps; do [ "$(cat_sum $n $c)" = "$s0" ] || fail "$n: catalog $c differs: $(cat_sum $n $c) vs $s0"; done
  done
  [ "$(fed_psql mps -c "SELECT count(*) FROM tongban.records WHERE key LIKE '$pre%'")" = "$RECORDS" ] || fail "mps lacks rows of $pre"
  for n in 110000 440000 mps; do
    [ "$(fed_psql $n -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")" = 0 ] || fail "$n applied a batch twice"
  done
  local stored; stored=$(pg_psql "$P2" "$P2PORT" -c "SELECT count(*) = count(DISTINCT (sender, sender_seq)) FROM tongban_hub.batches" 2>/dev/null \
    || pg_psql "$P1" "$P1PORT" -c "SELECT count(*) = count(DISTINCT (sender, sender_seq)) FROM tongban_hub.batches")
  [ "$stored" = t ] || fail "the hub stored a (sender, seq) twice"
}
expected_batches=$(( 2 * RECORDS / 1000 ))     # 2 senders x 2 destinations x RECORDS/2/1000

echo "== 1. $RECORDS records; SIGKILL of the active hub mid-stream"
t0=$(now_ms)
start_inserts k1-
# mid-stream: as soon as one sender is half way (the other keeps inserting)
for _ in $(seq 1 1200); do ls "$ROOT"/half-k1-* >/dev/null 2>&1 && break; sleep 0.05; done
before=$(batches_in hub1)
kill_ms=$(now_ms)
kill -KILL "$(fed_pid hub1)"; rm -f "$ROOT/run/hub1.pid"
touch "$ROOT/go-k1-"
echo "killed hub1 after $before of ~$expected_batches batches accepted"
fed_wait_log "$ROOT/log/hub2.log" 'event=active ' 20 || fail "hub2 did not take over"
fed_wait_log "$ROOT/log/hub2.log" 'event=first_ack ' 30 || fail "hub2 acked nothing"
active_ms=$(grep -m1 'event=active ' "$ROOT/log/hub2.log" | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
ack_ms=$(grep -m1 'event=first_ack ' "$ROOT/log/hub2.log" | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
for n in 110000 440000 mps; do
  fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected .*hub=hub2' 20 || fail "$n did not follow to hub2"
done
wait_inserts
check_equal k1-
t1=$(now_ms)
follow=""
for n in 110000 440000 mps; do
  grep -q "event=hub_failover node=$n from=tcp://127.0.0.1:$PA to=tcp://127.0.0.1:$PB" "$ROOT/log/$n.log" || fail "$n logged no failover"
  follow="$follow $n=$(( $(log_ms "$ROOT/log/$n.log" 'event=hub_connected .*hub=hub2') - kill_ms ))ms"
done
"$BUILD/tbctl" node status --json -c "$ROOT/etc/mps.yaml" >"$ROOT/mps-status.json"
[ "$(jget "$ROOT/mps-status.json" "j['hub']['failovers'] >= 1 and j['hub']['endpoint'] == 'tcp://127.0.0.1:$PB'")" = True ] \
  || fail "mps status: $(jget "$ROOT/mps-status.json" "j['hub']")"
dups=$(cat "$ROOT"/log/{110000,440000,mps}.log | grep -c 'event=duplicate_skipped' || true)
echo "takeover: hub2 active $((active_ms - kill_ms)) ms after the kill, first batch acked after $((ack_ms - kill_ms)) ms; nodes welcomed by hub2:$follow"
echo "METRIC hub_ha_nodes_takeover_ms=$((ack_ms - kill_ms)) active_after_ms=$((active_ms - kill_ms)) records=$RECORDS records_per_s=$(( RECORDS * 1000 / (t1 - t0) )) tables_equal=3 applied_twice=0 redeliveries_skipped=$dups"

echo "== 2. $RECORDS records; the hub store's PostgreSQL primary stops, its standby is promoted mid-stream"
fed_start_hub_i 1
fed_wait_log "$ROOT/log/hub1.log" 'event=started .*role=standby' 10 || fail "hub1 did not come back as standby"
t0=$(now_ms)
base2=$(batches_in hub2)
start_inserts k2-
for _ in $(seq 1 1200); do ls "$ROOT"/half-k2-* >/dev/null 2>&1 && break; sleep 0.05; done
echo "stopping the primary after $(( $(batches_in hub2) - base2 )) of ~$expected_batches batches accepted"
stop_ms=$(now_ms)
pg_as_owner "$PGBIN/pg_ctl" -D "$P1/pgdata" -m immediate -w stop >/dev/null || fail "primary did not stop"
pg_as_owner "$PGBIN/pg_ctl" -D "$P2/pgdata" -w -t 60 promote >/dev/null || fail "promotion failed"
promoted_ms=$(now_ms)
touch "$ROOT/go-k2-"
[ "$(pg_psql "$P2" "$P2PORT" -c "SELECT pg_is_in_recovery()")" = f ] || fail "standby still in recovery"
wait_inserts
check_equal k2-
t1=$(now_ms)
for h in hub1 hub2; do if grep -q 'event=fenced ' "$ROOT/log/$h.log"; then echo "$h fenced"; fi; done
act=$(for h in hub1 hub2; do
  ms=$(grep 'event=active ' "$ROOT/log/$h.log" | tail -n 1 | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
  if [ -n "$ms" ] && [ "$ms" -gt "$stop_ms" ]; then echo "$h $ms"; fi
done | sort -k2 -n | head -n 1)
[ -n "$act" ] || fail "no hub became active after the promotion"
echo "PostgreSQL failover: promoted $((promoted_ms - stop_ms)) ms after the stop; ${act%% *} active $(( ${act##* } - stop_ms )) ms after the stop"
echo "METRIC hub_ha_nodes_pg_failover_active_ms=$(( ${act##* } - stop_ms )) records=$RECORDS records_per_s=$(( RECORDS * 1000 / (t1 - t0) )) tables_equal=3 applied_twice=0"
echo "PASS hub_ha_nodes"
