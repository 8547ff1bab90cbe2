// What this daemon has, probed once by the app after the first view loaded: OpenClaw
// runs, sidecars pushing to it, and its store (`sqlite`, or `postgresql` on a fleet's
// central, whose usage rollups keep each call's sidecar). Views read it to offer what
// works here; until the probe answers, they offer what works everywhere.

import * as api from './api.js';

export const features = { openclaw: false, fleet: false, store: null };

let store = null;

/** The store this daemon reads (`/health`'s `store`), asked once; null when unknown. */
export function storeKind() {
  store ||= api.get('/health').then((h) => (h && h.store) || null).catch(() => null);
  return store;
}
