#!/usr/bin/env bash
# run.sh -- tongban's benchmark suite. One entry point:
#
#   ./bench/run.sh [--quick | --full | --tiny] [--build-dir DIR] [--no-build] [--keep] [scenario ...]
#
# Builds in Release mode (build-bench/ of the source tree unless --build-dir),
# starts what each scenario needs in a temporary directory (hub, nodes, their
# own PostgreSQL clusters, light nodes, all through deploy/federation.sh),
# runs it, prints one JSON object per scenario on its own line on stdout and
# a table at the end, and always cleans up (also on failure and Ctrl-C).
# Progress and problems go to stderr. Scenarios (default: all, in this order):
#
#   raw_zmq_relay  bare libzmq ROUTER relay, 512-byte messages (bench/raw_relay.c)
#   hub_relay      2 light publishers -> real hub (CURVE, signatures, journal fsync) -> 1 light subscriber
#   hub_relay_pg   hub_relay with store: postgresql (group commit into a local cluster), ratio to hub_relay
#   e2e_sync       1,000-row transactions on node A's PostgreSQL -> node B's (Ed25519)
#   e2e_latency    a steady 1,000 records/s A -> B, commit on A to commit on B
#   catch_up       B offline while records queue at the hub, then B drains them
#   sm2            e2e_sync with an SM2/SM3 sender
#   fanout         1 light publisher -> a topic with 72 light subscribers
#   hub_memory     hub RSS with 72 connected nodes and a backlog on disk for an offline node
#
# Sizes: --tiny (smoke test, seconds), --quick (default, < 2 min), --full (< 15 min).
# --keep leaves the temporary directory (logs, configs, clusters) for a look.
# Exit: 0 every scenario ran (targets missed or not), 1 a scenario failed, 2 usage.
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_SCENARIOS=(raw_zmq_relay hub_relay hub_relay_pg e2e_sync e2e_latency catch_up sm2 fanout hub_memory)

usage() { sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

SIZE=quick BUILD_DIR="$SRC/build-bench" DO_BUILD=1 KEEP=${KEEP:-0}
SCENARIOS=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick|--full|--tiny) SIZE=${1#--} ;;
    --build-dir) [ $# -ge 2 ] || { echo "run.sh: --build-dir needs a directory" >&2; exit 2; }
                 BUILD_DIR=$2; shift ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    *) case " ${ALL_SCENARIOS[*]} " in
         *" $1 "*) case " ${SCENARIOS[*]:-} " in *" $1 "*) ;; *) SCENARIOS+=("$1") ;; esac ;;
         *) echo "run.sh: unknown scenario $1; one of: ${ALL_SCENARIOS[*]}" >&2; exit 2 ;;
       esac ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")

# ---- sizes ----
case $SIZE in
  tiny)  RAW_MSGS=50000   RELAY_BATCHES=10   E2E_ROWS=5000    LAT_SECS=3  CATCHUP_ROWS=5000
         FAN_BATCHES=4    FAN_ENTRIES=250    MEM_BATCHES=20 ;;
  quick) RAW_MSGS=500000  RELAY_BATCHES=200  E2E_ROWS=100000  LAT_SECS=8  CATCHUP_ROWS=100000
         FAN_BATCHES=20   FAN_ENTRIES=500    MEM_BATCHES=1000 ;;
  full)  RAW_MSGS=2500000 RELAY_BATCHES=1000 E2E_ROWS=1000000 LAT_SECS=30 CATCHUP_ROWS=1000000
         FAN_BATCHES=100  FAN_ENTRIES=1000   MEM_BATCHES=10000 ;;
esac
ENTRY_BYTES=512       # every record / raw message is 512 bytes
RELAY_SENDERS=2       # raw_zmq_relay senders = hub_relay publishers
WINDOW=8              # batches in flight per sender, as a node's batch.window
FAN_SUBS=72
LAT_RATE=1000         # e2e_latency: records/s, in transactions of LAT_TXN rows
LAT_TXN=10
NA=110000 NB=440000 NC=310000   # PG nodes: A (Ed25519) and C (SM2) send to B

# ---- the temporary directory, results and cleanup ----
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-bench-XXXXXX")
chmod 755 "$ROOT"
RESULTS=$ROOT/results.jsonl STATE=$ROOT/state
mkdir -p "$STATE"
: >"$RESULTS"
. "$SRC/deploy/federation.sh"

log() { echo "[bench $(date +%T)] $*" >&2; }

# stop_names NAME...: SIGTERM to the processes recorded in $FED_ROOT/run/NAME.pid
# all at once, SIGKILL after 5 s, then forget them.
stop_names() {
  local n p pids=() alive
  for n in "$@"; do p=$(fed_pid "$n") && [ -n "$p" ] && pids+=("$p"); done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { alive=1; break; }; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for n in "$@"; do rm -f "$FED_ROOT/run/$n.pid"; done
}

# stop_clients: every process of the current federation except the hub and the nodes.
stop_clients() {
  local f n names=()
  for f in "$FED_ROOT"/run/*.pid; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .pid)
    case $n in hub|$NA|$NB|$NC) ;; *) names+=("$n") ;; esac
  done
  [ ${#names[@]} -eq 0 ] || stop_names "${names[@]}"
}

SCEN_PID=
cleanup() {
  local rc=$? fed
  trap - EXIT INT TERM
  if [ -n "$SCEN_PID" ] && kill -0 "$SCEN_PID" 2>/dev/null; then   # interrupted mid-scenario
    pkill -TERM -P "$SCEN_PID" 2>/dev/null || true                 # its loader / relay / light nodes
    kill -TERM "$SCEN_PID" 2>/dev/null || true
    wait "$SCEN_PID" 2>/dev/null || true
  fi
  for fed in light pg; do
    [ -d "$ROOT/$fed" ] || continue
    fed_use "$fed"
    stop_clients
    # in a fresh shell: inside a trap handler a bare `return` (pg.sh's
    # pg_bindir) returns the status from before the trap, and after a
    # signal pg_stop would then give up without stopping the cluster
    FED_ROOT=$FED_ROOT bash -c '. "$1/deploy/federation.sh"; fed_stop_all' _ "$SRC" >/dev/null 2>&1 || true
  done
  if [ "$KEEP" = 1 ]; then log "kept $ROOT"; else rm -rf "$ROOT"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers ----
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# jf FILE KEY...: the members KEY... of the JSON object in FILE, space-separated (null as "null").
jf() {
  python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(" ".join("null" if j.get(k) is None else str(j[k]) for k in sys.argv[2:]))
PY
}

# emit KEY=VALUE...: one JSON line on stdout (and in $RESULTS). A VALUE that
# parses as JSON (number, true, null, {...}) is taken as is, else as a string.
emit() {
  python3 - "$@" <<'PY' | tee -a "$RESULTS"
import json, sys
o = {}
for a in sys.argv[1:]:
    k, _, v = a.partition("=")
    try:
        o[k] = json.loads(v)
    except ValueError:
        o[k] = v
try:
    o.setdefault("load1", float(open("/proc/loadavg").read().split()[0]))  # others on the machine?
except OSError:
    pass
print(json.dumps(o, ensure_ascii=False, separators=(",", ":")))
PY
}

# calc EXPR: a python expression, printed (for ratios and rates).
calc() { python3 -c "import math; x = ($1); print('null' if x is None else (round(x, 3) if isinstance(x, float) else x))"; }

# mem PID FIELD: VmHWM / VmRSS of PID in MiB (one decimal), null if gone.
mem() {
  local kb
  kb=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null) || true
  [ -n "$kb" ] && awk -v k="$kb" 'BEGIN { printf "%.1f\n", k / 1024 }' || echo null
}
# reset_peak PID: restart VmHWM from the current RSS (Linux clear_refs 5).
reset_peak() { [ -n "$1" ] && echo 5 >"/proc/$1/clear_refs" 2>/dev/null || true; }

# cpu_s PID: CPU seconds (user + system) of PID, plus its reaped children's;
# cpu_pg ID: the same for ID's whole PostgreSQL cluster (postmaster, live
# backends and the exited ones it reaped). Differences of two readings give
# a scenario's share; 0 for a process that is gone.
HZ=$(getconf CLK_TCK)
cpu_ticks() {
  local p
  for p in "$@"; do
    case $p in ''|*[!0-9]*) echo 0 ;; *) awk '{ sub(/^.*\) /, ""); print $12 + $13 + $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0 ;; esac
  done |
    awk '{ t += $1 } END { print t + 0 }'
}
cpu_s() { awk -v t="$(cpu_ticks "$1")" -v hz="$HZ" 'BEGIN { printf "%.2f\n", t / hz }'; }
cpu_pg() {
  local pm; pm=$(head -n 1 "$FED_ROOT/pg/$1/pgdata/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  # shellcheck disable=SC2046
  awk -v t="$(cpu_ticks "$pm" $(pgrep -P "$pm"))" -v hz="$HZ" 'BEGIN { printf "%.2f\n", t / hz }'
}

# cpu_snap: CPU seconds of the PG federation's hub, nodes and clusters, as
# "hub nodeA nodeB nodeC pgA pgB pgC"; cpu_json BEFORE AFTER [LOADER_S]: the
# differences as a JSON object (processes that did nothing are left out).
cpu_snap() {
  echo "$(cpu_s "$(fed_pid hub)") $(cpu_s "$(fed_pid $NA)") $(cpu_s "$(fed_pid $NB)") $(cpu_s "$(fed_pid $NC)")" \
       "$(cpu_pg $NA) $(cpu_pg $NB) $(cpu_pg $NC)"
}
cpu_json() {
  python3 - "$1" "$2" "${3:-0}" "$NA" "$NB" "$NC" <<'PY'
import json, sys
a, b = [list(map(float, x.split())) for x in sys.argv[1:3]]
na, nb, nc = sys.argv[4:7]
names = ["hub", "node_" + na, "node_" + nb, "node_" + nc, "pg_" + na, "pg_" + nb, "pg_" + nc]
o = {n: round(y - x, 2) for n, x, y in zip(names, a, b) if y - x > 0.005}
if float(sys.argv[3]) > 0: o["loader"] = round(float(sys.argv[3]), 2)
print(json.dumps(o, separators=(",", ":")))
PY
}

# fed_use light|pg: point federation.sh at one of the two federations of this run.
fed_use() {
  FED_ROOT=$ROOT/$1 FED_BUILD=$BUILD_DIR
  FED_HUB_PORT=$(cat "$FED_ROOT/hubport" 2>/dev/null || true)
  FED_HUB_PUB=$(cat "$FED_ROOT/pki/hub/curve.pub" 2>/dev/null || true)
}

# restart_hub [fresh]: stop the current federation's hub and start it again
# (with "fresh": on an empty data directory). Its log starts over.
restart_hub() {
  fed_stop_proc hub
  if [ "${1:-}" = fresh ]; then rm -rf "$FED_ROOT/hubdata"; mkdir -p "$FED_ROOT/hubdata"; fi
  [ -f "$FED_ROOT/log/hub.log" ] && mv "$FED_ROOT/log/hub.log" "$FED_ROOT/log/hub.log.$(now_ms)"
  fed_start_hub >&2
}

# The light federation: a hub and light nodes only (no PostgreSQL).
#   p1, p2 -> s1 (hub_relay); pub -> topic:fan -> f1..f72 (fanout); p1 -> off (hub_memory backlog)
light_fed() {
  fed_use light
  [ -f "$FED_ROOT/ready" ] && return 0
  log "setting up the light federation (CA, hub, $((FAN_SUBS + 5)) light nodes)"
  fed_setup "$FED_ROOT" "$BUILD_DIR"
  free_port >"$FED_ROOT/hubport"
  FED_TOPICS='topics:
  - name: fan
    publishers: ["pub"]' fed_hub "$(cat "$FED_ROOT/hubport")"
  local id
  for id in p1 p2 s1 pub off; do fed_light "$id"; fed_register "$id"; done
  for i in $(seq 1 $FAN_SUBS); do fed_light "f$i"; fed_register "f$i" fan; done
  mkdir -p "$FED_ROOT/out"
  fed_use light
  touch "$FED_ROOT/ready"
}

# ln_bg ID MODE ARGS...: tb_lightnode as ID in the background (JSON in out/ID.json).
# (the arguments of fed_lightnode, but tb_lightnode itself is the background
# job, so that the recorded pid is the process to stop)
ln_bg() {
  local id=$1 mode=$2 keys=(); shift 2
  [ "$mode" = subscribe ] || keys=(--key "$FED_ROOT/pki/$id/node.key" --cert "$FED_ROOT/pki/$id/node.crt")
  "$BUILD_DIR/tb_lightnode" "$mode" --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
    --curve-dir "$FED_ROOT/pki/$id" --node "$id" --ca "$FED_ROOT/pki/ca/ca.crt" "${keys[@]}" --json "$@" \
    >"$FED_ROOT/out/$id.json" 2>>"$FED_ROOT/log/$id.log" &
  echo $! >"$FED_ROOT/run/$id.pid"
}
# ln_wait ID: waits for it; fails unless it exited 0.
ln_wait() {
  local rc=0
  wait "$(fed_pid "$1")" || rc=$?
  rm -f "$FED_ROOT/run/$1.pid"
  [ $rc = 0 ] || { echo "tb_lightnode $1 exited $rc: $(cat "$FED_ROOT/out/$1.json" 2>/dev/null)" >&2; return 1; }
}
ln_welcomed() { fed_wait_log "$FED_ROOT/log/$1.log" "tb_lightnode $1: welcomed" "${2:-20}"; }

# The PostgreSQL federation: A (Ed25519) and C (SM2) route everything to B.
pg_fed() {
  fed_use pg
  [ -f "$FED_ROOT/ready" ] && return 0
  log "setting up the PostgreSQL federation (hub, nodes $NA and $NC -> $NB, 3 clusters)"
  fed_setup "$FED_ROOT" "$BUILD_DIR"
  free_port >"$FED_ROOT/hubport"
  fed_hub "$(cat "$FED_ROOT/hubport")"
  fed_node $NA ed25519 $NB
  fed_node $NB ed25519
  fed_node $NC sm2 $NB
  local id d
  for id in $NA $NB $NC; do
    fed_register "$id"
    # commit timestamps on both sides: first and last commit, commit-to-commit latency
    d=$FED_ROOT/pg/$id
    echo "track_commit_timestamp = on" >>"$d/pgdata/postgresql.conf"
    pg_as_owner "$(pg_bindir)/pg_ctl" -D "$d/pgdata" -l "$d/server.log" -m fast -w restart >/dev/null
  done
  fed_use pg
  fed_start_hub >&2
  touch "$FED_ROOT/ready"
}
conninfo() { pg_conninfo "$FED_ROOT/pg/$1" "$(cat "$FED_ROOT/pg/$1/port")"; }
# node_up ID: starts node ID unless it runs; waits until it is connected to the hub.
node_up() {
  local p; p=$(fed_pid "$1") || true
  if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then return 0; fi
  local lines=0; [ ! -f "$FED_ROOT/log/$1.log" ] || lines=$(wc -l <"$FED_ROOT/log/$1.log")
  fed_start_node "$1"
  for _ in $(seq 1 150); do
    tail -n +"$((lines + 1))" "$FED_ROOT/log/$1.log" 2>/dev/null | grep -q 'event=hub_connected' && return 0
    kill -0 "$(fed_pid "$1")" 2>/dev/null || { echo "node $1 exited: $(tail -n 3 "$FED_ROOT/log/$1.log")" >&2; return 1; }
    sleep 0.1
  done
  echo "node $1 did not connect to the hub" >&2; return 1
}
# wait_rows ID CATALOG N SECS: until ID's tongban.records holds N rows of CATALOG.
# Every caller loads with --prefix = --catalog, so the loader's last row is
# key "CATALOG-N" and one sender's rows arrive in order: polling for that key
# is a primary-key lookup, and the rows are counted only once it is there.
# (Counting every 0.25 s scanned the whole growing table on the receiver's
# cluster while it applied: at 1,000,000 rows that was ~0.3-0.7 CPU-s per
# poll, ~15 of the receiver cluster's 33 CPU-s in catch_up, and the reason
# --full figures were lower than --quick ones.)
wait_rows() {
  local got= last=
  for _ in $(seq 1 $(($4 * 4))); do
    last=$(fed_psql "$1" -c "SELECT count(*) FROM tongban.records WHERE catalog = '$2' AND key = '$2-$3'")
    if [ "$last" = 1 ]; then
      got=$(fed_psql "$1" -c "SELECT count(*) FROM tongban.records WHERE catalog = '$2'")
      [ "$got" -ge "$3" ] && return 0
    fi
    sleep 0.25
  done
  [ -n "$got" ] || got=$(fed_psql "$1" -c "SELECT count(*) FROM tongban.records WHERE catalog = '$2'")
  echo "$1: $got of $3 records of $2 after $4 s" >&2; return 1
}
# last_commit_ms ID CATALOG: commit time (epoch ms) of the last row of CATALOG on ID.
last_commit_ms() {
  fed_psql "$1" -c "SELECT floor(extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) * 1000)::bigint
                      FROM tongban.records WHERE catalog = '$2'"
}
# lat_body ID CATALOG: p50 p99 max of (commit on ID) - (body "t" = row built on the sender), ms.
lat_body() {
  fed_psql "$1" -F ' ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 1),
      round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 1), round(max(d)::numeric, 1)
    FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000 - (body->>'t')::bigint AS d
            FROM tongban.records WHERE catalog = '$2') s"
}
target_met() { python3 -c "import sys; print('null' if 'null' in sys.argv[1:] else str($1).lower())" "${@:2}"; }

# ---- scenarios (each runs in a subshell with set -e; emits one line) ----

scen_raw_zmq_relay() {
  log "raw_zmq_relay: $RELAY_SENDERS senders x $RAW_MSGS messages of $ENTRY_BYTES B, window $((WINDOW * 1000))"
  local out=$STATE/raw.json
  "$BUILD_DIR/tb_raw_relay" --senders $RELAY_SENDERS --messages "$RAW_MSGS" --size $ENTRY_BYTES \
    --window $((WINDOW * 1000)) --ack-every 1000 >"$out"
  local n secs rate p50 p99 rss
  read -r n secs rate p50 p99 rss < <(jf "$out" messages seconds msgs_per_s p50_ms p99_ms rss_mib)
  echo "$rate" >"$STATE/raw_rate"
  emit scenario=raw_zmq_relay records="$n" seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99" \
    rss_mib="$rss" record_bytes=$ENTRY_BYTES senders=$RELAY_SENDERS window_msgs=$((WINDOW * 1000)) \
    mib_per_s="$(jf "$out" mib_per_s)" target="ceiling of this run" target_met=null
}

# relay_lights TOTAL: hub_relay's light nodes on the current hub: s1
# subscribes (verifying every batch, as a node does), the publishers build
# and sign all their batches first (--prebuild: the load generator's signing
# is not in the timed window, as tb_raw_relay's senders send ready buffers),
# and start sending together once all are ready (--go-file). Each logs its
# first sends / s1 its arrivals, joined by relay_stats for the latency.
# Returns 1 if a light node failed.
relay_lights() {
  local total=$1 i ok=1 go=$FED_ROOT/out/go
  rm -f "$go" "$FED_ROOT"/out/*.sends "$FED_ROOT"/out/*.arrivals
  ln_bg s1 subscribe --expect-entries "$total" --timeout-ms 600000 --arrival-log "$FED_ROOT/out/s1.arrivals"
  ln_welcomed s1
  for i in $(seq 1 $RELAY_SENDERS); do
    [ ! -f "$FED_ROOT/log/p$i.log" ] || mv "$FED_ROOT/log/p$i.log" "$FED_ROOT/log/p$i.log.$(now_ms)"
    ln_bg "p$i" publish --dest s1 --batches "$RELAY_BATCHES" --entries 1000 --entry-bytes $ENTRY_BYTES \
      --window $WINDOW --timeout-ms 600000 --prebuild --go-file "$go" --send-log "$FED_ROOT/out/p$i.sends"
  done
  for i in $(seq 1 $RELAY_SENDERS); do   # ready, or gone (ln_wait tells)
    while ! grep -q "tb_lightnode p$i: prebuilt " "$FED_ROOT/log/p$i.log" 2>/dev/null &&
          kill -0 "$(fed_pid "p$i")" 2>/dev/null; do sleep 0.05; done
  done
  touch "$go"
  for i in $(seq 1 $RELAY_SENDERS); do ln_wait "p$i" || ok=0; done
  ln_wait s1 || ok=0
  [ $ok = 1 ]
}

# relay_stats HUB_CPU_S: "entries first_ms last_ms p50 p99 cpu_json" of the
# last relay_lights run. Latency per entry: s1's arrival of its batch minus
# the publisher's first send of it (what the body's "t" gave before batches
# were prebuilt). cpu_json: CPU seconds of the hub and of each light node
# in the run (the publishers' prebuilding apart, as prebuild).
relay_stats() {
  python3 - "$1" "$FED_ROOT/out" $(seq -f 'p%g' 1 $RELAY_SENDERS) <<'PY'
import json, os, sys
hub_cpu, o, pubs = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
s = json.load(open(os.path.join(o, "s1.json")))
ps = {p: json.load(open(os.path.join(o, p + ".json"))) for p in pubs}
sent = {}
for p in pubs:
    for line in open(os.path.join(o, p + ".sends")):
        seq, ms = line.split()
        sent[(p, int(seq))] = int(ms)
lat = []
for line in open(os.path.join(o, "s1.arrivals")):
    sender, seq, ms, n = line.split()
    t = sent.get((sender, int(seq)))
    if t is not None:
        lat.append((max(0, int(ms) - t), int(n)))
lat.sort()
def pct(q):
    tot = sum(n for _, n in lat)
    if not tot:
        return "null"
    need, acc = q / 100 * tot, 0
    for ms, n in lat:
        acc += n
        if acc >= need:
            return str(ms)
    return str(lat[-1][0])
cpu = {"hub": round(hub_cpu, 2), "s1": round(s["cpu_s"], 2)}
for p in pubs:
    cpu[p] = round(ps[p]["cpu_s"] - ps[p]["prebuild_cpu_s"], 2)
cpu["prebuild"] = round(sum(ps[p]["prebuild_cpu_s"] for p in pubs), 2)
print(s["entries_received"], min(p["first_ms"] for p in ps.values()), s["last_ms"], pct(50), pct(99),
      json.dumps(cpu, separators=(",", ":")))
PY
}

scen_hub_relay() {
  light_fed
  restart_hub fresh
  local total=$((RELAY_SENDERS * RELAY_BATCHES * 1000)) hub hubcpu0
  log "hub_relay: $RELAY_SENDERS publishers x $RELAY_BATCHES batches x 1,000 entries of $ENTRY_BYTES B -> s1"
  hub=$(fed_pid hub) hubcpu0=$(cpu_s "$(fed_pid hub)")
  relay_lights $total
  local rss hubcpu; rss=$(mem "$hub" VmHWM) hubcpu=$(calc "$(cpu_s "$hub") - $hubcpu0")
  local o=$FED_ROOT/out n first last p50 p99 cpu
  read -r n first last p50 p99 cpu < <(relay_stats "$hubcpu")
  local ingest; ingest=$(python3 - "$o"/p[0-9]*.json <<'PY'
import json, sys
ps = [json.load(open(f)) for f in sys.argv[1:]]
span = (max(p["last_ms"] for p in ps) - min(p["first_ms"] for p in ps)) / 1000
print(round(sum(p["acks"] * 1000 for p in ps) / span) if span > 0 else "null")
PY
)
  local secs rate raw ratio
  secs=$(calc "($last - $first) / 1000")
  rate=$(calc "round($n / (($last - $first) / 1000))")
  echo "$rate" >"$STATE/hub_relay_rate"
  raw=$(cat "$STATE/raw_rate" 2>/dev/null || echo null)
  ratio=$( [ "$raw" = null ] && echo null || calc "round($rate / $raw, 3)")
  emit scenario=hub_relay records="$n" seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99" \
    rss_mib="$rss" record_bytes=$ENTRY_BYTES publishers=$RELAY_SENDERS entries_per_batch=1000 window=$WINDOW \
    ingest_records_per_s="$ingest" hub_cpu_s="$hubcpu" cpu_s_by_process="$cpu" \
    raw_zmq_relay_per_s="$raw" ratio_to_raw="$ratio" \
    target=">= 0.5 x raw_zmq_relay" target_met="$(target_met "$ratio >= 0.5" "$ratio")"
}

# hub_relay_pg: hub_relay with the hub on PostgreSQL (store: postgresql, one
# local cluster, synchronous_commit on); the light federation's hub config
# is restored afterwards.
scen_hub_relay_pg() {
  light_fed
  local pgd=$FED_ROOT/pg/hubdb port total=$((RELAY_SENDERS * RELAY_BATCHES * 1000)) i hub
  port=$(pg_free_port)
  rm -rf "$pgd"
  pg_start "$pgd" "$port" >&2 || return 1
  cp "$FED_ROOT/etc/hub.yaml" "$FED_ROOT/etc/hub.yaml.journal"
  printf 'store: postgresql\npostgresql:\n  conninfo: "%s"\n' "$(pg_conninfo "$pgd" "$port")" >>"$FED_ROOT/etc/hub.yaml"
  restart_hub fresh
  fed_wait_log "$FED_ROOT/log/hub.log" 'event=active ' 20 >&2 || return 1
  log "hub_relay_pg: $RELAY_SENDERS publishers x $RELAY_BATCHES batches x 1,000 entries of $ENTRY_BYTES B -> s1 (store postgresql)"
  local ok=1 hubcpu0
  hub=$(fed_pid hub) hubcpu0=$(cpu_s "$(fed_pid hub)")
  relay_lights $total || ok=0
  local rss hubcpu; rss=$(mem "$hub" VmHWM) hubcpu=$(calc "$(cpu_s "$hub") - $hubcpu0")
  mv "$FED_ROOT/etc/hub.yaml.journal" "$FED_ROOT/etc/hub.yaml"
  restart_hub fresh
  pg_stop "$pgd"
  [ $ok = 1 ] || return 1
  local n first last p50 p99 cpu
  read -r n first last p50 p99 cpu < <(relay_stats "$hubcpu")
  local secs rate relay ratio
  secs=$(calc "($last - $first) / 1000")
  rate=$(calc "round($n / (($last - $first) / 1000))")
  relay=$(cat "$STATE/hub_relay_rate" 2>/dev/null || echo null)
  ratio=$( [ "$relay" = null ] && echo null || calc "round($rate / $relay, 3)")
  emit scenario=hub_relay_pg records="$n" seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99" \
    rss_mib="$rss" record_bytes=$ENTRY_BYTES publishers=$RELAY_SENDERS entries_per_batch=1000 window=$WINDOW \
    hub_cpu_s="$hubcpu" cpu_s_by_process="$cpu" hub_relay_per_s="$relay" ratio_to_hub_relay="$ratio" \
    target=">= 0.5 x hub_relay" target_met="$(target_met "$ratio >= 0.5" "$ratio")"
}

# e2e_run SCENARIO SENDER: ROWS rows in 1,000-row transactions on SENDER -> B.
e2e_run() {
  local scen=$1 sender=$2 rows=$E2E_ROWS
  pg_fed
  node_up $NB
  node_up "$sender"
  local hub a b; hub=$(fed_pid hub) a=$(fed_pid "$sender") b=$(fed_pid $NB)
  reset_peak "$hub"; reset_peak "$a"; reset_peak "$b"
  # An earlier scenario's debts -- autovacuum of the rows it loaded, its
  # checkpoint -- are paid now, not during this run (e2e_sync and sm2 are
  # compared; without this the second pays for the first).
  local id; for id in $NA $NB $NC; do
    [ "$(fed_psql "$id" -Atc "SELECT to_regclass('tongban.records') IS NOT NULL")" = t ] || continue
    fed_psql "$id" -c "VACUUM (ANALYZE) tongban.records" -c "CHECKPOINT" >/dev/null
  done
  log "$scen: $rows rows in 1,000-row transactions on $sender -> $NB"
  local cpu0; cpu0=$(cpu_snap)
  "$BUILD_DIR/tb_loadgen" --conninfo "$(conninfo "$sender")" --rows "$rows" --rows-per-txn 1000 \
    --body-bytes $ENTRY_BYTES --catalog "$scen" --prefix "$scen" >"$STATE/$scen.loader.json"
  wait_rows $NB "$scen" "$rows" $((60 + rows / 2000))
  local cpu; cpu=$(cpu_json "$cpu0" "$(cpu_snap)" "$(jf "$STATE/$scen.loader.json" cpu_s)")
  local start end p50 p99 mx lrate
  read -r start lrate < <(jf "$STATE/$scen.loader.json" start_ms rows_per_s)
  end=$(last_commit_ms $NB "$scen")
  read -r p50 p99 mx < <(lat_body $NB "$scen")
  local rh ra rb; rh=$(mem "$hub" VmHWM) ra=$(mem "$a" VmHWM) rb=$(mem "$b" VmHWM)
  local secs rate; secs=$(calc "($end - $start) / 1000") rate=$(calc "round($rows / (($end - $start) / 1000))")
  echo "$rate" >"$STATE/${scen}_rate"
  E2E_EMIT=(scenario="$scen" records="$rows" seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99"
    max_ms="$mx" rss_mib="$(calc "max($rh, $ra, $rb)")"
    rss_mib_by_process="{\"hub\":$rh,\"sender\":$ra,\"receiver\":$rb}"
    cpu_s_by_process="$cpu" loader_rows_per_s="$lrate" rows_per_txn=1000 body_bytes=$ENTRY_BYTES
    sender="$sender" receiver=$NB)
}

scen_e2e_sync() {
  e2e_run e2e_sync $NA
  local rate; rate=$(cat "$STATE/e2e_sync_rate")
  emit "${E2E_EMIT[@]}" sig_alg=ed25519 latency="row built on A -> commit on B, under full load" \
    target=">= 30000 records/s" target_met="$(target_met "$rate >= 30000")"
}

scen_sm2() {
  pg_fed
  e2e_run sm2 $NC
  stop_names $NC
  local rate ed ratio; rate=$(cat "$STATE/sm2_rate"); ed=$(cat "$STATE/e2e_sync_rate" 2>/dev/null || echo null)
  ratio=$( [ "$ed" = null ] && echo null || calc "round($rate / $ed, 3)")
  emit "${E2E_EMIT[@]}" sig_alg=sm2-sm3 e2e_sync_per_s="$ed" ratio_to_e2e_sync="$ratio" \
    target=">= 0.9 x e2e_sync" target_met="$(target_met "$ratio >= 0.9" "$ratio")"
}

scen_e2e_latency() {
  pg_fed
  node_up $NB
  node_up $NA
  local rows=$((LAT_RATE * LAT_SECS)) scen=e2e_latency
  local hub a b; hub=$(fed_pid hub) a=$(fed_pid $NA) b=$(fed_pid $NB)
  reset_peak "$hub"; reset_peak "$a"; reset_peak "$b"
  log "$scen: $LAT_RATE records/s for $LAT_SECS s ($LAT_TXN rows per transaction) $NA -> $NB"
  local cpu0; cpu0=$(cpu_snap)
  "$BUILD_DIR/tb_loadgen" --conninfo "$(conninfo $NA)" --rows $rows --rows-per-txn $LAT_TXN \
    --rate $LAT_RATE --body-bytes $ENTRY_BYTES --catalog $scen --prefix $scen >"$STATE/$scen.loader.json"
  wait_rows $NB $scen $rows 60
  local cpu; cpu=$(cpu_json "$cpu0" "$(cpu_snap)" "$(jf "$STATE/$scen.loader.json" cpu_s)")
  # commit on A -> commit on B, per record, computed on B
  fed_psql $NB -c "CREATE TABLE IF NOT EXISTS public.bench_commit_a (catalog text, key text, commit_ms float8,
                     PRIMARY KEY (catalog, key))"
  fed_psql $NA -c "COPY (SELECT catalog, key, extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000
                           FROM tongban.records WHERE catalog = '$scen') TO STDOUT" |
    fed_psql $NB -c "COPY public.bench_commit_a FROM STDIN"
  local p50 p99 mx n
  read -r p50 p99 mx n < <(fed_psql $NB -F ' ' -c "
    SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY d)::numeric, 2),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY d)::numeric, 2), round(max(d)::numeric, 2), count(*)
      FROM (SELECT extract(epoch FROM pg_xact_commit_timestamp(r.xmin)) * 1000 - a.commit_ms AS d
              FROM tongban.records r JOIN public.bench_commit_a a USING (catalog, key)
             WHERE r.catalog = '$scen') s")
  [ "$n" = $rows ] || { echo "$scen: only $n of $rows records matched A and B" >&2; return 1; }
  local start end behind; read -r start behind < <(jf "$STATE/$scen.loader.json" start_ms behind_ms)
  end=$(last_commit_ms $NB $scen)
  local rh ra rb; rh=$(mem "$hub" VmHWM) ra=$(mem "$a" VmHWM) rb=$(mem "$b" VmHWM)
  emit scenario=$scen records=$rows seconds="$(calc "($end - $start) / 1000")" \
    records_per_s="$(calc "round($rows / (($end - $start) / 1000))")" p50_ms="$p50" p99_ms="$p99" max_ms="$mx" \
    rss_mib="$(calc "max($rh, $ra, $rb)")" rss_mib_by_process="{\"hub\":$rh,\"sender\":$ra,\"receiver\":$rb}" \
    offered_records_per_s=$LAT_RATE rows_per_txn=$LAT_TXN loader_behind_ms="$behind" cpu_s_by_process="$cpu" \
    latency="commit on A -> commit on B (track_commit_timestamp)" \
    target="p50 <= 5 ms, p99 <= 25 ms" target_met="$(target_met "$p50 <= 5 and $p99 <= 25")"
}

scen_catch_up() {
  pg_fed
  node_up $NB
  node_up $NA
  local rows=$CATCHUP_ROWS scen=catch_up
  log "$scen: $NB offline while $rows records queue at the hub"
  stop_names $NB
  "$BUILD_DIR/tb_loadgen" --conninfo "$(conninfo $NA)" --rows $rows --rows-per-txn 1000 \
    --body-bytes $ENTRY_BYTES --catalog $scen --prefix $scen >"$STATE/$scen.loader.json"
  # everything acked by the hub (journaled) before B returns
  fed_wait_sql $NA "SELECT (SELECT count(*) FROM tongban.outbox) + (SELECT count(*) FROM tongban.sent_batches)" 0 \
    $((60 + rows / 2000)) >&2
  local queued_ms; queued_ms=$(now_ms)
  local hub; hub=$(fed_pid hub); reset_peak "$hub"
  log "$scen: $NB back"
  local t0 cpu0; t0=$(now_ms) cpu0=$(cpu_snap)
  node_up $NB
  wait_rows $NB $scen $rows $((60 + rows / 2000))
  local cpu; cpu=$(cpu_json "$cpu0" "$(cpu_snap)")
  local end b; end=$(last_commit_ms $NB $scen) b=$(fed_pid $NB)
  local rh rb; rh=$(mem "$hub" VmHWM) rb=$(mem "$b" VmHWM)
  local rate; rate=$(calc "round($rows / (($end - $t0) / 1000))")
  local lstart; lstart=$(jf "$STATE/$scen.loader.json" start_ms)
  emit scenario=$scen records=$rows seconds="$(calc "($end - $t0) / 1000")" records_per_s="$rate" \
    p50_ms=null p99_ms=null rss_mib="$(calc "max($rh, $rb)")" rss_mib_by_process="{\"hub\":$rh,\"receiver\":$rb}" \
    queue_seconds="$(calc "($queued_ms - $lstart) / 1000")" cpu_s_by_process="$cpu" \
    measured="receiver process start -> last record committed on it" \
    target=">= 50000 records/s" target_met="$(target_met "$rate >= 50000")"
}

scen_fanout() {
  light_fed
  restart_hub fresh
  local n=$((FAN_BATCHES * FAN_ENTRIES)) i hub names=()
  log "fanout: pub -> topic:fan ($FAN_BATCHES x $FAN_ENTRIES entries) -> $FAN_SUBS subscribers"
  for i in $(seq 1 $FAN_SUBS); do
    ln_bg "f$i" subscribe --expect-entries $n --timeout-ms 600000
    names+=("f$i")
  done
  for i in $(seq 1 $FAN_SUBS); do ln_welcomed "f$i" 30; done
  hub=$(fed_pid hub)
  ln_bg pub publish --dest topic:fan --batches $FAN_BATCHES --entries $FAN_ENTRIES --entry-bytes $ENTRY_BYTES \
    --window $WINDOW --timeout-ms 600000
  ln_wait pub
  for i in $(seq 1 $FAN_SUBS); do ln_wait "f$i"; done
  local rss hubcpu; rss=$(mem "$hub" VmHWM) hubcpu=$(cpu_s "$hub")
  local o=$FED_ROOT/out
  local total secs rate minr medr p50 p99
  read -r total secs rate minr medr p50 p99 < <(python3 - "$o/pub.json" "$o"/f[0-9]*.json <<'PY'
import json, statistics, sys
p = json.load(open(sys.argv[1]))
subs = [json.load(open(f)) for f in sys.argv[2:]]
t0 = p["first_ms"]
total = sum(s["entries_received"] for s in subs)
span = (max(s["last_ms"] for s in subs) - t0) / 1000
per = [s["entries_received"] / ((s["last_ms"] - t0) / 1000) for s in subs]
print(total, span, round(total / span), round(min(per)), round(statistics.median(per)),
      statistics.median(s["p50_ms"] for s in subs), max(s["p99_ms"] for s in subs))
PY
)
  local relay ratio; relay=$(cat "$STATE/hub_relay_rate" 2>/dev/null || echo null)
  ratio=$( [ "$relay" = null ] && echo null || calc "round($rate / $relay, 3)")
  emit scenario=fanout records="$total" seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99" \
    rss_mib="$rss" hub_cpu_s="$hubcpu" subscribers=$FAN_SUBS published=$n per_subscriber_min_per_s="$minr" \
    per_subscriber_median_per_s="$medr" hub_relay_per_s="$relay" ratio_to_hub_relay="$ratio" \
    latency="median of the subscribers' p50, max of their p99" \
    target=">= 0.5 x hub_relay (total deliveries/s)" target_met="$(target_met "$ratio >= 0.5" "$ratio")"
}

scen_hub_memory() {
  light_fed
  restart_hub fresh
  local i hub entries=$((MEM_BATCHES * 1000))
  log "hub_memory: $FAN_SUBS connected nodes, $entries-entry backlog for the offline node 'off'"
  for i in $(seq 1 $FAN_SUBS); do ln_bg "f$i" subscribe --idle-exit-ms 3600000 --timeout-ms 3600000; done
  for i in $(seq 1 $FAN_SUBS); do ln_welcomed "f$i" 30; done
  hub=$(fed_pid hub)
  ln_bg p1 publish --dest off --batches $MEM_BATCHES --entries 1000 --entry-bytes $ENTRY_BYTES \
    --window $WINDOW --timeout-ms 3600000
  ln_wait p1
  local hwm1 rss1; hwm1=$(mem "$hub" VmHWM) rss1=$(mem "$hub" VmRSS)
  local st=$STATE/hub_status.json
  "$BUILD_DIR/tbctl" hub status --json -c "$FED_ROOT/etc/hub.yaml" >"$st"
  local online backlog
  read -r online backlog < <(python3 - "$st" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(sum(1 for n in j["nodes"] if n.get("online")), [n["backlog_batches"] for n in j["nodes"] if n["id"] == "off"][0])
PY
)
  [ "$backlog" = $MEM_BATCHES ] || { echo "hub_memory: backlog of 'off' is $backlog batches, want $MEM_BATCHES" >&2; return 1; }
  local jbytes; jbytes=$(du -sb "$FED_ROOT/hubdata" | cut -f1)
  # the same hub restarted on that journal: recovery, and the 72 reconnect
  log "hub_memory: restarting the hub on $((jbytes / 1048576)) MiB of journal"
  local t0; t0=$(now_ms)
  restart_hub
  hub=$(fed_pid hub)
  local up=0 online2=0
  for _ in $(seq 1 300); do
    online2=$("$BUILD_DIR/tbctl" hub status --json -c "$FED_ROOT/etc/hub.yaml" 2>/dev/null |
      python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin)["nodes"] if n.get("online")))' 2>/dev/null || echo 0)
    [ "$online2" -ge $FAN_SUBS ] && { up=1; break; }
    sleep 0.1
  done
  [ $up = 1 ] || { echo "hub_memory: only $online2 nodes back online after the restart" >&2; return 1; }
  local restart_s; restart_s=$(calc "($(now_ms) - $t0) / 1000")
  local hwm2 rss2; hwm2=$(mem "$hub" VmHWM) rss2=$(mem "$hub" VmRSS)
  local names=(); for i in $(seq 1 $FAN_SUBS); do names+=("f$i"); done
  stop_names "${names[@]}"
  local p50 p99 secs rate; read -r p50 p99 secs rate < <(jf "$FED_ROOT/out/p1.json" p50_ms p99_ms seconds entries_per_s)
  local peak; peak=$(calc "max($hwm1, $hwm2)")
  emit scenario=hub_memory records=$entries seconds="$secs" records_per_s="$rate" p50_ms="$p50" p99_ms="$p99" \
    rss_mib="$peak" connected="$online" connected_after_restart="$online2" backlog_batches="$backlog" \
    journal_mib="$(calc "round($jbytes / 1048576, 1)")" \
    hub_vmhwm_ingest_mib="$hwm1" hub_vmrss_ingest_mib="$rss1" hub_vmhwm_restart_mib="$hwm2" \
    hub_vmrss_restart_mib="$rss2" restart_seconds="$restart_s" \
    latency="publisher send -> hub ack per batch (journal fsync)" \
    target="<= 64 MiB" target_met="$(target_met "$peak <= 64")"
}

# ---- build ----
if [ "$DO_BUILD" = 1 ]; then
  log "building (Release) in $BUILD_DIR"
  { cmake -S "$SRC" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release &&
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target tongban-hub tongban-node tbctl tb_lightnode tb_raw_relay tb_loadgen
  } >"$ROOT/build.log" 2>&1 || { tail -n 40 "$ROOT/build.log" >&2; echo "run.sh: build failed" >&2; exit 1; }
fi
BUILD_DIR=$(cd "$BUILD_DIR" && pwd)
for b in tongban-hub tongban-node tbctl tb_lightnode tb_raw_relay tb_loadgen; do
  [ -x "$BUILD_DIR/$b" ] || { echo "run.sh: $BUILD_DIR/$b missing (build it, or drop --no-build)" >&2; exit 1; }
done
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
log "size $SIZE, build $BUILD_DIR (${BUILD_TYPE:-?}), $(nproc) CPUs ($CPU), temp $ROOT"

# ---- run ----
FAILED=0
export FED_LOG_LEVEL=${FED_LOG_LEVEL:-info}
for s in "${SCENARIOS[@]}"; do
  # in the background, so that Ctrl-C / SIGTERM reach the traps at once
  set +e
  ( set -e; "scen_$s" ) &
  SCEN_PID=$!
  wait "$SCEN_PID"
  rc=$?
  SCEN_PID=
  set -e
  if [ $rc != 0 ]; then
    FAILED=1
    [ $rc -ge 128 ] && exit $rc
    log "$s FAILED (exit $rc); last log lines:"
    for fed in light pg; do
      if [ -d "$ROOT/$fed/log" ]; then tail -n 5 "$ROOT/$fed"/log/*.log >&2 2>/dev/null || true; fi
    done
    emit scenario="$s" error="failed with exit $rc (see stderr)"
  fi
  # leave no client behind for the next scenario
  for fed in light pg; do
    if [ -d "$ROOT/$fed" ]; then fed_use $fed; stop_clients; fi
  done
done

# ---- table ----
python3 - "$RESULTS" "$SIZE" "$(nproc)" "$CPU" "${BUILD_TYPE:-?}" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def f(v, nd=0):
    if v is None: return "-"
    if isinstance(v, bool): return "yes" if v else "NO"
    if isinstance(v, (int, float)): return f"{v:,.{nd}f}"
    return str(v)
hdr = ["scenario", "records", "seconds", "records/s", "p50 ms", "p99 ms", "RSS MiB", "target", "met"]
out = []
for r in rows:
    if "error" in r:
        out.append([r["scenario"], "-", "-", "-", "-", "-", "-", r["error"], "FAIL"]); continue
    tgt = r.get("target", "")
    for k in ("ratio_to_raw", "ratio_to_e2e_sync", "ratio_to_hub_relay"):
        if r.get(k) is not None: tgt += f" (x{r[k]:.2f})"
    out.append([r["scenario"], f(r.get("records")), f(r.get("seconds"), 2), f(r.get("records_per_s")),
                f(r.get("p50_ms"), 1), f(r.get("p99_ms"), 1), f(r.get("rss_mib"), 1), tgt,
                f(r.get("target_met")) if r.get("target_met") is not None else "-"])
w = [max(len(str(x)) for x in col) for col in zip(hdr, *out)]
print()
print(f"tongban bench ({sys.argv[2]}, {sys.argv[5]} build) on {sys.argv[3]} CPUs: {sys.argv[4]}")
print("  ".join(h.ljust(w[i]) if i in (0, 7) else h.rjust(w[i]) for i, h in enumerate(hdr)))
for r in out:
    print("  ".join(str(x).ljust(w[i]) if i in (0, 7) else str(x).rjust(w[i]) for i, x in enumerate(r)))
PY
exit $FAILED
