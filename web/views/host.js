// Host health over a range, from /v1/metrics: CPU, memory, disk, network, connections,
// DNS, and the agent's process (RSS, up, restarts). On a fleet's central on PostgreSQL,
// one host at a time (`instance`): the central's own, or a sidecar's that pushes to it.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { header, rangePicker, kpi, filterForm } from '../lib/ui.js';
import { lines, widthFor } from '../lib/chart.js';
import { storeKind } from '../lib/features.js';

// Where a series' sidecar is named (PostgreSQL adds it to each series' attributes).
const INSTANCE = 'service.instance.id';

export const title = () => 'Host';

const pctFmt = (v) => f.pct(v * 100, 0);
const rateFmt = (v) => `${f.bytes(v)}/s`;

// [title, metric, value field, y format, attribute filter, series label, fixed max]
const CHARTS = [
  ['CPU utilization', 'system.cpu.utilization', 'avg', pctFmt, null, () => 'cpu', 1],
  ['Container CPU', 'container.cpu.utilization', 'avg', pctFmt, null, () => 'container', null],
  ['Memory utilization', 'system.memory.utilization', 'avg', pctFmt, null, () => 'memory', 1],
  ['Container memory', 'container.memory.usage', 'avg', f.bytes, null, () => 'container', null],
  ['Disk utilization', 'system.filesystem.utilization', 'max', pctFmt, null, (a) => a['system.filesystem.mountpoint'] || a['oct.watch.path'] || 'volume', 1],
  ['Network I/O', 'system.network.io', 'rate', rateFmt, null, (a) => `${a['network.interface.name'] ?? ''} ${a['network.io.direction'] ?? ''}`.trim()],
  ['TCP connections', 'system.network.connections', 'avg', f.int, null, (a) => a['network.connection.state'] || 'all'],
  ['DNS lookup time', 'dns.lookup.duration', 'avg', (v) => f.duration(v * 1000), null, (a) => a['dns.question.name'] || a['server.address'] || a.host || 'dns'],
  ['Agent RSS', 'process.memory.usage', 'avg', f.bytes, { 'oct.process.role': 'agent' }, () => 'agent'],
  ['Sidecar RSS', 'process.memory.usage', 'avg', f.bytes, { 'oct.process.role': 'self' }, () => 'openclaw-trace'],
  ['Agent up', 'oct.agent.up', 'min', f.int, null, () => 'up', 1],
  ['Agent restarts', 'oct.agent.restarts', 'max', f.int, null, () => 'restarts'],
];

function label(attrs, fn) {
  try {
    return fn(attrs || {}) || 'series';
  } catch {
    return 'series';
  }
}

/**
 * The hosts a central on PostgreSQL shows: its own (`/health`'s `instance_id`, which its
 * host records carry) and the sidecars that push to it, by id. Elsewhere none: the
 * page shows this daemon's host unfiltered.
 */
async function hosts(signal) {
  if ((await storeKind()) !== 'postgresql') return { own: null, byId: new Map() };
  const [data, health] = await Promise.all([
    api.get('/v1/instances', null, { signal }).catch(() => null),
    api.get('/health', null, { signal }).catch(() => ({})),
  ]);
  const own = (health && health.instance_id) || null;
  const list = ((data && data.instances) || []).filter((i) => i.instance_id && i.instance_id !== own);
  return { own, health, byId: new Map(list.sort((a, b) => String(a.instance_id).localeCompare(String(b.instance_id))).map((i) => [i.instance_id, i])) };
}

/** A central's own state (its `/health`): it keeps its data in PostgreSQL. */
function centralKpis(health, sidecars) {
  return [
    kpi('Store', 'PostgreSQL', `${f.int(health.events_written)} records written`),
    kpi('Queue', f.int(health.queue_depth), `of ${f.int(health.queue_capacity)}`),
    kpi('Sidecars', f.int(sidecars), 'pushing to it'),
    kpi('Central', health.status || '—', `up ${f.duration((health.uptime_seconds || 0) * 1000)}`),
  ];
}

/** What a sidecar said of itself with its last push (`/v1/instances`' status). */
function sidecarKpis(i) {
  const st = i.status || {};
  return [
    kpi('Its database', f.bytes(st.db_bytes), st.backlog_records === undefined ? 'it sent no state' : `${f.int(st.backlog_records)} records not pushed yet`),
    kpi('Its data volume', st.disk_used_percent === undefined || st.disk_used_percent === null ? '—' : f.pct(st.disk_used_percent, 0), 'used'),
    kpi('Last push', f.ago(i.last_push_ms), i.stale ? 'stale' : `lag ${f.duration((i.lag_seconds || 0) * 1000)}`),
    kpi('Open conditions', f.int((st.conditions || []).length), i.version ? `version ${i.version}` : ''),
  ];
}

export async function render({ params, signal }) {
  const [from, to] = f.resolveRange(params, '1h');
  const [names, { own, health: ownHealth, byId }] = await Promise.all([api.get('/v1/metrics/names', null, { signal }), hosts(signal)]);
  // On a central, one host at a time: the one asked for, else the central's own.
  const choices = [...(own ? [own] : []), ...byId.keys()];
  const instance = choices.length ? (choices.includes(params.instance) ? params.instance : choices[0]) : null;
  const sidecar = byId.get(instance);
  const have = new Set((names.metrics || []).map((m) => m.name));
  const wanted = CHARTS.filter((c) => have.has(c[1]));
  const answers = await Promise.all(wanted.map(([, name, , , attrs]) => {
    const q = { name, from: Math.floor(from), to: Math.ceil(to) };
    for (const [k, v] of Object.entries({ ...attrs, ...(instance ? { [INSTANCE]: instance } : {}) })) q[`attr.${k}`] = v;
    return api.get('/v1/metrics', q, { signal }).catch(() => null);
  }));
  const health = sidecar ? {} : ownHealth || await api.get('/health', null, { signal }).catch(() => ({}));
  const cards = wanted.map(([ttl, name, field, fmt, , lab, max], i) => {
    const a = answers[i];
    let series = ((a && a.series) || []).map((se) => ({
      name: label(se.attributes, lab),
      // A running total's first point has no rate: leave it out (its avg is the counter).
      points: (se.points || []).map((p) => [Date.parse(p.time), field === 'rate' ? p.rate : p[field] ?? p.avg]).filter((p) => p[1] !== null && p[1] !== undefined),
    }));
    // Keep the busiest eight series (network interfaces, connection states).
    series = series.sort((x, y) => Math.max(0, ...y.points.map((p) => p[1])) - Math.max(0, ...x.points.map((p) => p[1]))).slice(0, 8);
    const last = series.length && series[0].points.length ? series[0].points[series[0].points.length - 1][1] : null;
    return h('div', { class: 'card', 'data-metric': name },
      h('div', { class: 'card-head' }, h('h2', null, ttl), h('span', { class: 'muted mono' }, name), last !== null ? h('span', { class: 'now' }, fmt(last)) : null),
      lines({ series, yFmt: fmt, from, to, width: widthFor(0.5), yMaxFixed: max === 1 && field !== 'min' ? 1 : max ?? undefined, label: ttl }));
  });
  const picker = choices.length > 1
    ? filterForm(params, [{ name: 'instance', label: 'Host', type: 'select', default: choices[0], options: choices.map((i) => [i, i === own ? `${i} (this central)` : i]) }])
    : null;
  let kpis;
  if (sidecar) kpis = sidecarKpis(sidecar);
  else if (own) kpis = centralKpis(health, byId.size);
  else kpis = [
    kpi('Database', f.bytes(health.db_size_bytes), `WAL ${f.bytes(health.wal_size_bytes)}`),
    kpi('Data volume free', f.bytes(health.disk_free_bytes), `of ${f.bytes(health.disk_total_bytes)}`),
    kpi('Queue', f.int(health.queue_depth), `of ${f.int(health.queue_capacity)}`),
    kpi('Sidecar', health.status || '—', `up ${f.duration((health.uptime_seconds || 0) * 1000)}`)];
  return h('section', { class: 'view host', 'data-instance': instance || '' },
    header(instance === own && own ? `Host of ${instance} (this central)` : instance ? `Host of ${instance}` : 'Host', rangePicker(params, '1h')),
    picker,
    h('div', { class: 'kpis' }, kpis),
    cards.length ? h('div', { class: 'grid2' }, cards) : h('p', { class: 'muted empty' }, 'No host metrics stored (host collectors are off, or OCT_METRICS_INTERVAL is 0).'));
}
