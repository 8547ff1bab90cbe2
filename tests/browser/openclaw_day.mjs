// An OpenClaw day for the dashboard tests: runs as the OpenClaw 2026.9.6 plugin delivers
// them (as tests/common/openclaw_day.rs builds them for the Rust tests), a sub-agent
// spawn, a compaction, and the recorded gateway log's fallback and retry lines.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './harness.mjs';

export const RETRY_TRACE = '590290b6c4e5f2264479c9bd422f332c';

export const traceOf = (n) => `${n.toString(16).padStart(8, '0')}aaaabbbbccccdddd00000000`;
const spanOf = (trace, n) => `${trace.slice(0, 12)}${n.toString(16).padStart(4, '0')}`;

/** One run as the plugin delivers it (hooks, a model call, tools, model.usage). */
export function runEvents(r) {
  const root = spanOf(r.trace, 1);
  const attempt = spanOf(r.trace, 2);
  const call = spanOf(r.trace, 3);
  const ctx = { runId: r.runId, agentId: r.agent, sessionKey: r.sessionKey, sessionId: r.sessionId, trigger: r.trigger, trace: { traceId: r.trace, spanId: attempt, parentSpanId: root } };
  if (r.channel) Object.assign(ctx, { channel: r.channel, messageProvider: r.channel });
  const t = r.at;
  const out = [{ kind: 'hook:llm_input', ts: t, event: { runId: r.runId, sessionId: r.sessionId, provider: r.provider, model: r.model, promptChars: 10 }, ctx }];
  out.push({ kind: 'tdiag:model.call.completed', ts: t + 400, ctx: { trusted: true }, event: {
    type: 'model.call.completed', runId: r.runId, callId: `${r.runId}:model:1`, sessionKey: r.sessionKey, sessionId: r.sessionId,
    provider: r.provider, model: r.model, durationMs: 300, contextTokenBudget: r.context ? r.context[1] : undefined,
    usage: { input: r.input, output: r.output, cacheRead: r.cacheRead, cacheWrite: r.cacheWrite, total: r.input + r.output + r.cacheRead + r.cacheWrite, cost: { total: r.cost } },
    trace: { traceId: r.trace, spanId: call, parentSpanId: attempt }, ts: t + 400 } });
  r.tools.forEach(([tool, hash], i) => {
    const ev = { toolName: tool, toolCallId: `call_${i}`, runId: r.runId, paramsHash: hash };
    out.push({ kind: 'hook:before_tool_call', ts: t + 500 + i * 10, event: ev, ctx });
    out.push({ kind: 'hook:after_tool_call', ts: t + 505 + i * 10, event: { ...ev, durationMs: 5 }, ctx });
  });
  const output = { runId: r.runId, assistantTextsChars: 12, lastAssistant: { stopReason: 'stop' } };
  if (r.reply) output.silentReply = r.reply;
  out.push({ kind: 'hook:llm_output', ts: t + 900, event: output, ctx });
  out.push({ kind: 'hook:agent_end', ts: t + 1000, event: { runId: r.runId, success: true, durationMs: 1000 }, ctx });
  const usage = { type: 'model.usage', sessionKey: r.sessionKey, sessionId: r.sessionId, provider: r.provider, model: r.model, usage: { input: r.input, output: r.output }, costUsd: r.cost, durationMs: 1000, trace: { traceId: r.trace, spanId: root }, ts: t + 1001 };
  if (r.channel) usage.channel = r.channel;
  if (r.context) usage.context = { used: r.context[0], limit: r.context[1] };
  out.push({ kind: 'tdiag:model.usage', ts: t + 1001, event: usage, ctx: { trusted: true } });
  return out;
}

export function spec(n, at, o = {}) {
  return { trace: traceOf(n), agent: 'main', sessionKey: 'agent:main:main', sessionId: 's-main', runId: `run-${n}`, trigger: 'user', channel: null, provider: 'anthropic', model: 'claude-sonnet-4-5', input: 100, output: 20, cacheRead: 0, cacheWrite: 0, cost: 0.001, reply: null, context: null, tools: [], at, ...o };
}

/** The recorded gateway log's fallback and retry lines, their times moved so the newest is a minute ago. */
export function fallbackLog() {
  // Only the lines about runs (cron lines hold future wake-up times that would move the rest).
  const lines = readFileSync(join(ROOT, 'tests/fixtures/openclaw/gateway_log.jsonl'), 'utf8').split('\n').filter((l) => l.includes('model_fallback_decision') || l.includes(RETRY_TRACE));
  const iso = /(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)/g;
  const times = lines.flatMap((l) => [...l.matchAll(iso)].map((m) => Date.parse(`${m[1]}${m[2] || ''}${m[3]}`)));
  const delta = Math.floor((Date.now() - 60_000 - Math.max(...times)) / 1000) * 1000;
  return lines.map((l) => l.replace(iso, (_, s, frac, zone) => {
    const d = new Date(Date.parse(`${s}${frac || ''}${zone}`) + delta).toISOString();
    const digits = frac ? frac.length - 1 : 0;
    return `${d.slice(0, 19)}${digits ? `.${d.slice(20, 23).padEnd(digits, '0').slice(0, digits)}` : ''}${zone}`;
  })).join('\n') + '\n';
}

/** The day's runs from half an hour ago, the plugin events that deliver them, and their ids. */
export function openclawDay() {
  const base = Date.now() - 30 * 60_000;
  const parentKey = 'agent:main:openai:u1';
  const runs = [
    spec(1, base, { sessionKey: parentKey, sessionId: 's-web', channel: 'webchat', cacheRead: 900, cacheWrite: 50, cost: 0.01, context: [1050, 200_000] }),
    spec(40, base + 2 * 60_000, { sessionKey: 'agent:main:subagent:abc-123', sessionId: 's-sub', cost: 0.03 }),
    spec(41, base + 3 * 60_000, { sessionKey: 'agent:main:subagent:abc-123', sessionId: 's-sub', cost: 0.02 }),
    ...['HEARTBEAT_OK', 'HEARTBEAT_OK', 'NO_REPLY'].map((reply, i) => spec(10 + i, base + (4 + i) * 60_000, { trigger: 'heartbeat', reply, cost: 0.002 })),
    spec(20, base + 8 * 60_000, { trigger: 'cron', sessionKey: 'agent:main:cron:job-7', sessionId: 's-cron', cost: 0.005 }),
    spec(30, base + 9 * 60_000, { channel: 'telegram', sessionKey: 'agent:main:telegram:direct:42', sessionId: 's-tg', cost: 0.02, context: [170_000, 200_000] }),
    spec(50, base + 11 * 60_000, { tools: [['ls', 'aaaa'], ['ls', 'aaaa'], ['ls', 'aaaa'], ['read', 'bbbb']] }),
    spec(60, base + 12 * 60_000, { trace: RETRY_TRACE }),
  ];
  const events = runs.flatMap(runEvents);
  events.push({ kind: 'hook:subagent_spawned', ts: base + 60_000, event: { runId: 'run-40', childSessionKey: 'agent:main:subagent:abc-123', agentId: 'main', label: 'research', mode: 'run' }, ctx: { requesterSessionKey: parentKey } });
  events.push({ kind: 'hook:after_compaction', ts: base + 9 * 60_000 + 2000, event: { messageCount: 12, compactedCount: 1 }, ctx: { agentId: 'main', sessionKey: 'agent:main:telegram:direct:42', sessionId: 's-tg', trigger: 'overflow' } });
  const ids = { parent: traceOf(1), children: [traceOf(40), traceOf(41)], loop: traceOf(50), hb: [traceOf(10), traceOf(11), traceOf(12)], runs: runs.length };
  return { runs, events, ids };
}
