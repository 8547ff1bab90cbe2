// The only way the dashboard talks to the daemon: the documented JSON API, with the
// token (when the daemon has one) sent as an Authorization header, never in a URL.

const KEY = 'oct.token';
let token = sessionStorage.getItem(KEY) || '';
const authListeners = new Set();

export class AuthError extends Error {}
export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

export function setToken(t) {
  token = t || '';
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

export function hasToken() {
  return !!token;
}

/** Called with no argument whenever the daemon answers 401. */
export function onAuthNeeded(fn) {
  authListeners.add(fn);
}

function headers(extra) {
  const h = { ...extra };
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

/** A path with its query string; empty and null parameters are left out. */
export function url(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, String(v));
  }
  const qs = q.toString();
  return qs ? `${path}?${qs}` : path;
}

async function request(path, params, opts = {}) {
  const r = await fetch(url(path, params), {
    headers: headers(opts.headers),
    signal: opts.signal,
    cache: 'no-store',
  });
  if (r.status === 401) {
    for (const fn of authListeners) fn();
    throw new AuthError('the daemon wants a token');
  }
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    let field;
    try {
      const body = await r.json();
      if (body && body.error) msg = `${r.status}: ${body.error}`;
      field = body && body.field;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, msg, field);
  }
  return r;
}

/** GET a JSON answer. */
export async function get(path, params, opts) {
  const r = await request(path, params, opts);
  return r.json();
}

/** Fetches a file with the token and hands it to the browser as a download. */
export async function download(path, params, filename, opts) {
  const r = await request(path, params, opts);
  const blob = await r.blob();
  const href = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = href;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10_000);
}

/**
 * Reads a Server-Sent Events stream with fetch() (EventSource cannot send a header).
 * Calls onEvent(name, data) per event until the signal aborts or the stream ends.
 */
export async function stream(path, params, onEvent, signal, onOpen) {
  const r = await request(path, params, { signal, headers: { Accept: 'text/event-stream' } });
  if (onOpen) onOpen();
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = 'message';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (data.length) onEvent(name, data.join('\n'));
          name = 'message';
          data = [];
        } else if (line.startsWith(':')) {
          /* comment: keep-alive */
        } else {
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let val = c < 0 ? '' : line.slice(c + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'data') data.push(val);
          else if (field === 'event') name = val;
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}
