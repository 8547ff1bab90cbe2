// Errors and host conditions, filtered by category, state, severity and agent, each
// linked to its run when it has one.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { header, filterForm, rangePicker, table, pager, runLink } from '../lib/ui.js';

export const title = () => 'Errors';

const FIELDS = [
  { name: 'category', label: 'Category', size: 10, placeholder: 'disk, llm, …' },
  { name: 'state', label: 'State', type: 'select', options: [['', 'any'], ['open', 'open'], ['resolved', 'resolved']] },
  { name: 'severity', label: 'Severity', type: 'select', options: [['', 'any'], ['warning', 'warning'], ['error', 'error'], ['fatal', 'fatal']] },
  { name: 'agent_id', label: 'Agent', size: 10 },
  { name: 'error_type', label: 'Type', size: 12 },
];

function state(e) {
  const st = e.attributes && e.attributes.state;
  if (!st) return '—';
  return h('span', { class: `badge st-${st === 'active' ? 'error' : 'ok'}` }, st === 'active' ? 'open' : st);
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, '7d', Date.now());
  const data = await api.get('/v1/errors', {
    category: params.category, state: params.state, severity: params.severity, agent_id: params.agent_id, error_type: params.error_type,
    from: Math.floor(from), to: Math.ceil(to), limit: 50, cursor: params.cursor,
  }, { signal });
  const rows = data.errors || [];
  const cols = [
    { label: 'Time', cell: (e) => f.time(f.nsToMs(e.time_ns)), cls: 'nowrap' },
    { label: 'Severity', cell: (e) => h('span', { class: `sev sev-${String(e.severity || '').replace(/[^a-z]/g, '')}` }, e.severity || '—') },
    { label: 'Category', cell: (e) => e.category || '—' },
    { label: 'Name', cell: (e) => e.name || e.type || '—', cls: 'name' },
    { label: 'Message', cell: (e) => h('span', { class: 'msg-cell', title: e.message || '' }, e.message || ''), cls: 'wide' },
    { label: 'State', cell: state },
    { label: 'Agent', cell: (e) => e.agent_id || '—' },
    { label: 'Run', cell: (e) => (e.trace_id ? runLink(e.trace_id) : '—') },
  ];
  const rowAttrs = (e) => ({ 'data-id': e.id, 'data-category': e.category || '', 'data-state': (e.attributes && e.attributes.state) || '' });
  return h('section', { class: 'view errors' },
    header('Errors', rangePicker(params, '7d')),
    filterForm(params, FIELDS),
    rows.length ? table(cols, rows, { caption: 'Errors', rowAttrs }) : h('p', { class: 'muted empty' }, 'No errors match.'),
    pager(params, data.next_cursor));
}
