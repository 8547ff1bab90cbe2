// Hash routes: #/runs?agent=main. Every view and its filters live in the URL, so a view
// can be shared and back/forward work; the server only ever serves one page.

/** The current route: {path: ['runs', 'ID'], params: {agent: 'main'}}. */
export function current() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const pathPart = q < 0 ? raw : raw.slice(0, q);
  const params = Object.fromEntries(new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)));
  const path = pathPart
    .split('/')
    .filter(Boolean)
    .map((p) => decodeURIComponent(p));
  return { path, params };
}

/** A hash link: link(['runs', id], {span: x}). Values are URL-encoded. */
export function link(path, params) {
  const p = path.map((x) => encodeURIComponent(x)).join('/');
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, String(v));
  }
  const qs = q.toString();
  return `#/${p}${qs ? `?${qs}` : ''}`;
}

/** Goes to a route (a new history entry unless replace). */
export function go(path, params, replace = false) {
  const h = link(path, params);
  if (h === location.hash) return;
  if (replace) history.replaceState(null, '', h);
  else location.hash = h;
  if (replace) window.dispatchEvent(new HashChangeEvent('hashchange'));
}

/** Same view, other parameters (merged; null removes one). */
export function setParams(changes, replace = false) {
  const { path, params } = current();
  const next = { ...params };
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') delete next[k];
    else next[k] = String(v);
  }
  go(path, next, replace);
}
