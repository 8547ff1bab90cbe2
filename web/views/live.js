// Live: what is arriving now, from /v1/stream read with fetch() (so the bearer token can
// go in a header), filtered by kind, agent and level, with pause and resume.

import { h, replace } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { header, filterForm, runLink } from '../lib/ui.js';

export const title = () => 'Live';

const KEEP = 500;
const FIELDS = [
  { name: 'kind', label: 'Kind', placeholder: 'llm_call,tool_call,error', size: 18 },
  { name: 'agent', label: 'Agent', size: 10 },
  { name: 'level', label: 'Level', type: 'select', options: [['', 'any'], ['debug', 'debug+'], ['info', 'info+'], ['warn', 'warn+'], ['error', 'error+']] },
];

function item(it) {
  const kind = String(it.kind || it.record || 'other').replace(/[^a-z_]/g, '');
  const parts = [
    it.model ? it.model : null,
    it.total_tokens !== undefined && it.total_tokens !== null ? `${f.int(it.total_tokens)} tok` : null,
    it.cost_usd !== undefined && it.cost_usd !== null ? f.cost(it.cost_usd) : null,
    it.duration_ms !== undefined && it.duration_ms !== null ? f.duration(it.duration_ms) : null,
  ].filter(Boolean).join(' · ');
  return h('li', { class: `live-item lv-${String(it.level || '').replace(/[^a-z]/g, '')}`, 'data-kind': kind },
    h('span', { class: 'mono muted' }, f.clock(Date.parse(it.time))),
    h('span', { class: `kind k-${kind}` }, kind.replace('_', ' ')),
    h('span', { class: 'live-name' }, it.name || ''),
    h('span', { class: 'muted' }, it.agent_id || ''),
    h('span', null, parts),
    h('span', { class: 'live-msg' }, it.message || it.output_preview || it.input_preview || ''),
    it.trace_id ? runLink(it.trace_id) : h('span'));
}

export async function render({ params, signal }) {
  const listEl = h('ol', { class: 'live-list', 'aria-live': 'off' });
  const status = h('span', { class: 'live-status', role: 'status' }, 'connecting…');
  const counter = h('span', { class: 'muted' });
  let paused = false;
  let held = [];
  let shown = 0;
  const pauseBtn = h('button', { type: 'button', 'aria-pressed': 'false' }, 'Pause');

  function add(items) {
    const frag = document.createDocumentFragment();
    for (const it of items) frag.prepend(item(it));
    listEl.prepend(frag);
    shown += items.length;
    while (listEl.childElementCount > KEEP) listEl.lastElementChild.remove();
    counter.textContent = `${f.int(shown)} received`;
  }
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    pauseBtn.setAttribute('aria-pressed', paused ? 'true' : 'false');
    if (!paused && held.length) {
      add(held);
      held = [];
    }
    status.textContent = paused ? 'paused' : 'live';
  });

  const q = { kind: params.kind, agent: params.agent, level: params.level };
  (async () => {
    let backoff = 500;
    while (!signal.aborted) {
      try {
        status.textContent = 'connecting…';
        let first = true;
        await api.stream('/v1/stream', q, (name, data) => {
          if (first) {
            first = false;
            backoff = 500;
          }
          if (name === 'dropped') {
            status.textContent = 'fell behind; reconnecting';
            return;
          }
          let it;
          try {
            it = JSON.parse(data);
          } catch {
            return;
          }
          if (paused) {
            held.push(it);
            status.textContent = `paused (${held.length} waiting)`;
          } else add([it]);
        }, signal, () => {
          status.textContent = paused ? `paused (${held.length} waiting)` : 'live';
        }).then(() => {}, (e) => {
          if (!signal.aborted) throw e;
        });
        if (!signal.aborted) status.textContent = 'stream ended; reconnecting';
      } catch (e) {
        if (signal.aborted || e instanceof api.AuthError) return;
        status.textContent = `disconnected: ${e.message || e}; retrying`;
      }
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10_000);
    }
  })();

  return h('section', { class: 'view live' },
    header('Live', status, counter, pauseBtn, h('button', { type: 'button', class: 'secondary', onclick: () => { replace(listEl); shown = 0; counter.textContent = ''; } }, 'Clear')),
    filterForm(params, FIELDS, { reset: [] }),
    h('p', { class: 'muted' }, 'Newest first; the last 100 items arrive at once, then each as it is captured.'),
    listEl);
}
