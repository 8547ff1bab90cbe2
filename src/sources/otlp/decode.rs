//! Request bodies → Export*ServiceRequest, and the answers back in the request's encoding.
//! Protobuf is all or nothing; OTLP/JSON is decoded item by item so that one bad span
//! (a malformed id, say) is rejected alone and the rest of the request is kept.

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, span, status};
use prost::Message;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Value, json};

use super::{Encoding, Exported, Rejects, Signal};

/// A body that is not an OTLP request at all (answered 400 / INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

pub fn protobuf<T: Message + Default>(body: &[u8]) -> Result<T, DecodeError> {
    T::decode(body).map_err(|e| DecodeError(format!("invalid OTLP protobuf: {e}")))
}

/// True when a JSON body is an OTLP document of `signal` (a JSON object holding the
/// signal's key), not a native capture body. Reads the keys only; builds nothing.
pub fn is_otlp_json(body: &[u8], signal: Signal) -> bool {
    struct HasKey(&'static str);
    impl<'de> Visitor<'de> for HasKey {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut found = false;
            while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                found |= k == self.0;
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    de.deserialize_map(HasKey(signal.json_key()))
        .and_then(|found| de.end().map(|()| found))
        .unwrap_or(false)
}

/// A serde error of the walk as a decode error (syntax errors named as such).
fn decode_error(e: serde_json::Error) -> DecodeError {
    if e.is_syntax() || e.is_eof() || e.is_io() {
        DecodeError(format!("invalid JSON: {e}"))
    } else {
        DecodeError(e.to_string())
    }
}

/// `Option<T>` from a JSON value (absent or null = None), the error as text.
fn typed<T: DeserializeOwned>(v: Option<Value>, key: &str) -> Result<Option<T>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
    }
}

fn string_or_empty(v: Option<Value>) -> String {
    match v {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Protobuf's JSON mapping lets enums be names; OTLP senders should use numbers. Take both.
fn enum_name_to_number(v: Option<&mut Value>, parse: impl Fn(&str) -> Option<i32>) {
    if let Some(v) = v
        && let Some(n) = v.as_str().and_then(&parse)
    {
        *v = Value::from(n);
    }
}

fn normalize_span(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    enum_name_to_number(o.get_mut("kind"), |s| {
        span::SpanKind::from_str_name(s).map(|k| k as i32)
    });
    if let Some(st) = o.get_mut("status").and_then(Value::as_object_mut) {
        enum_name_to_number(st.get_mut("code"), |s| {
            status::StatusCode::from_str_name(s).map(|k| k as i32)
        });
    }
}

fn normalize_log(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    enum_name_to_number(o.get_mut("severityNumber"), |s| {
        SeverityNumber::from_str_name(s).map(|k| k as i32)
    });
}

fn normalize_metric(v: &mut Value) {
    let Some(o) = v.as_object_mut() else { return };
    for kind in ["sum", "histogram", "exponentialHistogram"] {
        if let Some(d) = o.get_mut(kind).and_then(Value::as_object_mut) {
            enum_name_to_number(d.get_mut("aggregationTemporality"), |s| {
                AggregationTemporality::from_str_name(s).map(|k| k as i32)
            });
        }
    }
}

/// Data points in a JSON metric (what rejecting it costs).
fn json_points(v: &Value) -> u64 {
    [
        "gauge",
        "sum",
        "histogram",
        "exponentialHistogram",
        "summary",
    ]
    .iter()
    .filter_map(|k| v.get(k)?.get("dataPoints")?.as_array().map(Vec::len))
    .sum::<usize>()
    .max(1) as u64
}

/// What the walk of one signal needs to know: its keys and how to read an item.
struct Spec {
    top: &'static str,
    scopes_key: &'static str,
    items_key: &'static str,
    normalize: fn(&mut Value),
    weight: fn(&Value) -> u64,
}

/// The parts every signal shares: resource → scopes → items.
struct Scoped<T> {
    resource: Option<Resource>,
    resource_schema_url: String,
    scopes: Vec<(Option<InstrumentationScope>, String, Vec<T>)>,
}

/// Walks an OTLP/JSON body straight from its text, without a tree of the whole
/// document: resources and scopes are read field by field, each item (span, metric,
/// log record) alone into a small `Value` then into its protobuf struct, so at most one
/// item's tree is alive at a time. Items that cannot be read are rejected one by one
/// with their path; a resource or scope that cannot be read takes its items down with
/// it; a body whose structure is not OTLP's fails as a whole. Duplicate keys: the last
/// one wins, as in a JSON tree.
fn walk<T: DeserializeOwned>(
    body: &[u8],
    spec: &Spec,
) -> Result<(Vec<Scoped<T>>, Rejects), DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let out = de
        .deserialize_any(Doc::<T>(spec, PhantomData))
        .map_err(decode_error)?;
    de.end().map_err(decode_error)?;
    Ok(out)
}

/// The document: an object holding `spec.top`.
struct Doc<'s, T>(&'s Spec, PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for Doc<'_, T> {
    type Value = (Vec<Scoped<T>>, Rejects);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an OTLP/JSON object with {}", self.0.top)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = (Vec::new(), Rejects::default());
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            if k == self.0.top {
                out = map.next_value_seed(Resources::<T>(self.0, PhantomData))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(out)
    }
}

/// The resources array (null = none).
struct Resources<'s, T>(&'s Spec, PhantomData<T>);

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Resources<'_, T> {
    type Value = (Vec<Scoped<T>>, Rejects);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Resources<'_, T> {
    type Value = (Vec<Scoped<T>>, Rejects);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: an array", self.0.top)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Rejects::default()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut out, mut rejects) = (Vec::new(), Rejects::default());
        let mut i = 0;
        loop {
            let seed = ResourceSeed::<T> {
                spec: self.0,
                path: format!("{}[{i}]", self.0.top),
                rejects: &mut rejects,
                _t: PhantomData,
            };
            match seq.next_element_seed(seed)? {
                Some(r) => out.push(r),
                None => return Ok((out, rejects)),
            }
            i += 1;
        }
    }
}

/// One resource object.
struct ResourceSeed<'s, 'r, T> {
    spec: &'s Spec,
    path: String,
    rejects: &'r mut Rejects,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ResourceSeed<'_, '_, T> {
    type Value = Scoped<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ResourceSeed<'_, '_, T> {
    type Value = Scoped<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: an object", self.path)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut resource, mut schema_url, mut scopes) = (None, None, Vec::new());
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match &*k {
                "resource" => resource = Some(map.next_value::<Value>()?),
                "schemaUrl" => schema_url = Some(map.next_value::<Value>()?),
                k if k == self.spec.scopes_key => {
                    scopes = map.next_value_seed(Scopes::<T> {
                        spec: self.spec,
                        path: &self.path,
                        _t: PhantomData,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let resource = typed::<Resource>(resource, "resource");
        let mut kept = Vec::with_capacity(scopes.len());
        for sc in scopes {
            match (&resource, &sc.scope) {
                (Err(e), _) | (_, Err(e)) => {
                    self.rejects.add(sc.weight, format!("{}: {e}", sc.path));
                }
                (Ok(_), Ok(_)) => {
                    self.rejects.count += sc.rejects.count;
                    for m in sc.rejects.messages {
                        self.rejects.add(0, m);
                    }
                    kept.push((sc.scope.ok().flatten(), sc.schema_url, sc.items));
                }
            }
        }
        Ok(Scoped {
            resource: resource.ok().flatten(),
            resource_schema_url: string_or_empty(schema_url),
            scopes: kept,
        })
    }
}

/// One scope as read: its items decoded, their rejects kept apart until the scope and
/// its resource are known to be readable.
struct RawScope<T> {
    path: String,
    scope: Result<Option<InstrumentationScope>, String>,
    schema_url: String,
    items: Vec<T>,
    rejects: Rejects,
    /// What rejecting every item costs (spans, log records, or data points).
    weight: u64,
}

/// A resource's scopes array (null = none).
struct Scopes<'s, 'p, T> {
    spec: &'s Spec,
    path: &'p str,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Scopes<'_, '_, T> {
    type Value = Vec<RawScope<T>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Scopes<'_, '_, T> {
    type Value = Vec<RawScope<T>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}.{}: an array", self.path, self.spec.scopes_key)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let seed = ScopeSeed::<T> {
                spec: self.spec,
                path: format!("{}.{}[{i}]", self.path, self.spec.scopes_key),
                _t: PhantomData,
            };
            match seq.next_element_seed(seed)? {
                Some(s) => out.push(s),
                None => return Ok(out),
            }
            i += 1;
        }
    }
}

/// One scope object.
struct ScopeSeed<'s, T> {
    spec: &'s Spec,
    path: String,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for ScopeSeed<'_, T> {
    type Value = RawScope<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for ScopeSeed<'_, T> {
    type Value = RawScope<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: an object", self.path)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut scope, mut schema_url) = (None, None);
        let mut items = (Vec::new(), Rejects::default(), 0);
        let items_path = format!("{}.{}", self.path, self.spec.items_key);
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            match &*k {
                "scope" => scope = Some(map.next_value::<Value>()?),
                "schemaUrl" => schema_url = Some(map.next_value::<Value>()?),
                k if k == self.spec.items_key => {
                    items = map.next_value_seed(Items::<T> {
                        spec: self.spec,
                        path: &items_path,
                        _t: PhantomData,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawScope {
            path: self.path,
            scope: typed::<InstrumentationScope>(scope, "scope"),
            schema_url: string_or_empty(schema_url),
            items: items.0,
            rejects: items.1,
            weight: items.2,
        })
    }
}

/// A scope's items (null = none), each read alone.
struct Items<'s, 'p, T> {
    spec: &'s Spec,
    path: &'p str,
    _t: PhantomData<T>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Items<'_, '_, T> {
    type Value = (Vec<T>, Rejects, u64);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Items<'_, '_, T> {
    type Value = (Vec<T>, Rejects, u64);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: an array", self.path)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok((Vec::new(), Rejects::default(), 0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let (mut out, mut rejects, mut weight) = (Vec::new(), Rejects::default(), 0u64);
        let mut i = 0;
        while let Some(mut v) = seq.next_element::<Value>()? {
            (self.spec.normalize)(&mut v);
            let w = (self.spec.weight)(&v);
            weight = weight.saturating_add(w);
            match serde_json::from_value::<T>(v) {
                Ok(t) => out.push(t),
                Err(e) => rejects.add(w, format!("{}[{i}]: {e}", self.path)),
            }
            i += 1;
        }
        Ok((out, rejects, weight))
    }
}

fn one(_: &Value) -> u64 {
    1
}

pub fn json_traces(body: &[u8]) -> Result<(ExportTraceServiceRequest, Rejects), DecodeError> {
    let spec = Spec {
        top: "resourceSpans",
        scopes_key: "scopeSpans",
        items_key: "spans",
        normalize: normalize_span,
        weight: one,
    };
    let (walked, rejects) = walk(body, &spec)?;
    let resource_spans = walked
        .into_iter()
        .map(|r| ResourceSpans {
            resource: r.resource,
            schema_url: r.resource_schema_url,
            scope_spans: r
                .scopes
                .into_iter()
                .map(|(scope, schema_url, spans)| ScopeSpans {
                    scope,
                    schema_url,
                    spans,
                })
                .collect(),
        })
        .collect();
    Ok((ExportTraceServiceRequest { resource_spans }, rejects))
}

pub fn json_logs(body: &[u8]) -> Result<(ExportLogsServiceRequest, Rejects), DecodeError> {
    let spec = Spec {
        top: "resourceLogs",
        scopes_key: "scopeLogs",
        items_key: "logRecords",
        normalize: normalize_log,
        weight: one,
    };
    let (walked, rejects) = walk(body, &spec)?;
    let resource_logs = walked
        .into_iter()
        .map(|r| ResourceLogs {
            resource: r.resource,
            schema_url: r.resource_schema_url,
            scope_logs: r
                .scopes
                .into_iter()
                .map(|(scope, schema_url, log_records)| ScopeLogs {
                    scope,
                    schema_url,
                    log_records,
                })
                .collect(),
        })
        .collect();
    Ok((ExportLogsServiceRequest { resource_logs }, rejects))
}

pub fn json_metrics(body: &[u8]) -> Result<(ExportMetricsServiceRequest, Rejects), DecodeError> {
    let spec = Spec {
        top: "resourceMetrics",
        scopes_key: "scopeMetrics",
        items_key: "metrics",
        normalize: normalize_metric,
        weight: json_points,
    };
    let (walked, rejects) = walk(body, &spec)?;
    let resource_metrics = walked
        .into_iter()
        .map(|r| ResourceMetrics {
            resource: r.resource,
            schema_url: r.resource_schema_url,
            scope_metrics: r
                .scopes
                .into_iter()
                .map(|(scope, schema_url, metrics)| ScopeMetrics {
                    scope,
                    schema_url,
                    metrics,
                })
                .collect(),
        })
        .collect();
    Ok((ExportMetricsServiceRequest { resource_metrics }, rejects))
}

/// The Export*ServiceResponse for `signal`, with `partial_success` when items were rejected.
pub fn response(signal: Signal, done: &Exported, enc: Encoding) -> Vec<u8> {
    let rejected = done.rejects.count as i64;
    let message = done.rejects.message(signal);
    let partial = rejected > 0 || !message.is_empty();
    match enc {
        Encoding::Json => {
            if !partial {
                return b"{}".to_vec();
            }
            let count_key = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            // int64 fields are strings in OTLP/JSON.
            json!({ "partialSuccess": { count_key: rejected.to_string(), "errorMessage": message } })
                .to_string()
                .into_bytes()
        }
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message,
                }),
            }
            .encode_to_vec(),
        },
    }
}

/// `google.rpc.Status`: the body of every OTLP/HTTP error, and gRPC's status details.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: tells OTLP clients when to retry.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// A RetryInfo asking for a retry after `secs` seconds, encoded.
pub fn retry_info(secs: u64) -> Vec<u8> {
    RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: secs as i64,
            nanos: 0,
        }),
    }
    .encode_to_vec()
}

impl RpcStatus {
    pub fn new(code: i32, message: String, retry_after: Option<u64>) -> Self {
        RpcStatus {
            code,
            message,
            details: retry_after
                .map(|s| ProtoAny {
                    type_url: RETRY_INFO_TYPE.into(),
                    value: retry_info(s),
                })
                .into_iter()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPAN_OK: &str = r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
        "name":"chat","kind":"SPAN_KIND_CLIENT","startTimeUnixNano":"1544712660000000000",
        "endTimeUnixNano":1544712661000000000,"status":{"code":"STATUS_CODE_ERROR"},
        "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"m","value":{"intValue":7}}],
        "unknownField":true}"#;

    fn doc(spans: &str) -> Vec<u8> {
        (format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
               "scopeSpans":[{{"scope":{{"name":"lib"}},"spans":[{spans}]}}]}}]}}"#
        ))
        .into_bytes()
    }

    fn b(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn json_numbers_as_strings_or_ints_and_enum_names() {
        let (req, rejects) = json_traces(&doc(SPAN_OK)).unwrap();
        assert_eq!(rejects.count, 0, "{rejects:?}");
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id[0], 0x5b);
        assert_eq!(s.start_time_unix_nano, 1544712660000000000);
        assert_eq!(s.end_time_unix_nano, 1544712661000000000);
        assert_eq!(s.kind, span::SpanKind::Client as i32);
        assert_eq!(
            s.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        let ints: Vec<_> = s.attributes.iter().map(|kv| kv.value.clone()).collect();
        assert_eq!(ints.len(), 2);
    }

    #[test]
    fn a_bad_id_rejects_only_its_span() {
        let bad = SPAN_OK.replace("EEE19B7EC3C1B174", "not-hex!");
        let (req, rejects) = json_traces(&doc(&format!("{SPAN_OK},{bad},{SPAN_OK}"))).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(rejects.count, 1);
        assert!(
            rejects.messages[0].starts_with("resourceSpans[0].scopeSpans[0].spans[1]:"),
            "{rejects:?}"
        );
    }

    #[test]
    fn structure_errors_fail_the_request() {
        assert!(json_traces(&b(json!([1]))).is_err());
        assert!(json_traces(&b(json!({"resourceSpans": 3}))).is_err());
        assert!(json_traces(&b(json!({"resourceSpans": [{"scopeSpans": {}}]}))).is_err());
        let (req, _) = json_traces(&b(json!({"resourceSpans": []}))).unwrap();
        assert!(req.resource_spans.is_empty());
    }

    #[test]
    fn the_walk_reads_text_without_a_tree() {
        // Not JSON, trailing bytes, and a body that is not an object fail as a whole.
        let e = json_traces(b"{\"resourceSpans\": [").unwrap_err();
        assert!(e.0.starts_with("invalid JSON"), "{e}");
        assert!(json_traces(b"{} x").is_err());
        let e = json_traces(b"\"resourceSpans\"").unwrap_err();
        assert!(
            e.0.contains("an OTLP/JSON object with resourceSpans"),
            "{e}"
        );
        // Null arrays are empty; unknown keys at every level are skipped.
        let (req, rejects) = json_traces(
            br#"{"x":{"y":[1]},"resourceSpans":[{"z":1,"scopeSpans":null},{"scopeSpans":[{"spans":null,"q":[]}]}]}"#,
        )
        .unwrap();
        assert_eq!(rejects.count, 0);
        assert_eq!(req.resource_spans.len(), 2);
        // Duplicate keys: the last one wins, as in a tree (the first one's rejects go too).
        let bad = SPAN_OK.replace("EEE19B7EC3C1B174", "not-hex!");
        let twice = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{bad}]}}]}}],"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN_OK}]}}]}}]}}"#
        );
        let (req, rejects) = json_traces(twice.as_bytes()).unwrap();
        assert_eq!(rejects.count, 0, "{rejects:?}");
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 1);
        // A bad scope rejects its items, counted, even when its items came first.
        let d = format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{SPAN_OK},{bad}],"scope":7}}]}}]}}"#
        );
        let (req, rejects) = json_traces(d.as_bytes()).unwrap();
        assert_eq!(rejects.count, 2, "{rejects:?}");
        assert_eq!(rejects.messages.len(), 1, "{rejects:?}");
        assert!(rejects.messages[0].starts_with("resourceSpans[0].scopeSpans[0]: scope:"));
        assert!(req.resource_spans[0].scope_spans.is_empty());
    }

    #[test]
    fn otlp_json_is_told_from_native_bodies_by_its_key() {
        assert!(is_otlp_json(
            br#"{"a":[{"b":1}],"resourceSpans":[]}"#,
            Signal::Traces
        ));
        assert!(!is_otlp_json(br#"[{"resourceSpans":[]}]"#, Signal::Traces));
        assert!(!is_otlp_json(
            br#"{"provider":"x","resourceSpans2":1}"#,
            Signal::Traces
        ));
        assert!(!is_otlp_json(br#"{"resourceSpans":[]"#, Signal::Traces));
        assert!(!is_otlp_json(br#"{"resourceSpans":[]}"#, Signal::Logs));
    }

    #[test]
    fn a_bad_resource_rejects_its_items() {
        let d = json!({"resourceMetrics": [{"resource": {"attributes": 5}, "scopeMetrics": [{"metrics": [
            {"name": "a", "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "5"}, {"asDouble": 2.5, "timeUnixNano": "6"}]}}
        ]}]}]});
        let (req, rejects) = json_metrics(&b(d)).unwrap();
        assert_eq!(rejects.count, 2);
        assert!(req.resource_metrics[0].scope_metrics.is_empty());
    }

    #[test]
    fn logs_and_metrics_decode() {
        let d = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": "5", "severityNumber": "SEVERITY_NUMBER_WARN", "body": {"stringValue": "x"},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": ""}
        ]}]}]});
        let (req, rejects) = json_logs(&b(d)).unwrap();
        assert_eq!(rejects.count, 0, "{rejects:?}");
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.severity_number, SeverityNumber::Warn as i32);
        assert!(r.span_id.is_empty());
        let d = json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "c", "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE", "isMonotonic": true,
              "dataPoints": [{"asInt": "3", "startTimeUnixNano": "1", "timeUnixNano": "2"}]}},
            {"name": "h", "histogram": {"aggregationTemporality": 1, "dataPoints": [
              {"count": "3", "sum": 6, "bucketCounts": ["1", 2], "explicitBounds": [1.5], "timeUnixNano": "2"}]}}
        ]}]}]});
        let (req, rejects) = json_metrics(&b(d)).unwrap();
        assert_eq!(rejects.count, 0, "{rejects:?}");
        assert_eq!(req.resource_metrics[0].scope_metrics[0].metrics.len(), 2);
    }

    #[test]
    fn responses_in_both_encodings() {
        let mut done = Exported::default();
        assert_eq!(response(Signal::Traces, &done, Encoding::Json), b"{}");
        assert!(response(Signal::Traces, &done, Encoding::Protobuf).is_empty());
        done.rejects.add(2, "span 1: bad".into());
        let j: Value =
            serde_json::from_slice(&response(Signal::Logs, &done, Encoding::Json)).unwrap();
        assert_eq!(j["partialSuccess"]["rejectedLogRecords"], "2");
        let p = ExportTraceServiceResponse::decode(
            &response(Signal::Traces, &done, Encoding::Protobuf)[..],
        )
        .unwrap();
        let ps = p.partial_success.unwrap();
        assert_eq!(ps.rejected_spans, 2);
        assert!(ps.error_message.contains("span 1: bad"));
    }

    #[test]
    fn malformed_protobuf_is_an_error() {
        assert!(protobuf::<ExportTraceServiceRequest>(b"\x0a\xff\xff\xff").is_err());
        let empty: ExportTraceServiceRequest = protobuf(b"").unwrap();
        assert!(empty.resource_spans.is_empty());
    }
}
