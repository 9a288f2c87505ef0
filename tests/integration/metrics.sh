#!/usr/bin/env bash
# metrics.sh BUILD -- the hub's /metrics and /healthz (http.listen) with light
# nodes (no PostgreSQL needed): every scrape must parse as Prometheus text
# format 0.0.4 (a strict parser below, python3 only); during an exchange of
# 10 batches x 100 records the counters only grow, and afterwards they moved
# by exactly what was sent (batches_in +10, records_in +1000, journal +10,
# acks +10); an ACL violation moves rejected_total{reason="acl"} by exactly 1
# and no other reason; an unregistered key moves connections_refused_total;
# a destination that is offline shows its backlog and lag, which drain when
# it comes back; node_online follows the connection; /healthz says "ok";
# other paths 404, other methods 405.
set -euo pipefail
BUILD=$(cd "${1:?usage: metrics.sh BUILD_DIR}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
. "$SRC/deploy/federation.sh"

ROOT=$(mktemp -d "${TMPDIR:-/tmp}/tb-metrics-XXXXXX")
fail() { echo "FAIL: $*" >&2; echo "--- logs in $ROOT/log" >&2; tail -n 20 "$ROOT"/log/*.log >&2 || true; exit 1; }
cleanup() { fed_stop_all; [ "${KEEP:-0}" = 1 ] || rm -rf "$ROOT"; }
trap cleanup EXIT

# ---- prom.py: a strict reader of the text exposition format, no pip ----
cat >"$ROOT/prom.py" <<'PY'
"""prom.py -- scrape and check Prometheus text exposition format 0.0.4.

  prom.py scrape URL FILE        GET URL: 200, text/plain; version=0.0.4, parses; saved to FILE
  prom.py get FILE 'name{l="v"}' the sample's value (integers without .0), or "absent"
  prom.py monotonic OLD NEW      every counter (and histogram bucket/count) of OLD is in NEW, not smaller
  prom.py http METHOD URL        prints "STATUS BODY-FIRST-LINE"
  prom.py selftest               the parser refuses what is not the format
"""
import math, re, sys, urllib.error, urllib.request

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LNAME = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
NUM = re.compile(r'[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?')
TYPES = ('counter', 'gauge', 'histogram', 'summary', 'untyped')


class Bad(Exception):
    pass


def value(s):
    if s in ('+Inf', 'Inf'):
        return math.inf
    if s == '-Inf':
        return -math.inf
    if s == 'NaN':
        return math.nan
    if not NUM.fullmatch(s):
        raise Bad('bad value %r' % s)
    return float(s)


def labels(s, i):
    """s[i] is '{': returns ({name: value}, index after '}')."""
    out, i = {}, i + 1
    while s[i] != '}':
        m = LNAME.match(s, i)
        if not m:
            raise Bad('bad label name at %r' % s[i:])
        name, i = m.group(0), m.end()
        if name.startswith('__'):
            raise Bad('reserved label name ' + name)
        if s[i:i + 2] != '="':
            raise Bad('expected =" after ' + name)
        i += 2
        v = []
        while s[i] != '"':
            if s[i] == '\\':
                e = s[i + 1]
                if e == 'n':
                    v.append('\n')
                elif e in '\\"':
                    v.append(e)
                else:
                    raise Bad('bad escape \\' + e)
                i += 2
            else:
                v.append(s[i])
                i += 1
        i += 1
        if name in out:
            raise Bad('duplicate label ' + name)
        out[name] = ''.join(v)
        if s[i] == ',':
            i += 1
        elif s[i] != '}':
            raise Bad('expected , or } after a label')
    return out, i + 1


def series_key(name, lab):
    return (name, tuple(sorted(lab.items())))


def parse(text):
    """Returns ({family: type}, {series_key: value}); raises Bad."""
    if text and not text.endswith('\n'):
        raise Bad('no newline at the end')
    types, helps, samples = {}, set(), {}
    closed, current = set(), None
    hist = {}                                  # (family, labels without le) -> dict

    def family_of(name):
        for sfx in ('_bucket', '_sum', '_count'):
            base = name[:-len(sfx)]
            if name.endswith(sfx) and types.get(base) == 'histogram':
                return base, sfx
        return name, ''

    def enter(fam, n):
        nonlocal current
        if fam in closed:
            raise Bad('line %d: the lines of %s are not together' % (n, fam))
        if current is not None and current != fam:
            closed.add(current)
        current = fam

    for n, line in enumerate(text.split('\n')[:-1], 1):
        try:
            if not line.strip():
                continue
            if line.startswith('#'):
                parts = line.split(' ', 3)
                if len(parts) < 3 or parts[1] not in ('HELP', 'TYPE'):
                    continue                   # a plain comment
                kw, name = parts[1], parts[2]
                if not NAME.fullmatch(name):
                    raise Bad('bad metric name %r' % name)
                enter(name, n)
                rest = parts[3] if len(parts) > 3 else ''
                if kw == 'HELP':
                    if name in helps:
                        raise Bad('second HELP for ' + name)
                    helps.add(name)
                    if re.sub(r'\\[\\n]', '', rest).count('\\'):
                        raise Bad('bad escape in HELP')
                else:
                    if name in types:
                        raise Bad('second TYPE for ' + name)
                    if any(k[0] == name for k in samples):
                        raise Bad('TYPE after samples of ' + name)
                    if rest not in TYPES:
                        raise Bad('bad type %r' % rest)
                    types[name] = rest
                continue
            m = NAME.match(line)
            if not m:
                raise Bad('bad sample name')
            name, i = m.group(0), m.end()
            lab = {}
            if i < len(line) and line[i] == '{':
                lab, i = labels(line, i)
            if line[i:i + 1] != ' ':
                raise Bad('expected a space before the value')
            fields = line[i + 1:].split(' ')
            if len(fields) not in (1, 2):
                raise Bad('expected a value and an optional timestamp')
            v = value(fields[0])
            if len(fields) == 2 and not re.fullmatch(r'-?\d+', fields[1]):
                raise Bad('bad timestamp')
            fam, sfx = family_of(name)
            enter(fam, n)
            t = types.get(fam, 'untyped')
            if t == 'counter' and not v >= 0:
                raise Bad('counter %s is %r' % (name, v))
            if t == 'histogram':
                if not sfx:
                    raise Bad('histogram sample without _bucket, _sum or _count')
                if (sfx == '_bucket') != ('le' in lab):
                    raise Bad('le belongs on _bucket only')
                base = dict(lab)
                le = base.pop('le', None)
                h = hist.setdefault((fam, tuple(sorted(base.items()))), {'b': []})
                if sfx == '_bucket':
                    h['b'].append((value(le), v))
                else:
                    h[sfx] = v
            key = series_key(name, lab)
            if key in samples:
                raise Bad('series %s%s twice' % (name, lab))
            samples[key] = v
        except (IndexError, ValueError) as e:
            raise Bad('line %d: malformed: %s' % (n, e))
        except Bad as e:
            raise Bad('line %d: %s: %s' % (n, e, line[:120]))
    for (fam, base), h in hist.items():
        b = h['b']
        if not b or b[-1][0] != math.inf:
            raise Bad('%s%s: no +Inf bucket last' % (fam, dict(base)))
        if [x for x, _ in b] != sorted(x for x, _ in b) or len({x for x, _ in b}) != len(b):
            raise Bad('%s: buckets not in increasing le order' % fam)
        if any(b[k][1] > b[k + 1][1] for k in range(len(b) - 1)):
            raise Bad('%s: buckets not cumulative' % fam)
        if h.get('_count') != b[-1][1] or '_sum' not in h:
            raise Bad('%s: _count differs from the +Inf bucket, or no _sum' % fam)
    return types, samples


def load(path):
    with open(path, encoding='utf-8') as f:
        return parse(f.read())


def query(q):
    m = NAME.match(q)
    lab = labels(q, m.end())[0] if m.end() < len(q) else {}
    return series_key(m.group(0), lab)


def show(v):
    return str(int(v)) if v == int(v) else repr(v)


def main(argv):
    cmd = argv[1]
    if cmd == 'scrape':
        url, path = argv[2], argv[3]
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                ctype = r.headers.get('Content-Type', '')
                body = r.read().decode('utf-8')
                status = r.status
        except urllib.error.HTTPError as e:
            print('HTTP %d from %s' % (e.code, url), file=sys.stderr)
            return 1
        if status != 200 or not ctype.startswith('text/plain') or 'version=0.0.4' not in ctype:
            print('status %d, Content-Type %r' % (status, ctype), file=sys.stderr)
            return 1
        try:
            types, samples = parse(body)
        except Bad as e:
            print('not Prometheus text: %s' % e, file=sys.stderr)
            return 1
        with open(path, 'w', encoding='utf-8') as f:
            f.write(body)
        print('%d families, %d samples' % (len(types), len(samples)))
    elif cmd == 'get':
        _, samples = load(argv[2])
        k = query(argv[3])
        print(show(samples[k]) if k in samples else 'absent')
    elif cmd == 'monotonic':
        t_old, old = load(argv[2])
        _, new = load(argv[3])
        for (name, lab), v in old.items():
            fam = name
            for sfx in ('_bucket', '_count'):
                if name.endswith(sfx) and t_old.get(name[:-len(sfx)]) == 'histogram':
                    fam = name[:-len(sfx)]
            if t_old.get(fam) not in ('counter', 'histogram') or name.endswith('_sum'):
                continue
            nv = new.get((name, lab))
            if nv is None or nv < v:
                print('%s%s went from %s to %s' % (name, dict(lab), v, nv), file=sys.stderr)
                return 1
    elif cmd == 'http':
        req = urllib.request.Request(argv[3], method=argv[2])
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, body = r.status, r.read().decode('utf-8', 'replace')
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode('utf-8', 'replace')
        print('%d %s' % (status, body.split('\n')[0]))
    elif cmd == 'selftest':
        good = ('# HELP a_total A \\\\ b\\n.\n# TYPE a_total counter\na_total{x="1\\"\\n\\\\"} 3 1700000000000\n'
                '# TYPE h histogram\nh_bucket{le="0.5"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n')
        _, smp = parse(good)
        assert smp[series_key('a_total', {'x': '1"\n\\'})] == 3, smp
        bad = ['a 1', 'a{x="1} 1\n', 'a{x=1} 1\n', 'a{x="\\q"} 1\n', 'a{x="1",x="2"} 1\n', 'a one\n',
               '1a 1\n', 'a  1\n', '# TYPE a counter\na -1\n', '# TYPE a gauge\n# TYPE a gauge\n',
               '# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n', 'a 1\na 2\n', 'a 1\n# TYPE a gauge\n', '# HELP a x \\ y\n',
               '# TYPE a foo\n', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 0\nh_count 1\n',
               '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 0\nh_count 1\n',
               '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 0\nh_count 3\n', '# TYPE h histogram\nh 1\n',
               'a{__x="1"} 1\n', 'a{x="1"}1\n', 'a 1 x\n']
        for t in bad:
            try:
                parse(t)
            except Bad:
                continue
            print('accepted: %r' % t, file=sys.stderr)
            return 1
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
PY

# The interpreter itself, not a version manager's shim: it runs a hundred times.
PY=$(python3 -c 'import sys; print(sys.executable)')
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
prom() { "$PY" "$ROOT/prom.py" "$@"; }
# scrape NAME: /metrics into $ROOT/NAME.prom, which must parse
scrape() { prom scrape "$URL/metrics" "$ROOT/$1.prom" >/dev/null || fail "scrape $1"; }
# val NAME SERIES: the value of SERIES in scrape NAME
val() { prom get "$ROOT/$1.prom" "$2"; }
# delta OLD NEW SERIES: how far SERIES moved between two scrapes
delta() { local a b; a=$(val "$1" "$3"); b=$(val "$2" "$3"); [ "$a" != absent ] && [ "$b" != absent ] || fail "$3 absent"; echo $((b - a)); }
# expect_delta OLD NEW SERIES WANT
expect_delta() { local d; d=$(delta "$1" "$2" "$3"); [ "$d" = "$4" ] || fail "$3 moved by $d between $1 and $2, want $4"; }
# wait_val SERIES WANT SECS: scrape until SERIES has the value WANT
wait_val() {
  local end=$((SECONDS + $3)) got
  while :; do
    scrape poll; got=$(val poll "$1")
    [ "$got" = "$2" ] && return 0
    [ $SECONDS -lt $end ] || fail "$1 is $got after $3 s, want $2"
    sleep 0.2
  done
}
sub() {
  local id=$1; shift
  fed_lightnode subscribe "$id" --json --timeout-ms 60000 "$@" >"$ROOT/$id.json" 2>>"$ROOT/log/$id.log" &
  echo $! >"$ROOT/run/$id.pid"
}
await() { local rc=0; wait "$(fed_pid "$1")" || rc=$?; rm -f "$ROOT/run/$1.pid"; [ $rc = 0 ] || fail "$1 exited $rc: $(cat "$ROOT/$1.json")"; }

prom selftest || fail "the format checker accepts what it should not"
fed_setup "$ROOT" "$BUILD"
HUB_PORT=$(free_port)
FED_HTTP_PORT=$(free_port)
[ "$FED_HTTP_PORT" != "$HUB_PORT" ] || FED_HTTP_PORT=$(free_port)
URL="http://127.0.0.1:$FED_HTTP_PORT"
FED_TOPICS='topics:
  - name: identity
    publishers: ["mps"]' FED_HTTP_PORT=$FED_HTTP_PORT fed_hub "$HUB_PORT"
grep -q "^http: {listen: '127.0.0.1:$FED_HTTP_PORT'}" "$ROOT/etc/hub.yaml" || fail "fed_hub did not write http.listen"
for id in p1 s1 mps; do fed_light "$id"; fed_register "$id"; done
fed_light stranger                    # certified by the CA, never registered at the hub
fed_start_hub || fail "hub did not start"
fed_wait_log "$ROOT/log/hub.log" "event=http_listening .*port=$FED_HTTP_PORT" 5 || fail "no http_listening in the log"

echo "== /healthz, paths and methods"
[ "$(prom http GET "$URL/healthz")" = "200 ok" ] || fail "/healthz: $(prom http GET "$URL/healthz")"
[ "$(prom http HEAD "$URL/metrics")" = "200 " ] || fail "HEAD /metrics: $(prom http HEAD "$URL/metrics")"
[ "$(prom http GET "$URL/nope" | cut -d' ' -f1)" = 404 ] || fail "/nope is not 404"
[ "$(prom http POST "$URL/metrics" | cut -d' ' -f1)" = 405 ] || fail "POST /metrics is not 405"
[ "$(prom http DELETE "$URL/healthz" | cut -d' ' -f1)" = 405 ] || fail "DELETE /healthz is not 405"

echo "== before the exchange"
scrape before
for s in 'tongban_hub_batches_in_total{node="p1"}' 'tongban_hub_records_in_total{node="p1"}' \
         'tongban_hub_rejected_total{reason="acl"}' 'tongban_hub_journal_last_seq' \
         'tongban_hub_node_backlog_batches{node="s1"}' 'tongban_hub_duplicates_total'; do
  [ "$(val before "$s")" = 0 ] || fail "$s is $(val before "$s") before anything was sent"
done
[ "$(val before 'tongban_hub_storage_failed')" = 0 ] || fail "storage_failed before anything happened"

echo "== exchange: p1 sends 10 batches x 100 records to s1, scraped while it runs"
sub s1 --expect-entries 1000
fed_wait_log "$ROOT/log/s1.log" "s1: welcomed" 15 || fail "s1 not welcomed"
scrape s1_online
[ "$(val s1_online 'tongban_hub_node_online{node="s1"}')" = 1 ] || fail "s1 connected but node_online is not 1"
fed_lightnode publish p1 --dest s1 --batches 10 --entries 100 --window 2 --json >"$ROOT/p1.json" 2>>"$ROOT/log/p1.log" &
pub=$!
prev=before n=0
while kill -0 "$pub" 2>/dev/null; do
  n=$((n + 1))
  scrape "mid$n"
  prom monotonic "$ROOT/$prev.prom" "$ROOT/mid$n.prom" || fail "a counter went down between $prev and mid$n"
  prev="mid$n"
done
wait "$pub" || fail "publish: $(cat "$ROOT/p1.json")"
await s1
[ "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["entries_received"])' "$ROOT/s1.json")" = 1000 ] \
  || fail "s1 did not receive 1000 records: $(cat "$ROOT/s1.json")"
scrape after
prom monotonic "$ROOT/$prev.prom" "$ROOT/after.prom" || fail "a counter went down between $prev and after"
[ "$n" -ge 1 ] || fail "no scrape while the batches were moving"
echo "$n scrapes while the batches were moving, every one parsed and no counter went down"
expect_delta before after 'tongban_hub_batches_in_total{node="p1"}' 10
expect_delta before after 'tongban_hub_records_in_total{node="p1"}' 1000
expect_delta before after 'tongban_hub_journal_last_seq' 10
expect_delta before after 'tongban_hub_acks_out_total' 10
expect_delta before after 'tongban_hub_batches_in_total{node="s1"}' 0
d=$(delta before after 'tongban_hub_batches_out_total{node="s1"}'); [ "$d" -ge 10 ] || fail "batches_out{s1} moved by $d"
d=$(delta before after 'tongban_hub_bytes_out_total{node="s1"}'); [ "$d" -gt 100000 ] || fail "bytes_out{s1} moved by $d"
d=$(delta before after 'tongban_hub_journal_syncs_total'); [ "$d" -ge 1 ] || fail "no journal sync counted"
[ "$(val after 'tongban_hub_journal_bytes')" -gt 0 ] || fail "journal_bytes is 0"
[ "$(val after 'tongban_hub_journal_segments')" -ge 1 ] || fail "no journal segment"
wait_val 'tongban_hub_node_backlog_batches{node="s1"}' 0 10
[ "$(val poll 'tongban_hub_node_lag_hub_seq{node="s1"}')" = 0 ] || fail "s1 lags after it acked everything"

echo "== ACL: p1 may not publish to topic:identity; rejected_total{reason=\"acl\"} moves by exactly 1"
rc=0; fed_lightnode publish p1 --dest topic:identity --batches 1 --entries 1 --json >/dev/null 2>"$ROOT/acl.err" || rc=$?
[ $rc = 4 ] && grep -q 'reason=acl' "$ROOT/acl.err" || fail "ACL violation not refused (rc=$rc): $(cat "$ROOT/acl.err")"
scrape acl
expect_delta after acl 'tongban_hub_rejected_total{reason="acl"}' 1
for r in malformed bad_signature wrong_sender unknown_cert revoked unknown_dest replay_mismatch overloaded storage out_of_order; do
  [ "$(val acl "tongban_hub_rejected_total{reason=\"$r\"}")" = 0 ] || fail "rejected_total{reason=\"$r\"} moved"
done
expect_delta after acl 'tongban_hub_batches_in_total{node="p1"}' 0
expect_delta after acl 'tongban_hub_journal_last_seq' 0

echo "== an unregistered key is refused and counted"
rc=0; fed_lightnode subscribe stranger --timeout-ms 2000 >/dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "stranger got in (rc=$rc)"
scrape refused
d=$(delta acl refused 'tongban_hub_connections_refused_total'); [ "$d" -ge 1 ] || fail "connections_refused_total moved by $d"
[ "$(val refused 'tongban_hub_node_online{node="stranger"}')" = absent ] || fail "an unregistered node has series"

echo "== backlog per destination: s1 offline while p1 sends 5 more batches"
wait_val 'tongban_hub_node_online{node="s1"}' 0 10
fed_lightnode publish p1 --dest s1 --batches 5 --entries 10 --json >"$ROOT/p1b.json" 2>>"$ROOT/log/p1.log" \
  || fail "publish to offline s1: $(cat "$ROOT/p1b.json")"
scrape backlog
[ "$(val backlog 'tongban_hub_node_backlog_batches{node="s1"}')" = 5 ] || fail "backlog_batches{s1} is not 5"
[ "$(val backlog 'tongban_hub_node_lag_hub_seq{node="s1"}')" = 5 ] || fail "lag_hub_seq{s1} is not 5"
[ "$(val backlog 'tongban_hub_node_backlog_bytes{node="s1"}')" -gt 0 ] || fail "backlog_bytes{s1} is 0"
[ "$(val backlog 'tongban_hub_node_backlog_batches{node="p1"}')" = 0 ] || fail "p1 has a backlog of its own batches"
sub s1 --expect-entries 50
await s1
wait_val 'tongban_hub_node_backlog_batches{node="s1"}' 0 10
[ "$(val poll 'tongban_hub_node_lag_hub_seq{node="s1"}')" = 0 ] || fail "s1 still lags after catching up"
[ "$(val poll 'tongban_hub_node_backlog_bytes{node="s1"}')" = 0 ] || fail "backlog_bytes{s1} not drained"
[ "$(val poll 'tongban_hub_node_online{node="s1"}')" = 1 ] || fail "s1 online but node_online is not 1"

echo "== gauges: certificates, start time, build"
days=$(val poll 'tongban_hub_node_cert_days_left{node="p1"}')
[ "$days" -ge 800 ] && [ "$days" -le 825 ] || fail "cert_days_left{p1} is $days (issued for 825 days)"
start=$(val poll 'process_start_time_seconds')
now=$(date +%s)
"$PY" -c "import sys; s=float(sys.argv[1]); n=int(sys.argv[2]); sys.exit(0 if n - 600 < s <= n + 1 else 1)" "$start" "$now" \
  || fail "process_start_time_seconds $start is not within 10 minutes before $now"
grep -Eq '^tongban_hub_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+",hub="hub"\} 1$' "$ROOT/poll.prom" || fail "no build_info"
[ "$(prom http GET "$URL/healthz")" = "200 ok" ] || fail "/healthz after the exchange"

echo "== the hub stops cleanly with the endpoint up"
fed_stop_proc hub
grep -q 'event=stopped' "$ROOT/log/hub.log" || fail "hub did not stop cleanly"
rc=0; prom http GET "$URL/healthz" >/dev/null 2>&1 || rc=$?
[ $rc != 0 ] || fail "/healthz still answers after the hub stopped"
echo "PASS metrics"
