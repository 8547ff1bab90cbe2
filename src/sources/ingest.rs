//! The native JSON capture API (a drop-in for the Go openclaw-trace): turns
//! request bodies into records, or into an error naming the item and field.

use std::borrow::Cow;
use std::cell::RefCell;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{
    CappedText, CostSource, Event, EventType, Record, Span, SpanId, SpanKind, StatusCode, TraceId,
    now_ns,
};
use crate::settings::{Setting, parse_bool, parse_bytes};

#[derive(Clone, Debug, PartialEq)]
pub struct IngestConfig {
    pub max_text_bytes: usize,
    /// `OCT_TRACE_VERBOSE`: texts kept up to [`VERBOSE_TEXT_BYTES`] instead.
    pub verbose: bool,
}

/// What verbose capture keeps of each input and output text (GoClaw's verbose limit).
pub const VERBOSE_TEXT_BYTES: usize = 200 * 1024;

impl IngestConfig {
    /// Bytes kept of each input or output text (LLM messages, tool arguments and results).
    pub fn text_limit(&self) -> usize {
        if self.verbose {
            VERBOSE_TEXT_BYTES.max(self.max_text_bytes)
        } else {
            self.max_text_bytes
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_text_bytes: 16384,
            verbose: false,
        }
    }
}

pub const SETTINGS: &[Setting<IngestConfig>] = &[
    Setting {
        name: "max_text_bytes",
        env: "OCT_MAX_TEXT_BYTES",
        default: "16384",
        help: "Input/output text kept per span, in bytes (cut on a UTF-8 boundary; the original length is kept)",
        set: |c, v| {
            c.max_text_bytes = parse_bytes(v)? as usize;
            Ok(())
        },
    },
    Setting {
        name: "trace_verbose",
        env: "OCT_TRACE_VERBOSE",
        default: "false",
        help: "Verbose capture, for debugging: keep LLM and tool input and output up to 200 KiB each instead of OCT_MAX_TEXT_BYTES (fills the size cap faster)",
        set: |c, v| {
            c.verbose = parse_bool(v)?;
            Ok(())
        },
    },
];

/// A rejected body: which item of a batch (if any), which field, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    fn body(message: impl Into<String>) -> Self {
        FieldError {
            item: None,
            field: None,
            message: message.into(),
        }
    }
}

/// Splits a body into items: one JSON object, a JSON array of objects, or NDJSON.
pub fn split_items(body: &[u8]) -> Result<Vec<Map<String, Value>>, FieldError> {
    split_objects(body)
}

/// One item's fields in the order sent, keys borrowed from the body when they need no
/// unescaping: parsing into a map allocated every key and a tree node per few fields,
/// which was most of the capture endpoints' CPU.
pub struct ItemFields<'a>(Vec<(Cow<'a, str>, Value)>);

/// `split_items`, generic over how an object is kept.
fn split_objects<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<Vec<T>, FieldError> {
    if std::str::from_utf8(body).is_err() {
        return Err(FieldError::body("body is not valid UTF-8"));
    }
    let mut values: Vec<TopValue<T>> = Vec::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<TopValue<T>>() {
        match v {
            Ok(v) => values.push(v),
            Err(e) => {
                return Err(FieldError {
                    item: (!values.is_empty()).then_some(values.len()),
                    field: None,
                    message: format!("invalid JSON: {e}"),
                });
            }
        }
    }
    let values: Vec<Element<T>> = match values.len() {
        0 => return Err(FieldError::body("empty body")),
        1 => match values.pop() {
            Some(TopValue::Array(items)) => items,
            Some(TopValue::One(v)) => vec![v],
            None => Vec::new(),
        },
        _ => values
            .into_iter()
            .map(|v| match v {
                TopValue::One(v) => v,
                TopValue::Array(_) => Element::Other("an array"),
            })
            .collect(),
    };
    if values.is_empty() {
        return Err(FieldError::body("empty batch"));
    }
    let batch = values.len() > 1;
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Element::Object(m) => Ok(m),
            Element::Other(type_name) => Err(FieldError {
                item: batch.then_some(i),
                field: None,
                message: format!("expected a JSON object, got {type_name}"),
            }),
        })
        .collect()
}

/// A top-level JSON value of a body: an array of values, or one value.
enum TopValue<T> {
    Array(Vec<Element<T>>),
    One(Element<T>),
}

/// A value that should be an object; anything else is kept only by its type name.
enum Element<T> {
    Object(T),
    Other(&'static str),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TopValue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor::<T, true>(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Element<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ElementVisitor::<T, false>(PhantomData))
            .map(|top| match top {
                TopValue::One(e) => e,
                TopValue::Array(_) => Element::Other("an array"),
            })
    }
}

/// Visits one value; `TOP` keeps an array's elements, elsewhere an array is just "an array".
struct ElementVisitor<T, const TOP: bool>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const TOP: bool> Visitor<'de> for ElementVisitor<T, TOP> {
    type Value = TopValue<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(|t| TopValue::One(Element::Object(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if TOP {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(e) = seq.next_element::<Element<T>>()? {
                items.push(e);
            }
            return Ok(TopValue::Array(items));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(TopValue::One(Element::Other("an array")))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("null")))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("a boolean")))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("a number")))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("a number")))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("a number")))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(TopValue::One(Element::Other("a string")))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ItemFields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldsVisitor<'a> {
            type Value = ItemFields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16).min(64));
                while let Some(FieldKey(k)) = map.next_key::<FieldKey<'a>>()? {
                    fields.push((k, map.next_value::<Value>()?));
                }
                Ok(ItemFields(fields))
            }
        }
        d.deserialize_map(FieldsVisitor(PhantomData))
    }
}

/// An object key, borrowed from the body unless it had escapes.
struct FieldKey<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for FieldKey<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = FieldKey<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldKey(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(FieldKey(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor(PhantomData))
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Typed access to one item's fields, with errors that name the field.
/// Each field is read once: reading takes the value out, so texts move into the
/// record instead of being copied (this runs for every captured item).
pub struct Fields<'a> {
    fields: RefCell<ItemFields<'a>>,
    item: Option<usize>,
}

impl<'a> Fields<'a> {
    pub fn new(fields: ItemFields<'a>, item: Option<usize>) -> Self {
        Fields {
            fields: RefCell::new(fields),
            item,
        }
    }

    pub fn err(&self, field: &str, message: impl Into<String>) -> FieldError {
        FieldError {
            item: self.item,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn get(&self, k: &str) -> Option<Value> {
        // The last occurrence wins, as in a map; taken, leaving null behind.
        let mut fields = self.fields.borrow_mut();
        let (_, v) = fields.0.iter_mut().rev().find(|(key, _)| key == k)?;
        (!v.is_null()).then(|| v.take())
    }

    pub fn str_opt(&self, k: &str) -> Result<Option<String>, FieldError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(k, format!("expected a string, got {}", type_name(&v)))),
        }
    }

    pub fn str_req(&self, k: &str) -> Result<String, FieldError> {
        self.str_opt(k)?
            .ok_or_else(|| self.err(k, "required field is missing or empty"))
    }

    /// A whole number from 0 to `MAX_COUNT` (an integral float such as `12.0` is accepted).
    pub fn count_opt(&self, k: &str) -> Result<Option<i64>, FieldError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    if (0..=MAX_COUNT).contains(&i) {
                        return Ok(Some(i));
                    }
                } else if let Some(f) = n.as_f64()
                    && f >= 0.0
                    && f.fract() == 0.0
                    && f <= MAX_COUNT as f64
                {
                    return Ok(Some(f as i64));
                }
                Err(self.err(
                    k,
                    format!("expected a whole number from 0 to {MAX_COUNT}, got {n}"),
                ))
            }
            Some(v) => Err(self.err(
                k,
                format!(
                    "expected a non-negative whole number, got {}",
                    type_name(&v)
                ),
            )),
        }
    }

    pub fn number_opt(&self, k: &str) -> Result<Option<f64>, FieldError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                _ => Err(self.err(k, format!("expected a non-negative number, got {n}"))),
            },
            Some(v) => Err(self.err(k, format!("expected a number, got {}", type_name(&v)))),
        }
    }

    /// Any finite number (a score may be negative).
    pub fn score_opt(&self, k: &str) -> Result<Option<f64>, FieldError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(self.err(k, format!("expected a finite number, got {n}"))),
            },
            Some(v) => Err(self.err(k, format!("expected a number, got {}", type_name(&v)))),
        }
    }

    pub fn timestamp_opt(&self, k: &str) -> Result<Option<i64>, FieldError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => crate::util::time::parse_timestamp_json(&v)
                .map(Some)
                .ok_or_else(|| self.err(k, "expected an RFC 3339 timestamp or unix milliseconds")),
        }
    }

    pub fn trace_id_opt(&self, k: &str) -> Result<Option<TraceId>, FieldError> {
        match self.str_opt(k)? {
            None => Ok(None),
            Some(s) => match TraceId::parse_hex(&s) {
                Some(t) if !t.is_zero() => Ok(Some(t)),
                _ => Err(self.err(k, "expected 32 hex digits, not all zero")),
            },
        }
    }

    pub fn span_id_opt(&self, k: &str) -> Result<Option<SpanId>, FieldError> {
        match self.str_opt(k)? {
            None => Ok(None),
            Some(s) => match SpanId::parse_hex(&s) {
                Some(t) if !t.is_zero() => Ok(Some(t)),
                _ => Err(self.err(k, "expected 16 hex digits, not all zero")),
            },
        }
    }

    /// An object, or (as the Go version sent it) a JSON-encoded string of one.
    /// A string that is not a JSON object is kept under `metadata`.
    pub fn object_opt(&self, k: &str) -> Result<Map<String, Value>, FieldError> {
        match self.get(k) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(Value::Object(m)) => Ok(m),
                _ => {
                    let mut m = Map::new();
                    m.insert(k.to_string(), Value::String(s));
                    Ok(m)
                }
            },
            Some(v) => Err(self.err(
                k,
                format!("expected an object or a JSON string, got {}", type_name(&v)),
            )),
        }
    }

    pub fn string_list_opt(&self, k: &str) -> Result<Vec<String>, FieldError> {
        match self.get(k) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s]),
            Some(Value::Array(a)) => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => {
                        Err(self.err(k, format!("expected strings, got {}", type_name(&other))))
                    }
                })
                .collect(),
            Some(v) => Err(self.err(
                k,
                format!("expected a list of strings, got {}", type_name(&v)),
            )),
        }
    }
}

/// Ids, timestamps and owners shared by every native record.
struct Common {
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    timestamp: Option<i64>,
    session_id: Option<String>,
    agent_id: Option<String>,
    user_id: Option<String>,
}

fn common(f: &Fields) -> Result<Common, FieldError> {
    Ok(Common {
        trace_id: f.trace_id_opt("trace_id")?,
        span_id: f.span_id_opt("span_id")?,
        timestamp: f.timestamp_opt("timestamp")?,
        session_id: f.str_opt("session_id")?,
        agent_id: f.str_opt("agent_id")?,
        user_id: f.str_opt("user_id")?,
    })
}

fn status_from(s: &str) -> StatusCode {
    match s.to_ascii_lowercase().as_str() {
        "ok" | "success" | "succeeded" | "completed" | "done" => StatusCode::Ok,
        "unset" | "unknown" => StatusCode::Unset,
        _ => StatusCode::Error,
    }
}

/// `POST /v1/traces` (native): an LLM call, or any span when `kind` says so.
/// The largest token count taken: sums of many stay far from i64's end (SQLite's
/// integer sums in the usage rollups fail on overflow).
pub const MAX_COUNT: i64 = 1_000_000_000_000;

/// The largest number of milliseconds taken (their nanoseconds fit in i64).
const MAX_MS: f64 = 9.2e12;

pub fn span_from(f: &Fields, cfg: &IngestConfig, received_ns: i64) -> Result<Span, FieldError> {
    let c = common(f)?;
    let kind = match f.str_opt("kind")? {
        None => SpanKind::LlmCall,
        Some(k) => SpanKind::parse(&k).ok_or_else(|| {
            f.err(
                "kind",
                "expected one of llm_call, tool_call, agent_run, embedding, event, other",
            )
        })?,
    };
    let needs_model = matches!(kind, SpanKind::LlmCall | SpanKind::Embedding);
    let (provider, model) = if needs_model {
        (Some(f.str_req("provider")?), Some(f.str_req("model")?))
    } else {
        (f.str_opt("provider")?, f.str_opt("model")?)
    };
    let tool_name = f.str_opt("tool_name")?;
    let name = match f.str_opt("name")? {
        Some(n) => n,
        None => match kind {
            SpanKind::LlmCall => format!("chat {}", model.as_deref().unwrap_or("")),
            SpanKind::Embedding => format!("embeddings {}", model.as_deref().unwrap_or("")),
            SpanKind::ToolCall => format!(
                "execute_tool {}",
                tool_name
                    .as_deref()
                    .ok_or_else(|| f.err("name", "a tool_call needs name or tool_name"))?
            ),
            _ => return Err(f.err("name", "required for this kind")),
        },
    };
    let latency_ms = f.number_opt("latency_ms")?;
    // Milliseconds whose nanoseconds fit in i64 (under 292 years).
    if latency_ms.is_some_and(|ms| ms > MAX_MS) {
        return Err(f.err("latency_ms", "expected milliseconds up to 9200000000000"));
    }
    let latency_ns = latency_ms.map(|ms| (ms * 1e6) as i64).unwrap_or(0);
    // Without a timestamp the call is taken to have just ended; with one, it is its start.
    let (start_ns, end_ns) = match c.timestamp {
        Some(t) => (t, t.saturating_add(latency_ns)),
        None => (received_ns.saturating_sub(latency_ns), received_ns),
    };
    let trace_id = c.trace_id.unwrap_or_else(TraceId::generate);
    let span_id = c.span_id.unwrap_or_else(SpanId::generate);
    let mut span = Span::new(trace_id, span_id, name, kind, start_ns);
    span.end_ns = Some(end_ns);
    span.parent_span_id = f.span_id_opt("parent_span_id")?;
    span.parent_trace_id = f.trace_id_opt("parent_trace_id")?;
    span.error_type = f.str_opt("error_type")?;
    span.status = match f.str_opt("status")? {
        Some(s) => {
            let code = status_from(&s);
            if code == StatusCode::Error {
                span.status_message = Some(s);
            }
            code
        }
        None if span.error_type.is_some() => StatusCode::Error,
        None => StatusCode::Ok,
    };
    if let Some(m) = f.str_opt("status_message")? {
        span.status_message = Some(m);
    }
    span.session_id = c.session_id;
    span.agent_id = c.agent_id;
    span.user_id = c.user_id;
    span.provider = provider;
    span.request_model = model.clone();
    span.response_model = f.str_opt("response_model")?.or(model);
    span.operation = f.str_opt("operation")?.or_else(|| match kind {
        SpanKind::LlmCall => Some("chat".into()),
        SpanKind::Embedding => Some("embeddings".into()),
        SpanKind::ToolCall => Some("execute_tool".into()),
        SpanKind::AgentRun => Some("invoke_agent".into()),
        _ => None,
    });
    span.input_tokens = f
        .count_opt("prompt_tokens")?
        .or(f.count_opt("input_tokens")?);
    span.output_tokens = f
        .count_opt("completion_tokens")?
        .or(f.count_opt("output_tokens")?);
    span.cache_read_tokens = f.count_opt("cache_read_tokens")?;
    span.cache_write_tokens = f.count_opt("cache_write_tokens")?;
    span.reasoning_tokens = f.count_opt("reasoning_tokens")?;
    span.total_tokens =
        f.count_opt("total_tokens")?
            .or_else(|| match (span.input_tokens, span.output_tokens) {
                (None, None) => None,
                (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
            });
    span.cost_usd = f.number_opt("cost_usd")?;
    span.cost_source = span.cost_usd.map(|_| CostSource::Reported);
    span.finish_reasons = f.string_list_opt("finish_reasons")?;
    span.tool_name = tool_name;
    span.tool_call_id = f.str_opt("tool_call_id")?;
    span.input = f
        .str_opt("input_text")?
        .map(|t| CappedText::new(t, cfg.text_limit()));
    span.output = f
        .str_opt("output_text")?
        .map(|t| CappedText::new(t, cfg.text_limit()));
    span.attributes = f.object_opt("metadata")?;
    for (k, v) in f.object_opt("attributes")? {
        span.attributes.insert(k, v);
    }
    span.source = "api";
    Ok(span)
}

fn event_common(
    f: &Fields,
    ty: EventType,
    name: String,
    received_ns: i64,
) -> Result<Event, FieldError> {
    let c = common(f)?;
    let mut e = Event::new(ty, name, c.timestamp.unwrap_or(received_ns));
    e.trace_id = c.trace_id;
    e.span_id = c.span_id;
    e.session_id = c.session_id;
    e.agent_id = c.agent_id;
    e.user_id = c.user_id;
    if let Some(s) = f.str_opt("severity")? {
        e.severity = s.to_ascii_lowercase();
    }
    e.attributes = f.object_opt("metadata")?;
    for (k, v) in f.object_opt("attributes")? {
        e.attributes.insert(k, v);
    }
    e.source = "api";
    Ok(e)
}

/// `POST /v1/errors`.
pub fn error_from(f: &Fields, received_ns: i64) -> Result<Event, FieldError> {
    let error_type = f.str_req("error_type")?;
    let message = f.str_req("message")?;
    let mut e = event_common(f, EventType::Error, error_type, received_ns)?;
    e.message = Some(message);
    e.stack_trace = f.str_opt("stack_trace")?;
    e.category = f.str_opt("category")?;
    Ok(e)
}

/// `POST /v1/events`: a custom named event.
pub fn custom_event_from(f: &Fields, received_ns: i64) -> Result<Event, FieldError> {
    let name = f.str_req("name")?;
    let mut e = event_common(f, EventType::Custom, name, received_ns)?;
    e.message = f.str_opt("message")?;
    e.category = f.str_opt("category")?;
    Ok(e)
}

/// `POST /v1/scores`: a named evaluation score on a run or one of its spans, stored as
/// the `gen_ai.evaluation.result` event.
pub fn score_from(f: &Fields, received_ns: i64) -> Result<Event, FieldError> {
    use crate::model::evaluation as ev;
    let name = f.str_req("name")?;
    if name.trim().is_empty() {
        return Err(f.err("name", "must not be empty"));
    }
    // Fields are taken as read: the common ones (ids, time) once, here.
    let mut e = event_common(f, EventType::Custom, ev::EVENT.into(), received_ns)?;
    if e.trace_id.is_none() {
        return Err(f.err(
            "trace_id",
            "required: the run (32 hex digits) the score is for",
        ));
    }
    let value = f.score_opt("value")?;
    let label = f.str_opt("label")?;
    if value.is_none() && label.is_none() {
        return Err(f.err("value", "a score needs a value (number), a label, or both"));
    }
    e.attributes.insert(ev::NAME.into(), name.into());
    if let Some(v) = value {
        e.attributes.insert(ev::SCORE_VALUE.into(), v.into());
    }
    if let Some(l) = label {
        e.attributes.insert(ev::SCORE_LABEL.into(), l.into());
    }
    if let Some(x) = f.str_opt("explanation")? {
        e.attributes.insert(ev::EXPLANATION.into(), x.into());
    }
    if let Some(r) = f.str_opt("response_id")? {
        e.attributes.insert(ev::RESPONSE_ID.into(), r.into());
    }
    e.category = Some("evaluation".into());
    Ok(e)
}

/// Which native endpoint a body was sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Traces,
    Errors,
    Events,
    Scores,
}

/// Parses a whole native body into records; all or nothing.
pub fn parse(
    endpoint: Endpoint,
    body: &[u8],
    cfg: &IngestConfig,
) -> Result<Vec<Record>, FieldError> {
    let items = split_objects::<ItemFields>(body)?;
    let batch = items.len() > 1;
    let now = now_ns();
    items
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let f = Fields::new(m, batch.then_some(i));
            Ok(match endpoint {
                Endpoint::Traces => Record::Span(Box::new(span_from(&f, cfg, now)?)),
                Endpoint::Errors => Record::Event(Box::new(error_from(&f, now)?)),
                Endpoint::Events => Record::Event(Box::new(custom_event_from(&f, now)?)),
                Endpoint::Scores => Record::Event(Box::new(score_from(&f, now)?)),
            })
        })
        .collect()
}

/// The id a client can use for each accepted record.
pub fn record_id(r: &Record) -> String {
    match r {
        Record::Span(s) => s.span_id.to_hex(),
        Record::Event(e) => e.uid.clone(),
        Record::Metric(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IngestConfig {
        IngestConfig::default()
    }

    #[test]
    fn go_body_parses() {
        let body =
            br#"{"provider":"openai","model":"gpt-4o","input_text":"hi","output_text":"hello",
            "prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"cost_usd":0.001,
            "latency_ms":1200,"status":"ok","error_type":"","metadata":"{\"k\":\"v\"}"}"#;
        let recs = parse(Endpoint::Traces, body, &cfg()).unwrap();
        let Record::Span(s) = &recs[0] else { panic!() };
        assert_eq!(s.kind, SpanKind::LlmCall);
        assert_eq!(s.name, "chat gpt-4o");
        assert_eq!(s.input_tokens, Some(10));
        assert_eq!(s.total_tokens, Some(15));
        assert_eq!(s.cost_source, Some(CostSource::Reported));
        assert_eq!(s.status, StatusCode::Ok);
        assert_eq!(s.attributes.get("k"), Some(&Value::String("v".into())));
        assert_eq!(s.end_ns.unwrap() - s.start_ns, 1_200_000_000);
    }

    #[test]
    fn errors_name_item_and_field() {
        let body = br#"[{"provider":"a","model":"b"},{"provider":"a","model":"b","prompt_tokens":"many"}]"#;
        let e = parse(Endpoint::Traces, body, &cfg()).unwrap_err();
        assert_eq!(e.item, Some(1));
        assert_eq!(e.field.as_deref(), Some("prompt_tokens"));
        let e = parse(Endpoint::Traces, br#"{"model":"b"}"#, &cfg()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("provider"));
        assert_eq!(e.item, None);
        let e = parse(Endpoint::Errors, br#"{"error_type":"x"}"#, &cfg()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("message"));
        let e = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","trace_id":"zz"}"#,
            &cfg(),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("trace_id"));
    }

    #[test]
    fn ndjson_and_arrays_are_batches() {
        let nd = b"{\"name\":\"a\"}\n{\"name\":\"b\"}\n";
        assert_eq!(parse(Endpoint::Events, nd, &cfg()).unwrap().len(), 2);
        let arr = br#"[{"name":"a"},{"name":"b"},{"name":"c"}]"#;
        assert_eq!(parse(Endpoint::Events, arr, &cfg()).unwrap().len(), 3);
        assert!(parse(Endpoint::Events, b"[]", &cfg()).is_err());
        assert!(parse(Endpoint::Events, b"", &cfg()).is_err());
        assert!(parse(Endpoint::Events, b"[1]", &cfg()).is_err());
    }

    #[test]
    fn keys_with_escapes_duplicates_and_non_objects() {
        // An escaped key is the key it spells; a repeated key keeps its last value, as a map would.
        let body = br#"{"pro\u0076ider":"a","model":"x","model":"b","model":null}"#;
        let r = parse(Endpoint::Traces, body, &cfg());
        let e = r.unwrap_err();
        assert_eq!(e.field.as_deref(), Some("model"));
        let body = br#"{"pro\u0076ider":"a","model":"x","model":"b"}"#;
        let r = parse(Endpoint::Traces, body, &cfg()).unwrap();
        let Record::Span(s) = &r[0] else { panic!() };
        assert_eq!(s.provider.as_deref(), Some("a"));
        assert_eq!(s.request_model.as_deref(), Some("b"));
        let e = parse(Endpoint::Events, br#"[{"name":"a"}, 5]"#, &cfg()).unwrap_err();
        assert_eq!(
            (e.item, e.message.as_str()),
            (Some(1), "expected a JSON object, got a number")
        );
        let e = parse(Endpoint::Events, b"{\"name\":\"a\"}\n[1]\n", &cfg()).unwrap_err();
        assert_eq!(
            (e.item, e.message.as_str()),
            (Some(1), "expected a JSON object, got an array")
        );
        let e = parse(
            Endpoint::Events,
            br#"[{"name":"a"},[{"name":"b"}]]"#,
            &cfg(),
        )
        .unwrap_err();
        assert_eq!(
            (e.item, e.message.as_str()),
            (Some(1), "expected a JSON object, got an array")
        );
        let e = parse(Endpoint::Events, b"{\"name\":\"a\"}\n{\"name\":", &cfg()).unwrap_err();
        assert_eq!(e.item, Some(1));
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        let deep = format!(
            "{{\"name\":\"a\",\"metadata\":{}1{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(parse(Endpoint::Events, deep.as_bytes(), &cfg()).is_err());
        // The same splitter serves the OpenClaw endpoint with maps.
        let items = split_items(br#"[{"kind":"a"},{"kind":"b"}]"#).unwrap();
        assert_eq!(items[1]["kind"], "b");
    }

    #[test]
    fn status_and_error_type() {
        let r = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","error_type":"timeout"}"#,
            &cfg(),
        )
        .unwrap();
        let Record::Span(s) = &r[0] else { panic!() };
        assert_eq!(s.status, StatusCode::Error);
        let r = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","status":"rate_limited"}"#,
            &cfg(),
        )
        .unwrap();
        let Record::Span(s) = &r[0] else { panic!() };
        assert_eq!(s.status, StatusCode::Error);
        assert_eq!(s.status_message.as_deref(), Some("rate_limited"));
    }

    #[test]
    fn text_is_capped() {
        let c = IngestConfig {
            max_text_bytes: 4,
            verbose: false,
        };
        let r = parse(
            Endpoint::Traces,
            r#"{"provider":"a","model":"b","input_text":"ééé"}"#.as_bytes(),
            &c,
        )
        .unwrap();
        let Record::Span(s) = &r[0] else { panic!() };
        let t = s.input.as_ref().unwrap();
        assert_eq!(t.text, "éé");
        assert_eq!(t.original_len, 6);
    }

    #[test]
    fn huge_latency_is_refused_not_overflowed() {
        // Found by schemathesis: a start in 2026 plus ~1e21 ns overflowed i64.
        let e = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","timestamp":"2026-01-01T00:00:00Z","latency_ms":1e15}"#,
            &cfg(),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("latency_ms"));
        let ok = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","timestamp":"2200-01-01T00:00:00Z","latency_ms":9.2e12}"#,
            &cfg(),
        )
        .unwrap();
        let Record::Span(s) = &ok[0] else { panic!() };
        assert_eq!(s.end_ns, Some(i64::MAX));
        let e = parse(
            Endpoint::Traces,
            br#"{"provider":"a","model":"b","prompt_tokens":9223372036854775807,"completion_tokens":1}"#,
            &cfg(),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("prompt_tokens"));
    }

    #[test]
    fn tool_call_without_model() {
        let r = parse(
            Endpoint::Traces,
            br#"{"kind":"tool_call","tool_name":"ls"}"#,
            &cfg(),
        )
        .unwrap();
        let Record::Span(s) = &r[0] else { panic!() };
        assert_eq!(s.name, "execute_tool ls");
        assert!(parse(Endpoint::Traces, br#"{"kind":"agent_run"}"#, &cfg()).is_err());
        assert!(
            parse(
                Endpoint::Traces,
                br#"{"kind":"bogus","provider":"a","model":"b"}"#,
                &cfg()
            )
            .is_err()
        );
    }
}
