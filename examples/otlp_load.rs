//! OTLP/HTTP protobuf load generator for bench/otlp.sh.
//!
//! Sends requests of `--spans` GenAI spans (about 400 bytes of attributes each, traces of
//! 10 spans: an agent run, chat calls, tool calls) over `--connections` concurrent
//! keep-alive connections for `--seconds`, honouring 429/503 Retry-After as an OTLP client
//! does. Every request has fresh ids (patched into one encoded template, so the generator
//! costs little CPU). Prints one JSON line: requests, spans acknowledged, retries, errors.
//!
//! cargo run --release --example otlp_load -- --url http://127.0.0.1:9090/v1/traces

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const SPANS_PER_TRACE: usize = 10;
const TRACE_MARK: [u8; 8] = [0xf1, 0xe2, 0xd3, 0xc4, 0xb5, 0xa6, 0x97, 0x88];
const SPAN_MARK: [u8; 6] = [0xe7, 0xd6, 0xc5, 0xb4, 0xa3, 0x92];

struct Args {
    url: String,
    connections: usize,
    seconds: u64,
    spans: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:9090/v1/traces".into(),
        connections: 4,
        seconds: 20,
        spans: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--url" => a.url = v,
            "--connections" => a.connections = v.parse().unwrap_or(4),
            "--seconds" => a.seconds = v.parse().unwrap_or(20),
            "--spans" => a.spans = v.parse().unwrap_or(100),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
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

fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

/// Ids carry markers so they can be found in the encoded bytes: trace `t` (within the
/// request) and span `n`.
fn trace_marker(t: usize) -> Vec<u8> {
    let mut v = TRACE_MARK.to_vec();
    v.extend_from_slice(&(t as u64).to_be_bytes());
    v
}

fn span_marker(n: usize) -> Vec<u8> {
    let mut v = SPAN_MARK.to_vec();
    v.extend_from_slice(&(n as u16).to_be_bytes());
    v
}

fn template(spans: usize, now: u64) -> ExportTraceServiceRequest {
    let mut out = Vec::with_capacity(spans);
    for n in 0..spans {
        let t = n / SPANS_PER_TRACE;
        let pos = n % SPANS_PER_TRACE;
        let root = t * SPANS_PER_TRACE;
        let start = now + (pos as u64) * 1_000_000;
        let common = vec![
            kv(
                "gen_ai.conversation.id",
                s("conv_6f1c2a7e-93b4-4f0e-8d2a-1b5c7e9f0a3d"),
            ),
            kv("gen_ai.agent.name", s("support-agent")),
            kv("server.address", s("api.openai.com")),
            kv("server.port", i(443)),
        ];
        let (name, attrs) = match pos {
            0 => (
                "invoke_agent support-agent".to_string(),
                vec![
                    kv("gen_ai.operation.name", s("invoke_agent")),
                    kv("gen_ai.agent.id", s("asst_5Xq8ZkLm2Np7Rt4Vw9Yb")),
                    kv("gen_ai.provider.name", s("openai")),
                ],
            ),
            3 | 6 | 9 => (
                "execute_tool search_docs".to_string(),
                vec![
                    kv("gen_ai.operation.name", s("execute_tool")),
                    kv("gen_ai.tool.name", s("search_docs")),
                    kv("gen_ai.tool.call.id", s("call_Qm4vT8xL2pZ9rW1sY6nB3kD")),
                    kv("gen_ai.tool.type", s("function")),
                    kv(
                        "gen_ai.tool.description",
                        s("Searches the product documentation"),
                    ),
                ],
            ),
            _ => (
                "chat gpt-4o-mini".to_string(),
                vec![
                    kv("gen_ai.operation.name", s("chat")),
                    kv("gen_ai.provider.name", s("openai")),
                    kv("gen_ai.request.model", s("gpt-4o-mini")),
                    kv("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
                    kv("gen_ai.response.id", s("chatcmpl-B9xK2mQ7vL4pR8tZ1wY5nC3")),
                    kv(
                        "gen_ai.request.temperature",
                        any_value::Value::DoubleValue(0.2),
                    ),
                    kv("gen_ai.request.max_tokens", i(1024)),
                    kv("gen_ai.usage.input_tokens", i(1834)),
                    kv("gen_ai.usage.output_tokens", i(212)),
                    kv("gen_ai.usage.cache_read.input_tokens", i(1536)),
                    kv(
                        "gen_ai.response.finish_reasons",
                        any_value::Value::ArrayValue(
                            opentelemetry_proto::tonic::common::v1::ArrayValue {
                                values: vec![AnyValue {
                                    value: Some(s("stop")),
                                }],
                            },
                        ),
                    ),
                ],
            ),
        };
        let mut attributes = common;
        attributes.extend(attrs);
        out.push(Span {
            trace_id: trace_marker(t),
            span_id: span_marker(n),
            parent_span_id: if pos == 0 { vec![] } else { span_marker(root) },
            name,
            kind: if pos == 0 { 1 } else { 3 },
            start_time_unix_nano: start,
            end_time_unix_nano: start + 850_000_000,
            attributes,
            status: Some(Status {
                code: 1,
                message: String::new(),
            }),
            ..Default::default()
        });
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("support-bot")),
                    kv("service.version", s("1.4.2")),
                    kv("telemetry.sdk.language", s("python")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: out,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Where the markers sit in the encoded template: (offset, is_trace, index).
fn marker_offsets(body: &[u8], spans: usize) -> Vec<(usize, bool, usize)> {
    let mut out = Vec::new();
    for at in 0..body.len() {
        if body[at..].starts_with(&TRACE_MARK) && at + 16 <= body.len() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at + 8..at + 16]);
            out.push((at, true, u64::from_be_bytes(b) as usize));
        } else if body[at..].starts_with(&SPAN_MARK) && at + 8 <= body.len() {
            let n = u16::from_be_bytes([body[at + 6], body[at + 7]]) as usize;
            if n < spans {
                out.push((at, false, n));
            }
        }
    }
    out
}

/// A copy of the template with ids unique to (`run`, `request`).
fn patch(template: &[u8], offsets: &[(usize, bool, usize)], run: u32, request: u64) -> Vec<u8> {
    let mut b = template.to_vec();
    for &(at, is_trace, idx) in offsets {
        if is_trace {
            b[at..at + 4].copy_from_slice(&run.to_be_bytes());
            b[at + 4..at + 12].copy_from_slice(&request.to_be_bytes());
            b[at + 12..at + 16].copy_from_slice(&(idx as u32 + 1).to_be_bytes());
        } else {
            b[at..at + 6].copy_from_slice(&request.to_be_bytes()[2..]);
            b[at + 6..at + 8].copy_from_slice(&(idx as u16 + 1).to_be_bytes());
        }
    }
    b
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    spans: AtomicU64,
    retries: AtomicU64,
    errors: AtomicU64,
    next: AtomicU64,
}

fn main() {
    let a = args();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let run = (now / 1_000_000_000) as u32;
    let body = template(a.spans, now).encode_to_vec();
    let offsets = marker_offsets(&body, a.spans);
    assert_eq!(
        offsets.len(),
        a.spans * 3 - a.spans.div_ceil(SPANS_PER_TRACE),
        "every id found in the template"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let body = Arc::new(body);
    let offsets = Arc::new(offsets);
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(a.connections)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut tasks = Vec::new();
        for _ in 0..a.connections {
            let (client, c, url) = (client.clone(), counters.clone(), a.url.clone());
            let (body, offsets) = (body.clone(), offsets.clone());
            let spans = a.spans as u64;
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    let n = c.next.fetch_add(1, Ordering::Relaxed) + 1;
                    let payload = patch(&body, &offsets, run, n);
                    // Retry the same payload on 429/503 after Retry-After, like an OTLP client.
                    loop {
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/x-protobuf")
                            .body(payload.clone())
                            .send()
                            .await;
                        c.requests.fetch_add(1, Ordering::Relaxed);
                        match sent {
                            Ok(r) if r.status().is_success() => {
                                c.spans.fetch_add(spans, Ordering::Relaxed);
                                let _ = r.bytes().await;
                                break;
                            }
                            Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                                c.retries.fetch_add(1, Ordering::Relaxed);
                                let wait = r
                                    .headers()
                                    .get("retry-after")
                                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                                    .unwrap_or(1);
                                tokio::time::sleep(Duration::from_secs(wait)).await;
                            }
                            other => {
                                if c.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                    match other {
                                        Ok(r) => eprintln!("first error: HTTP {}", r.status()),
                                        Err(e) => eprintln!("first error: {e:?}"),
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                break;
                            }
                        }
                        if Instant::now() > deadline + Duration::from_secs(30) {
                            break;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let spans = counters.spans.load(Ordering::Relaxed);
    println!(
        "{{\"requests\":{},\"spans_acked\":{},\"retries\":{},\"errors\":{},\"seconds\":{:.3},\"acked_per_sec\":{:.0},\"bytes_per_request\":{}}}",
        counters.requests.load(Ordering::Relaxed),
        spans,
        counters.retries.load(Ordering::Relaxed),
        counters.errors.load(Ordering::Relaxed),
        elapsed,
        spans as f64 / elapsed,
        body.len(),
    );
}
