// dashboard.mjs - the dashboard (web/) in a real browser: Debian's chromium
// driven by playwright-core.  tests/web_dashboard.sh starts the servers and
// runs it; see there for the setup.
//
// Environment (all set by the wrapper):
//   PLAYWRIGHT_MODULES  the node_modules directory holding playwright-core
//   CHROMIUM_BIN        the browser (default /usr/bin/chromium)
//   DASHBOARD_URL       a gptqd without tokens, its Hub serving gen/tiny-llama
//   DASHBOARD_AUTH_URL  a gptqd started with --token=$DASHBOARD_TOKEN
//   DASHBOARD_TOKEN     that token
//   DASHBOARD_SHOT      where the job page's screenshot goes
//
// Prints one "[web_dashboard] NAME ok" or "[web_dashboard] NAME FAIL: why"
// line per case and exits 1 when any failed.
import { createRequire } from 'node:module';
import { statSync, readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const env = (k, d) => process.env[k] || d;
const require = createRequire(path.join(env('PLAYWRIGHT_MODULES', '.'), 'noop.js'));
const { chromium } = require('playwright-core');

const BASE = env('DASHBOARD_URL');
const AUTH = env('DASHBOARD_AUTH_URL');
const TOKEN = env('DASHBOARD_TOKEN', 'secret');
const SHOT = env('DASHBOARD_SHOT', 'build/dashboard.png');
const SHOT_DIR = path.dirname(SHOT);
const JOB_WAIT_MS = 30000;

let passed = 0, failed = 0;
const say = (m) => console.log(`[web_dashboard] ${m}`);

async function check(name, fn, ms = 45000) {
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${ms / 1000}s`)), ms); }),
    ]);
    passed++;
    say(`${name} ok`);
    return true;
  } catch (e) {
    failed++;
    say(`${name} FAIL: ${(e && e.message ? e.message : String(e)).split('\n').slice(0, 6).join(' | ')}`);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

function assert(cond, msg) { if (!cond) throw new Error(msg); }

// 2000 token ids in [0, 320) from a fixed LCG: the same stream every run.
function tokenIds(n, seed) {
  const out = [];
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out.push(x % 320);
  }
  return out;
}
const IDS = tokenIds(2000, 12345);

async function apiPost(base, p, body, token) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(base + p, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function apiGet(base, p, token) {
  const res = await fetch(base + p, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function waitJob(base, id, token, ms = JOB_WAIT_MS) {
  const end = Date.now() + ms;
  for (;;) {
    const { body } = await apiGet(base, `/v1/jobs/${id}`, token);
    if (body && ['succeeded', 'failed', 'cancelled'].includes(body.status)) return body;
    if (Date.now() > end) throw new Error(`job ${id} still ${body && body.status} after ${ms / 1000}s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const jobBody = (extra) => Object.assign({
  model: 'gen/tiny-llama',
  quantization: { bits: 4, group_size: 32 },
  calibration: { token_ids: IDS, num_samples: 4, seq_len: 32 },
}, extra || {});

// Everything the page asks for must come from its own origin, and every
// HTTP error it meets must be one it expects: a rejected submission (400),
// the token prompt (401), "no artifact yet" (404).
function watch(page, origin, tag) {
  const w = { external: [], errors: [], http: [] };
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:')) w.external.push(u);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const u = new URL(r.url());
    const expected = r.status() === 401 ||
      (r.status() === 400 && r.request().method() === 'POST' && u.pathname === '/v1/jobs') ||
      (r.status() === 404 && /^\/v1\/jobs\/[^/]+\/artifact$/.test(u.pathname));
    if (!expected) w.http.push(`${tag}: ${r.request().method()} ${u.pathname}${u.search} ${r.status()}`);
  });
  page.on('pageerror', (e) => w.errors.push(`${tag}: ${e.message}`));
  page.on('console', (m) => {
    // the browser logs every failed load; those are judged by their status above
    if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) w.errors.push(`${tag}: ${m.text()}`);
  });
  return w;
}

async function fillForm(page, v) {
  await page.fill('#model', v.model);
  await page.check('#src-ids');
  await page.fill('#calib-ids', v.ids);
  await page.selectOption('#bits', String(v.bits));
  await page.fill('#group_size', String(v.group_size));
  await page.fill('#num_samples', String(v.num_samples));
  await page.fill('#seq_len', String(v.seq_len));
  if (v.eval) await page.check('#eval');
}

async function main() {
  assert(BASE && AUTH, 'DASHBOARD_URL and DASHBOARD_AUTH_URL must be set (run tests/web_dashboard.sh)');
  const browser = await chromium.launch({
    executablePath: env('CHROMIUM_BIN', '/usr/bin/chromium'),
    headless: true,
    args: ['--disable-dev-shm-usage', '--disable-gpu', '--no-first-run'],
    timeout: 30000,
  });
  const watchers = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    ctx.setDefaultTimeout(15000);
    const page = await ctx.newPage();
    const w = watch(page, BASE, 'dashboard');
    watchers.push(w);
    let jobId = null;

    await check('loads', async () => {
      const res = await page.goto(`${BASE}/`);
      assert(res.status() === 200, `GET / is ${res.status()}`);
      assert(/text\/html/.test(res.headers()['content-type'] || ''), 'GET / is not text/html');
      await page.getByRole('heading', { name: 'Jobs', level: 1 }).waitFor();
      await page.locator('#jobs-empty').waitFor();
      const css = await page.request.get(`${BASE}/ui/style.css`);
      assert(css.status() === 200 && /text\/css/.test(css.headers()['content-type']), 'style.css is not served as text/css');
      const js = await page.request.get(`${BASE}/ui/app.js`);
      assert(js.status() === 200 && /javascript/.test(js.headers()['content-type']), 'app.js is not served as JavaScript');
      const bg = await page.evaluate(() => getComputedStyle(document.querySelector('.top')).borderBottomStyle);
      assert(bg === 'solid', 'the stylesheet is not applied');
    });

    const form = {
      model: 'gen/tiny-llama', ids: IDS.join(', '), bits: 4, group_size: 0, num_samples: 4, seq_len: 32, eval: true,
    };

    await check('validation message', async () => {
      await page.click('a[data-nav="new"]');
      await page.locator('#job-form').waitFor();
      await fillForm(page, form);
      await page.click('#submit');
      await page.locator('#form-error').waitFor({ state: 'visible' });
      const want = await apiPost(BASE, '/v1/jobs', {
        model: 'gen/tiny-llama', quantization: { bits: 4, group_size: 0 },
        calibration: { token_ids: IDS, num_samples: 4, seq_len: 32 },
      });
      assert(want.status === 400 && want.body.error.field === 'quantization.group_size',
        `the API answered ${want.status} ${JSON.stringify(want.body)}`);
      const msg = await page.textContent('#form-error-msg');
      assert(msg === want.body.error.message, `shown "${msg}", the API says "${want.body.error.message}"`);
      assert(await page.textContent('#form-error-field') === 'quantization.group_size', 'the field is not named');
      assert(await page.getAttribute('#group_size', 'aria-invalid') === 'true', '#group_size is not aria-invalid');
      assert(await page.locator('.field[data-for="group_size"].invalid').count() === 1, 'the field is not highlighted');
      assert((await page.textContent('#group_size-error')).includes('group_size'), 'no message under the field');
      assert(await page.evaluate(() => document.activeElement && document.activeElement.id) === 'group_size',
        'focus is not on the bad field');
      const list = await apiGet(BASE, '/v1/jobs');
      assert(list.body.jobs.length === 0, 'a rejected submission created a job');
      await page.screenshot({ path: path.join(SHOT_DIR, 'dashboard-form.png'), fullPage: true });
    });

    await check('server text is escaped', async () => {
      const evil = 'org/<img src=x onerror="window.__xss=1">';
      await page.fill('#model', evil);
      await page.click('#submit');
      await page.waitForFunction(() => document.querySelector('#form-error-field') &&
        document.querySelector('#form-error-field').textContent === 'model');
      assert(await page.locator('#model[aria-invalid="true"]').count() === 1, '#model is not marked invalid');
      assert(await page.locator('main img').count() === 0, 'an <img> got into the page');
      assert(await page.evaluate(() => window.__xss) === undefined, 'markup from the server ran');
    });

    await check('submit a job', async () => {
      await page.fill('#model', 'gen/tiny-llama');
      await page.fill('#group_size', '32');
      assert(await page.getAttribute('#group_size', 'aria-invalid') === null, 'editing the field does not clear its error');
      await page.click('#submit');
      await page.waitForURL(/#\/$/);
      const note = await page.locator('.notice').textContent();
      const m = /j_[0-9a-f]{20}/.exec(note || '');
      assert(m, `no job id in the notice "${note}"`);
      jobId = m[0];
      const row = page.locator(`tr[data-job-id="${jobId}"]`);
      await row.waitFor();
      assert(await row.locator('[role="progressbar"]').count() === 1, 'the row has no progress bar');
      assert((await row.textContent()).includes('gen/tiny-llama'), 'the row does not show the model');
      await page.locator(`tr[data-job-id="${jobId}"][data-status="succeeded"]`).waitFor({ timeout: JOB_WAIT_MS });
      assert(await row.locator('.badge-succeeded').textContent() === 'succeeded', 'no succeeded badge');
      assert(await row.locator('[role="progressbar"]').getAttribute('aria-valuenow') === '100', 'progress is not 100%');
      assert(await row.locator('time').count() === 1, 'no created time');
      const job = (await apiGet(BASE, `/v1/jobs/${jobId}`)).body;
      assert(job.quantization.group_size === 32 && job.quantization.bits === 4, 'the form sent the wrong quantization');
      assert(job.calibration.token_ids === 2000 && job.calibration.num_samples === 4 && job.calibration.seq_len === 32,
        `the form sent the wrong calibration ${JSON.stringify(job.calibration)}`);
      await page.screenshot({ path: path.join(SHOT_DIR, 'dashboard-list.png') });
    }, JOB_WAIT_MS + 20000);

    await check('job page', async () => {
      assert(jobId, 'no job from the previous case');
      await page.click(`tr[data-job-id="${jobId}"] a`);
      await page.waitForURL(new RegExp(`#/jobs/${jobId}$`));
      await page.locator('#layer-chart').waitFor();
      const layers = page.locator('#layer-chart [data-layer]');
      assert(await layers.count() === 2, `the chart has ${await layers.count()} layer elements, not 2`);
      for (let i = 0; i < 2; i++) {
        const t = await layers.nth(i).locator('title').textContent();
        assert(t && t.startsWith(`Layer ${i}:`) && /GPTQ [0-9.e-]+, RTN [0-9.e-]+/.test(t), `layer ${i} title "${t}"`);
        assert(await layers.nth(i).locator('rect.bar-gptq').count() === 1, `layer ${i} has no GPTQ bar`);
        assert(await layers.nth(i).locator('rect.bar-rtn').count() === 1, `layer ${i} has no RTN bar`);
      }
      assert(await page.locator('#layer-chart .axis-label').count() === 2, 'the chart has no axis labels');
      const art = (await apiGet(BASE, `/v1/jobs/${jobId}/artifact`)).body;
      const digest = await page.textContent('#prov-digest');
      assert(digest === art.calibration.sha256, `calibration digest "${digest}" is not ${art.calibration.sha256}`);
      assert((await page.textContent('#prov-samples')).startsWith('4 × 32'), 'the sample count is not shown');
      assert((await page.textContent('#provenance')).includes(art.source_revision), 'the source revision is not shown');
      assert((await page.textContent('#configuration')).includes('group size'), 'the configuration is not shown');
      assert(await page.textContent('#ppl-before') !== '—' && await page.textContent('#ppl-after') !== '—', 'no perplexity');
      assert(await page.textContent('#gate') === 'no gate', `gate "${await page.textContent('#gate')}"`);
      const link = page.locator('a.file-link[data-file="model.safetensors"]');
      assert(await link.count() === 1, 'no download link for model.safetensors');
      const href = await link.getAttribute('href');
      const res = await page.request.get(new URL(href, BASE).href);
      const size = art.files.find((f) => f.name === 'model.safetensors').size;
      assert(res.status() === 200, `${href} is ${res.status()}`);
      assert((await res.body()).length === size, `${href} is not ${size} bytes`);
      await page.waitForFunction(() => document.querySelectorAll('#event-log li').length >= 5);
      const log = await page.textContent('#event-log');
      assert(log.includes('-> succeeded'), 'the event log does not reach succeeded');
      const seqs = await page.$$eval('#event-log li', (els) => els.map((e) => Number(e.dataset.seq)));
      assert(seqs.every((v, i) => i === 0 || v > seqs[i - 1]), 'events are repeated or out of order');
      assert(!(await page.locator('#cancel').isVisible()), 'a finished job offers a cancel button');
      mkdirSync(SHOT_DIR, { recursive: true });
      await page.screenshot({ path: SHOT, fullPage: true });
      assert(statSync(SHOT).size > 10000, 'the screenshot is empty');
    });

    await check('labels are shown as text', async () => {
      const r = await apiPost(BASE, '/v1/jobs', jobBody({ labels: { note: '<b id="boom">bold</b>' } }));
      assert(r.status === 201, `submission is ${r.status} ${JSON.stringify(r.body)}`);
      await page.goto(`${BASE}/#/jobs/${r.body.id}`);
      await page.locator('#configuration .label').waitFor();
      assert(await page.textContent('#configuration .label') === 'note=<b id="boom">bold</b>', 'the label is not shown as text');
      assert(await page.locator('#boom').count() === 0, 'label markup got into the page');
      await waitJob(BASE, r.body.id);
    });

    await check('cancel', async () => {
      // a long job (many windows), cancelled from its page while it runs
      const r = await apiPost(BASE, '/v1/jobs', jobBody({
        calibration: { token_ids: IDS, num_samples: 4096, seq_len: 128 },
      }));
      assert(r.status === 201, `submission is ${r.status} ${JSON.stringify(r.body)}`);
      await page.goto(`${BASE}/#/jobs/${r.body.id}`);
      await page.locator('#cancel').waitFor({ state: 'visible' });
      await page.screenshot({ path: path.join(SHOT_DIR, 'dashboard-running.png') });
      const [resp] = await Promise.all([
        page.waitForResponse((x) => x.url().endsWith(`/v1/jobs/${r.body.id}/cancel`)),
        page.click('#cancel'),
      ]);
      assert([200, 202].includes(resp.status()), `cancel answered ${resp.status()} (the job was done too soon?)`);
      await page.locator('.job-title .badge-cancelled').waitFor({ timeout: JOB_WAIT_MS });
      await page.locator('#cancel').waitFor({ state: 'hidden' });
    }, JOB_WAIT_MS + 15000);

    await check('pagination', async () => {
      const all = (await apiGet(BASE, '/v1/jobs?limit=1000')).body.jobs.map((j) => j.id);
      assert(all.length === 3, `expected 3 jobs, the server has ${all.length}`);
      const rows = async () => page.$$eval('#jobs-body tr', (els) => els.map((e) => e.dataset.jobId));
      await page.goto(`${BASE}/#/?limit=2`);
      await page.waitForFunction(() => document.querySelectorAll('#jobs-body tr').length === 2);
      assert(JSON.stringify(await rows()) === JSON.stringify(all.slice(0, 2)), 'page 1 is not the first two jobs');
      assert(await page.locator('#page-prev').isDisabled(), 'previous is enabled on the first page');
      await page.waitForFunction(() => !document.querySelector('#page-next').disabled);
      await page.click('#page-next');
      await page.waitForFunction((id) => {
        const r = document.querySelectorAll('#jobs-body tr');
        return r.length === 1 && r[0].dataset.jobId === id;
      }, all[2]);
      assert(await page.locator('#page-next').isDisabled(), 'next is enabled on the last page');
      await page.click('#page-prev');
      await page.waitForFunction(() => document.querySelectorAll('#jobs-body tr').length === 2);
      assert(JSON.stringify(await rows()) === JSON.stringify(all.slice(0, 2)), 'previous does not go back to page 1');
      await page.selectOption('#status-filter', 'cancelled');
      await page.waitForFunction(() => document.querySelectorAll('#jobs-body tr').length === 1);
      assert(await page.locator('#jobs-body tr .badge-cancelled').count() === 1, 'the status filter does not filter');
    });

    // ---- a server with a token ----
    const actx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    actx.setDefaultTimeout(15000);
    const ap = await actx.newPage();
    const aw = watch(ap, AUTH, 'auth');
    watchers.push(aw);
    let authJob = null;

    await check('auth: asks for a token', async () => {
      const r = await apiPost(AUTH, '/v1/jobs', jobBody(), TOKEN);
      assert(r.status === 201, `submission with the token is ${r.status}`);
      authJob = r.body.id;
      const anon = await apiGet(AUTH, '/v1/jobs');
      assert(anon.status === 401, `without a token /v1/jobs is ${anon.status}`);
      await ap.goto(`${AUTH}/`);
      await ap.locator('#auth-form').waitFor();
      assert(await ap.locator('#jobs').count() === 0, 'the job list shows without a token');
      await ap.fill('#token', 'wrong');
      await ap.click('#auth-form button[type="submit"]');
      await ap.waitForFunction(() => (document.querySelector('#token-error') || {}).textContent);
      assert(await ap.locator('#auth-form').isVisible(), 'a wrong token was accepted');
      await ap.screenshot({ path: path.join(SHOT_DIR, 'dashboard-auth.png') });
    });

    await check('auth: lists jobs with the token', async () => {
      assert(authJob, 'no job from the previous case');
      const seen = [];
      ap.on('request', (req) => { if (new URL(req.url()).pathname.startsWith('/v1/')) seen.push(req.headers().authorization); });
      await ap.fill('#token', TOKEN);
      await ap.click('#auth-form button[type="submit"]');
      await ap.locator(`tr[data-job-id="${authJob}"]`).waitFor();
      assert(await ap.evaluate(() => sessionStorage.getItem('gptqd.token')) === TOKEN, 'the token is not in sessionStorage');
      assert(seen.length > 0 && seen.every((x) => x === `Bearer ${TOKEN}`), `a /v1 call went without the token: ${JSON.stringify(seen)}`);
      await ap.reload();
      await ap.locator(`tr[data-job-id="${authJob}"]`).waitFor();
      assert(await ap.locator('#auth-form').count() === 0, 'asked again after a reload');
      assert(await ap.locator('#session').isVisible(), 'no sign of the token in the header');
    });

    await check('auth: download with the token', async () => {
      const done = await waitJob(AUTH, authJob, TOKEN);
      assert(done.status === 'succeeded', `the job ${done.status}`);
      await ap.goto(`${AUTH}/#/jobs/${authJob}`);
      const link = ap.locator('a.file-link[data-file="model.safetensors"]');
      await link.waitFor();
      const plain = await ap.request.get(new URL(await link.getAttribute('href'), AUTH).href);
      assert(plain.status() === 401, `the file without a token is ${plain.status()}`);
      const [dl] = await Promise.all([ap.waitForEvent('download'), link.click()]);
      const file = await dl.path();
      const art = (await apiGet(AUTH, `/v1/jobs/${authJob}/artifact`, TOKEN)).body;
      const want = art.files.find((f) => f.name === 'model.safetensors').size;
      assert(dl.suggestedFilename() === 'model.safetensors', `downloaded as ${dl.suggestedFilename()}`);
      assert(readFileSync(file).length === want, 'the download is not the file');
    });

    await check('no external requests, no script errors', async () => {
      const ext = watchers.flatMap((x) => x.external);
      const errs = watchers.flatMap((x) => [...x.errors, ...x.http]);
      assert(ext.length === 0, `requests outside the server: ${ext.slice(0, 3).join(', ')}`);
      assert(errs.length === 0, errs.slice(0, 3).join(' | '));
    });
  } finally {
    await browser.close();
  }
}

main().then(() => {
  say(`summary passed=${passed} failed=${failed}`);
  process.exit(failed ? 1 : 0);
}, (e) => {
  say(`setup FAIL: ${e && e.message ? e.message.split('\n')[0] : e}`);
  process.exit(2);
});
