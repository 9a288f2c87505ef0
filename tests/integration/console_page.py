"""console_page.py -- the checks of tests/integration/console.sh (the hub's web
console), Python standard library only:

  console_page.py http URL TOKEN           access control, types, headers, caching of every path
  console_page.py get URL TOKEN FILE       GET /api/status (bearer) into FILE
  console_page.py compare API TBCTL [--offline ID]... [--online ID]...
                                            /api/status against `tbctl hub status --json`
  console_page.py browser --chromium EXE --profile DIR --url URL --token TOKEN
                          --online ID,ID.. --warn ID --stop-node ID --stop-pid PID
                          --traffic-stop FILE --screenshot PNG [--log FILE]
                                            the page in headless Chromium (see browser())
  console_page.py tls URL TOKEN CAFILE     the endpoint over HTTPS only

Exit 0 when every check passed, 1 (with the reasons on stderr) otherwise.
"""
import argparse
import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
from cdp import Browser, CdpError  # noqa: E402

PROVINCES = ['110000', '120000', '130000', '140000', '150000', '210000', '220000', '230000', '310000', '320000',
             '330000', '340000', '350000', '360000', '370000', '410000', '420000', '430000', '440000', '450000',
             '460000', '500000', '510000', '520000', '530000', '540000', '610000', '620000', '630000', '640000',
             '650000', '660000']
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL: ' + what, file=sys.stderr)
    return cond


def request(url, headers=None, method='GET', context=None):
    """(status, headers, body) -- HTTP errors included."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api(url, token, context=None):
    st, _, body = request(url + '/api/status', {'Authorization': 'Bearer ' + token}, context=context)
    if st != 200:
        raise RuntimeError('/api/status answered %d' % st)
    return json.loads(body)


# ---- access control and headers ----

def http_checks(url, token):
    bearer = {'Authorization': 'Bearer ' + token}
    wrong = token[:-1] + ('x' if token[-1] != 'x' else 'y')
    import base64
    basic = {'Authorization': 'Basic ' + base64.b64encode(('operator:' + token).encode()).decode()}
    paths = {'/': 'text/html', '/console.js': 'text/javascript', '/console.css': 'text/css',
             '/api/status': 'application/json', '/metrics': 'text/plain; version=0.0.4'}
    for p, ctype in paths.items():
        st, h, _ = request(url + p)
        check(st == 401, '%s without the token: %d, want 401' % (p, st))
        check('Bearer' in (h.get_all('WWW-Authenticate') or [''])[0], '%s: 401 without WWW-Authenticate' % p)
        for name, hdr in (('a wrong token', {'Authorization': 'Bearer ' + wrong}),
                          ('a token prefix', {'Authorization': 'Bearer ' + token[:-1]}),
                          ('an empty token', {'Authorization': 'Bearer '})):
            st, _, _ = request(url + p, hdr)
            check(st == 401, '%s with %s: %d, want 401' % (p, name, st))
        st, _, _ = request(url + p + '?token=' + wrong)
        check(st == 401, '%s?token=<wrong>: %d, want 401' % (p, st))
        for name, hdr in (('bearer', bearer), ('basic', basic)):
            st, h, body = request(url + p, hdr)
            check(st == 200, '%s with %s: %d, want 200' % (p, name, st))
            check(h.get('Content-Type', '').startswith(ctype), '%s: Content-Type %r, want %s' % (p, h.get('Content-Type'), ctype))
        check(h.get('X-Content-Type-Options') == 'nosniff', '%s: no X-Content-Type-Options: nosniff' % p)
        check(h.get('X-Frame-Options') == 'DENY', '%s: no X-Frame-Options: DENY' % p)
        check("default-src 'self'" in h.get('Content-Security-Policy', ''), '%s: no CSP default-src self' % p)
        check(h.get('Referrer-Policy') == 'no-referrer', '%s: no Referrer-Policy' % p)
        check(body, '%s: empty body' % p)
    # /healthz stays open
    st, _, body = request(url + '/healthz')
    check(st == 200 and body == b'ok\n', '/healthz without the token: %d %r, want 200 ok' % (st, body))
    # ?token= sets the cookie, which then suffices
    st, h, _ = request(url + '/?token=' + token)
    cookie = h.get('Set-Cookie', '')
    check(st == 200 and cookie.startswith('tb_token=' + token + ';'), '/?token=: %d, Set-Cookie %r' % (st, cookie))
    for attr in ('HttpOnly', 'SameSite=Strict', 'Path=/'):
        check(attr in cookie, 'the cookie lacks %s: %r' % (attr, cookie))
    check('Secure' not in cookie, 'the cookie is Secure on plain HTTP')
    st, h, _ = request(url + '/api/status', {'Cookie': 'tb_token=' + token})
    check(st == 200 and 'Set-Cookie' not in h, '/api/status with the cookie: %d' % st)
    st, _, _ = request(url + '/api/status', {'Cookie': 'tb_token=' + wrong})
    check(st == 401, '/api/status with a wrong cookie: %d, want 401' % st)
    # caching: static files revalidate (ETag, 304), the status is never cached
    st, h, _ = request(url + '/console.js', bearer)
    etag = h.get('ETag')
    check(etag and h.get('Cache-Control') == 'no-cache', '/console.js: ETag %r, Cache-Control %r' % (etag, h.get('Cache-Control')))
    st, _, body = request(url + '/console.js', dict(bearer, **{'If-None-Match': etag or '"x"'}))
    check(st == 304 and not body, '/console.js If-None-Match: %d, want 304' % st)
    st, h, _ = request(url + '/api/status', bearer)
    check(h.get('Cache-Control') == 'no-store', '/api/status: Cache-Control %r' % h.get('Cache-Control'))
    # others
    st, _, _ = request(url + '/nope', bearer)
    check(st == 404, '/nope: %d, want 404' % st)
    st, _, _ = request(url + '/nope')
    check(st == 401, '/nope without the token: %d, want 401 (paths are not revealed)' % st)
    st, _, _ = request(url + '/api/status', bearer, method='POST')
    check(st == 405, 'POST /api/status: %d, want 405' % st)
    st, h, body = request(url + '/', bearer)
    check(b'console.js' in body and b'http://' not in body and b'https://' not in body,
          'the page refers to other sites or lacks its script')
    st, h, body = request(url + '/console.js', bearer)
    check(b'http://' not in body and b'https://' not in body, 'console.js refers to other sites')


# ---- /api/status against tbctl ----

NODE_FIELDS = ('registered', 'online', 'revoked', 'state', 'cursor', 'lag_hub_seq', 'backlog_batches',
               'backlog_bytes', 'batches_in', 'records_in', 'batches_out', 'bytes_out', 'rejected',
               'rejected_by_reason', 'cert_days_left', 'subscribe', 'health')


def stalls(log_path):
    """(from_unix_ms, ms) of every loop_stalled event in the hub's log."""
    out = []
    if not log_path:
        return out
    with open(log_path, encoding='utf-8', errors='replace') as f:
        for line in f:
            if 'event=loop_stalled' in line:
                m = re.search(r'\bms=(\d+) from_unix_ms=(\d+)', line)
                if m:
                    out.append((int(m.group(2)), int(m.group(1))))
    return out


def sample_gap_ok(c, b, stalled):
    """A history gap is 3..8 s; longer only by the length of the hub's
    loop stalls (logged) that began inside it -- the sampler cannot run while
    the loop is blocked, and the hub says so."""
    extra = sum(ms for start, ms in stalled if c - 1000 <= start <= b)
    return 3000 <= b - c <= 8000 + extra


def compare(api_path, tbctl_path, offline, online, hub_log=None):
    a = json.load(open(api_path))
    t = json.load(open(tbctl_path))
    check(a.get('schema_version') == 1, 'schema_version %r, want 1' % a.get('schema_version'))
    check(t.get('schema_version') == 1, 'tbctl: schema_version %r' % t.get('schema_version'))
    check(a.get('hub') == t.get('hub'), 'hub %r vs %r' % (a.get('hub'), t.get('hub')))
    check(a.get('ha') == {'mode': 'single', 'active': a['hub'], 'hubs': [{'id': a['hub'], 'role': 'active'}]},
          'ha: %r' % a.get('ha'))
    for sec in ('journal', 'totals', 'rejected', 'summary'):
        x, y = dict(a.get(sec, {})), dict(t.get(sec, {}))
        for k in ('records_in_per_s', 'batches_out_per_s'):
            x.pop(k, None)
            y.pop(k, None)
        check(x == y, '%s differs: api %r, tbctl %r' % (sec, x, y))
    check(a['journal']['last_seq'] > 0 and a['journal']['durable_seq'] == a['journal']['last_seq'],
          'journal not durable at rest: %r' % a['journal'])
    an = {n['id']: n for n in a.get('nodes', [])}
    tn = {n['id']: n for n in t.get('nodes', [])}
    check(sorted(an) == sorted(tn), 'nodes: api %s, tbctl %s' % (sorted(an), sorted(tn)))
    for i in sorted(set(an) & set(tn)):
        for f in NODE_FIELDS:
            check(an[i].get(f) == tn[i].get(f), 'node %s: %s api %r, tbctl %r' % (i, f, an[i].get(f), tn[i].get(f)))
    for i in offline:
        n = an.get(i, {})
        check(n.get('online') is False and n.get('state') == 'offline' and n.get('health') == 'down'
              and 'offline' in n.get('health_reasons', []), 'node %s is not shown offline: %r' % (i, n))
        check(n.get('last_seen_ms_ago', -1) > 0, 'node %s: last_seen_ms_ago %r' % (i, n.get('last_seen_ms_ago')))
    for i in online:
        check(an.get(i, {}).get('online') is True, 'node %s is not online: %r' % (i, an.get(i)))
    s = a['summary']
    check(s['online'] == sum(1 for n in an.values() if n['online']), 'summary.online %r' % s)
    check(s['registered'] == sum(1 for n in an.values() if n['registered']), 'summary.registered %r' % s)
    h = a.get('history', {})
    samples = h.get('samples', [])
    check(h.get('interval_s') == 5 and h.get('max_samples') == 120, 'history header %r' % {k: h.get(k) for k in ('interval_s', 'max_samples')})
    check(len(samples) >= 2, 'history has %d samples' % len(samples))
    ts = [x['t_unix_ms'] for x in samples]
    st = stalls(hub_log)
    check(ts == sorted(ts) and all(sample_gap_ok(c, b, st) for c, b in zip(ts, ts[1:])),
          'history times %r (hub loop stalls logged: %r)' % (ts, st))
    check(any(x['records_in_per_s'] > 0 for x in samples), 'no throughput in the history')
    check(any(x['batches_out_per_s'] > x['batches_in_per_s'] for x in samples),
          'the fan-out (batches out > in) never shows in the history')
    check(all(0 <= x['nodes_online'] <= len(an) for x in samples), 'nodes_online out of range')
    check('history' not in t, 'tbctl status carries the history')
    for k in ('time_unix_ms', 'uptime_s', 'healthy', 'health_reason', 'version'):
        check(k in a, 'no %s in /api/status' % k)
    check(abs(a['time_unix_ms'] / 1000 - time.time()) < 60, 'time_unix_ms %r is not now' % a['time_unix_ms'])


# ---- the page in the browser ----

DOM = r'''(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  return {
    updates: +document.body.dataset.updates,
    href: location.href,
    conn: document.getElementById('conn').dataset.state,
    rows: q('#nodes-body tr').map((r) => ({id: r.dataset.node, state: r.dataset.state, health: r.dataset.health,
                                          text: r.innerText})),
    cells: q('#grid .cell').map((c) => ({code: c.dataset.code, health: c.dataset.health, cls: c.className,
                                        name: c.querySelector('.nm').textContent, title: c.title,
                                        col: c.style.gridColumn, row: c.style.gridRow})),
    ministries: q('#ministries .cell').map((c) => ({code: c.dataset.code, health: c.dataset.health,
                                                   name: c.querySelector('.nm').textContent, title: c.title})),
    samples: +document.getElementById('chart').dataset.samples,
    journal: document.getElementById('t-journal-s').textContent,
    online: document.getElementById('t-online').textContent,
    ha: document.getElementById('ha-mode').textContent,
    hub: document.getElementById('hub-id').textContent,
    rejects: q('#rejects .r').map((e) => e.textContent),
    banner: document.getElementById('banner').hidden ? '' : document.getElementById('banner').textContent,
  };
})()'''

# Pixels of the chart drawn in the records-in colour: the canvas is not blank.
# the records-in line: of the canvas columns it spans (rinX0..rinX1, set by
# the page), how many hold at least one pixel of its colour
INK = r'''(() => {
  const c = document.getElementById('chart');
  const x0 = +c.dataset.rinX0, x1 = +c.dataset.rinX1;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const blue = (i) => Math.abs(d[i] - 47) < 30 && Math.abs(d[i + 1] - 111) < 30 && Math.abs(d[i + 2] - 219) < 30 && d[i + 3] > 200;
  let cols = 0;
  for (let x = Math.max(0, x0); x <= Math.min(c.width - 1, x1); x++)
    for (let y = 0; y < c.height; y++)
      if (blue((y * c.width + x) * 4)) { cols++; break; }
  return { x0: x0, x1: x1, cols: cols };
})()'''


def stop_leaves(pid, sig=signal.SIGTERM):
    """Signals the processes at the bottom of pid's tree: a backgrounded shell
    function runs its program as a child, and the shell, left alone, reaps it
    and ends (signalling the shell too would leave the program unreaped)."""
    kids = []
    try:
        for t in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/children' % (pid, t)) as f:
                kids += [int(k) for k in f.read().split()]
    except OSError:
        pass
    for k in kids:
        stop_leaves(k, sig)
    if not kids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def row_states(b):
    return {r['id']: r['state'] for r in b.evaluate(DOM)['rows']}


def browser(a):
    url, token = a.url, a.token
    online = a.online.split(',')
    with Browser(a.chromium, a.profile, log=a.log) as b:
        # without the token: the hub answers 401 and shows nothing (a
        # browser that can ask for basic credentials would prompt; headless
        # Chromium gives up with ERR_INVALID_AUTH_CREDENTIALS)
        try:
            b.navigate(url + '/')
            b.wait_for('document.readyState === "complete"', 20)
            text = b.evaluate('document.body ? document.body.innerText : ""')
            check('unauthorized' in text and 'tongban' not in text.lower(),
                  'the page without the token shows %r' % text[:100])
        except CdpError as e:
            check('ERR_INVALID_AUTH_CREDENTIALS' in str(e), 'the page without the token: %s' % e)
        time.sleep(1)
        b.evaluate('1')                      # handles the events sent so far
        b.errors.clear()                     # the 401 itself is logged as an error
        b.requests.clear()

        b.navigate(url + '/?token=' + token)
        b.wait_for('+document.body.dataset.updates >= 1', 30)
        d = b.evaluate(DOM)
        check('token' not in d['href'], 'the token stays in the address bar: %s' % d['href'])
        # the nodes appear, online
        b.wait_for('(() => { const r = new Map(Array.from(document.querySelectorAll("#nodes-body tr"))'
                   '.map((e) => [e.dataset.node, e.dataset.state])); return %s.every((i) => r.get(i) === "online"); })()'
                   % json.dumps(online), 30)
        # the node with a refused batch is amber, the chart has samples
        b.wait_for('(() => { const r = document.querySelector(\'#nodes-body tr[data-node="%s"]\');'
                   ' return r && r.dataset.health === "warn"; })()' % a.warn, 30)
        b.wait_for('+document.getElementById("chart").dataset.samples >= 3', 40)
        d = b.evaluate(DOM)
        s = api(url, token)
        byid = {n['id']: n for n in s['nodes']}
        check(sorted(r['id'] for r in d['rows']) == sorted(byid), 'rows %s, api nodes %s' % ([r['id'] for r in d['rows']], sorted(byid)))
        for r in d['rows']:
            n = byid.get(r['id'], {})
            check(r['state'] == n.get('state'), 'row %s shows %s, api %s' % (r['id'], r['state'], n.get('state')))
        check(d['hub'] == s['hub'] and d['ha'] == 'single hub', 'header: hub %r, ha %r' % (d['hub'], d['ha']))
        check(d['conn'] == 'live' and not d['banner'], 'connection %r, banner %r' % (d['conn'], d['banner']))
        # the grid: 32 platforms, each at its own place, coloured by health
        cells = {c['code']: c for c in d['cells']}
        check(sorted(cells) == sorted(PROVINCES), 'grid codes: %s' % sorted(cells))
        check(len({(c['col'], c['row']) for c in d['cells']}) == 32, 'grid cells overlap')
        for code, c in cells.items():
            want = byid[code]['health'] if code in byid else 'unregistered'
            check(c['health'] == want and want in c['cls'], 'cell %s is %s (%s), want %s' % (code, c['health'], c['cls'], want))
        check(cells['110000']['name'] == '北京' and 'Beijing' in cells['110000']['title'], 'cell 110000: %r' % cells['110000'])
        check(cells['660000']['name'] == '兵团' and 'Corps' in cells['660000']['title'], 'cell 660000: %r' % cells['660000'])
        m = {c['code']: c for c in d['ministries']}
        others = sorted(i for i in byid if i not in PROVINCES)
        check(sorted(m) == others, 'ministry cells %s, want %s' % (sorted(m), others))
        if 'mps' in m:
            check(m['mps']['name'] == '公安部' and 'Public Security' in m['mps']['title'], 'cell mps: %r' % m['mps'])
        # the line is continuous over the samples' span (the reject tick, 4
        # pixels wide, may cover a few columns of it at the bottom)
        ink = b.evaluate(INK)
        span = ink['x1'] - ink['x0'] + 1
        check(span >= 20 and ink['cols'] >= span - 6,
              'the records-in line covers %d of the %d columns %d..%d' % (ink['cols'], span, ink['x0'], ink['x1']))
        print('records-in line: %d of %d columns' % (ink['cols'], span))
        check(any(r.startswith('acl ') and r != 'acl 0' for r in d['rejects']), 'rejects by reason: %r' % d['rejects'])
        before = row_states(b)
        print('page before the stop: %s' % json.dumps(before, sort_keys=True))

        # stop a node: the page shows that one offline, the others stay online
        stop_leaves(a.stop_pid)
        t0 = time.time()
        b.wait_for('(() => { const r = document.querySelector(\'#nodes-body tr[data-node="%s"]\');'
                   ' return r && r.dataset.state === "offline"; })()' % a.stop_node, 30)
        print('%s shown offline %.1f s after it was stopped' % (a.stop_node, time.time() - t0))
        d = b.evaluate(DOM)
        after = {r['id']: r['state'] for r in d['rows']}
        shown_offline = sorted(i for i, st in after.items() if st != 'online')
        check(shown_offline == [a.stop_node], 'nodes shown offline: %s, want only %s' % (shown_offline, a.stop_node))
        cell = {c['code']: c for c in d['cells'] + d['ministries']}.get(a.stop_node, {})
        check(cell.get('health') == 'down' and 'down' in cell.get('cls', ''), 'cell of %s: %r' % (a.stop_node, cell))
        s = api(url, token)
        check([n['id'] for n in s['nodes'] if not n['online']] == [a.stop_node],
              'api offline nodes: %s' % [n['id'] for n in s['nodes'] if not n['online']])
        check(d['online'] == '%d / %d' % (len(online) - 1, len(online)), 'tile shows %r online' % d['online'])
        b.wait_for('+document.getElementById("chart").dataset.samples >= 4', 30)
        time.sleep(2.5)                      # one more poll: the screenshot shows the latest state
        b.screenshot(a.screenshot)
        print('screenshot: %s' % a.screenshot)

        # traffic stops: the page follows the journal to its end
        open(a.traffic_stop, 'w').close()
        last, stable = None, 0
        for _ in range(60):
            s = api(url, token)
            cur = (s['journal']['last_seq'], s['journal']['durable_seq'])
            stable = stable + 1 if cur == last else 0
            last = cur
            if stable >= 3 and cur[0] == cur[1]:
                break
            time.sleep(0.5)
        check(stable >= 3, 'the journal did not come to rest: %r' % (last,))
        want = 'last hub_seq %d ' % last[0]
        b.wait_for('document.getElementById("t-journal-s").textContent.includes(%s)' % json.dumps(want), 15)

        errors = [e for e in b.errors]
        check(not errors, 'errors in the page: %s' % errors)
        foreign = [u for u in b.requests if not (u.startswith(url + '/') or u.startswith('data:') or u == 'about:blank')]
        check(not foreign, 'requests to other places: %s' % foreign)
        check(any(u.startswith(url + '/api/status') for u in b.requests), 'the page never polled api/status')
        print('%d requests, all to %s' % (len(b.requests), url))


# ---- TLS ----

def tls(url, token, cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    st, h, body = request(url + '/api/status', {'Authorization': 'Bearer ' + token}, context=ctx)
    check(st == 200 and json.loads(body).get('schema_version') == 1, 'HTTPS /api/status: %d' % st)
    st, _, _ = request(url + '/api/status', context=ctx)
    check(st == 401, 'HTTPS /api/status without the token: %d, want 401' % st)
    st, h, _ = request(url + '/?token=' + token, context=ctx)
    cookie = h.get('Set-Cookie', '')
    check(st == 200 and 'Secure' in cookie and 'HttpOnly' in cookie, 'HTTPS cookie: %d %r' % (st, cookie))
    st, _, body = request(url + '/healthz', context=ctx)
    check(st == 200 and body == b'ok\n', 'HTTPS /healthz: %d' % st)
    plain = url.replace('https://', 'http://')
    try:
        st, _, _ = request(plain + '/healthz')
    except Exception as e:                   # noqa: BLE001 -- any failure is what we want
        st = 'no answer (%s)' % type(e).__name__
    check(st != 200, 'plain HTTP on the HTTPS port answered 200')
    try:
        request(url + '/healthz', context=ssl.create_default_context())   # the system CAs do not know it
        check(False, 'a client without the certificate trusted it')
    except (ssl.SSLError, urllib.error.URLError):
        pass


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('http')
    p.add_argument('url')
    p.add_argument('token')
    p = sub.add_parser('get')
    p.add_argument('url')
    p.add_argument('token')
    p.add_argument('out')
    p = sub.add_parser('compare')
    p.add_argument('api')
    p.add_argument('tbctl')
    p.add_argument('--offline', action='append', default=[])
    p.add_argument('--online', action='append', default=[])
    p.add_argument('--hub-log', help="the hub's log: loop_stalled events explain late history samples")
    p = sub.add_parser('browser')
    for k in ('chromium', 'profile', 'url', 'token', 'online', 'warn', 'stop-node', 'traffic-stop', 'screenshot'):
        p.add_argument('--' + k, required=True)
    p.add_argument('--stop-pid', type=int, required=True)
    p.add_argument('--log')
    p = sub.add_parser('tls')
    p.add_argument('url')
    p.add_argument('token')
    p.add_argument('cafile')
    a = ap.parse_args()
    try:
        if a.cmd == 'http':
            http_checks(a.url, a.token)
        elif a.cmd == 'get':
            with open(a.out, 'w') as f:
                json.dump(api(a.url, a.token), f)
        elif a.cmd == 'compare':
            compare(a.api, a.tbctl, a.offline, a.online, a.hub_log)
        elif a.cmd == 'browser':
            browser(a)
        elif a.cmd == 'tls':
            tls(a.url, a.token, a.cafile)
    except (CdpError, RuntimeError, OSError, KeyError, ValueError) as e:
        failures.append('%s: %s' % (type(e).__name__, e))
        print('FAIL: %s: %s' % (type(e).__name__, e), file=sys.stderr)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
