#!/usr/bin/env bash
# hostile.sh BUILD -- hostile peers against a real hub (issue 8), while an
# honest publisher h1 streams to an honest subscriber h2 the whole time.
#
# Attacks (tests/tools/tb_hostile): unregistered CURVE keys, a registered
# node signing as another, valid signatures over modified bodies, replays,
# a revoked node, an entry type outside the ACL, messages above
# ZMQ_MAXMSGSIZE, random bytes, truncated protobuf, wrong frame counts and a
# flood of connections. After each: the hub log has the expected
# `event=... reason=...` line and `tbctl hub status --json` moved exactly as
# the tool says it must (rejected.<reason>, totals.zap_denied,
# totals.malformed_frames, totals.duplicates, node.<id>.batches_in), and
# journal.last_seq moved by exactly the batches accepted. At the end: the
# hub is alive, h2 received everything h1 had acked, in order, and the
# honest throughput before / during each attack / after is printed.
set -euo pipefail
BUILD=$(cd "${1:?usage: hostile.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-hostile-XXXXXX")
START=$(date +%s.%N)
MAXMSG=65536
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
die() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT

# ---- status snapshots and their arithmetic ----
cat >"$ROOT/st.py" <<'PY'
import json, sys
root = sys.argv[1]
def load(n):
    return json.load(open(f"{root}/s-{n}.json")), float(open(f"{root}/t-{n}").read())
def get(j, path):
    p = path.split(".")
    if p[0] == "node":
        return [n for n in j["nodes"] if n["id"] == p[1]][0][p[2]]
    return j[p[0]][p[1]]
cmd, a, b = sys.argv[2], sys.argv[3], sys.argv[4]
(ja, ta), (jb, tb) = load(a), load(b)
if cmd == "rate":        # honest records/s accepted from h1 between two snapshots
    print("%.0f" % ((get(jb, "node.h1.records_in") - get(ja, "node.h1.records_in")) / max(tb - ta, 1e-3)))
elif cmd == "check":     # the tool's "expect" against the status deltas
    out = json.loads(open(sys.argv[5]).read().strip().splitlines()[-1])
    bad = []
    for path, want in out["expect"].items():
        d = get(jb, path) - get(ja, path)
        op, n = (">=", int(want[2:])) if want.startswith(">=") else ("=", int(want[1:]))
        if (op == "=" and d != n) or (op == ">=" and d < n):
            bad.append(f"{path} moved by {d}, expected {want}")
    # nothing journaled that no node had accepted
    jd = get(jb, "journal.last_seq") - get(ja, "journal.last_seq")
    nd = sum(n["batches_in"] for n in jb["nodes"]) - sum(n["batches_in"] for n in ja["nodes"])
    if jd != nd:
        bad.append(f"journal.last_seq moved by {jd} but the nodes' batches_in by {nd}")
    print("; ".join(bad))
    sys.exit(1 if bad else 0)
PY
snap() {
  "$BUILD/tbctl" hub status --json -c "$ROOT/etc/hub.yaml" >"$ROOT/s-$1.json" || die "tbctl hub status failed (hub down?)"
  date +%s.%N >"$ROOT/t-$1"
}
st() { python3 "$ROOT/st.py" "$ROOT" "$@"; }
jget() { python3 -c "import json,sys; j=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print($2)" "$1"; }

# ---- the federation: honest h1 -> h2, attackers x (as itself and as y),
# a1 (may send record_upsert only), r1 (to be revoked), sink (receives the
# attackers' valid batches, never online) ----
fed_setup "$ROOT" "$BUILD"
fed_hub $(( 30000 + RANDOM % 10000 ))
sed -i "s/^limits:\$/limits:\n  max_message_bytes: $MAXMSG/" "$ROOT/etc/hub.yaml"
for id in h1 h2 x y r1 sink; do fed_light "$id"; fed_register "$id"; done
fed_light a1
FED_REG_EXTRA='    may_send: [record_upsert]' fed_register a1
fed_start_hub || die "hub did not start"
HUB_LOG="$ROOT/log/hub.log"

# bg_light MODE ID ARGS...: tb_lightnode as ID in the background (exec'ed, so
# that run/ID.pid is its own pid); summary in $ROOT/ID.json
bg_light() {
  local mode=$1 id=$2; shift 2
  ( exec "$BUILD/tb_lightnode" "$mode" --endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB" \
      --curve-dir "$ROOT/pki/$id" --node "$id" --ca "$ROOT/pki/ca/ca.crt" --json --timeout-ms 600000 "$@" ) \
    >"$ROOT/$id.json" 2>>"$ROOT/log/$id.log" &
  echo $! >"$ROOT/run/$id.pid"
}
bg_light subscribe h2 --idle-exit-ms 5000
fed_wait_log "$ROOT/log/h2.log" "h2: welcomed" 15 || die "h2 not welcomed"
bg_light publish h1 --key "$ROOT/pki/h1/node.key" --cert "$ROOT/pki/h1/node.crt" --dest h2 \
  --batches 100000000 --entries 20 --entry-bytes 100 --window 2

echo "== honest traffic before the attacks (3 s)"
sleep 0.5
snap before0; sleep 3; snap before1
RPS_BEFORE=$(st rate before0 before1)
echo "h1 -> h2: $RPS_BEFORE records/s"
[ "$RPS_BEFORE" -gt 0 ] || die "no honest traffic before the attacks"

# ---- attacks ----
COMMON=(--endpoint "tcp://127.0.0.1:$FED_HUB_PORT" --hub-public "$FED_HUB_PUB")
ident() { local id=$1; IDENT=(--curve-dir "$ROOT/pki/$id" --node "$id" --key "$ROOT/pki/$id/node.key" --cert "$ROOT/pki/$id/node.crt" --dest sink); }
ROWS=()
TOTAL_IN=0 TOTAL_REFUSED=0

# attack NAME MODE ID 'LOG_REGEX|...' [tool options...]: runs tb_hostile MODE
# as ID and checks its verdict, the hub log lines (each regex of the
# '|'-separated... list, one per '||') and the status deltas.
attack() {
  local name=$1 mode=$2 id=$3 logres=$4; shift 4
  ident "$id"
  local lines; lines=$(wc -l <"$HUB_LOG")
  snap "$name-0"
  local rc=0
  timeout 120 "$BUILD/tb_hostile" "$mode" "${COMMON[@]}" "${IDENT[@]}" "$@" >"$ROOT/$name.out" 2>"$ROOT/$name.err" || rc=$?
  sleep 0.2      # the last log lines and counters of refused handshakes
  snap "$name-1"
  tail -n +"$((lines + 1))" "$HUB_LOG" >"$ROOT/$name.log"
  local ok=yes why=""
  if [ $rc != 0 ]; then ok=NO; why="tb_hostile exit $rc: $(tail -c 600 "$ROOT/$name.out") $(head -c 300 "$ROOT/$name.err")"; fi
  local bad=""
  if [ -s "$ROOT/$name.out" ]; then bad=$(st check "$name-0" "$name-1" "$ROOT/$name.out") || { ok=NO; why="$why status: $bad"; }; fi
  local re rest=$logres
  while [ -n "$rest" ]; do
    re=${rest%%||*}; [ "$rest" = "$re" ] && rest="" || rest=${rest#*||}
    grep -Eq -- "$re" "$ROOT/$name.log" || { ok=NO; why="$why no hub log line /$re/"; }
  done
  local inputs=0 refused=0
  if [ -s "$ROOT/$name.out" ]; then
    inputs=$(jget "$ROOT/$name.out" "j['inputs']"); refused=$(jget "$ROOT/$name.out" "j['refused']")
  fi
  local rate; rate=$(st rate "$name-0" "$name-1")
  kill -0 "$(fed_pid hub)" 2>/dev/null || die "the hub died during $name"
  [ "$rate" -gt 0 ] || { ok=NO; why="$why honest traffic stopped"; }
  TOTAL_IN=$((TOTAL_IN + inputs)) TOTAL_REFUSED=$((TOTAL_REFUSED + refused))
  local shown=$ok; [ -z "$logres" ] && [ "$ok" = yes ] && shown='yes*'
  ROWS+=("$(printf '%-17s %7s %8s   %-5s %10s' "$name" "$inputs" "$refused" "$shown" "$rate")")
  printf '%-17s inputs=%-5s refused=%-5s expected=%-3s honest=%s rec/s  %s\n' "$name" "$inputs" "$refused" "$ok" "$rate" \
    "$( [ -s "$ROOT/$name.out" ] && jget "$ROOT/$name.out" "','.join('%s=%s' % kv for kv in j['seen'].items())")"
  [ "$ok" = yes ] || fail "$name:$why"
}

echo "== attacks (honest traffic continues)"
snap during0
attack unregistered-key unregistered-key x 'event=connection_refused reason=unregistered_key' --count 5
attack sign-as-other sign-as-other x \
  'event=batch_rejected node=x .*reason=wrong_sender||event=batch_rejected node=x .*reason=bad_signature' \
  --other-node y --other-key "$ROOT/pki/y/node.key" --other-cert "$ROOT/pki/y/node.crt"
attack modified-body modified-body x 'event=batch_rejected node=x .*reason=bad_signature' --other-node y
attack replay replay x 'event=duplicate_batch node=x .*action=ack_again||level=error .*event=batch_rejected node=x .*reason=replay_mismatch .*alarm=1'
attack revoked revoked r1 'event=node_revoked node=r1||event=connection_refused reason=revoked node=r1' \
  --bystander-dir "$ROOT/pki/y" --bystander-node y --exec "'$BUILD/tbctl' hub revoke r1 -c '$ROOT/etc/hub.yaml' >/dev/null"
attack acl acl a1 'event=batch_rejected node=a1 .*reason=acl detail=.*may not send entries of type'
attack oversize oversize x '' --max-bytes "$MAXMSG"
attack random-bytes random-bytes x 'event=batch_rejected node=x .*reason=malformed detail="undecodable frame"' --count 200
attack truncated truncated x 'event=batch_rejected node=x .*reason=malformed detail="signed body is not a valid Batch"' --step 7
attack frame-count frame-count x 'event=frame_rejected reason=malformed detail="too many parts"'
attack flood flood x 'event=connection_refused reason=unregistered_key' --count 200 --registered 50 --idle-tcp 100 \
  --bystander-dir "$ROOT/pki/y" --bystander-node y
snap during1
RPS_DURING=$(st rate during0 during1)

echo "== honest traffic after the attacks (3 s)"
snap after0; sleep 3; snap after1
RPS_AFTER=$(st rate after0 after1)

# ---- the honest pair: nothing lost, nothing out of order ----
fed_stop_proc h1
for _ in $(seq 1 150); do kill -0 "$(fed_pid h2)" 2>/dev/null || break; sleep 0.1; done
fed_stop_proc h2
[ -s "$ROOT/h1.json" ] || die "h1 wrote no summary"
[ -s "$ROOT/h2.json" ] || die "h2 wrote no summary"
acked=$(( $(jget "$ROOT/h1.json" "j['acks']") * 20 ))
got=$(jget "$ROOT/h2.json" "j['entries_received']")
[ "$got" -ge "$acked" ] || fail "h2 received $got records, h1 had $acked acked: lost $((acked - got))"
[ "$(jget "$ROOT/h2.json" "(j['out_of_order'], j['bad_signatures'], j['misaddressed'])")" = "(0, 0, 0)" ] \
  || fail "h2 saw out-of-order, badly signed or misaddressed deliveries: $(cat "$ROOT/h2.json")"
[ "$(jget "$ROOT/h1.json" "j['nacks']")" = 0 ] || fail "the honest publisher was refused: $(cat "$ROOT/h1.json")"
echo "honest h1 -> h2: $acked records acked, $got received (nothing lost, in order)"

kill -0 "$(fed_pid hub)" 2>/dev/null || die "the hub is not running at the end"
snap final
if grep 'level=error' "$HUB_LOG" | grep -v 'reason=replay_mismatch' | grep -q .; then
  fail "unexpected errors in the hub log: $(grep 'level=error' "$HUB_LOG" | grep -v 'reason=replay_mismatch' | head -n 3)"
fi
grep -Eq 'panic|assert|Assertion' "$HUB_LOG" && fail "the hub log shows an assertion"

echo
printf '%-17s %7s %8s   %-5s %10s\n' "attack" "inputs" "refused" "seen" "honest r/s"
printf '%s\n' "${ROWS[@]}"
printf '%-17s %7s %8s   %-5s %10s\n' "(before / after)" "" "" "" "$RPS_BEFORE / $RPS_AFTER"
echo "seen: expected reason in the hub log and status counters; yes* = no hub log line possible:"
echo "  libzmq drops a message above ZMQ_MAXMSGSIZE with the connection before the hub sees it"
echo "  (checked instead: the connection is dropped, nothing stored, the node is served after)."
echo "flood inputs: unregistered + non-CURVE attempts; 50 connections of y and 100 idle TCP"
echo "  connections run alongside (all y welcomed, a newcomer of x served meanwhile)."
ELAPSED=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$START" "$(date +%s.%N)")
echo "METRIC hostile_inputs=$TOTAL_IN refused=$TOTAL_REFUSED honest_rps_before=$RPS_BEFORE during=$RPS_DURING after=$RPS_AFTER honest_records=$acked seconds=$ELAPSED"
[ "$fails" = 0 ] || { echo "$fails failure(s); logs kept in $ROOT" >&2; KEEP=1; exit 1; }
echo "PASS hostile"
