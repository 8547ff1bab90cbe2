// The dashboard in a real browser: Debian's chromium (headless, via playwright-core) on
// the real binary with data from the native API, OTLP (Python SDK) and OpenClaw.
// Run: node --test tests/browser/*.test.mjs  (after scripts/setup-browser.sh and cargo build --bins)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, copyFileSync, writeFileSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { ROOT, startDaemon, launch, watchedPage, post, getJson, until, hex } from './harness.mjs';
import { seed, XSS_NAME, XSS_INPUT } from './seed.mjs';
import * as fmt from '../../web/lib/format.js';

const SHOTS = join(ROOT, 'target', 'screenshots');
const T = { timeout: 60_000 };
let daemon;
let browser;
let ids;
let agentProc;
let started;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  // A stand-in agent process the host collectors watch (its pid in a file).
  agentProc = spawn('sleep', ['600'], { stdio: 'ignore' });
  const pidFile = join(ROOT, 'target', `agent-${process.pid}.pid`);
  writeFileSync(pidFile, String(agentProc.pid));
  started = Date.now();
  daemon = await startDaemon({
    OCT_HOST_DISABLE: 'dns,diskio,processes',
    OCT_METRICS_INTERVAL: '1s',
    OCT_AGENT_PID_FILE: pidFile,
    OCT_AGENT_POLL_INTERVAL: '1s',
    OCT_BASELINE_MIN_RUNS: '5',
    OCT_BASELINE_SETTLE: '1s',
    OCT_BUDGETS: 'global/day=$1, agent:alpha/day=$0.05',
    // Any used disk crosses 1 %: an open disk_high condition for the overview and errors.
    OCT_DISK_ALERT_THRESHOLD: '1',
  });
  ids = await seed(daemon.base);
  // An evaluation score on the first run (an LLM judge's), shown on its page.
  await post(daemon.base, '/v1/scores', { trace_id: ids.a1.trace, name: 'relevance', value: 0.82, label: 'good', explanation: 'answers the question' });
  browser = await launch();
}, { timeout: 150_000 });

after(async () => {
  if (browser) await browser.close();
  if (daemon) await daemon.stop();
  if (agentProc) agentProc.kill();
});

async function open(hash) {
  const w = await watchedPage(browser.context);
  await w.page.goto(`${daemon.base}/${hash}`, { waitUntil: 'load', timeout: 15_000 });
  return w;
}

function clean(w, what) {
  assert.deepEqual(w.problems, [], `${what}: console errors or failed requests`);
  assert.deepEqual(w.dialogs, [], `${what}: a dialog opened`);
}

async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  if (process.env.OCT_UPDATE_SCREENSHOTS === '1') {
    mkdirSync(join(ROOT, 'docs', 'screenshots'), { recursive: true });
    copyFileSync(path, join(ROOT, 'docs', 'screenshots', `${name}.png`));
  }
}

const rowsOf = (page) => page.$$eval('tbody tr[data-trace]', (trs) => trs.map((t) => t.dataset.trace).sort());

test('every page renders with no console error and no failed request', { timeout: 120_000 }, async () => {
  // Baseline checks and host samples need a few seconds after the seed.
  await until(async () => (await getJson(daemon.base, '/v1/errors?error_type=baseline_anomaly')).body.errors?.length || (await getJson(daemon.base, '/v1/events?name=baseline_anomaly')).body.events?.length, 20_000, 'an anomaly event');
  const pages = [
    ['overview', '#/overview', 'section.view.overview'],
    ['runs', '#/runs', 'section.view.runs tbody tr'],
    ['run', `#/runs/${ids.a1.trace}?span=${ids.a1.llm1}`, '.span-details'],
    ['run-otlp', `#/runs/${ids.otlp.trace_id}?span=${ids.otlp.spans.llm}`, '.span-details'],
    ['sessions', '#/sessions', 'section.view.sessions'],
    ['session', '#/sessions/sess-alpha', 'section.view.session .turn'],
    ['session-otlp', '#/sessions/sess-42', 'section.view.session .turn'],
    ['session-openclaw', '#/sessions/6cbd573f-cf55-40e4-9f5a-2951a972e3f6', 'section.view.session .turn'],
    ['usage', '#/usage', 'section.view.usage'],
    ['errors', '#/errors', 'section.view.errors'],
    ['host', () => `#/host?range=custom&from=${started - 2_000}&to=${Date.now() + 2_000}`, 'section.view.host .card svg'],
    ['live', '#/live', 'section.view.live .live-item'],
    ['anomalies', '#/anomalies', 'section.view.anomalies'],
  ];
  for (const [name, hash, sel] of pages) {
    const w = await open(typeof hash === 'function' ? hash() : hash);
    await w.page.waitForSelector(sel, { timeout: 10_000 });
    if (name !== 'live') await w.page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
    await shot(w.page, name);
    clean(w, name);
    await w.page.close();
  }
  // Dark follows the system setting.
  const w = await watchedPage(browser.context);
  await w.page.emulateMedia({ colorScheme: 'dark' });
  await w.page.goto(`${daemon.base}/#/runs/${ids.a1.trace}?span=${ids.a1.tool}`);
  await w.page.waitForSelector('.span-details');
  const bg = await w.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(15, 18, 22)', 'the dark palette applies');
  await shot(w.page, 'run-dark');
  clean(w, 'run (dark)');
  await w.page.close();
});

test('the runs table shows exactly the runs of a filter', T, async () => {
  const w = await open('#/runs');
  const { page } = w;
  await page.waitForSelector(`tr[data-trace="${ids.b}"]`);
  // By agent, typed into the filter form.
  await page.fill('#f-agent_id', 'alpha');
  await page.press('#f-agent_id', 'Enter');
  await until(async () => JSON.stringify(await rowsOf(page)) === JSON.stringify([ids.a1.trace, ids.a2.trace].sort()), 5_000, 'alpha runs');
  assert.match(page.url(), /agent_id=alpha/);
  // By status, from the URL (a shared link).
  await page.goto(`${daemon.base}/#/runs?agent_id=beta&status=error`);
  await until(async () => JSON.stringify(await rowsOf(page)) === JSON.stringify([ids.b]), 5_000, 'beta error runs');
  await page.goto(`${daemon.base}/#/runs?agent_id=beta&status=ok`);
  await until(async () => JSON.stringify(await rowsOf(page)) === JSON.stringify([ids.c]), 5_000, 'beta ok runs');
  // Back goes to the previous filter.
  await page.goBack();
  await until(async () => JSON.stringify(await rowsOf(page)) === JSON.stringify([ids.b]), 5_000, 'back to beta error runs');
  // By keyboard: the run's link takes focus and Enter opens the run.
  await page.focus(`tr[data-trace="${ids.b}"] td.name a`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`.wf-row`);
  assert.ok(page.url().endsWith(`#/runs/${ids.b}`));
  // Paged by cursor: the next page holds other runs; back returns to the first.
  await page.goto(`${daemon.base}/#/runs?limit=5`);
  await until(async () => (await rowsOf(page)).length === 5, 5_000, 'first page');
  const first = await rowsOf(page);
  await page.click('button:has-text("Next page")');
  await until(async () => {
    const next = await rowsOf(page);
    return next.length === 5 && next.every((t) => !first.includes(t));
  }, 5_000, 'second page');
  assert.match(page.url(), /cursor=/);
  await page.goBack();
  await until(async () => JSON.stringify(await rowsOf(page)) === JSON.stringify(first), 5_000, 'back to the first page');
  // Sorted by cost, most expensive first: gamma's runaway run leads.
  await page.goto(`${daemon.base}/#/runs?sort=cost`);
  await until(async () => (await page.$$eval('tbody tr[data-trace]', (t) => t[0]?.dataset.trace)) === ids.gammaBig, 5_000, 'costliest first');
  clean(w, 'runs');
  await page.close();
});

test('a run shows its waterfall nested by parent and a span\'s tokens and cost', T, async () => {
  const w = await open(`#/runs/${ids.a1.trace}`);
  const { page } = w;
  await page.waitForSelector('.wf-row');
  const rows = await page.$$eval('.wf-row', (rs) => rs.map((r) => [r.dataset.span, Number(r.dataset.depth), r.dataset.kind]));
  assert.deepEqual(rows, [
    [ids.a1.root, 0, 'agent_run'],
    [ids.a1.llm1, 1, 'llm_call'],
    [ids.a1.tool, 1, 'tool_call'],
    [ids.a1.llm2, 2, 'llm_call'],
  ]);
  await page.click(`.wf-row[data-span="${ids.a1.llm1}"]`);
  await page.waitForSelector(`.span-details[data-span="${ids.a1.llm1}"]`);
  const tok = async (k) => page.textContent(`.span-details tr[data-tokens="${k}"] td`);
  assert.equal(await tok('input'), '1,000');
  assert.equal(await tok('output'), '200');
  assert.equal(await tok('total'), '1,200');
  assert.equal(await page.textContent('.span-details .cost'), fmt.cost(0.0125));
  assert.match(await page.textContent('.span-details'), /reported/);
  // The export downloads as a gzip file (fetched with the header, handed over as a blob).
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click('button:has-text("Download export")')]);
  assert.equal(dl.suggestedFilename(), `trace-${ids.a1.trace}.json.gz`);
  const gz = readFileSync(await dl.path());
  assert.equal(JSON.parse(gunzipSync(gz)).trace.trace_id, ids.a1.trace);
  // The sub-run is linked.
  assert.equal(await page.getAttribute(`a.subrun[data-trace="${ids.sub}"]`, 'href'), `#/runs/${ids.sub}`);
  // Its evaluation score shows, the explanation on hover.
  await page.waitForSelector('.scores .score');
  assert.equal((await page.textContent('.scores .score')).trim(), 'relevance 0.82 good');
  assert.equal(await page.getAttribute('.scores .score', 'title'), 'answers the question');
  // Keyboard: down arrow moves to the tool span, whose linked error shows.
  await page.focus('.wf-rows');
  await page.keyboard.press('ArrowDown');
  await page.waitForSelector(`.span-details[data-span="${ids.a1.tool}"]`);
  assert.match(await page.textContent('.span-details ol.events'), /search took too long/);
  // Collapsing the tool span hides its child; the right arrow shows it again.
  const visible = () => page.$$eval('.wf-row', (rs) => rs.filter((r) => !r.hidden).map((r) => r.dataset.span));
  await page.keyboard.press('ArrowLeft');
  assert.deepEqual(await visible(), [ids.a1.root, ids.a1.llm1, ids.a1.tool]);
  await page.keyboard.press('ArrowRight');
  assert.equal((await visible()).length, 4);
  await page.click(`.wf-row[data-span="${ids.a1.root}"] .caret`);
  assert.deepEqual(await visible(), [ids.a1.root]);
  await page.click(`.wf-row[data-span="${ids.a1.root}"] .caret`);
  assert.equal((await visible()).length, 4);
  // The OTLP run nests the same way.
  await page.goto(`${daemon.base}/#/runs/${ids.otlp.trace_id}`);
  await until(async () => (await page.$$('.wf-row')).length === 3 && (await page.$(`.wf-row[data-span="${ids.otlp.spans.root}"]`)), 5_000, 'otlp waterfall');
  const otlp = await page.$$eval('.wf-row', (rs) => rs.map((r) => [r.dataset.span, Number(r.dataset.depth)]));
  assert.deepEqual(otlp[0], [ids.otlp.spans.root, 0]);
  assert.deepEqual(otlp.slice(1).map((x) => x[1]), [1, 1]);
  // Its attributes as pretty-printed JSON, keys and values highlighted as text.
  await page.click(`.wf-row[data-span="${ids.otlp.spans.llm}"]`);
  await page.waitForSelector(`.span-details[data-span="${ids.otlp.spans.llm}"]`);
  const attrs = await page.textContent('.span-details .json pre');
  assert.match(attrs, /^\{\n {2}"/);
  assert.match(attrs, /"gen_ai.request.model": "gpt-4o"/);
  assert.ok(await page.$('.span-details .json .j-key'));
  await page.goto(`${daemon.base}/#/runs/${ids.a1.trace}?span=${ids.a1.tool}`);
  await page.waitForSelector(`.span-details[data-span="${ids.a1.tool}"]`);
  assert.equal(await page.textContent('.span-details .json pre'), '{}');
  clean(w, 'run');
  await page.close();
});

test('errors filter by category and state, and link to their run', T, async () => {
  const w = await open('#/errors?state=open');
  const { page } = w;
  await page.waitForSelector('tbody tr[data-state]');
  const open_ = await page.$$eval('tbody tr', (trs) => trs.map((t) => [t.dataset.category, t.dataset.state]));
  assert.ok(open_.length >= 1 && open_.every(([c, s]) => c === 'disk' && s === 'active'), JSON.stringify(open_));
  await page.goto(`${daemon.base}/#/errors?category=tool`);
  await until(async () => (await page.$$eval('tbody tr', (t) => t.map((r) => r.dataset.category))).join() === 'tool', 5_000, 'tool errors');
  await page.click('tbody tr td a');
  await page.waitForSelector(`.wf-row[data-span="${ids.a1.tool}"]`);
  assert.ok(page.url().includes(ids.a1.trace));
  clean(w, 'errors');
  await page.close();
});

test('a session shows its turns in order, as a conversation', T, async () => {
  const w = await open('#/sessions/sess-alpha');
  const { page } = w;
  await page.waitForSelector('.turn');
  const turns = await page.$$eval('.turn', (ts) => ts.map((t) => t.dataset.trace));
  assert.deepEqual(turns, [ids.a1.trace, ids.a2.trace]);
  const first = await page.$$eval('.turn:first-child .msg', (ms) => ms.map((m) => [m.dataset.role, m.querySelector('.msg-text')?.textContent ?? m.textContent]));
  assert.equal(first[0][0], 'user');
  assert.match(first[0][1], /Find me a flight to Lisbon/);
  assert.ok(first.some(([role]) => role === 'tool'), 'the tool call is a message');
  clean(w, 'session');
  await page.close();
});

test('an OpenClaw session shows the prompt and the answer (from the run attempt)', T, async () => {
  const w = await open('#/sessions/6cbd573f-cf55-40e4-9f5a-2951a972e3f6');
  const { page } = w;
  await page.waitForSelector('.turn .msg');
  const msgs = await page.$$eval('.turn .msg', (ms) => ms.map((m) => [m.dataset.role, m.querySelector('.msg-text')?.textContent ?? '']));
  assert.deepEqual(msgs.map(([r]) => r), ['user', 'assistant', 'tool', 'assistant']);
  assert.match(msgs[0][1], /Please use a TOOL to list files/);
  assert.equal(msgs[3][1], 'Hello from the fake LLM. The answer is 42.');
  clean(w, 'openclaw session');
  await page.close();
});

test('usage shows the known cost total', T, async () => {
  const w = await open('#/usage?agent=alpha');
  const { page } = w;
  await page.waitForSelector('#usage-total-cost');
  assert.equal(await page.textContent('#usage-total-cost'), fmt.cost(ids.alphaCost));
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.click('button:has-text("Download CSV")')]);
  const csv = readFileSync(await dl.path(), 'utf8').trim().split(/\r?\n/);
  assert.match(csv[0], /^bucket_start,model,calls,/);
  // One model; its calls fall in one hour or two (the hour may turn between them).
  assert.ok(csv.length === 2 || csv.length === 3, `rows: ${csv.length}`);
  assert.ok(csv.slice(1).every((l) => l.split(',')[1] === 'gpt-4o'));
  // Unfiltered, the page says what the API says.
  await page.goto(`${daemon.base}/#/usage`);
  const api = (await getJson(daemon.base, `/v1/usage?from=${Date.now() - 86_400_000}`)).body.totals.cost_usd;
  await until(async () => (await page.textContent('#usage-total-cost')) === fmt.cost(api), 5_000, 'usage total');
  clean(w, 'usage');
  await page.close();
});

test('the live page shows an event posted after it opened within 2 s', T, async () => {
  const w = await open('#/live');
  const { page } = w;
  await page.waitForSelector('.live-item');
  await page.waitForSelector('.live-status:text-is("live")', { timeout: 2_000 });
  const name = `probe-${hex(4)}`;
  const t0 = Date.now();
  await post(daemon.base, '/v1/events', { name, message: 'posted by the live test', agent_id: 'alpha' });
  await page.waitForSelector(`.live-item:has-text("${name}")`, { timeout: 2_000 });
  const took = Date.now() - t0;
  assert.ok(took < 2_000, `took ${took} ms`);
  // Paused, new items wait; resumed, they show.
  await page.click('button:has-text("Pause")');
  const held = `held-${hex(4)}`;
  await post(daemon.base, '/v1/events', { name: held, agent_id: 'alpha' });
  await page.waitForSelector('.live-status:has-text("1 waiting")', { timeout: 2_000 });
  assert.equal(await page.$(`.live-item:has-text("${held}")`), null);
  await page.click('button:has-text("Resume")');
  await page.waitForSelector(`.live-item:has-text("${held}")`, { timeout: 2_000 });
  clean(w, 'live');
  await page.close();
});

test('captured text that looks like HTML shows as text and runs nothing', T, async () => {
  const w = await open(`#/runs?agent_id=xss`);
  const { page } = w;
  await page.waitForSelector(`tr[data-trace="${ids.xss}"]`);
  assert.equal(await page.textContent(`tr[data-trace="${ids.xss}"] td.name a`), XSS_NAME);
  assert.equal(await page.$('main img'), null, 'no <img> was made from data');
  await page.click(`tr[data-trace="${ids.xss}"] td.name a`);
  await page.waitForSelector('.wf-row');
  await page.click(`.wf-row[data-span="${ids.xssSpan}"]`);
  await page.waitForSelector('.span-details');
  assert.equal(await page.textContent('.span-details h2'), XSS_NAME);
  assert.ok((await page.textContent('.span-details')).includes(XSS_INPUT));
  assert.equal(await page.$('main img, main script, main b'), null);
  await page.goto(`${daemon.base}/#/sessions/sess-xss`);
  await page.waitForSelector('.turn');
  await page.goto(`${daemon.base}/#/live?agent=xss`);
  await page.waitForSelector('.live-status');
  await post(daemon.base, '/v1/events', { name: XSS_NAME, message: XSS_INPUT, agent_id: 'xss' });
  await page.waitForSelector('.live-item .live-name', { timeout: 5_000 });
  assert.equal(await page.textContent('.live-item .live-name'), XSS_NAME);
  assert.equal(await page.$('main img, main script, main b'), null);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  clean(w, 'xss');
  await page.close();
});

test('the shell is served with a content-hashed path, compressed, with security headers', T, async () => {
  const r = await fetch(`${daemon.base}/`, { headers: { 'accept-encoding': 'gzip' } });
  const html = await r.text();
  assert.equal(r.headers.get('cache-control'), 'no-cache');
  assert.match(r.headers.get('content-security-policy'), /default-src 'self'/);
  assert.match(r.headers.get('content-security-policy'), /frame-ancestors 'none'/);
  assert.doesNotMatch(r.headers.get('content-security-policy'), /unsafe-inline/);
  assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(r.headers.get('x-frame-options'), 'DENY');
  const js = html.match(/src="(\/ui\/[0-9a-f]{12}\/app\.js)"/);
  assert.ok(js, 'index.html points at the hashed app.js');
  assert.doesNotMatch(html, /<script>|style=/, 'nothing inline');
  const a = await fetch(daemon.base + js[1], { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  assert.equal(a.headers.get('content-encoding'), 'gzip');
  assert.match(a.headers.get('content-type'), /javascript/);
});

test('with a token set, nothing but the login view shows until it is given', { timeout: 90_000 }, async () => {
  const token = `tok-${hex(12)}`;
  const d = await startDaemon({ OCT_AUTH_TOKEN: token });
  try {
    const secret = `secret run ${hex(4)}`;
    const trace = hex(16);
    await post(d.base, '/v1/traces', { trace_id: trace, provider: 'openai', model: 'gpt-4o', name: secret, agent_id: 'hidden', prompt_tokens: 5, completion_tokens: 5 }, { token });
    await until(async () => (await getJson(d.base, '/v1/traces', token)).body.traces?.length === 1, 10_000, 'stored');
    const w = await watchedPage(browser.context);
    const { page } = w;
    for (const hash of ['#/runs', `#/runs/${trace}`, '#/usage', '#/live']) {
      await page.goto(`${d.base}/${hash}`);
      await page.waitForSelector('form.login');
      await new Promise((r) => setTimeout(r, 200));
      const text = await page.textContent('body');
      assert.ok(!text.includes(secret) && !text.includes('hidden'), `no data on ${hash}`);
      assert.equal(await page.$('nav.nav'), null, 'no navigation before signing in');
      assert.equal(await page.$('table, .wf-row, .live-item'), null);
    }
    await shot(page, 'login');
    await page.fill('#token', 'wrong');
    await page.press('#token', 'Enter');
    await page.waitForSelector('form.login p.error:has-text("refused")');
    await page.fill('#token', token);
    await page.press('#token', 'Enter');
    await page.waitForSelector(`.live-item:has-text("${secret}")`, { timeout: 5_000 });
    await page.goto(`${d.base}/#/runs`);
    await page.waitForSelector(`tr[data-trace="${trace}"]`);
    assert.ok(w.requests.every((r) => !r.url.includes(token)), 'the token never goes in a URL');
    assert.ok(w.requests.some((r) => r.url.includes('/v1/traces') && r.auth === `Bearer ${token}`), 'sent as a bearer header');
    assert.deepEqual((await browser.context.cookies()).filter((c) => c.value.includes(token)), []);
    await page.close();
  } finally {
    await d.stop();
  }
});
