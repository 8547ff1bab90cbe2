// The plugin's promises: harmless (never throws, never waits, bounded), registers once,
// keeps content out unless asked, ties messages to their model call, resends.
import test from "node:test";
import assert from "node:assert/strict";
import http from "node:http";

const plugin = (await import("../index.js")).default;
const STATE = Symbol.for("openclaw-trace.plugin.state");

function fakeApi(config) {
  const handlers = {};
  return {
    pluginConfig: config,
    on(name, fn) {
      (handlers[name] ||= []).push(fn);
    },
    handlers,
    fire(name, event, ctx) {
      for (const fn of handlers[name] || []) assert.equal(fn(event, ctx), undefined);
    },
  };
}

async function server(handler) {
  const received = [];
  const srv = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      received.push({ headers: req.headers, body: JSON.parse(body) });
      const status = handler ? handler(received.length) : 202;
      res.writeHead(status).end("{}");
    });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { srv, received, url: `http://127.0.0.1:${srv.address().port}` };
}

function reset() {
  delete globalThis[STATE];
  globalThis.__fakeDiagnosticListeners.length = 0;
}

const trace = { traceId: "aaba956574194340ee2c2c3950ac5107", spanId: "5f3545923d8b3dc7", parentSpanId: "44092c3cc721315b" };

test("registers the diagnostic listener once, hooks per registry, and stores a shared event once", async () => {
  reset();
  const a = fakeApi({ url: "http://127.0.0.1:1", flushIntervalMs: 60000 });
  const b = fakeApi({ url: "http://127.0.0.1:1", flushIntervalMs: 60000 });
  plugin.register(a);
  plugin.register(b);
  assert.equal(globalThis.__fakeDiagnosticListeners.length, 1);
  assert.ok(a.handlers.model_call_started && b.handlers.model_call_started);
  const event = { runId: "r", callId: "r:model:1", provider: "p", model: "m" };
  a.fire("model_call_started", event, { trace, sessionKey: "s" });
  b.fire("model_call_started", event, { trace, sessionKey: "s" });
  const sender = globalThis[STATE];
  assert.equal(sender.state.queue.length, 1);
  globalThis.__fakeDiagnosticListeners[0].listener({ type: "model.usage", costUsd: 1 }, { trusted: true });
  assert.equal(sender.state.queue.length, 2);
  assert.ok(globalThis.__fakeDiagnosticListeners[0].filter.include.includes("model.call.completed"));
});

test("keeps content out by default and ties the transcript message to its model call", async () => {
  reset();
  const api = fakeApi({ flushIntervalMs: 60000 });
  plugin.register(api);
  api.fire("llm_input", { runId: "r", prompt: "secret prompt", systemPrompt: "sys", historyMessages: [1, 2] }, { trace });
  api.fire("model_call_ended", { runId: "r", callId: "r:model:1", durationMs: 5 }, { trace, sessionKey: "s" });
  api.fire("before_message_write", { message: { role: "user", content: "secret" } }, { sessionKey: "s" });
  api.fire(
    "before_message_write",
    { message: { role: "assistant", content: [{ type: "text", text: "secret reply" }], usage: { input: 3 }, responseId: "x", timestamp: 7 } },
    { sessionKey: "s" },
  );
  const items = globalThis[STATE].state.queue.map((t) => JSON.parse(t));
  const text = JSON.stringify(items);
  assert.ok(!text.includes("secret"), text);
  assert.equal(items[0].event.promptChars, "secret prompt".length);
  assert.equal(items.length, 3, "user messages are not sent");
  const msg = items[2];
  assert.equal(msg.event.message.usage.input, 3);
  assert.deepEqual(msg.ctx.call.trace, trace);
  assert.equal(msg.ctx.call.callId, "r:model:1");
});

test("names silent replies and hashes tool arguments without sending content", async () => {
  reset();
  const api = fakeApi({ flushIntervalMs: 60000 });
  plugin.register(api);
  api.fire("llm_output", { runId: "h", assistantTexts: ["  HEARTBEAT_OK "] }, { trace, trigger: "heartbeat" });
  api.fire("llm_output", { runId: "n", assistantTexts: ["secret", "NO_REPLY"] }, { trace });
  api.fire("llm_output", { runId: "t", assistantTexts: ["a secret answer"] }, { trace });
  api.fire("before_tool_call", { toolName: "ls", toolCallId: "c1", params: { path: "secret/dir" } }, { trace });
  api.fire("before_tool_call", { toolName: "ls", toolCallId: "c2", params: { path: "secret/dir" } }, { trace });
  api.fire("subagent_spawned", { runId: "child", childSessionKey: "agent:main:subagent:u1", agentId: "main" }, { requesterSessionKey: "agent:main:main" });
  api.fire("after_compaction", { messageCount: 4, compactedCount: 1 }, { sessionKey: "agent:main:main", sessionId: "s1" });
  const items = globalThis[STATE].state.queue.map((t) => JSON.parse(t));
  const text = JSON.stringify(items);
  assert.ok(!text.includes("secret"), text);
  assert.equal(items[0].event.silentReply, "HEARTBEAT_OK");
  assert.equal(items[1].event.silentReply, "NO_REPLY");
  assert.equal(items[2].event.silentReply, undefined);
  assert.match(items[3].event.paramsHash, /^[0-9a-f]{16}$/);
  assert.equal(items[3].event.paramsHash, items[4].event.paramsHash);
  assert.equal(items[5].kind, "hook:subagent_spawned");
  assert.equal(items[5].event.childSessionKey, "agent:main:subagent:u1");
  assert.equal(items[6].kind, "hook:after_compaction");
});

test("never throws, stays bounded and counts what it drops", async () => {
  reset();
  const api = fakeApi({ url: "http://127.0.0.1:1", maxQueue: 10, flushIntervalMs: 60000 });
  plugin.register(api);
  const circular = {};
  circular.self = circular;
  api.fire("agent_end", circular, undefined);
  api.fire("agent_end", undefined, null);
  api.fire("session_start", 42, "nonsense");
  for (let i = 0; i < 30; i++) api.fire("session_end", { sessionId: `s${i}` }, {});
  const st = globalThis[STATE].state;
  assert.equal(st.queue.length, 10);
  assert.ok(st.dropped >= 20);
});

test("sends batches with the token, keeps them while the sidecar is down, then resends", async () => {
  reset();
  let down = true;
  const { srv, received, url } = await server(() => (down ? 503 : 202));
  const api = fakeApi({ url, token: "t0k", flushIntervalMs: 60000 });
  plugin.register(api);
  const sender = globalThis[STATE];
  api.fire("session_start", { sessionId: "a" }, {});
  await sender.flush();
  assert.equal(received.length, 1);
  assert.equal(sender.state.queue.length, 1, "kept after a 503");
  down = false;
  sender.state.nextTryAt = 0;
  await sender.flush();
  assert.equal(received.length, 2);
  assert.equal(sender.state.queue.length, 0);
  const last = received[1];
  assert.equal(last.headers.authorization, "Bearer t0k");
  assert.equal(last.body.events[0].kind, "hook:session_start");
  assert.equal(last.body.plugin.dropped, 0);
  srv.close();
});

// A fake sidecar answering GET /v1/budget; `answer(agent)` returns the JSON, or null to hang.
async function budgetServer(answer) {
  const asked = [];
  const srv = http.createServer((req, res) => {
    const u = new URL(req.url, "http://x");
    asked.push({ path: u.pathname, agent: u.searchParams.get("agent"), auth: req.headers.authorization });
    const body = answer(u.searchParams.get("agent"));
    if (body === null) return; // never answers
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { srv, asked, url: `http://127.0.0.1:${srv.address().port}` };
}

const OVER = {
  over: true,
  allowed: false,
  budgets: [{ budget: "agent:main/day/tokens", unit: "tokens", limit: 100, spent: 140, over: true, period_end: "2026-11-22T00:00:00Z" }],
};

test("the budget gate is off by default", () => {
  reset();
  const api = fakeApi({ flushIntervalMs: 60000 });
  plugin.register(api);
  assert.equal(api.handlers.before_agent_reply, undefined);
});

test("refuses a run while the sidecar says the agent is over budget, with a clear message", async () => {
  reset();
  let over = true;
  const { srv, asked, url } = await budgetServer(() => (over ? OVER : { over: false, allowed: true, budgets: [] }));
  const api = fakeApi({ url, token: "t0k", flushIntervalMs: 60000, refuseOverBudget: true, budgetCacheMs: 0 });
  plugin.register(api);
  const gate = api.handlers.before_agent_reply[0];
  const verdict = await gate({ cleanedBody: "hi" }, { agentId: "main" });
  assert.equal(verdict.handled, true);
  assert.match(verdict.reply.text, /Budget exceeded/);
  assert.match(verdict.reply.text, /agent:main\/day\/tokens spent 140 tokens of 100 tokens/);
  assert.deepEqual(asked[0], { path: "/v1/budget", agent: "main", auth: "Bearer t0k" });
  over = false;
  assert.equal(await gate({ cleanedBody: "hi" }, { agentId: "main" }), undefined, "passes once under");
  srv.close();
});

test("answers from its cache, one request at a time", async () => {
  reset();
  const { srv, asked, url } = await budgetServer(() => OVER);
  const api = fakeApi({ url, flushIntervalMs: 60000, refuseOverBudget: true, budgetCacheMs: 60000 });
  plugin.register(api);
  const gate = api.handlers.before_agent_reply[0];
  const verdicts = await Promise.all([1, 2, 3].map(() => gate({}, { agentId: "main" })));
  assert.ok(verdicts.every((v) => v.handled === true));
  await gate({}, { agentId: "main" });
  assert.equal(asked.length, 1);
  await gate({}, { agentId: "other" });
  assert.equal(asked.length, 2, "each agent has its own answer");
  srv.close();
});

test("fails open, quickly, when the sidecar is down, hangs or answers nonsense", async () => {
  reset();
  const down = fakeApi({ url: "http://127.0.0.1:1", flushIntervalMs: 60000, refuseOverBudget: true });
  plugin.register(down);
  assert.equal(await down.handlers.before_agent_reply[0]({}, { agentId: "main" }), undefined);

  reset();
  const hang = await budgetServer(() => null);
  const api = fakeApi({ url: hang.url, flushIntervalMs: 60000, refuseOverBudget: true, budgetCheckTimeoutMs: 100 });
  plugin.register(api);
  const started = Date.now();
  assert.equal(await api.handlers.before_agent_reply[0]({}, { agentId: "main" }), undefined);
  assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
  hang.srv.closeAllConnections();
  hang.srv.close();

  reset();
  const odd = await budgetServer(() => "over");
  const api2 = fakeApi({ url: odd.url, flushIntervalMs: 60000, refuseOverBudget: true });
  plugin.register(api2);
  assert.equal(await api2.handlers.before_agent_reply[0](undefined, undefined), undefined);
  odd.srv.close();
});
