// A fleet's central: the sidecars that push to this daemon (/v1/instances), each with
// its version, last push, lag and whether it went silent, and links to its runs and
// usage.

import { h } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { link } from '../lib/router.js';
import { header, table, kpi } from '../lib/ui.js';

export const title = () => 'Fleet';

function secs(v) {
  return v === null || v === undefined ? '—' : f.duration(v * 1000);
}

export async function render({ signal }) {
  const data = await api.get('/v1/instances', null, { signal });
  const list = (data.instances || []).slice().sort((a, b) => Number(b.stale) - Number(a.stale) || String(a.instance_id).localeCompare(String(b.instance_id)));
  const stale = list.filter((i) => i.stale).length;
  const cols = [
    { label: 'Instance', cell: (i) => h('strong', null, i.instance_id), cls: 'name' },
    { label: 'State', cell: (i) => (i.stale ? h('span', { class: 'badge st-error' }, 'stale') : h('span', { class: 'badge st-ok' }, 'pushing')) },
    { label: 'Region', cell: (i) => i.region || '—' },
    { label: 'Host', cell: (i) => i.host || '—', cls: 'clip' },
    { label: 'Agent', cell: (i) => i.agent_id || '—' },
    { label: 'Version', cell: (i) => h('span', { class: 'mono' }, i.version || '—') },
    { label: 'Format', cell: (i) => (i.format ? `v${i.format}` : '—') },
    { label: 'Last push', cell: (i) => h('span', { title: f.time(i.last_push_ms) }, f.ago(i.last_push_ms)), cls: 'nowrap' },
    { label: 'Lag', cell: (i) => secs(i.lag_seconds), cls: 'num' },
    { label: 'Pushes', cell: (i) => f.int(i.pushes), cls: 'num' },
    { label: 'Records', cell: (i) => f.int(i.records), cls: 'num' },
    { label: '', cell: (i) => h('a', { href: link(['runs'], { instance: i.instance_id }), 'data-runs-of': i.instance_id }, 'Runs →') },
    { label: '', cell: (i) => h('a', { href: link(['usage'], { instance: i.instance_id }), 'data-usage-of': i.instance_id }, 'Usage →') },
    { label: '', cell: (i) => h('a', { href: link(['host'], { instance: i.instance_id }), 'data-host-of': i.instance_id }, 'Host →') },
  ];
  return h('section', { class: 'view fleet' },
    header('Fleet'),
    h('div', { class: 'kpis' },
      kpi('Sidecars', h('span', { id: 'fleet-count' }, f.int(list.length)), 'that pushed to this daemon'),
      kpi('Stale', h('span', { id: 'fleet-stale', class: stale ? 'error' : '' }, f.int(stale)), `silent for more than ${secs(data.stale_after_seconds)}`),
      kpi('Records received', f.int(list.reduce((a, i) => a + (i.records || 0), 0)), `${f.int(list.reduce((a, i) => a + (i.pushes || 0), 0))} pushes`)),
    list.length
      ? table(cols, list, { caption: 'Sidecars', rowAttrs: (i) => ({ 'data-instance': i.instance_id, 'data-stale': String(!!i.stale) }) })
      : h('div', { class: 'note muted empty', id: 'fleet-empty' },
          h('p', null, 'No sidecar has pushed to this daemon.'),
          h('p', null, 'Point each sidecar\'s OCT_PUSH_ENDPOINT at http://<this host>:<port>/v1/push (with OCT_PUSH_FORMAT=v2 and OCT_PUSH_TOKEN equal to this daemon\'s OCT_AUTH_TOKEN).')));
}
