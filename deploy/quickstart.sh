#!/usr/bin/env bash
# quickstart.sh -- a small tongban federation on this machine, in one command.
#
#   ./deploy/quickstart.sh          install what is missing, build, start a hub and
#                                   three nodes (Beijing 110000, Guangdong 440000,
#                                   Ministry of Public Security mps), each with its
#                                   own PostgreSQL, and show records crossing
#   ./deploy/quickstart.sh status   what is running
#   ./deploy/quickstart.sh stop     stop everything (data is kept for the next start)
#   ./deploy/quickstart.sh clean    stop and delete all quickstart data
#
# Everything lives in $TB_QUICKSTART_DIR (default /var/tmp/tongban-quickstart).
# Re-running is safe: a running federation is stopped and started again.
#
# Environment:
#   TB_QUICKSTART_DIR    where everything lives (see above)
#   TB_QUICKSTART_PORT   the hub's TCP port on 127.0.0.1 (default 7700)
#   TB_QUICKSTART_BUILD  use the binaries already built in this build
#                        directory and skip the build step (the tests do)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${TB_QUICKSTART_DIR:-/var/tmp/tongban-quickstart}
PORT=${TB_QUICKSTART_PORT:-7700}
BUILD=${TB_QUICKSTART_BUILD:-$src/build}
cmd=${1:-start}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_all() {
  [ -d "$ROOT" ] || return 0
  . "$src/deploy/federation.sh"
  FED_ROOT=$ROOT
  fed_stop_all
}

case "$cmd" in
  stop)  stop_all; echo "quickstart federation stopped (data kept in $ROOT)"; exit 0 ;;
  clean) stop_all; rm -rf "$ROOT"; echo "quickstart federation removed"; exit 0 ;;
  status)
    for f in "$ROOT"/run/*.pid; do
      [ -e "$f" ] || { echo "nothing running"; exit 0; }
      n=$(basename "$f" .pid); p=$(cat "$f")
      if kill -0 "$p" 2>/dev/null; then echo "$n: running (pid $p)"; else echo "$n: not running"; fi
    done
    exit 0 ;;
  start) ;;
  *) echo "usage: $0 [start|status|stop|clean]" >&2; exit 2 ;;
esac

case "$PORT" in
  ''|*[!0-9]*) PORT=0 ;;
esac
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then
  echo "quickstart: TB_QUICKSTART_PORT must be a port number 1..65535, got \"${TB_QUICKSTART_PORT:-}\"" >&2
  exit 2
fi

say "1/7 installing missing Debian packages"
"$src/deploy/install-deps.sh"

if [ -n "${TB_QUICKSTART_BUILD:-}" ]; then
  say "2/7 using the binaries in $BUILD (TB_QUICKSTART_BUILD; not rebuilt)"
  for b in tongban-hub tongban-node tbctl; do
    [ -x "$BUILD/$b" ] || { echo "quickstart: $BUILD/$b not found: build first, or unset TB_QUICKSTART_BUILD" >&2; exit 1; }
  done
else
  say "2/7 building"
  cmake -S "$src" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j "$(nproc)" >/dev/null
fi
echo "built $("$BUILD/tongban-hub" --version)"

stop_all
. "$src/deploy/federation.sh"
say "3/7 national CA, hub and three nodes, each with its own PostgreSQL"
fed_setup "$ROOT" "$BUILD"
rm -f "$ROOT"/log/*.log
FED_TOPICS='topics:
  - name: licences
    publishers: ["110000", "440000", "mps"]
  - name: risk
    publishers: ["mps"]
  - name: supervision
    publishers: ["110000", "440000", "mps"]' fed_hub "$PORT"
fed_node 110000 ed25519 440000 mps      # Beijing shares with Guangdong and the MPS
fed_node 440000 sm2 110000              # Guangdong signs with SM2/SM3
fed_node mps p256 110000 440000         # Ministry of Public Security
for n in 110000 440000 mps; do fed_register $n licences risk supervision; done
fed_start_hub
for n in 110000 440000 mps; do fed_start_node $n; done
for n in 110000 440000 mps; do
  fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 20 || { tail "$ROOT/log/$n.log"; exit 1; }
  echo "node $n connected to the hub"
done

say "4/7 a record committed in Beijing's PostgreSQL appears in Guangdong's and at the MPS"
key="qs-$(date +%s)"
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) VALUES ('residence_permit', '$key', '{\"holder\": \"张三\", \"region\": \"110000\", \"valid_to\": \"2028-12-31\"}')"
echo "110000 INSERT residence_permit/$key"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE key = '$key'" 1 20
fed_wait_sql mps "SELECT count(*) FROM tongban.records WHERE key = '$key'" 1 20
for n in 440000 mps; do
  echo "$n sees: $(fed_psql $n -c "SELECT catalog || '/' || key || ' ' || body::text || ' (origin ' || origin || ')' FROM tongban.records WHERE key = '$key'")"
done

say "5/7 1,000 records in one transaction, Beijing -> Guangdong"
t0=$(date +%s%N)
fed_psql 110000 -c "INSERT INTO tongban.records(catalog, key, body) SELECT 'demo', '$key-' || g, jsonb_build_object('n', g) FROM generate_series(1, 1000) g"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE key LIKE '$key-%'" 1000 60
echo "1,000 records signed, routed through the hub and applied in $(( ($(date +%s%N) - t0) / 1000000 )) ms"

tb() { local id=$1; shift; "$BUILD/tbctl" "$@" -c "$ROOT/etc/$id.yaml"; }
say "6/7 an electronic licence issued and sealed in Guangdong, verified in Beijing"
uscc=$("$BUILD/tbctl" validate check-char uscc 11440000MB2C92384)
holder=$("$BUILD/tbctl" validate check-char citizen-id 44030119900307281)
lic=$("$BUILD/tbctl" validate check-char licence-id "1.2.156.3005.2.11100000000013338W032.$uscc.$(date +%s).001")
cat >"$ROOT/licence.json" <<JSON
{"identifier": "$lic", "type_code": "11100000000013338W032", "type_name": "营业执照",
 "number": "440300-$(date +%s)", "name": "深圳市某某科技有限公司营业执照", "issue_date": "$(date +%F)",
 "issuer_name": "广东省市场监督管理局", "issuer_code": "$uscc", "jurisdiction": "440000",
 "holder_name": "王小明", "holder_code": "$holder", "holder_code_type": "111",
 "valid_from": "$(date +%F)", "valid_to": "2046-10-31"}
JSON
tb 440000 licence issue --json-file "$ROOT/licence.json" >/dev/null
echo "440000 issued licence $lic (sealed with SM2/SM3), published to topic:licences"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.licence' AND key = '$lic'" 1 20
echo "110000 verifies it, asking the issuer: $(tb 110000 licence verify "$lic" --ask-issuer)"

say "7/7 a cross-region case: filed in Beijing, handled in Guangdong, delivered and rated"
cat >"$ROOT/case.json" <<JSON
{"service_item": "11440000MB2C92384Y4440116001000", "applicant_name": "王小明", "applicant_code": "$holder",
 "applicant_code_type": "111", "mode": "proxy", "handling": ["440000"], "deadline": "$(date -d '+20 days' +%F)"}
JSON
case_id=$(tb 110000 case submit --json-file "$ROOT/case.json" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["case_id"])')
echo "110000 submitted case $case_id for 440000"
qs_step() {   # qs_step NODE ACTION [ARGS]: act, then wait until both regions show the new state
  local node=$1 action=$2; shift 2
  local st; st=$(tb "$node" case act "$case_id" "$action" "$@" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
  for n in 110000 440000; do fed_wait_sql $n "SELECT state FROM tongban.cases WHERE case_id = '$case_id'" "$st" 20; done
  echo "$node: $action -> $st (both regions agree)"
}
fed_wait_sql 440000 "SELECT state FROM tongban.cases WHERE case_id = '$case_id'" submitted 20
qs_step 440000 accept
qs_step 440000 start
qs_step 440000 decide --result approved --detail "准予登记"
qs_step 110000 deliver
tb 110000 case rate "$case_id" 5 --comment "非常满意" >/dev/null
fed_wait_sql 440000 "SELECT state || ' ' || rating FROM tongban.cases WHERE case_id = '$case_id'" "rated 5" 20
echo "110000: rated 5 (非常满意); the rating reached the handling region 440000"
echo "signed history, identical on both nodes:"
tb 440000 case history "$case_id"

cat <<EOF

tongban is running in $ROOT:
  logs:      tail -f $ROOT/log/*.log
  configs:   $ROOT/etc/{hub,110000,440000,mps}.yaml
  databases: psql "$(pg_conninfo "$ROOT/pg/440000" "$(cat "$ROOT/pg/440000/port")")" -c 'SELECT * FROM tongban.records LIMIT 5'
  status:    ./deploy/quickstart.sh status
             $BUILD/tbctl node status -c $ROOT/etc/110000.yaml
             $BUILD/tbctl hub status -c $ROOT/etc/hub.yaml
  licences:  $BUILD/tbctl licence verify $lic --ask-issuer -c $ROOT/etc/110000.yaml
  cases:     $BUILD/tbctl case list -c $ROOT/etc/440000.yaml
  stop:      ./deploy/quickstart.sh stop      (remove everything: ./deploy/quickstart.sh clean)
EOF
