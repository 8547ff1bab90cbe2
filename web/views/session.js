// Sessions: the list, and one session as the conversation it was (turns in time order:
// the user's message, the model's answers, tool calls with arguments and results).

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { link } from '../lib/router.js';
import { header, filterForm, rangePicker, table, pager, badge, runLink } from '../lib/ui.js';

export const title = (path) => (path[1] ? `Session ${path[1]}` : 'Sessions');

async function list(params, signal) {
  const [from, to] = f.resolveRange(params, '7d');
  const data = await api.get('/v1/sessions', { agent_id: params.agent_id, from: Math.floor(from), to: Math.ceil(to), limit: 50, cursor: params.cursor }, { signal });
  const rows = data.sessions || [];
  const cols = [
    { label: 'Session', cell: (r) => h('a', { href: link(['sessions', r.session_id]) }, r.session_id), cls: 'name' },
    { label: 'Agent', cell: (r) => r.agent_id || '—' },
    { label: 'Start', cell: (r) => f.time(r.start_ms), cls: 'nowrap' },
    { label: 'Last', cell: (r) => f.time(r.end_ms), cls: 'nowrap' },
    { label: 'Runs', cell: (r) => f.int(r.runs), cls: 'num' },
    { label: 'LLM', cell: (r) => f.int(r.llm_calls), cls: 'num' },
    { label: 'Tools', cell: (r) => f.int(r.tool_calls), cls: 'num' },
    { label: 'Tokens', cell: (r) => f.tokens(r.total_tokens), cls: 'num' },
    { label: 'Cost', cell: (r) => f.cost(r.cost_usd), cls: 'num' },
    { label: 'Errors', cell: (r) => f.int(r.errors), cls: 'num' },
  ];
  return h('section', { class: 'view sessions' },
    header('Sessions', rangePicker(params, '7d')),
    filterForm(params, [{ name: 'agent_id', label: 'Agent' }]),
    rows.length ? table(cols, rows, { caption: 'Sessions' }) : h('p', { class: 'muted empty' }, 'No sessions in this range.'),
    pager(params, data.next_cursor));
}

function message(m, i, all) {
  const role = m.role || 'assistant';
  const meta = [
    m.model ? m.model : null,
    m.input_tokens !== undefined && m.input_tokens !== null ? `${f.int(m.input_tokens)} in` : null,
    m.output_tokens !== undefined && m.output_tokens !== null ? `${f.int(m.output_tokens)} out` : null,
    m.cost_usd !== undefined && m.cost_usd !== null ? f.cost(m.cost_usd) : null,
    m.time_ms ? f.clock(m.time_ms) : null,
  ].filter(Boolean).join(' · ');
  const cut = m.text_truncated ? h('span', { class: 'cut' }, ` cut: ${f.int((m.text || '').length)} of ${f.int(m.text_length)} characters`) : null;
  if (role === 'tool') {
    return h('li', { class: `msg tool${m.status === 'error' ? ' err' : ''}`, 'data-role': 'tool' },
      h('div', { class: 'msg-head' }, h('strong', null, `Tool · ${m.tool_name || 'call'}`), m.status ? badge(m.status) : null, h('span', { class: 'muted' }, meta)),
      h('details', null, h('summary', null, 'Arguments and result'),
        h('div', { class: 'json-head' }, 'Arguments'), h('pre', { class: 'code wrap' }, fmtMaybeJson(m.arguments)),
        h('div', { class: 'json-head' }, 'Result'), h('pre', { class: 'code wrap' }, fmtMaybeJson(m.result))));
  }
  return h('li', { class: `msg ${role === 'user' ? 'user' : 'assistant'}`, 'data-role': role },
    h('div', { class: 'msg-head' }, h('strong', null, role === 'user' ? 'User' : 'Assistant'), h('span', { class: 'muted' }, meta)),
    h('div', { class: 'msg-text' }, m.text ?? h('span', { class: 'muted' }, silent(m, all && all[i + 1])), cut));
}

// An answer without text: a call that asked for a tool (the next message is the tool), a
// failed call, or one whose text was not captured.
function silent(m, next) {
  if (m.status === 'error') return '(failed: no answer)';
  if (next && next.role === 'tool') return '(asked for a tool)';
  return '(no text captured)';
}

function fmtMaybeJson(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') {
    try {
      return JSON.stringify(JSON.parse(v), null, 2);
    } catch {
      return v;
    }
  }
  return JSON.stringify(v, null, 2);
}

function turn(t, i) {
  return h('article', { class: 'turn', 'data-trace': t.trace_id, 'aria-label': `Turn ${i + 1}` },
    h('header', { class: 'turn-head' },
      h('span', { class: 'turn-n' }, `#${i + 1}`),
      runLink(t.trace_id, t.name || '(run)'),
      badge(t.status),
      h('span', { class: 'muted' }, f.time(t.start_ms)),
      h('span', { class: 'muted' }, f.duration((t.end_ms ?? t.start_ms) - t.start_ms)),
      h('span', null, `${f.int(t.input_tokens)} in · ${f.int(t.output_tokens)} out`),
      h('span', { class: 'cost' }, f.cost(t.cost_usd))),
    h('ol', { class: 'msgs' }, (t.messages || []).map(message)));
}

export async function render({ path, params, signal }) {
  if (!path[1]) return list(params, signal);
  const id = path[1];
  const data = await api.get(`/v1/sessions/${encodeURIComponent(id)}`, { limit: 50, cursor: params.cursor }, { signal });
  const s = data.session || {};
  const turns = data.turns || [];
  const offset = Number(params.offset || 0);
  const why = await openclawWhy(id, s, turns, signal);
  return h('section', { class: 'view session' },
    header(`Session ${id}`, h('a', { class: 'button secondary', href: link(['runs'], { session_id: id }) }, 'Runs of this session')),
    h('div', { class: 'run-summary' },
      h('span', null, `agent ${s.agent_id ?? '—'}`),
      h('span', null, `${f.time(s.start_ms)} → ${f.time(s.end_ms)}`),
      h('span', null, `${f.int(s.runs)} runs · ${f.int(s.llm_calls)} LLM · ${f.int(s.tool_calls)} tools`),
      h('span', null, `${f.tokens(s.total_tokens)} tokens`),
      h('span', { class: 'cost' }, f.cost(s.cost_usd)),
      s.errors ? h('span', { class: 'error' }, `${f.int(s.errors)} errors`) : null),
    why,
    turns.length ? h('div', { class: 'turns' }, turns.map((t, i) => turn(t, offset + i))) : h('p', { class: 'muted empty' }, 'No runs in this session.'),
    data.next_cursor
      ? h('nav', { class: 'pager' }, h('a', { class: 'button', href: link(['sessions', id], { cursor: data.next_cursor, offset: offset + turns.length }) }, 'Later turns →'))
      : null);
}

/**
 * What drove an OpenClaw session's cost, from the OpenClaw views over the session's time:
 * its scheduled (heartbeat, cron) runs, its context against the window and compactions,
 * its cache hits and savings, the sub-agents its runs spawned (their cost is not in the
 * session's), and its runs' waste flags. Nothing when none of that is known.
 */
async function openclawWhy(id, s, turns, signal) {
  if (!s.start_ms) return null;
  const w = { from: Math.floor(s.start_ms) - 1, to: Math.ceil(s.end_ms ?? s.start_ms) + 60_000 };
  const get = (path, extra) => api.get(path, { ...w, ...extra }, { signal }).catch(() => null);
  const [sch, ctx, cache, sub, waste] = await Promise.all([
    get('/v1/openclaw/scheduled', { limit: 1000 }),
    get('/v1/openclaw/context', { limit: 1 }),
    // The cache view counts whole hours (the hourly usage rollups, or on a central the
    // calls by the hour they started in).
    get('/v1/openclaw/cache', { by: 'session', from: Math.floor(w.from / 3_600_000) * 3_600_000, to: Math.ceil(w.to / 3_600_000) * 3_600_000 }),
    // Sub-agents spawned by its runs may run on after the session's last turn.
    get('/v1/openclaw/subagents', { to: Math.max(w.to, Math.min(Date.now(), w.to + 86_400_000)) }),
    get('/v1/openclaw/waste'),
  ]);
  const items = [];
  const runIds = new Set(turns.map((t) => t.trace_id));
  const mine = ((sch && sch.runs) || []).filter((r) => r.session_id === id);
  if (mine.length) {
    const cost = mine.reduce((a, r) => a + (r.cost_usd || 0), 0);
    const kinds = [...new Set(mine.map((r) => r.trigger))].join(' and ');
    const silent = mine.filter((r) => r.silent_reply).length;
    items.push(h('li', { 'data-why': 'scheduled' }, `${f.int(mine.length)} ${kinds} run${mine.length === 1 ? '' : 's'} cost ${f.cost(cost)}`,
      s.cost_usd ? ` (${f.pct((100 * cost) / s.cost_usd, 0)} of the session)` : '',
      silent ? `; ${f.int(silent)} answered HEARTBEAT_OK or NO_REPLY` : ''));
  }
  const c = ((ctx && ctx.sessions) || []).find((x) => x.session_id === id);
  if (c) {
    items.push(h('li', { 'data-why': 'context' }, `context peaked at ${f.pct(c.max_used_ratio * 100, 1)} of a ${f.tokens(c.context_window)} window (${f.int(c.max_context_tokens)} tokens)`,
      c.compactions ? `, compacted ${c.compactions}×` : ''));
  }
  const ch = ((cache && cache.rows) || []).find((x) => x.key === id);
  if (ch && ch.hit_rate !== null && ch.hit_rate !== undefined && (items.length || ch.cache_read_tokens)) {
    items.push(h('li', { 'data-why': 'cache' }, `${f.pct(ch.hit_rate * 100, 1)} of its prompt tokens came from the cache`, ch.net_saved_usd ? `, saving ${f.cost(ch.net_saved_usd)}` : ''));
  }
  const spawned = ((sub && sub.subagents) || []).filter((l) => l.parent_trace_id && runIds.has(l.parent_trace_id));
  if (spawned.length) {
    const cost = spawned.reduce((a, l) => a + (l.child_cost_usd || 0), 0);
    items.push(h('li', { 'data-why': 'subagents' }, `its runs spawned ${f.int(spawned.length)} sub-agent${spawned.length === 1 ? '' : 's'} costing `, h('strong', null, f.cost(cost)),
      ' more (not in this session\'s cost): ', spawned.map((l) => h('a', { href: link(['runs', l.parent_trace_id]) }, l.label || l.child_session_key)).flatMap((a, i) => (i ? [', ', a] : [a]))));
  }
  const flagged = ((waste && waste.runs) || []).filter((r) => runIds.has(r.trace_id));
  if (flagged.length) {
    items.push(h('li', { 'data-why': 'waste' }, `${f.int(flagged.length)} run${flagged.length === 1 ? '' : 's'} flagged as waste: `,
      flagged.map((r) => runLink(r.trace_id, r.flags.map((x) => x.flag.replace('_', ' ')).join(', '))).flatMap((a, i) => (i ? [', ', a] : [a]))));
  }
  if (!items.length) return null;
  return h('div', { class: 'card why-card', id: 'session-why' }, h('h2', null, 'What drove its cost'), h('ul', { class: 'why' }, items));
}
