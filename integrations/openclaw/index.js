// openclaw-trace plugin for OpenClaw: forwards typed hooks and trusted
// diagnostic events to a local openclaw-trace sidecar (POST /v1/openclaw/events).
//
// Harmless by construction: every handler only copies a small object into a
// bounded in-memory queue and returns; a timer sends batches in the background;
// nothing here throws into the gateway or awaits the network on its path.
// Events are sent as `{kind, ts, event, ctx}`; the sidecar does all mapping.
//
// One exception, off by default: with `refuseOverBudget` the plugin answers a turn
// itself, before any model call, while the sidecar's `GET /v1/budget` says the agent
// is over (the `before_agent_reply` claim hook: its reply reaches every surface, the
// OpenAI-compatible endpoint included). The check is bounded by a short timeout,
// cached briefly, and fails open: a slow, down or confused sidecar never blocks or
// stalls the agent.

import { createHash } from "node:crypto";
import { onInternalDiagnosticEvent } from "openclaw/plugin-sdk/diagnostic-runtime";

const VERSION = "0.1.0";
// One sender per process, however many times register() runs.
const STATE_KEY = Symbol.for("openclaw-trace.plugin.state");

const HOOKS = [
  "model_call_started",
  "model_call_ended",
  "llm_input",
  "llm_output",
  "before_tool_call",
  "after_tool_call",
  "agent_end",
  "session_start",
  "session_end",
  "before_message_write",
  "subagent_spawned",
  "subagent_ended",
  "after_compaction",
];

// OpenClaw's silent replies: a heartbeat with nothing to say, a turn that answers no one.
const REPLY_TOKENS = ["HEARTBEAT_OK", "NO_REPLY"];

/** The silent-reply token a turn's last text is (or starts or ends with), if any. */
function silentReply(texts) {
  const list = Array.isArray(texts) ? texts : [texts];
  for (let i = list.length - 1; i >= 0; i -= 1) {
    if (typeof list[i] !== "string") continue;
    const t = list[i].trim();
    return REPLY_TOKENS.find((tok) => t.startsWith(tok) || t.endsWith(tok));
  }
  return undefined;
}

/** A short digest of a tool call's arguments: repeats show without sending the content. */
function paramsHash(params) {
  try {
    const text = typeof params === "string" ? params : JSON.stringify(params);
    if (typeof text !== "string") return undefined;
    return createHash("sha256").update(text).digest("hex").slice(0, 16);
  } catch {
    return undefined;
  }
}

const DIAGNOSTIC_TYPES = [
  "model.usage",
  "model.call.started",
  "model.call.completed",
  "model.call.error",
  "tool.execution.started",
  "tool.execution.completed",
  "tool.execution.error",
  "tool.execution.blocked",
  "run.started",
  "run.completed",
  "harness.run.started",
  "harness.run.completed",
  "harness.run.error",
];

const MAX_TEXT = 16384;

function defaults(cfg) {
  const c = cfg && typeof cfg === "object" ? cfg : {};
  const int = (v, d, min) => (Number.isInteger(v) && v >= min ? v : d);
  return {
    url: typeof c.url === "string" && c.url ? c.url.replace(/\/+$/, "") : "http://127.0.0.1:9090",
    token: typeof c.token === "string" && c.token ? c.token : undefined,
    captureContent: c.captureContent === true,
    maxQueue: int(c.maxQueue, 5000, 10),
    flushIntervalMs: int(c.flushIntervalMs, 1000, 50),
    maxBatch: int(c.maxBatch, 500, 1),
    refuseOverBudget: c.refuseOverBudget === true,
    budgetCheckTimeoutMs: int(c.budgetCheckTimeoutMs, 300, 10),
    budgetCacheMs: int(c.budgetCacheMs, 2000, 0),
  };
}

// A turn waits on the check: it is capped whatever the config says.
const MAX_BUDGET_CHECK_MS = 5000;

/** The user-facing refusal for the budgets a `/v1/budget` answer says are over. */
function refusalMessage(answer) {
  const over = Array.isArray(answer.budgets) ? answer.budgets.filter((b) => b && b.over) : [];
  const money = (b, v) => (b.unit === "usd" ? `$${Number(v).toFixed(4)}` : `${Math.round(Number(v))} tokens`);
  const detail = over
    .map((b) => `${b.budget} spent ${money(b, b.spent)} of ${money(b, b.limit)}${b.period_end ? ` until ${b.period_end}` : ""}`)
    .join("; ");
  return `Budget exceeded: model calls are refused until the budget period ends${detail ? ` (${detail})` : ""}.`;
}

// Answers "may this agent call its model?" from the sidecar: one request per agent
// at a time, remembered for budgetCacheMs, allowed whenever the answer is not a clear "over".
function createBudgetGate(getCfg) {
  const cache = new Map();

  async function ask(agent) {
    const cfg = getCfg();
    const headers = {};
    if (cfg.token) headers.authorization = `Bearer ${cfg.token}`;
    const query = agent ? `?agent=${encodeURIComponent(agent)}` : "";
    try {
      const res = await fetch(`${cfg.url}/v1/budget${query}`, {
        headers,
        signal: AbortSignal.timeout(Math.min(cfg.budgetCheckTimeoutMs, MAX_BUDGET_CHECK_MS)),
      });
      if (!res.ok) {
        await res.arrayBuffer().catch(() => undefined);
        return { over: false };
      }
      const answer = await res.json();
      if (answer && answer.over === true) return { over: true, message: refusalMessage(answer) };
    } catch {
      // Unreachable, slow or not JSON: fail open.
    }
    return { over: false };
  }

  return {
    cache,
    check(agent) {
      const key = agent || "";
      const now = Date.now();
      const hit = cache.get(key);
      if (hit && (hit.pending || now - hit.at < getCfg().budgetCacheMs)) return hit.pending || Promise.resolve(hit.result);
      const pending = ask(agent).then((result) => {
        cache.set(key, { at: Date.now(), result });
        return result;
      });
      cache.set(key, { at: now, pending, result: hit && hit.result });
      return pending;
    },
  };
}

function textLength(v) {
  if (v == null) return 0;
  if (typeof v === "string") return v.length;
  try {
    return JSON.stringify(v).length;
  } catch {
    return 0;
  }
}

function capText(v) {
  if (typeof v === "string") return v.length > MAX_TEXT ? v.slice(0, MAX_TEXT) : v;
  try {
    const s = JSON.stringify(v);
    return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) : v;
  } catch {
    return undefined;
  }
}

// Content fields of each hook: dropped (lengths kept) unless captureContent is on.
const CONTENT_FIELDS = {
  llm_input: ["systemPrompt", "prompt", "historyMessages", "tools"],
  llm_output: ["assistantTexts"],
  before_tool_call: ["params"],
  after_tool_call: ["params", "result"],
  agent_end: ["messages"],
  before_message_write: [],
};

// Bounded maps that carry a model call's or tool call's trace context to the
// hooks that lack it (before_message_write, after_tool_call). Oldest entries go first.
const CORRELATION_LIMIT = 1000;

function remember(map, key, value) {
  if (key == null) return;
  map.delete(key);
  map.set(key, value);
  if (map.size > CORRELATION_LIMIT) map.delete(map.keys().next().value);
}

function take(map, key) {
  if (key == null) return undefined;
  const v = map.get(key);
  map.delete(key);
  return v;
}

function sanitizeEvent(hook, event, capture) {
  if (!event || typeof event !== "object") return event;
  const out = {};
  const content = CONTENT_FIELDS[hook] || [];
  if (hook === "llm_output") {
    const tok = silentReply(event.assistantTexts);
    if (tok) out.silentReply = tok;
  }
  if ((hook === "before_tool_call" || hook === "after_tool_call") && event.params !== undefined) {
    const h = paramsHash(event.params);
    if (h) out.paramsHash = h;
  }
  for (const [k, v] of Object.entries(event)) {
    if (content.includes(k)) {
      if (capture) out[k] = capText(v);
      else out[`${k}Chars`] = textLength(v);
    } else if ((k === "lastAssistant" || k === "message") && v && typeof v === "object") {
      const { content: body, ...rest } = v;
      out[k] = capture ? { ...rest, content: capText(body) } : { ...rest, contentChars: textLength(body) };
    } else if (typeof v === "function" || k === "abortSignal") {
      // not data
    } else {
      out[k] = v;
    }
  }
  return out;
}

function sanitizeCtx(ctx) {
  if (!ctx || typeof ctx !== "object") return {};
  const out = {};
  for (const [k, v] of Object.entries(ctx)) {
    if (typeof v === "function" || k === "abortSignal" || k === "pluginConfig") continue;
    out[k] = v;
  }
  return out;
}

// The assistant message OpenClaw writes to the transcript right after a model call
// ends carries the response id and usage; it is tied to that call here because its
// hook context has no trace. Returns extra context fields, or null to skip the event.
const lastCallBySession = new Map();
const toolTraceById = new Map();

function correlate(name, event, ctx) {
  const e = event || {};
  const c = ctx || {};
  switch (name) {
    case "model_call_ended":
      remember(lastCallBySession, c.sessionKey || e.sessionKey, {
        trace: c.trace,
        runId: e.runId || c.runId,
        callId: e.callId,
        sessionId: e.sessionId || c.sessionId,
      });
      return undefined;
    case "before_message_write": {
      const m = e.message;
      if (!m || m.role !== "assistant") return null;
      const call = take(lastCallBySession, c.sessionKey);
      return call ? { call } : undefined;
    }
    case "before_tool_call":
      remember(toolTraceById, e.toolCallId || c.toolCallId, c.trace);
      return undefined;
    case "after_tool_call": {
      const trace = take(toolTraceById, e.toolCallId || c.toolCallId);
      return trace && !c.trace ? { trace } : undefined;
    }
    default:
      return undefined;
  }
}

function createSender(initial) {
  const state = {
    cfg: defaults(initial),
    queue: [],
    dropped: 0,
    sending: false,
    backoffMs: 0,
    nextTryAt: 0,
  };

  // Items are serialized when queued: a snapshot the gateway cannot change later, and
  // one that cannot fail (and so block the queue) when the batch is sent.
  function push(item) {
    if (state.queue.length >= state.cfg.maxQueue) {
      state.dropped += 1;
      return;
    }
    let text;
    try {
      text = JSON.stringify(item);
    } catch {
      state.dropped += 1;
      return;
    }
    if (typeof text === "string") state.queue.push(text);
  }

  async function flush() {
    if (state.sending || state.queue.length === 0 || Date.now() < state.nextTryAt) return;
    state.sending = true;
    const batch = state.queue.slice(0, state.cfg.maxBatch);
    const dropped = state.dropped;
    try {
      const headers = { "content-type": "application/json" };
      if (state.cfg.token) headers.authorization = `Bearer ${state.cfg.token}`;
      const res = await fetch(`${state.cfg.url}/v1/openclaw/events`, {
        method: "POST",
        headers,
        body: `{"plugin":${JSON.stringify({ version: VERSION, dropped })},"events":[${batch.join(",")}]}`,
        signal: AbortSignal.timeout(10000),
      });
      if (res.ok || (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429)) {
        // Accepted, or refused for good (a 4xx would be refused again): either way it is done.
        state.queue.splice(0, batch.length);
        state.dropped -= dropped;
        state.backoffMs = 0;
      } else {
        retryLater();
      }
      await res.arrayBuffer().catch(() => undefined);
    } catch {
      retryLater();
    } finally {
      state.sending = false;
    }
  }

  function retryLater() {
    // The sidecar is down or busy: keep the batch (the queue stays bounded) and back off.
    state.backoffMs = Math.min(Math.max(state.backoffMs * 2, 250), 5000);
    state.nextTryAt = Date.now() + state.backoffMs;
  }

  const timer = setInterval(() => {
    flush().catch(() => undefined);
  }, state.cfg.flushIntervalMs);
  if (typeof timer.unref === "function") timer.unref();

  return {
    state,
    configure(cfg) {
      state.cfg = defaults(cfg);
    },
    hook(name, event, ctx) {
      const extra = correlate(name, event, ctx);
      if (extra === null) return;
      push({
        kind: `hook:${name}`,
        ts: Date.now(),
        event: sanitizeEvent(name, event, state.cfg.captureContent),
        ctx: extra ? { ...sanitizeCtx(ctx), ...extra } : sanitizeCtx(ctx),
      });
    },
    diagnostic(event, meta) {
      push({
        kind: `tdiag:${event && event.type}`,
        ts: Date.now(),
        event,
        ctx: { trusted: !!(meta && meta.trusted) },
      });
    },
    flush,
    budget: createBudgetGate(() => state.cfg),
  };
}

/** The `before_agent_reply` claim: the refusal as the turn's reply when over budget, else decline. */
function budgetGateHandler(sender) {
  return async (_event, ctx) => {
    try {
      if (!sender.state.cfg.refuseOverBudget) return undefined;
      const verdict = await sender.budget.check(ctx && typeof ctx.agentId === "string" ? ctx.agentId : undefined);
      if (verdict && verdict.over) {
        return { handled: true, reply: { text: verdict.message }, reason: "openclaw-trace: budget exceeded" };
      }
    } catch {
      // fail open
    }
    return undefined;
  };
}

function register(api) {
  try {
    let sender = globalThis[STATE_KEY];
    if (sender) {
      sender.configure(api.pluginConfig);
    } else {
      sender = createSender(api.pluginConfig);
      globalThis[STATE_KEY] = sender;
      onInternalDiagnosticEvent(
        (event, meta) => {
          try {
            sender.diagnostic(event, meta);
          } catch {
            // never throw into the gateway
          }
        },
        { include: DIAGNOSTIC_TYPES },
      );
    }
    // Hooks belong to this registry, so they are registered with each api; the
    // same event seen twice is stored once by the sidecar (ids are OpenClaw's).
    const seenByHook = sender.seenEvents || (sender.seenEvents = new Map());
    for (const name of HOOKS) {
      if (!seenByHook.has(name)) seenByHook.set(name, new WeakSet());
      const seen = seenByHook.get(name);
      api.on(name, (event, ctx) => {
        try {
          if (event && typeof event === "object") {
            if (seen.has(event)) return undefined;
            seen.add(event);
          }
          sender.hook(name, event, ctx);
        } catch {
          // never throw into the gateway
        }
        return undefined;
      });
    }
    // Registered only when asked for, so the default costs a turn nothing.
    if (sender.state.cfg.refuseOverBudget) {
      api.on("before_agent_reply", budgetGateHandler(sender), { timeoutMs: MAX_BUDGET_CHECK_MS * 2 });
      api.logger?.info?.("openclaw-trace: refusing model calls while over budget (refuseOverBudget)");
    }
  } catch (err) {
    try {
      api.logger?.warn?.(`openclaw-trace plugin disabled: ${err && err.message}`);
    } catch {
      // ignore
    }
  }
}

export default {
  id: "openclaw-trace",
  name: "openclaw-trace",
  description: "Forwards model calls, tool calls, runs, usage and cost to openclaw-trace",
  register,
};
