// The dashboard of a fleet's central on PostgreSQL (OCT_DATABASE_URL): the real binary
// on a private PostgreSQL server (scripts/pg-private.sh), the same seed as the SQLite
// dashboard test, Debian's chromium. The views the PostgreSQL store serves render with
// the same figures as the API.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { ROOT, startDaemon, launch, watchedPage, getJson, post, until, hex } from './harness.mjs';
import { seed } from './seed.mjs';
import { RETRY_TRACE, fallbackLog, openclawDay } from './openclaw_day.mjs';
import * as fmt from '../../web/lib/format.js';

const SHOTS = join(ROOT, 'target', 'screenshots');
const PG = join(ROOT, 'scripts', 'pg-private.sh');
let pgDir;
let daemon;
let browser;
let ids;

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  pgDir = mkdtempSync(join(tmpdir(), 'oct-pg-'));
  const url = execFileSync('bash', [PG, 'start', join(pgDir, 'pg'), String(await freePort())]).toString().trim();
  // Its own host sampled too (CPU, memory, disk), named hub-1 as its records are.
  daemon = await startDaemon({
    OCT_DATABASE_URL: url, OCT_INSTANCE_ID: 'hub-1',
    OCT_HOST_DISABLE: 'cgroup,diskio,network,dns,processes,llm,self', OCT_METRICS_INTERVAL: '1s',
  });
  // No OTLP or OpenClaw here: the SQLite dashboard test covers those sources.
  ids = await seed(daemon.base, { otlp: false, openclaw: false });
  browser = await launch();
}, { timeout: 150_000 });

after(async () => {
  if (browser) await browser.close();
  if (daemon) await daemon.stop();
  if (pgDir) {
    execFileSync('bash', [PG, 'stop', join(pgDir, 'pg')]);
    rmSync(pgDir, { recursive: true, force: true });
  }
});

async function open(hash, sel) {
  const w = await watchedPage(browser.context);
  await w.page.goto(`${daemon.base}/${hash}`, { waitUntil: 'load', timeout: 15_000 });
  await w.page.waitForSelector(sel, { timeout: 10_000 });
  await w.page.waitForLoadState('networkidle', { timeout: 5_000 }).catch(() => {});
  return w;
}

test('the central on PostgreSQL shows its runs, a run, usage, errors and the overview', { timeout: 120_000 }, async () => {
  const { body: overview } = await getJson(daemon.base, '/v1/overview');
  const { body: runs } = await getJson(daemon.base, '/v1/traces?limit=1000');
  assert.ok(runs.traces.length >= 8, `runs: ${runs.traces.length}`);
  const pages = [
    ['central-overview', '#/overview', 'section.view.overview .card'],
    ['central-runs', '#/runs', 'section.view.runs tbody tr[data-trace]'],
    ['central-run', `#/runs/${ids.a1.trace}?span=${ids.a1.llm1}`, '.span-details'],
    ['central-usage', '#/usage', 'section.view.usage table tbody tr'],
    ['central-errors', '#/errors', 'section.view.errors tbody tr'],
  ];
  for (const [name, hash, sel] of pages) {
    const w = await open(hash, sel);
    await w.page.screenshot({ path: join(SHOTS, `${name}.png`) });
    const text = await w.page.textContent('main');
    if (name === 'central-overview') {
      const cards = await w.page.$$eval('section.view.overview .kpi', (cs) => cs.map((c) => [c.querySelector('.kpi-label')?.innerText, c.querySelector('.kpi-value')?.innerText]));
      const runsCard = cards.find((c) => c[0] === 'Runs');
      assert.equal(runsCard?.[1], String(overview.current.runs), `the Runs card: ${JSON.stringify(cards)}`);
      const llmCard = cards.find((c) => c[0] === 'LLM calls');
      assert.equal(llmCard?.[1], String(overview.current.llm_calls), `the LLM calls card: ${JSON.stringify(cards)}`);
    }
    if (name === 'central-runs') {
      const rows = await w.page.$$eval('tbody tr[data-trace]', (trs) => trs.length);
      assert.equal(rows, Math.min(runs.traces.length, 50));
    }
    if (name === 'central-run') {
      assert.ok(text.includes('plan trip a1'), 'the run names itself');
      assert.ok(text.includes('book hotel (sub-run)'), 'its sub-run is listed');
    }
    assert.deepEqual(w.problems, [], `${name}: console errors or failed requests`);
    assert.deepEqual(w.dialogs, [], `${name}: a dialog opened`);
    await w.page.close();
  }
});

test('the central lists its sessions and shows one as a conversation', { timeout: 60_000 }, async () => {
  const { body } = await getJson(daemon.base, '/v1/sessions?limit=100');
  assert.ok(body.sessions.some((s) => s.session_id === 'sess-alpha'), JSON.stringify(body));
  let w = await open('#/sessions', 'section.view.sessions tbody tr');
  const listed = await w.page.textContent('section.view.sessions');
  for (const s of body.sessions.slice(0, 5)) assert.ok(listed.includes(s.session_id), `${s.session_id} is listed`);
  await w.page.screenshot({ path: join(SHOTS, 'central-sessions.png') });
  assert.deepEqual(w.problems, [], 'sessions: console errors or failed requests');
  await w.page.close();
  w = await open('#/sessions/sess-alpha', 'section.view.session .turn .msg');
  const turns = await w.page.$$eval('.turn', (ts) => ts.map((t) => t.dataset.trace));
  assert.deepEqual(turns, [ids.a1.trace, ids.a2.trace]);
  const first = await w.page.$$eval('.turn:first-child .msg', (ms) => ms.map((m) => [m.dataset.role, m.querySelector('.msg-text')?.textContent ?? m.textContent]));
  assert.equal(first[0][0], 'user');
  assert.match(first[0][1], /Find me a flight to Lisbon/);
  assert.ok(first.some(([role]) => role === 'tool'), 'the tool call is a message');
  await w.page.screenshot({ path: join(SHOTS, 'central-session.png') });
  assert.deepEqual(w.problems, [], 'session: console errors or failed requests');
  await w.page.close();
});

test('the anomalies view on the central answers from PostgreSQL', { timeout: 60_000 }, async () => {
  // The central records no anomaly of its own (its sidecars do, and push them): the
  // list is the API's, here empty, and nothing says "not available".
  const { body } = await getJson(daemon.base, '/v1/anomalies');
  const w = await open('#/anomalies', 'section.view.anomalies');
  await w.page.waitForSelector(body.anomalies.length ? 'section.view.anomalies tbody tr' : 'section.view.anomalies .empty');
  const text = await w.page.textContent('main');
  assert.doesNotMatch(text, /not available on the PostgreSQL store/);
  await w.page.screenshot({ path: join(SHOTS, 'central-anomalies.png') });
  assert.deepEqual(w.problems, [], 'anomalies: console errors or failed requests');
  await w.page.close();
});

test('the central groups usage by sidecar, reached from the usage view and from the fleet', { timeout: 60_000 }, async () => {
  // Two LLM calls over OTLP from a sidecar that names itself (service.instance.id).
  const now = BigInt(Date.now() - 60_000) * 1_000_000n;
  const call = (i) => ({
    traceId: hex(16), spanId: hex(8), name: 'chat gpt-4o', kind: 3,
    startTimeUnixNano: String(now + BigInt(i) * 1_000_000n), endTimeUnixNano: String(now + BigInt(i) * 1_000_000n + 500_000_000n),
    attributes: [
      { key: 'gen_ai.operation.name', value: { stringValue: 'chat' } },
      { key: 'gen_ai.provider.name', value: { stringValue: 'openai' } },
      { key: 'gen_ai.request.model', value: { stringValue: 'gpt-4o' } },
      { key: 'gen_ai.usage.input_tokens', value: { intValue: String(1000 + i) } },
      { key: 'gen_ai.usage.output_tokens', value: { intValue: '50' } },
    ],
  });
  await post(daemon.base, '/v1/traces', { resourceSpans: [{
    resource: { attributes: [{ key: 'service.name', value: { stringValue: 'agent' } }, { key: 'service.instance.id', value: { stringValue: 'side-x' } }] },
    scopeSpans: [{ spans: [call(0), call(1)] }],
  }] });
  const api = await until(async () => {
    const { body } = await getJson(daemon.base, '/v1/usage?group_by=instance&percentiles=false');
    return (body.rows || []).find((r) => r.instance_id === 'side-x') && body;
  }, 20_000, 'side-x in usage by instance');
  const side = api.rows.find((r) => r.instance_id === 'side-x');
  assert.equal(side.total_tokens, 2101);

  // Opened from the usage view: once the app knows the store, "by sidecar" is offered.
  let w = await open('#/usage', 'section.view.usage table tbody tr');
  await w.page.click('text=by sidecar');
  await w.page.waitForSelector('section.view.usage caption:has-text("Usage by sidecar")', { timeout: 10_000 });
  const rows = await w.page.$$eval('section.view.usage table tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText)));
  const row = rows.find((r) => r[0] === 'side-x');
  assert.ok(row, `side-x in ${JSON.stringify(rows)}`);
  assert.equal(row[6], '2,101', `its total tokens: ${JSON.stringify(row)}`);
  assert.equal(rows.length, api.rows.length, 'one row per sidecar, as the API answers');
  await w.page.screenshot({ path: join(SHOTS, 'central-usage-by-sidecar.png') });
  // By user: summed from the central's spans (its rollups keep no user).
  await w.page.click('text=by user');
  await w.page.waitForSelector('section.view.usage caption:has-text("Usage by user")', { timeout: 10_000 });
  const users = (await getJson(daemon.base, `/v1/usage?group_by=user&percentiles=false&from=${Date.now() - 86_400_000}`)).body;
  const userRows = await w.page.$$eval('section.view.usage table tbody tr', (trs) => trs.length);
  assert.equal(userRows, users.rows.length, JSON.stringify(users.rows));
  assert.deepEqual(w.problems, [], 'console errors or failed requests');
  await w.page.close();

  // The fleet view's link to a sidecar's usage: that sidecar's alone.
  w = await open('#/usage?instance=side-x', 'section.view.usage table tbody tr');
  const cards = await w.page.$$eval('section.view.usage .kpi', (cs) => cs.map((c) => [c.querySelector('.kpi-label')?.innerText, c.querySelector('.kpi-value')?.innerText]));
  assert.equal(cards.find((c) => c[0] === 'Tokens')?.[1], '2,101', `side-x's tokens: ${JSON.stringify(cards)}`);
  assert.equal(cards.find((c) => c[0] === 'LLM calls')?.[1], '2', `side-x's calls: ${JSON.stringify(cards)}`);
  await w.page.close();
});

test('the host view shows one host at a time, the central\'s own or a sidecar\'s', { timeout: 60_000 }, async () => {
  // Two sidecars push their disk utilization (v2 metric records): 40 % and 90 %.
  const t0 = (Date.now() - 5 * 60_000) * 1_000_000;
  const disk = (id, pct) => ({
    schema_version: 2,
    source: { service: 'openclaw-trace', version: 'test', host: { name: id }, instance: { id, region: 'ams' } },
    records: [0, 1, 2].map((i) => ({
      type: 'metric', id: `${id}-m${i}`,
      data: { name: 'system.filesystem.utilization', unit: '1', kind: 'gauge', time_ns: t0 + i * 60e9, value: pct,
        attributes: { 'system.filesystem.mountpoint': '/data' } },
    })),
  });
  await post(daemon.base, '/v1/push', disk('side-h1', 0.4));
  await post(daemon.base, '/v1/push', disk('side-h2', 0.9));
  await until(async () => {
    const { body } = await getJson(daemon.base, `/v1/metrics?name=system.filesystem.utilization&attr.service.instance.id=side-h2&from=${Date.now() - 3_600_000}&to=${Date.now()}`);
    return (body.series || []).length === 1;
  }, 20_000, 'side-h2 disk stored');

  // From the fleet view's link: side-h2's host, its disk at 90 %.
  let w = await open('#/fleet', 'section.view.fleet tr[data-instance="side-h2"]');
  await w.page.click('a[data-host-of="side-h2"]');
  await w.page.waitForSelector('section.view.host[data-instance="side-h2"] [data-metric="system.filesystem.utilization"] .now', { timeout: 10_000 });
  const now = await w.page.textContent('[data-metric="system.filesystem.utilization"] .now');
  assert.equal(now.trim(), '90%', 'side-h2 disk');
  assert.match(await w.page.textContent('section.view.host h1'), /Host of side-h2/);
  // The sidecar's own state beside it, not the central's.
  const labels = await w.page.$$eval('section.view.host .kpi-label', (ls) => ls.map((l) => l.innerText));
  assert.deepEqual(labels, ['Its database', 'Its data volume', 'Last push', 'Open conditions']);
  await w.page.screenshot({ path: join(SHOTS, 'central-host-side-h2.png') });
  // Picking the other sidecar shows its host.
  await w.page.selectOption('#f-instance', 'side-h1');
  await w.page.waitForSelector('section.view.host[data-instance="side-h1"] [data-metric="system.filesystem.utilization"] .now', { timeout: 10_000 });
  assert.equal((await w.page.textContent('[data-metric="system.filesystem.utilization"] .now')).trim(), '40%', 'side-h1 disk');
  assert.deepEqual(w.problems, [], 'host: console errors or failed requests');
  await w.page.close();

  // Without a pick: the central's own host, first in the list, its own figures.
  await until(async () => {
    const { body } = await getJson(daemon.base, `/v1/metrics?name=system.memory.utilization&attr.service.instance.id=hub-1&from=${Date.now() - 3_600_000}&to=${Date.now()}`);
    return (body.series || []).some((se) => se.points.length >= 2);
  }, 20_000, "the central's own samples");
  w = await open('#/host', 'section.view.host[data-instance="hub-1"] [data-metric="system.memory.utilization"] .now');
  assert.match(await w.page.textContent('section.view.host h1'), /Host of hub-1 \(this central\)/);
  const own = await w.page.$$eval('section.view.host .kpi-label', (ls) => ls.map((l) => l.innerText));
  assert.deepEqual(own, ['Store', 'Queue', 'Sidecars', 'Central']);
  const options = await w.page.$$eval('#f-instance option', (os) => os.map((o) => o.value));
  assert.equal(options[0], 'hub-1', JSON.stringify(options));
  assert.ok(options.includes('side-h1') && options.includes('side-h2'), JSON.stringify(options));
  // Its memory as the API has it for hub-1 alone (the sidecars pushed none).
  const mem = await w.page.textContent('[data-metric="system.memory.utilization"] .now');
  assert.match(mem.trim(), /^\d+%$/, mem);
  await w.page.screenshot({ path: join(SHOTS, 'central-host-own.png') });
  assert.deepEqual(w.problems, [], 'own host: console errors or failed requests');
  await w.page.close();
});

test('the OpenClaw views on the central show what a sidecar captured, as on the sidecar', { timeout: 120_000 }, async () => {
  // A sidecar on SQLite with the OpenClaw day and the gateway log, pushing to the central.
  const logDir = mkdtempSync(join(tmpdir(), 'oct-oclog-'));
  writeFileSync(join(logDir, 'openclaw-today.log'), fallbackLog());
  const port = new URL(daemon.base).port;
  const side = await startDaemon({
    OCT_PUSH_ENDPOINT: `http://127.0.0.1:${port}/v1/push`, OCT_PUSH_FORMAT: 'v2', OCT_PUSH_INTERVAL: '1s',
    OCT_PUSH_RETRY_INITIAL: '100ms', OCT_INSTANCE_ID: 'oc-edge', OCT_REGION: 'ams',
    OCT_LOG_PATH: `${logDir}/openclaw-*.log`, OCT_LOG_POLL_INTERVAL: '200ms',
  });
  try {
    const { events, ids: day } = openclawDay();
    await post(side.base, '/v1/openclaw/events', { plugin: { version: 'test' }, events });
    // The central also holds the other tests' runs: its views are checked against its
    // own API here (tests/postgres_central.rs compares them with the sidecar's).
    await until(async () => {
      const get = async (v) => (await getJson(daemon.base, `/v1/openclaw/${v}`)).body;
      const [sch, sub, fb] = await Promise.all([get('scheduled'), get('subagents'), get('fallbacks')]);
      return sch.totals.heartbeat_runs === 3 && sch.totals.cron_runs === 1 && fb.decisions === 3
        && sub.parents.some((p) => p.trace_id === day.parent && p.total_cost_usd.toFixed(6) === '0.060000');
    }, 45_000, 'the sidecar\'s OpenClaw day on the central');
    const api = async (path) => (await getJson(daemon.base, path)).body;
    const sch = await api('/v1/openclaw/scheduled');
    assert.equal(sch.totals.heartbeat_runs, 3, JSON.stringify(sch.totals));

    // The OpenClaw tab shows now that the central holds OpenClaw runs.
    let w = await open('#/openclaw/scheduled', 'section.view.openclaw[data-tab="scheduled"] tr[data-kind]');
    let { page } = w;
    await page.waitForSelector('nav.nav a[data-nav="openclaw"]');
    assert.equal((await page.textContent('#oc-no-reply')).trim(), fmt.int(sch.totals.no_reply));
    assert.equal(await page.$$eval('tr[data-trace]', (r) => r.length), sch.runs.length);
    await page.screenshot({ path: join(SHOTS, 'central-openclaw-scheduled.png') });

    // One sidecar's runs: the filter form offers the sidecar on a central.
    await page.goto(`${daemon.base}/#/openclaw/scheduled?instance=oc-edge`);
    await page.waitForSelector('section.view.openclaw input[name="instance"]');
    const mine = await api('/v1/openclaw/scheduled?instance=oc-edge');
    assert.equal(mine.totals.heartbeat_runs, 3, JSON.stringify(mine.totals));
    await page.waitForFunction((n) => document.querySelectorAll('tr[data-trace]').length === n, mine.runs.length);
    await page.screenshot({ path: join(SHOTS, 'central-openclaw-one-sidecar.png') });
    await page.goto(`${daemon.base}/#/openclaw/scheduled?instance=nowhere`);
    await page.waitForFunction(() => document.querySelectorAll('tr[data-trace]').length === 0);
    assert.equal((await api('/v1/openclaw/scheduled?instance=nowhere')).runs.length, 0);

    // Sub-agents under the run that spawned them, the cost rolled up.
    await page.goto(`${daemon.base}/#/openclaw/subagents`);
    await page.waitForSelector(`li.sub-parent[data-trace="${day.parent}"]`);
    const sub = await api('/v1/openclaw/subagents');
    const parent = sub.parents.find((p) => p.trace_id === day.parent);
    assert.equal((await page.textContent(`li.sub-parent[data-trace="${day.parent}"] .total`)).trim(), fmt.cost(parent.total_cost_usd));
    assert.equal(parent.total_cost_usd.toFixed(6), '0.060000');
    await page.screenshot({ path: join(SHOTS, 'central-openclaw-subagents.png') });

    // Cache: by agent, model or session (a central sums sessions from its spans).
    await page.goto(`${daemon.base}/#/openclaw/cache?by=model`);
    await page.waitForSelector('tr[data-key="claude-sonnet-4-5"]');
    const groups = await page.$$eval('.seg button', (b) => b.map((x) => x.textContent));
    assert.deepEqual(groups, ['by agent', 'by model', 'by session']);
    const cache = await api('/v1/openclaw/cache?by=model');
    assert.equal((await page.textContent('#oc-cache-saved')).trim(), fmt.cost(cache.totals.net_saved_usd));
    await page.click('.seg button:has-text("by session")');
    const bySession = await api('/v1/openclaw/cache?by=session');
    assert.ok(bySession.rows.length >= 1, JSON.stringify(bySession));
    await page.waitForSelector(`tr[data-key="${bySession.rows[0].key}"]`);
    assert.equal((await page.textContent('#oc-cache-saved')).trim(), fmt.cost(bySession.totals.net_saved_usd));
    await page.screenshot({ path: join(SHOTS, 'central-openclaw-cache-sessions.png') });

    // Waste: the loop and the retries.
    await page.goto(`${daemon.base}/#/openclaw/waste`);
    await page.waitForSelector(`tr[data-trace="${day.loop}"]`);
    assert.ok(await page.$(`tr[data-trace="${RETRY_TRACE}"] [data-flag="provider_retries"]`));
    await page.screenshot({ path: join(SHOTS, 'central-openclaw-waste.png') });
    assert.deepEqual(w.problems, [], 'OpenClaw tabs: console errors or failed requests');
    await page.close();

    // The summary, and a run that lists its sub-agents' runs.
    w = await open('#/openclaw', 'section.view.openclaw[data-tab="summary"]');
    await w.page.waitForSelector('#oc-hb-cost');
    assert.equal((await w.page.textContent('#oc-hb-cost')).trim(), fmt.cost(sch.totals.heartbeat_cost_usd));
    await w.page.screenshot({ path: join(SHOTS, 'central-openclaw.png') });
    assert.deepEqual(w.problems, [], 'OpenClaw summary: console errors or failed requests');
    await w.page.close();
    w = await open(`#/runs/${day.parent}`, '#run-total-cost');
    const d = await api(`/v1/traces/${day.parent}`);
    assert.deepEqual(d.sub_traces.map((t) => t.trace_id), day.children);
    assert.equal((await w.page.textContent('#run-total-cost')).trim(), fmt.cost(d.rollup.total_cost_usd));
    const chips = await w.page.$$eval('[data-subagent="agent:main:subagent:abc-123"] a.subrun', (a) => a.map((x) => x.dataset.trace));
    assert.deepEqual(chips, day.children);
    assert.deepEqual(w.problems, [], 'run with sub-agents: console errors or failed requests');
    await w.page.close();
  } finally {
    await side.stop();
    rmSync(logDir, { recursive: true, force: true });
  }
});
