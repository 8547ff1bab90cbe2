// Known data for the dashboard's tests, all dated relative to now.

import { post, hex, until, getJson, openclawFixture, runPythonSdk } from './harness.mjs';

export const XSS_NAME = '<img src=x onerror=alert(1)>';
export const XSS_INPUT = '<script>window.__xss = 1; alert("xss")</script> & "quotes"';

const iso = (ms) => new Date(ms).toISOString();

/** One span through the native API. */
function span(o) {
  return { provider: 'openai', model: 'gpt-4o', ...o };
}

export async function seed(base, { token, otlp = true, openclaw = true } = {}) {
  const now = Date.now();
  const ids = {};
  const spans = [];
  // Run A (alpha, session sess-alpha): agent run -> llm, tool -> nested llm.
  const runA = (key, t0, question) => {
    const trace = hex(16);
    const root = hex(8);
    const llm1 = hex(8);
    const tool = hex(8);
    const llm2 = hex(8);
    ids[key] = { trace, root, llm1, tool, llm2 };
    const common = { trace_id: trace, agent_id: 'alpha', session_id: 'sess-alpha', user_id: 'u1' };
    spans.push(
      { ...common, span_id: root, kind: 'agent_run', name: `plan trip ${key}`, timestamp: iso(t0), latency_ms: 4200, input_text: question, output_text: `Done: ${question}` },
      span({ ...common, span_id: llm1, parent_span_id: root, name: 'chat gpt-4o', timestamp: iso(t0 + 100), latency_ms: 1500, prompt_tokens: 1000, completion_tokens: 200, cost_usd: 0.0125, input_text: question, output_text: 'I will search for flights.', finish_reasons: ['tool_calls'] }),
      { ...common, span_id: tool, parent_span_id: root, kind: 'tool_call', name: 'search', tool_name: 'search', tool_call_id: `call-${key}`, timestamp: iso(t0 + 1700), latency_ms: 2000, input_text: '{"q":"flights to Lisbon"}', output_text: '{"results":3}' },
      span({ ...common, span_id: llm2, parent_span_id: tool, name: 'summarize', timestamp: iso(t0 + 1800), latency_ms: 1200, prompt_tokens: 400, completion_tokens: 80, cost_usd: 0.004, input_text: 'summarize results', output_text: 'Three flights found.' }),
    );
  };
  runA('a1', now - 10 * 60_000, 'Find me a flight to Lisbon');
  // A sub-run of a1: another agent's run whose root names a1 as its parent trace.
  ids.sub = hex(16);
  spans.push({ trace_id: ids.sub, span_id: hex(8), parent_trace_id: ids.a1.trace, kind: 'agent_run', agent_id: 'helper', session_id: 'sess-helper', name: 'book hotel (sub-run)', timestamp: iso(now - 10 * 60_000 + 2500), latency_ms: 900 });
  runA('a2', now - 5 * 60_000, 'And a hotel near the river');
  ids.alphaCost = 2 * (0.0125 + 0.004);
  // Run B (beta, failed) and C (beta, ok).
  ids.b = hex(16);
  ids.c = hex(16);
  spans.push(
    span({ trace_id: ids.b, span_id: hex(8), agent_id: 'beta', session_id: 'sess-beta', name: 'chat claude', provider: 'anthropic', model: 'claude-sonnet-4', timestamp: iso(now - 8 * 60_000), latency_ms: 900, prompt_tokens: 300, completion_tokens: 0, cost_usd: 0.0009, status: 'error', error_type: 'rate_limited' }),
    span({ trace_id: ids.c, span_id: hex(8), agent_id: 'beta', session_id: 'sess-beta', name: 'chat claude ok', provider: 'anthropic', model: 'claude-sonnet-4', timestamp: iso(now - 7 * 60_000), latency_ms: 700, prompt_tokens: 300, completion_tokens: 50, cost_usd: 0.00165 }),
  );
  // The XSS cases: a span name and an input text that would run if parsed as HTML.
  ids.xss = hex(16);
  ids.xssSpan = hex(8);
  spans.push(span({ trace_id: ids.xss, span_id: ids.xssSpan, agent_id: 'xss', session_id: 'sess-xss', name: XSS_NAME, timestamp: iso(now - 3 * 60_000), latency_ms: 300, prompt_tokens: 10, completion_tokens: 5, input_text: XSS_INPUT, output_text: '<b>bold?</b>' }));
  // Agent gamma: steady runs, then one that costs a hundred times more (an anomaly).
  ids.gamma = [];
  for (let i = 0; i < 7; i++) {
    const trace = hex(16);
    const root = hex(8);
    const big = i === 6;
    ids.gamma.push(trace);
    const t0 = now - (40 - i * 4) * 60_000;
    spans.push(
      { trace_id: trace, span_id: root, kind: 'agent_run', agent_id: 'gamma', session_id: `sess-gamma-${i}`, name: big ? 'nightly report (runaway)' : 'nightly report', timestamp: iso(t0), latency_ms: big ? 30_000 : 2000 + i * 50 },
      span({ trace_id: trace, span_id: hex(8), parent_span_id: root, agent_id: 'gamma', session_id: `sess-gamma-${i}`, name: 'chat gpt-4o-mini', model: 'gpt-4o-mini', timestamp: iso(t0 + 10), latency_ms: 1000, prompt_tokens: big ? 90_000 : 900 + i * 10, completion_tokens: big ? 9000 : 100, cost_usd: big ? 0.5 : 0.001 + i * 0.0001 }),
    );
  }
  ids.gammaBig = ids.gamma[6];
  await post(base, '/v1/traces', spans, { token });
  await post(base, '/v1/errors', { error_type: 'ToolTimeout', message: 'search took too long', agent_id: 'alpha', trace_id: ids.a1.trace, span_id: ids.a1.tool, timestamp: iso(now - 10 * 60_000 + 3000), category: 'tool' }, { token });
  if (openclaw) {
    ids.openclaw = await post(base, '/v1/openclaw/events', openclawFixture(), { token, type: 'application/x-ndjson' });
  }
  if (otlp) ids.otlp = await runPythonSdk(base);
  // Everything is stored once the runs are listed.
  await until(async () => {
    const { body } = await getJson(base, `/v1/traces?limit=1000`, token);
    const have = new Set((body.traces || []).map((t) => t.trace_id));
    return [ids.a1.trace, ids.a2.trace, ids.sub, ids.b, ids.c, ids.xss, ...ids.gamma, ...(otlp ? [ids.otlp.trace_id] : [])].every((t) => have.has(t));
  }, 20_000, 'seeded runs');
  return ids;
}
