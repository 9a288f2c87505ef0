/* console.js -- the hub console: polls api/status (docs/api-status.md) every
 * 2 s and renders the summary, the map-like grid of the 32 provincial
 * platforms and the ministries, the throughput chart (drawn on a canvas, no
 * library) and the node table. Every value from the hub is inserted as text
 * (textContent), never as HTML. Elements carry data-* attributes (node,
 * state, health) so that tests can read what is shown. */
'use strict';

(function () {
  const POLL_MS = 2000;

  /* The 32 provincial-level platforms: code, Chinese and English name, and a
   * place on an 8 x 8 grid that roughly follows the map. */
  const PROVINCES = [
    ['230000', '黑龙江', 'Heilongjiang', 7, 0],
    ['650000', '新疆', 'Xinjiang', 0, 1], ['660000', '兵团', 'Xinjiang Production and Construction Corps', 1, 1],
    ['150000', '内蒙古', 'Inner Mongolia', 4, 1], ['110000', '北京', 'Beijing', 5, 1],
    ['120000', '天津', 'Tianjin', 6, 1], ['220000', '吉林', 'Jilin', 7, 1],
    ['620000', '甘肃', 'Gansu', 2, 2], ['640000', '宁夏', 'Ningxia', 3, 2], ['140000', '山西', 'Shanxi', 4, 2],
    ['130000', '河北', 'Hebei', 5, 2], ['210000', '辽宁', 'Liaoning', 6, 2],
    ['540000', '西藏', 'Tibet', 0, 3], ['630000', '青海', 'Qinghai', 1, 3], ['610000', '陕西', 'Shaanxi', 3, 3],
    ['410000', '河南', 'Henan', 4, 3], ['370000', '山东', 'Shandong', 5, 3],
    ['510000', '四川', 'Sichuan', 2, 4], ['500000', '重庆', 'Chongqing', 3, 4], ['420000', '湖北', 'Hubei', 4, 4],
    ['340000', '安徽', 'Anhui', 5, 4], ['320000', '江苏', 'Jiangsu', 6, 4], ['310000', '上海', 'Shanghai', 7, 4],
    ['530000', '云南', 'Yunnan', 2, 5], ['520000', '贵州', 'Guizhou', 3, 5], ['430000', '湖南', 'Hunan', 4, 5],
    ['360000', '江西', 'Jiangxi', 5, 5], ['330000', '浙江', 'Zhejiang', 6, 5],
    ['450000', '广西', 'Guangxi', 3, 6], ['440000', '广东', 'Guangdong', 4, 6], ['350000', '福建', 'Fujian', 5, 6],
    ['460000', '海南', 'Hainan', 3, 7],
  ];
  const PROVINCE = new Map(PROVINCES.map((p) => [p[0], { zh: p[1], en: p[2], col: p[3], row: p[4] }]));

  /* State Council departments that run their own platform (short codes). */
  const MINISTRIES = {
    mps: ['公安部', 'Ministry of Public Security'],
    samr: ['市场监管总局', 'State Administration for Market Regulation'],
    mohrss: ['人力资源社会保障部', 'Ministry of Human Resources and Social Security'],
    moe: ['教育部', 'Ministry of Education'],
    mca: ['民政部', 'Ministry of Civil Affairs'],
    moj: ['司法部', 'Ministry of Justice'],
    mof: ['财政部', 'Ministry of Finance'],
    mnr: ['自然资源部', 'Ministry of Natural Resources'],
    mee: ['生态环境部', 'Ministry of Ecology and Environment'],
    mohurd: ['住房城乡建设部', 'Ministry of Housing and Urban-Rural Development'],
    mot: ['交通运输部', 'Ministry of Transport'],
    mwr: ['水利部', 'Ministry of Water Resources'],
    moa: ['农业农村部', 'Ministry of Agriculture and Rural Affairs'],
    mofcom: ['商务部', 'Ministry of Commerce'],
    mct: ['文化和旅游部', 'Ministry of Culture and Tourism'],
    nhc: ['国家卫生健康委', 'National Health Commission'],
    mem: ['应急管理部', 'Ministry of Emergency Management'],
    miit: ['工业和信息化部', 'Ministry of Industry and Information Technology'],
    ndrc: ['国家发展改革委', 'National Development and Reform Commission'],
    pbc: ['中国人民银行', "People's Bank of China"],
    customs: ['海关总署', 'General Administration of Customs'],
    sat: ['税务总局', 'State Taxation Administration'],
    nhsa: ['国家医保局', 'National Healthcare Security Administration'],
    cac: ['国家网信办', 'Cyberspace Administration of China'],
  };

  const HEALTH_TEXT = { ok: 'online', warn: 'attention', down: 'down', unregistered: 'not registered' };
  const STATE_ZH = { online: '在线', offline: '离线', revoked: '已吊销', removed: '已移除' };
  const REASON_TEXT = {
    offline: 'offline', revoked: 'revoked', removed: 'removed from the registry',
    cert_expired: 'certificate expired', cert_expiring: 'certificate expiring',
    rejected_recently: 'batches rejected in the last 5 min', backlog_growing: 'backlog growing',
    backlog_stuck: 'backlog not moving',
  };

  const $ = (id) => document.getElementById(id);

  /* A token given as ?token= : the hub answered the page with a cookie that
   * carries it; it is also sent as a header, and taken out of the address
   * bar so that it is not bookmarked or shown. */
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  if (token !== null && history.replaceState) {
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? '?' + q : '') + location.hash);
  }

  let last = null;            /* the latest status */
  let lastOk = 0;             /* Date.now() of the latest good answer */
  let updates = 0;

  /* ---- formatting ---- */

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function num(v, digits) {
    if (typeof v !== 'number' || !isFinite(v)) return '–';
    if (digits === undefined) digits = v !== 0 && Math.abs(v) < 10 ? 1 : 0;
    return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function bytes(v) {
    if (typeof v !== 'number') return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(v < 10 ? 1 : 0) : String(v)) + ' ' + u[i];
  }

  function ago(ms) {
    if (typeof ms !== 'number' || ms < 0) return 'never';
    const s = Math.round(ms / 1000);
    if (s < 2) return 'now';
    if (s < 120) return s + ' s ago';
    const m = Math.round(s / 60);
    if (m < 120) return m + ' min ago';
    const h = Math.round(m / 60);
    return h < 48 ? h + ' h ago' : Math.round(h / 24) + ' d ago';
  }

  function duration(s) {
    if (typeof s !== 'number') return '';
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min';
    if (s < 86400) return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
    return Math.floor(s / 86400) + ' d ' + Math.floor((s % 86400) / 3600) + ' h';
  }

  function clock(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
  }

  function nameOf(id) {
    const p = PROVINCE.get(id);
    if (p) return { zh: p.zh, en: p.en };
    const m = MINISTRIES[id];
    if (m) return { zh: m[0], en: m[1] };
    return { zh: '', en: '' };
  }

  function reasonsText(n) {
    return (n.health_reasons || []).map((r) => REASON_TEXT[r] || r).join(', ');
  }

  function rejectsText(n) {
    const r = n.rejected_by_reason || {};
    return Object.keys(r).sort().map((k) => k + ' ' + r[k]).join(', ');
  }

  /* ---- the header and tiles ---- */

  function setTile(id, health) {
    const t = $(id);
    t.classList.remove('ok', 'warn', 'down');
    if (health) t.classList.add(health);
  }

  function renderSummary(s) {
    const ha = s.ha || {};
    $('ha-mode').textContent = ha.mode === 'single' || !ha.mode ? 'single hub' : ha.mode + ' · active ' + ha.active;
    $('ha-mode').dataset.mode = ha.mode || 'single';
    $('hub-id').textContent = s.hub;
    $('hub-version').textContent = 'v' + s.version;
    $('hub-uptime').textContent = 'up ' + duration(s.uptime_s);
    const sum = s.summary || {};
    $('t-online').textContent = sum.online + ' / ' + sum.registered;
    const offline = sum.registered - sum.online - (sum.revoked || 0);
    $('t-online-s').textContent = offline + ' offline' + (sum.revoked ? ', ' + sum.revoked + ' revoked' : '');
    setTile('tile-nodes', sum.registered === 0 ? '' : sum.online === sum.registered - (sum.revoked || 0) ? 'ok' : 'warn');
    $('t-in').textContent = num(sum.records_in_per_s);
    $('t-out').textContent = num(sum.batches_out_per_s);
    const j = s.journal || {};
    $('t-journal').textContent = bytes(j.bytes);
    $('t-journal-s').textContent = j.segments + ' segment' + (j.segments === 1 ? '' : 's') + ' · last hub_seq ' +
      j.last_seq + ' · durable ' + j.durable_seq;
    $('t-journal-s').title = $('t-journal-s').textContent + ' · ' + j.bytes + ' bytes';
    setTile('tile-journal', j.storage_failed ? 'down' : 'ok');
    const rej = s.rejected || {};
    const total = Object.values(rej).reduce((a, b) => a + b, 0);
    $('t-rejected').textContent = num(total, 0);
    const top = Object.keys(rej).filter((k) => rej[k] > 0).sort((a, b) => rej[b] - rej[a]).slice(0, 3);
    $('t-rejected-s').textContent = top.length ? top.map((k) => k + ' ' + rej[k]).join(', ') : 'none since the hub started';
    setTile('tile-rejected', total ? 'warn' : 'ok');
    $('t-health').textContent = s.healthy ? 'OK' : 'FAILING';
    $('t-health-s').textContent = s.healthy ? (ha.mode === 'single' ? 'single hub, id ' + s.hub : 'active hub ' + ha.active)
      : s.health_reason;
    setTile('tile-health', s.healthy ? 'ok' : 'down');
    $('schema').textContent = s.schema_version;
  }

  /* ---- the grid ---- */

  function cell(id, names, node, place) {
    const health = node ? node.health : 'unregistered';
    const c = el('div', 'cell ' + health);
    c.setAttribute('role', 'listitem');
    c.dataset.code = id;
    c.dataset.health = health;
    if (node) c.dataset.state = node.state;
    if (place) {
      c.style.gridColumn = String(place.col + 1);
      c.style.gridRow = String(place.row + 1);
    }
    c.appendChild(el('div', 'nm', names.zh || id));
    c.appendChild(el('div', 'cd', names.zh ? id : ''));
    let st = '–';
    if (node) {
      st = node.state === 'online' ? (node.backlog_batches ? 'backlog ' + node.backlog_batches : 'online')
        : node.state === 'offline' ? 'offline ' + ago(node.last_seen_ms_ago).replace(' ago', '') : node.state;
    }
    c.appendChild(el('div', 'st', st));
    let tip = (names.en ? names.en + ' · ' : '') + id + ' — ' + (node ? node.state : 'not registered at this hub');
    if (node && node.health_reasons && node.health_reasons.length) tip += ' (' + reasonsText(node) + ')';
    if (node) tip += '\nlast seen ' + ago(node.last_seen_ms_ago) + ' · backlog ' + node.backlog_batches + ' batches';
    c.title = tip;
    return c;
  }

  function renderGrid(nodes) {
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const grid = $('grid');
    grid.replaceChildren(...PROVINCES.map((p) => cell(p[0], { zh: p[1], en: p[2] }, byId.get(p[0]), PROVINCE.get(p[0]))));
    const others = nodes.filter((n) => !PROVINCE.has(n.id)).sort((a, b) => {
      const ma = a.id in MINISTRIES ? 0 : 1, mb = b.id in MINISTRIES ? 0 : 1;
      return ma - mb || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    });
    const m = $('ministries');
    if (others.length) m.replaceChildren(...others.map((n) => cell(n.id, nameOf(n.id), n, null)));
    else m.replaceChildren(el('span', 'muted', 'none registered'));
  }

  /* ---- the node table ---- */

  function order(a, b) {
    const pa = PROVINCE.has(a.id) ? 0 : 1, pb = PROVINCE.has(b.id) ? 0 : 1;
    return pa - pb || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }

  function renderTable(nodes) {
    const rows = nodes.slice().sort(order).map((n) => {
      const tr = el('tr', n.health);
      tr.dataset.node = n.id;
      tr.dataset.state = n.state;
      tr.dataset.health = n.health;
      const names = nameOf(n.id);
      const id = el('td');
      id.appendChild(el('span', 'dot'));
      id.appendChild(document.createTextNode(n.id));
      tr.appendChild(id);
      const nm = el('td', null, names.zh || '–');
      if (names.en) nm.title = names.en;
      tr.appendChild(nm);
      const st = el('td', 'state', n.state + (STATE_ZH[n.state] ? ' ' + STATE_ZH[n.state] : ''));
      const why = (n.health_reasons || []).filter((r) => r !== n.state);
      if (why.length) st.appendChild(el('span', 'why', why.map((r) => REASON_TEXT[r] || r).join(', ')));
      tr.appendChild(st);
      tr.appendChild(el('td', null, ago(n.last_seen_ms_ago)));
      const bl = el('td', 'n', num(n.backlog_batches, 0) + (n.backlog_bytes ? ' · ' + bytes(n.backlog_bytes) : ''));
      bl.title = n.in_flight + ' in flight';
      tr.appendChild(bl);
      tr.appendChild(el('td', 'n', num(n.lag_hub_seq, 0)));
      tr.appendChild(el('td', 'n', num(n.records_in_per_s)));
      tr.appendChild(el('td', 'n', num(n.batches_out_per_s)));
      tr.appendChild(el('td', 'rej', rejectsText(n) || (n.rejected ? String(n.rejected) : '–')));
      const cd = el('td', 'n', typeof n.cert_days_left === 'number' ? String(n.cert_days_left) : '–');
      tr.appendChild(cd);
      return tr;
    });
    $('nodes-body').replaceChildren(...rows);
  }

  function renderRejects(rej) {
    const box = $('rejects');
    const keys = Object.keys(rej || {}).sort((a, b) => (rej[b] - rej[a]) || (a < b ? -1 : 1));
    box.replaceChildren(...keys.map((k) => {
      const e = el('span', 'r' + (rej[k] ? ' hit' : ''), k + ' ' + rej[k]);
      e.dataset.reason = k;
      return e;
    }));
  }

  /* ---- the chart ---- */

  function axis(v) {
    return Number(v.toPrecision(3)).toLocaleString('en-US', { maximumFractionDigits: 2 });
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 4, 5, 8, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart(hist) {
    const cv = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const W = cv.clientWidth, H = cv.clientHeight;
    if (!W || !H) return;
    if (cv.width !== Math.round(W * dpr) || cv.height !== Math.round(H * dpr)) {
      cv.width = Math.round(W * dpr);
      cv.height = Math.round(H * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const css = getComputedStyle(document.documentElement);
    const col = (v) => css.getPropertyValue(v).trim();
    const L = 56, R = 52, T = 10, B = 26;
    const w = W - L - R, h = H - T - B;
    const samples = (hist && hist.samples) || [];
    const interval = ((hist && hist.interval_s) || 5) * 1000;
    const maxSpan = ((hist && hist.max_samples) || 120) * interval;
    const tEnd = samples.length ? samples[samples.length - 1].t_unix_ms : Date.now();
    /* the time axis covers the samples kept: from 2 minutes up to the whole history */
    const have = samples.length ? tEnd - samples[0].t_unix_ms + interval : 0;
    const span = Math.min(maxSpan, Math.max(120000, Math.ceil(have / 60000) * 60000));
    const tStart = tEnd - span;
    cv.dataset.samples = String(samples.length);
    $('chart-span').textContent = 'last ' + Math.round(span / 60000) + ' min, a sample every ' + interval / 1000 + ' s';

    const maxR = niceMax(Math.max(0, ...samples.map((s) => s.records_in_per_s)));
    const maxB = niceMax(Math.max(0, ...samples.map((s) => Math.max(s.batches_in_per_s, s.batches_out_per_s))));
    const x = (t) => L + ((t - tStart) / span) * w;
    const yR = (v) => T + h - (v / maxR) * h;
    const yB = (v) => T + h - (v / maxB) * h;

    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.strokeStyle = '#e6eaf0';
    g.fillStyle = '#6b7785';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const yy = Math.round(T + (h * i) / 4) + 0.5;
      g.beginPath(); g.moveTo(L, yy); g.lineTo(L + w, yy); g.stroke();
      g.textAlign = 'right';
      g.fillText(axis(maxR * (1 - i / 4)), L - 6, yy);
      g.textAlign = 'left';
      g.fillText(axis(maxB * (1 - i / 4)), L + w + 6, yy);
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const step = span <= 180000 ? 30000 : span <= 360000 ? 60000 : 120000;
    for (let back = 0; back <= span; back += step) {
      const xx = Math.round(x(tEnd - back)) + 0.5;
      g.strokeStyle = '#eef1f5';
      g.beginPath(); g.moveTo(xx, T); g.lineTo(xx, T + h); g.stroke();
      g.fillText(back === 0 ? clock(tEnd) : '−' + (back < 60000 ? back / 1000 + ' s' : back / 60000 + ' min'), xx, T + h + 6);
    }
    g.strokeStyle = '#c5ccd6';
    g.strokeRect(L + 0.5, T + 0.5, w, h);

    if (samples.length < 2) {
      g.fillStyle = '#6b7785';
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.font = '13px system-ui, sans-serif';
      g.fillText(samples.length ? 'collecting samples…' : 'no samples yet: one every ' + interval / 1000 + ' s', L + w / 2, T + h / 2);
      if (!samples.length) return;
    }

    /* records in: a filled area on the left axis, its line drawn last so
       that the batch lines never hide the main series */
    const rinPath = () => {
      g.beginPath();
      samples.forEach((s, i) => (i ? g.lineTo(x(s.t_unix_ms), yR(s.records_in_per_s)) : g.moveTo(x(s.t_unix_ms), yR(s.records_in_per_s))));
    };
    rinPath();
    g.lineTo(x(samples[samples.length - 1].t_unix_ms), T + h);
    g.lineTo(x(samples[0].t_unix_ms), T + h);
    g.closePath();
    g.globalAlpha = 0.12;
    g.fillStyle = col('--rin');
    g.fill();
    g.globalAlpha = 1;

    /* batches in and out: lines on the right axis */
    for (const [key, c] of [['batches_in_per_s', '--bin'], ['batches_out_per_s', '--bout']]) {
      g.beginPath();
      samples.forEach((s, i) => (i ? g.lineTo(x(s.t_unix_ms), yB(s[key])) : g.moveTo(x(s.t_unix_ms), yB(s[key]))));
      g.strokeStyle = col(c);
      g.lineWidth = 1.75;
      g.setLineDash(key === 'batches_in_per_s' ? [4, 3] : []);
      g.stroke();
    }
    g.setLineDash([]);

    rinPath();
    g.strokeStyle = col('--rin');
    g.lineWidth = 2;
    g.stroke();
    /* where the records-in line runs, in canvas pixels (for tools and tests) */
    cv.dataset.rinX0 = String(Math.round(x(samples[0].t_unix_ms) * dpr));
    cv.dataset.rinX1 = String(Math.round(x(samples[samples.length - 1].t_unix_ms) * dpr));

    /* rejects: red ticks on the time axis */
    g.fillStyle = col('--red');
    for (const s of samples) if (s.rejected > 0) g.fillRect(x(s.t_unix_ms) - 2, T + h - 9, 4, 9);
  }

  /* ---- polling ---- */

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }

  function banner(text) {
    const b = $('banner');
    b.hidden = !text;
    b.textContent = text || '';
  }

  function render(s) {
    const nodes = s.nodes || [];
    renderSummary(s);
    renderGrid(nodes);
    renderTable(nodes);
    renderRejects(s.rejected);
    drawChart(s.history);
    updates++;
    document.body.dataset.updates = String(updates);
    document.body.dataset.hub = s.hub;
    $('updated').textContent = clock(s.time_unix_ms);
    if (!s.healthy) banner('The hub reports a problem: ' + s.health_reason);
    else if (s.journal && s.journal.storage_failed) banner('The journal refuses writes: batches are rejected (reason storage).');
    else banner('');
  }

  async function poll() {
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      const r = await fetch('api/status', { cache: 'no-store', credentials: 'same-origin', headers });
      if (r.status === 401) {
        setConn('unauthorized', 'unauthorized');
        banner('The hub asks for its access token: open this page as /?token=TOKEN (http.token in hub.yaml).');
      } else if (!r.ok) {
        throw new Error('HTTP ' + r.status);
      } else {
        const s = await r.json();
        last = s;
        lastOk = Date.now();
        render(s);
        setConn('live', 'live · ' + clock(Date.now()));
      }
    } catch (e) {
      const since = lastOk ? ' — showing the state of ' + clock(lastOk) : '';
      setConn('stale', 'hub unreachable');
      banner('Cannot reach the hub (' + (e && e.message ? e.message : e) + ')' + since + '.');
    }
    setTimeout(poll, POLL_MS);
  }

  window.addEventListener('resize', () => { if (last) drawChart(last.history); });
  poll();
})();
