// The dashboard's entry point: header and navigation, the login view when the daemon
// wants a token, and the router that renders one view per URL.

import { h, replace, note } from './lib/dom.js';
import * as api from './lib/api.js';
import { features, storeKind } from './lib/features.js';
import { current, link } from './lib/router.js';
import * as overview from './views/overview.js';
import * as runs from './views/runs.js';
import * as run from './views/run.js';
import * as session from './views/session.js';
import * as usage from './views/usage.js';
import * as errors from './views/errors.js';
import * as host from './views/host.js';
import * as live from './views/live.js';
import * as anomalies from './views/anomalies.js';
import * as openclaw from './views/openclaw.js';
import * as fleet from './views/fleet.js';
import * as login from './views/login.js';

const NAV = [
  ['overview', 'Overview'],
  ['runs', 'Runs'],
  ['sessions', 'Sessions'],
  ['usage', 'Usage'],
  ['errors', 'Errors'],
  ['host', 'Host'],
  ['live', 'Live'],
  ['anomalies', 'Anomalies'],
  ['openclaw', 'OpenClaw'],
  ['fleet', 'Fleet'],
];

// Shown in the navigation only when there is something to show (probed once after the
// first view loaded, so a daemon that wants a token is asked only once): OpenClaw runs in
// the last 30 days, sidecars pushing to this daemon. Their pages work either way.
const optional = { openclaw: false, fleet: false };
let probed = false;

async function probe() {
  probed = true;
  const now = Date.now();
  const [oc, fl, store] = await Promise.all([
    api.get('/v1/openclaw/channels', { from: now - 30 * 86_400_000, to: now }).catch(() => null),
    api.get('/v1/instances').catch(() => null),
    storeKind(),
  ]);
  optional.openclaw = !!(oc && (oc.channels || []).some((c) => c.runs > 0));
  optional.fleet = !!(fl && (fl.instances || []).length);
  Object.assign(features, optional, { store });
  if (locked) return;
  renderHeader(current().path[0] || 'overview');
  // A view that offers more on a fleet's central (usage by sidecar) is drawn again.
  const view = pick(current().path);
  if (view && view.offersMoreOn && view.offersMoreOn(features)) route();
}

function pick(path) {
  const [top, id] = path;
  switch (top) {
    case undefined:
    case 'overview':
      return overview;
    case 'runs':
      return id ? run : runs;
    case 'sessions':
      return session;
    case 'usage':
      return usage;
    case 'errors':
      return errors;
    case 'host':
      return host;
    case 'live':
      return live;
    case 'anomalies':
      return anomalies;
    case 'openclaw':
      return openclaw;
    case 'fleet':
      return fleet;
    default:
      return null;
  }
}

const topEl = document.getElementById('top');
const mainEl = document.getElementById('main');
let controller = null;
let locked = false;
let lastTop = null;

function renderHeader(active) {
  const nav = h(
    'nav',
    { class: 'nav', 'aria-label': 'Views' },
    NAV.filter(([id]) => !(id in optional) || optional[id] || active === id).map(([id, label]) =>
      h('a', { href: link([id]), 'aria-current': active === id ? 'page' : null, 'data-nav': id }, label),
    ),
  );
  replace(
    topEl,
    h('a', { class: 'brand', href: link(['overview']) }, h('span', { class: 'logo', 'aria-hidden': 'true' }), 'openclaw-trace'),
    locked ? null : nav,
    api.hasToken() && !locked
      ? h('button', {
          type: 'button',
          class: 'secondary small signout',
          onclick: () => {
            api.setToken('');
            showLogin();
          },
        }, 'Sign out')
      : null,
  );
}

function showLogin(message) {
  locked = true;
  if (controller) controller.abort();
  renderHeader(null);
  document.title = 'Sign in · openclaw-trace';
  replace(
    mainEl,
    login.render(message, async (token) => {
      api.setToken(token);
      try {
        await api.get('/v1/budget');
      } catch (e) {
        if (e instanceof api.AuthError) return 'That token was refused.';
        return String(e.message || e);
      }
      locked = false;
      route();
      return null;
    }),
  );
}

api.onAuthNeeded(() => {
  if (!locked) showLogin(api.hasToken() ? 'The token was refused; give it again.' : null);
});

async function route() {
  if (locked) return;
  if (controller) controller.abort();
  controller = new AbortController();
  const signal = controller.signal;
  const { path, params } = current();
  const view = pick(path);
  const top = path[0] || 'overview';
  renderHeader(top);
  if (!view) {
    replace(mainEl, h('h1', null, 'Not found'), note('No such view.'));
    return;
  }
  const sameView = lastTop === path.join('/');
  lastTop = path.join('/');
  if (!sameView) replace(mainEl, h('p', { class: 'muted loading' }, 'Loading…'));
  else mainEl.setAttribute('aria-busy', 'true');
  try {
    const el = await view.render({ path, params, signal });
    if (signal.aborted) return;
    replace(mainEl, el);
    document.title = `${view.title ? view.title(path, params) : top} · openclaw-trace`;
    if (!sameView) {
      const h1 = mainEl.querySelector('h1');
      if (h1) h1.focus({ preventScroll: true });
    }
    if (!probed) probe();
  } catch (e) {
    if (signal.aborted || e instanceof api.AuthError) return;
    if (e && e.name === 'AbortError') return;
    replace(mainEl, h('h1', null, 'Could not load this view'), note(String(e.message || e), 'error'));
  } finally {
    mainEl.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', route);

// Keyboard: g then a letter jumps to a view (o, r, s, u, e, h, l, a; c OpenClaw, f fleet).
let gPressed = false;
window.addEventListener('keydown', (e) => {
  const t = e.target;
  if (t && (t.tagName === 'INPUT' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === 'g') {
    gPressed = true;
    setTimeout(() => (gPressed = false), 1000);
    return;
  }
  if (gPressed) {
    const m = e.key === 'c' ? ['openclaw'] : NAV.find(([id]) => id[0] === e.key);
    gPressed = false;
    if (m) location.hash = link([m[0]]);
  }
});

// Start: render the view at once; if the daemon wants a token, its first answer is a 401
// and the login view replaces whatever was loading (no data was shown).
route();

// The skip link focuses the content without touching the route in the hash.
document.querySelector('.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  mainEl.focus();
});
