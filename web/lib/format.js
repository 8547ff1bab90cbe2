// Number and time formats. No DOM here: the browser tests import this module to
// compute the strings they expect.

export function cost(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (v === 0) return '$0';
  const a = Math.abs(v);
  if (a >= 100) return `$${v.toFixed(2)}`;
  if (a >= 1) return `$${v.toFixed(3)}`;
  // Small amounts keep four significant digits: $0.0006, $0.01234.
  let t = String(Number(v.toPrecision(4)));
  if (t.includes('e')) t = v.toFixed(12).replace(/0+$/, '');
  return `$${t}`;
}

export function int(v) {
  if (v === null || v === undefined) return '—';
  return Math.round(v).toLocaleString('en-US');
}

export function tokens(v) {
  if (v === null || v === undefined) return '—';
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(2)}B`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return int(v);
}

export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  const a = Math.abs(ms);
  if (ms === 0) return '0';
  if (a < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (a < 1000) return `${ms.toFixed(a < 10 ? 1 : 0)} ms`;
  if (a < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  if (a < 3_600_000) return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} m`;
}

export function pct(v, digits = 1) {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return `${v.toFixed(digits)}%`;
}

export function bytes(v) {
  if (v === null || v === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < u.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}

function pad(n, w = 2) {
  return String(n).padStart(w, '0');
}

/** An axis label for money: $0.25, $1, $0.0005. */
export function costTick(v) {
  if (v === 0) return '$0';
  return `$${Number(v.toPrecision(2))}`;
}

/** Local date and time, to the second: 2026-12-05 23:52:30. */
export function time(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '—';
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Time with milliseconds: 23:52:30.530. */
export function clock(ms) {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return '—';
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Short axis label for a bucket start. */
export function tick(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs > 3 * 86_400_000) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (spanMs > 1.5 * 86_400_000) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}h`;
  if (spanMs > 0 && spanMs < 900_000) return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function ago(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** ns (number or string) to ms. */
export function nsToMs(ns) {
  if (ns === null || ns === undefined) return null;
  return Number(ns) / 1e6;
}

/** Change against a previous figure, as "+12%" / "−5%" / "new". */
export function delta(cur, prev) {
  if (cur === null || cur === undefined || prev === null || prev === undefined) return '';
  if (prev === 0) return cur === 0 ? '±0%' : 'new';
  const d = ((cur - prev) / Math.abs(prev)) * 100;
  const sign = d > 0 ? '+' : d < 0 ? '−' : '±';
  return `${sign}${Math.abs(d).toFixed(Math.abs(d) < 10 ? 1 : 0)}%`;
}

/** Ranges offered by the pickers: name -> milliseconds. */
export const RANGES = { '15m': 900_000, '1h': 3_600_000, '6h': 21_600_000, '24h': 86_400_000, '7d': 604_800_000, '30d': 2_592_000_000 };

/** Resolves `range` (a name from RANGES, or "custom" with from/to) to [from_ms, to_ms]. */
export function resolveRange(params, fallback = '24h', now = Date.now()) {
  const r = params.range || fallback;
  if (r === 'custom') {
    const f = parseWhen(params.from);
    const t = parseWhen(params.to);
    return [f ?? now - (RANGES[fallback] ?? RANGES['24h']), t ?? now];
  }
  if (r === 'all') return [null, null];
  return [now - (RANGES[r] ?? RANGES[fallback]), now];
}

/** "2026-12-05T10:00" (datetime-local, local time) or unix ms to ms. */
export function parseWhen(v) {
  if (v === undefined || v === null || v === '') return null;
  if (/^\d+$/.test(v)) return Number(v);
  const t = new Date(v).getTime();
  return Number.isNaN(t) ? null : t;
}

/** ms to a datetime-local input value. */
export function toLocalInput(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
