//! The OTLP receiver end to end: the real binary, real OTLP clients (Python SDK over
//! http/protobuf and gRPC, the JavaScript exporter, openai-v2 instrumentation), bad input.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse, trace_service_client::TraceServiceClient,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};

const PROTOBUF: &str = "application/x-protobuf";

/// Now, in unix nanoseconds: test data must be recent or retention removes it at once.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A daemon with both dedicated OTLP listeners on free ports.
fn start(extra: &[(&str, &str)]) -> Daemon {
    let mut env = vec![
        ("OCT_OTLP_HTTP_ADDR", "127.0.0.1:0"),
        ("OCT_OTLP_GRPC_ADDR", "127.0.0.1:0"),
    ];
    env.extend_from_slice(extra);
    Daemon::start(&env)
}

/// The address a listener logged (`OTLP/HTTP listening`, `OTLP/gRPC listening`).
fn listener_addr(d: &Daemon, message: &str) -> String {
    d.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == message)
        .and_then(|v| v["addr"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no {message:?} in {:?}", d.logs()))
}

fn otlp_http(d: &Daemon) -> String {
    format!("http://{}", listener_addr(d, "OTLP/HTTP listening"))
}

fn otlp_grpc(d: &Daemon) -> String {
    format!("http://{}", listener_addr(d, "OTLP/gRPC listening"))
}

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

/// `n` GenAI spans of trace `t`: span 1 is the root, the others its children.
fn spans(t: u8, n: u8) -> Vec<Span> {
    let now = now_ns();
    (1..=n)
        .map(|i| Span {
            trace_id: vec![t; 16],
            span_id: vec![t, i, 0, 0, 0, 0, 0, 1],
            parent_span_id: if i == 1 {
                vec![]
            } else {
                vec![t, 1, 0, 0, 0, 0, 0, 1]
            },
            name: format!("chat gpt-4o #{i}"),
            kind: 3,
            start_time_unix_nano: now + i as u64,
            end_time_unix_nano: now + 1_000_000_000,
            attributes: vec![
                kv("gen_ai.operation.name", s("chat")),
                kv("gen_ai.provider.name", s("openai")),
                kv("gen_ai.request.model", s("gpt-4o")),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(10)),
                kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(5)),
            ],
            ..Default::default()
        })
        .collect()
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn count(d: &Daemon, sql: &str) -> i64 {
    common::count(&d.db_path, sql)
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

#[test]
fn protobuf_on_the_main_port_and_native_json_unchanged() {
    let mut d = start(&[]);
    let r = client()
        .post(d.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .body(request(spans(1, 3)).encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], PROTOBUF);
    let resp = ExportTraceServiceResponse::decode(r.bytes().unwrap()).unwrap();
    assert!(resp.partial_success.is_none());
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 3, Duration::from_secs(5)),
        3
    );
    let (kind, provider, tokens, parent, source): (String, String, i64, String, String) = d
        .db()
        .query_row(
            "SELECT kind, provider, input_tokens, hex(parent_span_id), source FROM spans WHERE name = 'chat gpt-4o #2'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        (kind.as_str(), provider.as_str(), tokens, source.as_str()),
        ("llm_call", "openai", 10, "otlp")
    );
    assert_eq!(parent, "0101000000000001");
    let trace: Value = client()
        .get(d.url(&format!("/v1/traces/{}", "01".repeat(16))))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(trace["trace"]["span_count"], 3, "{trace}");
    assert_eq!(trace["spans"][0]["children"].as_array().unwrap().len(), 2);

    // The native capture body keeps its meaning on the same path.
    let r = post_json(
        &d.url("/v1/traces"),
        &json!({"provider": "anthropic", "model": "claude", "prompt_tokens": 3}),
    );
    assert_eq!(r.status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 4, Duration::from_secs(5)),
        4
    );
    assert!(d.stop().success());
}

fn otlp_json_span(trace_id: &str, span_id: &str) -> Value {
    let now = now_ns();
    json!({
        "traceId": trace_id, "spanId": span_id, "name": "execute_tool ls", "kind": 1,
        "startTimeUnixNano": now.to_string(), "endTimeUnixNano": now + 500_000_000,
        "attributes": [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
            {"key": "gen_ai.tool.name", "value": {"stringValue": "ls"}},
            {"key": "attempt", "value": {"intValue": "2"}}
        ]
    })
}

#[test]
fn otlp_json_rejects_only_the_bad_spans() {
    let d = start(&[]);
    let t = "5b8efff798038103d269b633813fc60c";
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]},
        "scopeSpans": [{"scope": {"name": "s"}, "spans": [
            otlp_json_span(t, "eee19b7ec3c1b174"),
            otlp_json_span(t, "zzz19b7ec3c1b175"),
            otlp_json_span(t, "eee19b7e"),
            otlp_json_span("00000000000000000000000000000000", "eee19b7ec3c1b176"),
            otlp_json_span(t, "eee19b7ec3c1b177"),
        ]}]
    }]});
    let r = post_json(&d.url("/v1/traces"), &body);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], "3", "{answer}");
    let msg = answer["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(msg.contains("spans[1]") && msg.contains("4 bytes"), "{msg}");
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 2, Duration::from_secs(5)),
        2
    );
    let (kind, tool, attrs): (String, String, String) = d
        .db()
        .query_row(
            "SELECT kind, tool_name, attributes FROM spans WHERE span_id = x'eee19b7ec3c1b174'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((kind.as_str(), tool.as_str()), ("tool_call", "ls"));
    let attrs: Value = serde_json::from_str(&attrs).unwrap();
    assert_eq!(attrs["attempt"], 2, "int64 sent as a string is a number");
    assert_eq!(attrs["otel.span.kind"], "internal");
}

#[test]
fn gzip_and_chunked_bodies_on_every_listener() {
    let d = start(&[]);
    let http = otlp_http(&d);
    // Gzip with a length.
    let r = client()
        .post(format!("{http}/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(gzip(&request(spans(2, 4)).encode_to_vec()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Chunked, no Content-Length, gzip (what OpenClaw's exporter does, plus compression).
    let body = gzip(&request(spans(3, 4)).encode_to_vec());
    let r = client()
        .post(d.url("/v1/traces"))
        .header("content-type", PROTOBUF)
        .header("content-encoding", "gzip")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Chunked JSON without compression.
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        otlp_json_span("0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c", "0c0c0c0c0c0c0c0c")]}]}]})
    .to_string();
    let r = client()
        .post(format!("{http}/v1/traces"))
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 9, Duration::from_secs(5)),
        9
    );
}

#[test]
fn bad_input_gets_the_right_answer_and_loses_nothing() {
    let d = start(&[("OCT_MAX_BODY_BYTES", "65536")]);
    let http = otlp_http(&d);
    let good = request(spans(4, 2)).encode_to_vec();
    let post = |url: &str, ct: &str, enc: Option<&str>, body: Vec<u8>| {
        let mut rq = client().post(url).header("content-type", ct);
        if let Some(e) = enc {
            rq = rq.header("content-encoding", e);
        }
        rq.body(body).send().unwrap()
    };
    for base in [d.url(""), http.clone()] {
        let url = format!("{base}/v1/traces");
        // Malformed protobuf: 400 with a google.rpc.Status body, code INVALID_ARGUMENT.
        let r = post(&url, PROTOBUF, None, vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1]);
        assert_eq!(r.status(), 400, "{url}");
        assert_eq!(r.headers()["content-type"], PROTOBUF);
        let st = decode_status(&r.bytes().unwrap());
        assert_eq!(st.0, 3);
        assert!(st.1.contains("invalid OTLP protobuf"), "{}", st.1);
        // Truncated gzip.
        let gz = gzip(&good);
        let r = post(&url, PROTOBUF, Some("gzip"), gz[..gz.len() / 2].to_vec());
        assert_eq!(r.status(), 400, "truncated gzip on {url}");
        // Gzip header on a body that is not gzip.
        let r = post(&url, PROTOBUF, Some("gzip"), good.clone());
        assert_eq!(r.status(), 400);
        // Wrong content type.
        let r = post(&url, "text/xml", None, b"<spans/>".to_vec());
        assert_eq!(r.status(), 415);
        // Over the body limit, declared and chunked (and as a gzip bomb).
        let big = vec![0u8; 100_000];
        assert_eq!(post(&url, PROTOBUF, None, big.clone()).status(), 413);
        let r = client()
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(reqwest::blocking::Body::new(std::io::Cursor::new(
                vec![0u8; 70_000],
            )))
            .send()
            .unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(post(&url, PROTOBUF, Some("gzip"), gzip(&big)).status(), 413);
        // Invalid JSON and JSON that is not an OTLP document.
        let r = post(
            &format!("{base}/v1/logs"),
            "application/json",
            None,
            b"{\"resourceLogs\": [".to_vec(),
        );
        assert_eq!(r.status(), 400);
        let body: Value = r.json().unwrap();
        assert_eq!(body["code"], 3, "{body}");
        assert!(body["error"].as_str().unwrap().contains("invalid JSON"));
        let r = post(
            &format!("{base}/v1/metrics"),
            "application/json",
            None,
            b"[1,2]".to_vec(),
        );
        assert_eq!(r.status(), 400);
    }
    // The main port's native path still names the field.
    let r = post_json(&d.url("/v1/traces"), &json!({"model": "m"}));
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "provider");
    // Unknown paths on the dedicated listener.
    let r = client().get(format!("{http}/v1/nothing")).send().unwrap();
    assert_eq!(r.status(), 404);
    // Nothing bad was stored; a good request after all that lands whole.
    assert_eq!(
        post(&format!("{http}/v1/traces"), PROTOBUF, None, good).status(),
        200
    );
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 2, Duration::from_secs(5)),
        2
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&d, "SELECT count(*) FROM spans"), 2);
}

fn decode_status(b: &[u8]) -> (i32, String) {
    // google.rpc.Status { int32 code = 1; string message = 2; }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    let s = RpcStatus::decode(b).unwrap();
    (s.code, s.message)
}

#[test]
fn metrics_and_logs_over_json_and_the_logs_query() {
    let d = start(&[]);
    let t0 = now_ns() - 60_000_000_000;
    let (start_s, t1_s) = (t0.to_string(), (t0 + 60_000_000_000).to_string());
    let metrics = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "m"}}]},
        "scopeMetrics": [{"metrics": [
            {"name": "requests", "unit": "1", "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [
                {"asInt": "5", "startTimeUnixNano": start_s, "timeUnixNano": t1_s,
                 "attributes": [{"key": "route", "value": {"stringValue": "/chat"}}]}]}},
            {"name": "latency", "unit": "ms", "histogram": {"aggregationTemporality": 1, "dataPoints": [
                {"count": "3", "sum": 30.5, "bucketCounts": ["1", "2", "0"], "explicitBounds": [10, 100],
                 "timeUnixNano": t1_s}]}},
            {"name": "bad", "gauge": {"dataPoints": [{"asDouble": 1.5}]}}
        ]}]
    }]});
    let r = post_json(&d.url("/v1/metrics"), &metrics);
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], "1",
        "{answer}"
    );
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM metric_points",
            2,
            Duration::from_secs(5)
        ),
        2
    );
    let (value, start, temporality, monotonic): (f64, i64, String, i64) = d
        .db()
        .query_row(
            "SELECT value, start_time_ns, temporality, monotonic FROM metric_points WHERE name = 'requests'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (value, start, temporality.as_str(), monotonic),
        (5.0, t0 as i64, "cumulative", 1)
    );
    let (bounds, counts): (String, String) = d
        .db()
        .query_row(
            "SELECT bounds, bucket_counts FROM metric_points WHERE name = 'latency'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (bounds.as_str(), counts.as_str()),
        ("[10.0,100.0]", "[1,2,0]")
    );
    // A retried export is stored once (a cumulative sum must not count twice); the next
    // export of the same series, at a later time, is a new point.
    assert_eq!(post_json(&d.url("/v1/metrics"), &metrics).status(), 200);
    let mut later = metrics.clone();
    later["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]["timeUnixNano"] =
        json!((t0 + 120_000_000_000).to_string());
    later["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]["asInt"] =
        json!("9");
    assert_eq!(post_json(&d.url("/v1/metrics"), &later).status(), 200);
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM metric_points WHERE name = 'requests'",
            2,
            Duration::from_secs(5)
        ),
        2
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&d, "SELECT count(*) FROM metric_points"), 3);
    assert_eq!(
        count(
            &d,
            "SELECT CAST(sum(value) AS INTEGER) FROM metric_points WHERE name = 'requests'"
        ),
        14
    );

    let ts = |k: u64| (t0 + k * 1_000_000_000).to_string();
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"scope": {"name": "openclaw"}, "logRecords": [
        {"timeUnixNano": ts(0), "severityNumber": 13, "severityText": "WARN",
         "body": {"stringValue": "liveness warning"}, "traceId": "5b8efff798038103d269b633813fc60c",
         "spanId": "eee19b7ec3c1b174", "attributes": [{"key": "openclaw.subsystem", "value": {"stringValue": "diagnostic"}}]},
        {"timeUnixNano": ts(1), "severityNumber": 17, "body": {"stringValue": "lane task error"}},
        {"timeUnixNano": ts(2), "severityText": "INFO", "body": {"kvlistValue": {"values": [
            {"key": "event", "value": {"stringValue": "run_end"}}]}}, "eventName": "embedded_run_agent_end"}
    ]}]}]});
    let r = client().post(d.url("/v1/logs")).json(&logs).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!({}));
    // A retry of the same export is not stored twice.
    assert_eq!(post_json(&d.url("/v1/logs"), &logs).status(), 200);
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM events WHERE type = 'log'",
            3,
            Duration::from_secs(5)
        ),
        3
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        count(&d, "SELECT count(*) FROM events WHERE type = 'log'"),
        3
    );

    let get = |q: &str| -> Value {
        let r = client().get(d.url(&format!("/v1/logs{q}"))).send().unwrap();
        assert_eq!(r.status(), 200, "{q}");
        r.json().unwrap()
    };
    let all = get("");
    assert_eq!(all["logs"].as_array().unwrap().len(), 3);
    let warn = get("?severity=WARN");
    assert_eq!(warn["logs"].as_array().unwrap().len(), 1);
    assert_eq!(warn["logs"][0]["message"], "liveness warning");
    assert_eq!(warn["logs"][0]["category"], "diagnostic");
    assert_eq!(warn["logs"][0]["span_id"], "eee19b7ec3c1b174");
    let by_trace = get("?trace_id=5b8efff798038103d269b633813fc60c");
    assert_eq!(by_trace["logs"].as_array().unwrap().len(), 1);
    let named = get("?name=embedded_run_agent_end");
    assert_eq!(named["logs"][0]["message"], "{\"event\":\"run_end\"}");
    let timed = get(&format!("?from={}", (t0 + 1_000_000_000) / 1_000_000));
    assert_eq!(timed["logs"].as_array().unwrap().len(), 2);
    let r = client()
        .get(d.url("/v1/logs?from=yesterday"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "from");
}

#[test]
fn listeners_turn_off_and_auth_applies_everywhere() {
    let d = Daemon::start(&[("OCT_OTLP_HTTP_ADDR", "off"), ("OCT_OTLP_GRPC_ADDR", "off")]);
    assert!(!d.logs().iter().any(|l| l.contains("OTLP/HTTP listening")));
    assert!(!d.logs().iter().any(|l| l.contains("OTLP/gRPC listening")));
    drop(d);

    let d = start(&[("OCT_AUTH_TOKEN", "s3cret")]);
    let http = otlp_http(&d);
    let body = request(spans(5, 1)).encode_to_vec();
    for url in [d.url("/v1/traces"), format!("{http}/v1/traces")] {
        let r = client()
            .post(&url)
            .header("content-type", PROTOBUF)
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{url}");
        let r = client()
            .post(&url)
            .header("content-type", PROTOBUF)
            .bearer_auth("s3cret")
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    let grpc = otlp_grpc(&d);
    runtime().block_on(async {
        let mut c = TraceServiceClient::connect(grpc).await.unwrap();
        let err = c.export(request(spans(6, 1))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let mut rq = tonic::Request::new(request(spans(6, 1)));
        rq.metadata_mut()
            .insert("authorization", "Bearer s3cret".parse().unwrap());
        c.export(rq).await.unwrap();
    });
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 2, Duration::from_secs(5)),
        2
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Sends raw bytes as a gRPC message (to test what a generated client cannot send).
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self {
        RawCodec
    }
    fn decoder(&mut self) -> Self {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn raw_export(
    url: &str,
    method: &'static str,
    body: Vec<u8>,
) -> Result<Bytes, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = tonic::client::Grpc::new(channel);
    g.ready().await.unwrap();
    g.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(method),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[test]
fn grpc_answers_with_the_right_status_codes() {
    let d = start(&[]);
    let grpc = otlp_grpc(&d);
    runtime().block_on(async {
        let err = raw_export(&grpc, TRACE_EXPORT, vec![0x0a, 0xff, 0xff, 0xff, 0x0f])
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        let err = raw_export(
            &grpc,
            "/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
            vec![],
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        let mut bad = spans(7, 3);
        bad[2].span_id = vec![1, 2, 3];
        let ok = raw_export(&grpc, TRACE_EXPORT, request(bad).encode_to_vec())
            .await
            .unwrap();
        let resp = ExportTraceServiceResponse::decode(ok).unwrap();
        let ps = resp.partial_success.unwrap();
        assert_eq!(ps.rejected_spans, 1);
        assert!(ps.error_message.contains("span_id has 3 bytes"));
    });
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", 2, Duration::from_secs(5)),
        2
    );
}

#[test]
fn a_full_queue_answers_429_and_resource_exhausted_with_retry_hints() {
    let d = start(&[("OCT_QUEUE_CAPACITY", "1")]);
    let http = otlp_http(&d);
    let grpc = otlp_grpc(&d);
    let mut accepted_spans = 0i64;
    let mut saw_429 = false;
    // Stall the writer with SQLite's write lock (it waits up to its 5 s busy timeout),
    // so the one-slot queue stays full longer than a request waits for room (1 s).
    let stall = || {
        let c = rusqlite::Connection::open(&d.db_path).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3000));
            c.execute_batch("ROLLBACK").unwrap();
        });
        // Let the writer pick up the first request and block on the lock.
        release
    };
    let release = stall();
    // A big request fills the one-slot queue; the ones racing it are refused. Bounded rounds.
    for round in 0..20u8 {
        let handles: Vec<_> = (0..6u8)
            .map(|k| {
                let url = format!("{http}/v1/traces");
                let body = request(spans_many(round, k, 1500)).encode_to_vec();
                std::thread::spawn(move || {
                    let r = client()
                        .post(url)
                        .header("content-type", PROTOBUF)
                        .body(body)
                        .send()
                        .unwrap();
                    let status = r.status().as_u16();
                    let retry = r
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_string());
                    (status, retry, r.bytes().unwrap())
                })
            })
            .collect();
        for h in handles {
            let (status, retry, body) = h.join().unwrap();
            match status {
                200 => accepted_spans += 1500,
                429 => {
                    saw_429 = true;
                    assert_eq!(retry.as_deref(), Some("1"));
                    assert_eq!(decode_status(&body).0, 8);
                }
                other => panic!("unexpected {other}"),
            }
        }
        if saw_429 {
            break;
        }
    }
    assert!(saw_429, "no request was refused with a one-slot queue");
    release.join().unwrap();
    // The queue drains once the lock is gone; stall it again for gRPC.
    d.wait_count(
        "SELECT count(*) FROM spans",
        accepted_spans,
        Duration::from_secs(30),
    );
    let release = stall();
    let mut saw_exhausted = false;
    runtime().block_on(async {
        for round in 0..20u8 {
            let calls: Vec<_> = (0..6u8)
                .map(|k| {
                    let body = request(spans_many(100 + round, k, 1500)).encode_to_vec();
                    let url = grpc.clone();
                    tokio::spawn(async move { raw_export(&url, TRACE_EXPORT, body).await })
                })
                .collect();
            for c in calls {
                match c.await.unwrap() {
                    Ok(_) => accepted_spans += 1500,
                    Err(st) => {
                        assert_eq!(st.code(), tonic::Code::ResourceExhausted, "{st:?}");
                        assert!(!st.details().is_empty(), "RetryInfo in the details");
                        assert!(st.metadata().get_bin("google.rpc.retryinfo-bin").is_some());
                        saw_exhausted = true;
                    }
                }
            }
            if saw_exhausted {
                break;
            }
        }
    });
    assert!(saw_exhausted);
    release.join().unwrap();
    // Everything acknowledged is stored; nothing refused is.
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM spans",
            accepted_spans,
            Duration::from_secs(30)
        ),
        accepted_spans
    );
}

/// `n` spans with ids unique to (`round`, `k`).
fn spans_many(round: u8, k: u8, n: u16) -> Vec<Span> {
    (0..n)
        .map(|i| {
            let [hi, lo] = i.to_be_bytes();
            Span {
                trace_id: vec![
                    round.wrapping_add(1),
                    k + 1,
                    hi,
                    lo,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                    9,
                ],
                span_id: vec![round.wrapping_add(1), k + 1, hi, lo, 1, 1, 1, 1],
                name: "s".into(),
                start_time_unix_nano: now_ns(),
                end_time_unix_nano: now_ns() + 1,
                ..Default::default()
            }
        })
        .collect()
}

// ------------------------------------------------------------------ real clients

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The clients from scripts/setup-otel.sh (installed on first use when missing).
fn ensure_clients() {
    let venv = repo().join(".cache/venv-otel/.installed");
    let node = repo().join(".cache/node-otel/.installed");
    if venv.exists() && node.exists() {
        return;
    }
    let st = Command::new("bash")
        .arg(repo().join("scripts/setup-otel.sh"))
        .status()
        .expect("run scripts/setup-otel.sh");
    assert!(st.success(), "scripts/setup-otel.sh failed");
}

/// Runs a client to completion (at most 90 s) and returns its stdout as JSON.
fn run_client(program: &str, args: &[&str], env: &[(&str, String)]) -> Value {
    ensure_clients();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "3600000")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(st.success(), "{program} {args:?} failed: {stderr}");
            return serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{program} printed no JSON ({e}); stderr: {stderr}"));
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("{program} {args:?} did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python() -> String {
    repo()
        .join(".cache/venv-otel/bin/python")
        .to_string_lossy()
        .into_owned()
}

fn script(name: &str) -> String {
    repo()
        .join("tests/otlp_clients")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Everything the Python SDK sent is stored, with ids, parents, attributes.
fn check_python_sdk(d: &Daemon, sent: &Value) {
    let trace = sent["trace_id"].as_str().unwrap();
    let q = |sql: &str| {
        d.db()
            .query_row(sql, [], |r| r.get::<_, String>(0))
            .unwrap()
    };
    assert_eq!(
        d.wait_count(
            &format!("SELECT count(*) FROM spans WHERE trace_id = x'{trace}'"),
            3,
            Duration::from_secs(10)
        ),
        3
    );
    let root = sent["spans"]["root"].as_str().unwrap();
    let llm = sent["spans"]["llm"].as_str().unwrap();
    let tool = sent["spans"]["tool"].as_str().unwrap();
    let row: (
        String,
        String,
        String,
        i64,
        i64,
        i64,
        String,
        String,
        String,
        String,
    ) = d
        .db()
        .query_row(
            &format!(
                "SELECT kind, lower(hex(parent_span_id)), provider, input_tokens, output_tokens,
                 cache_read_tokens, response_model, finish_reasons, agent_id, attributes
                 FROM spans WHERE span_id = x'{llm}'"
            ),
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(row.0, "llm_call");
    assert_eq!(row.1, root);
    assert_eq!(
        (row.2.as_str(), row.3, row.4, row.5),
        ("openai", 120, 30, 100)
    );
    assert_eq!(row.6, "gpt-4o-2024-08-06");
    assert_eq!(row.7, "[\"stop\"]");
    assert_eq!(row.8, "planner", "agent from the resource");
    let attrs: Value = serde_json::from_str(&row.9).unwrap();
    assert_eq!(attrs["custom.flag"], true);
    assert_eq!(attrs["otel.scope.name"], "oct.test");
    assert_eq!(attrs["otel.scope.version"], "1.2.3");
    assert_eq!(
        q(&format!("SELECT kind FROM spans WHERE span_id = x'{root}'")),
        "agent_run"
    );
    assert_eq!(
        q(&format!(
            "SELECT kind || ' ' || tool_name || ' ' || status FROM spans WHERE span_id = x'{tool}'"
        )),
        "tool_call ls error"
    );
    // The recorded exception is an error event linked to the tool span.
    assert_eq!(
        q(&format!(
            "SELECT name || ': ' || message FROM events WHERE type = 'error' AND span_id = x'{tool}'"
        )),
        "FileNotFoundError: no such dir: /nope"
    );
    let summary = q(&format!(
        "SELECT llm_calls || ' ' || tool_calls || ' ' || input_tokens || ' ' || session_id FROM traces WHERE trace_id = x'{trace}'"
    ));
    assert_eq!(summary, "1 1 120 sess-42");
    // Logs, correlated with the span they were written in.
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM events WHERE type = 'log'",
            2,
            Duration::from_secs(10)
        ),
        2
    );
    assert_eq!(
        q(
            "SELECT severity || ' ' || message || ' ' || lower(hex(span_id)) FROM events WHERE type = 'log' AND severity = 'warn'"
        ),
        format!("warn rate limit close {llm}")
    );
    assert_eq!(
        q("SELECT session_id FROM events WHERE type = 'log' AND severity = 'error'"),
        "sess-42"
    );
    // Metrics: two cumulative exports of the counter share their start time.
    // (force_flush twice, then shutdown exports once more.)
    assert!(
        d.wait_count(
            "SELECT count(*) FROM metric_points WHERE name = 'oct.test.requests'",
            3,
            Duration::from_secs(10)
        ) >= 2
    );
    assert_eq!(
        q(
            "SELECT group_concat(value, ',') FROM (SELECT value FROM metric_points WHERE name = 'oct.test.requests' ORDER BY time_ns)"
        ),
        "3.0,5.0,5.0"
    );
    assert_eq!(
        q(
            "SELECT count(DISTINCT start_time_ns) || ' ' || min(temporality) || ' ' || min(monotonic) FROM metric_points WHERE name = 'oct.test.requests'"
        ),
        "1 cumulative 1"
    );
    assert_eq!(
        q(
            "SELECT kind || ' ' || count || ' ' || sum FROM metric_points WHERE name = 'oct.test.latency' ORDER BY time_ns LIMIT 1"
        ),
        "histogram 2 262.5"
    );
    assert_eq!(
        q(
            "SELECT kind || ' ' || value || ' ' || attributes FROM metric_points WHERE name = 'oct.test.queue_depth' LIMIT 1"
        ),
        "gauge 7.0 {\"queue\":\"main\"}"
    );
}

#[test]
fn python_sdk_over_http_protobuf() {
    let d = start(&[]);
    let sent = run_client(
        &python(),
        &[&script("sdk_export.py")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", d.url("")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ],
    );
    check_python_sdk(&d, &sent);
}

#[test]
fn python_sdk_over_grpc() {
    let d = start(&[]);
    let sent = run_client(
        &python(),
        &[&script("sdk_export.py")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_grpc(&d)),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
        ],
    );
    check_python_sdk(&d, &sent);
}

#[test]
fn javascript_exporter_over_json() {
    let d = start(&[]);
    ensure_clients();
    // ES modules resolve packages from the script's folder: run a copy beside node_modules.
    let copy = repo().join(".cache/node-otel/js_export.mjs");
    std::fs::copy(script("js_export.mjs"), &copy).unwrap();
    let sent = run_client(
        "node",
        &[&copy.to_string_lossy()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http(&d))],
    );
    let trace = sent["trace_id"].as_str().unwrap();
    assert_eq!(
        d.wait_count(
            &format!("SELECT count(*) FROM spans WHERE trace_id = x'{trace}'"),
            2,
            Duration::from_secs(10)
        ),
        2
    );
    let child = sent["child"].as_str().unwrap();
    let root = sent["root"].as_str().unwrap();
    let row: (String, String, String, i64, i64, i64, String) = d
        .db()
        .query_row(
            &format!(
                "SELECT kind, lower(hex(parent_span_id)), provider, input_tokens, output_tokens, total_tokens, session_id
                 FROM spans WHERE span_id = x'{child}'"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "llm_call".into(),
            root.into(),
            "fake".into(),
            12,
            34,
            46,
            "js-session".into()
        )
    );
    let root_kind: String = d
        .db()
        .query_row(
            &format!("SELECT kind FROM spans WHERE span_id = x'{root}'"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(root_kind, "agent_run");
}

fn check_openai_span(d: &Daemon, trace: &str, provider_attr: &str) -> Value {
    assert_eq!(
        d.wait_count(
            &format!("SELECT count(*) FROM spans WHERE trace_id = x'{trace}'"),
            2,
            Duration::from_secs(10)
        ),
        2
    );
    let row: (
        String,
        String,
        String,
        String,
        i64,
        i64,
        String,
        String,
        String,
    ) = d
        .db()
        .query_row(
            &format!(
                "SELECT kind, provider, request_model, response_model, input_tokens, output_tokens,
                 operation, finish_reasons, attributes
                 FROM spans WHERE trace_id = x'{trace}' AND parent_span_id IS NOT NULL"
            ),
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(row.0, "llm_call");
    assert_eq!(row.1, "openai");
    assert_eq!(row.2, "gpt-4o-mini");
    assert_eq!(row.3, "gpt-4o-mini-2024-07-18");
    assert_eq!((row.4, row.5), (17, 9));
    assert_eq!(row.6, "chat");
    assert_eq!(row.7, "[\"stop\"]");
    let attrs: Value = serde_json::from_str(&row.8).unwrap();
    assert_eq!(attrs[provider_attr], "openai", "{attrs}");
    attrs
}

#[test]
fn openai_v2_instrumentation_fills_the_llm_columns() {
    let d = start(&[]);
    // Default: semantic conventions v1.30 (gen_ai.system), no content.
    let sent = run_client(
        &python(),
        &[&script("openai_instrumented.py")],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", d.url(""))],
    );
    check_openai_span(&d, sent["trace_id"].as_str().unwrap(), "gen_ai.system");
    // The latest conventions with message content on the span.
    let sent = run_client(
        &python(),
        &[&script("openai_instrumented.py")],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http(&d)),
            (
                "OTEL_SEMCONV_STABILITY_OPT_IN",
                "gen_ai_latest_experimental".into(),
            ),
            (
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                "span_only".into(),
            ),
        ],
    );
    let trace = sent["trace_id"].as_str().unwrap();
    check_openai_span(&d, trace, "gen_ai.provider.name");
    let (input, output): (String, String) = d
        .db()
        .query_row(
            &format!(
                "SELECT input_text, output_text FROM spans WHERE trace_id = x'{trace}' AND parent_span_id IS NOT NULL"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(input.contains("Write a short poem"), "{input}");
    assert!(output.contains("Telemetry flows"), "{output}");
}
