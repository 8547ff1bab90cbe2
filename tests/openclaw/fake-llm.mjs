// A fake OpenAI-compatible LLM for the end-to-end test: streams SSE chat
// completions on loopback. What it answers depends on the user's text:
//   contains "TOOL"  -> first a tool call (ls), then, once a tool result is in
//                       the conversation, a final text answer;
//   contains "FAIL"  -> HTTP 400 (a client error OpenClaw does not retry);
//   contains "SPAWN" -> first a `sessions_spawn` tool call (a sub-agent with the task
//                       "SUBTASK: ..."), then, once its result is in, a final answer;
//   anything else    -> a short text answer.
// The model "fail-model" always answers HTTP 400 (a provider failing: OpenClaw falls back
// to the next model of the agent's chain). OpenClaw's heartbeat prompt gets the next of
// HEARTBEAT_REPLIES (comma-separated, cycling; default HEARTBEAT_OK).
// Every request is appended as one JSON line to REQUEST_LOG (with the
// traceparent header OpenClaw sent), and the port it listens on is printed as
// `listening <port>` on stdout.
import http from "node:http";
import fs from "node:fs";

const requestLog = process.env.REQUEST_LOG || "";
const port = Number(process.env.PORT || 0);
let counter = 0;

const USAGE = {
  text: { prompt_tokens: 123, completion_tokens: 17 },
  tool_call: { prompt_tokens: 200, completion_tokens: 9 },
  tool_answer: { prompt_tokens: 150, completion_tokens: 21 },
  heartbeat: { prompt_tokens: 90, completion_tokens: 3 },
  spawn_call: { prompt_tokens: 210, completion_tokens: 12 },
  spawn_answer: { prompt_tokens: 160, completion_tokens: 8 },
  subtask: { prompt_tokens: 70, completion_tokens: 5 },
};
const heartbeatReplies = (process.env.HEARTBEAT_REPLIES || "HEARTBEAT_OK").split(",");
let heartbeats = 0;

// OpenClaw adds its own context as extra user messages, so all user text counts.
function userText(messages) {
  return messages
    .filter((m) => m && m.role === "user")
    .map((m) => (typeof m.content === "string" ? m.content : Array.isArray(m.content) ? m.content.map((c) => c?.text || "").join(" ") : ""))
    .join("\n");
}

function chunk(id, model, delta, finish, usage) {
  const body = {
    id,
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: delta ? [{ index: 0, delta, finish_reason: finish }] : [],
  };
  if (usage) body.usage = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
  return `data: ${JSON.stringify(body)}\n\n`;
}

const server = http.createServer((req, res) => {
  let raw = "";
  req.on("data", (d) => (raw += d));
  req.on("end", () => {
    let body = {};
    try {
      body = JSON.parse(raw || "{}");
    } catch {
      res.writeHead(400).end();
      return;
    }
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const text = userText(messages);
    const hasToolResult = messages.some((m) => m && m.role === "tool");
    let behavior = "text";
    // OpenClaw's heartbeat prompt ("Follow the heartbeat monitor ..."): nothing to report.
    if (text.includes("heartbeat monitor")) behavior = "heartbeat";
    else if (body.model === "fail-model" || text.includes("FAIL")) behavior = "fail";
    else if (text.includes("SUBTASK")) behavior = "subtask";
    else if (text.includes("SPAWN")) behavior = hasToolResult ? "spawn_answer" : "spawn_call";
    else if (text.includes("TOOL")) behavior = hasToolResult ? "tool_answer" : "tool_call";
    const id = `chatcmpl-fake${String(++counter).padStart(4, "0")}`;
    if (requestLog) {
      fs.appendFileSync(
        requestLog,
        JSON.stringify({ id, path: req.url, behavior, model: body.model || null, usage: USAGE[behavior] || null,
          reply: behavior === "heartbeat" ? heartbeatReplies[heartbeats % heartbeatReplies.length] : null,
          tools: Array.isArray(body.tools) ? body.tools.map((t) => t?.function?.name || t?.name).slice(0, 80) : [], traceparent: req.headers["traceparent"] || null, stream: !!body.stream }) + "\n",
      );
    }
    if (behavior === "fail") {
      res.writeHead(400, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "fake bad request", type: "invalid_request_error", code: "fake_400" } }));
      return;
    }
    const model = body.model || "fake-model";
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    res.write(chunk(id, model, { role: "assistant", content: "" }, null));
    if (behavior === "tool_call") {
      res.write(
        chunk(id, model, {
          tool_calls: [{ index: 0, id: `call_${counter}`, type: "function", function: { name: "ls", arguments: "" } }],
        }, null),
      );
      res.write(chunk(id, model, { tool_calls: [{ index: 0, function: { arguments: '{"path":"."}' } }] }, null));
      res.write(chunk(id, model, {}, "tool_calls"));
    } else if (behavior === "spawn_call") {
      // Directly when the tool is offered, else through OpenClaw's tool search (`tool_call`).
      const task = { task: "SUBTASK: count to three", label: "counter" };
      const direct = Array.isArray(body.tools) && body.tools.some((t) => t?.function?.name === "sessions_spawn");
      const [name, args] = direct ? ["sessions_spawn", task] : ["tool_call", { id: "sessions_spawn", args: task }];
      res.write(
        chunk(id, model, {
          tool_calls: [{ index: 0, id: `call_${counter}`, type: "function", function: { name, arguments: JSON.stringify(args) } }],
        }, null),
      );
      res.write(chunk(id, model, {}, "tool_calls"));
    } else {
      const answer =
        behavior === "tool_answer"
          ? "The folder holds a few files."
          : behavior === "heartbeat"
            ? heartbeatReplies[heartbeats++ % heartbeatReplies.length]
            : behavior === "subtask"
              ? "One, two, three."
              : behavior === "spawn_answer"
                ? "The sub-agent is on it."
                : "Hello from the fake LLM.";
      for (const part of answer.split(/(?<= )/)) res.write(chunk(id, model, { content: part }, null));
      res.write(chunk(id, model, {}, "stop"));
    }
    res.write(chunk(id, model, null, null, USAGE[behavior]));
    res.end("data: [DONE]\n\n");
  });
});

server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
