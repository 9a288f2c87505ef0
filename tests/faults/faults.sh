#!/usr/bin/env bash
# faults.sh BUILD [--seed N] [--faults N] [--rate R] -- random faults under load.
# A hub and three nodes with their own PostgreSQL: 110000 and 440000 commit a
# steady mixed load (inserts, updates, deletes in small transactions; R
# changed records/s in all, default 2,000) routed to each other and to
# topic:shared, which mps subscribes to. At moments drawn from a seeded RNG
# (bash $RANDOM, RANDOM=seed; every 2-5 s) one fault out of five:
#   hub       kill -9 the hub, restart it
#   sender    kill -9 110000 or 440000, restart it
#   receiver  kill -9 mps (receives only), restart it
#   pg        immediate stop (pg_ctl -m immediate) of one node's PostgreSQL, restart it
#   hang      SIGSTOP one node for 8 s (> the hub's heartbeat timeout, 5 s), SIGCONT
# each restart after a random 0.2-2 s. N faults (default 20, ~2.5 min).
# Then: outboxes and sent_batches drained; per catalog the three tables are
# equal (count + order-independent checksum of every row); no inbox holds a
# (sender, seq) twice; no dead letter or refused batch; every record the load
# committed (psql exited 0, or found committed after a broken COMMIT) is at
# every node, and nothing else is. Prints the fault table and
#   METRIC faults_injected=.. records_checked=.. lost=0 duplicated=0 load_rps=..
set -euo pipefail
usage() { echo "usage: faults.sh BUILD_DIR [--seed N] [--faults N] [--rate R]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" && pwd); shift
SEED=${TB_FAULTS_SEED:-$(( $(date +%s) % 100000 ))} FAULTS=20 RATE=2000
while [ $# -gt 0 ]; do
  case $1 in
    --seed) SEED=${2:?}; shift 2 ;;
    --faults) FAULTS=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $SEED =~ ^[0-9]+$ && $FAULTS =~ ^[0-9]+$ && $RATE =~ ^[1-9][0-9]*$ ]] || usage
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"
. "$SRC/tests/faults/lib/load.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-faults-XXXXXX")
NODES=(110000 440000 mps)
ORIGINS=(110000 440000)
declare -A CAT=([110000]=fa [440000]=fb)
LOADPIDS=()
fail() {
  echo "FAIL: $* (seed $SEED)" >&2; echo "--- logs in $ROOT/log" >&2
  tail -n 15 "$ROOT"/log/*.log "$ROOT"/pg/*/server.log >&2 || true; exit 1
}
cleanup() {
  touch "$ROOT/stop" 2>/dev/null || true
  local p n
  for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  for n in "${NODES[@]}"; do p=$(fed_pid "$n") && [ -n "$p" ] && kill -CONT "$p" 2>/dev/null || true; done
  fed_stop_all
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
ms() { date +%s%3N; }
sleep_ms() { sleep "$(printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )))"; }
lines() { grep -c -E -- "$2" "$1" 2>/dev/null || true; }
# wait_more FILE REGEX BEFORE SECS: until more lines than BEFORE match
wait_more() {
  local i
  for i in $(seq 1 $(( $4 * 10 ))); do [ "$(lines "$1" "$2")" -gt "$3" ] && return 0; sleep 0.1; done
  return 1
}
alive() { local p; p=$(fed_pid "$1") && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
check_alive() {
  local n
  alive hub || fail "the hub died (not by the test)"
  for n in "${NODES[@]}"; do alive "$n" || fail "node $n died (not by the test)"; done
}
start_hub() {
  local before; before=$(lines "$ROOT/log/hub.log" 'event=started')
  "$FED_BUILD/tongban-hub" -c "$ROOT/etc/hub.yaml" >>"$ROOT/log/hub.log" 2>&1 &
  echo $! >"$ROOT/run/hub.pid"
  wait_more "$ROOT/log/hub.log" 'event=started' "$before" 20 || fail "hub did not restart"
}
start_node() {
  local before; before=$(lines "$ROOT/log/$1.log" 'event=hub_connected')
  fed_start_node "$1"
  wait_more "$ROOT/log/$1.log" 'event=hub_connected' "$before" 30 || fail "$1 did not reconnect"
}
pg_ctl_node() { # pg_ctl_node ID stop|start
  local d="$ROOT/pg/$1"
  if [ "$2" = stop ]; then pg_as_owner "$(pg_bindir)/pg_ctl" -D "$d/pgdata" -m immediate -w stop >/dev/null
  else pg_as_owner "$(pg_bindir)/pg_ctl" -D "$d/pgdata" -l "$d/server.log" -w -t 60 start >/dev/null; fi
}
cat_sum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY key)), '-') FROM tongban.records WHERE catalog = '$2'" 2>/dev/null || echo "unreachable"
}

echo "== faults: seed=$SEED faults=$FAULTS rate=$RATE records/s root=$ROOT"
fed_setup "$ROOT" "$BUILD"
FED_TOPICS='topics:
  - name: shared
    publishers: ["110000", "440000"]' fed_hub $(( 30000 + $$ % 10000 ))
fed_node 110000 ed25519 440000 topic:shared
fed_node 440000 p256 110000 topic:shared
fed_node mps sm2
fed_register 110000
fed_register 440000
fed_register mps shared
fed_start_hub || fail "hub did not start"
for n in "${NODES[@]}"; do fed_start_node "$n"; done
for n in "${NODES[@]}"; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 15 || fail "$n did not connect"; done

for o in "${ORIGINS[@]}"; do
  load_run "$o" "${CAT[$o]}" $(( RATE / ${#ORIGINS[@]} )) "$ROOT/stop" "$ROOT/tally.$o" &
  LOADPIDS+=($!)
done
load_t0=$(ms)
sleep 3

RANDOM=$SEED
declare -A kinds=()
printf '%-4s %-8s %-9s %-7s %-9s %s\n' '#' 'at_s' 'fault' 'target' 'down_ms' 'rows_at_mps' | tee "$ROOT/table.txt"
for i in $(seq 1 "$FAULTS"); do
  sleep_ms $(( 2000 + RANDOM % 3000 ))
  k=$(( RANDOM % 5 )) down=$(( 200 + RANDOM % 1800 )) pick=$RANDOM
  at=$(( ($(ms) - load_t0) / 1000 ))
  case $k in
    0) kind=hub target=hub
       fed_stop_proc hub KILL; sleep_ms "$down"; start_hub ;;
    1) kind=sender target=${ORIGINS[pick % 2]}
       fed_stop_proc "$target" KILL; sleep_ms "$down"; start_node "$target" ;;
    2) kind=receiver target=mps
       fed_stop_proc mps KILL; sleep_ms "$down"; start_node mps ;;
    3) kind=pg target=${NODES[pick % 3]}
       pg_ctl_node "$target" stop; sleep_ms "$down"; pg_ctl_node "$target" start ;;
    4) kind=hang target=${NODES[pick % 3]} down=8000
       before=$(lines "$ROOT/log/hub.log" "event=node_offline node=$target ")
       kill -STOP "$(fed_pid "$target")"; sleep 8; kill -CONT "$(fed_pid "$target")"
       [ "$(lines "$ROOT/log/hub.log" "event=node_offline node=$target ")" -gt "$before" ] \
         || fail "the hub did not notice that $target hung for 8 s" ;;
  esac
  kinds[$kind]=$(( ${kinds[$kind]:-0} + 1 ))
  rows=$(fed_psql mps -c "SELECT count(*) FROM tongban.records" 2>/dev/null || echo '?')
  printf '%-4s %-8s %-9s %-7s %-9s %s\n' "$i" "$at" "$kind" "$target" "$down" "$rows" | tee -a "$ROOT/table.txt"
  sleep 0.5
  check_alive
done
sleep 2
touch "$ROOT/stop"
for p in "${LOADPIDS[@]}"; do wait "$p" || fail "load generator failed"; done
LOADPIDS=()
load_secs=$(( ($(ms) - load_t0) / 1000 ))
check_alive

echo "== draining"
for o in "${ORIGINS[@]}"; do
  fed_wait_sql "$o" "SELECT count(*) FROM tongban.outbox" 0 120 || fail "$o: outbox not drained"
  fed_wait_sql "$o" "SELECT count(*) FROM tongban.sent_batches" 0 120 || fail "$o: batches not acked"
done
checked=0
for o in "${ORIGINS[@]}"; do
  c=${CAT[$o]}
  for i in $(seq 1 120); do
    a=$(cat_sum "$o" "$c") same=1
    for n in "${NODES[@]}"; do [ "$(cat_sum "$n" "$c")" = "$a" ] || same=0; done
    [ $same = 1 ] && break
    sleep 1
  done
  for n in "${NODES[@]}"; do
    b=$(cat_sum "$n" "$c"); echo "catalog $c on $n: $b"
    [ "$b" = "$a" ] || fail "catalog $c: $n has $b, origin $o has $a"
  done
  checked=$(( checked + ${a%%:*} * ${#NODES[@]} ))
done
check_alive

dups=0 dead=0
for n in "${NODES[@]}"; do
  d=$(fed_psql "$n" -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox")
  x=$(fed_psql "$n" -c "SELECT (SELECT count(*) FROM tongban.dead_letters) + (SELECT count(*) FROM tongban.refused_batches)")
  echo "$n: inbox duplicates $d, dead letters + refused batches $x"
  dups=$(( dups + d )); dead=$(( dead + x ))
done

lost=0 extra=0 committed=0 in_doubt=0 failed=0 ops=0
for o in "${ORIGINS[@]}"; do
  c=${CAT[$o]} tally="$ROOT/tally.$o"
  load_in_doubt "$o" "$c" "$tally" >"$ROOT/resolved.$o"
  load_expected "$c" "$tally" "$ROOT/resolved.$o" >"$ROOT/keys.$o"
  ok=$(grep -c ' ok ' "$tally" || true); f=$(grep -c ' fail' "$tally" || true); r=$(wc -l <"$ROOT/resolved.$o")
  ops=$(( ops + $(awk '$2 == "ok" {s += $3} END {print s + 0}' "$tally") ))
  committed=$(( committed + ok + r )); failed=$(( failed + f - r )); in_doubt=$(( in_doubt + r ))
  want=$(wc -l <"$ROOT/keys.$o")
  for n in "${NODES[@]}"; do
    read -r m e < <(load_check "$n" "$c" "$ROOT/keys.$o")
    echo "catalog $c on $n: $want records expected from the load's tally, $m missing, $e unexpected"
    lost=$(( lost + m )); extra=$(( extra + e ))
  done
done
rps=$(( ops / (load_secs > 0 ? load_secs : 1) ))

echo
echo "== summary (seed $SEED)"
cat "$ROOT/table.txt"
printf '%-28s %s\n' "faults injected" "$FAULTS ($(for k in hub sender receiver pg hang; do printf '%s=%s ' $k "${kinds[$k]:-0}"; done | sed 's/ $//'))" \
  "load held" "$rps records/s for ${load_secs}s (target $RATE)" \
  "transactions" "$committed committed ($in_doubt of them after a broken COMMIT), $failed refused during faults" \
  "records checked" "$checked (rows compared on ${#NODES[@]} nodes)" \
  "lost" "$lost" "duplicated (inbox)" "$dups" "unexpected rows" "$extra" "dead letters + refused" "$dead" \
  "redeliveries skipped (inbox)" "$(cat "$ROOT"/log/{110000,440000,mps}.log | grep -c 'event=duplicate_skipped' || true)" \
  "hub duplicate resends" "$(lines "$ROOT/log/hub.log" 'event=duplicate_batch')"
echo "METRIC faults_injected=$FAULTS records_checked=$checked lost=$lost duplicated=$dups load_rps=$rps seed=$SEED"
[ "$lost" = 0 ] || fail "$lost committed records lost"
[ "$dups" = 0 ] || fail "$dups batches applied twice"
[ "$extra" = 0 ] || fail "$extra rows that the load did not commit (or deleted)"
[ "$dead" = 0 ] || fail "$dead dead letters or refused batches"
echo "PASS faults"
