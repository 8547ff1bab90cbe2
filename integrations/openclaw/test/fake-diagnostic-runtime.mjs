// Stand-in for openclaw/plugin-sdk/diagnostic-runtime: records listeners so tests can emit.
export const listeners = [];
globalThis.__fakeDiagnosticListeners = listeners;
export function onInternalDiagnosticEvent(listener, filter) {
  listeners.push({ listener, filter });
  return () => {};
}
