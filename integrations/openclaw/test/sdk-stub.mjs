// Test-only: resolves the OpenClaw SDK subpath the plugin imports to a stand-in,
// so the plugin can be tested without a gateway (the e2e test loads it for real).
import { registerHooks } from "node:module";

const stub = new URL("./fake-diagnostic-runtime.mjs", import.meta.url).href;
registerHooks({
  resolve(specifier, context, next) {
    if (specifier === "openclaw/plugin-sdk/diagnostic-runtime") return { url: stub, shortCircuit: true };
    return next(specifier, context);
  },
});
