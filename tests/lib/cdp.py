"""cdp.py -- drive a headless Chromium through its DevTools protocol, with
the Python standard library only (a minimal WebSocket client included):

    with Browser('/usr/bin/chromium', '/tmp/profile') as b:
        b.navigate('http://127.0.0.1:9740/')
        b.wait_for('document.body.dataset.updates > 0', 20)
        b.screenshot('page.png')

The browser runs headless as a child in its own process group (killed by
that id on close), with a fresh profile that is also its HOME (nothing is
written elsewhere: HOME, TMPDIR and the XDG directories point into it), no sandbox (tests run as root), no GPU, no QUIC, no
background or component-update traffic. Page errors --
uncaught exceptions, console.error, CSP and other browser log errors -- and
every URL requested are recorded (errors, requests).
"""
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'


class CdpError(Exception):
    pass


class WebSocket:
    """RFC 6455 client: text frames out (masked), whole messages in."""

    def __init__(self, url, timeout=30):
        u = urllib.parse.urlparse(url)
        if u.scheme != 'ws':
            raise CdpError('only ws:// URLs: %s' % url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ('?' + u.query if u.query else '')
        req = ('GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
               'Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n' % (path, u.hostname, u.port, key))
        self.sock.sendall(req.encode())
        self.buf = b''
        while b'\r\n\r\n' not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CdpError('websocket handshake: connection closed')
            self.buf += chunk
        head, self.buf = self.buf.split(b'\r\n\r\n', 1)
        lines = head.decode('latin-1').split('\r\n')
        if ' 101 ' not in lines[0] + ' ':
            raise CdpError('websocket handshake refused: %s' % lines[0])
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        headers = {l.split(':', 1)[0].strip().lower(): l.split(':', 1)[1].strip() for l in lines[1:] if ':' in l}
        if headers.get('sec-websocket-accept') != want:
            raise CdpError('websocket handshake: bad Sec-WebSocket-Accept')

    @staticmethod
    def _mask(data, mask):
        n = len(data)
        if n == 0:
            return b''
        m = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, 'big') ^ int.from_bytes(m, 'big')).to_bytes(n, 'big')

    def _frame(self, opcode, data):
        n = len(data)
        head = bytearray([0x80 | opcode])
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += n.to_bytes(2, 'big')
        else:
            head.append(0x80 | 127)
            head += n.to_bytes(8, 'big')
        mask = os.urandom(4)
        self.sock.sendall(bytes(head) + mask + self._mask(data, mask))

    def send(self, text):
        self._frame(0x1, text.encode())

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise CdpError('websocket closed by the browser')
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next whole text or binary message (pings answered)."""
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), 'big')
            elif n == 127:
                n = int.from_bytes(self._read(8), 'big')
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = self._mask(data, mask)
            if op == 0x9:                       # ping
                self._frame(0xA, data)
                continue
            if op == 0xA:                       # pong
                continue
            if op == 0x8:
                raise CdpError('websocket closed by the browser')
            parts.append(data)
            if b0 & 0x80:
                return b''.join(parts).decode('utf-8')

    def close(self):
        try:
            self._frame(0x8, b'')
        except OSError:
            pass
        self.sock.close()


class Browser:
    FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--disable-extensions', '--disable-default-apps', '--no-default-browser-check',
             '--disable-dev-shm-usage', '--hide-scrollbars', '--mute-audio', '--password-store=basic',
             '--remote-debugging-port=0']

    def __init__(self, exe, profile, width=1440, height=1300, log=None):
        self.profile = profile
        os.makedirs(profile, exist_ok=True)
        self.errors, self.requests, self.next_id = [], [], 0
        self.log = open(log, 'ab') if log else subprocess.DEVNULL
        # everything the browser writes (crash database, caches, NSS) stays in the profile
        tmp = os.path.join(profile, 'tmp')
        os.makedirs(tmp, exist_ok=True)
        env = dict(os.environ, HOME=profile, TMPDIR=tmp, XDG_CONFIG_HOME=os.path.join(profile, 'config'),
                   XDG_CACHE_HOME=os.path.join(profile, 'cache'))
        self.proc = subprocess.Popen(
            [exe] + self.FLAGS + ['--user-data-dir=' + profile, '--window-size=%d,%d' % (width, height),
                                  'about:blank'],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True, env=env)
        try:
            port = self._devtools_port(30)
            page = None
            for _ in range(100):
                with urllib.request.urlopen('http://127.0.0.1:%d/json/list' % port, timeout=10) as r:
                    targets = json.load(r)
                page = next((t for t in targets if t.get('type') == 'page'), None)
                if page:
                    break
                time.sleep(0.1)
            if not page:
                raise CdpError('no page target in the browser')
            self.ws = WebSocket(page['webSocketDebuggerUrl'])
            for domain in ('Page', 'Runtime', 'Log', 'Network'):
                self.call(domain + '.enable')
            self.call('Emulation.setDeviceMetricsOverride', width=width, height=height, deviceScaleFactor=1,
                      mobile=False)
        except Exception:
            self.close()
            raise

    def _devtools_port(self, secs):
        path = os.path.join(self.profile, 'DevToolsActivePort')
        end = time.time() + secs
        while time.time() < end:
            if self.proc.poll() is not None:
                raise CdpError('chromium exited at start (status %s)' % self.proc.returncode)
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            except OSError:
                pass
            time.sleep(0.1)
        raise CdpError('chromium did not open its DevTools port within %d s' % secs)

    def _event(self, msg):
        method, p = msg.get('method'), msg.get('params', {})
        if method == 'Runtime.exceptionThrown':
            d = p.get('exceptionDetails', {})
            self.errors.append('exception: %s %s' % (d.get('text', ''), d.get('exception', {}).get('description', '')))
        elif method == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
            self.errors.append('console.%s: %s' % (p['type'], ' '.join(str(a.get('value', a.get('description')))
                                                                      for a in p.get('args', []))))
        elif method == 'Log.entryAdded' and p.get('entry', {}).get('level') == 'error':
            e = p['entry']
            self.errors.append('log (%s): %s %s' % (e.get('source'), e.get('text'), e.get('url', '')))
        elif method == 'Network.requestWillBeSent':
            self.requests.append(p.get('request', {}).get('url', ''))

    def call(self, method, **params):
        """Sends a command, handles events until its answer; returns the result."""
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({'id': mid, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == mid:
                if 'error' in msg:
                    raise CdpError('%s: %s' % (method, msg['error']))
                return msg.get('result', {})
            if 'method' in msg:
                self._event(msg)

    def evaluate(self, expr):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r:
            raise CdpError('evaluate %r: %s' % (expr[:80], r['exceptionDetails'].get('text')))
        return r.get('result', {}).get('value')

    def navigate(self, url):
        r = self.call('Page.navigate', url=url)
        if r.get('errorText'):
            raise CdpError('navigate %s: %s' % (url, r['errorText']))

    def wait_for(self, expr, secs, every=0.25):
        """Evaluates expr until it is truthy (an exception counts as false);
        returns its value or raises CdpError after secs seconds."""
        end = time.time() + secs
        v = None
        while time.time() < end:
            try:
                v = self.evaluate(expr)
            except CdpError as e:            # e.g. no document.body yet while loading
                v = e
            if v and not isinstance(v, CdpError):
                return v
            time.sleep(every)
        raise CdpError('timed out after %s s waiting for %s (last value %r)' % (secs, expr[:120], v))

    def screenshot(self, path, full_page=True):
        r = self.call('Page.captureScreenshot', format='png', captureBeyondViewport=full_page)
        with open(path, 'wb') as f:
            f.write(base64.b64decode(r['data']))

    def close(self):
        ws = getattr(self, 'ws', None)
        if ws:
            ws.close()
            self.ws = None
        if self.proc:
            # the browser's process group (its own session): helpers included
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
            self.proc = None
        if self.log is not subprocess.DEVNULL:
            self.log.close()
            self.log = subprocess.DEVNULL

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
