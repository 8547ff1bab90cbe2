// Pieces several views share: filter forms bound to the URL, tables, badges, pagers.

import { h } from './dom.js';
import { setParams, link } from './router.js';
import { RANGES, toLocalInput, parseWhen } from './format.js';

export function badge(status) {
  const st = status || 'unset';
  return h('span', { class: `badge st-${st.replace(/[^a-z_]/g, '')}` }, st);
}

export function kindTag(kind) {
  const k = kind || 'other';
  return h('span', { class: `kind k-${k.replace(/[^a-z_]/g, '')}` }, k.replace('_', ' '));
}

/** A view's title and, to its right, actions. */
export function header(title, ...actions) {
  return h('div', { class: 'view-head' }, h('h1', { tabindex: '-1' }, title), h('div', { class: 'actions' }, actions));
}

/**
 * A filter form whose fields are URL parameters. fields: [{name, label, type: 'text'|
 * 'select'|'number', options: [[value, label]], placeholder}]. Submitting writes them
 * to the URL (which re-renders the view); cursor-style params listed in `reset` drop.
 */
export function filterForm(params, fields, { reset = ['cursor'] } = {}) {
  const inputs = {};
  const form = h('form', { class: 'filters', role: 'search' });
  for (const f of fields) {
    let input;
    const id = `f-${f.name}`;
    if (f.type === 'select') {
      input = h(
        'select',
        { id, name: f.name },
        f.options.map(([v, l]) => h('option', { value: v, selected: (params[f.name] ?? f.default ?? '') === v }, l)),
      );
      input.addEventListener('change', () => form.requestSubmit());
    } else {
      input = h('input', {
        id,
        name: f.name,
        type: f.type || 'text',
        value: params[f.name] ?? '',
        placeholder: f.placeholder || '',
        step: f.step,
        min: f.min,
        size: f.size || 12,
        autocomplete: 'off',
      });
    }
    inputs[f.name] = input;
    form.appendChild(h('label', { for: id }, h('span', null, f.label), input));
  }
  form.appendChild(h('button', { type: 'submit' }, 'Apply'));
  form.appendChild(
    h('button', {
      type: 'button',
      class: 'secondary',
      onclick: () => {
        const changes = {};
        for (const f of fields) changes[f.name] = null;
        for (const r of reset) changes[r] = null;
        setParams(changes);
      },
    }, 'Clear'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const changes = {};
    for (const f of fields) {
      const v = inputs[f.name].value.trim();
      changes[f.name] = v === (f.default ?? '') ? null : v;
    }
    for (const r of reset) changes[r] = null;
    setParams(changes);
  });
  return form;
}

/** Range picker: 1h/24h/7d/30d buttons and a custom from/to. */
export function rangePicker(params, fallback = '24h', extra = []) {
  const cur = params.range || fallback;
  const box = h('div', { class: 'range', role: 'group', 'aria-label': 'Time range' });
  for (const r of [...Object.keys(RANGES), ...extra]) {
    box.appendChild(
      h('button', {
        type: 'button',
        class: cur === r ? 'small on' : 'small',
        'aria-pressed': cur === r ? 'true' : 'false',
        onclick: () => setParams({ range: r === fallback ? null : r, from: null, to: null, cursor: null }),
      }, r),
    );
  }
  const from = h('input', { type: 'datetime-local', 'aria-label': 'From', value: cur === 'custom' ? toLocalInput(parseWhen(params.from)) : '' });
  const to = h('input', { type: 'datetime-local', 'aria-label': 'To', value: cur === 'custom' ? toLocalInput(parseWhen(params.to)) : '' });
  const apply = h('button', {
    type: 'button',
    class: cur === 'custom' ? 'small on' : 'small',
    onclick: () => {
      const f = parseWhen(from.value);
      const t = parseWhen(to.value);
      if (f === null) return from.focus();
      setParams({ range: 'custom', from: f, to: t, cursor: null });
    },
  }, 'custom');
  box.append(from, to, apply);
  return box;
}

/** A table: columns [{label, cell(row) -> node|string, cls}]. */
export function table(columns, rows, { caption, rowAttrs } = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      caption ? h('caption', { class: 'sr' }, caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { class: c.cls, scope: 'col' }, c.label)))),
      h(
        'tbody',
        null,
        rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : null, columns.map((c) => h('td', { class: c.cls }, c.cell(r))))),
      ),
    ),
  );
}

/** "Next page" (cursor in the URL) and "first page". */
export function pager(params, nextCursor) {
  return h(
    'nav',
    { class: 'pager', 'aria-label': 'Pages' },
    params.cursor ? h('button', { type: 'button', class: 'secondary', onclick: () => setParams({ cursor: null }) }, '⇤ First page') : null,
    nextCursor ? h('button', { type: 'button', onclick: () => setParams({ cursor: nextCursor }) }, 'Next page →') : h('span', { class: 'muted' }, 'End of list'),
  );
}

export function runLink(traceId, text) {
  return h('a', { href: link(['runs', traceId]), class: 'mono' }, text ?? String(traceId).slice(0, 12));
}

export function sessionLink(sessionId) {
  if (!sessionId) return '—';
  return h('a', { href: link(['sessions', sessionId]) }, sessionId);
}

export function kpi(label, value, sub, cls = '') {
  return h('div', { class: `kpi ${cls}` }, h('div', { class: 'kpi-label' }, label), h('div', { class: 'kpi-value' }, value), sub ? h('div', { class: 'kpi-sub' }, sub) : null);
}
