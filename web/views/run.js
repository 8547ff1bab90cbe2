// One run: a waterfall of its spans on a time axis, nested by parent, coloured by kind,
// and the chosen span's details. Rows are plain positioned divs built once (a 2,000-span
// run is about 10,000 nodes), and choosing a span only re-renders the details panel.

import { h, replace, note } from '../lib/dom.js';
import * as api from '../lib/api.js';
import * as f from '../lib/format.js';
import { link, setParams } from '../lib/router.js';
import { jsonBlock } from '../lib/json.js';
import { header, badge, kindTag, sessionLink } from '../lib/ui.js';

export const title = (path) => `Run ${String(path[1]).slice(0, 12)}`;

/** Depth-first order of the span tree, with depths. */
function flatten(spans) {
  const out = [];
  const stack = [...spans].sort(byStart).reverse().map((s) => [s, 0]);
  while (stack.length) {
    const [s, d] = stack.pop();
    out.push({ span: s, depth: d });
    const kids = (s.children || []).slice().sort(byStart);
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], d + 1]);
  }
  return out;
}

function byStart(a, b) {
  return Number(a.start_ns) - Number(b.start_ns);
}

function textBlock(label, text, len) {
  if (text === null || text === undefined) return null;
  const cut = len !== null && len !== undefined && len > text.length;
  return h(
    'div',
    { class: 'textblock' },
    h('div', { class: 'json-head' }, h('span', null, label), cut ? h('span', { class: 'cut', title: 'The stored text was cut' }, `cut: ${f.int(text.length)} of ${f.int(len)} characters`) : h('span', { class: 'muted' }, `${f.int(text.length)} characters`)),
    h('pre', { class: 'code wrap' }, text, cut ? h('span', { class: 'cut-mark' }, ' …[cut]') : null),
  );
}

function dl(pairs) {
  return h(
    'dl',
    { class: 'kv' },
    pairs.filter((p) => p && p[1] !== null && p[1] !== undefined && p[1] !== '').flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]),
  );
}

function details(span, t0, events, traceId) {
  const start = f.nsToMs(span.start_ns);
  const end = f.nsToMs(span.end_ns);
  const related = events.filter((e) => e.span_id === span.span_id).sort((a, b) => Number(a.time_ns) - Number(b.time_ns));
  const billed = span.kind === 'llm_call' || span.kind === 'embedding';
  const tokenRows = [
    ['Input', span.input_tokens],
    ['Output', span.output_tokens],
    ['Cache read', span.cache_read_tokens],
    ['Cache write', span.cache_write_tokens],
    ['Reasoning', span.reasoning_tokens],
    ['Total', span.total_tokens],
  ].filter(([, v]) => v !== null && v !== undefined);
  return h(
    'div',
    { class: 'span-details', 'data-span': span.span_id },
    h('div', { class: 'details-head' }, h('h2', { tabindex: '-1' }, span.name || '(unnamed)'), kindTag(span.kind), badge(span.status),
      h('button', { type: 'button', class: 'small secondary', 'aria-label': 'Close details', onclick: () => setParams({ span: null }, true) }, '✕')),
    dl([
      ['Span id', h('span', { class: 'mono' }, span.span_id)],
      ['Parent', span.parent_span_id ? h('span', { class: 'mono' }, span.parent_span_id) : '—'],
      ['Start', `${f.time(start)} (${f.clock(start)})`],
      ['Relative', `+${f.duration(start - t0)}`],
      ['Duration', f.duration(span.duration_ms ?? (end - start))],
      ['Status', span.status_message ? `${span.status}: ${span.status_message}` : span.status],
      ['Error type', span.error_type],
      ['Provider', span.provider],
      ['Model', span.response_model && span.response_model !== span.request_model ? `${span.request_model ?? '—'} → ${span.response_model}` : span.request_model ?? span.response_model],
      ['Operation', span.operation],
      ['Cost', span.cost_usd !== null && span.cost_usd !== undefined ? h('span', { class: 'cost' }, f.cost(span.cost_usd)) : billed ? 'unknown' : null],
      ['Cost source', span.cost_source ?? (billed ? 'unknown' : null)],
      ['Computed cost', span.cost_computed_usd !== undefined && span.cost_computed_usd !== null ? f.cost(span.cost_computed_usd) : null],
      ['Finish reasons', span.finish_reasons && span.finish_reasons.length ? span.finish_reasons.join(', ') : null],
      ['Tool', span.tool_name],
      ['Tool call id', span.tool_call_id ? h('span', { class: 'mono' }, span.tool_call_id) : null],
      ['Latency', span.latency_ms !== null && span.latency_ms !== undefined ? f.duration(span.latency_ms) : null],
      ['Agent', span.agent_id],
      ['Session', span.session_id ? sessionLink(span.session_id) : null],
      ['Source', span.source],
    ]),
    tokenRows.length
      ? h('table', { class: 'tokens' }, h('caption', null, 'Tokens'), h('tbody', null, tokenRows.map(([k, v]) => h('tr', { 'data-tokens': k.toLowerCase().replace(' ', '_') }, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, f.int(v))))))
      : null,
    textBlock('Input', span.input_text, span.input_text_len),
    textBlock('Output', span.output_text, span.output_text_len),
    jsonBlock(span.attributes || {}, 'Attributes'),
    jsonBlock(span.resource || {}, 'Resource'),
    h('h3', null, `Errors and logs (${related.length})`),
    related.length
      ? h('ol', { class: 'events' }, related.map((e) => h('li', { class: `ev sev-${String(e.severity || '').replace(/[^a-z]/g, '')}` },
          h('span', { class: 'mono muted' }, f.clock(f.nsToMs(e.time_ns))), ' ', h('strong', null, e.type === 'log' ? 'log' : e.name || e.type), ' ', e.message || '')))
      : h('p', { class: 'muted' }, 'None linked to this span.'),
  );
}

export async function render({ path, params, signal }) {
  const id = path[1];
  const [data, logs] = await Promise.all([
    api.get(`/v1/traces/${encodeURIComponent(id)}`, null, { signal }),
    api.get('/v1/logs', { trace_id: id, limit: 500 }, { signal }).catch(() => ({ logs: [] })),
  ]);
  // An OpenClaw run's waste flags (a loop, a bloated context, provider retries), measured
  // against its agent over the day around it.
  const openclawRun = (data.spans || []).some((s) => s.source === 'openclaw');
  const startMs = f.nsToMs(data.trace.start_ns);
  const waste = openclawRun
    ? await api.get('/v1/openclaw/waste', { trace_id: id, from: Math.floor(startMs - 86_400_000), to: Math.ceil(startMs + 86_400_000) }, { signal }).catch(() => null)
    : null;
  const flags = (waste && waste.runs && waste.runs[0] && waste.runs[0].flags) || [];
  const t = data.trace;
  const rows = flatten(data.spans || []);
  const events = [...(data.events || []), ...((logs.logs || []).map((l) => ({ ...l, type: 'log' })))];
  const t0 = f.nsToMs(t.start_ns) ?? Math.min(...rows.map((r) => f.nsToMs(r.span.start_ns)));
  let t1 = Math.max(f.nsToMs(t.end_ns) ?? 0, ...rows.map((r) => f.nsToMs(r.span.end_ns ?? r.span.start_ns)));
  if (!(t1 > t0)) t1 = t0 + 1;
  const total = t1 - t0;

  const panel = h('aside', { class: 'details', 'aria-label': 'Span details', 'aria-live': 'polite' });
  const list = h('div', { class: 'wf-rows', role: 'listbox', tabindex: '0', 'aria-label': 'Spans (up/down move, left/right collapse and expand, Enter opens)' });
  const rowEls = [];
  let selected = -1;

  // Rows are in depth-first order, so a span's descendants are the rows up to end[i].
  const end = new Array(rows.length).fill(rows.length);
  const stack = [];
  rows.forEach((r, i) => {
    while (stack.length && rows[stack[stack.length - 1]].depth >= r.depth) end[stack.pop()] = i;
    stack.push(i);
  });
  const collapsed = new Set();

  function toggle(i, open) {
    if (end[i] === i + 1) return;
    const want = open ?? collapsed.has(i);
    if (want === !collapsed.has(i)) return;
    if (want) collapsed.delete(i);
    else collapsed.add(i);
    rowEls[i].querySelector('.caret').setAttribute('aria-expanded', want ? 'true' : 'false');
    rowEls[i].querySelector('.caret').textContent = want ? '▾' : '▸';
    if (!want) {
      for (let j = i + 1; j < end[i]; j++) rowEls[j].hidden = true;
    } else {
      for (let j = i + 1; j < end[i]; j++) {
        rowEls[j].hidden = false;
        if (collapsed.has(j)) j = end[j] - 1;
      }
    }
  }

  function step(from, dir) {
    for (let j = from + dir; j >= 0 && j < rows.length; j += dir) if (!rowEls[j].hidden) return j;
    return from;
  }

  function select(i, focusPanel = false) {
    if (i < 0 || i >= rows.length) return;
    if (selected >= 0) {
      rowEls[selected].classList.remove('sel');
      rowEls[selected].setAttribute('aria-selected', 'false');
    }
    selected = i;
    const el = rowEls[i];
    // A span inside a collapsed one (chosen from the URL) opens its ancestors.
    for (let a = i - 1, d = rows[i].depth; a >= 0 && d > 0; a--) {
      if (rows[a].depth < d) {
        toggle(a, true);
        d = rows[a].depth;
      }
    }
    el.classList.add('sel');
    el.setAttribute('aria-selected', 'true');
    list.setAttribute('aria-activedescendant', el.id);
    el.scrollIntoView({ block: 'nearest' });
    replace(panel, details(rows[i].span, t0, events, id));
    if (focusPanel) panel.querySelector('h2')?.focus();
    history.replaceState(null, '', link(['runs', id], { ...params, span: rows[i].span.span_id }));
  }

  const frag = document.createDocumentFragment();
  rows.forEach((r, i) => {
    const s = r.span;
    const st = f.nsToMs(s.start_ns) - t0;
    const dur = s.duration_ms ?? (f.nsToMs(s.end_ns) - f.nsToMs(s.start_ns));
    const left = (100 * st) / total;
    const width = Math.max((100 * (dur || 0)) / total, 0.15);
    const kind = (s.kind || 'other').replace(/[^a-z_]/g, '');
    const label = `${f.duration(dur)}${s.cost_usd !== null && s.cost_usd !== undefined ? ` · ${f.cost(s.cost_usd)}` : ''}`;
    const bar = h('div', { class: `wf-bar k-${kind}${s.status === 'error' ? ' err' : ''}` });
    bar.style.left = `${left}%`;
    bar.style.width = `${width}%`;
    const lab = h('span', { class: 'wf-label' }, label);
    // The label sits right of the bar, or left of it when the bar ends near the edge.
    if (left + width > 80) {
      lab.classList.add('left');
      lab.style.right = `${100 - left}%`;
    } else lab.style.left = `${left + width}%`;
    const hasKids = (s.children || []).length > 0;
    const caret = hasKids
      ? h('button', { type: 'button', class: 'caret', tabindex: '-1', 'aria-expanded': 'true', 'aria-label': 'Collapse or expand', onclick: (e) => { e.stopPropagation(); toggle(i); } }, '▾')
      : h('span', { class: 'caret-pad' });
    const name = h('div', { class: 'wf-name' }, caret, h('span', { class: `dot k-${kind}`, 'aria-hidden': 'true' }), s.name || '(unnamed)');
    name.style.paddingLeft = `${0.4 + r.depth * 1.1}rem`;
    const row = h('div', { class: 'wf-row', role: 'option', id: `sp-${s.span_id}`, 'data-span': s.span_id, 'data-depth': r.depth, 'data-kind': kind, 'aria-selected': 'false' },
      name, h('div', { class: 'wf-track' }, bar, lab));
    row.addEventListener('click', () => select(i));
    rowEls.push(row);
    frag.appendChild(row);
  });
  list.appendChild(frag);
  list.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'j') select(selected < 0 ? 0 : step(selected, 1));
    else if (e.key === 'ArrowUp' || e.key === 'k') select(selected < 0 ? 0 : step(selected, -1));
    else if (e.key === 'ArrowLeft' && selected >= 0) toggle(selected, false);
    else if (e.key === 'ArrowRight' && selected >= 0) toggle(selected, true);
    else if (e.key === 'Home') select(0);
    else if (e.key === 'End') select(step(rows.length, -1));
    else if (e.key === 'Enter') select(Math.max(selected, 0), true);
    else return;
    e.preventDefault();
  });

  const axis = h('div', { class: 'wf-axis' }, h('div', { class: 'wf-name muted' }, `${rows.length} spans`),
    h('div', { class: 'wf-track' }, [0, 0.25, 0.5, 0.75, 1].map((p) => {
      const el = h('span', { class: 'wf-tick' }, f.duration(total * p));
      el.style.left = `${p * 100}%`;
      return el;
    })));

  const exportBtn = h('button', { type: 'button', class: 'secondary' }, 'Download export (.json.gz)');
  exportBtn.addEventListener('click', () => api.download(`/v1/traces/${encodeURIComponent(id)}/export`, null, `trace-${id}.json.gz`).catch((e) => alertText(exportBtn, e)));

  const summary = h('div', { class: 'run-summary' },
    badge(t.status),
    h('span', null, f.time(t0)),
    h('span', null, f.duration(t.duration_ms)),
    h('span', null, `${f.int(t.span_count)} spans · ${f.int(t.llm_calls)} LLM · ${f.int(t.tool_calls)} tools`),
    h('span', null, `${f.tokens(t.total_tokens)} tokens`),
    h('span', { class: 'cost' }, f.cost(t.cost_usd)),
    t.agent_id ? h('span', null, 'agent ', h('a', { href: link(['runs'], { agent_id: t.agent_id }) }, t.agent_id)) : null,
    t.session_id ? h('span', null, 'session ', sessionLink(t.session_id)) : null,
    t.parent_trace_id ? h('span', null, 'sub-run of ', h('a', { href: link(['runs', t.parent_trace_id]), class: 'mono' }, t.parent_trace_id.slice(0, 12))) : null,
  );

  const view = h('section', { class: 'view run' },
    header(t.name || '(unnamed run)', exportBtn),
    h('p', { class: 'mono muted' }, id),
    summary,
    subRuns(data),
    flags.length
      ? h('div', { class: 'run-waste' }, h('span', { class: 'muted' }, 'Waste flags: '),
          h('ul', { class: 'chips' }, flags.map((fl) => h('li', { class: 'chip up', 'data-flag': fl.flag }, flagText(fl)))),
          h('a', { href: link(['openclaw', 'waste']) }, 'Waste →'))
      : null,
    scores(data.scores || []),
    h('div', { class: 'legend-kinds' }, ['agent_run', 'llm_call', 'tool_call', 'other'].map((k) => h('span', null, h('span', { class: `dot k-${k}` }), k.replace('_', ' ')))),
    h('div', { class: 'run-body' }, h('div', { class: 'waterfall' }, axis, list), panel),
  );
  const want = params.span ? rows.findIndex((r) => r.span.span_id === params.span) : -1;
  if (want >= 0) requestAnimationFrame(() => select(want));
  else replace(panel, note('Choose a span to see its details.'));
  return view;
}

/**
 * Sub-runs: traces naming this one as their parent, and the runs of the OpenClaw
 * sub-agents it spawned (grouped under each sub-agent), with the cost rolled up.
 */
function subRuns(data) {
  const subs = data.sub_traces || [];
  if (!subs.length) return null;
  const agents = data.subagents || [];
  const of = new Map();
  for (const a of agents) for (const t of a.runs || []) of.set(t, a);
  const chip = (c) => h('a', { href: link(['runs', c.trace_id]), class: 'subrun', 'data-trace': c.trace_id }, c.name || c.trace_id.slice(0, 12), ' ', h('span', { class: 'muted' }, `${f.duration(c.duration_ms)} · ${f.cost(c.cost_usd)}`));
  const plain = subs.filter((c) => !of.has(c.trace_id));
  const r = data.rollup;
  return h('div', { class: 'subruns-box' },
    r && subs.length
      ? h('p', { class: 'rollup', id: 'run-rollup' }, 'With its sub-runs: ', h('strong', { class: 'cost', id: 'run-total-cost' }, f.cost(r.total_cost_usd)),
          h('span', { class: 'muted' }, ` = own ${f.cost(r.own_cost_usd)} + ${f.int(subs.length)} sub-run${subs.length === 1 ? '' : 's'} ${f.cost(r.sub_traces_cost_usd)}${r.sub_traces_unpriced ? ` (${r.sub_traces_unpriced} without a known cost)` : ''}`))
      : null,
    agents.filter((a) => (a.runs || []).length).map((a) => h('div', { class: 'subruns', 'data-subagent': a.child_session_key },
      h('span', { class: 'muted' }, 'Sub-agent ', h('strong', null, a.label || 'sub-agent'), ' ', h('span', { class: 'mono' }, a.child_session_key), ` · ${f.cost(a.cost_usd)}: `),
      subs.filter((c) => of.get(c.trace_id) === a).map(chip))),
    plain.length ? h('div', { class: 'subruns' }, h('span', { class: 'muted' }, `Sub-runs (${plain.length}): `), plain.map(chip)) : null);
}

function flagText(fl) {
  if (fl.flag === 'tool_loop') return `tool loop: ${fl.tool} ×${fl.repeats} with the same arguments`;
  if (fl.flag === 'bloated_context') return `bloated context: ${f.int(fl.input_tokens)} prompt tokens, ${fl.factor}× the agent's median`;
  if (fl.flag === 'provider_retries') return `provider retries: ${f.int(fl.failures)} failed calls${fl.provider ? ` (${fl.provider})` : ''}`;
  return fl.flag;
}

/** The run's evaluation scores (POST /v1/scores, gen_ai.evaluation.result), if any. */
function scores(list) {
  if (!list.length) return null;
  return h('div', { class: 'scores' }, h('span', { class: 'muted' }, `Scores (${list.length}): `),
    list.map((s) => h('span', { class: 'score', title: s.explanation || '' },
      s.name, ' ',
      s.value != null ? h('strong', null, String(Math.round(s.value * 1000) / 1000)) : null,
      s.label ? h('span', { class: 'muted' }, ` ${s.label}`) : null)));
}

function alertText(btn, e) {
  btn.textContent = `Export failed: ${e.message || e}`;
}
