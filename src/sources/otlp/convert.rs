//! OTLP requests → records. Items that cannot be stored (bad ids, missing times) are
//! counted as rejected with a reason; the rest of the request is kept.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, span, status};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use super::Rejects;
use super::mapping::{self as m, attr_str};
use crate::model::{
    Event, EventType, Histogram, MetricKind, MetricPoint, Record, SharedMap, Span, SpanId,
    StatusCode, TraceId,
};

/// Where records go and how big their texts may be.
pub struct Limits {
    pub max_text_bytes: usize,
    /// Used for log records without any timestamp.
    pub now_ns: i64,
}

/// Records made from one request, and what was rejected.
#[derive(Default)]
pub struct Converted {
    pub records: Vec<Record>,
    /// Spans, data points or log records kept (derived records such as error events excluded).
    pub items: u64,
    pub rejects: Rejects,
}

/// An OTLP `AnyValue` as JSON: ints stay ints, bytes become hex, NaN and infinities text.
/// Takes the value so its strings move instead of being copied (this is the hot path).
pub fn any_value(v: AnyValue) -> Value {
    use any_value::Value as V;
    match v.value {
        None | Some(V::StringValueStrindex(_)) => Value::Null,
        Some(V::StringValue(s)) => Value::String(s),
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::IntValue(i)) => Value::from(i),
        Some(V::DoubleValue(d)) => Number::from_f64(d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(V::ArrayValue(a)) => Value::Array(a.values.into_iter().map(any_value).collect()),
        Some(V::KvlistValue(kv)) => Value::Object(attributes(kv.values)),
        Some(V::BytesValue(b)) => Value::String(crate::util::hex::encode(&b)),
    }
}

/// Key/value pairs as a JSON object (a repeated key keeps its last value).
pub fn attributes(kvs: Vec<KeyValue>) -> Map<String, Value> {
    // Collected, the map is built sorted in one go (a stable sort, so the last of a
    // repeated key wins as with inserts) instead of searched and split insert by insert.
    kvs.into_iter()
        .filter(|kv| !kv.key.is_empty())
        .map(|kv| (kv.key, kv.value.map(any_value).unwrap_or(Value::Null)))
        .collect()
}

/// One map for every item of the resource: each item holds a pointer to it.
fn resource_map(r: Option<Resource>) -> SharedMap {
    SharedMap::new(r.map(|r| attributes(r.attributes)).unwrap_or_default())
}

/// Nanoseconds as stored (i64); 0 means absent.
fn time_ns(t: u64) -> Option<i64> {
    (t != 0).then(|| i64::try_from(t).ok()).flatten()
}

fn trace_id(b: &[u8]) -> Result<TraceId, String> {
    match TraceId::from_slice(b) {
        Some(t) if !t.is_zero() => Ok(t),
        Some(_) => Err("trace_id is all zeros".into()),
        None => Err(format!("trace_id has {} bytes, expected 16", b.len())),
    }
}

fn span_id(b: &[u8], field: &str) -> Result<SpanId, String> {
    match SpanId::from_slice(b) {
        Some(s) if !s.is_zero() => Ok(s),
        Some(_) => Err(format!("{field} is all zeros")),
        None => Err(format!("{field} has {} bytes, expected 8", b.len())),
    }
}

/// An optional id: empty (or all zeros, as some SDKs send) means none.
fn optional_span_id(b: &[u8], field: &str) -> Result<Option<SpanId>, String> {
    if b.is_empty() || b.iter().all(|x| *x == 0) {
        return Ok(None);
    }
    span_id(b, field).map(Some)
}

fn optional_trace_id(b: &[u8]) -> Result<Option<TraceId>, String> {
    if b.is_empty() || b.iter().all(|x| *x == 0) {
        return Ok(None);
    }
    trace_id(b).map(Some)
}

fn otel_span_kind(k: i32) -> Option<&'static str> {
    match span::SpanKind::try_from(k).ok()? {
        span::SpanKind::Unspecified => None,
        span::SpanKind::Internal => Some("internal"),
        span::SpanKind::Server => Some("server"),
        span::SpanKind::Client => Some("client"),
        span::SpanKind::Producer => Some("producer"),
        span::SpanKind::Consumer => Some("consumer"),
    }
}

fn add_scope(attrs: &mut Map<String, Value>, scope: &Option<InstrumentationScope>) {
    if let Some(s) = scope {
        if !s.name.is_empty() {
            attrs.insert(m::OTEL_SCOPE_NAME.into(), Value::String(s.name.clone()));
        }
        if !s.version.is_empty() {
            attrs.insert(
                m::OTEL_SCOPE_VERSION.into(),
                Value::String(s.version.clone()),
            );
        }
    }
}

fn add_count(attrs: &mut Map<String, Value>, key: &str, n: u32) {
    if n > 0 {
        attrs.insert(key.into(), Value::from(n));
    }
}

/// A stable record id from its content, so a client's retry of the same export
/// is recognised as a duplicate instead of being stored twice.
fn content_uid(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    // Mark it as a version 8 (custom) UUID so it cannot collide with generated v7 ids.
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

// ---------------------------------------------------------------- traces

pub fn traces(req: ExportTraceServiceRequest, limits: &Limits, rejects: Rejects) -> Converted {
    let mut out = Converted {
        rejects,
        ..Default::default()
    };
    for rs in req.resource_spans {
        let resource = resource_map(rs.resource);
        for ss in rs.scope_spans {
            for (i, s) in ss.spans.into_iter().enumerate() {
                match span(s, &resource, &ss.scope, limits, &mut out.records) {
                    Ok(()) => out.items += 1,
                    Err(e) => out.rejects.add(1, format!("span {i}: {e}")),
                }
            }
        }
    }
    out
}

fn span(
    mut s: OtlpSpan,
    resource: &SharedMap,
    scope: &Option<InstrumentationScope>,
    limits: &Limits,
    out: &mut Vec<Record>,
) -> Result<(), String> {
    let tid = trace_id(&s.trace_id)?;
    let sid = span_id(&s.span_id, "span_id")?;
    let parent = optional_span_id(&s.parent_span_id, "parent_span_id")?;
    let start = time_ns(s.start_time_unix_nano)
        .ok_or_else(|| "start_time_unix_nano is missing".to_string())?;
    let end = match time_ns(s.end_time_unix_nano) {
        Some(e) if e < start => {
            return Err("end_time_unix_nano is before start_time_unix_nano".into());
        }
        e => e,
    };
    let mut attrs = attributes(std::mem::take(&mut s.attributes));
    let name = if s.name.is_empty() {
        attr_str(&attrs, m::GEN_AI_OPERATION_NAME).unwrap_or_else(|| "unnamed".into())
    } else {
        s.name
    };
    if let Some(k) = otel_span_kind(s.kind) {
        attrs.insert(m::OTEL_SPAN_KIND.into(), Value::String(k.into()));
    }
    add_scope(&mut attrs, scope);
    if !s.trace_state.is_empty() {
        attrs.insert(m::OTEL_TRACE_STATE.into(), Value::String(s.trace_state));
    }
    add_count(
        &mut attrs,
        m::OTEL_DROPPED_ATTRIBUTES_COUNT,
        s.dropped_attributes_count,
    );
    add_count(
        &mut attrs,
        m::OTEL_DROPPED_EVENTS_COUNT,
        s.dropped_events_count,
    );
    add_count(
        &mut attrs,
        m::OTEL_DROPPED_LINKS_COUNT,
        s.dropped_links_count,
    );
    let links: Vec<Value> = std::mem::take(&mut s.links)
        .into_iter()
        .filter(|l| !l.trace_id.is_empty())
        .map(|l| {
            let mut o = Map::new();
            o.insert(
                "trace_id".into(),
                crate::util::hex::encode(&l.trace_id).into(),
            );
            o.insert(
                "span_id".into(),
                crate::util::hex::encode(&l.span_id).into(),
            );
            if !l.trace_state.is_empty() {
                o.insert("trace_state".into(), l.trace_state.into());
            }
            let a = attributes(l.attributes);
            if !a.is_empty() {
                o.insert("attributes".into(), Value::Object(a));
            }
            Value::Object(o)
        })
        .collect();
    if !links.is_empty() {
        attrs.insert(m::OTEL_LINKS.into(), Value::Array(links));
    }

    let mut sp = Span::new(tid, sid, name, crate::model::SpanKind::Other, start);
    sp.parent_span_id = parent;
    sp.end_ns = end;
    sp.attributes = attrs;
    sp.resource = resource.clone();
    sp.source = "otlp";
    if let Some(st) = &s.status {
        sp.status = match status::StatusCode::try_from(st.code) {
            Ok(status::StatusCode::Ok) => StatusCode::Ok,
            Ok(status::StatusCode::Error) => StatusCode::Error,
            _ => StatusCode::Unset,
        };
        if !st.message.is_empty() {
            sp.status_message = Some(st.message.clone());
        }
    }

    // Span events: the old prompt/completion events feed the texts, exceptions become
    // error events, everything else a custom event linked to the span.
    let mut events = Vec::new();
    for (i, ev) in s.events.into_iter().enumerate() {
        let ev_attrs = attributes(ev.attributes);
        let when = time_ns(ev.time_unix_nano).unwrap_or(start);
        match ev.name.as_str() {
            m::GEN_AI_CONTENT_PROMPT_EVENT if ev_attrs.contains_key(m::GEN_AI_PROMPT) => {
                if !sp.attributes.contains_key(m::GEN_AI_PROMPT) {
                    sp.attributes
                        .insert(m::GEN_AI_PROMPT.into(), ev_attrs[m::GEN_AI_PROMPT].clone());
                }
            }
            m::GEN_AI_CONTENT_COMPLETION_EVENT if ev_attrs.contains_key(m::GEN_AI_COMPLETION) => {
                if !sp.attributes.contains_key(m::GEN_AI_COMPLETION) {
                    sp.attributes.insert(
                        m::GEN_AI_COMPLETION.into(),
                        ev_attrs[m::GEN_AI_COMPLETION].clone(),
                    );
                }
            }
            _ => events.push((i, when, ev.name, ev_attrs, ev.dropped_attributes_count)),
        }
    }
    m::promote(&mut sp, resource);
    m::take_texts(&mut sp, limits.max_text_bytes);
    sp.kind = m::span_kind(&sp.name, &sp.attributes, &sp);
    if sp.operation.is_none() {
        sp.operation = m::default_operation(sp.kind).map(str::to_string);
    }

    let mut event_records = Vec::with_capacity(events.len());
    for (i, when, name, mut ev_attrs, dropped) in events {
        let is_exception = name == m::EXCEPTION_EVENT;
        let uid = content_uid(&[
            &tid.0,
            &sid.0,
            &(i as u64).to_le_bytes(),
            &when.to_le_bytes(),
            name.as_bytes(),
        ]);
        let mut e = if is_exception {
            let ty = ev_attrs
                .remove(m::EXCEPTION_TYPE)
                .and_then(|v| v.as_str().map(str::to_string))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| m::EXCEPTION_EVENT.into());
            let mut e = Event::new(EventType::Error, ty, when);
            e.message = ev_attrs
                .remove(m::EXCEPTION_MESSAGE)
                .and_then(|v| v.as_str().map(str::to_string));
            e.stack_trace = ev_attrs
                .remove(m::EXCEPTION_STACKTRACE)
                .and_then(|v| v.as_str().map(str::to_string));
            if sp.error_type.is_none() {
                sp.error_type = Some(e.name.clone());
            }
            e
        } else {
            Event::new(EventType::Custom, name, when)
        };
        add_count(&mut ev_attrs, m::OTEL_DROPPED_ATTRIBUTES_COUNT, dropped);
        e.uid = uid;
        e.trace_id = Some(tid);
        e.span_id = Some(sid);
        e.agent_id = sp.agent_id.clone();
        e.session_id = sp.session_id.clone();
        e.user_id = sp.user_id.clone();
        e.attributes = ev_attrs;
        e.resource = resource.clone();
        e.source = "otlp";
        event_records.push(Record::Event(Box::new(e)));
    }
    out.push(Record::Span(Box::new(sp)));
    out.extend(event_records);
    Ok(())
}

// ---------------------------------------------------------------- logs

/// A severity name from OTLP's severity number (1-24), else from the text.
pub fn severity_name(number: i32, text: &str) -> String {
    match number {
        1..=4 => "trace".into(),
        5..=8 => "debug".into(),
        9..=12 => "info".into(),
        13..=16 => "warn".into(),
        17..=20 => "error".into(),
        21..=24 => "fatal".into(),
        _ => match text.trim().to_ascii_lowercase().as_str() {
            "" => "info".into(),
            "warning" => "warn".into(),
            "critical" | "crit" | "panic" => "fatal".into(),
            "err" => "error".into(),
            t => t.to_string(),
        },
    }
}

pub fn logs(req: ExportLogsServiceRequest, limits: &Limits, rejects: Rejects) -> Converted {
    let mut out = Converted {
        rejects,
        ..Default::default()
    };
    for rl in req.resource_logs {
        let resource = resource_map(rl.resource);
        // Part of every log's identity; hashed once per resource.
        let resource_digest = Sha256::digest(serde_json::to_string(&*resource).unwrap_or_default());
        for sl in rl.scope_logs {
            let scope_name = sl.scope.as_ref().map(|s| s.name.as_str()).unwrap_or("");
            for (i, lr) in sl.log_records.into_iter().enumerate() {
                match log(lr, &resource, &resource_digest, scope_name, limits) {
                    Ok(e) => {
                        out.items += 1;
                        out.records.push(Record::Event(Box::new(e)));
                    }
                    Err(e) => out.rejects.add(1, format!("log record {i}: {e}")),
                }
            }
        }
    }
    out
}

fn log(
    mut lr: LogRecord,
    resource: &SharedMap,
    resource_digest: &[u8],
    scope_name: &str,
    limits: &Limits,
) -> Result<Event, String> {
    let tid = optional_trace_id(&lr.trace_id)?;
    let sid = optional_span_id(&lr.span_id, "span_id")?;
    let when = time_ns(lr.time_unix_nano)
        .or_else(|| time_ns(lr.observed_time_unix_nano))
        .unwrap_or(limits.now_ns);
    let mut attrs = attributes(std::mem::take(&mut lr.attributes));
    let event_name = if lr.event_name.is_empty() {
        attr_str(&attrs, m::EVENT_NAME)
    } else {
        Some(lr.event_name.clone())
    };
    let name = event_name
        .or_else(|| (!scope_name.is_empty()).then(|| scope_name.to_string()))
        .unwrap_or_else(|| "log".into());
    let body = lr.body.take().map(any_value);
    let message = match &body {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let attrs_json = Value::Object(attrs.clone()).to_string();
    let uid = content_uid(&[
        resource_digest,
        scope_name.as_bytes(),
        &lr.time_unix_nano.to_le_bytes(),
        &lr.observed_time_unix_nano.to_le_bytes(),
        &lr.severity_number.to_le_bytes(),
        lr.severity_text.as_bytes(),
        message.as_deref().unwrap_or("").as_bytes(),
        attrs_json.as_bytes(),
        &lr.trace_id,
        &lr.span_id,
        name.as_bytes(),
    ]);
    let severity = severity_name(lr.severity_number, &lr.severity_text);
    if lr.severity_number != 0 {
        attrs.insert(
            m::OTEL_SEVERITY_NUMBER.into(),
            Value::from(lr.severity_number),
        );
    }
    if !lr.severity_text.is_empty() && lr.severity_text != severity {
        attrs.insert(
            m::OTEL_SEVERITY_TEXT.into(),
            Value::String(lr.severity_text),
        );
    }
    add_count(
        &mut attrs,
        m::OTEL_DROPPED_ATTRIBUTES_COUNT,
        lr.dropped_attributes_count,
    );
    let mut e = Event::new(EventType::Log, name, when);
    e.uid = uid;
    e.severity = severity;
    e.message = message;
    e.stack_trace = attr_str(&attrs, m::EXCEPTION_STACKTRACE);
    e.category = attr_str(&attrs, m::OPENCLAW_SUBSYSTEM);
    e.trace_id = tid;
    e.span_id = sid;
    // Who and where, by the same names as spans (the span table's precedence).
    let mut probe = Span::new(
        TraceId([1; 16]),
        SpanId([1; 8]),
        String::new(),
        crate::model::SpanKind::Other,
        0,
    );
    probe.attributes = attrs;
    m::promote(&mut probe, resource);
    e.agent_id = probe.agent_id;
    e.session_id = probe.session_id;
    e.user_id = probe.user_id;
    e.attributes = probe.attributes;
    e.resource = resource.clone();
    e.source = "otlp";
    Ok(e)
}

// ---------------------------------------------------------------- metrics

fn temporality(t: i32) -> Option<&'static str> {
    match AggregationTemporality::try_from(t).ok()? {
        AggregationTemporality::Delta => Some("delta"),
        AggregationTemporality::Cumulative => Some("cumulative"),
        AggregationTemporality::Unspecified => None,
    }
}

/// The point has no value (a staleness marker): skipped, not rejected.
const NO_RECORDED_VALUE: u32 = 1;

struct PointBase<'a> {
    metric: &'a Metric,
    resource: &'a SharedMap,
}

impl PointBase<'_> {
    fn point(
        &self,
        kind: MetricKind,
        attrs: &[KeyValue],
        start: u64,
        time: u64,
    ) -> Result<MetricPoint, String> {
        let time_ns = time_ns(time).ok_or_else(|| "time_unix_nano is missing".to_string())?;
        Ok(MetricPoint {
            name: self.metric.name.clone(),
            unit: self.metric.unit.clone(),
            kind,
            time_ns,
            start_time_ns: time_ns_opt(start),
            value: None,
            histogram: None,
            temporality: None,
            monotonic: None,
            attributes: attributes(attrs.to_vec()),
            resource: self.resource.clone(),
            source: "otlp",
            deduplicate: true,
        })
    }
}

fn time_ns_opt(t: u64) -> Option<i64> {
    time_ns(t)
}

fn number_value(p: &NumberDataPoint) -> Option<f64> {
    match p.value? {
        number_data_point::Value::AsDouble(d) => Some(d),
        number_data_point::Value::AsInt(i) => Some(i as f64),
    }
    .filter(|v| v.is_finite())
}

pub fn metrics(req: ExportMetricsServiceRequest, rejects: Rejects) -> Converted {
    let mut out = Converted {
        rejects,
        ..Default::default()
    };
    for rm in req.resource_metrics {
        let resource = resource_map(rm.resource);
        for sm in rm.scope_metrics {
            for metric in &sm.metrics {
                metric_points(metric, &resource, &mut out);
            }
        }
    }
    out
}

fn metric_points(metric: &Metric, resource: &SharedMap, out: &mut Converted) {
    let base = PointBase { metric, resource };
    let name = &metric.name;
    let push = |out: &mut Converted, r: Result<Vec<MetricPoint>, String>| match r {
        Ok(points) => {
            out.items += 1;
            out.records
                .extend(points.into_iter().map(|p| Record::Metric(Box::new(p))));
        }
        Err(e) => out.rejects.add(1, format!("metric {name:?}: {e}")),
    };
    if name.is_empty() {
        let n = data_point_count(metric);
        out.rejects.add(n.max(1), "metric without a name".into());
        return;
    }
    match &metric.data {
        None => out
            .rejects
            .add(1, format!("metric {name:?}: no gauge, sum or histogram")),
        Some(metric::Data::Gauge(g)) => {
            for p in g
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                push(out, number_point(&base, MetricKind::Gauge, p, None, None));
            }
        }
        Some(metric::Data::Sum(s)) => {
            let t = temporality(s.aggregation_temporality);
            for p in s
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                push(
                    out,
                    number_point(&base, MetricKind::Sum, p, t, Some(s.is_monotonic)),
                );
            }
        }
        Some(metric::Data::Histogram(h)) => {
            let t = temporality(h.aggregation_temporality);
            for p in h
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                push(out, histogram_point(&base, p, t));
            }
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            let t = temporality(h.aggregation_temporality);
            for p in h
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                push(out, exponential_point(&base, p, t));
            }
        }
        Some(metric::Data::Summary(s)) => {
            for p in s
                .data_points
                .iter()
                .filter(|p| p.flags & NO_RECORDED_VALUE == 0)
            {
                push(out, summary_points(&base, p));
            }
        }
    }
}

fn data_point_count(metric: &Metric) -> u64 {
    (match &metric.data {
        None => 0,
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
    }) as u64
}

fn number_point(
    base: &PointBase,
    kind: MetricKind,
    p: &NumberDataPoint,
    temporality: Option<&'static str>,
    monotonic: Option<bool>,
) -> Result<Vec<MetricPoint>, String> {
    let mut mp = base.point(
        kind,
        &p.attributes,
        p.start_time_unix_nano,
        p.time_unix_nano,
    )?;
    mp.value = Some(number_value(p).ok_or_else(|| "no finite value".to_string())?);
    if kind == MetricKind::Gauge {
        // A gauge has no start (the specification says to ignore it).
        mp.start_time_ns = None;
    }
    mp.temporality = temporality;
    mp.monotonic = monotonic;
    Ok(vec![mp])
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|f| f.is_finite())
}

fn histogram_point(
    base: &PointBase,
    p: &HistogramDataPoint,
    temporality: Option<&'static str>,
) -> Result<Vec<MetricPoint>, String> {
    if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} bounds (expected one more count than bounds)",
            p.bucket_counts.len(),
            p.explicit_bounds.len()
        ));
    }
    let mut mp = base.point(
        MetricKind::Histogram,
        &p.attributes,
        p.start_time_unix_nano,
        p.time_unix_nano,
    )?;
    mp.histogram = Some(Histogram {
        count: p.count,
        sum: finite(p.sum),
        min: finite(p.min),
        max: finite(p.max),
        bounds: if p.bucket_counts.is_empty() {
            Vec::new()
        } else {
            p.explicit_bounds.clone()
        },
        bucket_counts: p.bucket_counts.clone(),
    });
    mp.temporality = temporality;
    Ok(vec![mp])
}

/// Exponential buckets as explicit bounds: bucket `i` of scale `s` is (base^i, base^(i+1)]
/// with base = 2^(2^-s); negative buckets mirror them, the zero bucket sits between.
fn exponential_point(
    base: &PointBase,
    p: &ExponentialHistogramDataPoint,
    temporality: Option<&'static str>,
) -> Result<Vec<MetricPoint>, String> {
    if !(-10..=20).contains(&p.scale) {
        return Err(format!("scale {} is out of range", p.scale));
    }
    let b = 2f64.powf(2f64.powi(-p.scale));
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    if let Some(neg) = &p.negative {
        // From the most negative bucket up to the one nearest zero.
        for (j, c) in neg.bucket_counts.iter().enumerate().rev() {
            let idx = neg.offset as i64 + j as i64;
            counts.push(*c);
            bounds.push(-b.powi(idx as i32));
        }
    }
    counts.push(p.zero_count);
    let pos_start = p.positive.as_ref().map(|x| x.offset as i64).unwrap_or(0);
    bounds.push(b.powi(pos_start as i32).max(p.zero_threshold));
    if let Some(pos) = &p.positive {
        for (j, c) in pos.bucket_counts.iter().enumerate() {
            let idx = pos.offset as i64 + j as i64;
            counts.push(*c);
            bounds.push(b.powi((idx + 1) as i32));
        }
    }
    // Explicit histograms end with an open bucket above the last bound: empty here.
    counts.push(0);
    if bounds.iter().any(|x| !x.is_finite()) {
        return Err("bucket bounds overflow".into());
    }
    let mut mp = base.point(
        MetricKind::Histogram,
        &p.attributes,
        p.start_time_unix_nano,
        p.time_unix_nano,
    )?;
    mp.histogram = Some(Histogram {
        count: p.count,
        sum: finite(p.sum),
        min: finite(p.min),
        max: finite(p.max),
        bounds,
        bucket_counts: counts,
    });
    mp.temporality = temporality;
    Ok(vec![mp])
}

/// A summary: its count and sum as a histogram without buckets, and one gauge per quantile
/// (attribute `quantile`), as Prometheus exposes them.
fn summary_points(base: &PointBase, p: &SummaryDataPoint) -> Result<Vec<MetricPoint>, String> {
    let mut mp = base.point(
        MetricKind::Histogram,
        &p.attributes,
        p.start_time_unix_nano,
        p.time_unix_nano,
    )?;
    let quantile = |q: f64| {
        p.quantile_values
            .iter()
            .find(|v| v.quantile == q)
            .map(|v| v.value)
    };
    mp.histogram = Some(Histogram {
        count: p.count,
        sum: finite(Some(p.sum)),
        min: finite(quantile(0.0)),
        max: finite(quantile(1.0)),
        bounds: Vec::new(),
        bucket_counts: Vec::new(),
    });
    mp.temporality = Some("cumulative");
    let mut out = vec![mp];
    for q in &p.quantile_values {
        let mut g = base.point(MetricKind::Gauge, &p.attributes, 0, p.time_unix_nano)?;
        g.attributes
            .insert("quantile".into(), Value::from(q.quantile));
        g.value = finite(Some(q.value));
        out.push(g);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, ResourceMetrics, ScopeMetrics, Sum, exponential_histogram_data_point::Buckets,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn limits() -> Limits {
        Limits {
            max_text_bytes: 1000,
            now_ns: 5,
        }
    }

    fn otlp_span(tid: u8, sid: u8) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![tid; 16],
            span_id: vec![sid; 8],
            name: "chat gpt-4o".into(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 2_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(12)),
                kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(3)),
            ],
            ..Default::default()
        }
    }

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", s("agent"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let m = attributes(vec![
            kv("b", s("1")),
            kv("a", s("first")),
            kv("", s("no key")),
            kv("a", s("last")),
        ]);
        assert_eq!(
            serde_json::Value::Object(m),
            serde_json::json!({"a": "last", "b": "1"})
        );
    }

    #[test]
    fn any_values_become_json() {
        let arr = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(any_value::Value::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(any_value::Value::DoubleValue(f64::NAN)),
                    },
                    AnyValue {
                        value: Some(any_value::Value::BytesValue(vec![0xab])),
                    },
                ],
            })),
        };
        assert_eq!(any_value(arr), serde_json::json!([1, "NaN", "ab"]));
    }

    #[test]
    fn a_genai_span_fills_its_columns() {
        let mut sp = otlp_span(1, 2);
        sp.parent_span_id = vec![3; 8];
        sp.status = Some(Status {
            code: status::StatusCode::Error as i32,
            message: "boom".into(),
        });
        sp.events.push(span::Event {
            time_unix_nano: 1_500,
            name: "exception".into(),
            attributes: vec![
                kv("exception.type", s("TimeoutError")),
                kv("exception.message", s("took too long")),
                kv("exception.stacktrace", s("at x")),
            ],
            ..Default::default()
        });
        sp.events.push(span::Event {
            time_unix_nano: 1_600,
            name: "retry".into(),
            ..Default::default()
        });
        let c = traces(request(vec![sp]), &limits(), Rejects::default());
        assert_eq!(c.items, 1);
        assert_eq!(c.records.len(), 3);
        let Record::Span(sp) = &c.records[0] else {
            panic!()
        };
        assert_eq!(sp.kind, crate::model::SpanKind::LlmCall);
        assert_eq!(sp.provider.as_deref(), Some("openai"));
        assert_eq!(sp.input_tokens, Some(12));
        assert_eq!(sp.total_tokens, Some(15));
        assert_eq!(sp.parent_span_id, Some(SpanId([3; 8])));
        assert_eq!(sp.status, StatusCode::Error);
        assert_eq!(sp.status_message.as_deref(), Some("boom"));
        assert_eq!(sp.error_type.as_deref(), Some("TimeoutError"));
        assert_eq!(sp.attributes[m::OTEL_SPAN_KIND], "client");
        assert_eq!(sp.attributes[m::OTEL_SCOPE_NAME], "lib");
        assert_eq!(sp.resource["service.name"], "agent");
        assert_eq!(sp.latency_ms(), Some(0.001));
        let Record::Event(err) = &c.records[1] else {
            panic!()
        };
        assert_eq!(err.event_type, EventType::Error);
        assert_eq!(err.name, "TimeoutError");
        assert_eq!(err.message.as_deref(), Some("took too long"));
        assert_eq!(err.stack_trace.as_deref(), Some("at x"));
        assert_eq!(
            (err.trace_id, err.span_id),
            (Some(sp.trace_id), Some(sp.span_id))
        );
        let Record::Event(custom) = &c.records[2] else {
            panic!()
        };
        assert_eq!(custom.event_type, EventType::Custom);
        assert_eq!(custom.time_ns, 1_600);
        // A retried export gives the same event ids (deduplicated on insert).
        let again = traces(
            request(vec![otlp_span(1, 2)]),
            &limits(),
            Rejects::default(),
        );
        assert_eq!(again.records.len(), 1);
    }

    #[test]
    fn bad_spans_are_rejected_and_the_rest_kept() {
        let mut short = otlp_span(1, 2);
        short.trace_id = vec![1; 15];
        let mut zero = otlp_span(0, 2);
        zero.trace_id = vec![0; 16];
        let mut no_start = otlp_span(1, 3);
        no_start.start_time_unix_nano = 0;
        let mut backwards = otlp_span(1, 4);
        backwards.end_time_unix_nano = 10;
        let mut zero_parent = otlp_span(1, 6);
        zero_parent.parent_span_id = vec![0; 8];
        let c = traces(
            request(vec![
                short,
                zero,
                no_start,
                backwards,
                otlp_span(1, 5),
                zero_parent,
            ]),
            &limits(),
            Rejects::default(),
        );
        assert_eq!((c.items, c.rejects.count), (2, 4));
        assert!(
            c.rejects.messages[0].contains("15 bytes"),
            "{:?}",
            c.rejects
        );
        let Record::Span(sp) = &c.records[1] else {
            panic!()
        };
        assert_eq!(sp.parent_span_id, None);
    }

    #[test]
    fn old_prompt_events_become_texts() {
        let mut sp = otlp_span(1, 2);
        sp.events.push(span::Event {
            name: "gen_ai.content.prompt".into(),
            attributes: vec![kv("gen_ai.prompt", s("hello"))],
            ..Default::default()
        });
        sp.events.push(span::Event {
            name: "gen_ai.content.completion".into(),
            attributes: vec![kv("gen_ai.completion", s("hi!"))],
            ..Default::default()
        });
        let c = traces(request(vec![sp]), &limits(), Rejects::default());
        assert_eq!(c.records.len(), 1);
        let Record::Span(sp) = &c.records[0] else {
            panic!()
        };
        assert_eq!(sp.input.as_ref().unwrap().text, "hello");
        assert_eq!(sp.output.as_ref().unwrap().text, "hi!");
    }

    #[test]
    fn log_records_become_log_events() {
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let rec = LogRecord {
            time_unix_nano: 0,
            observed_time_unix_nano: 77,
            severity_number: 13,
            severity_text: "WARNING".into(),
            body: Some(AnyValue {
                value: Some(s("disk almost full")),
            }),
            attributes: vec![
                kv("openclaw.subsystem", s("diagnostic")),
                kv("session.id", s("s1")),
            ],
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            ..Default::default()
        };
        let mut bad = rec.clone();
        bad.span_id = vec![1, 2, 3];
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "openclaw".into(),
                        ..Default::default()
                    }),
                    log_records: vec![rec.clone(), bad, rec],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let c = logs(req, &limits(), Rejects::default());
        assert_eq!((c.items, c.rejects.count), (2, 1));
        let Record::Event(e) = &c.records[0] else {
            panic!()
        };
        assert_eq!(e.event_type, EventType::Log);
        assert_eq!(e.time_ns, 77);
        assert_eq!(e.name, "openclaw");
        assert_eq!(e.severity, "warn");
        assert_eq!(e.message.as_deref(), Some("disk almost full"));
        assert_eq!(e.category.as_deref(), Some("diagnostic"));
        assert_eq!(e.session_id.as_deref(), Some("s1"));
        assert_eq!(e.trace_id, Some(TraceId([9; 16])));
        assert_eq!(e.attributes[m::OTEL_SEVERITY_TEXT], "WARNING");
        let Record::Event(same) = &c.records[1] else {
            panic!()
        };
        assert_eq!(e.uid, same.uid, "identical records share an id");
    }

    #[test]
    fn severities() {
        assert_eq!(severity_name(9, ""), "info");
        assert_eq!(severity_name(17, "whatever"), "error");
        assert_eq!(severity_name(0, "ERROR"), "error");
        assert_eq!(severity_name(0, "Warning"), "warn");
        assert_eq!(severity_name(0, ""), "info");
        assert_eq!(severity_name(24, ""), "fatal");
    }

    fn metric(name: &str, data: metric::Data) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: name.into(),
                        unit: "1".into(),
                        data: Some(data),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn number(v: i64, start: u64, t: u64) -> NumberDataPoint {
        NumberDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsInt(v)),
            attributes: vec![kv("k", s("v"))],
            ..Default::default()
        }
    }

    #[test]
    fn sums_keep_temporality_start_and_monotonicity() {
        let mut stale = number(0, 1, 3);
        stale.flags = NO_RECORDED_VALUE;
        let c = metrics(
            metric(
                "requests",
                metric::Data::Sum(Sum {
                    data_points: vec![number(5, 1, 2), stale, number(1, 1, 0)],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            Rejects::default(),
        );
        assert_eq!((c.items, c.rejects.count), (1, 1), "{:?}", c.rejects);
        let Record::Metric(p) = &c.records[0] else {
            panic!()
        };
        assert_eq!(p.kind, MetricKind::Sum);
        assert_eq!(p.value, Some(5.0));
        assert_eq!(p.start_time_ns, Some(1));
        assert_eq!(p.temporality, Some("cumulative"));
        assert_eq!(p.monotonic, Some(true));
        assert_eq!(p.attributes["k"], "v");
        let c = metrics(
            metric(
                "temp",
                metric::Data::Gauge(Gauge {
                    data_points: vec![number(20, 1, 2)],
                }),
            ),
            Rejects::default(),
        );
        let Record::Metric(p) = &c.records[0] else {
            panic!()
        };
        assert_eq!((p.kind, p.start_time_ns), (MetricKind::Gauge, None));
    }

    #[test]
    fn histograms_validate_their_buckets() {
        let good = HistogramDataPoint {
            time_unix_nano: 2,
            count: 3,
            sum: Some(6.0),
            bucket_counts: vec![1, 2, 0],
            explicit_bounds: vec![1.0, 5.0],
            ..Default::default()
        };
        let mut bad = good.clone();
        bad.bucket_counts = vec![3];
        let c = metrics(
            metric(
                "latency",
                metric::Data::Histogram(opentelemetry_proto::tonic::metrics::v1::Histogram {
                    data_points: vec![good, bad],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                }),
            ),
            Rejects::default(),
        );
        assert_eq!((c.items, c.rejects.count), (1, 1));
        let Record::Metric(p) = &c.records[0] else {
            panic!()
        };
        let h = p.histogram.as_ref().unwrap();
        assert_eq!(h.bounds, vec![1.0, 5.0]);
        assert_eq!(h.bucket_counts, vec![1, 2, 0]);
        assert_eq!(p.temporality, Some("delta"));
    }

    #[test]
    fn exponential_histograms_get_explicit_bounds() {
        let p = ExponentialHistogramDataPoint {
            time_unix_nano: 2,
            count: 4,
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![1, 2],
            }),
            ..Default::default()
        };
        let c = metrics(
            metric(
                "e",
                metric::Data::ExponentialHistogram(
                    opentelemetry_proto::tonic::metrics::v1::ExponentialHistogram {
                        data_points: vec![p],
                        aggregation_temporality: 2,
                    },
                ),
            ),
            Rejects::default(),
        );
        let Record::Metric(p) = &c.records[0] else {
            panic!()
        };
        let h = p.histogram.as_ref().unwrap();
        // zero bucket (..1], (1, 2], (2, 4], then the open top.
        assert_eq!(h.bounds, vec![1.0, 2.0, 4.0]);
        assert_eq!(h.bucket_counts, vec![1, 1, 2, 0]);
    }
}
