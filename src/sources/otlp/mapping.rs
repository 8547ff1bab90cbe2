//! The one mapping from attribute names (OpenTelemetry GenAI v1.41 and the older names
//! still in the wild, OpenInference, OpenLLMetry/Traceloop, OpenClaw) to the span columns.
//! The names are public so the OTLP exporter writes back exactly what is read here.

use serde_json::{Map, Value};

use crate::model::{CappedText, Span, SpanKind};

// GenAI semantic conventions, v1.41.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";
pub const GEN_AI_AGENT_ID: &str = "gen_ai.agent.id";
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
pub const ERROR_TYPE: &str = "error.type";
pub const SESSION_ID: &str = "session.id";
pub const USER_ID: &str = "user.id";
pub const ENDUSER_ID: &str = "enduser.id";
pub const EVENT_NAME: &str = "event.name";
pub const EXCEPTION_EVENT: &str = "exception";
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

// Older GenAI names (before v1.37 and community variants).
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
pub const GEN_AI_USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
pub const GEN_AI_USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
pub const GEN_AI_USAGE_TOTAL_TOKENS: &str = "gen_ai.usage.total_tokens";
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OLD: &str = "gen_ai.usage.cache_read_input_tokens";
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OLD: &str =
    "gen_ai.usage.cache_creation_input_tokens";
pub const GEN_AI_USAGE_REASONING_TOKENS_OLD: &str = "gen_ai.usage.reasoning_tokens";
pub const GEN_AI_USAGE_COST: &str = "gen_ai.usage.cost";
pub const GEN_AI_PROMPT: &str = "gen_ai.prompt";
pub const GEN_AI_COMPLETION: &str = "gen_ai.completion";
/// Span events of semconv v1.26 carrying `gen_ai.prompt` / `gen_ai.completion`.
pub const GEN_AI_CONTENT_PROMPT_EVENT: &str = "gen_ai.content.prompt";
pub const GEN_AI_CONTENT_COMPLETION_EVENT: &str = "gen_ai.content.completion";

// OpenLLMetry / Traceloop.
pub const TRACELOOP_SPAN_KIND: &str = "traceloop.span.kind";
pub const LLM_REQUEST_TYPE: &str = "llm.request.type";
pub const LLM_USAGE_TOTAL_TOKENS: &str = "llm.usage.total_tokens";
/// Flattened messages: `gen_ai.prompt.0.role`, `gen_ai.prompt.0.content`, ...
pub const GEN_AI_PROMPT_PREFIX: &str = "gen_ai.prompt.";
pub const GEN_AI_COMPLETION_PREFIX: &str = "gen_ai.completion.";

// OpenInference (Arize Phoenix and others).
pub const OPENINFERENCE_SPAN_KIND: &str = "openinference.span.kind";
pub const LLM_PROVIDER: &str = "llm.provider";
pub const LLM_SYSTEM: &str = "llm.system";
pub const LLM_MODEL_NAME: &str = "llm.model_name";
pub const LLM_TOKEN_COUNT_PROMPT: &str = "llm.token_count.prompt";
pub const LLM_TOKEN_COUNT_COMPLETION: &str = "llm.token_count.completion";
pub const LLM_TOKEN_COUNT_TOTAL: &str = "llm.token_count.total";
pub const LLM_TOKEN_COUNT_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
pub const LLM_TOKEN_COUNT_CACHE_WRITE: &str = "llm.token_count.prompt_details.cache_write";
pub const LLM_TOKEN_COUNT_REASONING: &str = "llm.token_count.completion_details.reasoning";
pub const LLM_COST_TOTAL: &str = "llm.cost.total";
pub const INPUT_VALUE: &str = "input.value";
pub const OUTPUT_VALUE: &str = "output.value";
pub const TOOL_NAME: &str = "tool.name";
pub const TOOL_CALL_ID: &str = "tool_call.id";
/// Flattened messages: `llm.input_messages.0.message.role`, `...message.content`.
pub const LLM_INPUT_MESSAGES_PREFIX: &str = "llm.input_messages.";
pub const LLM_OUTPUT_MESSAGES_PREFIX: &str = "llm.output_messages.";

// OpenClaw's diagnostics-otel plugin.
pub const OPENCLAW_PROVIDER: &str = "openclaw.provider";
pub const OPENCLAW_MODEL: &str = "openclaw.model";
pub const OPENCLAW_TOKENS_INPUT: &str = "openclaw.tokens.input";
pub const OPENCLAW_TOKENS_OUTPUT: &str = "openclaw.tokens.output";
pub const OPENCLAW_TOKENS_CACHE_READ: &str = "openclaw.tokens.cache_read";
pub const OPENCLAW_TOKENS_CACHE_WRITE: &str = "openclaw.tokens.cache_write";
pub const OPENCLAW_TOKENS_TOTAL: &str = "openclaw.tokens.total";
pub const OPENCLAW_CHANNEL: &str = "openclaw.channel";
pub const OPENCLAW_SESSION_ID: &str = "openclaw.sessionId";
pub const OPENCLAW_SESSION_KEY: &str = "openclaw.sessionKey";
pub const OPENCLAW_AGENT: &str = "openclaw.agent";
pub const OPENCLAW_TOOL_NAME: &str = "openclaw.toolName";
pub const OPENCLAW_TOOL_NAME_DOTTED: &str = "openclaw.tool.name";
pub const OPENCLAW_TOOL_CALL_ID: &str = "openclaw.tool.call_id";
pub const OPENCLAW_ERROR_CATEGORY: &str = "openclaw.errorCategory";
pub const OPENCLAW_SUBSYSTEM: &str = "openclaw.subsystem";
pub const OPENCLAW_MODEL_CALL_SPAN: &str = "openclaw.model.call";

// OTLP fields that have no column, kept in the attributes under these keys.
pub const OTEL_SPAN_KIND: &str = "otel.span.kind";
pub const OTEL_SCOPE_NAME: &str = "otel.scope.name";
pub const OTEL_SCOPE_VERSION: &str = "otel.scope.version";
pub const OTEL_TRACE_STATE: &str = "otel.trace_state";
pub const OTEL_LINKS: &str = "otel.links";
pub const OTEL_DROPPED_ATTRIBUTES_COUNT: &str = "otel.dropped_attributes_count";
pub const OTEL_DROPPED_EVENTS_COUNT: &str = "otel.dropped_events_count";
pub const OTEL_DROPPED_LINKS_COUNT: &str = "otel.dropped_links_count";
pub const OTEL_SEVERITY_NUMBER: &str = "otel.severity_number";
pub const OTEL_SEVERITY_TEXT: &str = "otel.severity_text";

/// A span column an attribute can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Operation,
    Provider,
    RequestModel,
    ResponseModel,
    InputTokens,
    OutputTokens,
    TotalTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    CostUsd,
    FinishReasons,
    ToolName,
    ToolCallId,
    AgentId,
    SessionId,
    UserId,
    ErrorType,
}

/// THE table: attribute name → column. For one column, the first name present wins,
/// so the current convention comes before the older ones.
pub const SPAN_COLUMNS: &[(&str, Column)] = &[
    (GEN_AI_OPERATION_NAME, Column::Operation),
    (GEN_AI_PROVIDER_NAME, Column::Provider),
    (GEN_AI_SYSTEM, Column::Provider),
    (LLM_PROVIDER, Column::Provider),
    (LLM_SYSTEM, Column::Provider),
    (OPENCLAW_PROVIDER, Column::Provider),
    (GEN_AI_REQUEST_MODEL, Column::RequestModel),
    (OPENCLAW_MODEL, Column::RequestModel),
    (LLM_MODEL_NAME, Column::RequestModel),
    (GEN_AI_RESPONSE_MODEL, Column::ResponseModel),
    (LLM_MODEL_NAME, Column::ResponseModel),
    (GEN_AI_USAGE_INPUT_TOKENS, Column::InputTokens),
    (GEN_AI_USAGE_PROMPT_TOKENS, Column::InputTokens),
    (LLM_TOKEN_COUNT_PROMPT, Column::InputTokens),
    (OPENCLAW_TOKENS_INPUT, Column::InputTokens),
    (GEN_AI_USAGE_OUTPUT_TOKENS, Column::OutputTokens),
    (GEN_AI_USAGE_COMPLETION_TOKENS, Column::OutputTokens),
    (LLM_TOKEN_COUNT_COMPLETION, Column::OutputTokens),
    (OPENCLAW_TOKENS_OUTPUT, Column::OutputTokens),
    (GEN_AI_USAGE_TOTAL_TOKENS, Column::TotalTokens),
    (LLM_USAGE_TOTAL_TOKENS, Column::TotalTokens),
    (LLM_TOKEN_COUNT_TOTAL, Column::TotalTokens),
    (OPENCLAW_TOKENS_TOTAL, Column::TotalTokens),
    (
        GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        Column::CacheReadTokens,
    ),
    (
        GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_OLD,
        Column::CacheReadTokens,
    ),
    (LLM_TOKEN_COUNT_CACHE_READ, Column::CacheReadTokens),
    (OPENCLAW_TOKENS_CACHE_READ, Column::CacheReadTokens),
    (
        GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        Column::CacheWriteTokens,
    ),
    (
        GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_OLD,
        Column::CacheWriteTokens,
    ),
    (LLM_TOKEN_COUNT_CACHE_WRITE, Column::CacheWriteTokens),
    (OPENCLAW_TOKENS_CACHE_WRITE, Column::CacheWriteTokens),
    (
        GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
        Column::ReasoningTokens,
    ),
    (GEN_AI_USAGE_REASONING_TOKENS_OLD, Column::ReasoningTokens),
    (LLM_TOKEN_COUNT_REASONING, Column::ReasoningTokens),
    (GEN_AI_USAGE_COST, Column::CostUsd),
    (LLM_COST_TOTAL, Column::CostUsd),
    (GEN_AI_RESPONSE_FINISH_REASONS, Column::FinishReasons),
    (GEN_AI_TOOL_NAME, Column::ToolName),
    (TOOL_NAME, Column::ToolName),
    (OPENCLAW_TOOL_NAME, Column::ToolName),
    (OPENCLAW_TOOL_NAME_DOTTED, Column::ToolName),
    (GEN_AI_TOOL_CALL_ID, Column::ToolCallId),
    (TOOL_CALL_ID, Column::ToolCallId),
    (OPENCLAW_TOOL_CALL_ID, Column::ToolCallId),
    (GEN_AI_AGENT_ID, Column::AgentId),
    (GEN_AI_AGENT_NAME, Column::AgentId),
    (OPENCLAW_AGENT, Column::AgentId),
    (GEN_AI_CONVERSATION_ID, Column::SessionId),
    (SESSION_ID, Column::SessionId),
    (OPENCLAW_SESSION_ID, Column::SessionId),
    (OPENCLAW_SESSION_KEY, Column::SessionId),
    (USER_ID, Column::UserId),
    (ENDUSER_ID, Column::UserId),
    (ERROR_TYPE, Column::ErrorType),
    (OPENCLAW_ERROR_CATEGORY, Column::ErrorType),
];

/// `gen_ai.operation.name` values → span kind.
pub const OPERATION_KINDS: &[(&str, SpanKind)] = &[
    ("chat", SpanKind::LlmCall),
    ("text_completion", SpanKind::LlmCall),
    ("generate_content", SpanKind::LlmCall),
    ("execute_tool", SpanKind::ToolCall),
    ("invoke_agent", SpanKind::AgentRun),
    ("create_agent", SpanKind::AgentRun),
    ("invoke_workflow", SpanKind::AgentRun),
    ("embeddings", SpanKind::Embedding),
];

/// `openinference.span.kind` values → span kind (CHAIN, RETRIEVER, ... are `other`).
pub const OPENINFERENCE_KINDS: &[(&str, SpanKind)] = &[
    ("LLM", SpanKind::LlmCall),
    ("EMBEDDING", SpanKind::Embedding),
    ("TOOL", SpanKind::ToolCall),
    ("AGENT", SpanKind::AgentRun),
];

/// `traceloop.span.kind` and `llm.request.type` values → span kind.
pub const TRACELOOP_KINDS: &[(&str, SpanKind)] = &[
    ("workflow", SpanKind::AgentRun),
    ("agent", SpanKind::AgentRun),
    ("tool", SpanKind::ToolCall),
];
pub const LLM_REQUEST_TYPES: &[(&str, SpanKind)] = &[
    ("chat", SpanKind::LlmCall),
    ("completion", SpanKind::LlmCall),
    ("embedding", SpanKind::Embedding),
];

/// OpenClaw's span names → span kind (it sets no GenAI operation on most of them).
pub const OPENCLAW_SPAN_KINDS: &[(&str, SpanKind)] = &[
    ("openclaw.run", SpanKind::AgentRun),
    ("openclaw.harness.run", SpanKind::AgentRun),
    ("openclaw.model.usage", SpanKind::LlmCall),
    (OPENCLAW_MODEL_CALL_SPAN, SpanKind::LlmCall),
    ("openclaw.tool.execution", SpanKind::ToolCall),
    ("openclaw.exec", SpanKind::ToolCall),
];

/// Attributes holding input text, best first; all of them leave the attributes once
/// the text is in the capped `input` column.
pub const INPUT_TEXT_ATTRIBUTES: &[&str] = &[
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_PROMPT,
    INPUT_VALUE,
    GEN_AI_TOOL_CALL_ARGUMENTS,
];
pub const OUTPUT_TEXT_ATTRIBUTES: &[&str] = &[
    GEN_AI_OUTPUT_MESSAGES,
    GEN_AI_COMPLETION,
    OUTPUT_VALUE,
    GEN_AI_TOOL_CALL_RESULT,
];

fn lookup(table: &[(&str, SpanKind)], key: &str) -> Option<SpanKind> {
    table.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A string attribute; numbers and booleans are accepted as their text.
pub fn attr_str(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    value_str(attrs.get(key)?)
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A non-negative count: an int, an integral double or digits in a string (OpenClaw sends those).
pub fn attr_count(attrs: &Map<String, Value>, key: &str) -> Option<i64> {
    value_count(attrs.get(key)?)
}

fn value_count(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && (0.0..9.0e15).contains(f))
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .filter(|n| *n >= 0)
}

pub fn attr_f64(attrs: &Map<String, Value>, key: &str) -> Option<f64> {
    value_f64(attrs.get(key)?)
}

fn value_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite() && *f >= 0.0)
}

/// A list of strings: an array, one string, or a JSON-encoded array in a string.
pub fn attr_string_list(attrs: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    value_string_list(attrs.get(key)?)
}

fn value_string_list(v: &Value) -> Option<Vec<String>> {
    let strings = |items: &[Value]| {
        items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    match v {
        Value::Array(a) => Some(strings(a)),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => Some(strings(&a)),
            _ => Some(vec![s.clone()]),
        },
        _ => None,
    }
    .filter(|v| !v.is_empty())
}

/// Text of an attribute: strings as they are, anything else as JSON.
fn attr_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

// One bit per row of the table in [`present_names`].
const _: () = assert!(SPAN_COLUMNS.len() <= 64);

/// [`SPAN_COLUMNS`]' names in sorted order, each with its row in the table.
static NAMES_SORTED: std::sync::LazyLock<Vec<(&'static str, usize)>> =
    std::sync::LazyLock::new(|| {
        let mut v: Vec<_> = SPAN_COLUMNS
            .iter()
            .enumerate()
            .map(|(row, (name, _))| (*name, row))
            .collect();
        v.sort_unstable();
        v
    });

/// The table's rows whose names are in `attrs` (a bit per row) and their values. Both
/// the map's keys and the names are sorted, so one merge walk finds them all; looking
/// each of the table's names up in the map was a fifth of the mapping's time.
fn present_names<'a>(attrs: &'a Map<String, Value>, values: &mut [Option<&'a Value>; 64]) -> u64 {
    let names = &*NAMES_SORTED;
    let mut rows = 0u64;
    let mut n = 0;
    for (key, value) in attrs {
        while n < names.len() && names[n].0 < key.as_str() {
            n += 1;
        }
        // A name may fill two columns (one row each).
        while n < names.len() && names[n].0 == key.as_str() {
            rows |= 1 << names[n].1;
            values[names[n].1] = Some(value);
            n += 1;
        }
        if n == names.len() {
            break;
        }
    }
    rows
}

/// Fills the promoted columns of `span` from its attributes (and, for who and where,
/// the resource's), following [`SPAN_COLUMNS`]. Columns already set are kept.
pub fn promote(span: &mut Span, resource: &Map<String, Value>) {
    let bit = |col: Column| 1u32 << col as u32;
    let mut filled = 0u32;
    let mut out = Promoted::default();
    // For each column, the first row (in table order) present with a usable value wins.
    let mut fill = |attrs: &Map<String, Value>, only: fn(Column) -> bool| {
        let mut values = [None; 64];
        let mut rows = present_names(attrs, &mut values);
        while rows != 0 {
            let row = rows.trailing_zeros() as usize;
            rows &= rows - 1;
            let col = SPAN_COLUMNS[row].1;
            if !only(col) || filled & bit(col) != 0 {
                continue;
            }
            if let Some(v) = values[row]
                && out.set(col, v)
            {
                filled |= bit(col);
            }
        }
    };
    fill(&span.attributes, |_| true);
    // Who and where may be on the resource (one agent process, one session).
    fill(resource, |col| {
        matches!(col, Column::AgentId | Column::SessionId | Column::UserId)
    });
    out.apply(span);
}

/// Values read by [`promote`] before they are moved into the span.
#[derive(Default)]
struct Promoted {
    operation: Option<String>,
    provider: Option<String>,
    request_model: Option<String>,
    response_model: Option<String>,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    total_tokens: Option<i64>,
    cache_read_tokens: Option<i64>,
    cache_write_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<f64>,
    finish_reasons: Option<Vec<String>>,
    tool_name: Option<String>,
    tool_call_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    user_id: Option<String>,
    error_type: Option<String>,
}

impl Promoted {
    /// Reads `v` into `col`; false when the value has the wrong type (the next name is tried).
    fn set(&mut self, col: Column, v: &Value) -> bool {
        fn put<T>(slot: &mut Option<T>, v: Option<T>) -> bool {
            let ok = v.is_some();
            if ok {
                *slot = v;
            }
            ok
        }
        match col {
            Column::Operation => put(&mut self.operation, value_str(v)),
            Column::Provider => put(&mut self.provider, value_str(v)),
            Column::RequestModel => put(&mut self.request_model, value_str(v)),
            Column::ResponseModel => put(&mut self.response_model, value_str(v)),
            Column::InputTokens => put(&mut self.input_tokens, value_count(v)),
            Column::OutputTokens => put(&mut self.output_tokens, value_count(v)),
            Column::TotalTokens => put(&mut self.total_tokens, value_count(v)),
            Column::CacheReadTokens => put(&mut self.cache_read_tokens, value_count(v)),
            Column::CacheWriteTokens => put(&mut self.cache_write_tokens, value_count(v)),
            Column::ReasoningTokens => put(&mut self.reasoning_tokens, value_count(v)),
            Column::CostUsd => put(&mut self.cost_usd, value_f64(v)),
            Column::FinishReasons => put(&mut self.finish_reasons, value_string_list(v)),
            Column::ToolName => put(&mut self.tool_name, value_str(v)),
            Column::ToolCallId => put(&mut self.tool_call_id, value_str(v)),
            Column::AgentId => put(&mut self.agent_id, value_str(v)),
            Column::SessionId => put(&mut self.session_id, value_str(v)),
            Column::UserId => put(&mut self.user_id, value_str(v)),
            Column::ErrorType => put(&mut self.error_type, value_str(v)),
        }
    }

    fn apply(self, s: &mut Span) {
        fn keep<T>(slot: &mut Option<T>, v: Option<T>) {
            if slot.is_none() {
                *slot = v;
            }
        }
        keep(&mut s.operation, self.operation);
        keep(&mut s.provider, self.provider);
        keep(&mut s.request_model, self.request_model);
        keep(&mut s.response_model, self.response_model);
        keep(&mut s.input_tokens, self.input_tokens);
        keep(&mut s.output_tokens, self.output_tokens);
        keep(&mut s.total_tokens, self.total_tokens);
        keep(&mut s.cache_read_tokens, self.cache_read_tokens);
        keep(&mut s.cache_write_tokens, self.cache_write_tokens);
        keep(&mut s.reasoning_tokens, self.reasoning_tokens);
        if s.cost_usd.is_none() && self.cost_usd.is_some() {
            s.cost_usd = self.cost_usd;
            s.cost_source = Some(crate::model::CostSource::Reported);
        }
        if s.finish_reasons.is_empty() {
            s.finish_reasons = self.finish_reasons.unwrap_or_default();
        }
        keep(&mut s.tool_name, self.tool_name);
        keep(&mut s.tool_call_id, self.tool_call_id);
        keep(&mut s.agent_id, self.agent_id);
        keep(&mut s.session_id, self.session_id);
        keep(&mut s.user_id, self.user_id);
        keep(&mut s.error_type, self.error_type);
        if s.total_tokens.is_none() && (s.input_tokens.is_some() || s.output_tokens.is_some()) {
            s.total_tokens = Some(s.input_tokens.unwrap_or(0) + s.output_tokens.unwrap_or(0));
        }
    }
}

/// What a span stands for, from (in order) the GenAI operation, OpenInference's and
/// Traceloop's span kinds, OpenClaw's span names, then the columns it carries.
pub fn span_kind(name: &str, attrs: &Map<String, Value>, s: &Span) -> SpanKind {
    let has_usage = s.input_tokens.is_some() || s.output_tokens.is_some();
    let kind = attrs
        .get(GEN_AI_OPERATION_NAME)
        .and_then(Value::as_str)
        .map(|op| lookup(OPERATION_KINDS, op).unwrap_or(SpanKind::Other))
        .or_else(|| {
            let k = attrs.get(OPENINFERENCE_SPAN_KIND)?.as_str()?;
            Some(lookup(OPENINFERENCE_KINDS, &k.to_ascii_uppercase()).unwrap_or(SpanKind::Other))
        })
        .or_else(|| {
            let k = attrs.get(TRACELOOP_SPAN_KIND)?.as_str()?;
            lookup(TRACELOOP_KINDS, k)
        })
        .or_else(|| lookup(LLM_REQUEST_TYPES, attrs.get(LLM_REQUEST_TYPE)?.as_str()?))
        .or_else(|| lookup(OPENCLAW_SPAN_KINDS, name))
        .unwrap_or_else(|| {
            if s.tool_name.is_some() && s.request_model.is_none() {
                SpanKind::ToolCall
            } else if s.request_model.is_some() && (has_usage || s.provider.is_some()) {
                SpanKind::LlmCall
            } else {
                SpanKind::Other
            }
        });
    // OpenClaw reports each model call twice: the call, and a usage span with the tokens.
    // Counting the call without usage as an LLM call would count every call twice.
    if kind == SpanKind::LlmCall && name == OPENCLAW_MODEL_CALL_SPAN && !has_usage {
        return SpanKind::Other;
    }
    kind
}

/// The operation a kind implies when no attribute names one.
pub fn default_operation(kind: SpanKind) -> Option<&'static str> {
    match kind {
        SpanKind::LlmCall => Some("chat"),
        SpanKind::Embedding => Some("embeddings"),
        SpanKind::ToolCall => Some("execute_tool"),
        SpanKind::AgentRun => Some("invoke_agent"),
        _ => None,
    }
}

/// Collects flattened messages (`prefix` + `N.` + field) into a JSON array, removing them.
fn take_flattened(attrs: &mut Map<String, Value>, prefix: &str, inner: &str) -> Option<String> {
    // The map is sorted, so the keys with the prefix are together, from the prefix on.
    let keys: Vec<String> = attrs
        .keys()
        .skip_while(|k| k.as_str() < prefix)
        .take_while(|k| k.starts_with(prefix))
        .cloned()
        .collect();
    if keys.is_empty() {
        return None;
    }
    let mut messages: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    for k in keys {
        let Some(v) = attrs.remove(&k) else { continue };
        let rest = &k[prefix.len()..];
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<u64>() else {
            continue;
        };
        let field = field.strip_prefix(inner).unwrap_or(field);
        messages
            .entry(index)
            .or_default()
            .insert(field.to_string(), v);
    }
    (!messages.is_empty())
        .then(|| Value::Array(messages.into_values().map(Value::Object).collect()).to_string())
}

/// Moves input and output text out of the attributes into the capped columns.
pub fn take_texts(span: &mut Span, max_text_bytes: usize) {
    let attrs = &mut span.attributes;
    let mut input = None;
    let mut output = None;
    for k in INPUT_TEXT_ATTRIBUTES {
        if let Some(v) = attrs.remove(*k)
            && input.is_none()
        {
            input = attr_text(&v);
        }
    }
    for k in OUTPUT_TEXT_ATTRIBUTES {
        if let Some(v) = attrs.remove(*k)
            && output.is_none()
        {
            output = attr_text(&v);
        }
    }
    let flat_in = take_flattened(attrs, GEN_AI_PROMPT_PREFIX, "")
        .into_iter()
        .chain(take_flattened(attrs, LLM_INPUT_MESSAGES_PREFIX, "message."))
        .next();
    let flat_out = take_flattened(attrs, GEN_AI_COMPLETION_PREFIX, "")
        .into_iter()
        .chain(take_flattened(
            attrs,
            LLM_OUTPUT_MESSAGES_PREFIX,
            "message.",
        ))
        .next();
    // The structured messages are better than a flattened or single-string form.
    let input = match input {
        Some(t) if attrs_first_is_messages(&t) => Some(t),
        other => flat_in.or(other),
    };
    let output = match output {
        Some(t) if attrs_first_is_messages(&t) => Some(t),
        other => flat_out.or(other),
    };
    if span.input.is_none() {
        span.input = input.map(|t| CappedText::new(t, max_text_bytes));
    }
    if span.output.is_none() {
        span.output = output.map(|t| CappedText::new(t, max_text_bytes));
    }
}

/// True for a JSON array of messages (the v1.41 `gen_ai.*.messages` form).
fn attrs_first_is_messages(t: &str) -> bool {
    t.trim_start().starts_with('[')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};
    use serde_json::json;

    fn span_with(attrs: Value) -> Span {
        let mut s = Span::new(
            TraceId([1; 16]),
            SpanId([2; 8]),
            "x".into(),
            SpanKind::Other,
            1,
        );
        s.attributes = attrs.as_object().cloned().unwrap_or_default();
        s
    }

    fn promoted(attrs: Value) -> Span {
        let mut s = span_with(attrs);
        promote(&mut s, &Map::new());
        s
    }

    #[test]
    fn attribute_maps_iterate_in_key_order() {
        // promote and take_texts walk the keys in order (serde_json without preserve_order).
        let m = json!({"b": 1, "a.x": 2, "a": 3, "gen_ai.z": 4, "gen_ai.prompt.0.role": 5});
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn every_name_in_the_table_fills_its_column() {
        for (name, col) in SPAN_COLUMNS {
            let value = match col {
                Column::InputTokens
                | Column::OutputTokens
                | Column::TotalTokens
                | Column::CacheReadTokens
                | Column::CacheWriteTokens
                | Column::ReasoningTokens => json!(7),
                Column::CostUsd => json!(0.25),
                Column::FinishReasons => json!(["stop"]),
                _ => json!("v"),
            };
            let mut attrs = Map::new();
            attrs.insert(name.to_string(), value);
            let s = promoted(Value::Object(attrs));
            let got = match col {
                Column::Operation => s.operation == Some("v".into()),
                Column::Provider => s.provider == Some("v".into()),
                Column::RequestModel => s.request_model == Some("v".into()),
                Column::ResponseModel => s.response_model == Some("v".into()),
                Column::InputTokens => s.input_tokens == Some(7),
                Column::OutputTokens => s.output_tokens == Some(7),
                Column::TotalTokens => s.total_tokens == Some(7),
                Column::CacheReadTokens => s.cache_read_tokens == Some(7),
                Column::CacheWriteTokens => s.cache_write_tokens == Some(7),
                Column::ReasoningTokens => s.reasoning_tokens == Some(7),
                Column::CostUsd => s.cost_usd == Some(0.25),
                Column::FinishReasons => s.finish_reasons == vec!["stop".to_string()],
                Column::ToolName => s.tool_name == Some("v".into()),
                Column::ToolCallId => s.tool_call_id == Some("v".into()),
                Column::AgentId => s.agent_id == Some("v".into()),
                Column::SessionId => s.session_id == Some("v".into()),
                Column::UserId => s.user_id == Some("v".into()),
                Column::ErrorType => s.error_type == Some("v".into()),
            };
            assert!(got, "{name} did not fill {col:?}");
        }
    }

    #[test]
    fn current_names_win_over_older_ones() {
        let s = promoted(json!({
            "gen_ai.system": "old", "gen_ai.provider.name": "openai",
            "gen_ai.usage.prompt_tokens": 1, "gen_ai.usage.input_tokens": 10,
            "openclaw.tokens.output": "4", "llm.token_count.completion": 5,
        }));
        assert_eq!(s.provider.as_deref(), Some("openai"));
        assert_eq!(s.input_tokens, Some(10));
        assert_eq!(s.output_tokens, Some(5), "OpenInference before OpenClaw");
        assert_eq!(
            s.total_tokens,
            Some(15),
            "total derived from input + output"
        );
    }

    #[test]
    fn wrong_types_fall_through_to_the_next_name() {
        let s = promoted(json!({
            "gen_ai.usage.input_tokens": "many", "gen_ai.usage.prompt_tokens": 3,
            "gen_ai.usage.output_tokens": -1,
        }));
        assert_eq!(s.input_tokens, Some(3));
        assert_eq!(s.output_tokens, None);
    }

    #[test]
    fn openclaw_counts_arrive_as_strings() {
        let s = promoted(json!({
            "openclaw.provider": "fake", "openclaw.model": "fake-model",
            "openclaw.tokens.input": "12", "openclaw.tokens.output": 34,
            "openclaw.tokens.cache_read": 5.0, "openclaw.tokens.total": "46",
            "openclaw.sessionKey": "agent:main:x", "openclaw.sessionId": "s-1",
        }));
        assert_eq!(s.provider.as_deref(), Some("fake"));
        assert_eq!(s.request_model.as_deref(), Some("fake-model"));
        assert_eq!(
            (s.input_tokens, s.output_tokens, s.cache_read_tokens),
            (Some(12), Some(34), Some(5))
        );
        assert_eq!(s.total_tokens, Some(46));
        assert_eq!(s.session_id.as_deref(), Some("s-1"), "id before key");
    }

    #[test]
    fn finish_reasons_in_every_shape() {
        for v in [json!(["stop"]), json!("stop"), json!("[\"stop\"]")] {
            let s = promoted(json!({ "gen_ai.response.finish_reasons": v }));
            assert_eq!(s.finish_reasons, vec!["stop".to_string()]);
        }
    }

    #[test]
    fn who_comes_from_the_resource_when_the_span_lacks_it() {
        let mut s = span_with(json!({"session.id": "span-session"}));
        let resource = json!({"gen_ai.agent.name": "planner", "session.id": "res-session"});
        promote(&mut s, resource.as_object().unwrap());
        assert_eq!(s.agent_id.as_deref(), Some("planner"));
        assert_eq!(s.session_id.as_deref(), Some("span-session"));
    }

    fn kind_of(name: &str, attrs: Value) -> SpanKind {
        let s = promoted(attrs);
        span_kind(name, &s.attributes, &s)
    }

    #[test]
    fn kinds_from_every_convention() {
        for (op, k) in OPERATION_KINDS {
            assert_eq!(
                kind_of("x", json!({ "gen_ai.operation.name": op })),
                *k,
                "{op}"
            );
        }
        for (v, k) in OPENINFERENCE_KINDS {
            assert_eq!(kind_of("x", json!({ "openinference.span.kind": v })), *k);
        }
        assert_eq!(
            kind_of("x", json!({"openinference.span.kind": "CHAIN"})),
            SpanKind::Other
        );
        for (v, k) in TRACELOOP_KINDS {
            assert_eq!(kind_of("x", json!({ "traceloop.span.kind": v })), *k);
        }
        for (v, k) in LLM_REQUEST_TYPES {
            assert_eq!(kind_of("x", json!({ "llm.request.type": v })), *k);
        }
        for (name, k) in OPENCLAW_SPAN_KINDS {
            let attrs = json!({"openclaw.tokens.input": 1});
            assert_eq!(kind_of(name, attrs), *k, "{name}");
        }
        assert_eq!(
            kind_of("chat", json!({"gen_ai.operation.name": "retrieval"})),
            SpanKind::Other
        );
        assert_eq!(
            kind_of("x", json!({"gen_ai.tool.name": "ls"})),
            SpanKind::ToolCall
        );
        assert_eq!(
            kind_of(
                "x",
                json!({"gen_ai.system": "openai", "gen_ai.request.model": "m"})
            ),
            SpanKind::LlmCall
        );
        assert_eq!(
            kind_of("GET /", json!({"http.method": "GET"})),
            SpanKind::Other
        );
    }

    #[test]
    fn openclaw_model_call_without_usage_is_not_counted_twice() {
        assert_eq!(
            kind_of(
                OPENCLAW_MODEL_CALL_SPAN,
                json!({"gen_ai.operation.name": "chat"})
            ),
            SpanKind::Other
        );
        assert_eq!(
            kind_of(
                OPENCLAW_MODEL_CALL_SPAN,
                json!({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 3})
            ),
            SpanKind::LlmCall
        );
    }

    #[test]
    fn openclaw_diagnostics_spans_as_exported() {
        // From shared/samples/openclaw/diagnostics_otel_decoded.txt (OpenClaw 2026.4.29).
        let run = json!({"openclaw.provider": "fake", "openclaw.model": "fake-model",
            "openclaw.channel": "webchat", "openclaw.trigger": "user", "openclaw.outcome": "error",
            "openclaw.errorCategory": "Error"});
        let s = promoted(run.clone());
        assert_eq!(
            span_kind("openclaw.run", &s.attributes, &s),
            SpanKind::AgentRun
        );
        assert_eq!(s.provider.as_deref(), Some("fake"));
        assert_eq!(s.request_model.as_deref(), Some("fake-model"));
        assert_eq!(s.error_type.as_deref(), Some("Error"));
        assert_eq!(s.attributes["openclaw.channel"], "webchat", "kept");
        let harness = json!({"openclaw.harness.id": "pi", "openclaw.provider": "fake",
            "openclaw.errorCategory": "Error", "error.type": "TypeError"});
        let s = promoted(harness);
        assert_eq!(
            span_kind("openclaw.harness.run", &s.attributes, &s),
            SpanKind::AgentRun
        );
        assert_eq!(
            s.error_type.as_deref(),
            Some("TypeError"),
            "error.type first"
        );
        let s = promoted(json!({"openclaw.liveness.reason": "event_loop_delay"}));
        assert_eq!(
            span_kind("openclaw.liveness.warning", &s.attributes, &s),
            SpanKind::Other
        );
    }

    #[test]
    fn texts_move_out_of_the_attributes_and_are_capped() {
        let mut s = span_with(json!({
            "gen_ai.input.messages": "[{\"role\":\"user\",\"parts\":[]}]",
            "input.value": "duplicate",
            "gen_ai.output.messages": [{"role": "assistant"}],
            "keep": 1,
        }));
        take_texts(&mut s, 1000);
        assert_eq!(
            s.input.as_ref().unwrap().text,
            "[{\"role\":\"user\",\"parts\":[]}]"
        );
        assert_eq!(
            s.output.as_ref().unwrap().text,
            "[{\"role\":\"assistant\"}]"
        );
        assert_eq!(s.attributes.len(), 1);
        let mut s = span_with(json!({"gen_ai.prompt": "hello world"}));
        take_texts(&mut s, 5);
        let t = s.input.unwrap();
        assert_eq!((t.text.as_str(), t.original_len), ("hello", 11));
    }

    #[test]
    fn flattened_messages_become_a_list() {
        let mut s = span_with(json!({
            "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "hi",
            "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "be brief",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "hello",
            "llm.input_messages.0.message.role": "user",
        }));
        take_texts(&mut s, 10_000);
        let input: Value = serde_json::from_str(&s.input.unwrap().text).unwrap();
        assert_eq!(
            input,
            json!([{"role":"system","content":"be brief"},{"role":"user","content":"hi"}])
        );
        let output: Value = serde_json::from_str(&s.output.unwrap().text).unwrap();
        assert_eq!(output, json!([{"role":"assistant","content":"hello"}]));
        assert!(s.attributes.is_empty(), "{:?}", s.attributes);

        let mut s = span_with(json!({
            "llm.input_messages.0.message.role": "user",
            "llm.input_messages.0.message.content": "q",
            "input.value": "q",
        }));
        take_texts(&mut s, 10_000);
        let input: Value = serde_json::from_str(&s.input.unwrap().text).unwrap();
        assert_eq!(input, json!([{"role":"user","content":"q"}]));
    }
}
