// Runs (traces): a filterable, sortable table, paged by cursor; filters live in the URL.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { setParams } from '../lib/router.js';
import { header, filterForm, rangePicker, table, pager, badge, runLink, sessionLink } from '../lib/ui.js';

export const title = () => 'Runs';

const FIELDS = [
  { name: 'q', label: 'Name', placeholder: 'contains…', size: 14 },
  { name: 'agent_id', label: 'Agent', size: 10 },
  { name: 'session_id', label: 'Session', size: 10 },
  { name: 'user_id', label: 'User', size: 8 },
  { name: 'provider', label: 'Provider', size: 8 },
  { name: 'model', label: 'Model', size: 10 },
  { name: 'status', label: 'Status', type: 'select', options: [['', 'any'], ['ok', 'ok'], ['error', 'error'], ['unset', 'unset']] },
  { name: 'min_cost', label: 'Min cost $', type: 'number', step: 'any', min: 0, size: 6 },
  { name: 'instance', label: 'Instance', size: 10, placeholder: 'sidecar' },
];

const SORTS = [
  ['start', 'Start'],
  ['duration', 'Duration'],
  ['cost', 'Cost'],
];

function sortHeader(params, key, label) {
  const sort = params.sort || 'start';
  const order = params.order || 'desc';
  const on = sort === key;
  const next = on && order === 'desc' ? 'asc' : 'desc';
  return h(
    'button',
    {
      type: 'button',
      class: 'th-sort',
      'aria-label': `Sort by ${label}${on ? `, now ${order === 'desc' ? 'descending' : 'ascending'}` : ''}`,
      onclick: () => setParams({ sort: key === 'start' && next === 'desc' ? null : key, order: next === 'desc' ? null : next, cursor: null }),
    },
    label,
    on ? (order === 'desc' ? ' ↓' : ' ↑') : '',
  );
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, 'all');
  const q = {
    agent_id: params.agent_id,
    session_id: params.session_id,
    user_id: params.user_id,
    provider: params.provider,
    model: params.model,
    status: params.status,
    q: params.q,
    min_cost: params.min_cost,
    instance: params.instance,
    sort: params.sort,
    order: params.order,
    from: from === null ? null : Math.floor(from),
    to: to === null ? null : Math.ceil(to),
    limit: params.limit || 50,
    cursor: params.cursor,
  };
  const data = await api.get('/v1/traces', q, { signal });
  const rows = data.traces || [];
  const cols = [
    { label: sortHeader(params, 'start', 'Start'), cell: (r) => f.time(f.nsToMs(r.start_ns)), cls: 'nowrap' },
    { label: 'Run', cell: (r) => runLink(r.trace_id, r.name || '(unnamed)'), cls: 'name' },
    { label: 'Agent', cell: (r) => r.agent_id || '—' },
    { label: 'Session', cell: (r) => sessionLink(r.session_id), cls: 'clip' },
    { label: sortHeader(params, 'duration', 'Duration'), cell: (r) => f.duration(r.duration_ms), cls: 'num' },
    { label: 'Spans', cell: (r) => f.int(r.span_count), cls: 'num' },
    { label: 'LLM', cell: (r) => f.int(r.llm_calls), cls: 'num' },
    { label: 'Tools', cell: (r) => f.int(r.tool_calls), cls: 'num' },
    { label: 'Tokens', cell: (r) => f.tokens(r.total_tokens), cls: 'num' },
    { label: sortHeader(params, 'cost', 'Cost'), cell: (r) => f.cost(r.cost_usd), cls: 'num' },
    { label: 'Status', cell: (r) => badge(r.status) },
  ];
  return h(
    'section',
    { class: 'view runs' },
    header('Runs', rangePicker(params, 'all', ['all'])),
    filterForm(params, FIELDS),
    rows.length
      ? table(cols, rows, { caption: 'Runs', rowAttrs: (r) => ({ 'data-trace': r.trace_id, 'data-status': r.status }) })
      : h('p', { class: 'muted empty' }, 'No runs match these filters.'),
    pager(params, data.next_cursor),
  );
}
