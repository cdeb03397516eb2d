/* weft dashboard: app.js
 *
 * Plain ES2020, no dependencies, no build step. The first part is a small core,
 * exposed as `window.weft`:
 *   weft.api(path, opts)        fetch against the API, with the bearer token
 *   weft.events.on(type, fn)    server-sent events (deployed, deleted, started,
 *                               finished, log, ...) and local "ui:*" events
 *   weft.panels.register(p)     p = {id, title, order, wide?, mount(root, ctx), refresh?()}
 *                               mount() builds the panel inside `root` (ctx: section,
 *                               tools, title) and subscribes to events; refresh()
 *                               (optional, may be set by mount) refetches the panel's
 *                               data: at start and after every event-stream reconnect.
 *   weft.fmt.{bytes, duration, ago, shortId, ...}
 *   weft.modules, weft.h, weft.ui   shared module list, DOM and UI helpers
 * The rest registers the built-in panels (modules, invoke, invocations, logs)
 * through that same mechanism; later panels are added the same way.
 *
 * All data goes into the DOM through textContent / text nodes, never innerHTML.
 */
'use strict';

const weft = (() => {
  /* ------------------------------------------------------------------ auth */

  const TOKEN_KEY = 'weft-token';
  let memoryToken = '';

  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return memoryToken; }
  }

  function setToken(token) {
    memoryToken = token || '';
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage unavailable: keep it in memory */ }
  }

  // `#token=XYZ` in the URL: keep it in sessionStorage and drop it from the address bar.
  function takeTokenFromFragment() {
    const hash = location.hash.replace(/^#/, '');
    if (!hash) return;
    const params = new URLSearchParams(hash);
    if (!params.has('token')) return;
    setToken(params.get('token'));
    params.delete('token');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }

  function showAuthBanner() {
    const banner = document.getElementById('auth-banner');
    if (!banner || !banner.hidden) return;
    const text = document.getElementById('auth-text');
    if (text) {
      text.textContent = getToken()
        ? 'The access token was rejected. Enter a valid token.'
        : 'This server requires an access token.';
    }
    banner.hidden = false;
    const input = document.getElementById('auth-token');
    if (input) input.focus();
  }

  function initAuthBanner() {
    const banner = document.getElementById('auth-banner');
    if (!banner) return;
    banner.addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken(document.getElementById('auth-token').value.trim());
      location.reload();
    });
  }

  /* ------------------------------------------------------------------- api */

  class ApiError extends Error {
    constructor(status, code, message, details = {}) {
      super(message);
      this.name = 'ApiError';
      this.status = status;   // HTTP status (0 for network errors)
      this.code = code;       // API error code, e.g. "deadline_exceeded"
      this.details = details; // the whole `error` object from the response
    }
  }

  // Turn a non-2xx response into an ApiError, reading `{"error": {...}}` when present.
  async function readError(res) {
    let err = {};
    try {
      const text = await res.text();
      const body = text ? JSON.parse(text) : null;
      if (body && typeof body.error === 'object' && body.error) err = body.error;
      else if (body && typeof body.error === 'string') err = { message: body.error };
    } catch { /* not JSON */ }
    return new ApiError(
      res.status,
      err.code || `http_${res.status}`,
      err.message || res.statusText || `HTTP ${res.status}`,
      err,
    );
  }

  /**
   * fetch() with the bearer token.
   *   opts.json  -> sent as a JSON body
   *   opts.raw   -> resolve with the Response whatever its status (caller reads it)
   * Otherwise resolves with the parsed JSON body (null for 204, text for non-JSON)
   * and rejects with an ApiError for non-2xx statuses. A 401 shows the token banner.
   */
  async function api(path, opts = {}) {
    const { raw = false, json, headers, ...init } = opts;
    const hdrs = new Headers(headers || {});
    const token = getToken();
    if (token) hdrs.set('Authorization', `Bearer ${token}`);
    if (json !== undefined) {
      hdrs.set('Content-Type', 'application/json');
      init.body = JSON.stringify(json);
    }
    if (!raw && !hdrs.has('Accept')) hdrs.set('Accept', 'application/json');

    let res;
    try {
      res = await fetch(path, { ...init, headers: hdrs });
    } catch (e) {
      if (e && e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network_error', `cannot reach the server (${e.message || e})`);
    }
    if (res.status === 401) showAuthBanner();
    if (raw) return res;
    if (!res.ok) throw await readError(res);
    if (res.status === 204) return null;
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  }

  // Build "path?k=v&k=v2" from an object; arrays repeat the key, null/undefined/'' are skipped.
  // Values are percent-encoded with encodeURIComponent (a space is %20, never '+').
  function url(path, params = {}) {
    const parts = [];
    for (const [key, value] of Object.entries(params)) {
      for (const v of Array.isArray(value) ? value : [value]) {
        if (v !== undefined && v !== null && v !== '') {
          parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(v))}`);
        }
      }
    }
    return parts.length ? `${path}?${parts.join('&')}` : path;
  }

  /* ---------------------------------------------------------------- events */

  // One bus for server events (named SSE events) and local ones (names starting "ui:").
  const handlers = new Map(); // type -> Set<fn>
  let source = null;          // current EventSource
  let attached = new Set();   // SSE event types with a listener on `source`
  let connState = 'connecting';
  let retries = 0;
  let retryTimer = null;

  const isLocal = (type) => type.startsWith('ui:');

  function emit(type, data) {
    const set = handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(data, type); } catch (e) { console.error(`weft: handler for "${type}" failed`, e); }
    }
  }

  function attach(es, type) {
    if (attached.has(type)) return;
    attached.add(type);
    es.addEventListener(type, (ev) => {
      if (es !== source) return;
      let data;
      try { data = JSON.parse(ev.data); } catch {
        console.warn(`weft: unparsable "${type}" event`, ev.data);
        return;
      }
      emit(type, data);
    });
  }

  // Subscribe; returns a function that unsubscribes.
  function on(type, fn) {
    let set = handlers.get(type);
    if (!set) handlers.set(type, (set = new Set()));
    set.add(fn);
    if (source && !isLocal(type)) attach(source, type);
    return () => set.delete(fn);
  }

  function setConnState(state) {
    connState = state;
    const el = document.getElementById('conn-status');
    if (el) {
      el.dataset.state = state;
      const text = el.querySelector('.conn-text');
      const label = { live: 'live', connecting: 'connecting…', reconnecting: 'reconnecting…' }[state] || state;
      if (text) text.textContent = label;
      el.title = state === 'live' ? 'receiving live events' : 'event stream not connected';
    }
    emit('ui:connection', state);
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const token = getToken();
    const es = new EventSource('/v1/events' + (token ? `?access_token=${encodeURIComponent(token)}` : ''));
    source = es;
    attached = new Set();
    for (const type of handlers.keys()) if (!isLocal(type)) attach(es, type);
    setConnState(retries ? 'reconnecting' : 'connecting');

    es.onopen = () => {
      if (es !== source) return;
      retries = 0;
      setConnState('live');
      refreshAll('connect'); // refetch so nothing sent while disconnected is missed
    };
    es.onerror = () => {
      if (es !== source) return;
      setConnState('reconnecting');
      scheduleHealth(); // surfaces a 401 (EventSource cannot tell us) and stale header data
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a non-200 answer): retry ourselves with backoff.
        es.close();
        retries += 1;
        retryTimer = setTimeout(connect, Math.min(30000, 1000 * 2 ** Math.min(retries, 5)));
      }
    };
  }

  /* ------------------------------------------------------------ formatting */

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  const fmt = {
    // 74922 -> "73.2 KiB"
    bytes(n) {
      if (n === null || n === undefined || Number.isNaN(+n)) return '—';
      n = +n;
      if (Math.abs(n) < 1024) return `${n} B`;
      const units = ['KiB', 'MiB', 'GiB', 'TiB'];
      let v = n, i = -1;
      do { v /= 1024; i += 1; } while (Math.abs(v) >= 1024 && i < units.length - 1);
      return `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
    },

    // microseconds -> "812 µs", "4.20 ms", "1.35 s", "2m 05s"
    duration(us) {
      if (us === null || us === undefined || Number.isNaN(+us)) return '—';
      us = Math.max(0, +us);
      const sig = (v) => (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toString());
      if (us < 1000) return `${Math.round(us)} µs`;
      if (us < 1e6) return `${sig(us / 1e3)} ms`;
      if (us < 60e6) return `${sig(us / 1e6)} s`;
      const s = Math.floor(us / 1e6);
      if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
      return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
    },

    // epoch ms -> "12 s ago"
    ago(ms, now = Date.now()) {
      if (!ms) return '—';
      const s = Math.floor((now - ms) / 1000);
      if (s < 1) return 'just now';
      if (s < 60) return `${s} s ago`;
      if (s < 3600) return `${Math.floor(s / 60)} min ago`;
      if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
      return `${Math.floor(s / 86400)} d ago`;
    },

    // seconds -> "3d 4h", "2h 05m", "5m 03s", "12s"
    uptime(sec) {
      sec = Math.max(0, Math.floor(sec || 0));
      const d = Math.floor(sec / 86400), hr = Math.floor(sec / 3600) % 24;
      const m = Math.floor(sec / 60) % 60, s = sec % 60;
      if (d) return `${d}d ${hr}h`;
      if (hr) return `${hr}h ${pad(m)}m`;
      if (m) return `${m}m ${pad(s)}s`;
      return `${s}s`;
    },

    // "sha256:<hex>" -> first 12 hex; "inst-0123456789abcdef" -> "inst-01234567"
    shortId(id, n) {
      if (!id) return '—';
      id = String(id);
      const colon = id.indexOf(':');
      if (colon > 0 && /^[a-z0-9]+$/i.test(id.slice(0, colon))) return id.slice(colon + 1, colon + 1 + (n || 12));
      const m = /^([a-z]+-)([0-9a-z]+)$/i.exec(id);
      if (m) return m[1] + m[2].slice(0, n || 8);
      return id.length > (n || 12) ? id.slice(0, n || 12) + '…' : id;
    },

    // epoch ms -> local "14:03:27" (with ".123" when withMs)
    time(ms, withMs = false) {
      if (!ms) return '—';
      const d = new Date(ms);
      const base = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      return withMs ? `${base}.${pad(d.getMilliseconds(), 3)}` : base;
    },

    // epoch ms -> full local date and time, for titles
    dateTime(ms) {
      return ms ? new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' }) : '';
    },
  };

  /* ------------------------------------------------------------------- DOM */

  /**
   * h('tr', {class: 'x', 'data-id': id, onclick: fn, text: 'y'}, child, 'text', [more])
   * Strings become text nodes; null/false children and attributes are skipped.
   */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'class') el.className = value;
        else if (key === 'text') el.textContent = value;
        else if (key === 'dataset') Object.assign(el.dataset, value);
        else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
        else el.setAttribute(key, value === true ? '' : String(value));
      }
    }
    appendChildren(el, children);
    return el;
  }

  function appendChildren(el, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) appendChildren(el, child);
      else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  const ui = {
    // <time> that keeps saying "12 s ago" (updated by the ticker)
    ago(ms) {
      return h('time', { 'data-ago': ms, datetime: ms ? new Date(ms).toISOString() : null, title: fmt.dateTime(ms) }, fmt.ago(ms));
    },

    // <span> showing the time elapsed since ms (updated by the ticker)
    since(ms) {
      return h('span', { 'data-since': ms }, fmt.duration(Math.max(0, Date.now() - ms) * 1000));
    },

    // Small transient notice at the bottom right. kind: info | ok | error
    toast(message, kind = 'info', timeoutMs = 5000) {
      const box = document.getElementById('toasts');
      if (!box) return;
      const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
      box.append(el);
      setTimeout(() => el.remove(), timeoutMs);
    },

    // A table row spanning all columns, for empty / loading / error states.
    emptyRow(colspan, text, kind = '') {
      return h('tr', { class: `empty ${kind}`.trim() }, h('td', { colspan }, text));
    },
  };

  /* -------------------------------------------------------- shared modules */

  // The module list, shared by every panel. Changes are announced as "ui:modules".
  const moduleMap = new Map();
  let modulesLoaded = false;
  let modulesError = null;
  let moduleSeq = 0;
  let modulePending = null; // events received while a load is in flight, replayed after it

  const modules = {
    list: () => [...moduleMap.values()].sort((a, b) => a.name.localeCompare(b.name)),
    get: (name) => moduleMap.get(name),
    get loaded() { return modulesLoaded; },
    get error() { return modulesError; },
    reload: loadModules,
  };

  function applyModuleEvent(type, data) {
    if (type === 'deployed' && data && data.name) moduleMap.set(data.name, data);
    if (type === 'deleted' && data && data.name) moduleMap.delete(data.name);
  }

  async function loadModules() {
    const seq = ++moduleSeq;
    modulePending = [];
    try {
      const body = await api('/v1/modules');
      if (seq !== moduleSeq) return;
      moduleMap.clear();
      for (const m of (body && body.modules) || []) moduleMap.set(m.name, m);
      for (const [type, data] of modulePending) applyModuleEvent(type, data);
      modulesLoaded = true;
      modulesError = null;
      emit('ui:modules', { reason: 'load' });
    } catch (e) {
      if (seq !== moduleSeq) return;
      modulesError = e;
      emit('ui:modules', { reason: 'error', error: e });
    } finally {
      if (seq === moduleSeq) modulePending = null;
    }
  }

  for (const type of ['deployed', 'deleted']) {
    on(type, (data) => {
      if (modulePending) modulePending.push([type, data]);
      applyModuleEvent(type, data);
      emit('ui:modules', { reason: type, name: data && data.name });
    });
  }

  /* ---------------------------------------------------------------- header */

  let health = null;
  let healthAt = 0;
  let healthTimer = null;

  async function checkHealth() {
    try {
      health = await api('/v1/health');
      healthAt = Date.now();
    } catch { /* keep the last known values; the connection indicator says the rest */ }
    renderHeader();
  }

  // At most one health request per second, however many events arrive.
  function scheduleHealth() {
    if (healthTimer) return;
    healthTimer = setTimeout(() => { healthTimer = null; checkHealth(); }, 1000);
  }

  function renderHeader(now = Date.now()) {
    const version = document.getElementById('hdr-version');
    const uptime = document.getElementById('hdr-uptime');
    const counts = document.getElementById('hdr-counts');
    if (!health) return;
    if (version) version.textContent = health.version ? `v${health.version}` : '';
    if (uptime) uptime.textContent = `up ${fmt.uptime((health.uptime_s || 0) + (now - healthAt) / 1000)}`;
    if (counts) {
      const nMods = modulesLoaded ? moduleMap.size : health.modules;
      const nRun = health.running || 0;
      counts.textContent = `${nMods} module${nMods === 1 ? '' : 's'} · ${nRun} running`;
    }
  }

  on('ui:modules', () => renderHeader());
  for (const type of ['started', 'finished', 'deployed', 'deleted']) on(type, scheduleHealth);

  /* ---------------------------------------------------------------- ticker */

  function tick() {
    if (document.hidden) return;
    const now = Date.now();
    renderHeader(now);
    for (const el of document.querySelectorAll('[data-ago]')) {
      el.textContent = fmt.ago(Number(el.dataset.ago), now);
    }
    for (const el of document.querySelectorAll('[data-since]')) {
      el.textContent = fmt.duration(Math.max(0, now - Number(el.dataset.since)) * 1000);
    }
    emit('ui:tick', now);
  }

  /* ---------------------------------------------------------------- panels */

  const panelList = [];
  let started = false;

  function register(panel) {
    if (!panel || !panel.id || typeof panel.mount !== 'function') {
      throw new TypeError('weft.panels.register: a panel needs an id and a mount(root) function');
    }
    if (panelList.some((p) => p.id === panel.id)) throw new Error(`weft: panel "${panel.id}" is already registered`);
    panelList.push(panel);
    if (started) {
      mountPanel(panel);
      runRefresh(panel, 'mount');
    }
    return panel;
  }

  function mountPanel(panel) {
    const grid = document.getElementById('panels');
    const order = Number.isFinite(panel.order) ? panel.order : 100;
    const title = h('h2', { class: 'panel-title', id: `panel-${panel.id}-title` }, panel.title || panel.id);
    const tools = h('div', { class: 'panel-tools' });
    const body = h('div', { class: 'panel-body' });
    const section = h('section', {
      class: panel.wide ? 'panel panel-wide' : 'panel',
      id: `panel-${panel.id}`,
      'data-order': order,
      'aria-labelledby': title.id,
    }, h('header', { class: 'panel-head' }, title, tools), body);

    const next = [...grid.children].find((s) => Number(s.dataset.order) > order);
    grid.insertBefore(section, next || null);
    try {
      panel.mount(body, { section, tools, title });
    } catch (e) {
      console.error(`weft: panel "${panel.id}" failed to mount`, e);
      body.replaceChildren(h('p', { class: 'panel-error' }, `This panel failed to load: ${e.message}`));
    }
  }

  function runRefresh(panel, reason) {
    if (typeof panel.refresh !== 'function') return;
    Promise.resolve()
      .then(() => panel.refresh(reason))
      .catch((e) => console.error(`weft: panel "${panel.id}" refresh failed`, e));
  }

  // Refetch everything: on start and after every (re)connect of the event stream.
  function refreshAll(reason) {
    loadModules();
    checkHealth();
    for (const panel of panelList) runRefresh(panel, reason);
    emit('ui:refresh', { reason });
  }

  function start() {
    initAuthBanner();
    panelList.sort((a, b) => (a.order ?? 100) - (b.order ?? 100));
    for (const panel of panelList) mountPanel(panel);
    started = true;
    refreshAll('start');
    connect();
    setInterval(tick, 1000);
    setInterval(checkHealth, 15000);
    document.addEventListener('visibilitychange', tick);
  }

  // The token must be out of the URL before anything else can see it.
  takeTokenFromFragment();
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();

  return {
    api,
    url,
    ApiError,
    readError,
    token: { get: getToken, set: setToken },
    events: {
      on,
      emit,
      get state() { return connState; },
      reconnect() { retries = 0; connect(); },
    },
    panels: {
      register,
      list: () => panelList.map((p) => p.id),
    },
    modules,
    fmt,
    h,
    ui,
    refresh: () => refreshAll('manual'),
  };
})();

window.weft = weft;

/* ====================================================================== */
/* Panel: Modules                                                         */
/* ====================================================================== */

weft.panels.register({
  id: 'modules',
  title: 'Modules',
  order: 10,

  mount(root, ctx) {
    const { h, fmt, ui } = weft;
    const COLS = 5;
    const count = h('span', { class: 'panel-count' });
    ctx.tools.append(count);

    const tbody = h('tbody', { id: 'modules-body' });
    root.append(h('div', { class: 'table-wrap' },
      h('table', { class: 'table' },
        h('thead', null, h('tr', null,
          h('th', null, 'name'),
          h('th', { class: 'num' }, 'size'),
          h('th', null, 'digest'),
          h('th', null, 'deployed'),
          h('th', { class: 'actions' }, h('span', { class: 'sr-only' }, 'actions')))),
        tbody)));

    let fresh = null; // name of the module to highlight after the next render

    function row(m) {
      const digest = m.digest || '';
      const exportsList = (m.exports || []).join(', ') || '—';
      return h('tr', { 'data-module': m.name, class: m.name === fresh ? 'fresh' : null },
        h('td', { class: 'mono strong', title: `exports: ${exportsList}\nimports: ${(m.imports || []).length}` }, m.name),
        h('td', { class: 'num mono', title: `${m.size} bytes` }, fmt.bytes(m.size)),
        h('td', { class: 'mono muted', title: digest }, fmt.shortId(digest)),
        h('td', { class: 'nowrap' }, ui.ago(m.created_ms)),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'btn-link', 'data-action': 'invoke', title: `invoke ${m.name}` }, 'invoke'),
          h('button', { type: 'button', class: 'btn-link danger', 'data-action': 'delete', title: `delete ${m.name}` }, 'delete')));
    }

    function render() {
      const list = weft.modules.list();
      count.textContent = weft.modules.loaded ? String(list.length) : '';
      if (!weft.modules.loaded) {
        const err = weft.modules.error;
        tbody.replaceChildren(err
          ? ui.emptyRow(COLS, `Could not load modules: ${err.message}`, 'error')
          : ui.emptyRow(COLS, 'Loading…'));
        return;
      }
      if (!list.length) {
        tbody.replaceChildren(ui.emptyRow(COLS, 'No modules deployed yet.'));
        return;
      }
      tbody.replaceChildren(...list.map(row));
      fresh = null;
    }

    tbody.addEventListener('click', async (ev) => {
      const button = ev.target.closest('button[data-action]');
      if (!button) return;
      const name = button.closest('tr').dataset.module;
      if (button.dataset.action === 'invoke') {
        weft.events.emit('ui:select-module', name);
        return;
      }
      if (button.dataset.action === 'delete') {
        if (!confirm(`Delete module "${name}"?`)) return;
        button.disabled = true;
        try {
          await weft.api(`/v1/modules/${encodeURIComponent(name)}`, { method: 'DELETE' });
          weft.ui.toast(`Deleted ${name}`, 'ok');
          // The "deleted" event updates the list; reload in case the stream is down.
          if (weft.events.state !== 'live') weft.modules.reload();
        } catch (e) {
          weft.ui.toast(`Could not delete ${name}: ${e.message}`, 'error');
          button.disabled = false;
        }
      }
    });

    weft.events.on('ui:modules', (change) => {
      if (change && change.reason === 'deployed') fresh = change.name;
      render();
    });
    render();
  },
});

/* ====================================================================== */
/* Panel: Invoke                                                          */
/* ====================================================================== */

{
  weft.panels.register({
    id: 'invoke',
    title: 'Invoke',
    order: 20,

    mount(root, ctx) {
      const { h, fmt } = weft;
      const MAX_SHOWN = 256 * 1024; // characters of output shown before truncating

      const select = h('select', { id: 'invoke-module', name: 'module', required: true });
      const timeout = h('input', {
        id: 'invoke-timeout', name: 'timeout', type: 'text', placeholder: '30s',
        autocomplete: 'off', spellcheck: 'false', class: 'mono', title: 'e.g. 500ms, 2s, 1m',
      });
      const args = h('input', {
        id: 'invoke-args', name: 'args', type: 'text', placeholder: 'space-separated; "quotes" group words',
        autocomplete: 'off', spellcheck: 'false', class: 'mono',
      });
      const env = h('input', {
        id: 'invoke-env', name: 'env', type: 'text', placeholder: 'KEY=VALUE …',
        autocomplete: 'off', spellcheck: 'false', class: 'mono',
      });
      const input = h('textarea', {
        id: 'invoke-input', name: 'input', rows: 4, placeholder: 'input (sent as the request body / stdin)',
        spellcheck: 'false', class: 'mono',
      });
      const run = h('button', { id: 'invoke-run', type: 'submit', class: 'btn btn-primary' }, 'Run');
      const output = h('pre', { id: 'invoke-output', class: 'output', 'data-state': 'idle', 'aria-live': 'polite' });
      output.append(h('span', { class: 'muted' }, 'Pick a module and press Run (Ctrl+Enter).'));

      const field = (label, control, cls = '') =>
        h('label', { class: `field ${cls}`.trim() }, h('span', { class: 'field-label' }, label), control);

      const form = h('form', { id: 'invoke-form', class: 'form', autocomplete: 'off' },
        h('div', { class: 'form-row' }, field('module', select, 'grow'), field('timeout', timeout, 'narrow')),
        field('args', args),
        field('env', env),
        field('input', input),
        h('div', { class: 'form-actions' }, run, h('span', { class: 'hint' }, 'Ctrl+Enter to run')));
      root.append(form, output);

      /* --- module select, kept in sync with the shared list --- */

      function renderOptions() {
        const current = select.value;
        const list = weft.modules.list();
        if (!list.length) {
          select.replaceChildren(h('option', { value: '' }, weft.modules.loaded ? 'no modules' : 'loading…'));
          select.disabled = true;
        } else {
          select.replaceChildren(...list.map((m) => h('option', { value: m.name }, m.name)));
          select.disabled = false;
          if (list.some((m) => m.name === current)) select.value = current;
        }
        run.disabled = busy || !select.value;
      }

      weft.events.on('ui:modules', renderOptions);
      weft.events.on('ui:select-module', (name) => {
        renderOptions();
        if (weft.modules.get(name)) select.value = name;
        run.disabled = busy || !select.value;
        ctx.section.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
        input.focus();
      });

      /* --- running --- */

      let busy = false;

      form.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
          ev.preventDefault();
          form.requestSubmit();
        }
      });

      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const name = select.value;
        if (!name || busy) return;
        busy = true;
        run.disabled = true;
        run.textContent = 'Running…';
        output.dataset.state = 'running';
        output.replaceChildren(h('span', { class: 'muted' }, `invoking ${name}…`));

        const path = weft.url(`/v1/modules/${encodeURIComponent(name)}/invoke`, {
          timeout: timeout.value.trim(),
          args: splitWords(args.value),
          env: splitWords(env.value),
        });
        const t0 = performance.now();
        try {
          const res = await weft.api(path, {
            method: 'POST',
            headers: { 'Content-Type': 'application/octet-stream' },
            body: new TextEncoder().encode(input.value),
            raw: true,
          });
          const roundTripUs = (performance.now() - t0) * 1000;
          if (res.ok) {
            const bytes = new Uint8Array(await res.arrayBuffer());
            showResult(name, res.headers, bytes, roundTripUs);
          } else {
            showError(await weft.readError(res));
          }
        } catch (e) {
          showError(e instanceof weft.ApiError ? e : new weft.ApiError(0, 'client_error', String(e.message || e)));
        } finally {
          busy = false;
          run.textContent = 'Run';
          run.disabled = !select.value;
        }
      });

      /* --- rendering the result --- */

      const kv = (key, value, cls) => [
        h('span', { class: 'k' }, key.padEnd(11)),
        h('span', { class: cls ? `v ${cls}` : 'v' }, value),
        '\n',
      ];

      function showResult(name, headers, bytes, roundTripUs) {
        const exitHeader = headers.get('x-weft-exit-code');
        const exit = exitHeader === null ? null : Number(exitHeader);
        const durHeader = headers.get('x-weft-duration-us');
        const instance = headers.get('x-weft-instance') || '—';
        const parts = [
          kv('module', name),
          kv('exit code', exitHeader === null ? '—' : String(exit), exit === 0 ? 'ok' : 'warn'),
          kv('duration', `${durHeader === null ? '—' : fmt.duration(Number(durHeader))}  (round trip ${fmt.duration(roundTripUs)})`),
          kv('instance', instance),
          kv('output', `${fmt.bytes(bytes.length)}${bytes.length >= 1024 ? ` (${bytes.length} bytes)` : ''}`),
        ];
        const body = decodeOutput(bytes);
        if (body.text !== undefined && body.text !== '') {
          const text = body.text.length > MAX_SHOWN ? body.text.slice(0, MAX_SHOWN) : body.text;
          parts.push(h('span', { class: 'sep' }, '── output ──\n'), h('span', { class: 'out' }, text));
          if (text.length < body.text.length) {
            parts.push(h('span', { class: 'muted' }, `\n… truncated, ${body.text.length - text.length} more characters`));
          }
        } else if (body.binary) {
          parts.push(h('span', { class: 'sep' }, '── binary output (hex, first 256 bytes) ──\n'),
            h('span', { class: 'out' }, hexdump(bytes.subarray(0, 256))));
        } else {
          parts.push(h('span', { class: 'muted' }, '(no output)'));
        }
        output.dataset.state = exit === 0 ? 'ok' : 'warn';
        output.replaceChildren(...parts.flat());
      }

      function showError(err) {
        const d = err.details || {};
        const parts = [
          kv('error', err.code || 'error', 'fail'),
          kv('message', err.message || ''),
        ];
        if (err.status) parts.push(kv('http', String(err.status)));
        // Any further scalar fields the server attached (instance, module, ...).
        for (const [key, value] of Object.entries(d)) {
          if (['code', 'message', 'stderr'].includes(key)) continue;
          if (value === null || typeof value === 'object') continue;
          parts.push(kv(key, String(value)));
        }
        if (typeof d.stderr === 'string' && d.stderr !== '') {
          parts.push(h('span', { class: 'sep' }, '── stderr ──\n'), h('span', { class: 'out' }, d.stderr));
        }
        output.dataset.state = 'error';
        output.replaceChildren(...parts.flat());
      }

      renderOptions();
    },
  });

  // Split "a 'b c' \"d e\"" into ["a", "b c", "d e"]: whitespace separates, quotes group, backslash escapes.
  function splitWords(text) {
    const words = [];
    let cur = '', quote = null, inWord = false;
    for (let i = 0; i < text.length; i += 1) {
      const c = text[i];
      if (quote) {
        if (c === quote) quote = null;
        else if (c === '\\' && quote === '"' && i + 1 < text.length) cur += text[++i];
        else cur += c;
      } else if (c === '"' || c === "'") {
        quote = c;
        inWord = true;
      } else if (c === '\\' && i + 1 < text.length) {
        cur += text[++i];
        inWord = true;
      } else if (/\s/.test(c)) {
        if (inWord) words.push(cur);
        cur = '';
        inWord = false;
      } else {
        cur += c;
        inWord = true;
      }
    }
    if (inWord) words.push(cur);
    return words;
  }

  // UTF-8 text unless it does not decode or contains control characters (tab, newlines, CR, FF, ESC allowed).
  function decodeOutput(bytes) {
    if (!bytes.length) return { text: '' };
    try {
      const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      if (!/[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]/.test(text)) return { text };
    } catch { /* not UTF-8 */ }
    return { binary: true };
  }

  function hexdump(bytes) {
    const lines = [];
    for (let off = 0; off < bytes.length; off += 16) {
      const chunk = bytes.subarray(off, off + 16);
      const hex = [...chunk].map((b) => b.toString(16).padStart(2, '0')).join(' ');
      const ascii = [...chunk].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
      lines.push(`${off.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
    }
    return lines.join('\n');
  }
}

/* ====================================================================== */
/* Panel: Invocations                                                     */
/* ====================================================================== */

weft.panels.register({
  id: 'invocations',
  title: 'Invocations',
  order: 30,

  mount(root, ctx) {
    const { h, fmt, ui } = weft;
    const MAX = 200;
    const COLS = 6;
    const runningCount = h('span', { class: 'panel-count' });
    ctx.tools.append(runningCount);

    const tbody = h('tbody', { id: 'invocations-body' });
    root.append(h('div', { class: 'table-wrap scroll' },
      h('table', { class: 'table' },
        h('thead', null, h('tr', null,
          h('th', null, 'time'),
          h('th', null, 'module'),
          h('th', null, 'instance'),
          h('th', { class: 'num' }, 'duration'),
          h('th', { class: 'num' }, 'in / out'),
          h('th', null, 'status'))),
        tbody)));

    const rows = new Map(); // instance id -> <tr>
    let loadSeq = 0;
    let pending = null;     // events seen while /v1/instances is loading
    let loaded = false;

    function status(inv, running) {
      if (running) return h('span', { class: 'badge badge-running' }, 'running');
      if (inv.status === 'ok') {
        const exit = inv.exit_code;
        return h('span', { class: `badge ${exit === 0 ? 'badge-ok' : 'badge-warn'}`, title: `exit code ${exit}` },
          `ok · exit ${exit === null || exit === undefined ? '?' : exit}`);
      }
      return h('span', { class: 'badge badge-fail', title: inv.reason || inv.code || 'failed' }, inv.code || inv.status || 'failed');
    }

    function row(inv, running, isFresh) {
      return h('tr', {
        'data-instance': inv.instance,
        'data-module': inv.module,
        'data-status': running ? 'running' : inv.status,
        class: isFresh ? 'fresh' : null,
      },
      h('td', { class: 'mono nowrap muted', title: fmt.dateTime(inv.started_ms) }, fmt.time(inv.started_ms)),
      h('td', { class: 'mono' }, inv.module),
      h('td', { class: 'mono muted', title: inv.instance }, fmt.shortId(inv.instance)),
      h('td', { class: 'num mono nowrap' }, running ? ui.since(inv.started_ms) : fmt.duration(inv.duration_us)),
      h('td', { class: 'num mono nowrap muted' },
        running ? '' : `${fmt.bytes(inv.input_bytes)} / ${fmt.bytes(inv.output_bytes)}`),
      h('td', { class: 'nowrap' }, status(inv, running)));
    }

    function updateChrome() {
      const n = tbody.querySelectorAll(':scope > tr[data-status="running"]').length;
      runningCount.textContent = n ? `${n} running` : '';
      const empty = tbody.querySelector(':scope > tr.empty');
      if (rows.size && empty) empty.remove();
      if (!rows.size && !empty && loaded) tbody.append(ui.emptyRow(COLS, 'No invocations yet.'));
    }

    function removeRow(id) {
      const tr = rows.get(id);
      if (tr) tr.remove();
      rows.delete(id);
    }

    function addRunning(r, isFresh) {
      if (!r || !r.instance || rows.has(r.instance)) return;
      const tr = row(r, true, isFresh);
      rows.set(r.instance, tr);
      tbody.prepend(tr);
    }

    function addFinished(inv, isFresh) {
      if (!inv || !inv.instance) return;
      const existing = rows.get(inv.instance);
      if (existing && existing.dataset.status !== 'running') return; // already shown
      removeRow(inv.instance);
      const tr = row(inv, false, isFresh);
      rows.set(inv.instance, tr);
      // Finished rows go right below the running ones, newest first.
      tbody.insertBefore(tr, tbody.querySelector(':scope > tr[data-instance]:not([data-status="running"])'));
      while (rows.size > MAX) {
        const last = tbody.lastElementChild;
        if (!last || !last.dataset.instance || last.dataset.status === 'running') break;
        removeRow(last.dataset.instance);
      }
    }

    function apply(type, data, isFresh) {
      if (type === 'started') addRunning(data, isFresh);
      else if (type === 'finished') addFinished(data, isFresh);
      updateChrome();
    }

    for (const type of ['started', 'finished']) {
      weft.events.on(type, (data) => {
        if (pending) pending.push([type, data]);
        apply(type, data, true);
      });
    }

    this.refresh = async () => {
      const seq = ++loadSeq;
      pending = [];
      try {
        const body = await weft.api('/v1/instances');
        if (seq !== loadSeq) return;
        loaded = true;
        rows.clear();
        tbody.replaceChildren();
        const recent = (body.recent || []).slice(0, MAX);
        for (let i = recent.length - 1; i >= 0; i -= 1) addFinished(recent[i], false);
        const running = [...(body.running || [])].sort((a, b) => (a.started_ms || 0) - (b.started_ms || 0));
        for (const r of running) addRunning(r, false);
        for (const [type, data] of pending) apply(type, data, false);
        updateChrome();
      } catch (e) {
        if (seq !== loadSeq) return;
        if (!loaded) tbody.replaceChildren(ui.emptyRow(COLS, `Could not load invocations: ${e.message}`, 'error'));
      } finally {
        if (seq === loadSeq) pending = null;
      }
    };

    tbody.append(ui.emptyRow(COLS, 'Loading…'));
  },
});

/* ====================================================================== */
/* Panel: Logs                                                            */
/* ====================================================================== */

weft.panels.register({
  id: 'logs',
  title: 'Logs',
  order: 40,

  mount(root, ctx) {
    const { h, fmt } = weft;
    const MAX = 500;
    const FETCH_LIMIT = 200;
    const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);

    const filter = h('select', { id: 'logs-module', class: 'select-small', 'aria-label': 'filter logs by module' });
    const clear = h('button', { type: 'button', class: 'btn btn-small', id: 'logs-clear', title: 'clear the view' }, 'clear');
    ctx.tools.append(filter, clear);

    const body = h('div', { id: 'logs-body', class: 'logs mono', role: 'log', tabindex: 0 });
    const jump = h('button', { type: 'button', class: 'logs-jump', hidden: true }, 'new lines ↓');
    root.append(h('div', { class: 'logs-wrap' }, body, jump));

    let follow = true;     // stick to the bottom unless the user scrolled up
    let queue = [];        // lines waiting for the next animation frame
    let frame = 0;
    let loadSeq = 0;
    let pending = null;    // live lines that arrived while a fetch was in flight

    const key = (l) => `${l.time_ms}\u0000${l.instance}\u0000${l.stream}\u0000${l.message}`;
    const matches = (l) => !filter.value || l.module === filter.value;

    function line(l) {
      const label = l.stream === 'stderr' ? 'stderr' : (l.level || l.stream || '');
      const cls = l.stream === 'stderr' ? 'stderr' : (LEVELS.has(l.level) ? l.level : 'other');
      return h('div', {
        class: `log-line lvl-${cls}`,
        'data-module': l.module,
        'data-instance': l.instance,
      },
      h('span', { class: 'log-time', title: fmt.dateTime(l.time_ms) }, fmt.time(l.time_ms, true)),
      h('span', { class: 'log-module', title: l.module }, l.module),
      h('span', { class: 'log-inst', title: l.instance }, fmt.shortId(l.instance)),
      h('span', { class: 'log-level' }, label),
      h('span', { class: 'log-msg' }, l.message));
    }

    const atBottom = () => body.scrollHeight - body.scrollTop - body.clientHeight < 24;

    function scrollToEnd() {
      body.scrollTop = body.scrollHeight;
      follow = true;
      jump.hidden = true;
    }

    function flush() {
      frame = 0;
      if (!queue.length) return;
      const stick = follow;
      body.append(...queue.map(line));
      queue = [];
      while (body.childElementCount > MAX) body.firstElementChild.remove();
      if (stick) scrollToEnd();
      else jump.hidden = false;
    }

    function push(l) {
      queue.push(l);
      if (queue.length > MAX) queue.splice(0, queue.length - MAX);
      if (!frame) frame = requestAnimationFrame(flush);
    }

    body.addEventListener('scroll', () => {
      follow = atBottom();
      if (follow) jump.hidden = true;
    });
    jump.addEventListener('click', scrollToEnd);
    clear.addEventListener('click', () => {
      queue = [];
      body.replaceChildren();
      scrollToEnd();
    });

    weft.events.on('log', (l) => {
      if (!l || !matches(l)) return;
      if (pending) pending.push(l);
      else push(l);
    });

    function renderOptions() {
      const current = filter.value;
      const names = weft.modules.list().map((m) => m.name);
      if (current && !names.includes(current)) names.push(current); // keep a deleted module's filter
      filter.replaceChildren(h('option', { value: '' }, 'all modules'),
        ...names.sort().map((n) => h('option', { value: n }, n)));
      filter.value = current;
    }

    weft.events.on('ui:modules', renderOptions);
    filter.addEventListener('change', () => load());

    async function load() {
      const seq = ++loadSeq;
      pending = [];
      try {
        const data = await weft.api(weft.url('/v1/logs', { module: filter.value, limit: FETCH_LIMIT }));
        if (seq !== loadSeq) return;
        const lines = (data && data.lines) || [];
        const seen = new Set(lines.map(key));
        const extra = pending.filter((l) => matches(l) && !seen.has(key(l)));
        if (frame) cancelAnimationFrame(frame);
        frame = 0;
        queue = [];
        body.replaceChildren();
        follow = true;
        for (const l of lines.concat(extra)) queue.push(l);
        flush();
        scrollToEnd();
      } catch (e) {
        if (seq !== loadSeq) return;
        if (e.status !== 401) weft.ui.toast(`Could not load logs: ${e.message}`, 'error');
        for (const l of pending) push(l);
      } finally {
        if (seq === loadSeq) pending = null;
      }
    }

    this.refresh = load;
    renderOptions();
  },
});

/* ------------------------------------------------------------ services */
// Long-running, supervised instances (GET /v1/services): state, restarts,
// how the last run ended, and a stop action. Refreshed on instance events.
weft.panels.register({
  id: 'services',
  title: 'Services',
  order: 35,

  mount(root, ctx) {
    const { h, fmt, ui } = weft;
    const COLS = 7;
    const count = h('span', { class: 'panel-count' });
    ctx.tools.append(count);
    const tbody = h('tbody', { id: 'services-body' });
    root.append(h('div', { class: 'table-wrap' },
      h('table', { class: 'table' },
        h('thead', null, h('tr', null,
          h('th', null, 'id'),
          h('th', null, 'module'),
          h('th', null, 'state'),
          h('th', { class: 'num' }, 'restarts'),
          h('th', null, 'started'),
          h('th', null, 'last exit'),
          h('th', { class: 'actions' }, h('span', { class: 'sr-only' }, 'actions')))),
        tbody)));

    const BADGE = { running: 'badge-running', restarting: 'badge-warn', stopped: 'badge-ok', failed: 'badge-fail' };

    function row(s) {
      return h('tr', { 'data-service': s.id, 'data-state': s.state },
        h('td', { class: 'mono', title: s.id }, fmt.shortId(s.id)),
        h('td', { class: 'mono strong', title: (s.args || []).join(' ') }, s.module),
        h('td', null, h('span', { class: `badge ${BADGE[s.state] || ''}`, title: `restart: ${s.restart}` }, s.state)),
        h('td', { class: 'num mono' }, String(s.restarts)),
        h('td', { class: 'nowrap' }, s.started_ms ? ui.ago(s.started_ms) : '—'),
        h('td', { class: 'muted' }, s.last_exit || '—'),
        h('td', { class: 'actions' },
          h('button', { type: 'button', class: 'btn-link danger', 'data-action': 'stop', title: `stop ${s.id}` }, 'stop')));
    }

    let pending = null;
    async function refresh() {
      try {
        const body = await weft.api('/v1/services');
        const list = body.services || [];
        count.textContent = String(list.length);
        tbody.replaceChildren(...(list.length
          ? list.map(row)
          : [ui.emptyRow(COLS, 'No services. Start one with `weft service start MODULE`.')]));
      } catch (e) {
        tbody.replaceChildren(ui.emptyRow(COLS, `Could not load services: ${e.message}`, 'error'));
      }
    }
    function soon() {
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh(); }, 250);
    }

    tbody.addEventListener('click', async (ev) => {
      const button = ev.target.closest('button[data-action="stop"]');
      if (!button) return;
      const id = button.closest('tr').dataset.service;
      if (!confirm(`Stop service ${id}?`)) return;
      button.disabled = true;
      try {
        await weft.api(`/v1/services/${encodeURIComponent(id)}`, { method: 'DELETE' });
        weft.ui.toast(`Stopped ${fmt.shortId(id)}`, 'ok');
      } catch (e) {
        weft.ui.toast(`Could not stop ${id}: ${e.message}`, 'error');
      }
      refresh();
    });

    weft.events.on('started', soon);
    weft.events.on('finished', soon);
    setInterval(refresh, 5000);
    this.refresh = refresh;
  },
});

/* ------------------------------------------------------------- network */
// The virtual network's topology: each subnet with its gateway and port
// forwards, its interface records, which instance holds each, and live
// counters. Polled every 2 s.
weft.panels.register({
  id: 'network',
  title: 'Network',
  order: 37,

  mount(root, ctx) {
    const { h, fmt } = weft;
    const count = h('span', { class: 'panel-count' });
    ctx.tools.append(count);
    const body = h('div', { id: 'network-body' });
    root.append(body);

    function nicRow(n) {
      const c = n.counters || {};
      const holder = n.attachment ? fmt.shortId(n.attachment.instance) : '—';
      return h('tr', { 'data-nic': n.id, 'data-status': n.status },
        h('td', { class: 'mono', title: n.id }, fmt.shortId(n.id)),
        h('td', { class: 'mono strong' }, n.ip),
        h('td', null, h('span', { class: `badge ${n.status === 'in-use' ? 'badge-running' : ''}` }, n.status)),
        h('td', { class: 'mono', title: n.attachment ? n.attachment.instance : '' }, holder),
        h('td', { class: 'num mono', title: `${c.rx_packets || 0} packets` }, fmt.bytes(c.rx_bytes || 0)),
        h('td', { class: 'num mono', title: `${c.tx_packets || 0} packets` }, fmt.bytes(c.tx_bytes || 0)),
        h('td', { class: 'num mono', title: JSON.stringify(c.drops || {}) }, String(c.dropped || 0)));
    }

    // Whether dotted-quad `ip` is inside `cidr` (a.b.c.d/n).
    function inCidr(ip, cidr) {
      const toInt = (text) => text.split('.').reduce((acc, part) => (acc * 256) + Number(part), 0);
      const [base, bits] = cidr.split('/');
      const size = 2 ** (32 - Number(bits));
      return Math.floor(toInt(ip) / size) === Math.floor(toInt(base) / size);
    }

    function gatewayLine(g) {
      const c = g.counters || {};
      const parts = [`NAT ${g.nat ? 'on' : 'off'}`];
      if (g.tun) parts.push(`TUN ${g.tun} (in ${c.tun_in || 0}, out ${c.tun_out || 0})`);
      if (g.nat) {
        const refused = (c.nat_denied || 0) + (c.nat_limited || 0);
        const idle = c.nat_idle ? `, ${c.nat_idle} closed idle` : '';
        parts.push(`${(c.nat_tcp || 0) + (c.nat_udp || 0)} NAT flows, ${refused} refused${idle}`);
      }
      return h('p', { class: 'gateway-line', 'data-gateway': g.id },
        h('span', { class: `badge ${g.status === 'up' ? 'badge-ok' : 'badge-fail'}`, title: g.status }, g.status === 'up' ? 'gateway' : 'gateway down'),
        ' ', h('span', { class: 'mono', title: g.id }, fmt.shortId(g.id)), '  ', parts.join(' · '));
    }

    function forwardRow(f) {
      const c = f.counters || {};
      const url = `http://${f.listen}/`;
      const listen = f.proto === 'tcp'
        ? h('a', { href: url, target: '_blank', rel: 'noopener', class: 'mono' }, url)
        : h('span', { class: 'mono' }, `udp ${f.listen}`);
      return h('tr', { 'data-forward': f.id },
        h('td', null, listen),
        h('td', { class: 'mono strong' }, f.to),
        h('td', { class: 'num mono' }, String(c.connections || 0)),
        h('td', { class: 'num mono' }, String(c.active || 0)),
        h('td', { class: 'num mono', title: `${c.limited || 0} of them from a client holding its share` }, String(c.refused || 0)),
        h('td', { class: 'num mono', title: 'closed after carrying nothing for the idle limit' }, String(c.idle || 0)),
        h('td', { class: 'num mono' }, fmt.bytes(c.bytes_in || 0)),
        h('td', { class: 'num mono' }, fmt.bytes(c.bytes_out || 0)),
        h('td', { title: f.status }, f.status));
    }

    function forwardsTable(forwards) {
      return h('div', { class: 'table-wrap' }, h('table', { class: 'table forwards' },
        h('thead', null, h('tr', null,
          h('th', null, 'forward'), h('th', null, 'to'), h('th', { class: 'num' }, 'conns'), h('th', { class: 'num' }, 'active'),
          h('th', { class: 'num' }, 'refused'), h('th', { class: 'num' }, 'idle'), h('th', { class: 'num' }, 'in'), h('th', { class: 'num' }, 'out'), h('th', null, 'status'))),
        h('tbody', null, ...forwards.map(forwardRow))));
    }

    async function refresh() {
      try {
        const [subnets, nics, gateways, forwards] = await Promise.all([
          weft.api('/v1/subnets'), weft.api('/v1/nics'), weft.api('/v1/gateways'), weft.api('/v1/forwards')]);
        const list = subnets.subnets || [];
        count.textContent = `${list.length} subnets · ${(nics.nics || []).length} records`;
        if (!list.length) {
          body.replaceChildren(h('p', { class: 'muted' }, 'No subnets. Create one with `weft subnet create 10.0.1.0/24`.'));
          return;
        }
        body.replaceChildren(...list.map((s) => {
          const members = (nics.nics || []).filter((n) => n.subnet === s.id);
          const gateway = (gateways.gateways || []).find((g) => g.subnet === s.id);
          const carried = (forwards.forwards || []).filter((f) => inCidr(f.to.split(':')[0], s.cidr));
          return h('div', { class: 'subnet', 'data-subnet': s.id },
            h('h3', { class: 'subnet-title mono' }, `${s.cidr}`, h('span', { class: 'muted' }, `  gateway ${s.gateway}  ${s.name || ''}`)),
            gateway ? gatewayLine(gateway) : h('p', { class: 'muted' }, 'No gateway: `weft gateway create --subnet ' + s.id + '` joins it to the host.'),
            carried.length ? forwardsTable(carried) : null,
            h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
              h('thead', null, h('tr', null,
                h('th', null, 'record'), h('th', null, 'ip'), h('th', null, 'status'), h('th', null, 'held by'),
                h('th', { class: 'num' }, 'rx'), h('th', { class: 'num' }, 'tx'), h('th', { class: 'num' }, 'drops'))),
              h('tbody', null, ...(members.length ? members.map(nicRow) : [weft.ui.emptyRow(7, 'No records.')])))));
        }));
      } catch (e) {
        body.replaceChildren(h('p', { class: 'panel-error' }, `Could not load the network: ${e.message}`));
      }
    }

    setInterval(refresh, 2000);
    this.refresh = refresh;
  },
});

/* -------------------------------------------------------------- chains */
// Chains (GET /v1/chains) and their recent runs (GET /v1/chain-runs) with
// per-step timings: one bar per step, its width the step's share of the
// run. Refreshed after instance events and every 5 s.
weft.panels.register({
  id: 'chains',
  title: 'Chains',
  order: 36,
  wide: true,

  mount(root, ctx) {
    const { h, fmt, ui } = weft;
    const count = h('span', { class: 'panel-count' });
    ctx.tools.append(count);
    const defs = h('div', { id: 'chains-defs', class: 'chain-defs' });
    const tbody = h('tbody', { id: 'chain-runs-body' });
    root.append(defs, h('div', { class: 'table-wrap' },
      h('table', { class: 'table' },
        h('thead', null, h('tr', null,
          h('th', null, 'chain'),
          h('th', null, 'started'),
          h('th', { class: 'num' }, 'total'),
          h('th', null, 'status'),
          h('th', null, 'steps'))),
        tbody)));

    function stepBar(step, total, failedAt) {
      const share = total > 0 ? Math.max(2, Math.round((100 * step.duration_us) / total)) : 0;
      const failed = failedAt === step.index;
      return h('span', {
        class: `chain-step${failed ? ' chain-step-failed' : ''}${step.warm ? ' chain-step-warm' : ''}`,
        style: `flex-grow: ${share}`,
        'data-step': step.index,
        title: `step ${step.index}: ${step.module} · ${fmt.duration(step.duration_us)} · in ${fmt.bytes(step.input_bytes)}${step.input_moved ? ` (${fmt.bytes(step.input_moved)} moved)` : ''} · out ${fmt.bytes(step.output_bytes)}${step.warm ? ' · warm' : ''} · ${step.status}`,
      }, `${step.module} ${fmt.duration(step.duration_us)}`);
    }

    function runRow(run) {
      const failedAt = run.failed_step === null || run.failed_step === undefined ? -1 : run.failed_step;
      const status = run.status === 'ok'
        ? h('span', { class: 'badge badge-ok' }, 'ok')
        : h('span', { class: 'badge badge-fail', title: run.reason || '' }, `step ${failedAt} failed`);
      return h('tr', { 'data-chain-run': run.chain || '(ad hoc)' },
        h('td', { class: 'mono strong' }, run.chain || '(ad hoc)'),
        h('td', { class: 'nowrap' }, ui.ago(run.started_ms)),
        h('td', { class: 'num mono' }, fmt.duration(run.duration_us)),
        h('td', null, status),
        h('td', null, h('div', { class: 'chain-steps' }, ...(run.steps || []).map((s) => stepBar(s, run.duration_us, failedAt)))));
    }

    function defLine(chain) {
      const steps = (chain.steps || []).map((s) => (s.args && s.args.length ? `${s.module}:${s.args.join(',')}` : s.module));
      return h('p', { class: 'chain-def', 'data-chain': chain.name },
        h('span', { class: 'mono strong' }, chain.name), '  ', h('span', { class: 'mono muted' }, steps.join(' → ')));
    }

    async function refresh() {
      try {
        const [chains, runs] = await Promise.all([weft.api('/v1/chains'), weft.api('/v1/chain-runs?limit=20')]);
        const list = chains.chains || [];
        const recent = runs.runs || [];
        count.textContent = `${list.length} chains · ${recent.length} recent runs`;
        defs.replaceChildren(...(list.length
          ? list.map(defLine)
          : [h('p', { class: 'muted' }, 'No chains. Define one with `weft chain create NAME MOD1 MOD2 …`.')]));
        tbody.replaceChildren(...(recent.length ? recent.map(runRow) : [ui.emptyRow(5, 'No runs yet.')]));
      } catch (e) {
        tbody.replaceChildren(ui.emptyRow(5, `Could not load chains: ${e.message}`, 'error'));
      }
    }

    let pending = null;
    function soon() {
      if (pending) return;
      pending = setTimeout(() => { pending = null; refresh(); }, 300);
    }
    weft.events.on('finished', soon);
    setInterval(refresh, 5000);
    this.refresh = refresh;
  },
});

/* -------------------------------------------------------------- meshes */
// Mesh jobs (GET /v1/meshes): each mesh with its parent, subnet and how it
// ended; its ranks with their state, counters and mailbox depth; and the
// traffic between ranks as a matrix of bytes (the parent last). A running
// mesh can be stopped. Polled every 2 s.
weft.panels.register({
  id: 'meshes',
  title: 'Meshes',
  order: 38,
  wide: true,

  mount(root, ctx) {
    const { h, fmt, ui } = weft;
    const count = h('span', { class: 'panel-count' });
    ctx.tools.append(count);
    const body = h('div', { id: 'meshes-body' });
    root.append(body);

    const BADGE = { running: 'badge-running', exited: 'badge-ok', stopped: 'badge-warn', failed: 'badge-fail', starting: '' };

    function rankState(r) {
      const detail = r.state === 'exited' ? `exit ${r.exit_code}`
        : r.state === 'failed' ? r.reason
          : r.state === 'stopped' ? `stopped ${fmt.duration(r.stop_latency_us)} after the stop` : r.state;
      return h('span', { class: `badge ${BADGE[r.state] || ''}`, title: detail }, r.state === 'exited' ? `exit ${r.exit_code}` : r.state);
    }

    function rankRow(r) {
      return h('tr', { 'data-rank': String(r.rank), 'data-state': r.state },
        h('td', { class: 'num mono strong' }, String(r.rank)),
        h('td', { class: 'mono' }, r.module),
        h('td', { class: 'mono', title: r.instance }, fmt.shortId(r.instance)),
        h('td', null, rankState(r)),
        h('td', { class: 'mono' }, r.addr || '—'),
        h('td', { class: 'num mono', title: `${r.sent_messages} messages` }, fmt.bytes(r.sent_bytes)),
        h('td', { class: 'num mono', title: `${r.received_messages} messages` }, fmt.bytes(r.received_bytes)),
        h('td', { class: 'num mono', title: `most held: ${r.mailbox_high_water} of ${r.mailbox_bound}` },
          `${r.queued_messages}/${r.mailbox_bound}`));
    }

    // Bytes between ranks: row = sender, column = receiver; P = the parent.
    function trafficTable(m) {
      const n = m.traffic.length;
      const label = (i) => (i === n - 1 ? 'P' : String(i));
      const max = Math.max(1, ...m.traffic.flat());
      return h('div', { class: 'table-wrap' }, h('table', { class: 'table mesh-traffic', 'aria-label': 'bytes from rank (row) to rank (column)' },
        h('thead', null, h('tr', null, h('th', null, 'from \\ to'), ...m.traffic.map((_, i) => h('th', { class: 'num' }, label(i))))),
        h('tbody', null, ...m.traffic.map((row, i) => h('tr', null,
          h('th', { class: 'num' }, label(i)),
          ...row.map((bytes) => h('td', {
            class: 'num mono mesh-cell',
            style: `--heat:${(bytes / max).toFixed(3)}`,
            title: `${label(i)} → ${bytes} bytes`,
          }, bytes ? fmt.bytes(bytes) : '·')))))));
    }

    function meshBlock(m) {
      const report = m.report;
      const state = m.state === 'running'
        ? h('span', { class: 'badge badge-running' }, 'running')
        : h('span', { class: `badge ${report && report.status === 'ok' ? 'badge-ok' : report && report.status === 'stopped' ? 'badge-warn' : 'badge-fail'}`, title: (report && report.reason) || '' },
          report ? `${report.status} (exit ${report.exit_code})` : 'ended');
      const subnet = m.subnet ? `subnet ${m.subnet.cidr}` : 'no subnet';
      return h('div', { class: 'mesh', 'data-mesh': m.id, 'data-state': m.state },
        h('h3', { class: 'mesh-title' },
          h('span', { class: 'mono strong', title: m.id }, m.id), '  ', state,
          h('span', { class: 'muted' }, `  ${m.size} ranks${m.initial_size != null && m.size > m.initial_size ? ` (${m.size - m.initial_size} joined)` : ''}${m.live != null ? ` · ${m.live} live` : ''} · parent ${m.parent} · on failure ${m.on_failure} · ${subnet} · ${ui.ago(m.created_ms)}`),
          m.state === 'running'
            ? h('button', { type: 'button', class: 'btn-link danger', 'data-action': 'stop-mesh', title: `stop ${m.id}` }, 'stop')
            : null),
        report && report.reason ? h('p', { class: 'muted mesh-reason' }, report.reason) : null,
        h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
          h('thead', null, h('tr', null,
            h('th', { class: 'num' }, 'rank'), h('th', null, 'module'), h('th', null, 'instance'), h('th', null, 'state'),
            h('th', null, 'address'), h('th', { class: 'num' }, 'sent'), h('th', { class: 'num' }, 'received'),
            h('th', { class: 'num' }, 'mailbox'))),
          h('tbody', null, ...m.ranks.map(rankRow)))),
        m.traffic && m.traffic.length <= 17 ? trafficTable(m) : null);
    }

    async function refresh() {
      try {
        const list = (await weft.api('/v1/meshes')).meshes || [];
        const running = list.filter((m) => m.state === 'running').length;
        count.textContent = `${running} running · ${list.length - running} ended`;
        body.replaceChildren(...(list.length
          ? list.slice(0, 8).map(meshBlock)
          : [h('p', { class: 'muted' }, 'No meshes. Run one with `weft mesh run --server URL FILE.wasm --ranks 4`.')]));
      } catch (e) {
        body.replaceChildren(h('p', { class: 'panel-error' }, `Could not load meshes: ${e.message}`));
      }
    }

    body.addEventListener('click', async (ev) => {
      const button = ev.target.closest('button[data-action="stop-mesh"]');
      if (!button) return;
      const id = button.closest('[data-mesh]').dataset.mesh;
      if (!confirm(`Stop mesh ${id}? Every rank ends.`)) return;
      button.disabled = true;
      try {
        await weft.api(`/v1/meshes/${encodeURIComponent(id)}`, { method: 'DELETE' });
        ui.toast(`Stopped ${id}`, 'ok');
      } catch (e) {
        ui.toast(`Could not stop ${id}: ${e.message}`, 'error');
      }
      refresh();
    });

    setInterval(refresh, 2000);
    this.refresh = refresh;
  },
});
