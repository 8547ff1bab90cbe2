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
  return h('section', { class: 'view session' },
    header(`Session ${id}`, h('a', { class: 'button secondary', href: link(['runs'], { session_id: id }) }, 'Runs of this session')),
    h('div', { class: 'run-summary' },
      h('span', null, `agent ${s.agent_id ?? '—'}`),
      h('span', null, `${f.time(s.start_ms)} → ${f.time(s.end_ms)}`),
      h('span', null, `${f.int(s.runs)} runs · ${f.int(s.llm_calls)} LLM · ${f.int(s.tool_calls)} tools`),
      h('span', null, `${f.tokens(s.total_tokens)} tokens`),
      h('span', { class: 'cost' }, f.cost(s.cost_usd)),
      s.errors ? h('span', { class: 'error' }, `${f.int(s.errors)} errors`) : null),
    turns.length ? h('div', { class: 'turns' }, turns.map((t, i) => turn(t, offset + i))) : h('p', { class: 'muted empty' }, 'No runs in this session.'),
    data.next_cursor
      ? h('nav', { class: 'pager' }, h('a', { class: 'button', href: link(['sessions', id], { cursor: data.next_cursor, offset: offset + turns.length }) }, 'Later turns →'))
      : null);
}
