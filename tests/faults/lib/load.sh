#!/usr/bin/env bash
# load.sh -- a steady mixed load for tests/faults/*.sh (source it after
# deploy/federation.sh). Not a test itself (the ctest glob is tests/faults/*.sh).
#
#   load_run ID CATALOG OPS_PER_S STOPFILE TALLY
#       commits transactions on ID until STOPFILE exists, paced to OPS_PER_S
#       changed records per second. Transaction t: LOAD_INS inserts of keys
#       "t<t>-1".."t<t>-<LOAD_INS>", LOAD_UPD updates of keys 1..LOAD_UPD of
#       transaction t-LOAD_UPD_LAG, LOAD_DEL deletes of the last LOAD_DEL keys
#       of transaction t-LOAD_DEL_LAG. Appends "t ok OPS" (psql exited 0: the
#       COMMIT succeeded) or "t fail" to TALLY.
#   load_expected CATALOG TALLY RESOLVED > KEYS
#       the keys that must exist at the end: those inserted by committed
#       transactions and not deleted by a committed one. RESOLVED lists the
#       failed transactions found committed after all (in doubt: the
#       connection broke during COMMIT); key 1 of a transaction is never deleted.
#   load_check ID CATALOG KEYS
#       prints "missing extra": expected keys absent on ID, rows of CATALOG on
#       ID that are not expected.
#   load_in_doubt ID CATALOG TALLY > RESOLVED
#       failed transactions whose key 1 exists on ID (their COMMIT happened).

LOAD_INS=${LOAD_INS:-60} LOAD_UPD=${LOAD_UPD:-12} LOAD_DEL=${LOAD_DEL:-6}
LOAD_UPD_LAG=${LOAD_UPD_LAG:-5} LOAD_DEL_LAG=${LOAD_DEL_LAG:-10} LOAD_PAD=${LOAD_PAD:-300}

load_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

load_run() {
  local id=$1 cat=$2 rate=$3 stop=$4 tally=$5
  local t=0 sql ops now next start interval psql conn
  local -A ok=()
  # the server's psql directly: Debian's /usr/bin/psql wrapper (perl) costs ~0.2 s a call
  psql="$(pg_bindir)/psql"; conn=$(pg_conninfo "$FED_ROOT/pg/$id" "$(cat "$FED_ROOT/pg/$id/port")")
  start=$(load_us); next=$start
  while [ ! -e "$stop" ]; do
    t=$((t + 1)); ops=$LOAD_INS
    sql="BEGIN;
INSERT INTO tongban.records(catalog, key, body)
  SELECT '$cat', 't$t-' || g, jsonb_build_object('t', $t, 'g', g, 'v', 0, 'pad', repeat('x', $LOAD_PAD))
  FROM generate_series(1, $LOAD_INS) g;"
    if [ $t -gt "$LOAD_UPD_LAG" ] && [ "$LOAD_UPD" -gt 0 ]; then
      sql+="
UPDATE tongban.records SET body = body || jsonb_build_object('v', $t) WHERE catalog = '$cat'
  AND key IN (SELECT 't$((t - LOAD_UPD_LAG))-' || g FROM generate_series(1, $LOAD_UPD) g);"
      [ -n "${ok[$((t - LOAD_UPD_LAG))]:-}" ] && ops=$((ops + LOAD_UPD))
    fi
    if [ $t -gt "$LOAD_DEL_LAG" ] && [ "$LOAD_DEL" -gt 0 ]; then
      sql+="
DELETE FROM tongban.records WHERE catalog = '$cat'
  AND key IN (SELECT 't$((t - LOAD_DEL_LAG))-' || g FROM generate_series($((LOAD_INS - LOAD_DEL + 1)), $LOAD_INS) g);"
      [ -n "${ok[$((t - LOAD_DEL_LAG))]:-}" ] && ops=$((ops + LOAD_DEL))
    fi
    sql+="
COMMIT;"
    if "$psql" -X -q -v ON_ERROR_STOP=1 -At "$conn" -c "$sql" >/dev/null 2>>"$tally.err"; then
      ok[$t]=1; echo "$t ok $ops" >>"$tally"
    else
      echo "$t fail" >>"$tally"; sleep 0.2
    fi
    unset "ok[$((t - LOAD_DEL_LAG - LOAD_UPD_LAG))]"
    # pace: the next transaction starts ops/rate seconds after this one was due
    interval=$(( ops * 1000000 / rate ))
    next=$(( next + interval )); now=$(load_us)
    if [ $next -gt "$now" ]; then
      sleep "$(printf '%d.%06d' $(( (next - now) / 1000000 )) $(( (next - now) % 1000000 )))"
    elif [ $(( now - next )) -gt 2000000 ]; then
      next=$now   # more than 2 s behind (a fault): do not burst to catch up
    fi
  done
}

load_in_doubt() {
  local id=$1 cat=$2 tally=$3 keys
  keys=$(awk '$2 == "fail" {printf "%s'"'"'t%s-1'"'"'", (n++ ? "," : ""), $1}' "$tally")
  [ -n "$keys" ] || return 0
  fed_psql "$id" -c "SELECT substring(key from 2 for position('-' in key) - 2) FROM tongban.records
    WHERE catalog = '$cat' AND key IN ($keys)"
}

load_expected() {
  local cat=$1 tally=$2 resolved=$3
  awk -v ins="$LOAD_INS" -v del="$LOAD_DEL" -v lag="$LOAD_DEL_LAG" '
    FILENAME == ARGV[1] { committed[$1] = 1; next }
    $2 == "ok" { committed[$1] = 1 }
    { if ($1 > max) max = $1 }
    END {
      for (t = 1; t <= max; t++) {
        if (!(t in committed)) continue
        cut = ((t + lag) in committed) ? ins - del : ins
        for (g = 1; g <= cut; g++) print "t" t "-" g
      }
    }' "$resolved" "$tally"
}

load_check() {
  local id=$1 cat=$2 keys=$3
  fed_psql "$id" <<SQL
CREATE TEMP TABLE want(key text PRIMARY KEY);
\copy want FROM '$keys'
SELECT (SELECT count(*) FROM want w WHERE NOT EXISTS
          (SELECT 1 FROM tongban.records r WHERE r.catalog = '$cat' AND r.key = w.key))
  || ' ' ||
       (SELECT count(*) FROM tongban.records r WHERE r.catalog = '$cat' AND NOT EXISTS
          (SELECT 1 FROM want w WHERE w.key = r.key));
SQL
}
