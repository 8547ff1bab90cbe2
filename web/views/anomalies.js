// Runs the baselines flagged, with which metrics were off and by how much against the
// agent's median.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { header, filterForm, rangePicker, table, pager, runLink } from '../lib/ui.js';

export const title = () => 'Anomalies';

function metricValue(name, v) {
  if (v === null || v === undefined) return '—';
  if (name.includes('cost')) return f.cost(v);
  if (name.includes('duration')) return f.duration(v);
  if (name.includes('rate')) return f.pct(v * 100);
  return f.int(v);
}

function metrics(list) {
  return h('ul', { class: 'chips' }, (list || []).map((m) => h('li', { class: `chip ${m.deviation_pct >= 0 ? 'up' : 'down'}` },
    h('strong', null, m.metric), ' ', metricValue(m.metric, m.value), ' vs median ', metricValue(m.metric, m.median),
    ` (${m.deviation_pct >= 0 ? '+' : '−'}${Math.abs(m.deviation_pct ?? 0).toFixed(0)}%, z=${(m.z ?? 0).toFixed(1)})`)));
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, '7d');
  const [data, base] = await Promise.all([
    api.get('/v1/anomalies', { agent_id: params.agent_id, from: Math.floor(from), to: Math.ceil(to), limit: 50, cursor: params.cursor }, { signal }),
    api.get('/v1/baseline', params.agent_id ? { agent: params.agent_id } : null, { signal }).catch(() => null),
  ]);
  const rows = data.anomalies || [];
  const cols = [
    { label: 'Time', cell: (a) => f.time(a.time_ms), cls: 'nowrap' },
    { label: 'Agent', cell: (a) => a.agent_id || '—' },
    { label: 'Run', cell: (a) => runLink(a.trace_id, a.run_name || a.trace_id.slice(0, 12)), cls: 'name' },
    { label: 'Off against the median', cell: (a) => metrics(a.metrics), cls: 'wide' },
  ];
  const agents = (base && base.agents) || [];
  return h('section', { class: 'view anomalies' },
    header('Anomalies', rangePicker(params, '7d')),
    filterForm(params, [{ name: 'agent_id', label: 'Agent' }]),
    rows.length ? table(cols, rows, { caption: 'Anomalous runs' }) : h('p', { class: 'muted empty' }, 'No anomalous runs in this range.'),
    pager(params, data.next_cursor),
    agents.length ? h('p', { class: 'muted' }, `Baselines: ${agents.map((a) => `${a.agent_id ?? a.agent ?? '?'} (${a.runs ?? a.count ?? '?'} runs)`).join(', ')}; last ${base.baseline_runs} runs each.`) : null);
}
