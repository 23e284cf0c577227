// SPDX-License-Identifier: BSD-2-Clause
// app.js — the dashboard's behaviour, plain JS (no framework, no build step).
//
// It is a client of the documented HTTP API only:
//   GET /api/services            the list (once, and again after a burst or a gap)
//   GET /api/services/NAME       one service, when an event names it
//   GET /api/events/stream       server-sent events: the live panel and row updates;
//                                resumes after the last seq it saw (no gap, no duplicate)
//   GET /api/stats               the header (version, uptime, node, self-preservation)
//
// Staying fast with 10,000 services: the list is held in a Map; filtering and sorting
// make an array of names; only the rows in view (plus a margin) are in the DOM
// (virtualised, rows of one fixed height). An event marks its service dirty; dirty
// services are refetched one by one a few at a time (or, after a burst, the whole list
// once), and a refetched service repaints its one row if it is in view.
'use strict';

(function () {
  const OVERSCAN = 12;           // rows rendered above and below the visible ones
  const BURST = 64;              // more dirty services than this: refetch the whole list
  const FETCH_PARALLEL = 4;      // per-service refetches in flight at most
  const FLUSH_MS = 60;           // dirty services wait this long, so a burst coalesces
  const FULL_GAP_MS = 2000;      // whole-list refetches at most this often: with 10,000
                                 // services one costs the daemon a few hundred ms
  const EVENTS_KEPT = 1000;      // events held for the panel's filter
  const EVENTS_SHOWN = 200;      // events in the panel's DOM
  const EVENTS_HISTORY = 50;     // events shown from before the page opened
  const STATS_EVERY_MS = 30000;  // the header's figures (uptime ticks locally)
  const SERVICE_PAGE_EVERY_MS = 5000; // last check / last seen of the open service page

  const $ = (id) => document.getElementById(id);
  const el = {
    version: $('h-version'), node: $('h-node'), uptime: $('h-uptime'),
    nServices: $('h-services'), nInstances: $('h-instances'),
    nodesWrap: $('h-nodes-wrap'), nodes: $('h-nodes'),
    preserve: $('banner-preserve'), disconnected: $('banner-disconnected'),
    auth: $('banner-auth'), authForm: $('auth-form'), authToken: $('auth-token'),
    error: $('banner-error'),
    pageServices: $('page-services'), pageService: $('page-service'),
    filter: $('filter'), health: $('health'), count: $('count'),
    scroll: $('svc-scroll'), table: $('svc-table'), body: $('svc-body'), empty: $('svc-empty'),
    svcTitle: $('svc-title'), svcDesc: $('svc-desc'), svcSummary: $('svc-summary'),
    instBody: $('inst-body'), instEmpty: $('inst-empty'),
    evFilter: $('ev-filter'), evList: $('ev-list'),
  };

  // --- state ---------------------------------------------------------------------------
  const services = new Map();    // name -> {name, description, instances, passing, critical,
                                 //          maintenance, tags, index, key}
  let totalInstances = 0;
  let view = [];                 // names shown, filtered and sorted
  let sortKey = 'name', sortDir = 1;
  let listIndex = 0;             // X-Consul-Index of the last full list
  let lastSeq = 0;               // the newest event seq received
  const dirty = new Set();       // services an event named, to refetch
  let flushTimer = 0, inFlight = 0, fullFetch = null, fullAgain = false;
  let fullAt = 0, fullTimer = 0;
  let rowH = 0;                  // measured row height (px)
  let renderQueued = false, viewQueued = false;
  let focusRow = -1;             // index in view of the row whose link has focus
  let route = {page: 'services'};
  let stats = null, statsAt = 0;
  let es = null, reconnectTimer = 0;
  const evs = [];                // newest last
  let evPending = [];
  let token = sessionStorage.getItem('registry-token') || '';

  // Figures the browser tests read (and a person can, in the console).
  const perf = window.registryUI = {
    listFetchMs: null, listRenderedAt: null, lastFilterMs: null, filterSeq: 0, events: 0,
    rowsInDom: 0, viewCount: 0,
  };

  // --- the API ---------------------------------------------------------------------------
  function url(path, params) {
    const q = new URLSearchParams(params || {});
    if (token) q.set('token', token);
    const s = q.toString();
    return s ? path + (path.includes('?') ? '&' : '?') + s : path;
  }

  // GET path: {status, index, body}. Throws on a network error.
  async function get(path, params) {
    const r = await fetch(url(path, params), {headers: {Accept: 'application/json'}, cache: 'no-store'});
    const index = Number(r.headers.get('X-Consul-Index')) || 0;
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (r.status === 403) needToken();
    return {status: r.status, index, body};
  }

  function needToken() {
    el.auth.hidden = false;
  }

  el.authForm.addEventListener('submit', (e) => {
    e.preventDefault();
    token = el.authToken.value;
    sessionStorage.setItem('registry-token', token);
    el.auth.hidden = true;
    start();
  });

  function showError(msg) {
    el.error.textContent = msg;
    el.error.hidden = !msg;
  }

  // --- services: the model -----------------------------------------------------------------
  function health(s) {
    if (s.passing === 0 && s.critical > 0) return 'critical';
    if (s.critical > 0) return 'degraded';
    if (s.maintenance > 0) return 'maintenance';
    return 'passing';
  }
  const HEALTH_RANK = {critical: 0, degraded: 1, maintenance: 2, passing: 3};
  const HEALTH_SYMBOL = {critical: '✕', degraded: '!', maintenance: '⏸', passing: '✓'};

  function withKey(s) {
    s.key = (s.name + ' ' + (s.tags || []).join(' ')).toLowerCase();
    s.health = health(s);
    return s;
  }

  // Puts one service (a list entry or a summary of its detail) in the model, unless what
  // we hold is newer (the X-Consul-Index of a service never goes backwards).
  function upsert(s) {
    const old = services.get(s.name);
    if (old && old.index > s.index) return false;
    totalInstances += s.instances - (old ? old.instances : 0);
    services.set(s.name, withKey(s));
    return true;
  }

  function remove(name, index) {
    const old = services.get(name);
    if (!old || old.index > index) return false;
    totalInstances -= old.instances;
    services.delete(name);
    return true;
  }

  // A service's row from its detail (/api/services/NAME), counted as /api/services does:
  // passing + critical + maintenance = instances (one in maintenance is neither of the
  // others, whatever its check says).
  function summarize(d, index) {
    let passing = 0, maint = 0;
    const tags = [];
    for (const i of d.instances) {
      if (i.status === 'maintenance') maint++;
      else if (i.status === 'passing') passing++;
      for (const t of i.tags || []) if (!tags.includes(t)) tags.push(t);
    }
    return {name: d.service, description: d.description || '', instances: d.instances.length,
            passing, critical: d.instances.length - passing - maint, maintenance: maint, tags,
            index};
  }

  async function loadList() {
    const t0 = performance.now();
    const r = await get('/api/services');
    if (r.status !== 200 || !Array.isArray(r.body)) {
      if (r.status !== 403) showError('GET /api/services answered ' + r.status);
      return false;
    }
    showError('');
    const seen = new Set();
    for (const s of r.body) {
      seen.add(s.name);
      upsert(s);
    }
    for (const [name, s] of services)
      if (!seen.has(name) && s.index <= r.index) remove(name, r.index);
    listIndex = Math.max(listIndex, r.index);
    if (perf.listFetchMs === null) perf.listFetchMs = performance.now() - t0;
    queueView();
    return true;
  }

  // Full refetches never overlap, and come at most every FULL_GAP_MS (a long burst of
  // events costs the daemon one list every 2 s, not one per flush); one asked for
  // meanwhile runs after.
  function refetchAll() {
    if (fullFetch) { fullAgain = true; return; }
    const wait = fullAt + FULL_GAP_MS - Date.now();
    if (wait > 0) {
      if (!fullTimer) fullTimer = setTimeout(() => { fullTimer = 0; refetchAll(); }, wait);
      return;
    }
    fullAt = Date.now();
    fullFetch = loadList().catch(() => {}).finally(() => {
      fullFetch = null;
      if (fullAgain) { fullAgain = false; refetchAll(); }
    });
  }

  async function refetchOne(name) {
    const r = await get('/api/services/' + encodeURIComponent(name));
    let changed = false;
    if (r.status === 200 && r.body && Array.isArray(r.body.instances)) {
      changed = upsert(summarize(r.body, r.index));
      if (route.page === 'service' && route.name === name) showService(r.body);
    } else if (r.status === 404) {
      changed = remove(name, r.index);
      if (route.page === 'service' && route.name === name) showService(null);
    }
    if (changed) touched(name);
  }

  function markDirty(name) {
    dirty.add(name);
    if (!flushTimer) flushTimer = setTimeout(flush, FLUSH_MS);
  }

  function flush() {
    flushTimer = 0;
    if (dirty.size > BURST) {          // a burst: one list beats a thousand requests
      dirty.clear();
      refetchAll();
      if (route.page === 'service') loadService(route.name);
      return;
    }
    while (inFlight < FETCH_PARALLEL && dirty.size) {
      const name = dirty.values().next().value;
      dirty.delete(name);
      inFlight++;
      refetchOne(name).catch(() => {}).finally(() => {
        inFlight--;
        if (dirty.size && !flushTimer) flushTimer = setTimeout(flush, 0);
      });
    }
  }

  // --- services: the view --------------------------------------------------------------------
  function matches(s, needle, hf) {
    if (hf === 'critical' && s.critical === 0) return false;
    if (hf === 'passing' && s.health !== 'passing') return false;
    return !needle || s.key.includes(needle);
  }

  function compare(a, b) {
    if (sortKey === 'health') {
      const d = HEALTH_RANK[a.health] - HEALTH_RANK[b.health];
      if (d) return d * sortDir;
      if (a.critical !== b.critical) return (b.critical - a.critical) * sortDir;
    }
    return (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) * (sortKey === 'name' ? sortDir : 1);
  }

  function computeView() {
    const needle = el.filter.value.trim().toLowerCase();
    const hf = el.health.value;
    const list = [];
    for (const s of services.values()) if (matches(s, needle, hf)) list.push(s);
    list.sort(compare);
    view = list.map((s) => s.name);
    perf.viewCount = view.length;
    el.table.setAttribute('aria-rowcount', String(view.length + 1));
    el.count.textContent = view.length === services.size
      ? plural(services.size, 'service')
      : view.length + ' of ' + plural(services.size, 'service');
    el.empty.hidden = view.length > 0;
    el.empty.textContent = services.size ? 'No service matches the filter.' : 'No service is registered.';
    el.nServices.textContent = services.size.toLocaleString('en-US');
    el.nInstances.textContent = totalInstances.toLocaleString('en-US');
  }

  function queueView() {
    viewQueued = true;
    queueRender();
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      if (viewQueued) { viewQueued = false; computeView(); }
      renderWindow();
      if (perf.listRenderedAt === null && listIndex > 0 && route.page === 'services') {
        perf.listRenderedAt = performance.now(); // since navigation began
        document.documentElement.dataset.ready = 'services';
      }
    });
  }

  // A service changed: its row is repainted in place when the view keeps its order;
  // otherwise (it may enter, leave or move) the view is recomputed.
  function touched(name) {
    const s = services.get(name);
    const needle = el.filter.value.trim().toLowerCase();
    const tr = el.body.querySelector('tr[data-name="' + CSS.escape(name) + '"]');
    if (s && tr && sortKey === 'name' && matches(s, needle, el.health.value)) {
      tr.replaceWith(row(s, Number(tr.getAttribute('aria-rowindex')) - 2));
      el.nInstances.textContent = totalInstances.toLocaleString('en-US');
      return;
    }
    queueView();
  }

  function plural(n, word) {
    return n.toLocaleString('en-US') + ' ' + word + (n === 1 ? '' : 's');
  }

  function td(text, cls) {
    const c = document.createElement('td');
    if (cls) c.className = cls;
    if (text !== undefined) c.textContent = text;
    return c;
  }

  function badge(h, text) {
    const b = document.createElement('span');
    b.className = 'badge b-' + h;
    b.textContent = HEALTH_SYMBOL[h] + ' ' + (text || h);
    return b;
  }

  function tagList(tags) {
    const c = td(undefined, 'c-tags');
    for (const t of tags || []) {
      const span = document.createElement('span');
      span.className = 'tag';
      span.textContent = t;
      c.appendChild(span);
    }
    c.title = (tags || []).join(', ');
    return c;
  }

  function row(s, i) {
    const tr = document.createElement('tr');
    tr.dataset.name = s.name;
    tr.setAttribute('aria-rowindex', String(i + 2));
    const name = td();
    const a = document.createElement('a');
    a.href = '#/service/' + encodeURIComponent(s.name);
    a.textContent = s.name;
    a.dataset.row = String(i);
    name.appendChild(a);
    tr.appendChild(name);
    const desc = td(s.description, 'c-desc');
    desc.title = s.description;
    tr.appendChild(desc);
    tr.appendChild(td(String(s.instances), 'num c-inst'));
    const h = td(undefined, 'health');
    h.appendChild(badge(s.health));
    tr.appendChild(h);
    tr.appendChild(td(String(s.passing), 'num'));
    tr.appendChild(td(String(s.critical), s.critical ? 'num crit' : 'num'));
    tr.appendChild(tagList(s.tags));
    return tr;
  }

  function spacer(px) {
    const tr = document.createElement('tr');
    tr.className = 'spacer';
    tr.setAttribute('aria-hidden', 'true');
    const c = document.createElement('td');
    c.colSpan = 7;
    c.style.height = px + 'px';
    tr.appendChild(c);
    return tr;
  }

  // The rows in view (and OVERSCAN around them) between two spacers.
  function renderWindow() {
    if (route.page !== 'services') return;
    const h = rowH || 36;
    const head = el.table.tHead.offsetHeight;
    const top = Math.max(0, el.scroll.scrollTop - head);
    const first = Math.max(0, Math.floor(top / h) - OVERSCAN);
    const last = Math.min(view.length, Math.ceil((top + el.scroll.clientHeight) / h) + OVERSCAN);
    const frag = document.createDocumentFragment();
    frag.appendChild(spacer(first * h));
    for (let i = first; i < last; i++) frag.appendChild(row(services.get(view[i]), i));
    frag.appendChild(spacer(Math.max(0, view.length - last) * h));
    el.body.replaceChildren(frag);
    perf.rowsInDom = last - first;
    if (!rowH && last > first) {
      const r = el.body.children[1].getBoundingClientRect().height;
      if (r > 0 && Math.abs(r - h) > 0.5) { rowH = r; renderWindow(); return; }
      if (r > 0) rowH = r;
    }
    if (focusRow >= first && focusRow < last) {
      const a = el.body.querySelector('a[data-row="' + focusRow + '"]');
      if (a && document.activeElement !== a) a.focus({preventScroll: true});
    }
  }

  el.scroll.addEventListener('scroll', queueRender, {passive: true});
  window.addEventListener('resize', queueRender);

  // Arrow keys move between rows (scrolling the list), Home/End to the ends.
  el.body.addEventListener('keydown', (e) => {
    const a = e.target.closest('a[data-row]');
    if (!a) return;
    let i = Number(a.dataset.row);
    if (e.key === 'ArrowDown') i++;
    else if (e.key === 'ArrowUp') i--;
    else if (e.key === 'Home' && e.ctrlKey) i = 0;
    else if (e.key === 'End' && e.ctrlKey) i = view.length - 1;
    else return;
    e.preventDefault();
    focusRow = Math.max(0, Math.min(view.length - 1, i));
    const h = rowH || 36, head = el.table.tHead.offsetHeight;
    const y = focusRow * h;
    if (y < el.scroll.scrollTop) el.scroll.scrollTop = y;
    else if (y + h + head > el.scroll.scrollTop + el.scroll.clientHeight)
      el.scroll.scrollTop = y + h + head - el.scroll.clientHeight;
    renderWindow();
  });
  el.body.addEventListener('focusin', (e) => {
    const a = e.target.closest('a[data-row]');
    if (a) focusRow = Number(a.dataset.row);
  });

  // The filter: immediate for a small list, debounced for a large one (typing stays
  // smooth); the time from the last keystroke to the rows painted is kept for the tests.
  let filterTimer = 0, filterAt = 0;
  function applyFilter() {
    filterTimer = 0;
    const t0 = performance.now();
    computeView();
    el.scroll.scrollTop = 0;
    focusRow = -1;
    renderWindow();
    perf.lastFilterComputeMs = performance.now() - t0;
    requestAnimationFrame(() => {
      perf.lastFilterMs = performance.now() - filterAt;
      perf.filterSeq++;
    });
  }
  function onFilter() {
    filterAt = performance.now();
    clearTimeout(filterTimer);
    filterTimer = setTimeout(applyFilter, services.size > 2000 ? 80 : 0);
  }
  el.filter.addEventListener('input', onFilter);
  el.health.addEventListener('change', onFilter);
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !/INPUT|SELECT|TEXTAREA/.test(document.activeElement.tagName)) {
      e.preventDefault();
      el.filter.focus();
    }
  });

  for (const th of el.table.tHead.querySelectorAll('th[data-sort]')) {
    th.querySelector('button').addEventListener('click', () => {
      const key = th.dataset.sort;
      sortDir = key === sortKey ? -sortDir : 1;
      sortKey = key;
      for (const o of el.table.tHead.querySelectorAll('th[data-sort]'))
        o.setAttribute('aria-sort', o === th ? (sortDir > 0 ? 'ascending' : 'descending') : 'none');
      queueView();
    });
  }

  // --- the service page --------------------------------------------------------------------
  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    const ago = Math.round((Date.now() - d.getTime()) / 1000);
    const rel = ago < 0 ? '' : ago < 60 ? ago + ' s ago' : ago < 3600 ? Math.round(ago / 60) + ' min ago'
      : ago < 86400 ? Math.round(ago / 3600) + ' h ago' : Math.round(ago / 86400) + ' d ago';
    return d.toLocaleTimeString('en-GB') + (rel ? ' (' + rel + ')' : '');
  }

  function timeCell(iso) {
    const c = td(fmtTime(iso));
    if (iso) c.title = iso;
    return c;
  }

  function showService(d) {
    if (!d) {
      el.svcDesc.textContent = '';
      el.svcSummary.textContent = 'No instance is registered under this name (deregistered, evicted or never registered).';
      el.instBody.replaceChildren();
      return;
    }
    const s = summarize(d, 0);
    el.svcDesc.textContent = d.description || '';
    el.svcSummary.replaceChildren(badge(health(s)),
      document.createTextNode(' ' + plural(s.instances, 'instance') + ': ' + s.passing + ' passing, ' +
        s.critical + ' critical' + (s.maintenance ? ', ' + s.maintenance + ' in maintenance' : '')));
    const frag = document.createDocumentFragment();
    for (const i of d.instances) {
      const tr = document.createElement('tr');
      tr.dataset.id = i.id;
      tr.appendChild(td(i.id, 'mono'));
      tr.appendChild(td((i.host.includes(':') ? '[' + i.host + ']' : i.host) + ':' + i.port, 'mono'));
      const st = td(undefined, 'status');
      const h = i.status === 'maintenance' ? 'maintenance' : i.status;
      st.appendChild(badge(h));
      tr.appendChild(st);
      tr.appendChild(td(String(i.failures), i.failures ? 'num crit' : 'num'));
      tr.appendChild(timeCell(i.last_check));
      tr.appendChild(timeCell(i.last_seen));
      tr.appendChild(timeCell(i.registered_at));
      tr.appendChild(td(i.ttl ? i.ttl + ' s' : '—', 'num'));
      tr.appendChild(tagList(i.tags));
      tr.lastChild.className = '';
      tr.appendChild(td(i.check === 'tcp' ? 'TCP' : i.ttl ? 'TTL (heartbeat)' : 'none'));
      frag.appendChild(tr);
    }
    el.instBody.replaceChildren(frag);
  }

  async function loadService(name) {
    const r = await get('/api/services/' + encodeURIComponent(name));
    if (route.page !== 'service' || route.name !== name) return;
    if (r.status === 200 && r.body) {
      showService(r.body);
      if (upsert(summarize(r.body, r.index))) touched(name);
    } else if (r.status === 404) {
      showService(null);
    }
  }

  let servicePageTimer = 0;
  function onRoute() {
    const m = /^#\/service\/(.+)$/.exec(location.hash);
    clearInterval(servicePageTimer);
    if (m) {
      let name;
      try { name = decodeURIComponent(m[1]); } catch (e) { name = m[1]; }
      route = {page: 'service', name};
      el.pageServices.hidden = true;
      el.pageService.hidden = false;
      el.svcTitle.textContent = name;
      el.svcDesc.textContent = '';
      el.svcSummary.textContent = 'Loading…';
      el.instBody.replaceChildren();
      document.title = name + ' — registry';
      el.svcTitle.focus();
      loadService(name).catch(() => {});
      servicePageTimer = setInterval(() => loadService(name).catch(() => {}), SERVICE_PAGE_EVERY_MS);
    } else {
      const back = route.page === 'service';
      route = {page: 'services'};
      el.pageService.hidden = true;
      el.pageServices.hidden = false;
      document.title = 'registry — dashboard';
      queueView();
      if (back) el.filter.focus();
    }
  }
  window.addEventListener('hashchange', onRoute);

  // --- the header ------------------------------------------------------------------------------
  async function loadStats() {
    const r = await get('/api/stats');
    if (r.status !== 200 || !r.body) return;
    stats = r.body;
    statsAt = Date.now();
    el.version.textContent = stats.version || '?';
    el.node.textContent = stats.node || '?';
    setPreserving(!!(stats.health && stats.health.preserving));
    // With a distributed backend, /api/stats lists the nodes and whether each is alive.
    if (Array.isArray(stats.nodes) && stats.nodes.length) {
      el.nodesWrap.hidden = false;
      el.nodes.textContent = stats.nodes.map((n) => typeof n === 'string' ? n
        : (n.name || n.id || '?') + (n.alive === false ? ' (down)' : ' (alive)')).join(', ');
    }
    tick();
  }

  function tick() {
    if (!stats) return;
    let s = Math.max(0, Math.floor((stats.uptime_s || 0) + (Date.now() - statsAt) / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    el.uptime.textContent = (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
  }

  function setPreserving(on) {
    el.preserve.hidden = !on;
  }

  // --- the event stream ----------------------------------------------------------------------
  // EventSource reconnects by itself and sends Last-Event-ID, from which the server
  // resumes; when it gives up (readyState CLOSED) we open a new one from our last seq.
  // Either way nothing is missed, and onEvent drops a seq it has seen already.
  function connect() {
    clearTimeout(reconnectTimer);
    if (es) es.close();
    const since = lastSeq || Math.max(0, listIndex - EVENTS_HISTORY);
    es = new EventSource(url('/api/events/stream', {since: String(since)}));
    es.onopen = () => {
      if (!el.disconnected.hidden) { el.disconnected.hidden = true; loadStats().catch(() => {}); }
      document.documentElement.dataset.stream = 'open';
    };
    es.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      onEvent(ev);
    };
    es.onerror = () => {
      el.disconnected.hidden = false;
      document.documentElement.dataset.stream = 'closed';
      if (es.readyState === EventSource.CLOSED) {
        es.close();
        reconnectTimer = setTimeout(connect, 2000);
      }
    };
  }

  function onEvent(ev) {
    if (typeof ev.seq !== 'number' || ev.seq <= lastSeq) return;
    const gap = lastSeq > 0 && ev.seq > lastSeq + 1;
    lastSeq = ev.seq;
    perf.events++;
    evs.push(ev);
    if (evs.length > EVENTS_KEPT) evs.splice(0, evs.length - EVENTS_KEPT);
    evPending.push(ev);
    if (evPending.length === 1) requestAnimationFrame(drawEvents);
    if (gap) refetchAll(); // events we will never see (trimmed history): resync the list
    if (ev.seq > listIndex && ev.service) markDirty(ev.service);
    if (ev.event === 'preserve_on') setPreserving(true);
    if (ev.event === 'preserve_off') setPreserving(false);
    if (ev.event === 'start' && ev.seq > listIndex) { loadStats().catch(() => {}); refetchAll(); }
  }

  function evMatches(ev, needle) {
    return !needle || (ev.service || '').toLowerCase().includes(needle);
  }

  function evDetail(ev) {
    const d = ev.detail;
    if (!d || typeof d !== 'object') return '';
    const parts = [];
    for (const [k, v] of Object.entries(d)) {
      if (v === null || v === '' || typeof v === 'object') continue;
      parts.push(k + ' ' + v);
    }
    const s = parts.join(', ');
    return s.length > 160 ? s.slice(0, 157) + '…' : s;
  }

  function evItem(ev) {
    const li = document.createElement('li');
    li.dataset.seq = String(ev.seq);
    li.dataset.event = ev.event;
    const t = document.createElement('time');
    t.dateTime = ev.ts || '';
    t.textContent = ev.ts ? new Date(ev.ts).toLocaleTimeString('en-GB') : '';
    li.appendChild(t);
    const b = document.createElement('span');
    b.className = 'badge e-' + ev.event;
    b.textContent = ev.event;
    li.appendChild(b);
    if (ev.service) {
      li.appendChild(document.createTextNode(' '));
      const a = document.createElement('a');
      a.href = '#/service/' + encodeURIComponent(ev.service);
      a.textContent = ev.service;
      li.appendChild(a);
    }
    if (ev.id || ev.host) {
      const span = document.createElement('span');
      span.className = 'mono';
      span.textContent = ' ' + (ev.host ? ev.host + ':' + ev.port : '') + (ev.id ? ' (' + ev.id + ')' : '');
      li.appendChild(span);
    }
    const detail = evDetail(ev);
    if (detail) {
      const dspan = document.createElement('span');
      dspan.className = 'detail';
      dspan.textContent = detail;
      li.appendChild(dspan);
    }
    return li;
  }

  // New events go on top, in one DOM change per frame however many arrived.
  function drawEvents() {
    const needle = el.evFilter.value.trim().toLowerCase();
    const frag = document.createDocumentFragment();
    const fresh = evPending.filter((ev) => evMatches(ev, needle)).slice(-EVENTS_SHOWN);
    evPending = [];
    for (let i = fresh.length - 1; i >= 0; i--) frag.appendChild(evItem(fresh[i]));
    el.evList.prepend(frag);
    while (el.evList.childElementCount > EVENTS_SHOWN) el.evList.lastElementChild.remove();
  }

  function redrawEvents() {
    const needle = el.evFilter.value.trim().toLowerCase();
    const frag = document.createDocumentFragment();
    let n = 0;
    for (let i = evs.length - 1; i >= 0 && n < EVENTS_SHOWN; i--) {
      if (!evMatches(evs[i], needle)) continue;
      frag.appendChild(evItem(evs[i]));
      n++;
    }
    evPending = [];
    el.evList.replaceChildren(frag);
  }
  el.evFilter.addEventListener('input', redrawEvents);

  // --- start -------------------------------------------------------------------------------------
  let started = false;
  async function start() {
    onRoute();
    try {
      await Promise.all([loadStats(), loadList()]);
    } catch (e) {
      showError('The registry does not answer (' + e.message + '); retrying…');
      el.disconnected.hidden = false;
      setTimeout(start, 2000);
      return;
    }
    if (!el.auth.hidden) return;
    if (!started) {
      started = true;
      setInterval(tick, 1000);
      setInterval(() => loadStats().catch(() => {}), STATS_EVERY_MS);
    }
    connect();
  }
  start();
})();
