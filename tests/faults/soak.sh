#!/usr/bin/env bash
# soak.sh BUILD [--minutes N] [--rate R] [--every S] -- a long steady run
# (ctest label slow). The hub and three nodes of faults.sh under a steady
# mixed load of R changed records/s (default 5,000) for N minutes (default
# 10): 110000 and 440000 insert, update and delete (the key space stays
# bounded: what a transaction inserts is deleted 100 transactions later),
# routed to each other and to topic:shared (mps). Every S seconds (default
# 30) it prints the RSS (KiB) and open file descriptors of the hub and each
# node, and the load held since the previous sample.
# Flat, the rule checked at the end: for every process, at the last sample
#   RSS <= 1.2 x baseline RSS  and  fds <= baseline fds + max(2, 20%)
# (fds: not counting the hub's journal segment files, shown as +jN, which
# must stay <= 65: the hub keeps at most 64 sealed segments open, LRU),
# the baseline being the first sample at or after minute 2 (after warm-up:
# connections, caches, ZeroMQ buffers), or at or after half the run when it
# is shorter than 4 minutes. Then the tables must be equal on the three
# nodes (count + checksum per catalog) with no inbox duplicate.
set -euo pipefail
usage() { echo "usage: soak.sh BUILD_DIR [--minutes N] [--rate R] [--every S]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" && pwd); shift
MINUTES=${TB_SOAK_MINUTES:-10} RATE=5000 EVERY=30
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) MINUTES=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --every) EVERY=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
[[ $MINUTES =~ ^[1-9][0-9]*$ && $RATE =~ ^[1-9][0-9]*$ && $EVERY =~ ^[1-9][0-9]*$ ]] || usage
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"
LOAD_INS=100 LOAD_UPD=50 LOAD_DEL=100 LOAD_UPD_LAG=20 LOAD_DEL_LAG=100 LOAD_PAD=200
. "$SRC/tests/faults/lib/load.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-soak-XXXXXX")
NODES=(110000 440000 mps)
ORIGINS=(110000 440000)
declare -A CAT=([110000]=sa [440000]=sb)
PROCS=(hub "${NODES[@]}")
LOADPIDS=()
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 15 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() {
  touch "$ROOT/stop" 2>/dev/null || true
  local p
  for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  fed_stop_all
  [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"
}
trap cleanup EXIT
ms() { date +%s%3N; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# fds PID: open descriptors other than journal segments; jfds PID: journal
# segments (*.tbj), which the hub keeps open by design up to a cap of 64 sealed
# ones + the active one (hub/journal.c MAX_OPEN_FDS), so they are checked
# against that bound, not for flatness.
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep -cv '/journal/.*\.tbj$' || true; }
jfds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2>/dev/null | grep -c '/journal/.*\.tbj$' || true; }
ops_done() { cat "$ROOT"/tally.* 2>/dev/null | awk '$2 == "ok" {s += $3} END {print s + 0}'; }
cat_sum() {
  fed_psql "$1" -c "SELECT count(*) || ':' || coalesce(md5(string_agg(md5(key || '|' || body::text || '|' || version || '|' || origin || '|' || hlc), '' ORDER BY key)), '-') FROM tongban.records WHERE catalog = '$2'"
}

echo "== soak: $MINUTES min at $RATE records/s, a sample every ${EVERY}s, root=$ROOT"
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
declare -A PID=()
for p in "${PROCS[@]}"; do PID[$p]=$(fed_pid "$p"); done

for o in "${ORIGINS[@]}"; do
  load_run "$o" "${CAT[$o]}" $(( RATE / ${#ORIGINS[@]} )) "$ROOT/stop" "$ROOT/tally.$o" &
  LOADPIDS+=($!)
done
t0=$(ms) end=$(( t0 + MINUTES * 60000 ))
base_at=$(( MINUTES >= 4 ? 120 : MINUTES * 30 ))
declare -A base_rss=() base_fd=() last_rss=() last_fd=()
printf '%-7s %-9s' 'at_s' 'load_rps'; for p in "${PROCS[@]}"; do printf ' %-17s' "$p rss/fds"; done; echo
last_ops=0 last_t=$t0 have_base=0 max_jfds=0
while :; do
  now=$(ms); next=$(( last_t + EVERY * 1000 ))
  [ "$next" -gt "$end" ] && next=$end
  [ "$next" -gt "$now" ] && sleep "$(( (next - now) / 1000 )).$(printf '%03d' $(( (next - now) % 1000 )))"
  now=$(ms); ops=$(ops_done)
  rps=$(( (ops - last_ops) * 1000 / (now - last_t > 0 ? now - last_t : 1) ))
  at=$(( (now - t0) / 1000 ))
  printf '%-7s %-9s' "$at" "$rps"
  for p in "${PROCS[@]}"; do
    kill -0 "${PID[$p]}" 2>/dev/null || fail "$p died"
    r=$(rss "${PID[$p]}"); f=$(fds "${PID[$p]}"); j=$(jfds "${PID[$p]}")
    last_rss[$p]=$r last_fd[$p]=$f
    [ "$j" -gt "$max_jfds" ] && max_jfds=$j
    [ $have_base = 0 ] && [ "$at" -ge "$base_at" ] && { base_rss[$p]=$r base_fd[$p]=$f; }
    if [ "$j" -gt 0 ]; then printf ' %-17s' "$r/$f+j$j"; else printf ' %-17s' "$r/$f"; fi
  done
  [ $have_base = 0 ] && [ "$at" -ge "$base_at" ] && { have_base=1; printf ' <- baseline'; }
  echo
  last_ops=$ops last_t=$now
  [ "$now" -ge "$end" ] && break
done
touch "$ROOT/stop"
for p in "${LOADPIDS[@]}"; do wait "$p" || fail "load generator failed"; done
LOADPIDS=()
secs=$(( ($(ms) - t0) / 1000 ))
total=$(ops_done)
failed=$(cat "$ROOT"/tally.* | grep -c ' fail' || true)

flat=1
for p in "${PROCS[@]}"; do
  br=${base_rss[$p]} bf=${base_fd[$p]} lr=${last_rss[$p]} lf=${last_fd[$p]}
  slack=$(( bf / 5 > 2 ? bf / 5 : 2 ))
  verdict=flat
  if [ $(( lr * 10 )) -gt $(( br * 12 )) ] || [ "$lf" -gt $(( bf + slack )) ]; then verdict=GROWING; flat=0; fi
  printf '%-7s rss %7s -> %7s KiB (%+d%%)  fds %3s -> %3s  %s\n' "$p" "$br" "$lr" $(( (lr - br) * 100 / br )) "$bf" "$lf" "$verdict"
done

echo "journal segment fds: at most $max_jfds (bound 65)"
[ "$max_jfds" -le 65 ] || flat=0
echo "== draining"
for o in "${ORIGINS[@]}"; do
  fed_wait_sql "$o" "SELECT count(*) FROM tongban.outbox" 0 180 || fail "$o: outbox not drained"
  fed_wait_sql "$o" "SELECT count(*) FROM tongban.sent_batches" 0 180 || fail "$o: batches not acked"
done
for o in "${ORIGINS[@]}"; do
  c=${CAT[$o]}
  for _ in $(seq 1 120); do
    a=$(cat_sum "$o" "$c") same=1
    for n in "${NODES[@]}"; do [ "$(cat_sum "$n" "$c")" = "$a" ] || same=0; done
    [ $same = 1 ] && break; sleep 1
  done
  for n in "${NODES[@]}"; do [ "$(cat_sum "$n" "$c")" = "$a" ] || fail "catalog $c differs on $n"; done
  echo "catalog $c equal on ${#NODES[@]} nodes: $a"
done
dups=0
for n in "${NODES[@]}"; do
  dups=$(( dups + $(fed_psql "$n" -c "SELECT count(*) - count(DISTINCT (sender, seq)) FROM tongban.inbox") ))
done
echo "METRIC soak_minutes=$MINUTES load_rps=$(( total / (secs > 0 ? secs : 1) )) target_rps=$RATE records=$total failed_txns=$failed duplicated=$dups flat=$flat"
[ "$dups" = 0 ] || fail "$dups batches applied twice"
[ "$failed" = 0 ] || fail "$failed transactions of the load failed"
[ "$flat" = 1 ] || fail "RSS or open file descriptors grew (rule: last <= 1.2 x baseline RSS, fds <= baseline + max(2, 20%))"
echo "PASS soak"
