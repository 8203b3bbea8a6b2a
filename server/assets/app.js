/*
 * The Audit Logs page: vanilla ES2020, no framework, no build step, served from the binary.
 *
 * Data flow: the filters live in the URL's query string (shareable, reloadable); every filter
 * change fires the list, the facets and the histogram in parallel (one round trip of latency) and
 * drops answers of an older generation. The table is virtualized: rows have a fixed height and only
 * those near the viewport are in the DOM, so its cost does not grow with the rows kept. Live events
 * (WebSocket /v1/stream) are queued and flushed at most every FLUSH_INTERVAL_MS in an animation
 * frame, newest on top, with at most ROWS_MAX rows kept, so a burst of thousands of events a second
 * does not block input. An event opens in a drawer (hash #seq=N, loadable on its own).
 */
'use strict';

(() => {
  const TOKEN_KEY = 'auditlog.token';
  const PAGE_SIZE = 100;
  const ROWS_MAX = 5000;
  const FACET_TOP = 50;
  // Live rows are drawn at most this often; during a burst (a big last batch) less often, so the
  // main thread stays free for input.
  const FLUSH_INTERVAL_MS = 80;
  const FLUSH_INTERVAL_BURST_MS = 250;
  const BURST_BATCH = 100;
  const DEFAULT_RANGE = '7d';

  const ACTION_GROUPS = [
    ['Resource', [['create', 'Create'], ['update', 'Update'], ['delete', 'Delete'], ['start,stop', 'Start/Stop'], ['restart', 'Restart']]],
    ['Account', [['login', 'Login'], ['logout', 'Logout'], ['token_created', 'Token created'], ['token_revoked', 'Token revoked'], ['ssh_key_added', 'SSH key added'], ['ssh_key_deleted', 'SSH key deleted']]],
    ['Team', [['invite_sent', 'Invite sent'], ['invite_accepted', 'Invite accepted'], ['member_removed', 'Member removed'], ['permissions_changed', 'Permissions changed']]],
  ];
  const ACTION_LABELS = new Map([...ACTION_GROUPS.flatMap(([, items]) => items).filter(([v]) => !v.includes(',')), ['start', 'Start'], ['stop', 'Stop']]);
  const RESOURCE_TYPES = [['pod', 'Pods'], ['vm', 'Virtual Machines'], ['storage', 'Storage'], ['project', 'Projects'], ['ssh_key', 'SSH Keys'], ['api_token', 'API Tokens'], ['member', 'Members'], ['account', 'Accounts']];
  const RESOURCE_LABELS = new Map([['pod', 'Pod'], ['vm', 'Virtual machine'], ['storage', 'Storage'], ['project', 'Project'], ['ssh_key', 'SSH key'], ['api_token', 'API token'], ['member', 'Member'], ['account', 'Account']]);
  const RANGE_MS = { '24h': 864e5, '7d': 7 * 864e5, '30d': 30 * 864e5 };
  const RANGE_LABELS = { '24h': 'Last 24 hours', '7d': 'Last 7 days', '30d': 'Last 30 days' };
  const BUCKETS = [['5m', 3e5], ['15m', 9e5], ['1h', 36e5], ['3h', 108e5], ['6h', 216e5], ['12h', 432e5], ['1d', 864e5], ['7d', 6048e5]];

  const $ = (id) => document.getElementById(id);
  const el = {
    signin: $('signin'), signinForm: $('signin-form'), tokenInput: $('token-input'), signinError: $('signin-error'),
    app: $('app'), signout: $('signout'), scope: $('scope'),
    liveToggle: $('live-toggle'), liveIndicator: $('live-indicator'), exportBtn: $('export'),
    searchForm: $('search-form'), q: $('q'), qError: $('q-error'),
    action: $('f-action'), type: $('f-type'), range: $('f-range'), user: $('f-user'), tenant: $('f-tenant'),
    tenantField: $('tenant-field'), customFrom: $('custom-range'), customTo: $('custom-range-to'), from: $('f-from'), to: $('f-to'),
    reset: $('reset'), chart: $('chart'), chartCaption: $('chart-caption'),
    total: $('total'), banner: $('banner'), grid: $('grid'), gridHead: document.querySelector('.grid-head'), topbar: document.querySelector('.topbar'), rows: $('rows'), empty: $('empty'),
    sentinel: $('sentinel'), listStatus: $('list-status'),
    drawer: $('drawer'), drawerTitle: $('drawer-title'), drawerBody: $('drawer-body'), drawerClose: $('drawer-close'), backdrop: $('backdrop'),
  };

  const numberFormat = new Intl.NumberFormat('en-US');
  const localFormat = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    filters: null,
    generation: 0,
    abort: null,
    events: new Map(), // seq -> event, for every row kept
    list: [], // the rows kept, in display order (newest first)
    rowHeight: 48,
    window: { first: -1, last: -1, version: -1 },
    listVersion: 0,
    freshUntil: new Map(), // seq -> time until which the row is marked new
    nextCursor: null,
    loadingMore: false,
    trimmed: false,
    total: null,
    /** The last seq the total counts (its answer's `last_seq`): live events after it add to it. */
    totalSeq: null,
    /** The last seq the list's first page was read up to. */
    listSeq: null,
    /** Live events older than every loaded row that arrived while a page was being read. */
    deferred: [],
    selectedSeq: null,
    openSeq: null,
    /** Numbers the drawer's event requests: a late answer to an older one is dropped. */
    drawerRequest: 0,
    tenantFacet: true,
    facets: {},
    histogram: null,
    // live
    live: false,
    socket: null,
    socketId: 0,
    lastSeq: null,
    retryMs: 500,
    retryTimer: null,
    pending: [],
    pendingSeqs: new Set(),
    flushScheduled: false,
    lastFlush: 0,
    lastBatch: 0,
    listReady: false,
  };

  // ---------- helpers ----------

  const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);

  function parseTime(text) {
    // Date.parse wants at most millisecond precision.
    return Date.parse(String(text).replace(/(\.\d{3})\d+/, '$1'));
  }
  function utcShort(text) {
    return String(text).slice(0, 10) + ' ' + String(text).slice(11, 19);
  }
  function utcOfMs(ms) {
    return new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
  }
  function localOf(text) {
    const ms = typeof text === 'number' ? text : parseTime(text);
    return Number.isFinite(ms) ? localFormat.format(new Date(ms)) : '';
  }
  function plural(n, word) {
    return `${numberFormat.format(n)} ${word}${n === 1 ? '' : 's'}`;
  }
  function actionLabel(action) {
    return ACTION_LABELS.get(action) || action;
  }
  function resourceLabel(type) {
    return RESOURCE_LABELS.get(type) || type;
  }
  function short(value, max = 40) {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    return text === undefined ? '—' : text.length > max ? text.slice(0, max - 1) + '…' : text;
  }
  function isContainer(value) {
    return value !== null && typeof value === 'object';
  }
  function byteOffsetToIndex(text, offset) {
    const bytes = new TextEncoder().encode(text);
    return new TextDecoder().decode(bytes.slice(0, Math.min(offset, bytes.length))).length;
  }

  // ---------- filters and the URL ----------

  function defaultFilters() {
    return { range: DEFAULT_RANGE, from: '', to: '', action: '', type: '', user: '', tenant: '', q: '' };
  }

  function filtersFromUrl() {
    const params = new URLSearchParams(location.search);
    const f = defaultFilters();
    for (const key of Object.keys(f)) {
      const value = params.get(key);
      if (value !== null) f[key] = value;
    }
    if (!['24h', '7d', '30d', 'custom'].includes(f.range)) f.range = DEFAULT_RANGE;
    return f;
  }

  function urlOfFilters(f) {
    const params = new URLSearchParams();
    const defaults = defaultFilters();
    for (const [key, value] of Object.entries(f)) {
      if (key === 'from' || key === 'to') {
        if (f.range === 'custom' && value) params.set(key, value);
      } else if (value && value !== defaults[key]) {
        params.set(key, value);
      }
    }
    const search = params.toString();
    return location.pathname + (search ? '?' + search : '') + location.hash;
  }

  /** The API's query parameters for filters `f`, leaving out the filter `omit` (for its facet). */
  function apiParams(f, omit) {
    const p = new URLSearchParams();
    if (f.tenant && omit !== 'tenant') p.append('tenant', f.tenant);
    if (f.range === 'custom') {
      // Without a From, the same lower bound the chart shows (a week before To): never all
      // of history under a caption that says otherwise.
      p.set('from', f.from || new Date(domainOf(f).from).toISOString());
      if (f.to) p.set('to', f.to);
    } else {
      p.set('since', f.range);
    }
    if (f.action && omit !== 'action') for (const a of f.action.split(',')) p.append('action', a);
    if (f.type && omit !== 'type') p.append('resource_type', f.type);
    if (f.user && omit !== 'user') p.append('actor', f.user);
    if (f.q.trim()) p.set('q', f.q.trim());
    return p;
  }

  /** The time span the filters cover, in ms: [from, to). */
  function domainOf(f) {
    const now = Date.now();
    if (f.range !== 'custom') return { from: now - RANGE_MS[f.range], to: now };
    // A bound the browser cannot read (the server may: its answer then says what is wrong
    // with it) counts as absent here.
    const read = (text) => (text && Number.isFinite(Date.parse(text)) ? Date.parse(text) : null);
    const to = read(f.to) ?? now;
    const from = read(f.from) ?? to - RANGE_MS['7d'];
    return { from, to: Math.max(to, from + 6e4) };
  }

  function bucketOf(domain) {
    const span = domain.to - domain.from;
    return BUCKETS.find(([, ms]) => span / ms <= 60) || BUCKETS[BUCKETS.length - 1];
  }

  /** The last change that made a history entry: which filters, and when. */
  let lastPush = { what: '', at: -Infinity };

  function setFilters(changes, { push = true } = {}) {
    state.filters = { ...state.filters, ...changes };
    const url = urlOfFilters(state.filters);
    if (url !== location.pathname + location.search + location.hash) {
      // Steps through one control's options in quick succession (arrow keys on a select)
      // make one history entry, not one per option passed: Back returns to before them.
      const what = Object.keys(changes).sort().join(',');
      const now = performance.now();
      const same = lastPush.what === what && now - lastPush.at < 1500;
      if (push && !same) history.pushState(null, '', url);
      else history.replaceState(null, '', url);
      if (push) lastPush = { what, at: now };
    }
    syncControls();
    refresh();
  }

  // ---------- API ----------

  class ApiError extends Error {
    constructor(status, body) {
      super(body?.error?.message || `request failed (HTTP ${status})`);
      this.status = status;
      this.code = body?.error?.code;
      this.field = body?.error?.field;
    }
  }

  async function api(path, params, signal) {
    const url = params ? `${path}?${params}` : path;
    const response = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` }, signal });
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, body);
    }
    return response.json();
  }

  // ---------- sign in ----------

  function showSignin(message) {
    stopLive();
    el.app.hidden = true;
    el.signout.hidden = true;
    el.scope.hidden = true;
    closeDrawer({ keepHash: true });
    el.signin.hidden = false;
    el.signinError.hidden = !message;
    el.signinError.textContent = message || '';
    el.tokenInput.value = '';
    el.tokenInput.focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = '';
    state.generation++;
    state.abort?.abort();
    showSignin(message);
    forgetSession();
  }

  /**
   * Forgets what the token signed out was shown (rows, chart, drawer, counts, the tenants and
   * users listed in the filters): the next sign-in, perhaps with a token that reads fewer
   * tenants, on a shared machine, starts from nothing.
   */
  function forgetSession() {
    // Live events already received, and a flush scheduled for them, must not bring the old
    // view back; Live is off for the next token until it is turned on again.
    state.pending = [];
    state.pendingSeqs.clear();
    state.listReady = false;
    state.live = false;
    el.liveToggle.setAttribute('aria-checked', 'false');
    clearRows();
    el.chart.innerHTML = '';
    el.drawerBody.innerHTML = '';
    state.facets = {};
    state.histogram = null;
    state.selectedSeq = null;
    state.openSeq = null;
    setTotal(null);
    el.user.innerHTML = optionHtml('', 'All users', undefined, true);
    el.tenant.innerHTML = optionHtml('', 'All tenants', undefined, true);
    if (state.filters) {
      renderFacet('action', { values: [], total: undefined });
      renderFacet('type', { values: [], total: undefined });
    }
    el.scope.hidden = true;
    el.scope.textContent = '';
  }

  function startApp() {
    el.signin.hidden = true;
    el.app.hidden = false;
    el.signout.hidden = false;
    state.tenantFacet = true;
    syncControls();
    refresh();
    openFromHash();
  }

  // ---------- loading ----------

  function refresh() {
    const gen = ++state.generation;
    state.abort?.abort();
    const controller = new AbortController();
    state.abort = controller;
    const f = state.filters;
    const signal = controller.signal;
    const ours = () => gen === state.generation;

    state.listReady = false;
    state.loadingMore = false;
    // The old filters' feed stops now: its events must not reach the new list while it loads
    // (the new feed starts from the new list's last_seq).
    if (state.live) pauseStream();
    state.pending = [];
    state.pendingSeqs.clear();
    el.grid.setAttribute('aria-busy', 'true');
    el.listStatus.textContent = 'Loading…';
    hideQueryError();
    el.banner.hidden = true;

    const listParams = apiParams(f);
    listParams.set('limit', String(PAGE_SIZE));
    const list = api('/v1/events', listParams, signal);

    const facetKeys = [['action', 'action'], ['resource.type', 'type'], ['actor', 'user']];
    // Per-tenant counts of a text search would check the text of every tenant's events: with
    // a tenant chosen, the tenant list keeps its names but shows no counts then.
    const tenantCountsCostly = Boolean(f.q && f.tenant);
    if ((state.tenantFacet || f.tenant) && !tenantCountsCostly) facetKeys.push(['tenant', 'tenant']);
    if (tenantCountsCostly) renderTenantsWithoutCounts();
    const facets = facetKeys.map(([field, key]) => {
      const p = apiParams(f, key);
      p.set('field', field);
      p.set('top', String(FACET_TOP));
      return api('/v1/facets', p, signal).then((answer) => [key, answer]);
    });

    const domain = domainOf(f);
    const [bucketName, bucketMs] = bucketOf(domain);
    const histParams = apiParams(f);
    histParams.set('bucket', bucketName);
    const histogram = api('/v1/histogram', histParams, signal);

    let failed = false;
    const fail = (error) => {
      if (!ours() || error.name === 'AbortError' || failed) return;
      failed = true;
      handleLoadError(error);
    };

    list.then((page) => {
      if (!ours()) return;
      renderFirstPage(page);
      state.listSeq = typeof page.last_seq === 'number' ? page.last_seq : null;
      reconcileTotal();
      if (state.live) restartStream(page.last_seq);
    }, fail);

    for (const facet of facets) {
      facet.then(([key, answer]) => {
        if (!ours()) return;
        state.facets[key] = answer;
        renderFacet(key, answer);
        // A facet whose own filter is unset counts exactly the current filters.
        if (!f[key] && state.total === null) {
          setTotal(answer.total);
          state.totalSeq = typeof answer.last_seq === 'number' ? answer.last_seq : null;
          reconcileTotal();
        }
      }, fail);
    }

    histogram.then((answer) => {
      if (!ours()) return;
      state.histogram = { answer, domain, bucketName, bucketMs };
      renderChart();
      const every = facetKeys.every(([, key]) => f[key]);
      if (every && state.total === null) {
        setTotal(answer.buckets.reduce((sum, b) => sum + b.count, 0));
        state.totalSeq = typeof answer.last_seq === 'number' ? answer.last_seq : null;
        reconcileTotal();
      }
    }, fail);

    state.total = null;
    state.totalSeq = null;
    state.listSeq = null;
    el.total.textContent = '';
    updateCaption();
    // Tests and tools can wait for a view to settle: data-ready turns true once every request of
    // this generation has answered.
    el.app.dataset.ready = 'false';
    Promise.allSettled([list, histogram, ...facets]).then(() => {
      if (ours()) el.app.dataset.ready = 'true';
    });
  }

  function handleLoadError(error) {
    el.grid.removeAttribute('aria-busy');
    el.listStatus.textContent = '';
    if (error.status === 401) {
      signOut(`${error.message}. Sign in again.`);
      return;
    }
    clearRows();
    if (error.field === 'q') {
      showQueryError(error.message);
      showEmpty('Fix the search query to see events.');
    } else {
      el.banner.hidden = false;
      el.banner.textContent = error.status === 403 ? `Not allowed: ${error.message}` : `Could not load events: ${error.message}`;
      showEmpty('No events to show.');
    }
    el.chart.innerHTML = '';
    setTotal(null);
  }

  function setTotal(total) {
    state.total = total;
    el.total.textContent = total === null ? '' : plural(total, 'event');
  }

  function clearRows() {
    renderedRows.clear();
    el.rows.textContent = '';
    state.list = [];
    state.events.clear();
    state.freshUntil.clear();
    invalidate();
    state.nextCursor = null;
    state.trimmed = false;
    state.deferred = [];
    state.selectedSeq = null;
    el.grid.removeAttribute('aria-activedescendant');
  }

  function renderFirstPage(page) {
    clearRows();
    state.listReady = true;
    el.grid.removeAttribute('aria-busy');
    appendRows(page.events);
    renderWindow();
    state.nextCursor = page.next_cursor;
    updateListStatus();
    if (state.pending.length) scheduleFlush();
    maybeLoadMore();
  }

  function appendRows(events) {
    for (const event of events) {
      if (state.events.has(event.seq)) continue;
      state.events.set(event.seq, event);
      state.list.push(event);
    }
    invalidate();
  }

  // ---------- the virtual list ----------

  const OVERSCAN_ROWS = 8;
  const renderedRows = new Map(); // seq -> element, for the rows in the DOM
  let renderScheduled = false;

  function invalidate() {
    state.listVersion++;
    scheduleRender();
  }

  function scheduleRender() {
    if (renderScheduled) return;
    renderScheduled = true;
    requestAnimationFrame(() => {
      renderScheduled = false;
      renderWindow();
    });
  }

  function measureRowHeight() {
    const value = parseFloat(getComputedStyle(el.rows).getPropertyValue('--row-h'));
    if (value > 0 && value !== state.rowHeight) {
      state.rowHeight = value;
      state.listVersion++;
    }
  }

  /** Renders the rows near the viewport; the container's height stands for all of them. */
  function renderWindow() {
    const count = state.list.length;
    const rowHeight = state.rowHeight;
    el.rows.style.height = `${count * rowHeight}px`;
    el.grid.setAttribute('aria-rowcount', String(count + 1));
    const top = el.rows.getBoundingClientRect().top;
    const viewTop = Math.max(0, -top);
    const viewBottom = Math.max(0, window.innerHeight - top);
    const first = Math.max(0, Math.floor(viewTop / rowHeight) - OVERSCAN_ROWS);
    const last = Math.min(count, Math.ceil(viewBottom / rowHeight) + OVERSCAN_ROWS);
    const w = state.window;
    if (first === w.first && last === w.last && w.version === state.listVersion) return;
    w.first = first;
    w.last = last;
    w.version = state.listVersion;
    const now = Date.now();
    // Keyed: a row's element lives as long as the row is in the window (a click that starts on it
    // ends on it, even if live rows arrive in between); only the missing ones are built.
    let missing = '';
    for (let i = first; i < last; i++) {
      if (!renderedRows.has(state.list[i].seq)) missing += rowHtml(state.list[i], i, now);
    }
    if (missing) {
      const template = document.createElement('template');
      template.innerHTML = missing;
      for (const node of [...template.content.children]) renderedRows.set(Number(node.dataset.seq), node);
    }
    const kept = new Set();
    let ref = el.rows.firstElementChild;
    for (let i = first; i < last; i++) {
      const event = state.list[i];
      const node = renderedRows.get(event.seq);
      kept.add(event.seq);
      updateRow(node, event, i, now);
      if (node === ref) ref = ref.nextElementSibling;
      else el.rows.insertBefore(node, ref);
    }
    for (const [seq, node] of renderedRows) {
      if (!kept.has(seq)) {
        node.remove();
        renderedRows.delete(seq);
      }
    }
    const selected = state.selectedSeq !== null && rowOf(state.selectedSeq);
    if (selected) el.grid.setAttribute('aria-activedescendant', selected.id);
    else el.grid.removeAttribute('aria-activedescendant');
  }

  function updateRow(node, event, index, now) {
    const top = `${index * state.rowHeight}px`;
    if (node.style.top !== top) node.style.top = top;
    const rowIndex = String(index + 2);
    if (node.getAttribute('aria-rowindex') !== rowIndex) node.setAttribute('aria-rowindex', rowIndex);
    const selected = event.seq === state.selectedSeq;
    if (node.classList.contains('selected') !== selected) {
      node.classList.toggle('selected', selected);
      node.setAttribute('aria-selected', String(selected));
    }
    const fresh = (state.freshUntil.get(event.seq) || 0) > now;
    if (node.classList.contains('fresh') !== fresh) node.classList.toggle('fresh', fresh);
  }

  function indexOfSeq(seq) {
    return state.list.findIndex((event) => event.seq === seq);
  }

  /** Height of what sticks to the top of the viewport: the top bar and the table's header. */
  function stickyHeight() {
    return el.topbar.offsetHeight + el.gridHead.offsetHeight;
  }

  /** Scrolls the window so that row `index` is fully visible (below the sticky header). */
  function revealIndex(index) {
    const rowTop = el.rows.getBoundingClientRect().top + index * state.rowHeight;
    const sticky = stickyHeight();
    if (rowTop < sticky) window.scrollBy(0, rowTop - sticky);
    else if (rowTop + state.rowHeight > window.innerHeight) window.scrollBy(0, rowTop + state.rowHeight - window.innerHeight);
  }

  function updateListStatus() {
    const count = state.list.length;
    showEmpty(count === 0 ? (state.filters.q || hasFilters() ? 'No events match these filters.' : 'No events in this time range.') : '');
    if (count === 0) el.listStatus.textContent = '';
    else if (state.loadingMore) el.listStatus.textContent = 'Loading more…';
    else if (state.trimmed) el.listStatus.textContent = `Showing the newest ${numberFormat.format(count)} rows. Export to get every matching event.`;
    else if (state.nextCursor) el.listStatus.textContent = `${plural(count, 'row')} loaded; scroll for more.`;
    else el.listStatus.textContent = `End of results (${plural(count, 'row')}).`;
  }

  function hasFilters() {
    const f = state.filters;
    return Boolean(f.action || f.type || f.user || f.tenant);
  }

  function showEmpty(message) {
    el.empty.hidden = !message;
    el.empty.textContent = message;
  }

  async function loadMore() {
    if (state.loadingMore || !state.nextCursor || !state.listReady || state.trimmed) return;
    const gen = state.generation;
    state.loadingMore = true;
    updateListStatus();
    try {
      const params = apiParams(state.filters);
      params.set('limit', String(PAGE_SIZE));
      params.set('cursor', state.nextCursor);
      const page = await api('/v1/events', params, state.abort?.signal);
      if (gen !== state.generation) return;
      // A live flush trimmed the oldest rows while the page was asked for: appended after
      // them, it would leave a silent gap in the middle of the list.
      if (state.trimmed) return;
      appendRows(page.events);
      state.nextCursor = page.next_cursor;
      // Live events older than every row loaded, which arrived while this page was read:
      // those it did not bring, and whose place it now loaded, are merged in; the others
      // come with the next page (read after they were stored).
      const deferred = state.deferred.filter((e) => !state.events.has(e.seq));
      state.deferred = [];
      deferred.sort((a, b) => (listedBefore(a, b) ? -1 : 1));
      if (deferred.length) mergeIntoList(deferred, 0, { defer: false });
      // At most ROWS_MAX rows, as live updates keep it: past it, export gets the rest.
      if (state.list.length >= ROWS_MAX) trimRows();
      if (state.list.length >= ROWS_MAX) {
        state.trimmed = true;
        state.nextCursor = null;
      }
      renderWindow();
    } catch (error) {
      if (gen === state.generation && error.name !== 'AbortError') {
        el.banner.hidden = false;
        el.banner.textContent = `Could not load more events: ${error.message}`;
      }
    } finally {
      if (gen === state.generation) {
        state.loadingMore = false;
        updateListStatus();
        maybeLoadMore();
      }
    }
  }

  function maybeLoadMore() {
    // Load while the sentinel is near the viewport (IntersectionObserver only reports changes).
    requestAnimationFrame(() => {
      const rect = el.sentinel.getBoundingClientRect();
      if (rect.top < window.innerHeight + 800) loadMore();
    });
  }

  // ---------- rows ----------

  function summaryOf(event) {
    const parts = [];
    if (Array.isArray(event.changes) && event.changes.length) {
      const shown = event.changes.slice(0, 3).map((c) => (
        !isContainer(c?.old) && !isContainer(c?.new)
          ? `${c.field}: ${short(c.old, 24)} → ${short(c.new, 24)}`
          : `${c?.field} changed`));
      if (event.changes.length > 3) shown.push(`+${event.changes.length - 3} more`);
      parts.push(shown.join(', '));
    }
    if (isContainer(event.details) && !Array.isArray(event.details)) {
      const entries = Object.entries(event.details).slice(0, 3).map(([k, v]) => `${k}: ${short(v, 30)}`);
      if (entries.length) parts.push(entries.join(', '));
    }
    return parts.join(' · ');
  }

  function actionClass(action) {
    if (action === 'create' || action === 'invite_accepted' || action.endsWith('_added') || action.endsWith('_created')) return 'a-create';
    if (action === 'update' || action === 'permissions_changed' || action === 'restart') return 'a-update';
    if (action === 'delete' || action.endsWith('_removed') || action.endsWith('_deleted') || action.endsWith('_revoked')) return 'a-delete';
    if (action === 'start' || action === 'stop') return 'a-power';
    return 'a-other';
  }

  function rowHtml(event, index, now) {
    const actor = event.actor || {};
    const resource = event.resource || {};
    const user = actor.email || actor.id || '—';
    const userSub = actor.type && actor.type !== 'user' ? actor.type.replace('_', ' ') : (actor.email && actor.id ? actor.id : '');
    const name = resource.name || resource.id || '—';
    const resourceSub = [resourceLabel(resource.type), event.project].filter(Boolean).join(' · ');
    const summary = summaryOf(event);
    const failed = event.outcome === 'failure';
    const selected = event.seq === state.selectedSeq;
    const fresh = (state.freshUntil.get(event.seq) || 0) > now;
    return `<div class="row${failed ? ' failed' : ''}${selected ? ' selected' : ''}${fresh ? ' fresh' : ''}" role="row" id="row-${event.seq}" aria-rowindex="${index + 2}" style="top:${index * state.rowHeight}px" data-seq="${event.seq}" data-action="${esc(event.action)}" data-type="${esc(resource.type)}" data-tenant="${esc(event.tenant)}" aria-selected="${selected}">`
      + `<div role="gridcell" class="c-time" title="${esc(localOf(event.timestamp))} (local time)"><time datetime="${esc(event.timestamp)}">${esc(utcShort(event.timestamp))}</time></div>`
      + `<div role="gridcell" class="c-user"><span class="primary" title="${esc(user)}">${esc(user)}</span>${userSub ? `<span class="sub">${esc(userSub)}</span>` : ''}</div>`
      + `<div role="gridcell" class="c-action"><span class="badge ${actionClass(event.action)}">${esc(actionLabel(event.action))}</span>${failed ? '<span class="badge a-failed">Failed</span>' : ''}</div>`
      + `<div role="gridcell" class="c-resource"><span class="primary" title="${esc(name)}">${esc(name)}</span><span class="sub">${esc(resourceSub)}</span></div>`
      + `<div role="gridcell" class="c-details" title="${esc(summary)}">${esc(summary)}</div>`
      + '</div>';
  }

  function rowOf(seq) {
    return document.getElementById(`row-${seq}`);
  }

  /** Selects the row at `index` of the list. */
  function selectIndex(index, { scroll = true } = {}) {
    const event = state.list[index];
    if (!event) return;
    state.selectedSeq = event.seq;
    if (scroll) revealIndex(index);
    state.listVersion++;
    renderWindow();
  }

  // ---------- facets ----------

  function optionHtml(value, label, count, selected) {
    const text = count === undefined ? label : `${label} (${numberFormat.format(count)})`;
    return `<option value="${esc(value)}"${selected ? ' selected' : ''}>${esc(text)}</option>`;
  }

  function renderFacet(key, answer) {
    const counts = new Map(answer.values.map((v) => [v.value, v.count]));
    const f = state.filters;
    const allCount = answer.total;
    if (key === 'action') {
      const known = new Set();
      let html = optionHtml('', 'All actions', allCount, !f.action);
      for (const [group, items] of ACTION_GROUPS) {
        html += `<optgroup label="${esc(group)}">`;
        for (const [value, label] of items) {
          value.split(',').forEach((v) => known.add(v));
          const count = value.split(',').reduce((sum, v) => sum + (counts.get(v) || 0), 0);
          html += optionHtml(value, label, count, f.action === value);
        }
        html += '</optgroup>';
      }
      const others = answer.values.filter((v) => !known.has(v.value));
      if (f.action && !known.has(f.action) && !others.some((v) => v.value === f.action) && !f.action.includes(',')) others.push({ value: f.action, count: 0 });
      if (others.length) {
        html += '<optgroup label="Other">';
        for (const v of others) html += optionHtml(v.value, v.value, v.count, f.action === v.value);
        html += '</optgroup>';
      }
      el.action.innerHTML = html;
    } else if (key === 'type') {
      let html = optionHtml('', 'All types', allCount, !f.type);
      const known = new Set();
      for (const [value, label] of RESOURCE_TYPES) {
        known.add(value);
        html += optionHtml(value, label, counts.get(value) || 0, f.type === value);
      }
      const others = answer.values.filter((v) => !known.has(v.value));
      if (f.type && !known.has(f.type) && !others.some((v) => v.value === f.type)) others.push({ value: f.type, count: 0 });
      for (const v of others) html += optionHtml(v.value, v.value, v.count, f.type === v.value);
      el.type.innerHTML = html;
    } else if (key === 'user') {
      let html = optionHtml('', 'All users', allCount, !f.user);
      const values = answer.values.slice();
      if (f.user && !counts.has(f.user)) values.push({ value: f.user, count: 0 });
      for (const v of values) html += optionHtml(v.value, v.value, v.count, f.user === v.value);
      el.user.innerHTML = html;
    } else if (key === 'tenant') {
      if (answer.values.length <= 1 && !f.tenant) {
        // One tenant in scope (a read token's): the filter would be noise; stop asking.
        state.tenantFacet = false;
        el.tenantField.hidden = true;
        if (answer.values.length === 1) showScope(answer.values[0].value);
        return;
      }
      el.tenantField.hidden = false;
      let html = optionHtml('', 'All tenants', allCount, !f.tenant);
      const values = answer.values.slice();
      if (f.tenant && !counts.has(f.tenant)) values.push({ value: f.tenant, count: 0 });
      for (const v of values) html += optionHtml(v.value, v.value, v.count, f.tenant === v.value);
      el.tenant.innerHTML = html;
    }
  }

  /** The tenant list of the last tenant facet, without counts (see refresh). */
  function renderTenantsWithoutCounts() {
    const f = state.filters;
    const values = (state.facets.tenant?.values || []).map((v) => v.value);
    if (f.tenant && !values.includes(f.tenant)) values.push(f.tenant);
    let html = optionHtml('', 'All tenants', undefined, !f.tenant);
    for (const value of values) html += optionHtml(value, value, undefined, f.tenant === value);
    el.tenant.innerHTML = html;
  }

  function showScope(tenant) {
    el.scope.hidden = false;
    el.scope.textContent = `Tenant: ${tenant}`;
  }

  /** Puts the filters into the controls (options keep their counts until the facets answer). */
  function syncControls() {
    const f = state.filters;
    const ensure = (select, value, label) => {
      if (![...select.options].some((o) => o.value === value)) {
        select.insertAdjacentHTML('beforeend', optionHtml(value, label));
      }
      select.value = value;
    };
    ensure(el.action, f.action, f.action ? (ACTION_GROUPS.flatMap(([, i]) => i).find(([v]) => v === f.action)?.[1] || f.action) : 'All actions');
    ensure(el.type, f.type, f.type ? (RESOURCE_TYPES.find(([v]) => v === f.type)?.[1] || f.type) : 'All types');
    ensure(el.user, f.user, f.user || 'All users');
    ensure(el.tenant, f.tenant, f.tenant || 'All tenants');
    if (f.tenant) el.tenantField.hidden = false;
    el.range.value = f.range;
    const custom = f.range === 'custom';
    el.customFrom.hidden = !custom;
    el.customTo.hidden = !custom;
    el.from.value = f.from ? toInputValue(f.from) : '';
    el.to.value = f.to ? toInputValue(f.to) : '';
    if (document.activeElement !== el.q) el.q.value = f.q;
    el.reset.disabled = !(hasFilters() || f.q || f.range !== DEFAULT_RANGE);
  }

  function toInputValue(iso) {
    const ms = Date.parse(iso);
    return Number.isFinite(ms) ? new Date(ms).toISOString().slice(0, 16) : '';
  }
  function fromInputValue(value) {
    return value ? `${value}:00Z` : '';
  }
  function isoMinute(ms) {
    return new Date(ms).toISOString().slice(0, 16) + ':00Z';
  }

  function updateCaption() {
    const f = state.filters;
    if (f.range !== 'custom') {
      el.chartCaption.textContent = `${RANGE_LABELS[f.range]} · click a bar to zoom in`;
    } else {
      const d = domainOf(f);
      el.chartCaption.textContent = `${utcOfMs(d.from)} – ${utcOfMs(d.to)} · click a bar to zoom in`;
    }
  }

  // ---------- query errors ----------

  function showQueryError(message) {
    const q = state.filters.q.trim();
    el.qError.hidden = false;
    el.qError.querySelector('.q-error-message').textContent = `Query error: ${message}`;
    const where = el.qError.querySelector('.q-error-where');
    const match = /at position (\d+)/.exec(message);
    if (match) {
      const index = byteOffsetToIndex(q, Number(match[1]));
      const at = q.slice(index, index + 1) || ' ';
      where.innerHTML = `${esc(q.slice(0, index))}<mark class="q-error-at">${esc(at)}</mark>${esc(q.slice(index + 1))}\n${' '.repeat(index)}^`;
      where.hidden = false;
      // The input holds the trimmed query's text at an offset of its leading spaces.
      const lead = el.q.value.length - el.q.value.trimStart().length;
      el.q.focus();
      el.q.setSelectionRange(lead + index, lead + index + (q.slice(index, index + 1) ? 1 : 0));
    } else {
      where.hidden = true;
    }
    el.q.setAttribute('aria-invalid', 'true');
    el.q.setAttribute('aria-describedby', 'q-error q-help');
  }

  function hideQueryError() {
    el.qError.hidden = true;
    el.q.removeAttribute('aria-invalid');
    el.q.setAttribute('aria-describedby', 'q-help');
  }

  // ---------- chart ----------

  function renderChart() {
    const h = state.histogram;
    if (!h) return;
    const { answer, domain, bucketMs } = h;
    const counts = new Map(answer.buckets.map((b) => [parseTime(b.start), b.count]));
    const start = Math.floor(domain.from / bucketMs) * bucketMs;
    const series = [];
    for (let t = start; t < domain.to; t += bucketMs) series.push([t, counts.get(t) || 0]);
    const width = Math.max(280, el.chart.clientWidth || 600);
    const height = 132;
    const left = 44, right = 8, top = 10, bottom = 22;
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const max = Math.max(1, ...series.map(([, c]) => c));
    const niceMax = niceCeiling(max);
    const step = plotW / Math.max(1, series.length);
    const gap = Math.min(3, step * 0.25);
    let bars = '';
    series.forEach(([t, count], i) => {
      const x = left + i * step;
      const barH = count ? Math.max(2, (count / niceMax) * plotH) : 0;
      const label = `${utcOfMs(t)} – ${utcOfMs(Math.min(t + bucketMs, domain.to))}: ${plural(count, 'event')}`;
      // One bar in the tab order (roving tabindex): arrow keys move between them.
      bars += `<g class="bar" data-start="${t}" role="button" tabindex="${i === 0 ? 0 : -1}" aria-label="${esc(label)}"><title>${esc(label)}</title>`
        + `<rect class="hit" x="${x}" y="${top}" width="${step}" height="${plotH}"></rect>`
        + `<rect class="fill" x="${x + gap / 2}" y="${top + plotH - barH}" width="${Math.max(1, step - gap)}" height="${barH}" rx="1.5"></rect></g>`;
    });
    let axis = '';
    for (const fraction of [0, 0.5, 1]) {
      const y = top + plotH - fraction * plotH;
      axis += `<line class="gridline" x1="${left}" x2="${width - right}" y1="${y}" y2="${y}"></line>`
        + `<text class="tick" x="${left - 6}" y="${y + 4}" text-anchor="end">${esc(compact(niceMax * fraction))}</text>`;
    }
    // Label day starts when buckets are hours long, else evenly spaced buckets.
    const maxLabels = Math.max(2, Math.floor(plotW / 84));
    let candidates = series.map((_, i) => i);
    if (bucketMs >= 108e5 && bucketMs < 864e5) candidates = candidates.filter((i) => series[i][0] % 864e5 === 0);
    const every = Math.max(1, Math.ceil(candidates.length / maxLabels));
    candidates.filter((_, k) => k % every === 0).forEach((i) => {
      const x = Math.min(left + i * step + step / 2, width - right - 18);
      axis += `<text class="tick" x="${x}" y="${height - 6}" text-anchor="middle">${esc(tickLabel(series[i][0], bucketMs))}</text>`;
    });
    const total = series.reduce((sum, [, c]) => sum + c, 0);
    // A bar that had the focus (a zoom from the keyboard, a resize) is replaced below: the
    // focus stays in the chart, on the bar of the same start if there still is one.
    const focused = el.chart.contains(document.activeElement) ? document.activeElement.getAttribute('data-start') : undefined;
    el.chart.innerHTML = `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="group" aria-label="Events over time (arrow keys choose a bucket, Enter zooms in): ${esc(plural(total, 'event'))} in ${series.length} buckets">${axis}${bars}</svg>`;
    if (focused !== undefined) {
      const bars = [...el.chart.querySelectorAll('.bar')];
      const target = bars.find((b) => b.getAttribute('data-start') === focused) || bars.find((b) => b.getAttribute('tabindex') === '0') || bars[0];
      if (target) {
        for (const b of bars) b.setAttribute('tabindex', b === target ? '0' : '-1');
        target.focus();
      }
    }
  }

  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= value) return m * power;
    return 10 * power;
  }
  function compact(n) {
    if (n >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
    if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
    return String(+n.toFixed(1));
  }
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  function tickLabel(ms, bucketMs) {
    const d = new Date(ms);
    const day = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
    if (bucketMs >= 108e5 || ms % 864e5 === 0) return day;
    return d.toISOString().slice(11, 16);
  }

  // ---------- details drawer ----------

  function dl(pairs) {
    return '<dl class="kv">' + pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v, raw]) => `<dt>${esc(k)}</dt><dd>${raw ? v : esc(v)}</dd>`).join('') + '</dl>';
  }

  /** Flattens old/new into rows `{path, old, new, kind}`, recursing into objects and arrays. */
  function diffRows(path, before, after, out) {
    const bothObjects = isContainer(before) && isContainer(after) && Array.isArray(before) === Array.isArray(after);
    if (bothObjects) {
      const keys = Array.isArray(before)
        ? Array.from({ length: Math.max(before.length, after.length) }, (_, i) => i)
        : [...new Set([...Object.keys(before), ...Object.keys(after)])];
      if (!keys.length) out.push({ path, old: before, new: after, kind: 'same' });
      for (const key of keys) {
        const child = Array.isArray(before) ? `${path}[${key}]` : `${path}.${key}`;
        const inOld = Array.isArray(before) ? key < before.length : Object.prototype.hasOwnProperty.call(before, key);
        const inNew = Array.isArray(after) ? key < after.length : Object.prototype.hasOwnProperty.call(after, key);
        if (!inOld) out.push({ path: child, old: undefined, new: after[key], kind: 'added' });
        else if (!inNew) out.push({ path: child, old: before[key], new: undefined, kind: 'removed' });
        else diffRows(child, before[key], after[key], out);
      }
      return out;
    }
    const same = JSON.stringify(before) === JSON.stringify(after);
    out.push({ path, old: before, new: after, kind: same ? 'same' : 'changed' });
    return out;
  }

  function valueHtml(value) {
    if (value === undefined) return '<span class="absent">(absent)</span>';
    return `<code>${esc(JSON.stringify(value, null, isContainer(value) ? 1 : 0))}</code>`;
  }

  function changesHtml(changes) {
    if (!Array.isArray(changes)) {
      return `<pre class="json">${esc(JSON.stringify(changes, null, 2))}</pre>`;
    }
    const rows = [];
    for (const change of changes) {
      const field = change && typeof change.field === 'string' ? change.field : '(field)';
      const before = change && 'old' in change ? change.old : undefined;
      const after = change && 'new' in change ? change.new : undefined;
      diffRows(field, before, after, rows);
    }
    const kindLabel = { changed: 'modified', added: 'added', removed: 'removed', same: 'unchanged' };
    return '<div class="diff-wrap"><table class="diff"><thead><tr><th scope="col">Field</th><th scope="col">Previous value</th><th scope="col">New value</th></tr></thead><tbody>'
      + rows.map((r) => `<tr class="d-${r.kind}" data-field="${esc(r.path)}"><th scope="row"><span class="d-field">${esc(r.path)}</span><span class="sr-only"> (${kindLabel[r.kind]})</span></th><td class="d-old">${valueHtml(r.old)}</td><td class="d-new">${valueHtml(r.new)}</td></tr>`).join('')
      + '</tbody></table></div>';
  }

  function permalinkOf(seq) {
    return `${location.origin}/#seq=${seq}`;
  }

  function renderDrawer(event) {
    const actor = event.actor || {};
    const resource = event.resource || {};
    el.drawerTitle.textContent = `${actionLabel(event.action)} · ${resourceLabel(resource.type)}${resource.name ? ` · ${resource.name}` : ''}`;
    const outcome = event.outcome === 'failure' ? '<span class="badge a-failed">Failure</span>' : '<span class="badge a-create">Success</span>';
    let html = '<section class="d-section" aria-labelledby="d-activity"><h3 id="d-activity">Activity</h3>' + dl([
      ['Timestamp (UTC)', event.timestamp],
      ['Local time', localOf(event.timestamp)],
      ['Action', event.action],
      ['Outcome', outcome, true],
      ['User', actor.email],
      ['User ID', actor.id],
      ['Actor type', actor.type],
      ['IP address', actor.ip],
      ['User agent', actor.user_agent],
      ['Tenant', event.tenant],
    ]) + '</section>';
    html += '<section class="d-section" aria-labelledby="d-resource"><h3 id="d-resource">Resource</h3>' + dl([
      ['Type', resource.type],
      ['ID', resource.id],
      ['Name', resource.name],
      ['Project', event.project],
    ]) + '</section>';
    if (event.changes !== undefined) {
      html += `<section class="d-section" aria-labelledby="d-changes"><h3 id="d-changes">Changes</h3>${changesHtml(event.changes)}</section>`;
    }
    if (event.details !== undefined) {
      html += `<section class="d-section" aria-labelledby="d-details"><h3 id="d-details">Details</h3><pre class="json">${esc(JSON.stringify(event.details, null, 2))}</pre></section>`;
    }
    html += '<section class="d-section" aria-labelledby="d-meta"><h3 id="d-meta">Record</h3>' + dl([
      ['Seq', String(event.seq)],
      ['Tenant seq', String(event.tenant_seq)],
      ['Event ID', event.id],
      ['Received (UTC)', event.received],
    ]) + '</section>';
    html += `<section class="d-section" aria-labelledby="d-raw"><div class="d-section-head"><h3 id="d-raw">Raw event</h3><button type="button" class="btn btn-ghost btn-sm" data-copy="raw">Copy JSON</button></div><pre class="json raw" id="raw-json">${esc(JSON.stringify(event, null, 2))}</pre></section>`;
    const link = permalinkOf(event.seq);
    html += `<div class="d-link"><a id="permalink" href="${esc(link)}">Link to this event</a><button type="button" class="btn btn-ghost btn-sm" data-copy="link">Copy link</button></div>`;
    el.drawerBody.innerHTML = html;
    el.drawerBody.scrollTop = 0;
  }

  function openDrawer(event, { focus = true } = {}) {
    state.openSeq = event.seq;
    renderDrawer(event);
    el.drawer.hidden = false;
    el.backdrop.hidden = false;
    document.body.classList.add('drawer-open');
    const hash = `#seq=${event.seq}`;
    if (location.hash !== hash) history.replaceState(null, '', location.pathname + location.search + hash);
    if (focus) el.drawerClose.focus({ preventScroll: true });
  }

  function closeDrawer({ keepHash = false } = {}) {
    if (el.drawer.hidden) return;
    state.drawerRequest++;
    el.drawer.hidden = true;
    el.backdrop.hidden = true;
    document.body.classList.remove('drawer-open');
    state.openSeq = null;
    if (!keepHash && location.hash) history.replaceState(null, '', location.pathname + location.search);
    if (!el.app.hidden) el.grid.focus({ preventScroll: true });
  }

  async function openSeq(seq) {
    const known = state.events.get(seq);
    if (known) {
      state.drawerRequest++;
      selectIndex(indexOfSeq(seq));
      openDrawer(known);
      return;
    }
    el.drawerTitle.textContent = `Event #${seq}`;
    el.drawerBody.innerHTML = '<p class="muted">Loading…</p>';
    el.drawer.hidden = false;
    el.backdrop.hidden = false;
    // An answer that comes after the drawer was closed or moved to another event is dropped.
    const request = ++state.drawerRequest;
    try {
      const event = await api(`/v1/events/${encodeURIComponent(seq)}`);
      if (request !== state.drawerRequest || el.drawer.hidden) return;
      openDrawer(event);
    } catch (error) {
      if (request !== state.drawerRequest || el.drawer.hidden) return;
      if (error.status === 401) { signOut(`${error.message}. Sign in again.`); return; }
      el.drawerBody.innerHTML = `<p class="form-error">Could not load event #${esc(seq)}: ${esc(error.message)}</p>`;
    }
  }

  function openFromHash() {
    const match = /^#seq=(\d+)$/.exec(location.hash);
    if (match && state.token) openSeq(Number(match[1]));
  }

  // ---------- export ----------

  async function exportCsv() {
    const button = el.exportBtn;
    const label = button.querySelector('span');
    button.disabled = true;
    label.textContent = 'Exporting…';
    try {
      const params = apiParams(state.filters);
      params.set('format', 'csv');
      const response = await fetch(`/v1/events/export?${params}`, { headers: { Authorization: `Bearer ${state.token}` } });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch (_) { /* not JSON */ }
        throw new ApiError(response.status, body);
      }
      const blob = await response.blob();
      const disposition = response.headers.get('Content-Disposition') || '';
      const name = /filename="([^"]+)"/.exec(disposition)?.[1] || 'auditlog.csv';
      const url = URL.createObjectURL(blob);
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      el.banner.hidden = false;
      el.banner.textContent = `Export failed: ${error.message}`;
    } finally {
      button.disabled = false;
      label.textContent = 'Export CSV';
    }
  }

  // ---------- live updates ----------

  function setIndicator(mode) {
    const text = { off: 'Live off', connecting: 'Connecting…', streaming: 'Streaming', reconnecting: 'Reconnecting…' }[mode];
    el.liveIndicator.dataset.state = mode;
    el.liveIndicator.querySelector('.live-text').textContent = text;
    el.liveIndicator.hidden = mode === 'off';
  }

  function setLive(on) {
    state.live = on;
    el.liveToggle.setAttribute('aria-checked', String(on));
    // The count and the list status change with every flush while live (up to ~12 times a
    // second): announced each time, they would drown a screen reader's user. The indicator
    // says the list is live; they are announced again once it is off.
    el.total.setAttribute('aria-live', on ? 'off' : 'polite');
    el.listStatus.setAttribute('aria-live', on ? 'off' : 'polite');
    if (on) {
      // The list again, then the feed from where its answer was read: no gap, no duplicate.
      setIndicator('connecting');
      refresh();
    } else {
      stopLive();
    }
  }

  function stopLive() {
    el.total.setAttribute('aria-live', 'polite');
    el.listStatus.setAttribute('aria-live', 'polite');
    clearTimeout(state.retryTimer);
    state.socketId++;
    if (state.socket) {
      try { state.socket.close(1000, 'live updates off'); } catch (_) { /* already closed */ }
    }
    state.socket = null;
    setIndicator('off');
  }

  /** Closes the current subscription (its late messages are ignored). */
  function pauseStream() {
    clearTimeout(state.retryTimer);
    state.socketId++;
    if (state.socket) {
      try { state.socket.close(1000, 'filters changed'); } catch (_) { /* already closed */ }
    }
    state.socket = null;
    setIndicator('connecting');
  }

  /**
   * A new subscription for the current filters, from the seq after `lastSeq`: the `last_seq` of
   * the list's answer, so that what was stored after that answer was read comes first, then
   * live events, none twice (an answer without it: live from now).
   */
  function restartStream(lastSeq) {
    pauseStream();
    state.pending = [];
    state.pendingSeqs.clear();
    state.lastSeq = typeof lastSeq === 'number' ? lastSeq : null;
    state.retryMs = 500;
    connect();
  }

  /** Opens the subscription; `again` after a dropped connection (the indicator says so). */
  function connect(again = false) {
    const id = ++state.socketId;
    const params = apiParams(state.filters);
    params.set('token', state.token);
    // One message per commit rather than per event: a busy feed costs a parse per batch.
    params.set('batch', 'true');
    const resumeFrom = state.lastSeq === null ? null : state.lastSeq + 1;
    if (resumeFrom !== null) params.set('from_seq', String(resumeFrom));
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/v1/stream?${params}`);
    } catch (_) {
      scheduleReconnect(id);
      return;
    }
    state.socket = socket;
    setIndicator(again ? 'reconnecting' : 'connecting');
    let opened = false;
    socket.onopen = () => {
      if (id !== state.socketId) return;
      opened = true;
      state.retryMs = 500;
      setIndicator('streaming');
    };
    socket.onmessage = (message) => {
      if (id !== state.socketId) return;
      let data;
      try { data = JSON.parse(message.data); } catch (_) { return; }
      const events = data.type === 'events' && Array.isArray(data.events) ? data.events
        : data.type === 'event' && data.event ? [data.event] : null;
      if (events) {
        for (const event of events) {
          if (state.lastSeq === null || event.seq > state.lastSeq) state.lastSeq = event.seq;
          enqueue(event);
        }
      } else if (data.type === 'heartbeat') {
        if (typeof data.last_seq === 'number' && (state.lastSeq === null || data.last_seq > state.lastSeq)) state.lastSeq = data.last_seq;
      } else if (data.type === 'resync') {
        if (typeof data.from_seq === 'number') state.lastSeq = data.from_seq - 1;
      }
    };
    socket.onclose = (close) => {
      if (id !== state.socketId || !state.live) return;
      state.socket = null;
      // 1008: the token was revoked (retrying with it would fail for ever); 1011: the server
      // could not read stored events, and says why.
      if (close.code === 1008) { signOut('Your token was revoked. Sign in with another.'); return; }
      if (close.code === 1011) {
        setLive(false);
        el.banner.hidden = false;
        el.banner.textContent = `Live updates stopped: ${close.reason || 'the server could not read stored events'}`;
        return;
      }
      // Refused before it opened: a browser tells a 401 or 403 from a lost connection only as
      // code 1006, so an ordinary request asks why, instead of retrying a refusal for ever.
      if (!opened) { probeRefusal(id); return; }
      scheduleReconnect(id);
    };
    socket.onerror = () => { /* onclose follows */ };
  }

  /** After a subscription closed before it opened: signs out on 401, stops Live with the
   * server's reason on another refusal, and otherwise (the server is away) retries. */
  async function probeRefusal(id) {
    const params = apiParams(state.filters);
    params.set('limit', '1');
    try {
      await api('/v1/events', params);
    } catch (error) {
      if (id !== state.socketId || !state.live) return;
      if (error.status === 401) { signOut(`${error.message}. Sign in again.`); return; }
      if (error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429) {
        setLive(false);
        el.banner.hidden = false;
        el.banner.textContent = `Live updates stopped: ${error.message}`;
        return;
      }
    }
    scheduleReconnect(id);
  }

  function scheduleReconnect(id) {
    if (id !== state.socketId || !state.live) return;
    setIndicator('reconnecting');
    const delay = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, 10000);
    state.retryTimer = setTimeout(() => {
      if (id === state.socketId && state.live) connect(true);
    }, delay);
  }

  function enqueue(event) {
    if (state.pendingSeqs.has(event.seq)) return;
    if (state.events.has(event.seq)) {
      // Listed already by a page read after it was stored (an event stamped earlier than the
      // rows shown): not shown twice, but counted once, here, if the total was read before it.
      if (uncountedInTotal(event)) bumpTotal(1);
      return;
    }
    state.pendingSeqs.add(event.seq);
    state.pending.push(event);
    if (state.pending.length > ROWS_MAX * 2) {
      // Far behind: only the newest ROWS_MAX can ever be shown.
      const dropped = state.pending.splice(0, state.pending.length - ROWS_MAX);
      for (const e of dropped) state.pendingSeqs.delete(e.seq);
      state.trimmed = true;
      bumpTotal(dropped.filter(uncountedInTotal).length);
    }
    scheduleFlush();
  }

  /**
   * A total read from an older snapshot than the list (its last seq below the list's) misses
   * the matching events committed in between: the live feed starts after the list's last seq,
   * so it never brings them. Those the list shows are added (the newest, so nearly always all
   * of them), and the total then counts up to the list's last seq.
   */
  function reconcileTotal() {
    if (state.total === null || state.totalSeq === null || state.listSeq === null) return;
    // Every row listed past what the count read: those between the two snapshots, and live
    // ones flushed while the count was not known yet (they added nothing then).
    const counted = state.totalSeq;
    let missed = 0;
    let top = Math.max(counted, state.listSeq);
    for (const event of state.list) {
      if (event.seq > counted) {
        missed++;
        if (event.seq > top) top = event.seq;
      }
    }
    state.totalSeq = top;
    if (missed) setTotal(state.total + missed);
  }

  /** Whether a live event is past what the total counted (see `state.totalSeq`). */
  function uncountedInTotal(event) {
    return state.totalSeq === null || event.seq > state.totalSeq;
  }

  function scheduleFlush() {
    if (state.flushScheduled || !state.listReady) return;
    state.flushScheduled = true;
    const interval = state.lastBatch > BURST_BATCH ? FLUSH_INTERVAL_BURST_MS : FLUSH_INTERVAL_MS;
    const wait = Math.max(0, interval - (performance.now() - state.lastFlush));
    setTimeout(() => requestAnimationFrame(flush), wait);
  }

  function bumpTotal(n) {
    if (state.total !== null && n > 0) setTotal(state.total + n);
  }

  function flush() {
    state.flushScheduled = false;
    state.lastFlush = performance.now();
    if (!state.listReady || !state.pending.length) return;
    let batch = state.pending;
    state.lastBatch = batch.length;
    state.pending = [];
    state.pendingSeqs.clear();
    batch.sort((a, b) => a.seq - b.seq);
    // The total was counted up to its answer's last seq (read a moment after the list, whose
    // last seq the feed starts after): events up to it are in the count already.
    const uncounted = uncountedInTotal;
    let skipped = 0;
    let skippedUncounted = 0;
    if (batch.length > ROWS_MAX) {
      skipped = batch.length - ROWS_MAX;
      skippedUncounted = batch.slice(0, skipped).filter(uncounted).length;
      batch = batch.slice(skipped);
      state.trimmed = true;
    }
    const fresh = [];
    const freshUntil = Date.now() + 2000;
    // A few new rows are marked as new for a moment; a burst is not (everything would be).
    const mark = batch.length <= 20;
    for (let i = batch.length - 1; i >= 0; i--) {
      const event = batch[i];
      if (state.events.has(event.seq)) continue;
      fresh.push(event);
    }
    // The list is ordered newest first by (timestamp, seq), as the server pages it: a live
    // event takes its place there, usually the top, lower when its sender stamped it earlier
    // (a queued batch). One older than every row loaded while more pages remain is left to
    // those pages.
    fresh.sort((a, b) => (listedBefore(a, b) ? -1 : 1));
    const { added, pushedDown } = mergeIntoList(fresh, mark ? freshUntil : 0);
    if (!added && !skipped) {
      // Every one older than the rows loaded: not shown yet, but counted.
      bumpTotal(fresh.filter(uncounted).length);
      return;
    }
    trimRows();
    // A reader scrolled into the list keeps seeing the same rows: rows added above them push
    // the page down.
    if (pushedDown) window.scrollBy(0, pushedDown * state.rowHeight);
    invalidate();
    renderWindow();
    bumpTotal(fresh.filter(uncounted).length + skippedUncounted);
    updateListStatus();
    if (mark) setTimeout(expireFresh, 2100);
  }

  /**
   * Merges `events` (newest first) into the list where its order puts them; one older than
   * every row loaded while more pages remain is left to those pages, or, while a page is being
   * read (its answer may predate the event), kept in `state.deferred` until it comes. Marks
   * the rows added as new until `freshUntil` (0: not marked). Returns how many rows were added
   * and how many of them above the rows the reader is looking at.
   */
  function mergeIntoList(events, freshUntil, { defer = true } = {}) {
    // How far the reader scrolled into the list (a row scrolled partly out counts as out).
    const offset = stickyHeight() - el.rows.getBoundingClientRect().top;
    const merged = [];
    let pushedDown = 0;
    let j = 0;
    for (const event of events) {
      while (j < state.list.length && !listedBefore(event, state.list[j])) merged.push(state.list[j++]);
      if (j === state.list.length && state.nextCursor) {
        if (defer && state.loadingMore) state.deferred.push(event);
        continue;
      }
      if (j * state.rowHeight < offset - 1) pushedDown++;
      merged.push(event);
      state.events.set(event.seq, event);
      if (freshUntil) state.freshUntil.set(event.seq, freshUntil);
    }
    const added = merged.length - j;
    while (j < state.list.length) merged.push(state.list[j++]);
    if (added) state.list = merged;
    return { added, pushedDown };
  }

  /** Whether `a` is listed above `b`: newer timestamp first, then higher seq (timestamps are
   * RFC 3339 text in one fixed UTC format, so they compare as text). */
  function listedBefore(a, b) {
    return a.timestamp === b.timestamp ? a.seq > b.seq : a.timestamp > b.timestamp;
  }

  function expireFresh() {
    const now = Date.now();
    for (const [seq, until] of state.freshUntil) if (until <= now) state.freshUntil.delete(seq);
    invalidate();
  }

  function trimRows() {
    if (state.list.length <= ROWS_MAX) return;
    for (const event of state.list.slice(ROWS_MAX)) {
      state.events.delete(event.seq);
      state.freshUntil.delete(event.seq);
    }
    state.list.length = ROWS_MAX;
    state.trimmed = true;
    state.nextCursor = null;
  }

  // ---------- events ----------

  function bind() {
    el.signinForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const token = el.tokenInput.value.trim();
      if (!token) return;
      state.token = token;
      sessionStorage.setItem(TOKEN_KEY, token);
      startApp();
      // The form that held the focus is hidden: the search box takes it.
      el.q.focus();
    });
    el.signout.addEventListener('click', () => signOut());

    el.searchForm.addEventListener('submit', (e) => {
      e.preventDefault();
      setFilters({ q: el.q.value.trim() });
    });
    el.q.addEventListener('search', () => {
      // The clear button of type=search.
      if (!el.q.value && state.filters.q) setFilters({ q: '' });
    });
    el.action.addEventListener('change', () => setFilters({ action: el.action.value }));
    el.type.addEventListener('change', () => setFilters({ type: el.type.value }));
    el.user.addEventListener('change', () => setFilters({ user: el.user.value }));
    el.tenant.addEventListener('change', () => setFilters({ tenant: el.tenant.value }));
    el.range.addEventListener('change', () => {
      const range = el.range.value;
      if (range === 'custom') {
        const d = domainOf(state.filters);
        setFilters({ range, from: isoMinute(d.from), to: isoMinute(d.to + 6e4) });
      } else {
        setFilters({ range, from: '', to: '' });
      }
    });
    const customChanged = () => {
      const from = fromInputValue(el.from.value);
      const to = fromInputValue(el.to.value);
      if (from && to && Date.parse(from) >= Date.parse(to)) return;
      setFilters({ range: 'custom', from, to });
    };
    el.from.addEventListener('change', customChanged);
    el.to.addEventListener('change', customChanged);
    el.reset.addEventListener('click', () => {
      el.q.value = '';
      setFilters({ ...defaultFilters() });
      // The button is disabled now (nothing left to clear): focus goes to the search box
      // rather than to the page's start.
      el.q.focus();
    });

    el.chart.addEventListener('click', (e) => {
      const bar = e.target.closest('.bar');
      if (!bar || !state.histogram) return;
      const start = Number(bar.dataset.start);
      const { domain, bucketMs } = state.histogram;
      const from = Math.max(start, Math.floor(domain.from / 6e4) * 6e4);
      const to = Math.min(start + bucketMs, Math.ceil(domain.to / 6e4) * 6e4);
      setFilters({ range: 'custom', from: isoMinute(from), to: isoMinute(to) });
    });

    // The chart from the keyboard: arrows (Home, End) move between bars, Enter or Space zooms in.
    el.chart.addEventListener('keydown', (e) => {
      const bar = e.target.closest('.bar');
      if (!bar) return;
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        bar.dispatchEvent(new MouseEvent('click', { bubbles: true }));
        return;
      }
      const bars = [...el.chart.querySelectorAll('.bar')];
      const at = bars.indexOf(bar);
      const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: bars.length - 1 }[e.key];
      if (next === undefined || !bars[next]) return;
      e.preventDefault();
      bar.setAttribute('tabindex', '-1');
      bars[next].setAttribute('tabindex', '0');
      bars[next].focus();
    });

    el.exportBtn.addEventListener('click', exportCsv);
    el.liveToggle.addEventListener('click', () => setLive(!state.live));

    el.rows.addEventListener('click', (e) => {
      const row = e.target.closest('.row');
      if (!row) return;
      const event = state.events.get(Number(row.dataset.seq));
      selectIndex(indexOfSeq(Number(row.dataset.seq)), { scroll: false });
      if (event) openDrawer(event, { focus: false });
    });

    el.grid.addEventListener('keydown', (e) => {
      const current = state.selectedSeq !== null ? indexOfSeq(state.selectedSeq) : -1;
      const last = state.list.length - 1;
      const page = Math.max(1, Math.floor(window.innerHeight / state.rowHeight) - 2);
      let target = -1;
      switch (e.key) {
        case 'ArrowDown': target = current < 0 ? 0 : Math.min(last, current + 1); break;
        case 'ArrowUp': target = current < 0 ? 0 : Math.max(0, current - 1); break;
        case 'Home': target = 0; break;
        case 'End': target = last; break;
        case 'PageDown': target = Math.min(last, Math.max(0, current) + page); break;
        case 'PageUp': target = Math.max(0, current - page); break;
        case 'Enter':
        case ' ':
          if (current >= 0) {
            e.preventDefault();
            const event = state.events.get(state.selectedSeq);
            if (event) openDrawer(event, { focus: false });
          }
          return;
        default: return;
      }
      e.preventDefault();
      if (target === 0) window.scrollTo(0, 0);
      if (target >= 0) {
        selectIndex(target);
        if (!el.drawer.hidden) {
          const event = state.events.get(state.selectedSeq);
          if (event) openDrawer(event, { focus: false });
        }
        if (target >= last - 5) loadMore();
      }
    });
    el.grid.addEventListener('focus', () => {
      if (state.selectedSeq === null && state.list.length) selectIndex(0, { scroll: false });
    });
    window.addEventListener('scroll', scheduleRender, { passive: true });

    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && !el.drawer.hidden) {
        e.preventDefault();
        closeDrawer();
      }
    });
    el.drawerClose.addEventListener('click', () => closeDrawer());
    el.backdrop.addEventListener('click', () => closeDrawer());
    el.drawerBody.addEventListener('click', (e) => {
      const button = e.target.closest('[data-copy]');
      if (!button) return;
      const text = button.dataset.copy === 'link' ? permalinkOf(state.openSeq) : $('raw-json')?.textContent || '';
      navigator.clipboard?.writeText(text).then(() => {
        const old = button.textContent;
        button.textContent = 'Copied';
        setTimeout(() => { button.textContent = old; }, 1200);
      }, () => {});
    });

    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadMore();
    }, { rootMargin: '800px 0px' }).observe(el.sentinel);

    window.addEventListener('popstate', () => {
      state.filters = filtersFromUrl();
      syncControls();
      refresh();
    });
    window.addEventListener('hashchange', () => {
      if (/^#seq=\d+$/.test(location.hash)) openFromHash();
      else closeDrawer({ keepHash: true });
    });
    let resizeTimer = null;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(renderChart, 120);
      measureRowHeight();
      scheduleRender();
    });
    // Leaving the page ends the stream (and a page restored from the back/forward cache resumes).
    window.addEventListener('pagehide', () => {
      if (state.socket) stopLive();
    });
    window.addEventListener('pageshow', (e) => {
      if (e.persisted && state.live) setLive(true);
    });
  }

  // ---------- start ----------

  state.filters = filtersFromUrl();
  bind();
  measureRowHeight();
  setIndicator('off');
  if (state.token) startApp();
  else showSignin();
})();
