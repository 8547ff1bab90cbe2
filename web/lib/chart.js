// Small hand-written SVG charts (stacked bars and lines): a few kilobytes instead of a
// charting library, drawn with the DOM API (no HTML strings), coloured by CSS classes
// so light and dark themes apply.

import { s, h } from './dom.js';
import { tick } from './format.js';

/** A width in SVG units for a chart taking `fraction` of the content column, so axis
 * text keeps about its CSS size when the SVG scales to its box. */
export function widthFor(fraction = 1) {
  const main = document.getElementById('main');
  const w = main ? main.clientWidth - 40 : 900;
  return Math.max(360, Math.round(w * fraction - (fraction < 1 ? 40 : 0)));
}

let W = 900;
const PAD = { l: 84, r: 14, t: 10, b: 26 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const e = 10 ** Math.floor(Math.log10(v));
  // Four grid steps: maxima whose quarters are round (0.25, 0.5, 1, 2, 2.5).
  for (const m of [1, 2, 4, 8, 10]) if (m * e >= v * 0.999) return m * e;
  return 10 * e;
}

function axes(g, x0, x1, yMax, H, yFmt) {
  const plotH = H - PAD.t - PAD.b;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + plotH - (plotH * i) / 4;
    g.appendChild(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'grid' }));
    g.appendChild(s('text', { x: PAD.l - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, yFmt((yMax * i) / 4)));
  }
  const span = x1 - x0;
  for (let i = 0; i <= 5; i++) {
    const t = x0 + (span * i) / 5;
    const x = PAD.l + ((W - PAD.l - PAD.r) * i) / 5;
    g.appendChild(
      s('text', { x, y: H - 8, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === 5 ? 'end' : 'middle' }, tick(t, span)),
    );
  }
}

function legend(keys) {
  return h(
    'ul',
    { class: 'legend' },
    keys.map((k, i) => h('li', null, h('span', { class: `swatch c${i % 8}` }), k)),
  );
}

/**
 * Stacked bars. buckets: sorted bucket start times (ms); series: [{name, values}]
 * (values aligned with buckets). bucketMs: a bucket's width.
 */
export function stackedBars({ buckets, series, bucketMs, yFmt = String, axisFmt, height = 220, label = 'chart', from, to, width }) {
  W = width || widthFor(1);
  const H = height;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  if (!buckets.length) {
    return h('div', { class: 'chart-box' }, h('p', { class: 'muted empty' }, 'No data in this range.'));
  }
  // The axis spans the asked range (from/to, snapped to buckets), or the buckets seen.
  const x0 = Math.min(buckets[0], from !== undefined && from !== null ? Math.floor(from / bucketMs) * bucketMs : Infinity);
  const x1 = Math.max(buckets[buckets.length - 1] + bucketMs, to !== undefined && to !== null ? Math.ceil(to / bucketMs) * bucketMs : -Infinity);
  const totals = buckets.map((_, i) => series.reduce((a, se) => a + (se.values[i] || 0), 0));
  const yMax = niceMax(Math.max(...totals));
  const g = s('g');
  axes(g, x0, x1, yMax, H, axisFmt || yFmt);
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  const bw = Math.max(1, (plotW * bucketMs) / (x1 - x0) - 1);
  buckets.forEach((b, i) => {
    let acc = 0;
    const x = PAD.l + (plotW * (b - x0)) / (x1 - x0);
    series.forEach((se, k) => {
      const v = se.values[i] || 0;
      if (v <= 0) return;
      const y = PAD.t + plotH - (plotH * (acc + v)) / yMax;
      const hgt = (plotH * v) / yMax;
      acc += v;
      g.appendChild(
        s('rect', { x, y, width: bw, height: Math.max(hgt, 0.5), class: `bar c${k % 8}` }, s('title', null, `${tick(b, 0)} ${se.name}: ${yFmt(v)}`)),
      );
    });
  });
  svg.appendChild(g);
  return h('div', { class: 'chart-box' }, svg, legend(series.map((x) => x.name)));
}

/** Lines. series: [{name, points: [[ms, value], ...]}]. */
export function lines({ series, yFmt = String, axisFmt, height = 180, label = 'chart', from, to, yMin = 0, yMaxFixed, width }) {
  W = width || widthFor(1);
  const H = height;
  const all = series.flatMap((se) => se.points);
  if (!all.length) {
    return h('div', { class: 'chart-box' }, h('p', { class: 'muted empty' }, 'No data in this range.'));
  }
  const x0 = from ?? Math.min(...all.map((p) => p[0]));
  let x1 = to ?? Math.max(...all.map((p) => p[0]));
  if (x1 <= x0) x1 = x0 + 1000;
  const yMax = yMaxFixed ?? niceMax(Math.max(...all.map((p) => p[1])));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  const g = s('g');
  axes(g, x0, x1, yMax, H, axisFmt || yFmt);
  const plotW = W - PAD.l - PAD.r;
  const plotH = H - PAD.t - PAD.b;
  const X = (t) => PAD.l + (plotW * (t - x0)) / (x1 - x0);
  const Y = (v) => PAD.t + plotH - (plotH * (Math.min(v, yMax) - yMin)) / (yMax - yMin || 1);
  series.forEach((se, k) => {
    if (!se.points.length) return;
    const d = se.points.map((p, i) => `${i ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join('');
    g.appendChild(s('path', { d, class: `line c${k % 8}` }));
    if (se.points.length <= 60) {
      for (const p of se.points) {
        g.appendChild(
          s('circle', { cx: X(p[0]), cy: Y(p[1]), r: 2.5, class: `dot c${k % 8}` }, s('title', null, `${tick(p[0], 0)} ${se.name}: ${yFmt(p[1])}`)),
        );
      }
    }
  });
  svg.appendChild(g);
  return h('div', { class: 'chart-box' }, svg, series.length > 1 || series[0].name ? legend(series.map((x) => x.name)) : null);
}
