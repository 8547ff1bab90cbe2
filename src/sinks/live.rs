//! The live tail: what was just committed, fanned out to `GET /v1/stream` subscribers.
//! A ring of the last items greets new subscribers; a subscriber that falls too far
//! behind is dropped (the broadcast channel never blocks the writer).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::model::{Event, Record, Span, StatusCode};
use crate::pipeline::WriteHook;
use crate::store::write::WriteEffect;
use crate::util::time::format_ns;

/// Items replayed to a new subscriber.
pub const REPLAY: usize = 100;
/// Items a subscriber may fall behind before it is dropped.
const CHANNEL_CAPACITY: usize = 1024;
/// Characters of input/output text shown in the stream.
const PREVIEW_CHARS: usize = 200;

/// One line of the live tail (a summary; the full record is in the store).
#[derive(Clone, Debug, Serialize)]
pub struct LiveItem {
    pub seq: u64,
    /// `span` or `event`.
    pub record: &'static str,
    /// The span's kind (llm_call, tool_call, ...) or the event's type (error, custom, log).
    pub kind: &'static str,
    pub level: &'static str,
    pub time: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    pub source: &'static str,
}

/// Severity names in increasing order; `level` filters keep this one and above.
pub const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "fatal"];

/// The canonical level of a severity text (OpenTelemetry and log-library spellings).
pub fn normalize_level(s: &str) -> &'static str {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" | "trace2" | "trace3" | "trace4" => "trace",
        "debug" | "debug2" | "debug3" | "debug4" => "debug",
        "warn" | "warning" | "warn2" | "warn3" | "warn4" => "warn",
        "error" | "err" | "error2" | "error3" | "error4" => "error",
        "fatal" | "critical" | "crit" | "panic" | "emergency" | "alert" => "fatal",
        _ => "info",
    }
}

pub fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(2)
}

fn preview(s: &str) -> String {
    match s.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

fn span_item(s: &Span) -> LiveItem {
    LiveItem {
        seq: 0,
        record: "span",
        kind: s.kind.as_str(),
        level: if s.status == StatusCode::Error {
            "error"
        } else {
            "info"
        },
        time: format_ns(s.start_ns),
        name: s.name.clone(),
        trace_id: Some(s.trace_id.to_hex()),
        span_id: Some(s.span_id.to_hex()),
        agent_id: s.agent_id.clone(),
        session_id: s.session_id.clone(),
        status: Some(s.status.as_str()),
        duration_ms: s.latency_ms(),
        provider: s.provider.clone(),
        model: s.response_model.clone().or_else(|| s.request_model.clone()),
        input_tokens: s.input_tokens,
        output_tokens: s.output_tokens,
        cost_usd: s.cost_usd,
        tool_name: s.tool_name.clone(),
        error_type: s.error_type.clone(),
        category: None,
        message: s.status_message.clone(),
        input: s.input.as_ref().map(|t| preview(&t.text)),
        output: s.output.as_ref().map(|t| preview(&t.text)),
        source: s.source,
    }
}

fn event_item(e: &Event) -> LiveItem {
    LiveItem {
        seq: 0,
        record: "event",
        kind: e.event_type.as_str(),
        level: normalize_level(&e.severity),
        time: format_ns(e.time_ns),
        name: e.name.clone(),
        trace_id: e.trace_id.map(|t| t.to_hex()),
        span_id: e.span_id.map(|s| s.to_hex()),
        agent_id: e.agent_id.clone(),
        session_id: e.session_id.clone(),
        status: None,
        duration_ms: None,
        provider: None,
        model: None,
        input_tokens: None,
        output_tokens: None,
        cost_usd: None,
        tool_name: None,
        error_type: None,
        category: e.category.clone(),
        message: e.message.as_deref().map(preview),
        input: None,
        output: None,
        source: e.source,
    }
}

/// The live item for a record; metric points are not streamed.
pub fn item_of(r: &Record) -> Option<LiveItem> {
    match r {
        Record::Span(s) => Some(span_item(s)),
        Record::Event(e) => Some(event_item(e)),
        Record::Metric(_) => None,
    }
}

/// What a subscriber asked to see.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamFilter {
    /// Span kinds or event types; `error` also matches failed spans. Empty: everything.
    pub kinds: Vec<String>,
    pub agent: Option<String>,
    /// Lowest level shown.
    pub min_level: Option<usize>,
}

impl StreamFilter {
    pub fn matches(&self, item: &LiveItem) -> bool {
        if !self.kinds.is_empty()
            && !self
                .kinds
                .iter()
                .any(|k| k == item.kind || (k == "error" && item.level == "error"))
        {
            return false;
        }
        if let Some(a) = &self.agent
            && item.agent_id.as_deref() != Some(a.as_str())
        {
            return false;
        }
        if let Some(min) = self.min_level
            && level_rank(item.level) < min
        {
            return false;
        }
        true
    }
}

struct Ring {
    items: VecDeque<Arc<LiveItem>>,
    next_seq: u64,
}

/// The fan-out point: fed by the writer after each commit, read by stream subscribers.
pub struct LiveHub {
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<LiveItem>>,
    closed: watch::Sender<bool>,
    dropped: AtomicU64,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveHub {
    pub fn new() -> Self {
        LiveHub {
            ring: Mutex::new(Ring {
                items: VecDeque::with_capacity(REPLAY),
                next_seq: 1,
            }),
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            closed: watch::channel(false).0,
            dropped: AtomicU64::new(0),
        }
    }

    /// Counts a subscriber disconnected for falling behind.
    pub fn note_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The last items (oldest first) and a receiver for what follows, with no gap between them.
    pub fn subscribe(&self) -> (Vec<Arc<LiveItem>>, broadcast::Receiver<Arc<LiveItem>>) {
        match self.ring.lock() {
            Ok(ring) => (ring.items.iter().cloned().collect(), self.tx.subscribe()),
            Err(_) => (Vec::new(), self.tx.subscribe()),
        }
    }

    /// Resolves when the daemon is shutting down, so open streams end and do not hold it up.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub fn close(&self) {
        let _ = self.closed.send(true);
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    fn publish(&self, items: impl Iterator<Item = LiveItem>) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        for mut item in items {
            item.seq = ring.next_seq;
            ring.next_seq += 1;
            let item = Arc::new(item);
            if ring.items.len() == REPLAY {
                ring.items.pop_front();
            }
            ring.items.push_back(item.clone());
            // No receivers is not an error; a full channel drops the oldest for laggards.
            let _ = self.tx.send(item);
        }
    }
}

/// `/metrics` view of the hub: subscribers now, and those dropped for being slow.
#[derive(Debug)]
pub struct LiveHubCollector(pub Arc<LiveHub>);

impl std::fmt::Debug for LiveHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveHub")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

impl Collector for LiveHubCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        ConstGauge::new(self.0.subscribers() as i64).encode(enc.encode_descriptor(
            "openclaw_trace_stream_subscribers",
            "Clients following /v1/stream",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(self.0.dropped.load(Ordering::Relaxed)).encode(enc.encode_descriptor(
            "openclaw_trace_stream_dropped_subscribers",
            "Stream clients disconnected for falling behind",
            None,
            MetricType::Counter,
        )?)
    }
}

impl WriteHook for LiveHub {
    fn after_commit(&self, records: &[Record], effects: &[WriteEffect]) {
        let new = records
            .iter()
            .zip(effects)
            .filter_map(|(r, effect)| match effect {
                WriteEffect::Inserted if !matches!(r, Record::Metric(_)) => Some(Shown::Record(r)),
                // A span reported in pieces shows again when it ends or fails, with all it has.
                WriteEffect::Merged(m) => {
                    let change = effect.span_change(r)?;
                    (change.became(|s| s.end_ns.is_some())
                        || change.became(|s| s.status == StatusCode::Error))
                    .then_some(Shown::Row(&m.after))
                }
                _ => None,
            });
        if self.subscribers() == 0 {
            // Nobody is watching: only what the replay ring keeps is worth building.
            let new: Vec<Shown> = new.collect();
            let skip = new.len().saturating_sub(REPLAY);
            self.publish(new.into_iter().skip(skip).filter_map(Shown::item));
        } else {
            self.publish(new.filter_map(Shown::item));
        }
    }
}

/// What a commit shows in the tail: a new record, or a merged span's stored row.
enum Shown<'a> {
    Record(&'a Record),
    Row(&'a Span),
}

impl Shown<'_> {
    fn item(self) -> Option<LiveItem> {
        match self {
            Shown::Record(r) => item_of(r),
            Shown::Row(s) => Some(span_item(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventType, SpanId, SpanKind, TraceId};

    fn err_event(agent: &str) -> Record {
        let mut e = Event::new(EventType::Error, "Boom".into(), 1);
        e.agent_id = Some(agent.into());
        Record::Event(Box::new(e))
    }

    fn span(kind: SpanKind) -> Record {
        Record::Span(Box::new(Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "x".into(),
            kind,
            1,
        )))
    }

    #[test]
    fn replay_keeps_the_last_hundred_and_skips_duplicates() {
        let hub = LiveHub::new();
        let recs: Vec<Record> = (0..150).map(|_| span(SpanKind::ToolCall)).collect();
        let mut effects = vec![WriteEffect::Inserted; 150];
        effects[149] = WriteEffect::Duplicate;
        hub.after_commit(&recs, &effects);
        let (replay, _rx) = hub.subscribe();
        assert_eq!(replay.len(), REPLAY);
        assert_eq!(replay.last().unwrap().seq, 100);
    }

    #[test]
    fn live_items_reach_subscribers_and_laggards_are_dropped() {
        let hub = LiveHub::new();
        let (_, mut rx) = hub.subscribe();
        hub.after_commit(&[err_event("a")], &[WriteEffect::Inserted]);
        let got = rx.try_recv().unwrap();
        assert_eq!(got.kind, "error");
        assert_eq!(got.level, "error");
        let recs: Vec<Record> = (0..CHANNEL_CAPACITY + 10)
            .map(|_| span(SpanKind::Other))
            .collect();
        hub.after_commit(&recs, &vec![WriteEffect::Inserted; recs.len()]);
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn filters() {
        let e = item_of(&err_event("a")).unwrap();
        let s = item_of(&span(SpanKind::LlmCall)).unwrap();
        let by_kind = StreamFilter {
            kinds: vec!["error".into()],
            ..Default::default()
        };
        assert!(by_kind.matches(&e));
        assert!(!by_kind.matches(&s));
        let by_agent = StreamFilter {
            agent: Some("a".into()),
            ..Default::default()
        };
        assert!(by_agent.matches(&e));
        assert!(!by_agent.matches(&s));
        let by_level = StreamFilter {
            min_level: Some(level_rank("warn")),
            ..Default::default()
        };
        assert!(by_level.matches(&e));
        assert!(!by_level.matches(&s));
        assert_eq!(normalize_level("WARNING"), "warn");
        assert_eq!(normalize_level("critical"), "fatal");
    }
}
