// What only OpenClaw knows (/v1/openclaw/*): a summary that answers "what do heartbeats
// cost me" and "why did this session cost that much", and one tab per view: heartbeats
// and crons, context windows, the prompt cache, sub-agents, channels and tools, model
// fallbacks and waste flags. Every run and session links to its own view.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { link, setParams } from '../lib/router.js';
import { header, rangePicker, filterForm, table, kpi, runLink, sessionLink, badge } from '../lib/ui.js';
import { stackedBars } from '../lib/chart.js';
import { features } from '../lib/features.js';

const TABS = [
  ['', 'Summary'],
  ['scheduled', 'Heartbeats & crons'],
  ['context', 'Context'],
  ['cache', 'Cache'],
  ['subagents', 'Sub-agents'],
  ['channels', 'Channels & tools'],
  ['fallbacks', 'Fallbacks'],
  ['waste', 'Waste'],
];

export const title = (path) => {
  const t = TABS.find(([id]) => id === (path[1] || ''));
  return t && t[0] ? `OpenClaw · ${t[1]}` : 'OpenClaw';
};

function tabs(active, params) {
  const keep = { range: params.range, from: params.from, to: params.to, agent: params.agent };
  return h('nav', { class: 'tabs', 'aria-label': 'OpenClaw views' }, TABS.map(([id, label]) =>
    h('a', { href: link(id ? ['openclaw', id] : ['openclaw'], keep), 'aria-current': active === id ? 'page' : null, 'data-tab': id || 'summary' }, label)));
}

/** The window every view reads, the agent filter and, on a central, the sidecar. */
function win(params) {
  const [from, to] = f.resolveRange(params, '24h');
  return { from: Math.floor(from), to: Math.ceil(to), agent: params.agent || null, instance: params.instance || null };
}

const runs = (n, what = 'run') => `${f.int(n)} ${what}${n === 1 ? '' : 's'}`;
const pctOf = (r) => (r === null || r === undefined ? '—' : f.pct(r * 100, 1));

/** A small bar showing a share (0..1), with its figure beside it. */
function share(ratio, warnAt = 0.8) {
  const r = Math.max(0, Math.min(1, ratio || 0));
  const fill = h('span', { class: `share-fill ${ratio >= 1 ? 'over' : ratio >= warnAt ? 'warn' : ''}` });
  fill.style.width = `${(r * 100).toFixed(1)}%`;
  return h('span', { class: 'share' }, h('span', { class: 'share-bar', 'aria-hidden': 'true' }, fill), h('span', { class: 'share-num' }, pctOf(ratio)));
}

function empty(text) {
  return h('p', { class: 'muted empty' }, text);
}

function runName(t) {
  return runLink(t, String(t).slice(0, 12));
}

function jobName(d) {
  return d.kind === 'heartbeat' ? 'heartbeat' : `cron ${d.job ?? '(job unknown)'}`;
}

function flagText(fl) {
  switch (fl.flag) {
    case 'tool_loop':
      return `tool loop: ${fl.tool} ×${fl.repeats} with the same arguments`;
    case 'bloated_context':
      return `bloated context: ${f.int(fl.input_tokens)} prompt tokens, ${fl.factor}× the agent's median (${f.int(fl.agent_median)})`;
    case 'provider_retries':
      return `provider retries: ${f.int(fl.failures)} failed calls${fl.provider ? ` (${fl.provider})` : ''}`;
    default:
      return fl.flag;
  }
}

// ---------------------------------------------------------------- summary

async function summary(params, signal) {
  const w = win(params);
  const [sch, cache, ctx, sub, waste, fb, sessions, cacheS] = await Promise.all([
    api.get('/v1/openclaw/scheduled', { ...w, limit: 1000 }, { signal }),
    api.get('/v1/openclaw/cache', { ...w, by: 'agent' }, { signal }),
    api.get('/v1/openclaw/context', { ...w, limit: 1 }, { signal }),
    api.get('/v1/openclaw/subagents', w, { signal }),
    api.get('/v1/openclaw/waste', w, { signal }),
    api.get('/v1/openclaw/fallbacks', w, { signal }),
    api.get('/v1/sessions', { agent_id: w.agent, from: w.from, to: w.to, limit: 1000 }, { signal }),
    api.get('/v1/openclaw/cache', { ...w, by: 'session' }, { signal }),
  ]);
  const t = sch.totals || {};
  const hbPer = t.heartbeat_runs ? t.heartbeat_cost_usd / t.heartbeat_runs : null;
  const ct = cache.totals || {};
  const near = (ctx.sessions || []).filter((s) => s.near_window);
  const subCost = (sub.subagents || []).reduce((a, s) => a + (s.child_cost_usd || 0), 0);
  const wasteCost = (waste.agents || []).reduce((a, x) => a + (x.flagged_cost_usd || 0), 0);
  const any = (sch.runs || []).length || (ctx.sessions || []).length || (sub.subagents || []).length || (waste.runs || []).length || fb.decisions || (cache.rows || []).length;

  // Costliest sessions, each with what explains its cost.
  const ctxBy = new Map((ctx.sessions || []).map((s) => [s.session_id, s]));
  const cacheBy = new Map((cacheS.rows || []).map((r) => [r.key, r]));
  const hbBy = new Map();
  for (const r of sch.runs || []) {
    if (!r.session_id) continue;
    const e = hbBy.get(r.session_id) || { runs: 0, cost: 0, kinds: new Set() };
    e.runs += 1;
    e.cost += r.cost_usd || 0;
    e.kinds.add(r.trigger);
    hbBy.set(r.session_id, e);
  }
  const wasteBy = new Map();
  for (const r of waste.runs || []) wasteBy.set(r.trace_id, r);
  const top = (sessions.sessions || []).filter((s) => s.cost_usd !== null && s.cost_usd !== undefined).sort((a, b) => b.cost_usd - a.cost_usd).slice(0, 10);
  const why = (s) => {
    const out = [];
    const sc = hbBy.get(s.session_id);
    if (sc) out.push(`${runs(sc.runs, 'scheduled run')} (${[...sc.kinds].join(', ')}) cost ${f.cost(sc.cost)}`);
    const c = ctxBy.get(s.session_id);
    if (c) {
      out.push(`context peaked at ${pctOf(c.max_used_ratio)} of a ${f.tokens(c.context_window)} window`);
      if (c.compactions) out.push(`compacted ${c.compactions}×`);
    }
    const ch = cacheBy.get(s.session_id);
    if (ch && ch.hit_rate !== null && ch.hit_rate !== undefined) out.push(`cache hit ${pctOf(ch.hit_rate)}${ch.net_saved_usd ? `, saved ${f.cost(ch.net_saved_usd)}` : ''}`);
    if (s.runs) out.push(`${f.cost(s.cost_usd / s.runs)} per run`);
    return out.length ? h('ul', { class: 'why' }, out.map((x) => h('li', null, x))) : h('span', { class: 'muted' }, '—');
  };

  const hbDays = (sch.days || []).filter((d) => d.kind === 'heartbeat');
  return h('div', null,
    any ? null : h('p', { class: 'note muted', id: 'openclaw-empty' }, 'No OpenClaw data in this range. Install the plugin (openclaw-trace openclaw setup) or pick a longer range.'),
    h('div', { class: 'kpis' },
      kpi('Heartbeats', h('span', { id: 'oc-hb-cost' }, f.cost(t.heartbeat_cost_usd)),
        h('span', null, h('span', { id: 'oc-hb-runs' }, f.int(t.heartbeat_runs)), t.heartbeat_runs === 1 ? ' run · ' : ' runs · ', h('span', { id: 'oc-hb-per' }, f.cost(hbPer)), ' each')),
      kpi('Silent replies', h('span', { id: 'oc-silent' }, f.int((t.heartbeat_ok || 0) + (t.no_reply || 0))),
        h('span', null, h('span', { id: 'oc-hb-ok' }, f.int(t.heartbeat_ok)), ' HEARTBEAT_OK · ', h('span', { id: 'oc-no-reply' }, f.int(t.no_reply)), ' NO_REPLY')),
      kpi('Cron jobs', h('span', { id: 'oc-cron-cost' }, f.cost(t.cron_cost_usd)), runs(t.cron_runs)),
      kpi('Cache hit rate', h('span', { id: 'oc-cache-hit' }, pctOf(ct.hit_rate)), h('span', null, 'saved ', h('span', { id: 'oc-cache-saved' }, f.cost(ct.net_saved_usd)), ' net')),
      kpi('Near the window', h('span', { id: 'oc-near' }, f.int(near.length)), `sessions · ${f.int((ctx.compactions || []).length)} compactions`),
      kpi('Sub-agents', h('span', { id: 'oc-sub-cost' }, f.cost(subCost)), `${f.int((sub.subagents || []).length)} spawned`),
      kpi('Waste flags', h('span', { id: 'oc-waste-runs' }, f.int((waste.runs || []).length)), `flagged runs · ${f.cost(wasteCost)}`),
      kpi('Model fallbacks', h('span', { id: 'oc-fallbacks' }, f.int(fb.decisions)), 'decisions')),
    h('div', { class: 'grid2' },
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', null, 'What heartbeats cost'), h('a', { href: link(['openclaw', 'scheduled'], { range: params.range, agent: params.agent }) }, 'Heartbeats & crons →')),
        hbDays.length
          ? table([
              { label: 'Day (UTC)', cell: (d) => d.day, cls: 'nowrap' },
              { label: 'Agent', cell: (d) => d.agent_id || '—' },
              { label: 'Runs', cell: (d) => f.int(d.runs), cls: 'num' },
              { label: 'Silent', cell: (d) => `${f.int(d.heartbeat_ok + d.no_reply)}`, cls: 'num' },
              { label: 'Cost', cell: (d) => f.cost(d.cost_usd), cls: 'num' },
              { label: 'Per heartbeat', cell: (d) => h('span', null, f.cost(d.cost_per_run_usd), d.rising ? h('span', { class: 'badge st-error rising' }, 'rising') : null), cls: 'num' },
            ], hbDays.slice().reverse(), { caption: 'Heartbeats per day' })
          : empty('No heartbeat runs in this range.')),
      h('div', { class: 'card' },
        h('h2', null, 'Costliest sessions, and why'),
        top.length
          ? table([
              { label: 'Session', cell: (s) => sessionLink(s.session_id), cls: 'clip' },
              { label: 'Runs', cell: (s) => f.int(s.runs), cls: 'num' },
              { label: 'Tokens', cell: (s) => f.tokens(s.total_tokens), cls: 'num' },
              { label: 'Cost', cell: (s) => f.cost(s.cost_usd), cls: 'num' },
              { label: 'What drove it', cell: why, cls: 'wide' },
            ], top, { caption: 'Costliest sessions', rowAttrs: (s) => ({ 'data-session': s.session_id }) })
          : empty('No priced sessions in this range.'))),
    (waste.runs || []).length
      ? h('div', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', null, 'Flagged runs'), h('a', { href: link(['openclaw', 'waste'], { range: params.range, agent: params.agent }) }, 'Waste →')),
          wasteTable((waste.runs || []).slice(0, 5)))
      : null);
}

// ---------------------------------------------------------------- heartbeats and crons

async function scheduled(params, signal) {
  const w = win(params);
  const sch = await api.get('/v1/openclaw/scheduled', { ...w, limit: 200 }, { signal });
  const t = sch.totals || {};
  const days = sch.days || [];
  const keys = [...new Set(days.map(jobName))];
  const starts = [...new Set(days.map((d) => Date.parse(`${d.day}T00:00:00Z`)))].sort((a, b) => a - b);
  const idx = new Map(starts.map((x, i) => [x, i]));
  const series = keys.map((k) => ({ name: k, values: starts.map(() => 0) }));
  for (const d of days) series[keys.indexOf(jobName(d))].values[idx.get(Date.parse(`${d.day}T00:00:00Z`))] += d.cost_usd || 0;
  return h('div', null,
    h('div', { class: 'kpis' },
      kpi('Heartbeat cost', h('span', { id: 'oc-hb-cost' }, f.cost(t.heartbeat_cost_usd)), runs(t.heartbeat_runs)),
      kpi('Per heartbeat', h('span', { id: 'oc-hb-per' }, f.cost(t.heartbeat_runs ? t.heartbeat_cost_usd / t.heartbeat_runs : null)), 'average in this range'),
      kpi('HEARTBEAT_OK', h('span', { id: 'oc-hb-ok' }, f.int(t.heartbeat_ok)), 'nothing to report'),
      kpi('NO_REPLY', h('span', { id: 'oc-no-reply' }, f.int(t.no_reply)), 'answered nothing (OpenClaw\'s Usage misses these)'),
      kpi('Cron cost', h('span', { id: 'oc-cron-cost' }, f.cost(t.cron_cost_usd)), runs(t.cron_runs))),
    h('h2', null, 'Cost per day, by job'),
    stackedBars({ buckets: starts, series, bucketMs: 86_400_000, yFmt: f.cost, axisFmt: f.costTick, label: 'Scheduled cost per day' }),
    h('h2', null, 'Per job and day'),
    days.length
      ? table([
          { label: 'Day (UTC)', cell: (d) => d.day, cls: 'nowrap' },
          { label: 'Job', cell: (d) => jobName(d), cls: 'name' },
          { label: 'Agent', cell: (d) => d.agent_id || '—' },
          { label: 'Runs', cell: (d) => f.int(d.runs), cls: 'num' },
          { label: 'HEARTBEAT_OK', cell: (d) => f.int(d.heartbeat_ok), cls: 'num' },
          { label: 'NO_REPLY', cell: (d) => f.int(d.no_reply), cls: 'num' },
          { label: 'Errors', cell: (d) => f.int(d.errors), cls: 'num' },
          { label: 'Tokens', cell: (d) => f.tokens(d.total_tokens), cls: 'num' },
          { label: 'Cost', cell: (d) => f.cost(d.cost_usd), cls: 'num' },
          { label: 'Per run', cell: (d) => h('span', null, f.cost(d.cost_per_run_usd), d.unpriced_runs ? h('span', { class: 'muted' }, ` (${d.unpriced_runs} unpriced)`) : null), cls: 'num' },
          { label: 'Trend', cell: (d) => (d.rising ? h('span', { class: 'badge st-error rising', title: 'Above 1.5× the median of this job\'s earlier days' }, 'rising') : '') },
        ], days.slice().reverse(), { caption: 'Scheduled runs per job and day', rowAttrs: (d) => ({ 'data-kind': d.kind, 'data-job': d.job ?? '', 'data-day': d.day }) })
      : empty('No heartbeat or cron runs in this range.'),
    h('h2', null, 'Latest scheduled runs'),
    (sch.runs || []).length
      ? table([
          { label: 'Start', cell: (r) => f.time(r.start_ms), cls: 'nowrap' },
          { label: 'Run', cell: (r) => runName(r.trace_id) },
          { label: 'Kind', cell: (r) => r.trigger },
          { label: 'Session', cell: (r) => sessionLink(r.session_id), cls: 'clip' },
          { label: 'Reply', cell: (r) => r.silent_reply || '—' },
          { label: 'Status', cell: (r) => badge(r.status) },
          { label: 'Tokens', cell: (r) => f.tokens(r.total_tokens), cls: 'num' },
          { label: 'Cost', cell: (r) => f.cost(r.cost_usd), cls: 'num' },
        ], sch.runs, { caption: 'Scheduled runs', rowAttrs: (r) => ({ 'data-trace': r.trace_id }) })
      : null);
}

// ---------------------------------------------------------------- context

async function context(params, signal) {
  const w = win(params);
  const near = params.near || null;
  const c = await api.get('/v1/openclaw/context', { ...w, near, limit: 100 }, { signal });
  const sessions = c.sessions || [];
  const nearN = sessions.filter((s) => s.near_window).length;
  return h('div', null,
    h('div', { class: 'kpis' },
      kpi('Sessions measured', f.int(sessions.length), `OpenClaw's model.usage context against the window`),
      kpi('Near the window', h('span', { id: 'oc-near' }, f.int(nearN)), `at or above ${pctOf(c.near)}`),
      kpi('Compactions', h('span', { id: 'oc-compactions' }, f.int((c.compactions || []).length)), 'after_compaction hooks')),
    h('h2', null, 'Sessions, fullest first'),
    sessions.length
      ? table([
          { label: 'Session', cell: (s) => sessionLink(s.session_id), cls: 'clip' },
          { label: 'Agent', cell: (s) => s.agent_id || '—' },
          { label: 'Turns', cell: (s) => f.int(s.turns), cls: 'num' },
          { label: 'Last context', cell: (s) => f.int(s.last_context_tokens), cls: 'num' },
          { label: 'Largest', cell: (s) => f.int(s.max_context_tokens), cls: 'num' },
          { label: 'Window', cell: (s) => f.int(s.context_window), cls: 'num' },
          { label: 'Largest share', cell: (s) => share(s.max_used_ratio, c.near) },
          { label: 'Compactions', cell: (s) => f.int(s.compactions), cls: 'num' },
          { label: '', cell: (s) => (s.near_window ? h('span', { class: 'badge st-error' }, 'near window') : '') },
        ], sessions, { caption: 'Context per session', rowAttrs: (s) => ({ 'data-session': s.session_id, 'data-near': String(s.near_window) }) })
      : empty('No run reported its context (model.usage with context.used and context.limit) in this range.'),
    (c.compactions || []).length
      ? [h('h2', null, 'Compactions'),
         table([
           { label: 'Time', cell: (x) => f.time(x.time_ms), cls: 'nowrap' },
           { label: 'Session', cell: (x) => sessionLink(x.session_id), cls: 'clip' },
           { label: 'Messages', cell: (x) => f.int(x.message_count), cls: 'num' },
           { label: 'Compacted', cell: (x) => f.int(x.compacted_count), cls: 'num' },
           { label: 'Run', cell: (x) => (x.trace_id ? runName(x.trace_id) : '—') },
         ], c.compactions.slice().reverse(), { caption: 'Compactions' })]
      : null,
    (c.turns || []).length
      ? [h('h2', null, 'Latest turns'),
         table([
           { label: 'Start', cell: (x) => f.time(x.start_ms), cls: 'nowrap' },
           { label: 'Run', cell: (x) => runName(x.trace_id) },
           { label: 'Session', cell: (x) => sessionLink(x.session_id), cls: 'clip' },
           { label: 'Model', cell: (x) => x.model || '—' },
           { label: 'Context', cell: (x) => `${f.int(x.context_tokens)} / ${f.int(x.context_window)}`, cls: 'num' },
           { label: 'Share', cell: (x) => share(x.used_ratio, c.near) },
         ], c.turns, { caption: 'Context per turn', rowAttrs: (x) => ({ 'data-trace': x.trace_id }) })]
      : null);
}

// ---------------------------------------------------------------- cache

async function cache(params, signal) {
  const w = win(params);
  const groups = ['agent', 'model', 'session'];
  const by = groups.includes(params.by) ? params.by : 'agent';
  const c = await api.get('/v1/openclaw/cache', { ...w, by }, { signal });
  const t = c.totals || {};
  return h('div', null,
    h('div', { class: 'toolbar' }, h('div', { class: 'seg', role: 'group', 'aria-label': 'Group by' },
      groups.map((k) => h('button', { type: 'button', class: by === k ? 'small on' : 'small', 'aria-pressed': by === k ? 'true' : 'false', onclick: () => setParams({ by: k === 'agent' ? null : k }) }, `by ${k}`)))),
    h('div', { class: 'kpis' },
      kpi('Hit rate', h('span', { id: 'oc-cache-hit' }, pctOf(t.hit_rate)), `${f.tokens(t.cache_read_tokens)} of ${f.tokens(t.prompt_tokens)} prompt tokens read from the cache`),
      kpi('Saved by cache reads', h('span', { id: 'oc-cache-gross' }, f.cost(t.saved_usd)), 'against the input price'),
      kpi('Cache write premium', f.cost(t.write_premium_usd), `${f.tokens(t.cache_write_tokens)} tokens written`),
      kpi('Net saved', h('span', { id: 'oc-cache-saved' }, f.cost(t.net_saved_usd)), (t.unpriced_models || []).length ? `unpriced: ${t.unpriced_models.join(', ')}` : 'every model priced')),
    (c.rows || []).length
      ? table([
          { label: by[0].toUpperCase() + by.slice(1), cell: (r) => (by === 'session' ? sessionLink(r.key) : r.key), cls: 'name' },
          { label: 'Calls', cell: (r) => f.int(r.calls), cls: 'num' },
          { label: 'Prompt tokens', cell: (r) => f.int(r.prompt_tokens), cls: 'num' },
          { label: 'Cache read', cell: (r) => f.int(r.cache_read_tokens), cls: 'num' },
          { label: 'Cache write', cell: (r) => f.int(r.cache_write_tokens), cls: 'num' },
          { label: 'Hit rate', cell: (r) => share(r.hit_rate, 2) },
          { label: 'Saved', cell: (r) => f.cost(r.saved_usd), cls: 'num' },
          { label: 'Write premium', cell: (r) => f.cost(r.write_premium_usd), cls: 'num' },
          { label: 'Net saved', cell: (r) => f.cost(r.net_saved_usd), cls: 'num' },
        ], c.rows, { caption: `Cache by ${by}`, rowAttrs: (r) => ({ 'data-key': r.key }) })
      : empty('No model calls in this range.'));
}

// ---------------------------------------------------------------- sub-agents

async function subagents(params, signal) {
  const w = win(params);
  const s = await api.get('/v1/openclaw/subagents', w, { signal });
  const links = s.subagents || [];
  const parents = s.parents || [];
  const orphans = links.filter((l) => !l.parent_trace_id);
  const child = (l) => h('li', { class: 'sub-child', 'data-child': l.child_session_key },
    h('div', { class: 'sub-head' },
      h('strong', null, l.label || 'sub-agent'), ' ',
      h('span', { class: 'mono muted' }, l.child_session_key),
      h('span', { class: 'cost' }, f.cost(l.child_cost_usd))),
    h('div', { class: 'muted small' }, `${l.spawned_ms ? `spawned ${f.time(l.spawned_ms)} · ` : ''}${runs(l.child_runs.length)} · ${f.int(l.child_llm_calls)} LLM calls · ${f.tokens(l.child_total_tokens)} tokens`),
    h('div', { class: 'sub-runs' }, l.child_runs.map((t) => runName(t))));
  return h('div', null,
    h('div', { class: 'kpis' },
      kpi('Sub-agents', h('span', { id: 'oc-sub-n' }, f.int(links.length)), `spawned by ${runs(parents.length, 'parent run')}`),
      kpi('Their cost', h('span', { id: 'oc-sub-cost' }, f.cost(links.reduce((a, l) => a + (l.child_cost_usd || 0), 0))), 'rolled up to the runs that spawned them')),
    parents.length || orphans.length
      ? h('ul', { class: 'sub-tree' },
          parents.map((p) => h('li', { class: 'sub-parent', 'data-trace': p.trace_id },
            h('div', { class: 'sub-head' },
              h('span', null, 'Run ', runLink(p.trace_id)),
              h('span', { class: 'muted' }, `own ${f.cost(p.own_cost_usd)} + ${f.int(p.subagents)} sub-agent${p.subagents === 1 ? '' : 's'} ${f.cost(p.subagent_cost_usd)} =`),
              h('span', { class: 'cost total' }, f.cost(p.total_cost_usd))),
            h('ul', { class: 'sub-children' }, links.filter((l) => l.parent_trace_id === p.trace_id).map(child)))),
          orphans.length
            ? h('li', { class: 'sub-parent' }, h('div', { class: 'sub-head' }, h('span', { class: 'muted' }, 'Spawning run not captured')), h('ul', { class: 'sub-children' }, orphans.map(child)))
            : null)
      : empty('No sub-agent runs (sessions agent:<id>:subagent:<uuid>) in this range.'));
}

// ---------------------------------------------------------------- channels and tools

async function channels(params, signal) {
  const w = win(params);
  const c = await api.get('/v1/openclaw/channels', w, { signal });
  const chans = c.channels || [];
  const max = Math.max(0, ...chans.map((x) => x.cost_usd || 0));
  return h('div', null,
    h('h2', null, 'By channel'),
    chans.length
      ? table([
          { label: 'Channel', cell: (r) => r.channel, cls: 'name' },
          { label: 'Runs', cell: (r) => f.int(r.runs), cls: 'num' },
          { label: 'LLM calls', cell: (r) => f.int(r.llm_calls), cls: 'num' },
          { label: 'Input', cell: (r) => f.int(r.input_tokens), cls: 'num' },
          { label: 'Output', cell: (r) => f.int(r.output_tokens), cls: 'num' },
          { label: 'Cost', cell: (r) => f.cost(r.cost_usd), cls: 'num' },
          { label: 'Share of cost', cell: (r) => share(max ? r.cost_usd / chans.reduce((a, x) => a + (x.cost_usd || 0), 0) : 0, 2) },
          { label: 'Unpriced runs', cell: (r) => f.int(r.unpriced_runs), cls: 'num' },
        ], chans, { caption: 'Usage by channel', rowAttrs: (r) => ({ 'data-channel': r.channel }) })
      : empty('No OpenClaw runs in this range.'),
    h('h2', null, 'By tool'),
    (c.tools || []).length
      ? table([
          { label: 'Tool', cell: (r) => r.tool, cls: 'name' },
          { label: 'Calls', cell: (r) => f.int(r.calls), cls: 'num' },
          { label: 'Errors', cell: (r) => f.int(r.errors), cls: 'num' },
          { label: 'Runs', cell: (r) => f.int(r.runs), cls: 'num' },
          { label: 'Cost of those runs', cell: (r) => f.cost(r.runs_cost_usd), cls: 'num' },
        ], c.tools, { caption: 'Tool use', rowAttrs: (r) => ({ 'data-tool': r.tool }) })
      : empty('No tool calls in this range.'),
    (c.notes || []).map((n) => h('p', { class: 'note muted' }, n)));
}

// ---------------------------------------------------------------- fallbacks

async function fallbacks(params, signal) {
  const w = win(params);
  const fb = await api.get('/v1/openclaw/fallbacks', w, { signal });
  return h('div', null,
    h('div', { class: 'kpis' }, kpi('Fallback decisions', h('span', { id: 'oc-fallbacks' }, f.int(fb.decisions)), 'model_fallback_decision lines in the gateway log')),
    (fb.pairs || []).length
      ? table([
          { label: 'From', cell: (p) => p.from, cls: 'name' },
          { label: '', cell: () => '→' },
          { label: 'To', cell: (p) => p.to, cls: 'name' },
          { label: 'Decision', cell: (p) => p.decision },
          { label: 'Reason', cell: (p) => p.reason || '—' },
          { label: 'Count', cell: (p) => f.int(p.count), cls: 'num' },
          { label: 'Runs', cell: (p) => h('span', { class: 'sub-runs' }, p.runs.slice(0, 6).map((t) => runName(t)), p.runs.length > 6 ? h('span', { class: 'muted' }, ` +${p.runs.length - 6}`) : null) },
        ], fb.pairs, { caption: 'Fallbacks by model pair', rowAttrs: (p) => ({ 'data-pair': `${p.from}>${p.to}` }) })
      : empty('No model fallback in this range (read from the gateway log, OCT_LOG_PATH).'));
}

// ---------------------------------------------------------------- waste

function wasteTable(runs) {
  return table([
    { label: 'Start', cell: (r) => f.time(r.start_ms), cls: 'nowrap' },
    { label: 'Run', cell: (r) => runName(r.trace_id) },
    { label: 'Agent', cell: (r) => r.agent_id || '—' },
    { label: 'Cost', cell: (r) => f.cost(r.cost_usd), cls: 'num' },
    { label: 'Flags', cell: (r) => h('ul', { class: 'chips' }, r.flags.map((fl) => h('li', { class: 'chip up', 'data-flag': fl.flag }, flagText(fl)))), cls: 'wide' },
  ], runs, { caption: 'Flagged runs', rowAttrs: (r) => ({ 'data-trace': r.trace_id }) });
}

async function waste(params, signal) {
  const w = win(params);
  const x = await api.get('/v1/openclaw/waste', w, { signal });
  return h('div', null,
    h('h2', null, 'Per agent'),
    (x.agents || []).length
      ? table([
          { label: 'Agent', cell: (a) => h('a', { href: link(['runs'], { agent_id: a.agent_id }) }, a.agent_id) },
          { label: 'Flagged runs', cell: (a) => f.int(a.runs), cls: 'num' },
          { label: 'Tool loops', cell: (a) => f.int(a.tool_loop), cls: 'num' },
          { label: 'Bloated context', cell: (a) => f.int(a.bloated_context), cls: 'num' },
          { label: 'Provider retries', cell: (a) => f.int(a.provider_retries), cls: 'num' },
          { label: 'Their cost', cell: (a) => f.cost(a.flagged_cost_usd), cls: 'num' },
        ], x.agents, { caption: 'Waste per agent', rowAttrs: (a) => ({ 'data-agent': a.agent_id }) })
      : empty('No run was flagged in this range.'),
    (x.runs || []).length ? [h('h2', null, 'Flagged runs'), wasteTable(x.runs)] : null,
    h('p', { class: 'note muted' }, 'A tool loop is the same tool with the same arguments 3 times or more in a run; a bloated context a prompt over 3× the agent\'s median (at least 1,000 tokens); provider retries 3 or more failed model calls in a run.'));
}

const VIEWS = { '': summary, scheduled, context, cache, subagents, channels, fallbacks, waste };

export async function render({ path, params, signal }) {
  const tab = path[1] || '';
  const view = VIEWS[tab];
  if (!view) return h('section', { class: 'view openclaw' }, header('OpenClaw'), tabs(null, params), empty('No such OpenClaw view.'));
  const body = await view(params, signal);
  return h('section', { class: 'view openclaw', 'data-tab': tab || 'summary' },
    header(tab ? `OpenClaw · ${TABS.find(([id]) => id === tab)[1]}` : 'OpenClaw', rangePicker(params, '24h')),
    tabs(tab, params),
    filterForm(params, [{ name: 'agent', label: 'Agent', size: 10 },
      // A fleet's central keeps each run's sidecar.
      ...(features.store === 'postgresql' ? [{ name: 'instance', label: 'Sidecar', size: 10 }] : [])]),
    body);
}
