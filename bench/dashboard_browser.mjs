// How soon the dashboard's runs view is usable in headless Chromium, and how a
// 2,000-span run renders. Prints figures; run through bench/dashboard_browser.sh.
//   node bench/dashboard_browser.mjs [--runs N] [--repeat R]   (OCT_BIN picks the binary)

import { startDaemon, launch, post, until, getJson, hex } from '../tests/browser/harness.mjs';

const arg = (name, d) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : d;
};
const RUNS = arg('runs', 20_000);
const REPEAT = arg('repeat', 20);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

async function send(base, body) {
  for (let i = 0; ; i++) {
    try {
      return await post(base, '/v1/traces', body);
    } catch (e) {
      if (i > 100 || !/: (429|503)/.test(e.message)) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const d = await startDaemon({ OCT_QUEUE_CAPACITY: '200000' });
try {
  // RUNS runs of five spans each (an agent run, two LLM calls, two tool calls).
  const now = Date.now();
  let batch = [];
  for (let i = 0; i < RUNS; i++) {
    const trace = hex(16);
    const root = hex(8);
    const t0 = now - (RUNS - i) * 1000;
    const iso = (ms) => new Date(ms).toISOString();
    const c = { trace_id: trace, agent_id: `agent-${i % 5}`, session_id: `s-${i % 500}` };
    batch.push(
      { ...c, span_id: root, kind: 'agent_run', name: `run ${i}`, timestamp: iso(t0), latency_ms: 900 },
      { ...c, span_id: hex(8), parent_span_id: root, provider: 'openai', model: 'gpt-4o', timestamp: iso(t0 + 10), latency_ms: 300, prompt_tokens: 900, completion_tokens: 100 },
      { ...c, span_id: hex(8), parent_span_id: root, kind: 'tool_call', name: 'search', timestamp: iso(t0 + 320), latency_ms: 100 },
      { ...c, span_id: hex(8), parent_span_id: root, provider: 'openai', model: 'gpt-4o', timestamp: iso(t0 + 430), latency_ms: 300, prompt_tokens: 1100, completion_tokens: 80 },
      { ...c, span_id: hex(8), parent_span_id: root, kind: 'tool_call', name: 'write', timestamp: iso(t0 + 740), latency_ms: 100 },
    );
    if (batch.length >= 2500) {
      await send(d.base, batch);
      batch = [];
    }
  }
  if (batch.length) await send(d.base, batch);
  // One run of 2,000 spans: a root and 1,999 children, nested three deep in places.
  const big = hex(16);
  const bigRoot = hex(8);
  const spans = [{ trace_id: big, span_id: bigRoot, kind: 'agent_run', name: 'big run', agent_id: 'big', timestamp: new Date(now - 600_000).toISOString(), latency_ms: 500_000 }];
  let parent = bigRoot;
  for (let i = 1; i < 2000; i++) {
    const id = hex(8);
    const llm = i % 2 === 0;
    spans.push({ trace_id: big, span_id: id, parent_span_id: i % 3 === 0 ? parent : bigRoot, agent_id: 'big', name: llm ? `llm ${i}` : `tool ${i}`, kind: llm ? 'llm_call' : 'tool_call', ...(llm ? { provider: 'openai', model: 'gpt-4o', prompt_tokens: 100, completion_tokens: 10 } : {}), timestamp: new Date(now - 600_000 + i * 200).toISOString(), latency_ms: 150 });
    if (i % 3 === 0) parent = id;
  }
  await send(d.base, spans);
  await until(async () => (await getJson(d.base, `/v1/traces/${big}`)).body.trace?.span_count === 2000, 120_000, 'all spans stored');
  console.log(`data: ${RUNS} runs (${RUNS * 5} spans) + one run of 2000 spans`);

  const b = await launch();
  // In each page, note performance.now() (ms since navigation start) when a selector first
  // matches, from a MutationObserver (not from the test's polling).
  await b.context.addInitScript(() => {
    window.__seen = {};
    const watch = ['tbody tr[data-trace]', '.wf-row', '.span-details'];
    new MutationObserver(() => {
      for (const sel of watch) if (!window.__seen[sel] && document.querySelector(sel)) window.__seen[sel] = performance.now();
    }).observe(document, { childList: true, subtree: true });
  });
  try {
    const page = await b.context.newPage();
    // Warm the asset cache once, as a returning user has it.
    await page.goto(`${d.base}/#/runs`);
    await page.waitForSelector('tbody tr[data-trace]');
    const cold = [];
    const warm = [];
    for (let i = 0; i < REPEAT; i++) {
      // A fresh page each time: navigation start to the table's rows on screen.
      const p = await b.context.newPage();
      const t0 = Date.now();
      await p.goto(`${d.base}/#/runs`, { waitUntil: 'commit' });
      await p.waitForSelector('tbody tr[data-trace]');
      warm.push(await p.evaluate(() => window.__seen['tbody tr[data-trace]']));
      cold.push(Date.now() - t0);
      await p.close();
    }
    console.log(`runs view usable (navigation start -> table rows in the page): p50 ${pct(warm, 50).toFixed(0)} ms, p95 ${pct(warm, 95).toFixed(0)} ms, max ${Math.max(...warm).toFixed(0)} ms over ${REPEAT}`);
    console.log(`  (wall clock incl. playwright round trips: p50 ${pct(cold, 50)} ms, p95 ${pct(cold, 95)} ms)`);
    const filt = [];
    for (let i = 0; i < REPEAT; i++) {
      const p = await b.context.newPage();
      await p.goto(`${d.base}/#/runs?agent_id=agent-3&sort=duration`, { waitUntil: 'commit' });
      await p.waitForSelector('tbody tr[data-trace]');
      filt.push(await p.evaluate(() => window.__seen['tbody tr[data-trace]']));
      await p.close();
    }
    console.log(`runs view filtered by agent, sorted by duration: p50 ${pct(filt, 50).toFixed(0)} ms, p95 ${pct(filt, 95).toFixed(0)} ms`);
    const bigT = [];
    const clickT = [];
    for (let i = 0; i < Math.min(REPEAT, 10); i++) {
      const p = await b.context.newPage();
      await p.goto(`${d.base}/#/runs/${big}`, { waitUntil: 'commit' });
      await p.waitForFunction(() => document.querySelectorAll('.wf-row').length === 2000, null, { timeout: 30_000 });
      bigT.push(await p.evaluate(() => window.__seen['.wf-row']));
      const t = await p.evaluate(async () => {
        const rows = document.querySelectorAll('.wf-row');
        const t0 = performance.now();
        rows[1500].click();
        await new Promise((r) => requestAnimationFrame(() => r()));
        return performance.now() - t0;
      });
      clickT.push(t);
      await p.close();
    }
    console.log(`2000-span run: waterfall shown p50 ${pct(bigT, 50).toFixed(0)} ms, p95 ${pct(bigT, 95).toFixed(0)} ms; a span's details after a click p50 ${pct(clickT, 50).toFixed(1)} ms, max ${Math.max(...clickT).toFixed(1)} ms`);
  } finally {
    await b.close();
  }
} finally {
  await d.stop();
}
