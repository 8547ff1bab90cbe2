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
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{Encoding, Exported, Rejects, Signal};

/// A body that is not an OTLP request at all (answered 400 / INVALID_ARGUMENT).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

pub fn protobuf<T: Message + Default>(body: &[u8]) -> Result<T, DecodeError> {
    T::decode(body).map_err(|e| DecodeError(format!("invalid OTLP protobuf: {e}")))
}

/// True when a JSON body is an OTLP document of `signal` (not a native capture body).
pub fn is_otlp_json(v: &Value, signal: Signal) -> bool {
    v.as_object()
        .is_some_and(|o| o.contains_key(signal.json_key()))
}

fn top_array(doc: Value, key: &str) -> Result<Vec<Value>, DecodeError> {
    let Value::Object(mut o) = doc else {
        return Err(DecodeError(format!(
            "expected an OTLP/JSON object with {key}"
        )));
    };
    match o.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(DecodeError(format!("{key}: expected an array"))),
    }
}

/// Takes `key` out of an object as an array (absent = empty).
fn take_array(
    o: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Vec<Value>, DecodeError> {
    match o.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(DecodeError(format!("{path}.{key}: expected an array"))),
    }
}

fn as_object(v: Value, path: &str) -> Result<Map<String, Value>, DecodeError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(DecodeError(format!("{path}: expected an object"))),
    }
}

fn take_typed<T: DeserializeOwned>(
    o: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, String> {
    match o.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| format!("{key}: {e}")),
    }
}

fn take_string(o: &mut Map<String, Value>, key: &str) -> String {
    match o.remove(key) {
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

/// Decodes the items of one scope one by one; failures are rejected with their path.
fn items<T: DeserializeOwned>(
    values: Vec<Value>,
    path: &str,
    normalize: fn(&mut Value),
    weight: fn(&Value) -> u64,
    rejects: &mut Rejects,
) -> Vec<T> {
    let mut out = Vec::with_capacity(values.len());
    for (i, mut v) in values.into_iter().enumerate() {
        normalize(&mut v);
        let w = weight(&v);
        match serde_json::from_value::<T>(v) {
            Ok(t) => out.push(t),
            Err(e) => rejects.add(w, format!("{path}[{i}]: {e}")),
        }
    }
    out
}

/// The parts every signal shares: resource → scopes → items.
struct Scoped<T> {
    resource: Option<Resource>,
    resource_schema_url: String,
    scopes: Vec<(Option<InstrumentationScope>, String, Vec<T>)>,
}

#[allow(clippy::too_many_arguments)]
fn walk<T: DeserializeOwned>(
    doc: Value,
    top: &str,
    scopes_key: &str,
    items_key: &str,
    normalize: fn(&mut Value),
    weight: fn(&Value) -> u64,
    rejects: &mut Rejects,
) -> Result<Vec<Scoped<T>>, DecodeError> {
    let mut out = Vec::new();
    for (ri, r) in top_array(doc, top)?.into_iter().enumerate() {
        let rpath = format!("{top}[{ri}]");
        let mut r = as_object(r, &rpath)?;
        let resource = take_typed::<Resource>(&mut r, "resource");
        let resource_schema_url = take_string(&mut r, "schemaUrl");
        let mut scopes = Vec::new();
        for (si, sc) in take_array(&mut r, scopes_key, &rpath)?
            .into_iter()
            .enumerate()
        {
            let spath = format!("{rpath}.{scopes_key}[{si}]");
            let mut sc = as_object(sc, &spath)?;
            let scope = take_typed::<InstrumentationScope>(&mut sc, "scope");
            let schema_url = take_string(&mut sc, "schemaUrl");
            let values = take_array(&mut sc, items_key, &spath)?;
            let ipath = format!("{spath}.{items_key}");
            // A resource or scope that cannot be read takes its items down with it.
            match (&resource, scope.as_ref()) {
                (Err(e), _) | (_, Err(e)) => {
                    let n = values.iter().map(weight).sum();
                    rejects.add(n, format!("{spath}: {e}"));
                }
                (Ok(_), Ok(_)) => {
                    let scope = scope.ok().flatten();
                    let items = items::<T>(values, &ipath, normalize, weight, rejects);
                    scopes.push((scope, schema_url, items));
                }
            }
        }
        out.push(Scoped {
            resource: resource.ok().flatten(),
            resource_schema_url,
            scopes,
        });
    }
    Ok(out)
}

fn one(_: &Value) -> u64 {
    1
}

pub fn json_traces(doc: Value) -> Result<(ExportTraceServiceRequest, Rejects), DecodeError> {
    let mut rejects = Rejects::default();
    let walked = walk(
        doc,
        "resourceSpans",
        "scopeSpans",
        "spans",
        normalize_span,
        one,
        &mut rejects,
    )?;
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

pub fn json_logs(doc: Value) -> Result<(ExportLogsServiceRequest, Rejects), DecodeError> {
    let mut rejects = Rejects::default();
    let walked = walk(
        doc,
        "resourceLogs",
        "scopeLogs",
        "logRecords",
        normalize_log,
        one,
        &mut rejects,
    )?;
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

pub fn json_metrics(doc: Value) -> Result<(ExportMetricsServiceRequest, Rejects), DecodeError> {
    let mut rejects = Rejects::default();
    let walked = walk(
        doc,
        "resourceMetrics",
        "scopeMetrics",
        "metrics",
        normalize_metric,
        json_points,
        &mut rejects,
    )?;
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

    fn doc(spans: &str) -> Value {
        serde_json::from_str(&format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
               "scopeSpans":[{{"scope":{{"name":"lib"}},"spans":[{spans}]}}]}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn json_numbers_as_strings_or_ints_and_enum_names() {
        let (req, rejects) = json_traces(doc(SPAN_OK)).unwrap();
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
        let (req, rejects) = json_traces(doc(&format!("{SPAN_OK},{bad},{SPAN_OK}"))).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(rejects.count, 1);
        assert!(
            rejects.messages[0].starts_with("resourceSpans[0].scopeSpans[0].spans[1]:"),
            "{rejects:?}"
        );
    }

    #[test]
    fn structure_errors_fail_the_request() {
        assert!(json_traces(json!([1])).is_err());
        assert!(json_traces(json!({"resourceSpans": 3})).is_err());
        assert!(json_traces(json!({"resourceSpans": [{"scopeSpans": {}}]})).is_err());
        let (req, _) = json_traces(json!({"resourceSpans": []})).unwrap();
        assert!(req.resource_spans.is_empty());
    }

    #[test]
    fn a_bad_resource_rejects_its_items() {
        let d = json!({"resourceMetrics": [{"resource": {"attributes": 5}, "scopeMetrics": [{"metrics": [
            {"name": "a", "gauge": {"dataPoints": [{"asInt": "1", "timeUnixNano": "5"}, {"asDouble": 2.5, "timeUnixNano": "6"}]}}
        ]}]}]});
        let (req, rejects) = json_metrics(d).unwrap();
        assert_eq!(rejects.count, 2);
        assert!(req.resource_metrics[0].scope_metrics.is_empty());
    }

    #[test]
    fn logs_and_metrics_decode() {
        let d = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"timeUnixNano": "5", "severityNumber": "SEVERITY_NUMBER_WARN", "body": {"stringValue": "x"},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": ""}
        ]}]}]});
        let (req, rejects) = json_logs(d).unwrap();
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
        let (req, rejects) = json_metrics(d).unwrap();
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
