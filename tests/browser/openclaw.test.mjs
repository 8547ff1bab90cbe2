// The OpenClaw pages, the fleet page, the runs list filtered by sidecar and a run's
// sub-agents, in Debian's chromium on the real binary: OpenClaw plugin events shaped as
// OpenClaw 2026.9.6 sends them (as tests/openclaw_views.rs builds them), the recorded
// gateway log's fallback lines, and two real sidecars pushing to this daemon as their
// central. Each page's figures are checked against the API's answer.
// Run: node --test tests/browser/openclaw.test.mjs  (after scripts/setup-browser.sh and cargo build --bins)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, startDaemon, launch, watchedPage, post, getJson, until } from './harness.mjs';
import * as fmt from '../../web/lib/format.js';
import { RETRY_TRACE, traceOf, fallbackLog, openclawDay } from './openclaw_day.mjs';

const SHOTS = join(ROOT, 'target', 'screenshots');
const T = { timeout: 90_000 };
let central;
let sidecars = [];
let browser;
const ids = {};

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const logDir = join(ROOT, 'target', `oc-log-${process.pid}`);
  mkdirSync(logDir, { recursive: true });
  writeFileSync(join(logDir, 'openclaw-today.log'), fallbackLog());
  central = await startDaemon({
    OCT_LOG_PATH: `${logDir}/openclaw-*.log`,
    OCT_LOG_POLL_INTERVAL: '200ms',
    OCT_INSTANCE_STALE_AFTER: '6s',
  });
  const { events, ids: day } = openclawDay();
  await post(central.base, '/v1/openclaw/events', { plugin: { version: 'test' }, events });
  Object.assign(ids, day);
  // Two sidecars push to this daemon as their central; the second goes silent.
  const port = new URL(central.base).port;
  for (const id of ['edge-1', 'edge-2']) {
    sidecars.push(await startDaemon({ OCT_PUSH_ENDPOINT: `http://127.0.0.1:${port}/v1/push`, OCT_PUSH_FORMAT: 'v2', OCT_PUSH_INTERVAL: '1s', OCT_PUSH_RETRY_INITIAL: '100ms', OCT_INSTANCE_ID: id, OCT_REGION: 'ams' }));
  }
  ids.edge = {};
  for (const [i, d] of sidecars.entries()) {
    const name = `edge-${i + 1}`;
    const traces = [1, 2].map((k) => `${(0xe0 + i).toString(16)}${k}`.padEnd(32, '0'));
    ids.edge[name] = traces;
    await post(d.base, '/v1/traces', traces.map((trace, k) => ({ trace_id: trace, provider: 'openai', model: 'gpt-4o-mini', name: `${name} run ${k}`, agent_id: name, prompt_tokens: 50, completion_tokens: 5, cost_usd: 0.0001 })));
  }
  await until(async () => {
    const { body } = await getJson(central.base, '/v1/traces?limit=1000');
    const have = new Set((body.traces || []).map((t) => t.trace_id));
    return [...Object.values(ids.edge).flat(), ids.parent, RETRY_TRACE, ...ids.children].every((t) => have.has(t));
  }, 30_000, 'runs from the plugin and both sidecars');
  await until(async () => (await getJson(central.base, '/v1/openclaw/fallbacks')).body.decisions >= 1, 15_000, 'fallback lines from the log');
  // edge-2 stops: silent longer than OCT_INSTANCE_STALE_AFTER, it turns stale.
  await sidecars[1].stop();
  sidecars = [sidecars[0]];
  browser = await launch();
}, { timeout: 180_000 });

after(async () => {
  if (browser) await browser.close();
  for (const d of sidecars) await d.stop();
  if (central) await central.stop();
});

async function open(base, hash) {
  const w = await watchedPage(browser.context);
  await w.page.goto(`${base}/${hash}`, { waitUntil: 'load', timeout: 15_000 });
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

const api = async (path) => (await getJson(central.base, path)).body;
const text = async (page, sel) => (await page.textContent(sel)).trim();
const pct = (r) => fmt.pct(r * 100, 1);

test('the OpenClaw summary answers what heartbeats cost and why sessions cost what they did', T, async () => {
  const w = await open(central.base, '#/openclaw');
  const { page } = w;
  await page.waitForSelector('section.view.openclaw[data-tab="summary"]');
  await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
  const sch = await api('/v1/openclaw/scheduled');
  const cache = await api('/v1/openclaw/cache');
  const sub = await api('/v1/openclaw/subagents');
  const fb = await api('/v1/openclaw/fallbacks');
  assert.equal(sch.totals.heartbeat_runs, 3);
  assert.equal(await text(page, '#oc-hb-cost'), fmt.cost(sch.totals.heartbeat_cost_usd));
  assert.equal(await text(page, '#oc-hb-runs'), fmt.int(sch.totals.heartbeat_runs));
  assert.equal(await text(page, '#oc-hb-per'), fmt.cost(sch.totals.heartbeat_cost_usd / sch.totals.heartbeat_runs));
  assert.equal(await text(page, '#oc-hb-ok'), fmt.int(sch.totals.heartbeat_ok));
  assert.equal(await text(page, '#oc-cron-cost'), fmt.cost(sch.totals.cron_cost_usd));
  assert.equal(await text(page, '#oc-cache-hit'), pct(cache.totals.hit_rate));
  assert.equal(await text(page, '#oc-cache-saved'), fmt.cost(cache.totals.net_saved_usd));
  assert.equal(await text(page, '#oc-near'), '1');
  assert.equal(await text(page, '#oc-sub-cost'), fmt.cost(sub.subagents.reduce((a, s) => a + s.child_cost_usd, 0)));
  assert.equal(await text(page, '#oc-fallbacks'), fmt.int(fb.decisions));
  // The costliest sessions say what drove them: the Telegram one filled its window.
  const tg = await text(page, 'tr[data-session="s-tg"]');
  assert.match(tg, /context peaked at 85\.0% of a 200\.0k window/);
  assert.match(tg, /compacted 1×/);
  assert.match(await text(page, 'tr[data-session="s-main"]'), /3 scheduled runs \(heartbeat\)/);
  // The navigation shows OpenClaw (there is OpenClaw data) and the sidecars' fleet.
  await page.waitForSelector('nav.nav a[data-nav="openclaw"]');
  await page.waitForSelector('nav.nav a[data-nav="fleet"]');
  await shot(page, 'openclaw');
  // A session link opens the session, which says what drove its cost.
  await page.click('tr[data-session="s-tg"] a');
  await page.waitForSelector('section.view.session .turn');
  assert.ok(page.url().endsWith('#/sessions/s-tg'));
  assert.match(await text(page, '#session-why [data-why="context"]'), /context peaked at 85\.0% of a 200\.0k window \(170,000 tokens\), compacted 1×/);
  await page.goto(`${central.base}/#/sessions/s-main`);
  await page.waitForSelector('#session-why [data-why="scheduled"]');
  const hbCost = sch.runs.filter((r) => r.session_id === 's-main').reduce((a, r) => a + r.cost_usd, 0);
  const has = async (sel, want) => {
    const got = await text(page, sel);
    assert.ok(got.includes(want), `${sel}: ${JSON.stringify(got)} lacks ${JSON.stringify(want)}`);
  };
  await has('#session-why [data-why="scheduled"]', `3 heartbeat runs cost ${fmt.cost(hbCost)}`);
  await has('#session-why [data-why="scheduled"]', '3 answered HEARTBEAT_OK or NO_REPLY');
  await page.goto(`${central.base}/#/sessions/s-web`);
  await page.waitForSelector('#session-why [data-why="subagents"]');
  await has('#session-why [data-why="subagents"]', `1 sub-agent costing ${fmt.cost(0.05)} more`);
  const webCache = (await api('/v1/openclaw/cache?by=session')).rows.find((r) => r.key === 's-web');
  await has('#session-why [data-why="cache"]', `${pct(webCache.hit_rate)} of its prompt tokens came from the cache, saving ${fmt.cost(webCache.net_saved_usd)}`);
  await shot(page, 'session-why');
  clean(w, 'openclaw summary');
  await page.close();
});

test('each OpenClaw tab shows the API\'s figures and links runs to the run view', T, async () => {
  const w = await open(central.base, '#/openclaw/scheduled');
  const { page } = w;
  // Heartbeats and crons.
  await page.waitForSelector('section.view.openclaw[data-tab="scheduled"] tr[data-kind]');
  const sch = await api('/v1/openclaw/scheduled');
  assert.equal(await page.$$eval('tr[data-kind]', (r) => r.length), sch.days.length);
  assert.equal(await text(page, '#oc-no-reply'), fmt.int(sch.totals.no_reply));
  const cronDay = sch.days.find((d) => d.job === 'job-7');
  assert.match(await text(page, 'tr[data-job="job-7"]'), new RegExp(fmt.cost(cronDay.cost_per_run_usd).replace(/[$.]/g, '\\$&')));
  assert.equal(await page.$$eval('tr[data-trace]', (r) => r.length), sch.runs.length);
  await shot(page, 'openclaw-scheduled');
  await page.click(`tr[data-trace="${ids.hb[0]}"] td a.mono`);
  await page.waitForSelector('.wf-row');
  assert.ok(page.url().includes(`#/runs/${ids.hb[0]}`));

  // Context: the Telegram session near its window, with its compaction.
  await page.goto(`${central.base}/#/openclaw/context`);
  await page.waitForSelector('tr[data-session="s-tg"]');
  assert.equal(await page.getAttribute('tr[data-session="s-tg"]', 'data-near'), 'true');
  assert.equal(await page.getAttribute('tr[data-session="s-web"]', 'data-near'), 'false');
  assert.match(await text(page, 'tr[data-session="s-tg"]'), /170,000.*200,000.*85\.0%/);
  assert.equal(await text(page, '#oc-compactions'), '1');
  await shot(page, 'openclaw-context');

  // Cache by model: the hit rate and the dollars saved.
  await page.goto(`${central.base}/#/openclaw/cache?by=model`);
  await page.waitForSelector('tr[data-key="claude-sonnet-4-5"]');
  const cache = await api('/v1/openclaw/cache?by=model');
  const row = cache.rows.find((r) => r.key === 'claude-sonnet-4-5');
  const cells = await page.$$eval('tr[data-key="claude-sonnet-4-5"] td', (t) => t.map((c) => c.textContent.trim()));
  assert.equal(cells[3], fmt.int(row.cache_read_tokens));
  assert.equal(cells[5], pct(row.hit_rate));
  assert.equal(cells[8], fmt.cost(row.net_saved_usd));
  assert.equal(await text(page, '#oc-cache-saved'), fmt.cost(cache.totals.net_saved_usd));
  await shot(page, 'openclaw-cache');

  // Sub-agents under the run that spawned them, the cost rolled up.
  await page.goto(`${central.base}/#/openclaw/subagents`);
  await page.waitForSelector(`li.sub-parent[data-trace="${ids.parent}"]`);
  const sub = await api('/v1/openclaw/subagents');
  const parent = sub.parents.find((p) => p.trace_id === ids.parent);
  assert.equal(await text(page, `li.sub-parent[data-trace="${ids.parent}"] .total`), fmt.cost(parent.total_cost_usd));
  assert.equal(parent.total_cost_usd.toFixed(6), '0.060000');
  const childLinks = await page.$$eval(`li.sub-parent[data-trace="${ids.parent}"] .sub-child a`, (a) => a.map((x) => x.getAttribute('href')));
  assert.deepEqual(childLinks, ids.children.map((t) => `#/runs/${t}`));
  await shot(page, 'openclaw-subagents');

  // Channels and tools.
  await page.goto(`${central.base}/#/openclaw/channels`);
  await page.waitForSelector('tr[data-channel="telegram"]');
  const ch = await api('/v1/openclaw/channels');
  for (const c of ch.channels) {
    const cells = await page.$$eval(`tr[data-channel="${c.channel}"] td`, (t) => t.map((x) => x.textContent.trim()));
    assert.equal(cells[1], fmt.int(c.runs), c.channel);
    assert.equal(cells[5], fmt.cost(c.cost_usd), c.channel);
  }
  assert.match(await text(page, 'tr[data-tool="ls"]'), /^ls\s*3/);
  await shot(page, 'openclaw-channels');

  // Fallbacks by model pair, linked to their run.
  await page.goto(`${central.base}/#/openclaw/fallbacks`);
  await page.waitForSelector('tr[data-pair]');
  const fb = await api('/v1/openclaw/fallbacks');
  assert.equal(await page.$$eval('tr[data-pair]', (r) => r.length), fb.pairs.length);
  assert.equal(await text(page, '#oc-fallbacks'), fmt.int(fb.decisions));
  assert.ok(await page.$(`tr[data-pair] a[href="#/runs/${RETRY_TRACE}"]`), JSON.stringify(fb));
  await shot(page, 'openclaw-fallbacks');

  // Waste: the loop and the retries, per run and per agent.
  await page.goto(`${central.base}/#/openclaw/waste`);
  await page.waitForSelector(`tr[data-trace="${ids.loop}"]`);
  assert.match(await text(page, `tr[data-trace="${ids.loop}"] [data-flag="tool_loop"]`), /tool loop: ls ×3/);
  assert.ok(await page.$(`tr[data-trace="${RETRY_TRACE}"] [data-flag="provider_retries"]`));
  const waste = await api('/v1/openclaw/waste');
  assert.equal(await page.$$eval('table tr[data-trace]', (r) => r.length), waste.runs.length);
  await shot(page, 'openclaw-waste');
  // Dark follows the system setting here too.
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(`${central.base}/#/openclaw/context`);
  await page.waitForSelector('tr[data-session="s-tg"]');
  assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), 'rgb(15, 18, 22)');
  await shot(page, 'openclaw-dark');
  clean(w, 'openclaw tabs');
  await page.close();
});

test('a run lists its sub-agents\' runs with the cost rolled up, and its waste flags', T, async () => {
  const w = await open(central.base, `#/runs/${ids.parent}`);
  const { page } = w;
  await page.waitForSelector('#run-total-cost');
  const d = await api(`/v1/traces/${ids.parent}`);
  assert.deepEqual(d.sub_traces.map((t) => t.trace_id), ids.children);
  assert.equal(await text(page, '#run-total-cost'), fmt.cost(d.rollup.total_cost_usd));
  assert.equal(d.rollup.total_cost_usd.toFixed(6), '0.060000');
  const chips = await page.$$eval('[data-subagent="agent:main:subagent:abc-123"] a.subrun', (a) => a.map((x) => x.dataset.trace));
  assert.deepEqual(chips, ids.children);
  assert.match(await text(page, '[data-subagent="agent:main:subagent:abc-123"]'), /research/);
  await shot(page, 'run-subagents');
  // A flagged run shows its waste flags.
  await page.goto(`${central.base}/#/runs/${ids.loop}`);
  await page.waitForSelector('.run-waste [data-flag="tool_loop"]');
  assert.match(await text(page, '.run-waste'), /tool loop: ls ×3/);
  clean(w, 'run with sub-agents');
  await page.close();
});

test('the fleet page lists the sidecars, flags the silent one, and filters runs by instance', T, async () => {
  // edge-1 keeps sending (a push goes out only with something new in it).
  const edge1 = sidecars[0];
  let n = 0;
  const keepAlive = setInterval(() => post(edge1.base, '/v1/traces', { provider: 'openai', model: 'gpt-4o-mini', name: `keep-alive ${n++}`, agent_id: 'edge-1-keepalive', prompt_tokens: 1, completion_tokens: 1 }).catch(() => {}), 400);
  try {
    await fleetPage();
  } finally {
    clearInterval(keepAlive);
  }
});

async function fleetPage() {
  await until(async () => {
    const list = (await api('/v1/instances')).instances;
    return list.some((i) => i.instance_id === 'edge-2' && i.stale) && list.some((i) => i.instance_id === 'edge-1' && !i.stale && i.last_push_age_seconds <= 2);
  }, 25_000, 'edge-2 stale, edge-1 pushing');
  const w = await open(central.base, '#/fleet');
  const { page } = w;
  await page.waitForSelector('tr[data-instance="edge-1"]');
  const inst = await api('/v1/instances');
  assert.equal(await text(page, '#fleet-count'), fmt.int(inst.instances.length));
  assert.equal(await page.getAttribute('tr[data-instance="edge-2"]', 'data-stale'), 'true');
  assert.equal(await page.getAttribute('tr[data-instance="edge-1"]', 'data-stale'), 'false', JSON.stringify(inst));
  assert.equal(await text(page, '#fleet-stale'), '1');
  const e1 = inst.instances.find((i) => i.instance_id === 'edge-1');
  const cells = await page.$$eval('tr[data-instance="edge-1"] td', (t) => t.map((x) => x.textContent.trim()));
  assert.equal(cells[2], 'ams');
  assert.equal(cells[5], e1.version);
  await shot(page, 'fleet');
  await page.click('a[data-runs-of="edge-1"]');
  // Exactly edge-1's runs: its two, and the keep-alive calls it sent since.
  const listed = async () => page.$$eval('tbody tr[data-trace]', (t) => t.map((r) => [r.dataset.trace, r.querySelector('td:nth-child(3)').textContent]));
  await until(async () => {
    const rows = await listed();
    return ids.edge['edge-1'].every((t) => rows.some((r) => r[0] === t));
  }, 10_000, 'edge-1 runs');
  const rows = await listed();
  assert.ok(rows.every(([t, agent]) => ids.edge['edge-1'].includes(t) || agent === 'edge-1-keepalive'), JSON.stringify(rows));
  assert.ok(rows.every(([t]) => !ids.edge['edge-2'].includes(t)));
  const viaApi = (await api('/v1/traces?instance=edge-1&limit=1000')).traces.map((t) => t.trace_id);
  assert.ok(rows.every(([t]) => viaApi.includes(t)));
  assert.match(page.url(), /#\/runs\?instance=edge-1/);
  assert.equal(await page.inputValue('#f-instance'), 'edge-1');
  await shot(page, 'runs-instance');
  clean(w, 'fleet');
  await page.close();
}

test('without OpenClaw data or sidecars, neither shows in the navigation and their pages say so', T, async () => {
  const bare = await startDaemon();
  try {
    const w = await open(bare.base, '#/overview');
    const { page } = w;
    await page.waitForSelector('section.view.overview');
    await page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
    assert.equal(await page.$('nav.nav a[data-nav="openclaw"]'), null);
    assert.equal(await page.$('nav.nav a[data-nav="fleet"]'), null);
    await page.goto(`${bare.base}/#/openclaw`);
    await page.waitForSelector('#openclaw-empty');
    await page.goto(`${bare.base}/#/openclaw/context`);
    await page.waitForSelector('section.view.openclaw[data-tab="context"] .empty');
    await page.goto(`${bare.base}/#/fleet`);
    await page.waitForSelector('#fleet-empty');
    await shot(page, 'fleet-empty');
    clean(w, 'empty states');
    await page.close();
  } finally {
    await bare.stop();
  }
});
