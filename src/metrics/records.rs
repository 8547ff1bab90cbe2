//! LLM, tool, agent and error metrics, fed from committed records (never from duplicates),
//! named after the OpenTelemetry GenAI metrics as Prometheus spells them.
//!
//! A span reported in pieces (`store::merge`) is counted from what each piece changed:
//! tokens and cost by how much they grew, the call itself once, when its outcome is
//! first known, with the status it has then.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Unit;
use serde_json::Value;

use super::{LabelCap, Registry};
use crate::model::{Event, EventType, Record, Span, SpanKind, StatusCode};
use crate::pipeline::WriteHook;
use crate::store::write::{SpanChange, WriteEffect};

type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// `gen_ai.client.token.usage` buckets from the GenAI semantic conventions.
pub const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// `gen_ai.client.operation.duration` buckets (seconds) from the GenAI semantic conventions.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
/// `gen_ai.server.time_to_first_token` buckets (seconds) from the GenAI semantic conventions.
pub const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Agent runs last longer than single calls.
pub const AGENT_RUN_BUCKETS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

fn token_histogram() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}
fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn ttft_histogram() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}
fn agent_run_histogram() -> Histogram {
    Histogram::new(AGENT_RUN_BUCKETS)
}

/// Bounded label values, one set per dimension.
#[derive(Debug)]
struct Caps {
    providers: LabelCap,
    models: LabelCap,
    operations: LabelCap,
    tools: LabelCap,
    agents: LabelCap,
    error_types: LabelCap,
    categories: LabelCap,
}

/// The metrics computed from captured records.
#[derive(Debug)]
pub struct RecordMetrics {
    token_usage: HistogramFamily,
    operation_duration: HistogramFamily,
    time_to_first_token: HistogramFamily,
    llm_calls: Family<Labels, Counter>,
    llm_tokens: Family<Labels, Counter>,
    llm_cost: Family<Labels, Counter<f64, AtomicU64>>,
    tool_calls: Family<Labels, Counter>,
    tool_errors: Family<Labels, Counter>,
    tool_duration: HistogramFamily,
    agent_runs: Family<Labels, Counter>,
    agent_run_duration: HistogramFamily,
    errors: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    caps: Caps,
    /// A reusable key buffer and the series of each LLM label set seen lately.
    llm_cache: Mutex<(String, HashMap<String, Arc<LlmSeries>>)>,
}

/// LLM label sets whose series are kept at hand (label values are capped, so few are live).
const LLM_SERIES_CACHED: usize = 256;

const TOKEN_TYPES: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];

/// One LLM label set's series, each created in its family on first use (so a series
/// appears in `/metrics` only once it has something to say).
#[derive(Debug, Default)]
struct LlmSeries {
    base: Labels,
    short: Labels,
    token_usage: [OnceLock<Histogram>; 2],
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    calls: [OnceLock<Counter>; StatusCode::ALL.len()],
    tokens: [OnceLock<Counter>; TOKEN_TYPES.len()],
    cost: OnceLock<Counter<f64, AtomicU64>>,
}

impl LlmSeries {
    /// The series of `family` for `labels`, cached in `slot`. Handles share their
    /// family's storage, so what is recorded through one shows in `/metrics`.
    /// The series of `family` for `labels` (plus `extra`, when given), cached in `slot`.
    /// Handles share their family's storage, so what is recorded through one shows in
    /// `/metrics`.
    fn handle<'a, M: Clone, C: Fn() -> M>(
        slot: &'a OnceLock<M>,
        family: &Family<Labels, M, C>,
        labels: &Labels,
        extra: Option<(&'static str, &str)>,
    ) -> &'a M {
        slot.get_or_init(|| {
            let mut l = labels.clone();
            l.extend(extra.map(|(name, value)| (name, value.to_string())));
            family.get_or_create(&l).clone()
        })
    }
}

impl RecordMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry, label_limit: usize) -> Self {
        let m = RecordMetrics {
            token_usage: Family::new_with_constructor(token_histogram),
            operation_duration: Family::new_with_constructor(duration_histogram),
            time_to_first_token: Family::new_with_constructor(ttft_histogram),
            llm_calls: Family::default(),
            llm_tokens: Family::default(),
            llm_cost: Family::default(),
            tool_calls: Family::default(),
            tool_errors: Family::default(),
            tool_duration: Family::new_with_constructor(duration_histogram),
            agent_runs: Family::default(),
            agent_run_duration: Family::new_with_constructor(agent_run_histogram),
            errors: Family::default(),
            events: Family::default(),
            caps: Caps {
                providers: LabelCap::new(label_limit),
                models: LabelCap::new(label_limit),
                operations: LabelCap::new(label_limit),
                tools: LabelCap::new(label_limit),
                agents: LabelCap::new(label_limit),
                error_types: LabelCap::new(label_limit),
                categories: LabelCap::new(label_limit),
            },
            llm_cache: Mutex::default(),
        };
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per LLM operation, by token type (gen_ai.client.token.usage)",
            m.token_usage.clone(),
        );
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "Duration of LLM operations (gen_ai.client.operation.duration)",
            Unit::Seconds,
            m.operation_duration.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time to the first output token, where the agent reports it",
            Unit::Seconds,
            m.time_to_first_token.clone(),
        );
        registry.register(
            "openclaw_trace_llm_calls",
            "LLM calls captured, by status",
            m.llm_calls.clone(),
        );
        registry.register(
            "openclaw_trace_llm_tokens",
            "LLM tokens captured, by type (input, output, cache_read, cache_write, reasoning)",
            m.llm_tokens.clone(),
        );
        registry.register(
            "openclaw_trace_llm_cost_usd",
            "LLM cost in US dollars, where known (reported or computed)",
            m.llm_cost.clone(),
        );
        registry.register(
            "openclaw_trace_tool_calls",
            "Tool calls captured, by status",
            m.tool_calls.clone(),
        );
        registry.register(
            "openclaw_trace_tool_errors",
            "Tool calls that failed, by error type",
            m.tool_errors.clone(),
        );
        registry.register_with_unit(
            "openclaw_trace_tool_duration",
            "Duration of tool calls",
            Unit::Seconds,
            m.tool_duration.clone(),
        );
        registry.register(
            "openclaw_trace_agent_runs",
            "Agent runs captured, by outcome",
            m.agent_runs.clone(),
        );
        registry.register_with_unit(
            "openclaw_trace_agent_run_duration",
            "Duration of agent runs",
            Unit::Seconds,
            m.agent_run_duration.clone(),
        );
        registry.register(
            "openclaw_trace_errors",
            "Errors captured, by type and category",
            m.errors.clone(),
        );
        registry.register(
            "openclaw_trace_events",
            "Events captured, by type (error, custom, log)",
            m.events.clone(),
        );
        m
    }

    /// Counts what one committed record changed.
    pub fn observe(&self, record: &Record, effect: &WriteEffect) {
        if let Some(change) = effect.span_change(record) {
            match change.after.kind {
                SpanKind::LlmCall | SpanKind::Embedding => self.observe_llm(&change),
                SpanKind::ToolCall => self.observe_tool(&change),
                SpanKind::AgentRun => self.observe_agent(&change),
                SpanKind::Event | SpanKind::Other => {}
            }
        } else if let (Record::Event(e), true) = (record, effect.is_new()) {
            self.observe_event(e);
        }
    }

    fn observe_llm(&self, change: &SpanChange) {
        let s = change.after;
        let Some(series) = self.llm_series(s) else {
            return;
        };
        // The per-call histograms see each figure once, when it is first known.
        type Tokens = fn(&Span) -> Option<i64>;
        let per_call: [(usize, Tokens); 2] = [(0, |s| s.input_tokens), (1, |s| s.output_tokens)];
        for (i, get) in per_call {
            if let Some(n) = get(s)
                && change.became(|s| get(s).is_some())
            {
                let ty = Some(("gen_ai_token_type", TOKEN_TYPES[i]));
                LlmSeries::handle(&series.token_usage[i], &self.token_usage, &series.base, ty)
                    .observe(n as f64);
            }
        }
        if let Some(secs) = duration_secs(s)
            && change.became(|s| duration_secs(s).is_some())
        {
            if s.status == StatusCode::Error {
                let mut l = series.base.clone();
                l.push(("error_type", self.error_type(s)));
                self.operation_duration.get_or_create(&l).observe(secs);
            } else {
                LlmSeries::handle(
                    &series.duration,
                    &self.operation_duration,
                    &series.base,
                    None,
                )
                .observe(secs);
            }
        }
        if let Some(ttft) = time_to_first_token(s)
            && change.became(|s| time_to_first_token(s).is_some())
        {
            LlmSeries::handle(&series.ttft, &self.time_to_first_token, &series.base, None)
                .observe(ttft);
        }
        if counts_now(change) {
            let status = Some(("status", s.status.as_str()));
            LlmSeries::handle(
                &series.calls[s.status as usize],
                &self.llm_calls,
                &series.short,
                status,
            )
            .inc();
        }
        // Counters only grow: a piece adds what its row gained (under the row's labels now).
        let by_type: [Tokens; TOKEN_TYPES.len()] = [
            |s| s.input_tokens,
            |s| s.output_tokens,
            |s| s.cache_read_tokens,
            |s| s.cache_write_tokens,
            |s| s.reasoning_tokens,
        ];
        for (i, get) in by_type.into_iter().enumerate() {
            let n = change.delta(get);
            if n > 0 {
                let ty = Some(("type", TOKEN_TYPES[i]));
                LlmSeries::handle(&series.tokens[i], &self.llm_tokens, &series.short, ty)
                    .inc_by(n as u64);
            }
        }
        let cost = change.delta(|s| s.cost_usd.filter(|c| c.is_finite() && *c >= 0.0));
        if cost > 0.0 {
            LlmSeries::handle(&series.cost, &self.llm_cost, &series.short, None).inc_by(cost);
        }
    }

    /// The series of an LLM span's label set, looked up once per label set rather than
    /// once per metric and call: this runs on the writer thread for every call.
    fn llm_series(&self, s: &Span) -> Option<Arc<LlmSeries>> {
        let request = s.request_model.as_deref().or(s.response_model.as_deref());
        let response = s.response_model.as_deref().or(s.request_model.as_deref());
        let operation = s
            .operation
            .as_deref()
            .unwrap_or(if s.kind == SpanKind::Embedding {
                "embeddings"
            } else {
                "chat"
            });
        let provider = s.provider.as_deref();
        let mut cache = self.llm_cache.lock().ok()?;
        let (key, series) = &mut *cache;
        key.clear();
        for part in [Some(operation), provider, request, response] {
            key.push_str(part.unwrap_or("\u{1}"));
            key.push('\u{0}');
        }
        if let Some(found) = series.get(key.as_str()) {
            return Some(found.clone());
        }
        if series.len() >= LLM_SERIES_CACHED {
            series.clear();
        }
        let c = &self.caps;
        let provider = c.providers.value(provider);
        let request_model = c.models.value(request);
        let base: Labels = vec![
            ("gen_ai_operation_name", c.operations.value(Some(operation))),
            ("gen_ai_provider_name", provider.clone()),
            ("gen_ai_request_model", request_model.clone()),
            ("gen_ai_response_model", c.models.value(response)),
        ];
        let short: Labels = vec![
            ("gen_ai_provider_name", provider),
            ("gen_ai_request_model", request_model),
        ];
        let made = Arc::new(LlmSeries {
            base,
            short,
            ..LlmSeries::default()
        });
        series.insert(key.clone(), made.clone());
        Some(made)
    }

    fn error_type(&self, s: &Span) -> String {
        // The conventions' fallback when an operation failed without a known type.
        self.caps
            .error_types
            .value(s.error_type.as_deref().or(Some("_OTHER")))
    }

    fn observe_tool(&self, change: &SpanChange) {
        let s = change.after;
        let tool = self
            .caps
            .tools
            .value(s.tool_name.as_deref().or(Some(s.name.as_str())));
        let l: Labels = vec![("gen_ai_tool_name", tool.clone())];
        if counts_now(change) {
            let mut calls = l.clone();
            calls.push(("status", s.status.as_str().into()));
            self.tool_calls.get_or_create(&calls).inc();
        }
        if change.became(|s| s.status == StatusCode::Error) {
            let mut e = l.clone();
            e.push(("error_type", self.error_type(s)));
            self.tool_errors.get_or_create(&e).inc();
        }
        if let Some(secs) = duration_secs(s)
            && change.became(|s| duration_secs(s).is_some())
        {
            self.tool_duration.get_or_create(&l).observe(secs);
        }
    }

    fn observe_agent(&self, change: &SpanChange) {
        let s = change.after;
        let agent = self.caps.agents.value(s.agent_id.as_deref());
        let outcome = match s.status {
            StatusCode::Error => "error",
            StatusCode::Ok => "ok",
            StatusCode::Unset => "unset",
        };
        if counts_now(change) {
            self.agent_runs
                .get_or_create(&vec![
                    ("agent_id", agent.clone()),
                    ("outcome", outcome.into()),
                ])
                .inc();
        }
        if let Some(secs) = duration_secs(s)
            && change.became(|s| duration_secs(s).is_some())
        {
            self.agent_run_duration
                .get_or_create(&vec![("agent_id", agent)])
                .observe(secs);
        }
    }

    fn observe_event(&self, e: &Event) {
        self.events
            .get_or_create(&vec![("type", e.event_type.as_str().into())])
            .inc();
        if e.event_type == EventType::Error {
            let l: Labels = vec![
                ("error_type", self.caps.error_types.value(Some(&e.name))),
                (
                    "category",
                    self.caps.categories.value(e.category.as_deref()),
                ),
            ];
            self.errors.get_or_create(&l).inc();
        }
    }
}

/// True when this change is the moment to count its span (a call, a tool call, a run):
/// a plain span when it is stored; a span reported in pieces when its outcome is first
/// known (it ended, failed or got its answer), so a start-only piece does not count it
/// as `unset` and later pieces do not count it again.
fn counts_now(change: &SpanChange) -> bool {
    if change.is_new() && change.after.merge.is_none() {
        return true;
    }
    change.became(|s| {
        s.end_ns.is_some() || s.status != StatusCode::Unset || s.output_tokens.is_some()
    })
}

fn duration_secs(s: &Span) -> Option<f64> {
    let end = s.end_ns?;
    (end >= s.start_ns).then(|| (end - s.start_ns) as f64 / 1e9)
}

/// Time to first token in seconds, from the attributes agents use for it.
fn time_to_first_token(s: &Span) -> Option<f64> {
    let num = |k: &str| s.attributes.get(k).and_then(Value::as_f64);
    num("gen_ai.server.time_to_first_token")
        .or_else(|| num("gen_ai.response.time_to_first_chunk"))
        .or_else(|| num("time_to_first_token_ms").map(|ms| ms / 1000.0))
        .or_else(|| num("ttft_ms").map(|ms| ms / 1000.0))
        .filter(|v| v.is_finite() && *v >= 0.0)
}

impl WriteHook for RecordMetrics {
    fn after_commit(&self, records: &[Record], effects: &[WriteEffect]) {
        for (r, effect) in records.iter().zip(effects) {
            self.observe(r, effect);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};

    fn llm(model: &str, input: i64, output: i64) -> Record {
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            format!("chat {model}"),
            SpanKind::LlmCall,
            0,
        );
        s.end_ns = Some(1_500_000_000);
        s.provider = Some("openai".into());
        s.request_model = Some(model.into());
        s.input_tokens = Some(input);
        s.output_tokens = Some(output);
        s.cost_usd = Some(0.25);
        s.status = StatusCode::Ok;
        Record::Span(Box::new(s))
    }

    #[test]
    fn counts_only_inserted_records_with_spec_buckets() {
        let reg = Registry::new();
        let m = RecordMetrics::new(&reg, 2);
        let recs = vec![
            llm("a", 100, 10),
            llm("a", 5, 1),
            llm("b", 7, 7),
            llm("c", 1, 1),
        ];
        use WriteEffect::{Duplicate, Inserted};
        m.after_commit(&recs, &[Inserted, Duplicate, Inserted, Inserted]);
        let text = reg.encode_openmetrics().unwrap();
        assert!(text.contains(r#"openclaw_trace_llm_tokens_total{gen_ai_provider_name="openai",gen_ai_request_model="a",type="input"} 100"#), "{text}");
        // The third model is over the cap of 2.
        assert!(
            text.contains(r#"gen_ai_request_model="other",type="input"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"gen_ai_client_token_usage_bucket{le="256.0",gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="a",gen_ai_response_model="a",gen_ai_token_type="input"} 1"#), "{text}");
        assert!(text.contains("le=\"67108864.0\""));
        assert!(text.contains("gen_ai_client_operation_duration_seconds_bucket"));
        assert!(text.contains("le=\"81.92\""));
        assert!(text.contains(r#"openclaw_trace_llm_cost_usd_total{gen_ai_provider_name="openai",gen_ai_request_model="a"} 0.25"#), "{text}");
    }

    #[test]
    fn pieces_count_the_call_once_and_every_token() {
        use crate::store::write::MergedSpan;
        let reg = Registry::new();
        let m = RecordMetrics::new(&reg, 10);
        let Record::Span(full) = llm("a", 100, 10) else {
            unreachable!()
        };
        let mut start = (*full).clone();
        (start.end_ns, start.status) = (None, StatusCode::Unset);
        (start.input_tokens, start.output_tokens, start.cost_usd) = (None, None, None);
        start.merge = Some(crate::model::SpanMerge::default());
        let mut ended = start.clone();
        (ended.end_ns, ended.status, ended.merge) = (full.end_ns, StatusCode::Ok, None);
        let mut with_usage = (*full).clone();
        with_usage.merge = None;
        let merge = |before: &Span, after: &Span| {
            WriteEffect::Merged(Box::new(MergedSpan {
                before: vec![before.clone()],
                after: after.clone(),
            }))
        };
        let piece = Record::Span(Box::new(start.clone()));
        m.after_commit(
            &[piece.clone(), piece.clone(), piece],
            &[
                WriteEffect::Inserted,
                merge(&start, &ended),
                merge(&ended, &with_usage),
            ],
        );
        let text = reg.encode_openmetrics().unwrap();
        for want in [
            r#"openclaw_trace_llm_calls_total{gen_ai_provider_name="openai",gen_ai_request_model="a",status="ok"} 1"#,
            r#"openclaw_trace_llm_tokens_total{gen_ai_provider_name="openai",gen_ai_request_model="a",type="input"} 100"#,
            r#"openclaw_trace_llm_cost_usd_total{gen_ai_provider_name="openai",gen_ai_request_model="a"} 0.25"#,
            r#"gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="a",gen_ai_response_model="a"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert!(!text.contains(r#"status="unset""#), "{text}");
    }

    #[test]
    fn errors_tools_and_agents() {
        let reg = Registry::new();
        let m = RecordMetrics::new(&reg, 10);
        let mut e = Event::new(EventType::Error, "RateLimit".into(), 0);
        e.category = Some("provider".into());
        let mut tool = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "execute_tool ls".into(),
            SpanKind::ToolCall,
            0,
        );
        tool.tool_name = Some("ls".into());
        tool.status = StatusCode::Error;
        tool.end_ns = Some(20_000_000);
        let mut run = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "invoke_agent".into(),
            SpanKind::AgentRun,
            0,
        );
        run.agent_id = Some("main".into());
        run.status = StatusCode::Ok;
        let recs = vec![
            Record::Event(Box::new(e)),
            Record::Span(Box::new(tool)),
            Record::Span(Box::new(run)),
        ];
        m.after_commit(&recs, &vec![WriteEffect::Inserted; 3]);
        let text = reg.encode_openmetrics().unwrap();
        for want in [
            r#"openclaw_trace_errors_total{error_type="RateLimit",category="provider"} 1"#,
            r#"openclaw_trace_tool_calls_total{gen_ai_tool_name="ls",status="error"} 1"#,
            r#"openclaw_trace_tool_errors_total{gen_ai_tool_name="ls",error_type="_OTHER"} 1"#,
            r#"openclaw_trace_agent_runs_total{agent_id="main",outcome="ok"} 1"#,
            r#"openclaw_trace_events_total{type="error"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
