// Overview: a range's runs, calls, tokens and cost against the previous period; cost over
// time by model or agent; error rate; the agent process; open conditions; budgets; prices.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { setParams, link } from '../lib/router.js';
import { header, rangePicker, kpi, runLink } from '../lib/ui.js';
import { stackedBars, lines, widthFor } from '../lib/chart.js';

export const title = () => 'Overview';

function change(cur, prev, key, fmt, lowerIsBetter = false) {
  const c = cur[key];
  const p = prev[key];
  const d = f.delta(c, p);
  const worse = c !== null && p !== null && (lowerIsBetter ? c > p : c < p);
  return kpi(KPI_LABELS[key], fmt(c), d ? h('span', { class: `delta ${c === p ? '' : worse ? 'worse' : 'better'}` }, `${d} vs previous (${fmt(p)})`) : null);
}

const KPI_LABELS = {
  runs: 'Runs',
  llm_calls: 'LLM calls',
  tool_calls: 'Tool calls',
  total_tokens: 'Tokens',
  cost_usd: 'Cost',
  error_rate: 'Error rate',
};

function budget(b) {
  const pct = Math.max(0, b.percent ?? 0);
  const bar = h('div', { class: `meter-fill ${pct >= 100 ? 'over' : pct >= 80 ? 'warn' : ''}` });
  bar.style.width = `${Math.min(100, pct)}%`;
  const fmt = b.unit === 'usd' ? f.cost : f.tokens;
  return h('li', { class: 'budget' },
    h('div', { class: 'budget-head' }, h('strong', null, b.budget), h('span', null, `${fmt(b.spent)} of ${fmt(b.limit)} (${f.pct(pct, 0)})`)),
    h('div', { class: 'meter', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': pct.toFixed(0), 'aria-label': b.budget }, bar),
    h('div', { class: 'muted small' }, `${b.period} ${b.period_key}${b.unpriced_calls ? ` · ${b.unpriced_calls} calls unpriced` : ''}`));
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, '24h');
  const by = params.by === 'agent' ? 'agent' : 'model';
  const o = await api.get('/v1/overview', { from: Math.floor(from), to: Math.ceil(to), by }, { signal });
  const cur = o.current || {};
  const prev = o.previous || {};
  const bucketMs = o.bucket === 'day' ? 86_400_000 : 3_600_000;
  const starts = [...new Set((o.cost_series || []).flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const idx = new Map(starts.map((t, i) => [t, i]));
  const series = (o.cost_series || []).map((s) => {
    const values = starts.map(() => 0);
    for (const [t, v] of s.points) values[idx.get(t)] += v || 0;
    return { name: String(s.key ?? '(none)'), values };
  });
  const errSeries = [{ name: 'error rate', points: (o.error_series || []).map(([t, e, n]) => [t, n ? e / n : 0]) }];
  const agent = o.agent || {};
  const conditions = o.conditions || [];
  const budgets = o.budgets || [];
  const pricing = o.pricing || {};
  const agentState = agent.watched === false ? 'not watched' : agent.up === null || agent.up === undefined ? 'unknown' : agent.up ? 'up' : 'down';

  return h('section', { class: 'view overview' },
    header('Overview', rangePicker(params, '24h')),
    h('div', { class: 'kpis' },
      change(cur, prev, 'runs', f.int),
      change(cur, prev, 'llm_calls', f.int),
      change(cur, prev, 'tool_calls', f.int),
      change(cur, prev, 'total_tokens', f.tokens),
      change(cur, prev, 'cost_usd', f.cost, true),
      change(cur, prev, 'error_rate', (v) => f.pct((v ?? 0) * 100), true)),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, `Cost per ${o.bucket || 'hour'}`),
          h('div', { class: 'seg', role: 'group', 'aria-label': 'Group cost by' },
            ['model', 'agent'].map((k) => h('button', { type: 'button', class: by === k ? 'small on' : 'small', 'aria-pressed': by === k ? 'true' : 'false', onclick: () => setParams({ by: k === 'model' ? null : k }) }, `by ${k}`)))),
        stackedBars({ buckets: starts, series, bucketMs, from: o.from_ms, to: o.to_ms, yFmt: f.cost, axisFmt: f.costTick, width: widthFor(0.5), label: `Cost by ${by}` })),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, 'Error rate'), h('span', { class: 'muted' }, `${f.int(cur.errors)} errors`)),
        lines({ series: errSeries, width: widthFor(0.5), yFmt: (v) => f.pct(v * 100, 0), from: o.from_ms, to: o.to_ms, label: 'Error rate' }))),
    h('div', { class: 'grid3' },
      h('div', { class: 'card' }, h('h2', null, 'Agent process'),
        h('p', { class: `agent-state st-${agentState.replace(' ', '-')}` }, agentState),
        h('dl', { class: 'kv' },
          h('dt', null, 'PID'), h('dd', null, agent.pid ?? '—'),
          h('dt', null, 'RSS'), h('dd', null, f.bytes(agent.rss_bytes)),
          h('dt', null, 'Restarts'), h('dd', null, agent.restarts ?? '—'),
          h('dt', null, 'Last seen'), h('dd', null, agent.last_seen_ms ? f.ago(agent.last_seen_ms) : '—'))),
      h('div', { class: 'card' }, h('h2', null, `Open conditions (${conditions.length})`),
        conditions.length
          ? h('ul', { class: 'conditions' }, conditions.map((c) => h('li', { class: `sev-${String(c.severity || '').replace(/[^a-z]/g, '')}` },
              h('strong', null, c.name), ' ', h('span', { class: 'muted' }, `${c.category} · since ${f.ago(c.since_ms)}`), h('div', null, c.message || ''),
              c.trace_id ? runLink(c.trace_id, 'run') : null)))
          : h('p', { class: 'muted' }, 'None.'),
        h('a', { href: link(['errors'], { state: 'open' }) }, 'All errors →')),
      h('div', { class: 'card' }, h('h2', null, 'Budgets'),
        budgets.length ? h('ul', { class: 'budgets' }, budgets.map(budget)) : h('p', { class: 'muted' }, 'No budgets set (OCT_BUDGETS).'),
        h('h2', null, 'Prices'),
        h('p', null, `Price table as of ${pricing.as_of ?? '—'}`),
        (pricing.unpriced_models || []).length
          ? h('p', { class: 'warn' }, `Unpriced models: ${pricing.unpriced_models.join(', ')}`)
          : h('p', { class: 'muted' }, 'Every model seen has a price.'))));
}
