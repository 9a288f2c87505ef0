#!/usr/bin/env bash
# hub_ha.sh BUILD [BATCHES] -- two hubs on one PostgreSQL (store: postgresql),
# one active (advisory lock), one standby; light nodes list both endpoints.
#   1. the standby does not listen while the other is active;
#   2. 2 publishers x BATCHES (default 500) x 20 records -> s1; the active
#      hub is killed with SIGKILL mid-stream: the standby takes over, nodes
#      follow, every (sender, seq) arrives (duplicates only as redeliveries
#      the receiver skips), stored once; takeover time reported;
#   3. split brain: the active hub's lock session is terminated in
#      PostgreSQL: it fences itself before the other hub serves, and at no
#      moment do both ports listen (sampled every 50 ms throughout).
set -euo pipefail
BUILD=$(cd "${1:?usage: hub_ha.sh BUILD_DIR [BATCHES]}" && pwd)
BATCHES=${2:-500}
ENTRIES=20
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-hubha-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 25 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() {
  [ -n "${SAMPLER:-}" ] && kill "$SAMPLER" 2>/dev/null || true
  fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
jget() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
now_ms() { date +%s%3N; }

fed_setup "$ROOT" "$BUILD"
PA=$(( 30000 + RANDOM % 10000 )); PB=$((PA + 1))
fed_hub "$PA"
for id in p1 p2 s1; do fed_light "$id"; fed_register "$id"; done

PGD="$ROOT/pg/hubdb"; PGPORT=$(pg_free_port)
pg_start "$PGD" "$PGPORT" || fail "PostgreSQL did not start"
CONNINFO="$(pg_conninfo "$PGD" "$PGPORT")"
hsql() { psql -X -q -At "$CONNINFO" -c "$1"; }

# hub_conf NAME PORT: etc/NAME.yaml from the federation's hub.yaml
hub_conf() {
  local name=$1 port=$2
  mkdir -p "$ROOT/data-$name"
  sed -e "s|^  id: hub$|  id: $name|" -e "s|tcp://127.0.0.1:$PA|tcp://127.0.0.1:$port|" \
      -e "s|data_dir: .*|data_dir: $ROOT/data-$name|" "$ROOT/etc/hub.yaml" >"$ROOT/etc/$name.yaml"
  cat >>"$ROOT/etc/$name.yaml" <<YAML
store: postgresql
postgresql:
  conninfo: "$CONNINFO"
  timeout_ms: 2000
  check_ms: 500
YAML
}
hub_conf hubA "$PA"
hub_conf hubB "$PB"
start_hub() {   # start_hub NAME
  "$BUILD/tongban-hub" -c "$ROOT/etc/$1.yaml" >>"$ROOT/log/$1.log" 2>&1 &
  echo $! >"$ROOT/run/$1.pid"
}
listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q . ; }
status() { "$BUILD/tbctl" hub status --json -c "$ROOT/etc/$1.yaml" >"$ROOT/status-$1.json" 2>/dev/null; }

# both ports sampled every 50 ms for the whole test: never both listening
( while :; do
    a=0; b=0; listening "$PA" && a=1; listening "$PB" && b=1
    [ $a = 1 ] && [ $b = 1 ] && echo "$(now_ms) BOTH" >>"$ROOT/ports.log"
    sleep 0.05
  done ) &
SAMPLER=$!

echo "== hubA becomes active, hubB stands by (no listener)"
start_hub hubA
fed_wait_log "$ROOT/log/hubA.log" 'event=active ' 20 || fail "hubA not active"
start_hub hubB
fed_wait_log "$ROOT/log/hubB.log" 'event=started .*role=standby' 10 || fail "hubB did not start as standby"
sleep 1.5
listening "$PA" || fail "hubA does not listen"
listening "$PB" && fail "standby hubB listens while hubA is active"
status hubB || fail "tbctl hub status on the standby"
[ "$(jget "$ROOT/status-hubB.json" "j['ha']['role'] + ' ' + j['ha']['active']")" = "standby hubA" ] \
  || fail "standby status: $(jget "$ROOT/status-hubB.json" "j['ha']")"
"$BUILD/tbctl" hub status -c "$ROOT/etc/hubA.yaml" | head -n 5

EPS=(--endpoint "tcp://127.0.0.1:$PA" --endpoint "tcp://127.0.0.1:$PB")
ln() {   # ln MODE ID ARGS...
  local mode=$1 id=$2; shift 2
  "$BUILD/tb_lightnode" "$mode" "${EPS[@]}" --failover-ms 1500 --hub-public "$FED_HUB_PUB" \
    --curve-dir "$ROOT/pki/$id" --node "$id" --ca "$ROOT/pki/ca/ca.crt" \
    $( [ "$mode" != subscribe ] && echo --key "$ROOT/pki/$id/node.key" --cert "$ROOT/pki/$id/node.crt" ) "$@"
}
TOTAL=$((2 * BATCHES * ENTRIES))
echo "== 2 x $BATCHES x $ENTRIES records -> s1; SIGKILL of the active hub mid-stream"
ln subscribe s1 --json --timeout-ms 180000 --expect-entries "$TOTAL" >"$ROOT/s1.json" 2>"$ROOT/log/s1.log" &
echo $! >"$ROOT/run/s1.pid"
for p in p1 p2; do
  ln publish "$p" --dest s1 --batches "$BATCHES" --entries "$ENTRIES" --window 2 --resend-ms 2000 --json \
    --timeout-ms 180000 >"$ROOT/$p.json" 2>"$ROOT/log/$p.log" &
  echo $! >"$ROOT/run/$p.pid"
done
for _ in $(seq 1 300); do
  status hubA && [ "$(jget "$ROOT/status-hubA.json" "j['totals']['batches_in']")" -ge $((BATCHES / 2)) ] && break
  sleep 0.05
done
before=$(jget "$ROOT/status-hubA.json" "j['totals']['batches_in']")
kill_ms=$(now_ms)
kill -KILL "$(cat "$ROOT/run/hubA.pid")"; rm -f "$ROOT/run/hubA.pid"
echo "killed hubA after $before batches accepted"
fed_wait_log "$ROOT/log/hubB.log" 'event=active ' 20 || fail "hubB did not take over"
fed_wait_log "$ROOT/log/hubB.log" 'event=first_ack ' 20 || fail "hubB acked nothing"
active_ms=$(grep -m1 'event=active ' "$ROOT/log/hubB.log" | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
ack_ms=$(grep -m1 'event=first_ack ' "$ROOT/log/hubB.log" | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
for x in p1 p2 s1; do
  wait "$(cat "$ROOT/run/$x.pid")" || fail "$x exited $?: $(cat "$ROOT/$x.json")"; rm -f "$ROOT/run/$x.pid"
done
for p in p1 p2; do
  [ "$(jget "$ROOT/$p.json" "(j['acks'], j['nacks'])")" = "($BATCHES, 0)" ] || fail "$p: $(cat "$ROOT/$p.json")"
  [ "$(jget "$ROOT/$p.json" "j['failovers']")" -ge 1 ] || fail "$p did not fail over"
done
[ "$(jget "$ROOT/s1.json" "(j['entries_received'], j['out_of_order'], j['bad_signatures'])")" = "($TOTAL, 0, 0)" ] \
  || fail "s1: $(cat "$ROOT/s1.json")"
stored=$(hsql "SELECT count(*), count(DISTINCT (sender, sender_seq)) FROM tongban_hub.batches")
[ "$stored" = "$((2 * BATCHES))|$((2 * BATCHES))" ] || fail "batches stored (rows|distinct): $stored"
dups=$(jget "$ROOT/s1.json" "j['duplicates']")
echo "takeover: hubB active $((active_ms - kill_ms)) ms after the kill, first batch acked after $((ack_ms - kill_ms)) ms"
echo "METRIC hub_ha_takeover_ms=$((ack_ms - kill_ms)) active_after_ms=$((active_ms - kill_ms)) records=$TOTAL lost=0 stored_twice=0 redeliveries_skipped=$dups"

echo "== split brain: hubB's lock session is cut; it fences before hubA serves"
start_hub hubA
fed_wait_log "$ROOT/log/hubA.log" 'event=started .*role=standby' 10 || fail "hubA did not come back as standby"
sleep 1.5
listening "$PA" && fail "hubA listens while hubB is active"
ln subscribe s1 --json --timeout-ms 60000 --idle-exit-ms 30000 >"$ROOT/s1b.json" 2>"$ROOT/log/s1b.log" &
echo $! >"$ROOT/run/s1b.pid"
fed_wait_log "$ROOT/log/s1b.log" 'welcomed hub=hubB' 10 || fail "s1 not welcomed by hubB"
cut_ms=$(now_ms)
[ "$(hsql "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tongban-hub:hubB:lock'")" = 1 ] \
  || fail "no lock session of hubB to terminate"
fed_wait_log "$ROOT/log/hubB.log" 'event=fenced ' 10 || fail "hubB did not fence itself"
for _ in $(seq 1 200); do [ "$(grep -c 'event=active ' "$ROOT/log/hubA.log")" -ge 2 ] && break; sleep 0.1; done
[ "$(grep -c 'event=active ' "$ROOT/log/hubA.log")" -ge 2 ] || fail "hubA did not take over"
fenced_ms=$(grep -m1 'event=fenced ' "$ROOT/log/hubB.log" | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
a_ms=$(grep 'event=active ' "$ROOT/log/hubA.log" | tail -n 1 | sed 's/.*unix_ms=\([0-9]*\).*/\1/')
[ "$fenced_ms" -lt "$a_ms" ] || fail "hubA active at $a_ms before hubB fenced at $fenced_ms"
fed_wait_log "$ROOT/log/s1b.log" 'welcomed again hub=hubA' 15 || fail "s1 did not follow to hubA"
echo "hubB fenced $((fenced_ms - cut_ms)) ms after its lock session was cut; hubA active $((a_ms - fenced_ms)) ms later"
ln publish p1 --dest s1 --batches 5 --entries 10 --json >"$ROOT/p1b.json" 2>>"$ROOT/log/p1.log" || fail "publish after the split-brain test"
sleep 1
[ -s "$ROOT/ports.log" ] && fail "both hubs listened at once: $(head -3 "$ROOT/ports.log")"
status hubA; jget "$ROOT/status-hubA.json" "j['ha']"
[ "$(jget "$ROOT/status-hubA.json" "j['ha']['role']")" = active ] || fail "hubA status does not say active"
echo "PASS hub_ha"
