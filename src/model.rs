//! The one data model every source produces and every sink reads.
//! OpenTelemetry-shaped so OTLP maps onto it without loss.

use serde::Serialize;
use serde_json::{Map, Value};

use std::sync::Arc;

/// Attributes shared by every item of one export (an OTLP resource): one map behind a
/// pointer, so each span does not carry, redact, serialize and free its own copy.
pub type SharedMap = Arc<Map<String, Value>>;

/// The empty resource most records have, shared instead of allocated per record.
pub fn empty_map() -> SharedMap {
    static EMPTY: std::sync::LazyLock<SharedMap> = std::sync::LazyLock::new(SharedMap::default);
    EMPTY.clone()
}

/// 16-byte trace id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);
/// 8-byte span id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A new time-ordered id (UUID v7 bytes), so fresh traces sort by creation.
    pub fn generate() -> Self {
        TraceId(*uuid::Uuid::now_v7().as_bytes())
    }
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        crate::util::hex::decode_into(s, &mut out).then_some(TraceId(out))
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(b).ok().map(TraceId)
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
    pub fn to_hex(&self) -> String {
        crate::util::hex::encode(&self.0)
    }
}

impl SpanId {
    pub fn generate() -> Self {
        let b = *uuid::Uuid::new_v4().as_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&b[8..16]);
        if out == [0; 8] {
            out[7] = 1;
        }
        SpanId(out)
    }
    pub fn parse_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 8];
        crate::util::hex::decode_into(s, &mut out).then_some(SpanId(out))
    }
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 8]>::try_from(b).ok().map(SpanId)
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }
    pub fn to_hex(&self) -> String {
        crate::util::hex::encode(&self.0)
    }
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What a span stands for.
    SpanKind {
        LlmCall = "llm_call",
        ToolCall = "tool_call",
        AgentRun = "agent_run",
        Embedding = "embedding",
        Event = "event",
        Other = "other",
    }
);

string_enum!(
    /// OpenTelemetry's span status code.
    StatusCode { Unset = "unset", Ok = "ok", Error = "error" }
);

string_enum!(
    /// Where a cost figure came from. No variant means unknown: never a fake 0.
    CostSource { Reported = "reported", Computed = "computed" }
);

string_enum!(
    /// The three kinds of rows in the events table.
    EventType { Error = "error", Custom = "custom", Log = "log" }
);

string_enum!(
    MetricKind { Gauge = "gauge", Sum = "sum", Histogram = "histogram" }
);

/// Text kept up to a byte limit, with the original length remembered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CappedText {
    pub text: String,
    pub original_len: usize,
}

impl CappedText {
    /// Cuts on a UTF-8 boundary at or below `max` bytes.
    pub fn new(mut s: String, max: usize) -> Self {
        let original_len = s.len();
        if s.len() > max {
            let mut cut = max;
            while cut > 0 && !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        CappedText {
            text: s,
            original_len,
        }
    }
    pub fn truncated(&self) -> bool {
        self.original_len > self.text.len()
    }
}

/// One span: an LLM call, a tool call, an agent run, or anything else with a duration.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    /// Set on a root span that continues another trace (a sub-agent run, say).
    pub parent_trace_id: Option<TraceId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_ns: i64,
    pub end_ns: Option<i64>,
    pub status: StatusCode,
    pub status_message: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub total_tokens: Option<i64>,
    pub cache_read_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub cost_source: Option<CostSource>,
    /// The price table's figure, kept beside a reported `cost_usd` it differs from.
    pub cost_computed_usd: Option<f64>,
    pub finish_reasons: Vec<String>,
    pub tool_name: Option<String>,
    pub tool_call_id: Option<String>,
    pub error_type: Option<String>,
    pub input: Option<CappedText>,
    pub output: Option<CappedText>,
    pub attributes: Map<String, Value>,
    pub resource: SharedMap,
    /// Which source produced it (`api`, `otlp`, `openclaw`, ...).
    pub source: &'static str,
    /// Set when this record is one piece of a span reported in pieces: it is merged into
    /// the stored span instead of being skipped as a duplicate (see `store::write`).
    pub merge: Option<SpanMerge>,
}

/// How a span reported in pieces (by several sources or events) joins the stored one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanMerge {
    /// Names the same span across sources that cannot know each other's ids
    /// (an LLM response seen by a plugin and by a session transcript).
    pub key: Option<String>,
    /// The ids were made up by the source: on a key match the record joins the
    /// span that has real ids, and a stored provisional span moves to the real ids.
    pub provisional: bool,
}

impl Span {
    /// A span with only the required parts set; sources fill in the rest.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        name: String,
        kind: SpanKind,
        start_ns: i64,
    ) -> Self {
        Span {
            trace_id,
            span_id,
            parent_span_id: None,
            parent_trace_id: None,
            name,
            kind,
            start_ns,
            end_ns: None,
            status: StatusCode::Unset,
            status_message: None,
            agent_id: None,
            session_id: None,
            user_id: None,
            operation: None,
            provider: None,
            request_model: None,
            response_model: None,
            input_tokens: None,
            output_tokens: None,
            total_tokens: None,
            cache_read_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            cost_usd: None,
            cost_source: None,
            cost_computed_usd: None,
            finish_reasons: Vec::new(),
            tool_name: None,
            tool_call_id: None,
            error_type: None,
            input: None,
            output: None,
            attributes: Map::new(),
            resource: empty_map(),
            source: "api",
            merge: None,
        }
    }

    pub fn latency_ms(&self) -> Option<f64> {
        self.end_ns.map(|e| (e - self.start_ns) as f64 / 1e6)
    }
}

/// An error, a custom named event or a log record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Stable record id (UUID v7 text) so receivers can dedupe.
    pub uid: String,
    pub event_type: EventType,
    pub time_ns: i64,
    /// Custom event name, the error's type, or a log record's event name.
    pub name: String,
    pub severity: String,
    pub message: Option<String>,
    pub stack_trace: Option<String>,
    pub category: Option<String>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub attributes: Map<String, Value>,
    pub resource: SharedMap,
    pub source: &'static str,
}

impl Event {
    pub fn new(event_type: EventType, name: String, time_ns: i64) -> Self {
        Event {
            uid: uuid::Uuid::now_v7().to_string(),
            event_type,
            time_ns,
            name,
            severity: match event_type {
                EventType::Error => "error".into(),
                _ => "info".into(),
            },
            message: None,
            stack_trace: None,
            category: None,
            trace_id: None,
            span_id: None,
            agent_id: None,
            session_id: None,
            user_id: None,
            attributes: Map::new(),
            resource: empty_map(),
            source: "api",
        }
    }
}

/// A histogram's distribution.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub bounds: Vec<f64>,
    pub bucket_counts: Vec<u64>,
}

/// One sample of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    pub name: String,
    pub unit: String,
    pub kind: MetricKind,
    pub time_ns: i64,
    pub start_time_ns: Option<i64>,
    /// Gauge or sum value.
    pub value: Option<f64>,
    pub histogram: Option<Histogram>,
    /// `cumulative` or `delta`, for sums and histograms.
    pub temporality: Option<&'static str>,
    pub monotonic: Option<bool>,
    pub attributes: Map<String, Value>,
    pub resource: SharedMap,
    pub source: &'static str,
    /// A client may send this point again (an OTLP export retried): it is stored once
    /// per series and time, so a retried cumulative sum never counts twice.
    pub deduplicate: bool,
}

impl MetricPoint {
    pub fn gauge(
        name: impl Into<String>,
        unit: impl Into<String>,
        time_ns: i64,
        value: f64,
    ) -> Self {
        MetricPoint {
            name: name.into(),
            unit: unit.into(),
            kind: MetricKind::Gauge,
            time_ns,
            start_time_ns: None,
            value: Some(value),
            histogram: None,
            temporality: None,
            monotonic: None,
            attributes: Map::new(),
            resource: empty_map(),
            source: "host",
            deduplicate: false,
        }
    }
}

/// What flows through the pipeline into the store.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Span(Box<Span>),
    Event(Box<Event>),
    Metric(Box<MetricPoint>),
}

impl Record {
    /// A rough size in bytes once stored, to bound batches by volume as well as count.
    pub fn approx_bytes(&self) -> usize {
        // Per entry: the map node's share, the key and the value (measured: a queued
        // GenAI span with ~15 attributes held about 3.5 KB).
        let map = |m: &Map<String, Value>| {
            m.iter()
                .map(|(k, v)| MAP_ENTRY_BYTES + k.len() + value_bytes(v))
                .sum::<usize>()
        };
        match self {
            Record::Span(s) => {
                std::mem::size_of::<Span>()
                    + s.name.len()
                    + s.input.as_ref().map_or(0, |t| t.text.len())
                    + s.output.as_ref().map_or(0, |t| t.text.len())
                    + map(&s.attributes)
                    + map(&s.resource)
            }
            Record::Event(e) => {
                200 + e.message.as_ref().map_or(0, |m| m.len())
                    + e.stack_trace.as_ref().map_or(0, |m| m.len())
                    + map(&e.attributes)
            }
            Record::Metric(m) => {
                150 + map(&m.attributes) + m.histogram.as_ref().map_or(0, |h| h.bounds.len() * 16)
            }
        }
    }

    /// The resource (what produced the record), for a source that names the origin.
    pub fn resource_mut(&mut self) -> &mut SharedMap {
        match self {
            Record::Span(s) => &mut s.resource,
            Record::Event(e) => &mut e.resource,
            Record::Metric(m) => &mut m.resource,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::Span(_) => "span",
            Record::Event(_) => "event",
            Record::Metric(_) => "metric",
        }
    }
}

/// Heap bytes of one JSON map entry besides its key's and value's text, roughly.
const MAP_ENTRY_BYTES: usize = 112;

/// Heap bytes a JSON value holds, roughly (the queue's size bound counts them).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(|v| 32 + value_bytes(v)).sum(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| MAP_ENTRY_BYTES + k.len() + value_bytes(v))
            .sum(),
        _ => 0,
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Evaluation scores: OpenTelemetry's `gen_ai.evaluation.result` event (GenAI semantic
/// conventions v1.41). A score is stored as an event of this name on the run (and span)
/// it judges, so it is kept, shipped and exported like every other event.
pub mod evaluation {
    pub const EVENT: &str = "gen_ai.evaluation.result";
    pub const NAME: &str = "gen_ai.evaluation.name";
    pub const SCORE_VALUE: &str = "gen_ai.evaluation.score.value";
    pub const SCORE_LABEL: &str = "gen_ai.evaluation.score.label";
    pub const EXPLANATION: &str = "gen_ai.evaluation.explanation";
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_cuts_on_char_boundary() {
        let t = CappedText::new("héllo".into(), 2);
        assert_eq!(t.text, "h");
        assert_eq!(t.original_len, 6);
        assert!(t.truncated());
        let t = CappedText::new("abc".into(), 10);
        assert_eq!(t.text, "abc");
        assert!(!t.truncated());
        let t = CappedText::new("日本".into(), 5);
        assert_eq!(t.text, "日");
    }

    #[test]
    fn ids_roundtrip_hex() {
        let t = TraceId::generate();
        assert_eq!(TraceId::parse_hex(&t.to_hex()), Some(t));
        let s = SpanId::generate();
        assert_eq!(SpanId::parse_hex(&s.to_hex()), Some(s));
        assert!(TraceId::parse_hex("xyz").is_none());
        assert!(SpanId::parse_hex("0123456789abcdeg").is_none());
    }
}
