// Pretty-printed, syntax-highlighted JSON built from elements (keys, strings, numbers as
// text nodes in spans with classes), never from an HTML string.

import { h } from './dom.js';

function walk(v, indent, out) {
  const pad = '  '.repeat(indent);
  if (v === null) out.push(h('span', { class: 'j-null' }, 'null'));
  else if (typeof v === 'string') out.push(h('span', { class: 'j-str' }, JSON.stringify(v)));
  else if (typeof v === 'number') out.push(h('span', { class: 'j-num' }, String(v)));
  else if (typeof v === 'boolean') out.push(h('span', { class: 'j-bool' }, String(v)));
  else if (Array.isArray(v)) {
    if (!v.length) {
      out.push('[]');
      return out;
    }
    out.push('[\n');
    v.forEach((x, i) => {
      out.push(`${pad}  `);
      walk(x, indent + 1, out);
      out.push(i < v.length - 1 ? ',\n' : '\n');
    });
    out.push(`${pad}]`);
  } else {
    const keys = Object.keys(v);
    if (!keys.length) {
      out.push('{}');
      return out;
    }
    out.push('{\n');
    keys.forEach((k, i) => {
      out.push(`${pad}  `, h('span', { class: 'j-key' }, JSON.stringify(k)), ': ');
      walk(v[k], indent + 1, out);
      out.push(i < keys.length - 1 ? ',\n' : '\n');
    });
    out.push(`${pad}}`);
  }
  return out;
}

/** A <pre> of the value with a copy button. */
export function jsonBlock(value, label) {
  const text = JSON.stringify(value ?? null, null, 2);
  const btn = h('button', { type: 'button', class: 'small copy', 'aria-label': `Copy ${label}` }, 'Copy');
  btn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      btn.textContent = 'Copied';
    } catch {
      btn.textContent = 'Copy failed';
    }
    setTimeout(() => (btn.textContent = 'Copy'), 1500);
  });
  return h('div', { class: 'json' }, h('div', { class: 'json-head' }, h('span', null, label), btn), h('pre', { class: 'code' }, walk(value ?? null, 0, [])));
}
