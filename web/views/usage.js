// Usage from the rollups: tokens and cost by hour or day, grouped by model, provider,
// agent or user (and by sidecar on a fleet's central on PostgreSQL); the same figures
// as `openclaw-trace usage`, and a CSV download.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { setParams } from '../lib/router.js';
import { header, rangePicker, table, kpi } from '../lib/ui.js';
import { stackedBars } from '../lib/chart.js';
import { features } from '../lib/features.js';

export const title = () => 'Usage';

/** Whether this view has more to offer given what the app probed (see app.js). */
export const offersMoreOn = (f) => f.store === 'postgresql';

// A fleet's central on PostgreSQL keeps each call's sidecar (and sums users from its
// spans); SQLite's rollups keep the user, not the sidecar.
const groups = () => (features.store === 'postgresql' ? ['model', 'provider', 'agent', 'user', 'instance'] : ['model', 'provider', 'agent', 'user']);
const LABELS = { instance: 'sidecar' };

function seg(name, value, options) {
  return h('div', { class: 'seg', role: 'group', 'aria-label': name }, options.map(([v, l, on]) =>
    h('button', { type: 'button', class: on ? 'small on' : 'small', 'aria-pressed': on ? 'true' : 'false', onclick: () => setParams({ [name]: v }) }, l)));
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, '24h');
  // A link may ask for the sidecars before the app has probed the store.
  const GROUPS = params.by === 'instance' ? [...new Set([...groups(), 'instance'])] : groups();
  const by = GROUPS.includes(params.by) ? params.by : 'model';
  const byLabel = LABELS[by] || by;
  const bucket = params.bucket === 'day' || params.bucket === 'hour' ? params.bucket : to - from > 3 * 86_400_000 ? 'day' : 'hour';
  const metric = params.metric === 'tokens' ? 'tokens' : 'cost';
  const base = { group_by: by, from: Math.floor(from), to: Math.ceil(to), agent: params.agent, model: params.model, provider: params.provider, instance: params.instance };
  const [series, sums] = await Promise.all([
    // The chart needs no latency percentiles per bucket: skip the histograms.
    api.get('/v1/usage', { ...base, bucket, percentiles: 'false' }, { signal }),
    api.get('/v1/usage', base, { signal }),
  ]);
  const bucketMs = bucket === 'day' ? 86_400_000 : 3_600_000;
  const key = (r) => r[by === 'instance' ? 'instance_id' : by] ?? '(none)';
  const keys = [...new Set((sums.rows || []).sort((a, b) => (b.cost_usd ?? 0) - (a.cost_usd ?? 0) || b.total_tokens - a.total_tokens).map(key))];
  const starts = [...new Set((series.rows || []).map((r) => Date.parse(r.bucket_start)))].sort((a, b) => a - b);
  const idx = new Map(starts.map((t, i) => [t, i]));
  const chartSeries = keys.map((k) => ({ name: String(k), values: starts.map(() => 0) }));
  const kIdx = new Map(keys.map((k, i) => [k, i]));
  for (const r of series.rows || []) {
    const si = kIdx.get(key(r));
    if (si === undefined) continue;
    chartSeries[si].values[idx.get(Date.parse(r.bucket_start))] += metric === 'cost' ? r.cost_usd ?? 0 : r.total_tokens ?? 0;
  }
  const tot = sums.totals || {};
  const csv = h('button', { type: 'button', class: 'secondary' }, 'Download CSV');
  csv.addEventListener('click', () => api.download('/v1/usage', { ...base, bucket, format: 'csv' }, `usage-${by}-${bucket}.csv`).catch((e) => (csv.textContent = `CSV failed: ${e.message}`)));
  const cols = [
    { label: byLabel[0].toUpperCase() + byLabel.slice(1), cell: (r) => String(key(r)), cls: 'name' },
    { label: 'Calls', cell: (r) => f.int(r.calls), cls: 'num' },
    { label: 'Errors', cell: (r) => f.int(r.errors), cls: 'num' },
    { label: 'Input', cell: (r) => f.int(r.input_tokens), cls: 'num' },
    { label: 'Output', cell: (r) => f.int(r.output_tokens), cls: 'num' },
    { label: 'Cache read', cell: (r) => f.int(r.cache_read_tokens), cls: 'num' },
    { label: 'Total tokens', cell: (r) => f.int(r.total_tokens), cls: 'num' },
    { label: 'Cost', cell: (r) => f.cost(r.cost_usd), cls: 'num' },
    { label: 'Unpriced', cell: (r) => f.int(r.unpriced_calls), cls: 'num' },
    { label: 'p95 latency', cell: (r) => f.duration(r.latency_ms && r.latency_ms.p95), cls: 'num' },
  ];
  return h('section', { class: 'view usage' },
    header('Usage', rangePicker(params, '24h'), csv),
    h('div', { class: 'toolbar' },
      seg('by', by, GROUPS.map((g) => [g, `by ${LABELS[g] || g}`, g === by])),
      seg('bucket', bucket, [['hour', 'hourly', bucket === 'hour'], ['day', 'daily', bucket === 'day']]),
      seg('metric', metric, [['cost', 'cost', metric === 'cost'], ['tokens', 'tokens', metric === 'tokens']])),
    h('div', { class: 'kpis' },
      kpi('Cost', h('span', { id: 'usage-total-cost' }, f.cost(tot.cost_usd)), tot.unpriced_calls ? `${f.int(tot.unpriced_calls)} calls unpriced` : 'all calls priced'),
      kpi('LLM calls', f.int(tot.calls), `${f.int(tot.errors)} errors`),
      kpi('Tokens', f.tokens(tot.total_tokens), `${f.tokens(tot.input_tokens)} in · ${f.tokens(tot.output_tokens)} out`),
      kpi('Latency p95', f.duration(tot.latency_ms && tot.latency_ms.p95), `p50 ${f.duration(tot.latency_ms && tot.latency_ms.p50)}`)),
    h('h2', null, `${metric === 'cost' ? 'Cost' : 'Tokens'} per ${bucket}, by ${byLabel}`),
    stackedBars({ buckets: starts, series: chartSeries, bucketMs, from, to, yFmt: metric === 'cost' ? f.cost : f.tokens, axisFmt: metric === 'cost' ? f.costTick : f.tokens, label: `${metric} per ${bucket} by ${byLabel}` }),
    h('h2', null, `By ${byLabel}`),
    (sums.rows || []).length ? table(cols, sums.rows, { caption: `Usage by ${byLabel}` }) : h('p', { class: 'muted empty' }, 'No LLM calls in this range.'));
}
