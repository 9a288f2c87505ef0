#!/usr/bin/env bash
# domain.sh BUILD -- what the platform exchanges, end to end through real
# daemons, PostgreSQL clusters and libtongban (tbctl and the examples):
#
#   licences: issued in Guangdong (440000, P-256) and verified in Beijing
#     (110000, Ed25519) locally and at the issuer; only the issuer may change
#     it; revoked in 440000 -> 110000's local verification says revoked within
#     a second; a tampered copy fails its seal; with the issuer offline the
#     answer is the local one, marked unavailable, with its age;
#   cases: a receive-here-handle-there case 110000 -> 440000 through every
#     state to rated, identical signed histories on both nodes; illegal
#     transitions refused by the local node; concurrent withdraw (110000) and
#     accept (440000) while the hub is down: each is refused by the other end
#     (dead letter with the rule), nothing crashes;
#   supervision: a risk warning from the ministry (mps, SM2) reaches every
#     node; a complaint filed in 110000 reaches 440000 and its receipt comes
#     back; a supervision item reaches every node;
#   events: a durable cursor survives a node restart and misses nothing;
#   the client examples run against the real node;
#   attachments: a 20 MiB material named in a case's materials travels in
#     256 KiB chunks 110000 -> 440000 and comes out identical; a file the
#     materials do not name is refused; a chunk altered in 440000's database
#     makes the fetch fail its hash (exit 7).
set -euo pipefail
BUILD=$(cd "${1:?usage: domain.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-domain-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT
ms() { date +%s%3N; }
# on ID ARGS...: tbctl against node ID's client API
on() { local id=$1; shift; "$BUILD/tbctl" "$@" -c "$ROOT/etc/$id.yaml"; }
# jget JSON PATH: a field of a JSON document (python3, no pip)
jget() { python3 -c 'import json,sys
v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v=v[int(k)] if isinstance(v,list) else v.get(k)
print("" if v is None else (json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v,(dict,list)) else str(v).lower() if isinstance(v,bool) else v))' "$1" "$2"; }
# expect_rc WANT CMD...: run CMD, its exit code must be WANT
expect_rc() { local want=$1 rc=0; shift; "$@" >"$ROOT/out" 2>"$ROOT/err" || rc=$?; [ "$rc" = "$want" ] || fail "$* exited $rc, want $want: $(cat "$ROOT/out" "$ROOT/err")"; }
state_of() { fed_psql "$1" -c "SELECT state FROM tongban.cases WHERE case_id = '$2'"; }

fed_setup "$ROOT" "$BUILD"
FED_TOPICS='topics:
  - name: licences
    publishers: ["110000", "440000", "mps"]
  - name: risk
    publishers: ["mps"]
  - name: supervision
    publishers: ["110000", "440000", "mps"]' fed_hub $(( 40000 + RANDOM % 10000 ))
fed_node 110000 ed25519
fed_node 440000 p256
fed_node mps sm2
for n in 110000 440000 mps; do fed_register $n licences risk supervision; done
fed_start_hub || fail "hub did not start"
for n in 110000 440000 mps; do fed_start_node $n; done
for n in 110000 440000 mps; do fed_wait_log "$ROOT/log/$n.log" 'event=hub_connected' 15 || fail "$n did not connect"; done

# identifiers with correct check characters, minted by tbctl validate
USCC=$("$BUILD/tbctl" validate check-char uscc 11440000MB2C92384) || fail "uscc check char"
HOLDER=$("$BUILD/tbctl" validate check-char citizen-id 44030119900307281) || fail "citizen id check char"
LIC1=$("$BUILD/tbctl" validate check-char licence-id "1.2.156.3005.2.11100000000013338W032.$USCC.2026001.001") || fail "licence id"
LIC2=$("$BUILD/tbctl" validate check-char licence-id "1.2.156.3005.2.11100000000013338W032.$USCC.2026002.001") || fail "licence id"
"$BUILD/tbctl" validate citizen-id "$HOLDER" >/dev/null || fail "minted citizen ID $HOLDER does not validate"
expect_rc 1 "$BUILD/tbctl" validate citizen-id "${HOLDER:0:17}0"
[ "${HOLDER: -1}" = 0 ] && expect_rc 0 "$BUILD/tbctl" validate citizen-id "$HOLDER"

licence_json() {   # licence_json ID NUMBER
  cat <<JSON
{"identifier": "$1", "type_code": "11100000000013338W032", "type_name": "营业执照",
 "number": "$2", "name": "深圳市某某科技有限公司营业执照", "issue_date": "2026-11-01",
 "issuer_name": "广东省市场监督管理局", "issuer_code": "$USCC", "jurisdiction": "440000",
 "holder_name": "王小明", "holder_code": "$HOLDER", "holder_code_type": "111",
 "valid_from": "2026-11-01", "valid_to": "2046-10-31", "service_item_code": "11440000MB2C92384Y4440116001000"}
JSON
}

echo "== licence issued in 440000, verified in 110000"
licence_json "$LIC1" 440300-0001 >"$ROOT/lic1.json"
out=$(on 440000 licence issue --json-file "$ROOT/lic1.json" --json) || fail "issue: $out"
[ "$(jget "$out" status)" = valid ] && [ "$(jget "$out" revision)" = 1 ] && [ "$(jget "$out" issuer_node)" = 440000 ] \
  || fail "issued licence: $out"
[ "$(jget "$out" seal.signer)" = 440000 ] && [ "$(jget "$out" seal.alg)" = p256 ] || fail "seal: $out"
expect_rc 5 on 440000 licence issue --json-file "$ROOT/lic1.json"          # duplicate identifier
sed 's/"jurisdiction": "440000"/"jurisdiction": "990000"/' "$ROOT/lic1.json" >"$ROOT/bad.json"
expect_rc 2 on 440000 licence issue --json-file "$ROOT/bad.json"
grep -q jurisdiction "$ROOT/err" "$ROOT/out" || fail "bad jurisdiction not named: $(cat "$ROOT/err")"
fed_wait_sql 110000 "SELECT body->>'revision' FROM tongban.records WHERE catalog = 'tb.licence' AND key = '$LIC1'" 1 10 \
  || fail "licence did not reach 110000"
v=$(on 110000 licence verify "$LIC1" --ask-issuer --json) || fail "verify: $v"
[ "$(jget "$v" verdict)" = valid ] && [ "$(jget "$v" seal_ok)" = true ] && [ "$(jget "$v" source)" = issuer ] \
  && [ "$(jget "$v" issuer)" = answered ] || fail "verify at 110000: $v"
f=$(on 110000 licence find "$HOLDER" --json) || fail "find: $f"
[ "$(jget "$f" licences.0.identifier)" = "$LIC1" ] || fail "find by holder: $f"
expect_rc 3 on 110000 licence revoke "$LIC1" --reason "not ours"          # only the issuer
grep -q 'only the issuing node' "$ROOT/err" "$ROOT/out" || fail "refusal not explained: $(cat "$ROOT/err")"

echo "== revoked in 440000 -> 110000 says revoked within a second"
t0=$(ms)
on 440000 licence revoke "$LIC1" --reason "吊销: 虚假材料" >/dev/null || fail "revoke"
until v=$(on 110000 licence verify "$LIC1" --json 2>/dev/null) && [ "$(jget "$v" verdict)" = revoked ]; do
  [ $(( $(ms) - t0 )) -lt 10000 ] || fail "110000 still says $(jget "$v" verdict) 10 s after the revocation"
  sleep 0.02
done
dt=$(( $(ms) - t0 ))
db=$(fed_psql 110000 -c "SELECT round(extract(epoch FROM (updated_at - (body->>'status_at')::timestamptz)) * 1000) FROM tongban.records WHERE catalog = 'tb.licence' AND key = '$LIC1'")
echo "revocation visible in 110000 after $dt ms through tbctl (revoked at 440000 -> applied at 110000: $db ms)"
# "within a second", measured where it happens: from the issuer's revocation
# (status_at, sealed) to its application in 110000's database -- not the
# start-up time of the tbctl processes polling for it on a loaded machine
[ "$db" -le 1000 ] || fail "the revocation took $db ms from 440000 to 110000's database (want <= 1000)"
[ "$(jget "$v" seal_ok)" = true ] || fail "revoked copy's seal: $v"
expect_rc 3 on 440000 licence resume "$LIC1" --reason "undo"              # revoked is final

echo "== a tampered copy fails its seal"
licence_json "$LIC2" 440300-0002 >"$ROOT/lic2.json"
on 440000 licence issue --json-file "$ROOT/lic2.json" >/dev/null || fail "issue 2"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.licence' AND key = '$LIC2'" 1 10 || fail "lic2 missing"
fed_psql 110000 -c "SET session_replication_role = replica;
  UPDATE tongban.records SET body = jsonb_set(body, '{holder_name}', '\"李四\"') WHERE catalog = 'tb.licence' AND key = '$LIC2'" >/dev/null
v=$(on 110000 licence verify "$LIC2" --json) && fail "a tampered copy verified: $v"
v=$(on 110000 licence verify "$LIC2" --json 2>/dev/null || true)
[ "$(jget "$v" verdict)" = bad_seal ] && [ "$(jget "$v" seal_ok)" = false ] || fail "tampered copy: $v"
v=$(on 110000 licence verify "$LIC2" --ask-issuer --json 2>/dev/null || true)
[ "$(jget "$v" source)" = issuer ] && [ "$(jget "$v" verdict)" = valid ] || fail "the issuer's answer should win over a tampered copy: $v"

echo "== the issuer offline: the local answer, marked, with its age"
fed_stop_proc 440000
v=$(on 110000 licence verify "$LIC1" --ask-issuer --timeout-ms 2000 --json 2>"$ROOT/err" || true)
[ "$(jget "$v" verdict)" = revoked ] && [ "$(jget "$v" source)" = local ] || fail "offline issuer: $v $(cat "$ROOT/err")"
case "$(jget "$v" issuer)" in unavailable|timeout) ;; *) fail "offline issuer not marked: $v" ;; esac
[ "$(jget "$v" local_age_s)" -ge 0 ] 2>/dev/null || fail "no local age: $v"
fed_start_node 440000
fed_wait_log "$ROOT/log/440000.log" 'event=hub_connected' 15 || fail "440000 did not come back"

echo "== a receive-here-handle-there case 110000 -> 440000, every state, rated"
cat >"$ROOT/case.json" <<JSON
{"service_item": "11440000MB2C92384Y4440116001000", "applicant_name": "王小明", "applicant_code": "$HOLDER",
 "applicant_code_type": "111", "mode": "proxy", "handling": ["440000"], "deadline": "2099-12-31",
 "materials": [{"name": "身份证复印件.pdf", "sha256": "$(printf 'id card scan' | sha256sum | cut -c1-64)", "size": 11, "ref": "oss://110000/m/1"}]}
JSON
c=$(on 110000 case submit --json-file "$ROOT/case.json" --json) || fail "submit: $c"
CASE=$(jget "$c" case_id)
[ "$(jget "$c" state)" = submitted ] || fail "submitted case: $c"
fed_wait_sql 440000 "SELECT state FROM tongban.cases WHERE case_id = '$CASE'" submitted 10 || fail "case did not reach 440000"
expect_rc 3 on 110000 case act "$CASE" accept             # only the handling region accepts
expect_rc 3 on 440000 case act "$CASE" deliver            # nothing decided yet
expect_rc 3 on 440000 case act "$CASE" withdraw           # only the accepting region withdraws
step() {  # step NODE ACTION [ARGS..]: act at NODE, wait until both sides show the new state
  local node=$1 action=$2; shift 2
  local r; r=$(on "$node" case act "$CASE" "$action" "$@" --json) || fail "$action at $node: $r"
  local st; st=$(jget "$r" state)
  for n in 110000 440000; do fed_wait_sql $n "SELECT state FROM tongban.cases WHERE case_id = '$CASE'" "$st" 10 || fail "$n did not follow $action"; done
  echo "  $action by $node -> $st"
}
step 440000 accept
step 440000 start
step 440000 decide --result approved --detail "准予登记"
expect_rc 3 on 440000 case rate "$CASE" 5                  # rating is the accepting region's
step 110000 deliver --detail "已邮寄送达"
r=$(on 110000 case rate "$CASE" 5 --comment "非常满意" --json) || fail "rate: $r"
fed_wait_sql 440000 "SELECT state || ':' || rating FROM tongban.cases WHERE case_id = '$CASE'" rated:5 10 || fail "rating did not reach 440000"
expect_rc 3 on 110000 case rate "$CASE" 4                  # rated is final
h1=$(on 110000 case history "$CASE" --json) || fail "history 110000"
h2=$(on 440000 case history "$CASE" --json) || fail "history 440000"
[ "$h1" = "$h2" ] || fail "histories differ:
110000: $h1
440000: $h2"
n=$(python3 -c 'import json,sys; e=json.loads(sys.argv[1])["events"]; print(len(e), " ".join(x["action"] for x in e), all(x["seal"]["sig"] for x in e))' "$h1")
[ "$n" = "6 submit accept start decide deliver rate True" ] || fail "history: $n"

echo "== concurrent withdraw and accept while the hub is down: each end refuses the other's"
c=$(on 110000 case submit --json-file "$ROOT/case.json" --json) || fail "submit 2"
CASE2=$(jget "$c" case_id)
fed_wait_sql 440000 "SELECT state FROM tongban.cases WHERE case_id = '$CASE2'" submitted 10 || fail "case 2 did not reach 440000"
fed_stop_proc hub
on 110000 case act "$CASE2" withdraw --detail "申请人撤回" >/dev/null || fail "withdraw"
on 440000 case act "$CASE2" accept >/dev/null || fail "accept"
dl0_1=$(fed_psql 110000 -c "SELECT count(*) FROM tongban.dead_letters")
dl0_2=$(fed_psql 440000 -c "SELECT count(*) FROM tongban.dead_letters")
fed_start_hub || fail "hub did not restart"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.dead_letters" $((dl0_1 + 1)) 20 || fail "110000 did not refuse the accept"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.dead_letters" $((dl0_2 + 1)) 20 || fail "440000 did not refuse the withdraw"
[ "$(state_of 110000 "$CASE2")" = withdrawn ] && [ "$(state_of 440000 "$CASE2")" = accepted ] || fail "states moved"
fed_psql 440000 -c "SELECT reason FROM tongban.dead_letters ORDER BY id DESC LIMIT 1" | grep -qi withdraw \
  || fail "440000's dead letter does not name the rule: $(fed_psql 440000 -c 'SELECT reason FROM tongban.dead_letters ORDER BY id DESC LIMIT 1')"

echo "== supervision: risk warning, complaint and receipt, catalogue item"
r=$(on mps risk publish --level 2 --title "某批次疫苗冷链异常" --detail "请各地排查" --region 110000 --json) || fail "risk: $r"
RISK=$(jget "$r" risk_id)
for n in 110000 440000; do
  fed_wait_sql $n "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.risk' AND key = '$RISK'" 1 10 || fail "risk did not reach $n"
done
r=$(on 110000 complaint file --region 440000 --kind complaint --subject "办理超时" --detail "跨省通办超期未办结" --json) || fail "complaint: $r"
CMP=$(jget "$r" complaint_id)
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.complaint' AND key = '$CMP'" 1 10 || fail "complaint did not reach 440000"
fed_psql mps -c "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.complaint'" | grep -qx 0 || fail "the complaint went to a third node"
on 440000 complaint ack "$CMP" --note "已受理" >/dev/null || fail "ack"
fed_wait_sql 110000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.complaint_receipt' AND key = '$CMP'" 1 10 || fail "receipt did not come back"
g=$(on 110000 complaint get "$CMP" --json) || fail "complaint get"
[ "$(jget "$g" receipt.by)" = 440000 ] || fail "complaint receipt: $g"
on mps supitem put --code 330000000000000001 --name "食品生产许可监管" --level national --region 110000 >/dev/null || fail "supitem"
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.supitem'" 1 10 || fail "supitem did not reach 440000"

echo "== events: a durable cursor"
e=$(on 110000 events next --cursor app --max 1000 --json) || fail "events: $e"
kinds=$(python3 -c 'import json,sys; print(" ".join(sorted({x["kind"] for x in json.loads(sys.argv[1])["events"]})))' "$e")
for k in licence case_event risk complaint complaint_receipt supitem; do
  [[ " $kinds " == *" $k "* ]] || fail "no $k event at 110000 (kinds: $kinds)"
done
last=$(jget "$e" last_id)
on 110000 events ack --cursor app --id "$last" >/dev/null || fail "ack events"
fed_stop_proc 110000; fed_start_node 110000
fed_wait_log "$ROOT/log/110000.log" 'event=hub_connected' 15 || fail "110000 did not come back"
e=$(on 110000 events next --cursor app --json) || fail "events after restart"
[ "$(jget "$e" events)" = "[]" ] || fail "events before the durable cursor came back: $e"
on mps risk publish --level 1 --title "提示" --detail "after restart" >/dev/null || fail "risk 2"
e=$(on 110000 events next --cursor app --wait-ms 10000 --json) || fail "events wait"
[ "$(jget "$e" events.0.kind)" = risk ] && [ "$(jget "$e" events.0.body.detail)" = "after restart" ] || fail "new event: $e"

echo "== the client examples against the real nodes (libtongban, shared)"
EX=$BUILD/client/examples
API110=$(on 110000 api-endpoint) || fail "api-endpoint 110000"
API440=$(on 440000 api-endpoint) || fail "api-endpoint 440000"
"$EX/issue_and_verify" "$API440" >"$ROOT/ex1.out" 2>&1 || fail "issue_and_verify: $(cat "$ROOT/ex1.out")"
grep -q 'verdict=revoked' "$ROOT/ex1.out" || fail "issue_and_verify did not end revoked: $(cat "$ROOT/ex1.out")"
"$EX/file_case" "$API110" 440000 >"$ROOT/ex2.out" 2>&1 || fail "file_case: $(cat "$ROOT/ex2.out")"
"$EX/follow_events" "$API440" example_app 3 >"$ROOT/ex3.out" 2>&1 || fail "follow_events: $(cat "$ROOT/ex3.out")"
[ "$(grep -c . "$ROOT/ex3.out")" -ge 3 ] || fail "follow_events printed less than 3 events: $(cat "$ROOT/ex3.out")"
"$EX/follow_events" "$API440" example_app 1 >"$ROOT/ex4.out" 2>&1 || fail "follow_events again: $(cat "$ROOT/ex4.out")"
[ "$(head -1 "$ROOT/ex4.out")" != "$(head -1 "$ROOT/ex3.out")" ] || fail "the durable cursor handed out the same event twice"
echo "examples: $(tail -1 "$ROOT/ex1.out")"
echo "== attachments: a 20 MiB material in chunks 110000 -> 440000"
head -c 20971520 /dev/urandom >"$ROOT/big.bin"
BIGSHA=$(sha256sum "$ROOT/big.bin" | cut -c1-64)
cat >"$ROOT/case3.json" <<JSON
{"service_item": "11440000MB2C92384Y4440116001000", "applicant_name": "王小明", "applicant_code": "$HOLDER",
 "applicant_code_type": "111", "mode": "proxy", "handling": ["440000"], "deadline": "2099-12-31",
 "materials": [{"name": "施工图纸.bin", "sha256": "$BIGSHA", "size": 20971520, "ref": "tb:attachment"}]}
JSON
c=$(on 110000 case submit --json-file "$ROOT/case3.json" --json) || fail "submit 3: $c"
CASE3=$(jget "$c" case_id)
fed_wait_sql 440000 "SELECT count(*) FROM tongban.cases WHERE case_id = '$CASE3'" 1 10 || fail "case 3 did not reach 440000"
t0=$(ms)
a=$(on 110000 case attach "$CASE3" "$ROOT/big.bin" --name 施工图纸.bin) || fail "attach: $a"
[[ "$a" == *"sha256=$BIGSHA"* ]] || fail "attach printed another hash: $a"
t1=$(ms)
fed_wait_sql 440000 "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.chunk' AND key LIKE '$CASE3/%'" 80 120 \
  || fail "the chunks did not all reach 440000 ($(fed_psql 440000 -c "SELECT count(*) FROM tongban.records WHERE catalog = 'tb.chunk'"))"
t2=$(ms)
s=$(on 440000 case attachment "$CASE3" "$BIGSHA" --json) || fail "status: $s"
[ "$(jget "$s" complete)" = true ] && [ "$(jget "$s" count)" = 80 ] && [ "$(jget "$s" size)" = 20971520 ] \
  || fail "status at 440000: $(echo "$s" | cut -c1-300)"
on 440000 case attachment "$CASE3" "$BIGSHA" --out "$ROOT/big.440000" >/dev/null || fail "fetch at 440000"
t3=$(ms)
cmp "$ROOT/big.bin" "$ROOT/big.440000" || fail "the file fetched at 440000 differs"
on 110000 case attach "$CASE3" "$ROOT/big.bin" >/dev/null || fail "attach again (nothing left to send)"
head -c 1000 /dev/urandom >"$ROOT/other.bin"
expect_rc 3 on 110000 case attach "$CASE3" "$ROOT/other.bin"
grep -q 'name no sha256' "$ROOT/err" || fail "an unlisted file: $(cat "$ROOT/err")"
expect_rc 3 on 440000 case attachment "$CASE3" "$(sha256sum "$ROOT/other.bin" | cut -c1-64)"
expect_rc 6 on 440000 case attachment "$CASE" "$(printf 'id card scan' | sha256sum | cut -c1-64)" --out "$ROOT/none"
grep -q 'have 0 of' "$ROOT/err" || fail "an attachment without chunks: $(cat "$ROOT/err")"
fed_psql 440000 -c "SET session_replication_role = replica; UPDATE tongban.records
  SET body = jsonb_set(body, '{data}', to_jsonb(translate(body->>'data', 'AB', 'BA')))
  WHERE catalog = 'tb.chunk' AND key = '$CASE3/$BIGSHA/000007'" || fail "tamper"
expect_rc 7 on 440000 case attachment "$CASE3" "$BIGSHA" --out "$ROOT/big.bad"
grep -q 'a chunk was altered' "$ROOT/err" || fail "tampered chunk: $(cat "$ROOT/err")"
echo "attachments: 20 MiB uploaded in $((t1 - t0)) ms, complete at 440000 after $((t2 - t0)) ms" \
     "($(python3 -c "print(round(20.97152 / max($t2 - $t0, 1) * 1000, 1))") MB/s end to end), fetched in $((t3 - t2)) ms"
echo "PASS domain"
