/*
 * app.js - the gptqd dashboard: a job list, a job page, a submit form and
 * a bearer-token prompt, over the REST API (openapi.yaml).  No framework
 * and no build step; every piece of server text goes into the page as a
 * text node (never as HTML).
 *
 * Routes (the hash): #/ the job list, #/new the submit form,
 * #/jobs/ID one job.
 */
'use strict';

(function () {
  const TOKEN_KEY = 'gptqd.token';
  const LIST_POLL_MS = 2000;
  const JOB_POLL_MS = 1000;
  const PAGE_SIZE = 25;
  const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
  const STATUSES = ['queued', 'downloading', 'calibrating', 'quantizing', 'writing', 'evaluating',
    'succeeded', 'failed', 'cancelled'];
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const main = document.getElementById('main');
  const noticeArea = document.getElementById('notice');

  /* ---------- DOM helpers (text only, never HTML) ---------- */

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = String(v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /* el's children become these (null, undefined and false left out) */
  function fill(el, ...children) {
    el.textContent = '';
    return append(el, children);
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    return append(el, children);
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    }
    return append(el, children);
  }

  /* ---------- formatting ---------- */

  function fmtTime(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const pad = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function timeEl(iso) {
    return iso ? h('time', { datetime: iso, title: iso }, fmtTime(iso)) : h('span', { class: 'muted' }, '—');
  }

  function fmtDuration(sec) {
    if (sec === null || sec === undefined || !isFinite(sec) || sec < 0) return null;
    if (sec < 10) return `${sec.toFixed(1)}s`;
    sec = Math.round(sec);
    if (sec < 60) return `${sec}s`;
    const m = Math.floor(sec / 60), r = sec % 60;
    if (m < 60) return `${m}m ${String(r).padStart(2, '0')}s`;
    return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
  }

  function fmtBytes(n) {
    if (typeof n !== 'number' || !isFinite(n)) return '—';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
  }

  function fmtNum(x, digits) {
    if (typeof x !== 'number' || !isFinite(x)) return '—';
    return x.toPrecision(digits || 4);
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return '—';
    if (typeof v === 'boolean') return v ? 'yes' : 'no';
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }

  function badge(status) {
    const kind = TERMINAL.has(status) ? status : status === 'queued' ? 'queued' : 'active';
    return h('span', { class: `badge badge-${kind}`, dataset: { status: status } }, status || 'unknown');
  }

  function progressBar(job) {
    const p = job.progress || {};
    const frac = Math.max(0, Math.min(1, Number(p.fraction) || 0));
    const pct = Math.round(frac * 100);
    const fill = h('div', { class: 'bar-fill' });
    fill.style.width = `${pct}%`;
    const active = !TERMINAL.has(job.status) && job.status !== 'queued';
    const bar = h('div', {
      class: `bar bar-${TERMINAL.has(job.status) ? job.status : active ? 'active' : 'queued'}`,
      role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
      'aria-label': `Progress of ${job.id}`,
    }, fill);
    const eta = fmtDuration(p.eta_seconds);
    const parts = [`${pct}%`];
    if (!TERMINAL.has(job.status)) {
      if (p.stage && p.stage !== job.status) parts.push(p.stage.replace(/_/g, ' '));
      if (typeof p.layer === 'number' && typeof p.layers_total === 'number') {
        parts.push(`layer ${Math.min(p.layer + 1, p.layers_total)}/${p.layers_total}`);
      }
      if (eta) parts.push(`ETA ${eta}`);
    }
    return h('div', { class: 'progress' }, bar, h('span', { class: 'progress-text' }, parts.join(' · ')));
  }

  /* ---------- notices ---------- */

  function notice(text, kind, link) {
    const box = h('div', { class: `notice notice-${kind || 'info'}`, role: kind === 'error' ? 'alert' : 'status' },
      h('span', null, text, link || null),
      h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', onclick: () => box.remove() }, '×'));
    box.dataset.at = String(Date.now());
    fill(noticeArea, box);
    if (kind !== 'error') setTimeout(() => box.remove(), 8000);
  }

  /* ---------- the API ---------- */

  class AuthError extends Error {}
  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || `HTTP ${status}`);
      this.status = status;
      this.code = err.code || null;
      this.field = err.field || null;
    }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return ''; }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* storage disabled: the token lives until reload */ }
    memToken = t || '';
    updateSession();
  }
  let memToken = '';
  const currentToken = () => token() || memToken;

  function authHeaders(extra) {
    const hd = Object.assign({ Accept: 'application/json' }, extra || {});
    const t = currentToken();
    if (t) hd.Authorization = `Bearer ${t}`;
    return hd;
  }

  let authPrompted = false;

  async function api(method, path, body) {
    const init = { method, headers: authHeaders(), cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { error: { message: 'the server cannot be reached' } });
    }
    if (res.status === 401) {
      askToken(!!currentToken());
      throw new AuthError('unauthorized');
    }
    let data = null;
    const text = await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) throw new ApiError(res.status, data);
    return { status: res.status, data };
  }

  /* ---------- views and polling ---------- */

  let generation = 0;       /* bumped on every view change: stale pollers stop */
  let timers = [];

  function newView() {
    generation++;
    for (const t of timers) clearTimeout(t);
    timers = [];
    return generation;
  }

  function live(gen) { return gen === generation; }

  function later(gen, ms, fn) {
    if (!live(gen)) return;
    timers.push(setTimeout(() => { if (live(gen)) fn(); }, ms));
  }

  function setNav(which) {
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === which) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  function route() {
    const hash = location.hash || '#/';
    authPrompted = false;
    let m;
    if ((m = /^#\/jobs\/([^/?#]+)$/.exec(hash))) return jobView(decodeURIComponent(m[1]));
    if (hash === '#/new') return formView();
    if ((m = /^#\/?\?(.*)$/.exec(hash))) {
      /* #/?status=S&limit=N: a list that can be linked to */
      const q = new URLSearchParams(m[1]);
      const lim = Number(q.get('limit'));
      const st = q.get('status') || '';
      const limit = Number.isInteger(lim) && lim >= 1 && lim <= 1000 ? lim : PAGE_SIZE;
      if (limit !== listState.limit || st !== listState.status) {
        listState.limit = limit;
        listState.status = STATUSES.includes(st) ? st : '';
        listState.cursors = [null];
        listState.page = 0;
      }
    }
    return listView();
  }

  function handleError(gen, e, where) {
    if (e instanceof AuthError || !live(gen)) return;
    notice(`${where}: ${e.message}`, 'error');
  }

  /* ---------- auth ---------- */

  function updateSession() {
    document.getElementById('session').hidden = !currentToken();
  }

  function askToken(rejected) {
    if (authPrompted) return;
    authPrompted = true;
    if (rejected) setToken('');
    newView();
    setNav(null);
    const input = h('input', {
      id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true,
      'aria-describedby': 'token-help',
    });
    const err = h('p', { class: 'field-error', id: 'token-error', role: 'alert' },
      rejected ? 'The server did not accept that token.' : '');
    if (rejected) input.setAttribute('aria-invalid', 'true');
    const form = h('form', { class: 'card auth', id: 'auth-form', 'aria-labelledby': 'auth-title', novalidate: true },
      h('h1', { id: 'auth-title' }, 'Sign in'),
      h('p', { id: 'token-help' },
        'This server requires a bearer token for its API. It is kept in this tab only (session storage) and sent as ',
        h('code', null, 'Authorization: Bearer …'), ' on every API call.'),
      h('div', { class: 'field' }, h('label', { for: 'token' }, 'Bearer token'), input),
      err,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'btn btn-primary' }, 'Continue')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = input.value.trim();
      if (!t) {
        err.textContent = 'Enter a token.';
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      setToken(t);
      route();
    });
    fill(main, form);
    input.focus();
  }

  /* ---------- the job list ---------- */

  const listState = { cursors: [null], page: 0, status: '', limit: PAGE_SIZE };

  function listView() {
    const gen = newView();
    setNav('jobs');
    const filter = h('select', { id: 'status-filter', name: 'status' },
      h('option', { value: '' }, 'All statuses'),
      STATUSES.map((st) => h('option', { value: st }, st)));
    filter.value = listState.status;
    filter.addEventListener('change', () => {
      listState.status = filter.value;
      listState.cursors = [null];
      listState.page = 0;
      listView();
    });
    const tbody = h('tbody', { id: 'jobs-body' });
    const table = h('table', { class: 'jobs', id: 'jobs' },
      h('caption', { class: 'sr-only' }, 'Jobs, in submission order'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Job'), h('th', { scope: 'col' }, 'Model'),
        h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col', class: 'col-progress' }, 'Progress'),
        h('th', { scope: 'col' }, 'Created'))),
      tbody);
    const empty = h('p', { class: 'empty', id: 'jobs-empty', hidden: true });
    const prev = h('button', { type: 'button', class: 'btn btn-small', id: 'page-prev' }, '← Previous');
    const next = h('button', { type: 'button', class: 'btn btn-small', id: 'page-next' }, 'Next →');
    const pageLabel = h('span', { class: 'muted', 'aria-live': 'polite' });
    prev.addEventListener('click', () => {
      if (listState.page > 0) { listState.page--; listView(); }
    });
    next.addEventListener('click', () => {
      if (listState.cursors[listState.page + 1]) { listState.page++; listView(); }
    });
    const updated = h('span', { class: 'muted small', id: 'jobs-updated' });

    fill(main, 
      h('div', { class: 'page-head' },
        h('h1', null, 'Jobs'),
        h('div', { class: 'page-tools' },
          h('label', { for: 'status-filter', class: 'inline-label' }, 'Status'), filter,
          h('a', { href: '#/new', class: 'btn btn-primary' }, 'New job'))),
      h('div', { class: 'card card-flush' }, h('div', { class: 'table-wrap' }, table), empty),
      h('div', { class: 'pager' }, prev, pageLabel, next, updated));

    const rows = new Map();

    async function poll() {
      const q = new URLSearchParams({ limit: String(listState.limit) });
      const after = listState.cursors[listState.page];
      if (after) q.set('after', after);
      if (listState.status) q.set('status', listState.status);
      try {
        const { data } = await api('GET', `/v1/jobs?${q}`);
        if (!live(gen)) return;
        const jobs = (data && data.jobs) || [];
        listState.cursors[listState.page + 1] = data && data.next ? data.next : null;
        listState.cursors.length = listState.page + 2;
        const seen = new Set();
        const order = [];
        for (const j of jobs) {
          seen.add(j.id);
          let row = rows.get(j.id);
          if (!row) { row = jobRow(); rows.set(j.id, row); }
          row.update(j);
          order.push(row.el);
        }
        for (const [id, row] of rows) if (!seen.has(id)) { row.el.remove(); rows.delete(id); }
        order.forEach((el, i) => { if (tbody.children[i] !== el) tbody.insertBefore(el, tbody.children[i] || null); });
        table.hidden = jobs.length === 0;
        empty.hidden = jobs.length !== 0;
        if (!jobs.length) {
          fill(empty, listState.page > 0 ? 'No more jobs.' :
            listState.status ? `No ${listState.status} jobs.` : 'No jobs yet. ',
          listState.page === 0 && !listState.status ? h('a', { href: '#/new' }, 'Submit one.') : null);
        }
        prev.disabled = listState.page === 0;
        next.disabled = !listState.cursors[listState.page + 1];
        pageLabel.textContent = `Page ${listState.page + 1}`;
        updated.textContent = `Updated ${fmtTime(new Date().toISOString()).slice(11)}`;
      } catch (e) {
        if (e instanceof AuthError) return;
        handleError(gen, e, 'Listing jobs');
      }
      later(gen, document.hidden ? LIST_POLL_MS * 3 : LIST_POLL_MS, poll);
    }
    poll();
  }

  function jobRow() {
    const link = h('a', { class: 'mono' });
    const model = h('td', { class: 'model' });
    const status = h('td');
    const prog = h('td', { class: 'col-progress' });
    const created = h('td');
    const el = h('tr', null, h('th', { scope: 'row' }, link), model, status, prog, created);
    let last = '';
    return {
      el,
      update(j) {
        const key = JSON.stringify([j.status, j.progress, j.model, j.revision, j.created_at]);
        if (key === last) return;
        last = key;
        el.dataset.jobId = j.id;
        el.dataset.status = j.status;
        link.textContent = j.id;
        link.href = `#/jobs/${encodeURIComponent(j.id)}`;
        fill(model, h('span', null, j.model || ''),
          j.revision && j.revision !== 'main' ? h('span', { class: 'muted' }, ` @ ${j.revision}`) : null);
        fill(status, badge(j.status));
        fill(prog, progressBar(j));
        fill(created, timeEl(j.created_at));
      },
    };
  }

  /* ---------- the job page ---------- */

  function section(title, id, ...body) {
    return h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` },
      h('h2', { id: `${id}-title` }, title), body);
  }

  function dl(pairs) {
    return h('dl', { class: 'kv' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  function shaEl(sha) {
    if (!sha) return h('span', { class: 'muted' }, '—');
    return h('code', { class: 'sha', title: sha }, sha);
  }

  function jobView(id) {
    const gen = newView();
    setNav(null);
    const head = h('div', { class: 'page-head job-head' });
    const summary = h('div', { id: 'job-summary' });
    const prov = section('Provenance', 'provenance', h('p', { class: 'muted' }, 'Loading…'));
    const conf = section('Configuration', 'configuration');
    const chartBox = section('Per-layer error', 'layers', h('p', { class: 'muted' }, 'Available once the artifact is written.'));
    const evalBox = section('Perplexity', 'eval', h('p', { class: 'muted' }, 'Available once the artifact is written.'));
    const filesBox = section('Artifact files', 'files', h('p', { class: 'muted' }, 'Available once the artifact is written.'));
    const log = h('ol', { class: 'log', id: 'event-log', role: 'log', 'aria-live': 'polite', 'aria-label': 'Event log', tabindex: 0 });
    const eventsBox = section('Events', 'events', log);

    fill(main, 
      h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← All jobs')),
      head, summary,
      h('div', { class: 'grid' }, prov, conf),
      chartBox,
      h('div', { class: 'grid' }, evalBox, filesBox),
      eventsBox);

    let job = null;
    let artifactDone = false;
    let artifactLoadedFor = '';
    let eventsAfter = 0;
    let eventsDrained = false;

    const idEl = h('span', { class: 'mono', id: 'job-id' }, id);
    const badgeHolder = h('span', { class: 'badge-holder' });
    const subtitle = h('p', { class: 'subtitle' });
    const cancelBtn = h('button', { type: 'button', class: 'btn btn-danger', id: 'cancel', hidden: true }, 'Cancel job');
    cancelBtn.addEventListener('click', () => doCancel(cancelBtn));
    fill(head, 
      h('div', null, h('h1', { class: 'job-title' }, idEl, ' ', badgeHolder), subtitle),
      h('div', { class: 'page-tools' }, cancelBtn));

    function renderHead() {
      idEl.textContent = job.id;
      fill(badgeHolder, badge(job.status));
      fill(subtitle, job.model || '', job.revision ? h('span', { class: 'muted' }, ` @ ${job.revision}`) : null);
      const finished = TERMINAL.has(job.status);
      if (finished && cancelBtn === document.activeElement) main.focus({ preventScroll: true });
      cancelBtn.hidden = finished;
      if (!cancelBtn.dataset.busy) {
        cancelBtn.disabled = !!job.cancel_requested;
        cancelBtn.textContent = job.cancel_requested ? 'Cancelling…' : 'Cancel job';
      }
      const times = [
        ['Created', timeEl(job.created_at)],
        ['Started', timeEl(job.started_at)],
        ['Finished', timeEl(job.finished_at)],
      ];
      if (job.started_at) {
        const end = job.finished_at ? new Date(job.finished_at) : new Date();
        const d = fmtDuration((end - new Date(job.started_at)) / 1000);
        if (d) times.push(['Duration', d]);
      }
      times.push(['Attempts', String(job.attempts ?? '—')]);
      fill(summary, h('div', { class: 'card summary' },
        progressBar(job),
        job.error ? h('p', { class: 'job-error', role: 'alert' },
          h('strong', null, job.error.code || 'error'), ': ', job.error.message || '') : null,
        h('dl', { class: 'stats' }, times.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))))));
    }

    async function doCancel(btn) {
      btn.disabled = true;
      btn.dataset.busy = '1';
      btn.textContent = 'Cancelling…';
      try {
        const { status, data } = await api('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
        if (!live(gen)) return;
        notice(status === 202 ? 'Cancellation requested: the job stops at its next block.' : 'Job cancelled.', 'info');
        delete btn.dataset.busy;
        if (data) { job = data; lastKey = ''; renderAll(); }
      } catch (e) {
        delete btn.dataset.busy;
        if (e instanceof AuthError) return;
        btn.disabled = false;
        btn.textContent = 'Cancel job';
        handleError(gen, e, 'Cancelling');
      }
    }

    function renderProvenance(art) {
      const cal = (art && art.calibration) || job.calibration || {};
      const samples = cal.num_samples !== undefined
        ? `${cal.num_samples} × ${cal.seq_len ?? '?'} tokens` : '—';
      const src = cal.source ? `${cal.source}${cal.builtin ? ` (${cal.builtin})` : ''}` : '—';
      fill(prov, h('h2', { id: 'provenance-title' }, 'Provenance'), dl([
        ['Model', h('span', { id: 'prov-model' }, job.model || '—')],
        ['Revision', job.revision || '—'],
        ['Source revision', shaEl((art && art.source_revision) || job.source_revision)],
        ['Calibration source', src],
        ['Calibration samples', h('span', { id: 'prov-samples' }, samples)],
        ['Calibration seed', fmtValue(cal.seed)],
        ['Calibration digest', cal.sha256 ? h('span', { id: 'prov-digest' }, shaEl(cal.sha256))
          : h('span', { class: 'muted' }, art ? '—' : 'known once calibration ran')],
      ]));
    }

    function renderConfig() {
      const q = job.quantization || {};
      const pairs = Object.entries(q).map(([k, v]) => [k.replace(/_/g, ' '), h('span', { class: 'mono' }, fmtValue(v))]);
      const out = job.output || {};
      if (out.shard_size !== undefined) pairs.push(['shard size', out.shard_size ? fmtBytes(out.shard_size) : 'one file']);
      if (typeof job.priority === 'number') pairs.push(['priority', String(job.priority)]);
      const labels = Object.entries(job.labels || {});
      fill(conf, h('h2', { id: 'configuration-title' }, 'Configuration'), dl(pairs),
        labels.length ? h('ul', { class: 'labels', 'aria-label': 'Labels' },
          labels.map(([k, v]) => h('li', { class: 'label' }, `${k}=${v}`))) : null);
    }

    function renderArtifact(art) {
      renderProvenance(art);
      renderChart(art);
      renderEval(art);
      renderFiles(art);
    }

    function renderChart(art) {
      const layers = Array.isArray(art.layers) ? art.layers : [];
      const box = [h('h2', { id: 'layers-title' }, 'Per-layer error')];
      if (!layers.length) {
        box.push(h('p', { class: 'muted' }, 'The artifact has no per-layer metrics.'));
        fill(chartBox, ...box);
        return;
      }
      box.push(h('p', { class: 'muted small' },
        'Relative output error of each layer (mean over its quantized modules): GPTQ against round-to-nearest (RTN) on the same weights. Lower is better.'));
      box.push(layerChart(layers));
      box.push(moduleTable(layers));
      fill(chartBox, ...box);
    }

    function renderEval(art) {
      const ev = art.eval;
      const kids = [h('h2', { id: 'eval-title' }, 'Perplexity')];
      if (!ev) {
        kids.push(h('p', { class: 'muted' }, job.eval ? (TERMINAL.has(job.status) ? 'Not evaluated.' : 'Evaluating…')
          : 'No evaluation was requested for this job.'));
      } else {
        const ratio = ev.ppl_ratio;
        const gate = ev.gate || 'none';
        kids.push(h('div', { class: 'ppl' },
          h('div', { class: 'ppl-item' }, h('span', { class: 'ppl-label' }, 'Before'), h('span', { class: 'ppl-value', id: 'ppl-before' }, fmtNum(ev.ppl_before, 5))),
          h('span', { class: 'ppl-arrow', 'aria-hidden': 'true' }, '→'),
          h('div', { class: 'ppl-item' }, h('span', { class: 'ppl-label' }, 'After'), h('span', { class: 'ppl-value', id: 'ppl-after' }, fmtNum(ev.ppl_after, 5))),
          h('div', { class: 'ppl-item' }, h('span', { class: 'ppl-label' }, 'Ratio'),
            h('span', { class: `ppl-value ${ratio > 1 ? 'worse' : 'better'}`, id: 'ppl-ratio' }, typeof ratio === 'number' ? `×${ratio.toFixed(4)}` : '—'))));
        kids.push(dl([
          ['Gate', h('span', { class: `badge badge-gate-${gate}`, id: 'gate' }, gate === 'none' ? 'no gate' : gate)],
          ev.max_ppl_ratio ? ['Max ratio', `×${ev.max_ppl_ratio}`] : null,
          ev.tokens !== undefined ? ['Tokens', `${ev.tokens} (${ev.blocks} × ${ev.seq_len})`] : null,
        ]));
      }
      fill(evalBox, ...kids);
    }

    function renderFiles(art) {
      const files = Array.isArray(art.files) ? art.files : [];
      const rows = files.map((f) => {
        const a = h('a', { href: f.url, download: f.name, class: 'file-link', dataset: { file: f.name } }, f.name);
        a.addEventListener('click', (ev) => download(ev, f));
        return h('tr', null, h('th', { scope: 'row' }, a), h('td', { class: 'num' }, fmtBytes(f.size)),
          h('td', null, h('code', { class: 'sha', title: `SHA-256 ${f.sha256}` }, f.sha256 ? f.sha256.slice(0, 16) + '…' : '—')));
      });
      fill(filesBox, h('h2', { id: 'files-title' }, 'Artifact files'),
        files.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'files' },
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'File'), h('th', { scope: 'col', class: 'num' }, 'Size'),
            h('th', { scope: 'col' }, 'SHA-256'))),
          h('tbody', null, rows))) : h('p', { class: 'muted' }, 'No files.'),
        h('p', { class: 'muted small' }, `Total ${fmtBytes(art.bytes)}`));
    }

    /* With a token, a plain link would be refused (401): fetch it with the header and hand the browser a blob. */
    async function download(ev, f) {
      if (!currentToken()) return;
      ev.preventDefault();
      try {
        const res = await fetch(f.url, { headers: authHeaders({ Accept: '*/*' }) });
        if (res.status === 401) { askToken(true); return; }
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const url = URL.createObjectURL(await res.blob());
        const a = h('a', { href: url, download: f.name, hidden: true });
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60000);
      } catch (e) {
        notice(`Downloading ${f.name}: ${e.message}`, 'error');
      }
    }

    let lastKey = '';
    function renderAll() {
      const key = JSON.stringify(job);
      if (key === lastKey && TERMINAL.has(job.status)) return;
      lastKey = key;
      renderHead();
      renderConfig();
      if (!artifactLoadedFor) renderProvenance(null);
    }

    async function loadArtifact() {
      try {
        const { data } = await api('GET', `/v1/jobs/${encodeURIComponent(id)}/artifact`);
        if (!live(gen) || !data) return;
        artifactLoadedFor = job.status;
        renderArtifact(data);
        if (TERMINAL.has(job.status)) artifactDone = true;
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) {
          if (TERMINAL.has(job.status)) {
            artifactDone = true;
            const msg = `No artifact: the job ${job.status === 'succeeded' ? 'has none' : `is ${job.status}`}.`;
            for (const [box, title, tid] of [[chartBox, 'Per-layer error', 'layers-title'], [evalBox, 'Perplexity', 'eval-title'], [filesBox, 'Artifact files', 'files-title']]) {
              fill(box, h('h2', { id: tid }, title), h('p', { class: 'muted' }, msg));
            }
          }
          return;
        }
        handleError(gen, e, 'Loading the artifact');
      }
    }

    const levelClass = (lv) => `lv-${['debug', 'info', 'warn', 'error'].includes(lv) ? lv : 'info'}`;

    async function loadEvents() {
      try {
        for (let i = 0; i < 20; i++) {
          const { data } = await api('GET', `/v1/jobs/${encodeURIComponent(id)}/events?after=${eventsAfter}&limit=200`);
          if (!live(gen) || !data) return;
          const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
          for (const ev of data.events || []) {
            log.appendChild(h('li', { class: `ev ev-${ev.kind} ${levelClass(ev.level)}`, dataset: { seq: ev.seq } },
              h('time', { datetime: ev.time, title: ev.time, class: 'ev-time' }, fmtTime(ev.time).slice(11)),
              h('span', { class: 'ev-kind' }, ev.kind),
              h('span', { class: 'ev-msg' }, ev.message || '')));
          }
          if (typeof data.next === 'number') eventsAfter = data.next;
          if (stick) log.scrollTop = log.scrollHeight;
          if (!data.more) break;
        }
        if (job && TERMINAL.has(job.status)) eventsDrained = true;
      } catch (e) {
        handleError(gen, e, 'Loading events');
      }
    }

    async function poll() {
      try {
        const { data } = await api('GET', `/v1/jobs/${encodeURIComponent(id)}`);
        if (!live(gen)) return;
        job = data;
        document.title = `${job.id} · ${job.status} · gptqd`;
        renderAll();
        const wantArtifact = ['writing', 'evaluating', 'succeeded', 'failed'].includes(job.status);
        if (wantArtifact && !artifactDone && artifactLoadedFor !== job.status) await loadArtifact();
        else if (TERMINAL.has(job.status) && !artifactDone) await loadArtifact();
        if (!eventsDrained) await loadEvents();
      } catch (e) {
        if (e instanceof AuthError) return;
        if (e instanceof ApiError && e.status === 404) {
          if (!live(gen)) return;
          fill(main, h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← All jobs')),
            h('div', { class: 'card' }, h('h1', null, 'Job not found'), h('p', null, e.message)));
          return;
        }
        handleError(gen, e, 'Loading the job');
      }
      if (!job || !TERMINAL.has(job.status) || !artifactDone || !eventsDrained) {
        later(gen, document.hidden ? JOB_POLL_MS * 3 : JOB_POLL_MS, poll);
      }
    }
    poll();
  }

  /* The per-layer chart: one group per layer (GPTQ bar, RTN bar), inline SVG. */
  function layerChart(layers) {
    const data = layers.map((l, i) => {
      const mods = Array.isArray(l.modules) ? l.modules.filter((m) => m.quantized !== false) : [];
      const mean = (key) => {
        const xs = mods.map((m) => m[key]).filter((x) => typeof x === 'number' && isFinite(x));
        return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null;
      };
      const gptq = typeof l.out_rel_mean === 'number' ? l.out_rel_mean : mean('out_rel');
      return { layer: typeof l.layer === 'number' ? l.layer : i, gptq, rtn: mean('rtn_out_rel'), n: mods.length };
    });
    const maxV = Math.max(1e-12, ...data.flatMap((d) => [d.gptq || 0, d.rtn || 0]));
    const ticks = niceTicks(maxV, 5);
    const top = ticks[ticks.length - 1];
    const W = 760, H = 280, ml = 64, mr = 16, mt = 16, mb = 52;
    const pw = W - ml - mr, ph = H - mt - mb;
    const band = pw / data.length;
    const barW = Math.max(2, Math.min(44, band * 0.3));
    const y = (v) => mt + ph - (v / top) * ph;
    const digits = Math.max(0, -Math.floor(Math.log10(top / 5)));
    const tickFmt = (v) => (top < 0.001 ? v.toExponential(1) : v.toFixed(Math.min(digits + 1, 6)));

    const svg = s('svg', {
      class: 'chart', id: 'layer-chart', viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-labelledby': 'chart-title chart-desc', preserveAspectRatio: 'xMidYMid meet',
    });
    svg.appendChild(s('title', { id: 'chart-title' }, 'Relative output error per layer'));
    svg.appendChild(s('desc', { id: 'chart-desc' },
      `${data.length} layers; GPTQ mean from ${fmtNum(Math.min(...data.map((d) => d.gptq ?? Infinity)), 3)} to ${fmtNum(Math.max(...data.map((d) => d.gptq ?? -Infinity)), 3)}.`));
    const grid = s('g', { class: 'grid-lines' });
    for (const t of ticks) {
      grid.appendChild(s('line', { x1: ml, x2: W - mr, y1: y(t), y2: y(t), class: t === 0 ? 'axis' : 'gridline' }));
      grid.appendChild(s('text', { x: ml - 8, y: y(t) + 4, class: 'tick', 'text-anchor': 'end' }, tickFmt(t)));
    }
    svg.appendChild(grid);
    svg.appendChild(s('text', {
      class: 'axis-label', 'text-anchor': 'middle', transform: `translate(14 ${mt + ph / 2}) rotate(-90)`,
    }, 'relative output error'));
    svg.appendChild(s('text', { class: 'axis-label', 'text-anchor': 'middle', x: ml + pw / 2, y: H - 8 }, 'layer'));

    const labelEvery = Math.ceil(data.length / 24);
    const bars = s('g', { class: 'bars' });
    data.forEach((d, i) => {
      const cx = ml + band * (i + 0.5);
      const g = s('g', { class: 'layer', 'data-layer': d.layer, tabindex: 0 });
      g.appendChild(s('title', null,
        `Layer ${d.layer}: GPTQ ${fmtNum(d.gptq, 4)}, RTN ${fmtNum(d.rtn, 4)}` +
        (d.gptq && d.rtn ? ` (${((1 - d.gptq / d.rtn) * 100).toFixed(0)}% lower)` : '') + `, ${d.n} modules`));
      g.appendChild(s('rect', { class: 'hit', x: cx - band / 2, y: mt, width: band, height: ph }));
      if (d.gptq !== null) {
        g.appendChild(s('rect', { class: 'bar-gptq', x: cx - barW - 1, y: y(d.gptq), width: barW, height: Math.max(0.5, mt + ph - y(d.gptq)), rx: 2 }));
      }
      if (d.rtn !== null) {
        g.appendChild(s('rect', { class: 'bar-rtn', x: cx + 1, y: y(d.rtn), width: barW, height: Math.max(0.5, mt + ph - y(d.rtn)), rx: 2 }));
      }
      if (i % labelEvery === 0) {
        g.appendChild(s('text', { class: 'tick', x: cx, y: mt + ph + 18, 'text-anchor': 'middle' }, String(d.layer)));
      }
      bars.appendChild(g);
    });
    svg.appendChild(bars);

    const legend = h('ul', { class: 'legend' },
      h('li', null, h('span', { class: 'swatch swatch-gptq', 'aria-hidden': 'true' }), 'GPTQ (mean out_rel)'),
      h('li', null, h('span', { class: 'swatch swatch-rtn', 'aria-hidden': 'true' }), 'RTN (mean rtn_out_rel)'));
    return h('figure', { class: 'chart-figure' }, svg, h('figcaption', null, legend));
  }

  function niceTicks(max, n) {
    const raw = max / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || 10 * mag;
    const out = [];
    for (let v = 0; v <= max + step * 0.999; v += step) out.push(Number(v.toPrecision(12)));
    if (out.length < 2) out.push(step);
    return out;
  }

  function moduleTable(layers) {
    const rows = [];
    for (const l of layers) {
      for (const m of l.modules || []) {
        rows.push(h('tr', null,
          h('td', { class: 'num' }, String(l.layer)),
          h('th', { scope: 'row', class: 'mono' }, m.name || ''),
          h('td', { class: 'num' }, m.quantized === false ? 'skipped' : `${m.bits ?? '?'} / ${m.group_size ?? '?'}`),
          h('td', { class: 'num' }, fmtNum(m.out_rel, 4)),
          h('td', { class: 'num' }, fmtNum(m.rtn_out_rel, 4)),
          h('td', { class: 'num' }, fmtNum(m.avg_loss, 4))));
      }
    }
    return h('details', { class: 'modules' },
      h('summary', null, `Per-module detail (${rows.length} modules)`),
      h('div', { class: 'table-wrap' }, h('table', { class: 'module-table' },
        h('thead', null, h('tr', null,
          h('th', { scope: 'col', class: 'num' }, 'Layer'), h('th', { scope: 'col' }, 'Module'),
          h('th', { scope: 'col', class: 'num' }, 'Bits / group'), h('th', { scope: 'col', class: 'num' }, 'GPTQ out_rel'),
          h('th', { scope: 'col', class: 'num' }, 'RTN out_rel'), h('th', { scope: 'col', class: 'num' }, 'Avg loss'))),
        h('tbody', null, rows))));
  }

  /* ---------- the submit form ---------- */

  const formDraft = {};

  function formView() {
    newView();
    setNav('new');
    const field = (id, label, input, help) => {
      input.id = id;
      if (!input.name) input.name = id;
      const errId = `${id}-error`;
      const helpId = help ? `${id}-help` : null;
      input.setAttribute('aria-describedby', [helpId, errId].filter(Boolean).join(' '));
      return h('div', { class: 'field', dataset: { for: id } },
        h('label', { for: id }, label), input,
        help ? h('p', { class: 'help', id: helpId }, help) : null,
        h('p', { class: 'field-error', id: errId }));
    };
    const check = (id, label, checked, apiField, help) => {
      const input = h('input', { type: 'checkbox', id, name: id, checked: checked || null, dataset: { field: apiField } });
      return h('div', { class: 'field field-check', dataset: { for: id } },
        input, h('label', { for: id }, label),
        help ? h('p', { class: 'help' }, help) : null,
        h('p', { class: 'field-error', id: `${id}-error` }));
    };
    const num = (apiField, value, extra) => h('input', Object.assign({
      type: 'number', inputmode: 'numeric', value, dataset: { field: apiField },
    }, extra || {}));

    const model = h('input', { type: 'text', required: true, spellcheck: 'false', autocomplete: 'off', placeholder: 'org/name or local:NAME', dataset: { field: 'model' } });
    const revision = h('input', { type: 'text', value: 'main', spellcheck: 'false', autocomplete: 'off', dataset: { field: 'revision' } });
    const bits = h('select', { dataset: { field: 'quantization.bits' } }, [2, 3, 4, 8].map((b) => h('option', { value: b, selected: b === 4 ? true : null }, `${b}-bit`)));
    const groupSize = num('quantization.group_size', '128', { step: 1 });
    const textsArea = h('textarea', { rows: 7, spellcheck: 'false', dataset: { field: 'calibration.texts' }, placeholder: 'One calibration text per paragraph.\n\nSeparate texts with a blank line.' });
    const idsArea = h('textarea', { rows: 7, spellcheck: 'false', dataset: { field: 'calibration.token_ids' }, placeholder: '1, 15043, 29892, 3186, …' });
    const numSamples = num('calibration.num_samples', '128', { min: 1, step: 1 });
    const seqLen = num('calibration.seq_len', '2048', { min: 2, step: 1 });
    const maxRatio = h('input', { type: 'number', step: 'any', inputmode: 'decimal', placeholder: 'none', dataset: { field: 'eval.max_ppl_ratio' } });

    const srcTexts = h('input', { type: 'radio', name: 'calib-source', id: 'src-texts', value: 'texts', checked: true });
    const srcIds = h('input', { type: 'radio', name: 'calib-source', id: 'src-ids', value: 'token_ids' });
    const textsField = field('calib-texts', 'Calibration texts', textsArea, 'Each blank-line-separated paragraph is one text; the server tokenizes them with the model\'s tokenizer.');
    const idsField = field('calib-ids', 'Calibration token ids', idsArea, 'A comma-separated token stream; windows of seq_len tokens are sampled from it.');
    const syncSource = () => {
      textsField.hidden = !srcTexts.checked;
      idsField.hidden = !srcIds.checked;
    };
    srcTexts.addEventListener('change', syncSource);
    srcIds.addEventListener('change', syncSource);

    const summaryErr = h('div', { class: 'form-error', id: 'form-error', role: 'alert', tabindex: -1, hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'submit' }, 'Submit job');

    const form = h('form', { id: 'job-form', class: 'job-form', novalidate: true, 'aria-labelledby': 'form-title' },
      summaryErr,
      h('fieldset', { class: 'card' }, h('legend', null, 'Model'),
        h('div', { class: 'row' },
          field('model', 'Model', model, 'A Hub repo id, pinned to its commit when the job starts.'),
          field('revision', 'Revision', revision, 'Branch, tag or commit.'))),
      h('fieldset', { class: 'card' }, h('legend', null, 'Quantization'),
        h('div', { class: 'row row-4' },
          field('bits', 'Bits', bits),
          field('group_size', 'Group size', groupSize, '-1 for one group per row.'),
          check('desc_act', 'Activation order (desc_act)', false, 'quantization.desc_act'),
          check('sym', 'Symmetric (sym)', true, 'quantization.sym'))),
      h('fieldset', { class: 'card' }, h('legend', null, 'Calibration'),
        h('div', { class: 'radio-row', role: 'radiogroup', 'aria-label': 'Calibration source' },
          h('span', { class: 'radio' }, srcTexts, h('label', { for: 'src-texts' }, 'Texts')),
          h('span', { class: 'radio' }, srcIds, h('label', { for: 'src-ids' }, 'Token ids'))),
        textsField, idsField,
        h('div', { class: 'row' },
          field('num_samples', 'Samples', numSamples, 'Calibration windows.'),
          field('seq_len', 'Sequence length', seqLen, 'Tokens per window.'))),
      h('fieldset', { class: 'card' }, h('legend', null, 'Evaluation'),
        check('eval', 'Measure perplexity before and after, on the calibration data', false, 'eval'),
        h('div', { class: 'row' }, field('max_ppl_ratio', 'Maximum perplexity ratio (gate)', maxRatio, 'Optional: the job fails above it (the artifact is kept).'))),
      h('div', { class: 'actions' }, submit, h('a', { href: '#/', class: 'btn btn-quiet' }, 'Cancel')));

    const controls = [model, revision, bits, groupSize, textsArea, idsArea, numSamples, seqLen, maxRatio];
    const evalBox = form.querySelector('#eval');
    const descAct = form.querySelector('#desc_act');
    const sym = form.querySelector('#sym');

    /* keep what was typed when the user leaves and comes back */
    for (const c of [...controls, evalBox, descAct, sym, srcTexts, srcIds]) {
      const key = c.id;
      if (key in formDraft) {
        if (c.type === 'checkbox' || c.type === 'radio') c.checked = formDraft[key];
        else c.value = formDraft[key];
      }
      c.addEventListener('input', () => {
        formDraft[key] = c.type === 'checkbox' || c.type === 'radio' ? c.checked : c.value;
        if (c.type === 'radio') formDraft[c === srcTexts ? 'src-ids' : 'src-texts'] = !c.checked;
        clearFieldError(c);
      });
    }
    syncSource();

    function clearFieldError(c) {
      c.removeAttribute('aria-invalid');
      const wrap = c.closest('.field');
      if (wrap) {
        wrap.classList.remove('invalid');
        const fe = wrap.querySelector('.field-error');
        if (fe) fe.textContent = '';
      }
    }

    function clearErrors() {
      summaryErr.hidden = true;
      fill(summaryErr);
      for (const el of form.querySelectorAll('[aria-invalid]')) clearFieldError(el);
    }

    /* The control an API field names: the longest data-field that is the field or a prefix of it. */
    function controlFor(apiField) {
      if (!apiField) return null;
      let best = null, bestLen = -1;
      for (const el of form.querySelectorAll('[data-field]')) {
        const f = el.dataset.field;
        const ok = apiField === f || apiField.startsWith(`${f}.`) || apiField.startsWith(`${f}[`);
        if (!ok || f.length <= bestLen) continue;
        const wrap = el.closest('.field');
        if (wrap && wrap.hidden) continue;
        best = el; bestLen = f.length;
      }
      if (!best && (apiField === 'calibration' || apiField.startsWith('calibration.'))) {
        best = srcIds.checked ? idsArea : textsArea;
      }
      return best;
    }

    function showError(message, apiField) {
      const ctl = controlFor(apiField);
      fill(summaryErr, 
        h('strong', null, 'The server did not accept the job.'), ' ',
        h('span', { class: 'form-error-msg', id: 'form-error-msg' }, message),
        apiField ? h('span', { class: 'form-error-field' }, ' (field ', h('code', { id: 'form-error-field' }, apiField), ')') : null);
      summaryErr.hidden = false;
      if (ctl) {
        ctl.setAttribute('aria-invalid', 'true');
        const wrap = ctl.closest('.field');
        if (wrap) {
          wrap.classList.add('invalid');
          const fe = wrap.querySelector('.field-error');
          if (fe) fe.textContent = message;
        }
        ctl.focus();
      } else {
        summaryErr.focus();
      }
    }

    /* a number when the text is one; otherwise the text itself, for the server to name */
    const numOrText = (v) => (v.trim() === '' ? undefined : isFinite(Number(v)) ? Number(v) : v);

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors();
      const body = { model: model.value.trim() };
      if (revision.value.trim()) body.revision = revision.value.trim();
      const q = { bits: Number(bits.value), desc_act: descAct.checked, sym: sym.checked };
      const gs = numOrText(groupSize.value);
      if (gs !== undefined) q.group_size = gs;
      body.quantization = q;
      const cal = {};
      let source;
      if (srcIds.checked) {
        const parts = idsArea.value.split(/[\s,]+/).filter(Boolean);
        const bad = parts.find((p) => !/^\d+$/.test(p));
        if (bad !== undefined) {
          showError(`token ids must be non-negative integers separated by commas (got "${bad.slice(0, 40)}")`, 'calibration.token_ids');
          return;
        }
        if (!parts.length) {
          showError('enter at least one token id', 'calibration.token_ids');
          return;
        }
        cal.token_ids = parts.map(Number);
        source = { token_ids: cal.token_ids };
      } else {
        const texts = textsArea.value.split(/\n\s*\n/).map((t) => t.trim()).filter(Boolean);
        if (!texts.length) {
          showError('enter at least one calibration text', 'calibration.texts');
          return;
        }
        cal.texts = texts;
        source = { texts };
      }
      const ns = numOrText(numSamples.value);
      if (ns !== undefined) cal.num_samples = ns;
      const sl = numOrText(seqLen.value);
      if (sl !== undefined) cal.seq_len = sl;
      body.calibration = cal;
      if (evalBox.checked) {
        body.eval = Object.assign({}, source);
        const mr = numOrText(maxRatio.value);
        if (mr !== undefined) body.eval.max_ppl_ratio = mr;
      }
      submit.disabled = true;
      submit.textContent = 'Submitting…';
      try {
        const { data } = await api('POST', '/v1/jobs', body);
        for (const k of Object.keys(formDraft)) delete formDraft[k];
        notice(`Job ${data.id} submitted.`, 'success', h('a', { href: `#/jobs/${encodeURIComponent(data.id)}` }, ' Open it'));
        listState.cursors = [null];
        listState.page = 0;
        listState.status = '';
        location.hash = '#/';
      } catch (e) {
        if (e instanceof AuthError) return;
        if (e instanceof ApiError && e.status >= 400 && e.status < 500) showError(e.message, e.field);
        else showError(`${e.message}`, null);
      } finally {
        submit.disabled = false;
        submit.textContent = 'Submit job';
      }
    });

    fill(main, 
      h('div', { class: 'page-head' }, h('h1', { id: 'form-title' }, 'New quantization job')),
      form);
    model.focus();
  }

  /* ---------- start ---------- */

  document.getElementById('signout').addEventListener('click', () => {
    setToken('');
    route();
  });
  window.addEventListener('hashchange', () => {
    /* a notice from the previous page goes, unless it announces this navigation */
    for (const n of noticeArea.querySelectorAll('.notice')) {
      if (Date.now() - Number(n.dataset.at || 0) > 1500) n.remove();
    }
    route();
    main.focus({ preventScroll: true });
  });
  updateSession();
  route();
})();
