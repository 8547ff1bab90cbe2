//! OpenClaw: what the plugin in `integrations/openclaw/` sends to
//! `POST /v1/openclaw/events`, mapped into spans and events.
//!
//! Each item is `{kind, ts, event, ctx}`: `hook:<name>` for a typed plugin hook,
//! `tdiag:<type>` for a trusted diagnostic event. Ids are OpenClaw's own trace
//! context (the `traceparent` it sends to the LLM), so a trace here is the trace
//! OpenClaw's gateway log and the LLM saw:
//!
//! ```text
//! invoke_agent <agent>        agent_run  (OpenClaw's root span of the request)
//! └ openclaw.harness <id>     other      (one attempt of the run)
//!   └ openclaw.run            other
//!     ├ chat <model>          llm_call   (span id = the traceparent's parent id)
//!     ├ execute_tool <name>   tool_call
//!     └ chat <model>          llm_call
//! ```
//!
//! One call is described by several items (start hook, end hook, diagnostic event
//! with usage and cost, the transcript message); each becomes a span piece that
//! the store merges (`store::merge`), so duplicates and overlaps are stored once.

pub mod ids;

use serde_json::{Map, Value};

use crate::model::{
    CappedText, CostSource, Event, EventType, Record, Span, SpanId, SpanKind, SpanMerge,
    StatusCode, TraceId,
};
use crate::sources::ingest::{FieldError, IngestConfig, split_items};

use ids::{hash_span_id, hash_trace_id, stable_uid};

/// What a batch turned into.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Record>,
    /// Items of kinds this version does not map (kept out of the store).
    pub ignored: usize,
    /// Events the plugin dropped because its queue was full, as it reported.
    pub dropped_by_plugin: u64,
}

/// One item of a batch, read with errors that name the item and field.
struct Item<'a> {
    index: Option<usize>,
    kind: &'a str,
    ts_ms: Option<f64>,
    event: &'a Map<String, Value>,
    ctx: &'a Map<String, Value>,
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn field_err(index: Option<usize>, field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        item: index,
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// Parses a whole batch; all or nothing. The body is `{"plugin":{..},"events":[..]}`,
/// a JSON array of items, or NDJSON (one item per line).
pub fn parse_batch(body: &[u8], cfg: &IngestConfig) -> Result<Batch, FieldError> {
    let mut items = split_items(body)?;
    let mut batch = Batch::default();
    if items.len() == 1 && items[0].contains_key("events") {
        let envelope = items.remove(0);
        batch.dropped_by_plugin = envelope
            .get("plugin")
            .and_then(|p| p.get("dropped"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        items = match envelope.get("events") {
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Object(m) => Ok(m.clone()),
                    _ => Err(field_err(Some(i), "events", "expected a JSON object")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(field_err(None, "events", "expected an array of events")),
        };
    }
    let many = items.len() > 1;
    for (i, m) in items.iter().enumerate() {
        let index = many.then_some(i);
        let kind = match m.get("kind") {
            Some(Value::String(k)) if !k.is_empty() => k.as_str(),
            _ => {
                return Err(field_err(
                    index,
                    "kind",
                    "required: a string like hook:model_call_ended",
                ));
            }
        };
        let obj = |name: &str| -> Result<&Map<String, Value>, FieldError> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(&EMPTY),
                Some(Value::Object(o)) => Ok(o),
                Some(_) => Err(field_err(index, name, "expected an object")),
            }
        };
        let ts_ms = match m.get("ts") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| field_err(index, "ts", "expected unix milliseconds"))?,
            ),
        };
        let item = Item {
            index,
            kind,
            ts_ms,
            event: obj("event")?,
            ctx: obj("ctx")?,
        };
        if !map_item(&item, cfg, &mut batch.records)? {
            batch.ignored += 1;
        }
    }
    Ok(batch)
}

// ---- small readers over JSON maps ----

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str).filter(|v| !v.is_empty())
}

fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64).filter(|v| v.is_finite())
}

fn i(m: &Map<String, Value>, k: &str) -> Option<i64> {
    f(m, k).map(|v| v as i64)
}

fn o<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Map<String, Value>> {
    m.get(k).and_then(Value::as_object)
}

/// Whole milliseconds convert exactly (a plain `ms * 1e6` loses nanoseconds at this size).
fn ms_to_ns(ms: f64) -> i64 {
    // Saturating: a time far outside i64's nanoseconds (found by fuzzing) must not overflow.
    (ms.trunc() as i64)
        .saturating_mul(1_000_000)
        .saturating_add((ms.fract() * 1e6).round() as i64)
}

/// A trace context `{traceId, spanId, parentSpanId}` with valid ids.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ctx {
    trace: TraceId,
    span: Option<SpanId>,
    parent: Option<SpanId>,
}

fn trace_ctx(
    m: Option<&Map<String, Value>>,
    index: Option<usize>,
    field: &str,
) -> Result<Option<Ctx>, FieldError> {
    let Some(m) = m else { return Ok(None) };
    let Some(t) = s(m, "traceId") else {
        return Ok(None);
    };
    let trace = TraceId::parse_hex(t)
        .filter(|t| !t.is_zero())
        .ok_or_else(|| field_err(index, &format!("{field}.traceId"), "expected 32 hex digits"))?;
    let span_of = |k: &str| -> Result<Option<SpanId>, FieldError> {
        match s(m, k) {
            None => Ok(None),
            Some(v) => SpanId::parse_hex(v)
                .filter(|s| !s.is_zero())
                .map(Some)
                .ok_or_else(|| field_err(index, &format!("{field}.{k}"), "expected 16 hex digits")),
        }
    };
    Ok(Some(Ctx {
        trace,
        span: span_of("spanId")?,
        parent: span_of("parentSpanId")?,
    }))
}

impl Item<'_> {
    /// When it happened: the emitter's own time when it has one, else when the plugin saw it.
    fn time_ns(&self) -> i64 {
        f(self.event, "ts")
            .or(self.ts_ms)
            .map(ms_to_ns)
            .unwrap_or_else(crate::model::now_ns)
    }
    fn run_id(&self) -> Option<&str> {
        s(self.event, "runId").or_else(|| s(self.ctx, "runId"))
    }
    fn session_id(&self) -> Option<&str> {
        s(self.event, "sessionId").or_else(|| s(self.ctx, "sessionId"))
    }
    fn session_key(&self) -> Option<&str> {
        s(self.event, "sessionKey").or_else(|| s(self.ctx, "sessionKey"))
    }
    /// The agent: explicit, or from a session key `agent:<id>:...`.
    fn agent_id(&self) -> Option<String> {
        s(self.event, "agentId")
            .or_else(|| s(self.ctx, "agentId"))
            .map(str::to_string)
            .or_else(|| {
                self.session_key()
                    .and_then(|k| k.strip_prefix("agent:"))
                    .and_then(|k| k.split(':').next())
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
            })
    }
    /// The item's trace context: the event's own, else the hook context's.
    fn trace(&self) -> Result<Option<Ctx>, FieldError> {
        if let Some(c) = trace_ctx(o(self.event, "trace"), self.index, "event.trace")? {
            return Ok(Some(c));
        }
        trace_ctx(o(self.ctx, "trace"), self.index, "ctx.trace")
    }
    /// A trace id even without a trace context: made from the run id.
    fn trace_or_run(&self) -> Result<Option<TraceId>, FieldError> {
        Ok(match self.trace()? {
            Some(c) => Some(c.trace),
            None => self.run_id().map(|r| hash_trace_id(&["openclaw-run", r])),
        })
    }
    fn base(&self, span: &mut Span) {
        span.session_id = self.session_id().map(str::to_string);
        span.agent_id = self.agent_id();
        span.source = "openclaw";
        let mut put = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                span.attributes.insert(k.into(), v.into());
            }
        };
        put("openclaw.run_id", self.run_id());
        put("openclaw.session_key", self.session_key());
        put(
            "openclaw.channel",
            s(self.event, "channel").or_else(|| s(self.ctx, "channel")),
        );
        put(
            "openclaw.trigger",
            s(self.event, "trigger").or_else(|| s(self.ctx, "trigger")),
        );
    }
    fn event(&self, ty: EventType, name: &str, uid_parts: &[&str]) -> Event {
        let mut e = Event::new(ty, name.to_string(), self.time_ns());
        e.uid = stable_uid(uid_parts);
        e.source = "openclaw";
        e.session_id = self.session_id().map(str::to_string);
        e.agent_id = self.agent_id();
        if let Some(r) = self.run_id() {
            e.attributes.insert("openclaw.run_id".into(), r.into());
        }
        e
    }
}

fn piece(trace: TraceId, span: SpanId, name: String, kind: SpanKind, start_ns: i64) -> Span {
    let mut p = Span::new(trace, span, name, kind, start_ns);
    p.merge = Some(SpanMerge::default());
    p
}

fn push_span(out: &mut Vec<Record>, s: Span) {
    out.push(Record::Span(Box::new(s)));
}

fn text(v: Option<&Value>, cfg: &IngestConfig) -> Option<CappedText> {
    let t = match v? {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(CappedText::new(t, cfg.text_limit()))
}

/// The input tokens as the GenAI conventions count them: the cached ones included.
/// OpenClaw (its pi-ai usage) reports `input` without the tokens read from or written to
/// the cache, and `totalTokens` as the sum of all four; a usage whose total leaves the
/// cache out already counted it in `input`. Taken as reported, a call with 1,000 new and
/// 900 cached tokens would look like 90 % cache hits instead of 46 %.
fn prompt_tokens(
    input: i64,
    output: Option<i64>,
    read: Option<i64>,
    write: Option<i64>,
    total: Option<i64>,
) -> i64 {
    let cached = read.unwrap_or(0).saturating_add(write.unwrap_or(0));
    let included = total.is_some_and(|t| {
        cached > 0
            && t == input.saturating_add(output.unwrap_or(0))
            && t != input
                .saturating_add(output.unwrap_or(0))
                .saturating_add(cached)
    });
    if included {
        input
    } else {
        input.saturating_add(cached)
    }
}

/// OpenClaw's usage object onto a span: tokens and its own cost.
fn apply_usage(span: &mut Span, usage: &Map<String, Value>) {
    let read = i(usage, "cacheRead");
    let write = i(usage, "cacheWrite");
    let output = i(usage, "output");
    let total = i(usage, "totalTokens").or_else(|| i(usage, "total"));
    span.input_tokens = i(usage, "input")
        .map(|input| prompt_tokens(input, output, read, write, total))
        .or(span.input_tokens);
    span.output_tokens = output.or(span.output_tokens);
    span.cache_read_tokens = read.or(span.cache_read_tokens);
    span.cache_write_tokens = write.or(span.cache_write_tokens);
    span.reasoning_tokens = i(usage, "reasoningTokens").or(span.reasoning_tokens);
    span.total_tokens = total.or(span.total_tokens);
    if let Some(cost) = o(usage, "cost").and_then(|c| f(c, "total")) {
        span.cost_usd = Some(cost);
        span.cost_source = Some(CostSource::Reported);
    }
}

/// Maps one item; false when its kind is not one this version stores.
fn map_item(it: &Item, cfg: &IngestConfig, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let (source, name) = it.kind.split_once(':').unwrap_or(("", it.kind));
    let stored = match (source, name) {
        ("hook", "model_call_started") | ("tdiag", "model.call.started") => {
            model_call(it, false, out)?
        }
        ("hook", "model_call_ended") | ("tdiag", "model.call.completed" | "model.call.error") => {
            model_call(it, true, out)?
        }
        ("hook", "before_message_write") => assistant_message(it, out)?,
        ("hook", "llm_input" | "llm_output" | "agent_end") => run_hook(it, name, cfg, out)?,
        ("tdiag", "harness.run.started" | "harness.run.completed" | "harness.run.error") => {
            harness_event(it, out)?
        }
        ("tdiag", "run.started" | "run.completed") => run_event(it, out)?,
        ("tdiag", "model.usage") => model_usage(it, out)?,
        ("hook", "before_tool_call" | "after_tool_call")
        | (
            "tdiag",
            "tool.execution.started"
            | "tool.execution.completed"
            | "tool.execution.error"
            | "tool.execution.blocked",
        ) => tool_event(it, name, cfg, out)?,
        ("hook", "subagent_spawned" | "subagent_ended") => subagent_event(it, name, out)?,
        ("hook", "after_compaction") => compaction_event(it, out)?,
        ("hook", "session_start" | "session_end") => {
            let sid = it.session_id().unwrap_or("");
            let ts = format!("{}", it.time_ns());
            let mut e = it.event(
                EventType::Custom,
                &format!("openclaw.{name}"),
                &["openclaw-session", name, sid, &ts],
            );
            e.category = Some("session".into());
            out.push(Record::Event(Box::new(e)));
            true
        }
        _ => false,
    };
    Ok(stored)
}

fn model_call(it: &Item, ended: bool, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let ev = it.event;
    let ctx = it.trace()?;
    let Some(trace) = it.trace_or_run()? else {
        return Ok(false);
    };
    let call_id = s(ev, "callId");
    let span_id = match (ctx.and_then(|c| c.span), call_id) {
        (Some(s), _) => s,
        (None, Some(c)) => hash_span_id(&["openclaw-call", c]),
        (None, None) => return Ok(false),
    };
    let model = s(ev, "model").unwrap_or("unknown");
    let time = it.time_ns();
    let duration_ns = f(ev, "durationMs").map(ms_to_ns);
    let start = match (ended, duration_ns) {
        (true, Some(d)) => time - d,
        _ => time,
    };
    let mut p = piece(
        trace,
        span_id,
        format!("chat {model}"),
        SpanKind::LlmCall,
        start,
    );
    p.parent_span_id = ctx.and_then(|c| c.parent);
    it.base(&mut p);
    p.operation = Some("chat".into());
    p.provider = s(ev, "provider").map(str::to_string);
    p.request_model = Some(model.to_string());
    let a = &mut p.attributes;
    a.insert("gen_ai.operation.name".into(), "chat".into());
    if let Some(pr) = s(ev, "provider") {
        a.insert("gen_ai.provider.name".into(), pr.into());
    }
    for (k, attr) in [
        ("callId", "openclaw.call_id"),
        ("api", "openclaw.api"),
        ("transport", "openclaw.transport"),
        ("upstreamRequestIdHash", "openclaw.upstream_request_id_hash"),
        ("outcome", "openclaw.outcome"),
        ("failureKind", "openclaw.failure_kind"),
    ] {
        if let Some(v) = s(ev, k) {
            a.insert(attr.into(), v.into());
        }
    }
    for (k, attr) in [
        ("timeToFirstByteMs", "openclaw.time_to_first_byte_ms"),
        ("requestPayloadBytes", "openclaw.request_bytes"),
        ("responseStreamBytes", "openclaw.response_bytes"),
        ("contextTokenBudget", "openclaw.context_token_budget"),
    ] {
        if let Some(v) = ev.get(k).filter(|v| v.is_number()) {
            a.insert(attr.into(), v.clone());
        }
    }
    if let Some(ps) = o(ev, "promptStats") {
        for (k, v) in ps {
            a.insert(format!("openclaw.prompt.{k}"), v.clone());
        }
    }
    if ended {
        p.end_ns = Some(time);
        let failed = it.kind.ends_with("model.call.error")
            || matches!(s(ev, "outcome"), Some("error" | "aborted" | "timed_out"));
        if failed {
            p.status = StatusCode::Error;
            p.error_type = s(ev, "errorCategory")
                .or(s(ev, "failureKind"))
                .or(s(ev, "outcome"))
                .map(str::to_string);
        } else {
            p.status = StatusCode::Ok;
        }
        if let Some(u) = o(ev, "usage") {
            apply_usage(&mut p, u);
        }
    }
    push_span(out, p);
    Ok(true)
}

/// The key naming one assistant message, whoever saw it (plugin or transcript).
pub fn message_key(run_id: &str, message_ts_ms: i64) -> String {
    format!("openclaw:{run_id}:{message_ts_ms}")
}

/// What an assistant message (as written to the transcript) says about its model call.
pub fn assistant_message_piece(msg: &Map<String, Value>, span: &mut Span) {
    span.provider = s(msg, "provider")
        .map(str::to_string)
        .or(span.provider.take());
    if let Some(m) = s(msg, "model") {
        span.response_model = Some(m.to_string());
        span.request_model.get_or_insert_with(|| m.to_string());
    }
    if let Some(u) = o(msg, "usage") {
        apply_usage(span, u);
    }
    if let Some(r) = s(msg, "stopReason") {
        span.finish_reasons = vec![r.to_string()];
        // A written answer is a known outcome (an error status from another piece still wins).
        span.status = StatusCode::Ok;
        if r == "error" {
            span.status = StatusCode::Error;
            span.status_message = s(msg, "errorMessage").map(str::to_string);
            span.error_type = s(msg, "errorType")
                .or(s(msg, "errorCode"))
                .map(str::to_string);
        }
    }
    if let Some(r) = s(msg, "responseId") {
        span.attributes
            .insert("gen_ai.response.id".into(), r.into());
    }
    if let Some(c) = s(msg, "errorCode") {
        span.attributes
            .insert("openclaw.error_code".into(), c.into());
    }
}

/// An error event for an assistant message that ended with `stopReason: "error"`.
pub fn assistant_error_event(
    msg: &Map<String, Value>,
    run_or_session: &str,
    time_ns: i64,
) -> Option<Event> {
    if s(msg, "stopReason") != Some("error") {
        return None;
    }
    let ts = i(msg, "timestamp").unwrap_or(time_ns / 1_000_000);
    let name = s(msg, "errorType").unwrap_or("provider_error");
    let mut e = Event::new(EventType::Error, name.to_string(), time_ns);
    e.uid = stable_uid(&["openclaw-llm-error", run_or_session, &ts.to_string()]);
    e.message = Some(
        s(msg, "errorMessage")
            .unwrap_or("the model call failed")
            .to_string(),
    );
    e.category = Some("llm".into());
    e.source = "openclaw";
    for (k, attr) in [
        ("errorCode", "openclaw.error_code"),
        ("provider", "gen_ai.provider.name"),
        ("model", "gen_ai.request.model"),
    ] {
        if let Some(v) = s(msg, k) {
            e.attributes.insert(attr.into(), v.into());
        }
    }
    Some(e)
}

/// `before_message_write` for an assistant message, tied by the plugin to its model call.
fn assistant_message(it: &Item, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let Some(msg) = o(it.event, "message") else {
        return Ok(false);
    };
    if s(msg, "role") != Some("assistant") {
        return Ok(false);
    }
    let Some(call) = o(it.ctx, "call") else {
        return Ok(false);
    };
    let Some(ctx) = trace_ctx(o(call, "trace"), it.index, "ctx.call.trace")? else {
        return Ok(false);
    };
    let Some(span_id) = ctx.span else {
        return Ok(false);
    };
    let run_id = s(call, "runId");
    let msg_ts = i(msg, "timestamp");
    let start = msg_ts
        .map(|t| t.saturating_mul(1_000_000))
        .unwrap_or_else(|| it.time_ns());
    let model = s(msg, "model").unwrap_or("unknown");
    let mut p = piece(
        ctx.trace,
        span_id,
        format!("chat {model}"),
        SpanKind::LlmCall,
        start,
    );
    p.parent_span_id = ctx.parent;
    p.session_id = s(call, "sessionId").map(str::to_string);
    p.agent_id = it.agent_id();
    p.source = "openclaw";
    assistant_message_piece(msg, &mut p);
    if let (Some(r), Some(t)) = (run_id, msg_ts) {
        p.merge = Some(SpanMerge {
            key: Some(message_key(r, t)),
            provisional: false,
        });
        p.attributes.insert("openclaw.run_id".into(), r.into());
    }
    if let Some(c) = s(call, "callId") {
        p.attributes.insert("openclaw.call_id".into(), c.into());
    }
    if let Some(mut e) = assistant_error_event(msg, run_id.unwrap_or(""), it.time_ns()) {
        e.trace_id = Some(ctx.trace);
        e.span_id = Some(span_id);
        e.session_id = p.session_id.clone();
        e.agent_id = p.agent_id.clone();
        if let Some(r) = run_id {
            e.attributes.insert("openclaw.run_id".into(), r.into());
        }
        out.push(Record::Event(Box::new(e)));
    }
    push_span(out, p);
    Ok(true)
}

/// The root span (OpenClaw's request span) of a run.
fn root_piece(it: &Item, trace: TraceId, root: SpanId, start_ns: i64) -> Span {
    let agent = it.agent_id().unwrap_or_else(|| "openclaw".into());
    let mut p = piece(
        trace,
        root,
        format!("invoke_agent {agent}"),
        SpanKind::AgentRun,
        start_ns,
    );
    it.base(&mut p);
    p.operation = Some("invoke_agent".into());
    p.attributes
        .insert("gen_ai.operation.name".into(), "invoke_agent".into());
    p.attributes
        .insert("gen_ai.agent.name".into(), agent.clone().into());
    p
}

/// One attempt of the run (the span hooks such as `agent_end` run in).
/// Pushes an attempt's span and what it says of its run's root span.
fn push_attempt(
    it: &Item,
    ctx: &Ctx,
    attempt: Span,
    start: i64,
    failed: bool,
    out: &mut Vec<Record>,
) {
    let end = attempt.end_ns;
    let reply = attempt.attributes.get(REPLY_TOKEN).cloned();
    push_span(out, attempt);
    if let Some(root) = ctx.parent {
        let mut r = root_piece(it, ctx.trace, root, start);
        r.end_ns = end;
        if let Some(t) = reply {
            r.attributes.insert(REPLY_TOKEN.into(), t);
        }
        // A finished attempt finishes the run as far as it knows; an error anywhere wins.
        if failed {
            r.status = StatusCode::Error;
        } else if end.is_some() {
            r.status = StatusCode::Ok;
        }
        push_span(out, r);
    }
}

fn harness_piece(it: &Item, ctx: &Ctx, span: SpanId, start_ns: i64) -> Span {
    let harness = s(it.event, "harnessId").unwrap_or("openclaw");
    let mut p = piece(
        ctx.trace,
        span,
        format!("openclaw.harness {harness}"),
        SpanKind::Other,
        start_ns,
    );
    p.parent_span_id = ctx.parent;
    it.base(&mut p);
    p
}

fn run_hook(
    it: &Item,
    name: &str,
    cfg: &IngestConfig,
    out: &mut Vec<Record>,
) -> Result<bool, FieldError> {
    let Some(ctx) = it.trace()? else {
        return Ok(false);
    };
    let Some(span) = ctx.span else {
        return Ok(false);
    };
    let ev = it.event;
    let time = it.time_ns();
    let duration = f(ev, "durationMs").map(ms_to_ns);
    let start = match (name, duration) {
        ("agent_end", Some(d)) => time - d,
        _ => time,
    };
    let mut h = harness_piece(it, &ctx, span, start);
    let mut failed = false;
    match name {
        "llm_input" => h.input = text(ev.get("prompt"), cfg),
        "llm_output" => {
            h.output = text(ev.get("assistantTexts"), cfg);
            // HEARTBEAT_OK / NO_REPLY: the plugin names the silent replies even
            // without content capture; with content, the text itself tells.
            let token = s(ev, "silentReply")
                .map(str::to_string)
                .or_else(|| reply_token(ev.get("assistantTexts")));
            if let Some(t) = token {
                h.attributes.insert(REPLY_TOKEN.into(), t.into());
            }
            if let Some(u) = o(ev, "usage") {
                for (k, v) in u {
                    h.attributes
                        .insert(format!("openclaw.run_usage.{k}"), v.clone());
                }
            }
            if let Some(last) = o(ev, "lastAssistant") {
                if let Some(r) = s(last, "stopReason") {
                    h.finish_reasons = vec![r.to_string()];
                }
                let run = it.run_id().unwrap_or("");
                if let Some(mut e) = assistant_error_event(last, run, time) {
                    failed = true;
                    e.trace_id = Some(ctx.trace);
                    e.span_id = Some(span);
                    e.session_id = it.session_id().map(str::to_string);
                    e.agent_id = it.agent_id();
                    e.attributes.insert("openclaw.run_id".into(), run.into());
                    h.status_message = e.message.clone();
                    out.push(Record::Event(Box::new(e)));
                }
            }
        }
        "agent_end" => {
            h.end_ns = Some(time);
            if ev.get("success") == Some(&Value::Bool(false)) {
                failed = true;
                h.status_message = s(ev, "error").map(str::to_string);
            }
        }
        _ => {}
    }
    if failed {
        h.status = StatusCode::Error;
    }
    push_attempt(it, &ctx, h, start, failed, out);
    Ok(true)
}

fn harness_event(it: &Item, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let Some(ctx) = it.trace()? else {
        return Ok(false);
    };
    let Some(span) = ctx.span else {
        return Ok(false);
    };
    let ev = it.event;
    let time = it.time_ns();
    let done = !it.kind.ends_with(".started");
    let start = match (done, f(ev, "durationMs")) {
        (true, Some(d)) => time.saturating_sub(ms_to_ns(d)),
        _ => time,
    };
    let mut h = harness_piece(it, &ctx, span, start);
    let failed = it.kind.ends_with(".error")
        || matches!(s(ev, "outcome"), Some("error" | "timed_out" | "aborted"));
    if done {
        h.end_ns = Some(time);
        h.status = if failed {
            StatusCode::Error
        } else {
            StatusCode::Ok
        };
        if let Some(o) = s(ev, "outcome") {
            h.attributes.insert("openclaw.outcome".into(), o.into());
        }
    }
    if it.kind.ends_with(".error") {
        let sp = span.to_hex();
        let mut e = it.event(
            EventType::Error,
            s(ev, "errorCategory").unwrap_or("harness_error"),
            &["openclaw-harness-error", &ctx.trace.to_hex(), &sp],
        );
        e.message = Some(format!(
            "OpenClaw run failed in phase {}",
            s(ev, "phase").unwrap_or("unknown")
        ));
        e.category = Some("run".into());
        e.trace_id = Some(ctx.trace);
        e.span_id = Some(span);
        out.push(Record::Event(Box::new(e)));
    }
    push_attempt(it, &ctx, h, start, failed, out);
    Ok(true)
}

fn run_event(it: &Item, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let Some(ctx) = it.trace()? else {
        return Ok(false);
    };
    let Some(span) = ctx.span else {
        return Ok(false);
    };
    let ev = it.event;
    let time = it.time_ns();
    let done = it.kind.ends_with(".completed");
    let start = match (done, f(ev, "durationMs")) {
        (true, Some(d)) => time.saturating_sub(ms_to_ns(d)),
        _ => time,
    };
    let mut p = piece(
        ctx.trace,
        span,
        "openclaw.run".into(),
        SpanKind::Other,
        start,
    );
    p.parent_span_id = ctx.parent;
    it.base(&mut p);
    p.provider = s(ev, "provider").map(str::to_string);
    p.request_model = s(ev, "model").map(str::to_string);
    if done {
        p.end_ns = Some(time);
        let failed = matches!(s(ev, "outcome"), Some("error" | "aborted" | "blocked"));
        p.status = if failed {
            StatusCode::Error
        } else {
            StatusCode::Ok
        };
        p.error_type = s(ev, "errorCategory").map(str::to_string);
        if let Some(o) = s(ev, "outcome") {
            p.attributes.insert("openclaw.outcome".into(), o.into());
        }
    }
    push_span(out, p);
    Ok(true)
}

/// `model.usage`: the run's totals, on the root span (attributes only: the model
/// call spans carry the tokens and cost that are summed).
fn model_usage(it: &Item, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let Some(ctx) = it.trace()? else {
        return Ok(false);
    };
    let Some(root) = ctx.span else {
        return Ok(false);
    };
    let ev = it.event;
    let time = it.time_ns();
    let start = f(ev, "durationMs")
        .map(|d| time.saturating_sub(ms_to_ns(d)))
        .unwrap_or(time);
    let mut r = root_piece(it, ctx.trace, root, start);
    r.parent_span_id = ctx.parent;
    r.end_ns = Some(time);
    r.status = StatusCode::Ok;
    if let Some(u) = o(ev, "usage") {
        for (k, v) in u {
            r.attributes
                .insert(format!("openclaw.run_usage.{k}"), v.clone());
        }
    }
    if let Some(c) = ev.get("costUsd").filter(|v| v.is_number()) {
        r.attributes
            .insert("openclaw.run_cost_usd".into(), c.clone());
    }
    // The context window as OpenClaw measured it for the run's last call.
    if let Some(c) = o(ev, "context") {
        for (k, attr) in [
            ("used", "openclaw.context.used"),
            ("limit", "openclaw.context.limit"),
        ] {
            if let Some(v) = c.get(k).filter(|v| v.is_number()) {
                r.attributes.insert(attr.into(), v.clone());
            }
        }
    }
    if let Some(u) = o(ev, "lastCallUsage") {
        for (k, v) in u {
            if v.is_number() {
                r.attributes
                    .insert(format!("openclaw.last_call_usage.{k}"), v.clone());
            }
        }
    }
    push_span(out, r);
    Ok(true)
}

fn tool_event(
    it: &Item,
    name: &str,
    cfg: &IngestConfig,
    out: &mut Vec<Record>,
) -> Result<bool, FieldError> {
    let ev = it.event;
    let ctx = it.trace()?;
    let Some(trace) = it.trace_or_run()? else {
        return Ok(false);
    };
    let run = it.run_id().unwrap_or("");
    let Some(call_id) = s(ev, "toolCallId").or_else(|| s(it.ctx, "toolCallId")) else {
        return Ok(false);
    };
    let tool = s(ev, "toolName")
        .or_else(|| s(it.ctx, "toolName"))
        .unwrap_or("tool");
    // Hooks and diagnostic events name the tool call differently; its id is made from the call.
    let span_id = hash_span_id(&["openclaw-tool", run, call_id]);
    // The tool runs under the run span: the diagnostic event's parent, the hook's own span.
    let parent = match name {
        "before_tool_call" | "after_tool_call" => ctx.and_then(|c| c.span),
        _ => ctx.and_then(|c| c.parent),
    };
    let time = it.time_ns();
    let done = !matches!(name, "before_tool_call" | "tool.execution.started");
    let start = match (done, f(ev, "durationMs")) {
        (true, Some(d)) => time.saturating_sub(ms_to_ns(d)),
        _ => time,
    };
    let mut p = piece(
        trace,
        span_id,
        format!("execute_tool {tool}"),
        SpanKind::ToolCall,
        start,
    );
    p.parent_span_id = parent;
    // `after_tool_call` from older plugins has no trace context: it joins by the call.
    p.merge = Some(SpanMerge {
        key: Some(format!("openclaw-tool:{run}:{call_id}")),
        provisional: ctx.is_none(),
    });
    it.base(&mut p);
    p.operation = Some("execute_tool".into());
    p.tool_name = Some(tool.to_string());
    p.tool_call_id = Some(call_id.to_string());
    p.attributes
        .insert("gen_ai.operation.name".into(), "execute_tool".into());
    if name.starts_with("tool.") {
        if let Some(sp) = ctx.and_then(|c| c.span) {
            p.attributes
                .insert("openclaw.span_id".into(), sp.to_hex().into());
        }
        for (k, attr) in [
            ("toolSource", "openclaw.tool_source"),
            ("toolOwner", "openclaw.tool_owner"),
        ] {
            if let Some(v) = s(ev, k) {
                p.attributes.insert(attr.into(), v.into());
            }
        }
    }
    if let Some(h) = s(ev, "paramsHash") {
        p.attributes.insert("openclaw.params_hash".into(), h.into());
    }
    p.input = text(ev.get("params"), cfg);
    p.output = text(ev.get("result"), cfg);
    let error_text = s(ev, "error").map(str::to_string);
    let (failed, blocked) = (
        name == "tool.execution.error" || error_text.is_some(),
        name == "tool.execution.blocked",
    );
    if done {
        p.end_ns = Some(time);
        p.status = if failed || blocked {
            StatusCode::Error
        } else {
            StatusCode::Ok
        };
        p.error_type = s(ev, "errorCategory")
            .or(s(ev, "deniedReason"))
            .map(str::to_string);
        p.status_message = error_text.clone().or(s(ev, "reason").map(str::to_string));
    }
    if failed || blocked {
        let (kind, category, title) = if blocked {
            ("openclaw-tool-blocked", "tool_denied", "tool_denied")
        } else {
            ("openclaw-tool-error", "tool", "tool_error")
        };
        let mut e = it.event(EventType::Error, title, &[kind, run, call_id]);
        e.message = Some(
            error_text
                .or(s(ev, "reason").map(str::to_string))
                .unwrap_or_else(|| format!("tool {tool} failed")),
        );
        e.category = Some(category.into());
        e.trace_id = Some(trace);
        e.span_id = Some(span_id);
        e.attributes.insert("gen_ai.tool.name".into(), tool.into());
        e.attributes
            .insert("gen_ai.tool.call.id".into(), call_id.into());
        out.push(Record::Event(Box::new(e)));
    }
    push_span(out, p);
    Ok(true)
}

/// The attribute naming a run's silent reply (`HEARTBEAT_OK`, `NO_REPLY`).
pub const REPLY_TOKEN: &str = "openclaw.silent_reply";

/// OpenClaw's silent-reply tokens, when the reply is one (trimmed, alone or leading).
fn reply_token(texts: Option<&Value>) -> Option<String> {
    let last = match texts? {
        Value::Array(a) => a.iter().rev().find_map(Value::as_str)?,
        Value::String(t) => t.as_str(),
        _ => return None,
    };
    let t = last.trim();
    ["HEARTBEAT_OK", "NO_REPLY"]
        .into_iter()
        .find(|tok| t.starts_with(tok) || t.ends_with(tok))
        .map(str::to_string)
}

/// `subagent_spawned` / `subagent_ended`: a custom event tying the child's session key
/// (`agent:<id>:subagent:<uuid>`) to the session (and run) that spawned it.
fn subagent_event(it: &Item, name: &str, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let ev = it.event;
    let Some(child) = s(ev, "childSessionKey")
        .or_else(|| s(it.ctx, "childSessionKey"))
        .or_else(|| s(ev, "targetSessionKey"))
    else {
        return Ok(false);
    };
    let ts = it.time_ns().to_string();
    let mut e = Event::new(EventType::Custom, format!("openclaw.{name}"), it.time_ns());
    e.uid = stable_uid(&["openclaw-subagent", name, child, &ts]);
    e.source = "openclaw";
    e.category = Some("subagent".into());
    e.agent_id = s(ev, "agentId")
        .map(str::to_string)
        .or_else(|| it.agent_id());
    if let Some(c) = it.trace()? {
        e.trace_id = Some(c.trace);
        e.span_id = c.span;
    }
    let a = &mut e.attributes;
    a.insert("openclaw.child_session_key".into(), child.into());
    for (k, attr) in [
        ("runId", "openclaw.run_id"),
        ("requesterSessionKey", "openclaw.requester_session_key"),
        ("label", "openclaw.label"),
        ("mode", "openclaw.mode"),
        ("outcome", "openclaw.outcome"),
        ("reason", "openclaw.reason"),
        ("targetKind", "openclaw.target_kind"),
    ] {
        if let Some(v) = s(ev, k).or_else(|| s(it.ctx, k)) {
            a.insert(attr.into(), v.into());
        }
    }
    out.push(Record::Event(Box::new(e)));
    Ok(true)
}

/// `after_compaction`: the session's context was compacted (an event on the session).
fn compaction_event(it: &Item, out: &mut Vec<Record>) -> Result<bool, FieldError> {
    let ev = it.event;
    let sid = it.session_id().or_else(|| it.session_key()).unwrap_or("");
    let ts = it.time_ns().to_string();
    let mut e = it.event(
        EventType::Custom,
        "openclaw.compaction",
        &["openclaw-compaction", sid, &ts],
    );
    e.category = Some("session".into());
    if let Some(c) = it.trace()? {
        e.trace_id = Some(c.trace);
        e.span_id = c.span;
    }
    if let Some(k) = it.session_key() {
        e.attributes.insert("openclaw.session_key".into(), k.into());
    }
    for (k, attr) in [
        ("messageCount", "openclaw.message_count"),
        ("compactedCount", "openclaw.compacted_count"),
        ("tokenCount", "openclaw.token_count"),
    ] {
        if let Some(v) = ev.get(k).filter(|v| v.is_number()) {
            e.attributes.insert(attr.into(), v.clone());
        }
    }
    out.push(Record::Event(Box::new(e)));
    Ok(true)
}

#[cfg(test)]
mod tests;
