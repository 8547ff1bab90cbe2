//! OTLP export: a fake OTLP/HTTP receiver (axum on 127.0.0.1:0) decoding what arrives,
//! the one-shot `export` CLI, and Arize Phoenix as a real destination
//! (installed by scripts/setup-phoenix.sh into .cache/venv-phoenix).

mod common;
use common::*;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    content_types: HashSet<String>,
    headers: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

async fn otlp(State(r): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let json = ct == "application/json";
    let mut g = r.lock().unwrap();
    g.content_types.insert(ct);
    g.headers.push(
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    );
    match uri.path() {
        "/v1/traces" => g.traces.push(if json {
            serde_json::from_slice(&raw).unwrap()
        } else {
            ExportTraceServiceRequest::decode(&raw[..]).unwrap()
        }),
        "/v1/logs" => g.logs.push(if json {
            serde_json::from_slice(&raw).unwrap()
        } else {
            ExportLogsServiceRequest::decode(&raw[..]).unwrap()
        }),
        "/v1/metrics" => g.metrics.push(if json {
            serde_json::from_slice(&raw).unwrap()
        } else {
            ExportMetricsServiceRequest::decode(&raw[..]).unwrap()
        }),
        _ => return StatusCode::NOT_FOUND,
    }
    StatusCode::OK
}

fn receiver() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .fallback(axum::routing::post(otlp))
        .with_state(shared.clone());
    (serve_in_thread(app), shared)
}

fn hex(n: u64, width: usize) -> String {
    format!("{n:0width$x}")
}

/// `n` agent runs, each with two LLM calls and a tool call under the agent span;
/// every third LLM call fails. Returns the expected token totals.
fn agent_traces(d: &Daemon, n: u64, salt: u64) -> (i64, i64) {
    let (mut input, mut output) = (0, 0);
    let mut body = Vec::new();
    for t in 0..n {
        let trace = hex(salt << 32 | (t + 1), 32);
        let root = hex(salt << 32 | (t * 10 + 1), 16);
        body.push(
            json!({"kind": "agent_run", "name": "run", "agent_id": "main", "session_id": "s1",
            "trace_id": trace, "span_id": root, "latency_ms": 5000}),
        );
        for c in 0..2u64 {
            let (i, o) = (100 + t as i64 + c as i64, 10 + c as i64);
            input += i;
            output += o;
            let mut span = json!({"provider": "openai", "model": "gpt-4o", "prompt_tokens": i, "completion_tokens": o,
                "trace_id": trace, "span_id": hex(salt << 32 | (t * 10 + 2 + c), 16), "parent_span_id": root,
                "latency_ms": 1200, "input_text": "what is in the folder?", "output_text": "a file",
                "finish_reasons": ["stop"], "cost_usd": 0.002});
            if (t * 2 + c) % 3 == 0 {
                span["error_type"] = json!("RateLimit");
                span["status"] = json!("rate_limited");
            }
            body.push(span);
        }
        body.push(json!({"kind": "tool_call", "tool_name": "ls", "tool_call_id": format!("call{t}"),
            "trace_id": trace, "span_id": hex(salt << 32 | (t * 10 + 5), 16), "parent_span_id": root, "latency_ms": 40}));
    }
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(body)).status(), 202);
    (input, output)
}

fn attr<'a>(s: &'a Span, k: &str) -> Option<&'a Av> {
    s.attributes
        .iter()
        .find(|a| a.key == k)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

#[test]
fn exports_genai_semconv_with_ids_logs_and_metrics() {
    let (url, got) = receiver();
    let mut d = Daemon::start(&[
        ("OCT_OTLP_EXPORT_ENDPOINT", &url),
        ("OCT_OTLP_EXPORT_INTERVAL", "200ms"),
        ("OCT_OTLP_EXPORT_HEADERS", "x-api-key=k3y-secret"),
        ("OCT_OTLP_EXPORT_COMPRESSION", "gzip"),
        ("OCT_OTLP_EXPORT_FORMAT", "legacy"),
        (
            "OCT_OTLP_EXPORT_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
    ]);
    // The error first, so it is stored when its span is exported.
    let r = post_json(
        &d.url("/v1/errors"),
        &json!({"error_type": "ToolCrash", "message": "ls died", "stack_trace": "at ls",
                "trace_id": hex(7 << 32 | 1, 32), "span_id": hex(7 << 32 | 5, 16)}),
    );
    assert_eq!(r.status(), 202);
    d.wait_count("SELECT count(*) FROM events", 1, Duration::from_secs(10));
    let (input, output) = agent_traces(&d, 5, 7);
    wait_for(
        "20 spans, a log and GenAI metrics",
        Duration::from_secs(30),
        || {
            let g = got.lock().unwrap();
            let spans: usize = g
                .traces
                .iter()
                .flat_map(|r| &r.resource_spans)
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum();
            spans >= 20
                && !g.logs.is_empty()
                && g.metrics
                    .iter()
                    .any(|m| format!("{m:?}").contains("gen_ai.client.token.usage"))
        },
    );
    let g = got.lock().unwrap();
    let spans: Vec<&Span> = g
        .traces
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    assert_eq!(spans.len(), 20, "each span exactly once");
    // Ids and parents exactly as ingested: every parent is in the export.
    let ids: HashSet<Vec<u8>> = spans.iter().map(|s| s.span_id.clone()).collect();
    for s in &spans {
        if !s.parent_span_id.is_empty() {
            assert!(
                ids.contains(&s.parent_span_id),
                "parent of {} missing",
                s.name
            );
        }
    }
    let root = spans
        .iter()
        .find(|s| s.span_id == (7u64 << 32 | 1).to_be_bytes())
        .unwrap();
    assert_eq!(root.trace_id, (7u128 << 32 | 1).to_be_bytes().to_vec());
    assert_eq!(root.name, "invoke_agent main");
    let llm: Vec<&Span> = spans
        .iter()
        .copied()
        .filter(|s| s.name == "chat gpt-4o")
        .collect();
    assert_eq!(llm.len(), 10);
    assert!(
        llm.iter().all(|s| s.kind == 3),
        "LLM calls are CLIENT spans"
    );
    let (mut i, mut o) = (0, 0);
    for s in &llm {
        let Some(Av::IntValue(v)) = attr(s, "gen_ai.usage.input_tokens") else {
            panic!()
        };
        i += v;
        let Some(Av::IntValue(v)) = attr(s, "gen_ai.usage.output_tokens") else {
            panic!()
        };
        o += v;
        assert_eq!(
            attr(s, "gen_ai.provider.name"),
            Some(&Av::StringValue("openai".into()))
        );
        assert_eq!(
            attr(s, "gen_ai.operation.name"),
            Some(&Av::StringValue("chat".into()))
        );
        // legacy adds the pre-1.37 names.
        assert_eq!(
            attr(s, "gen_ai.system"),
            Some(&Av::StringValue("openai".into()))
        );
        assert!(attr(s, "gen_ai.usage.prompt_tokens").is_some());
        assert!(
            attr(s, "gen_ai.input.messages").is_none(),
            "content capture is off by default"
        );
    }
    assert_eq!((i, o), (input, output));
    let failed: Vec<&Span> = llm
        .iter()
        .copied()
        .filter(|s| s.status.as_ref().is_some_and(|st| st.code == 2))
        .collect();
    assert!(!failed.is_empty());
    for s in &failed {
        assert_eq!(s.events[0].name, "exception");
        assert_eq!(
            attr(s, "error.type"),
            Some(&Av::StringValue("RateLimit".into()))
        );
    }
    let tool = spans
        .iter()
        .find(|s| s.span_id == (7u64 << 32 | 5).to_be_bytes())
        .unwrap();
    assert_eq!(tool.name, "execute_tool ls");
    assert_eq!(
        tool.events[0].name, "exception",
        "the linked error event shows on its span"
    );
    // Resources: service name and configured attributes.
    let res = g.traces[0].resource_spans[0].resource.as_ref().unwrap();
    let keys: HashSet<&str> = res.attributes.iter().map(|a| a.key.as_str()).collect();
    assert!(keys.contains("service.name") && keys.contains("deployment.environment.name"));
    // The error event as a log record.
    let log = &g.logs[0].resource_logs[0].scope_logs[0].log_records[0];
    assert_eq!(log.event_name, "exception");
    assert_eq!(log.severity_number, 17);
    assert_eq!(log.span_id, (7u64 << 32 | 5).to_be_bytes().to_vec());
    // GenAI metrics with the specification's buckets.
    let usage = g
        .metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == "gen_ai.client.token.usage")
        .unwrap();
    let Some(Data::Histogram(h)) = &usage.data else {
        panic!()
    };
    assert_eq!(h.data_points[0].explicit_bounds.len(), 14);
    let token_sum: f64 = h.data_points.iter().filter_map(|p| p.sum).sum();
    assert_eq!(token_sum as i64, input + output);
    assert!(g.headers.iter().all(|h| h == "k3y-secret"));
    drop(g);
    let h = d.get_json("/health");
    let sink = h["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "otlp_export")
        .unwrap()
        .clone();
    assert_eq!(sink["status"], "ok");
    assert!(d.stop().success());
    assert!(d.logs().iter().all(|l| !l.contains("k3y-secret")));
}

#[test]
fn json_protocol_and_content_capture() {
    let (url, got) = receiver();
    let mut d = Daemon::start(&[
        (
            "OCT_OTLP_EXPORT_TRACES_ENDPOINT",
            &format!("{url}/v1/traces"),
        ),
        ("OCT_OTLP_EXPORT_PROTOCOL", "http/json"),
        ("OCT_OTLP_EXPORT_CAPTURE_CONTENT", "on"),
        ("OCT_OTLP_EXPORT_INTERVAL", "200ms"),
    ]);
    agent_traces(&d, 1, 9);
    wait_for("4 spans", Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .traces
            .iter()
            .map(|t| t.resource_spans[0].scope_spans[0].spans.len())
            .sum::<usize>()
            >= 4
    });
    let g = got.lock().unwrap();
    assert!(g.content_types.contains("application/json"));
    assert!(
        g.logs.is_empty() && g.metrics.is_empty(),
        "only the traces endpoint was set"
    );
    let spans: Vec<&Span> = g
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans[0].scope_spans[0].spans)
        .collect();
    let llm = spans.iter().find(|s| s.name == "chat gpt-4o").unwrap();
    let Some(Av::StringValue(m)) = attr(llm, "gen_ai.input.messages") else {
        panic!("no input messages")
    };
    let m: Value = serde_json::from_str(m).unwrap();
    assert_eq!(m[0]["role"], "user");
    assert_eq!(m[0]["parts"][0]["content"], "what is in the folder?");
    assert!(
        attr(llm, "gen_ai.system").is_none(),
        "semconv format has no pre-1.37 names"
    );
    drop(g);
    assert!(d.stop().success());
}

#[test]
fn export_cli_writes_otlp_json_and_native_json() {
    let mut d = Daemon::start(&[]);
    agent_traces(&d, 3, 11);
    d.wait_count("SELECT count(*) FROM spans", 12, Duration::from_secs(10));
    let one = hex(11 << 32 | 2, 32);
    let run = |args: &[&str]| {
        let out = d.cli(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (stdout, stderr) = run(&["export", "--format", "otlp", "--trace", &one]);
    assert!(stderr.contains("exported 4 spans"), "{stderr}");
    let req: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let spans = req["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|s| s["traceId"] == one.as_str()));
    let file = d.dir.join("all.ndjson");
    let (_, stderr) = run(&[
        "export",
        "--format",
        "json",
        "--since",
        "1h",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(stderr.contains("exported 12 spans"), "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert!(
        lines
            .iter()
            .all(|l| l["type"] == "span" && l["data"]["span_id"].is_string())
    );
    // To an endpoint, over OTLP/HTTP.
    let (url, got) = receiver();
    let (_, stderr) = run(&["export", "--endpoint", &url]);
    assert!(stderr.contains("exported 12 spans"), "{stderr}");
    assert_eq!(
        got.lock()
            .unwrap()
            .traces
            .iter()
            .map(|t| t
                .resource_spans
                .iter()
                .map(|r| r.scope_spans[0].spans.len())
                .sum::<usize>())
            .sum::<usize>(),
        12
    );
    let bad = d.cli(&["export", "--format", "xml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(d.stop().success());
}

// ---- Arize Phoenix as the destination ----

struct Phoenix {
    child: Child,
    http: String,
    grpc: String,
    _dir: tempfile::TempDir,
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn phoenix_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv-phoenix/bin/phoenix")
}

fn start_phoenix() -> Phoenix {
    let bin = phoenix_bin();
    assert!(
        bin.exists(),
        "Phoenix is not installed: run scripts/setup-phoenix.sh (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("phoenix.log")).unwrap();
    let child = Command::new(bin)
        .arg("serve")
        .env("PHOENIX_WORKING_DIR", dir.path())
        .env("PHOENIX_HOST", "127.0.0.1")
        .env("PHOENIX_PORT", port.to_string())
        .env("PHOENIX_GRPC_PORT", grpc.to_string())
        .env("PHOENIX_TELEMETRY_ENABLED", "false")
        .env("PHOENIX_ALLOW_EXTERNAL_RESOURCES", "false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let p = Phoenix {
        child,
        http: format!("http://127.0.0.1:{port}"),
        grpc: format!("http://127.0.0.1:{grpc}"),
        _dir: dir,
    };
    let c = client();
    let until = Instant::now() + Duration::from_secs(180);
    while Instant::now() < until {
        if c.get(format!("{}/healthz", p.http))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return p;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!(
        "Phoenix did not start: {}",
        std::fs::read_to_string(p._dir.path().join("phoenix.log")).unwrap_or_default()
    );
}

fn phoenix_spans(p: &Phoenix, project: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut url = format!("{}/v1/projects/{project}/spans?limit=1000", p.http);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = client().get(url).send().unwrap();
        if r.status() == 404 {
            return out;
        }
        let v: Value = r.json().unwrap();
        out.extend(v["data"].as_array().cloned().unwrap_or_default());
        cursor = v["next_cursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    out
}

fn check_in_phoenix(p: &Phoenix, project: &str, want_spans: usize, input: i64, output: i64) {
    let mut spans = Vec::new();
    wait_for(
        &format!("{want_spans} spans in Phoenix project {project}"),
        Duration::from_secs(60),
        || {
            spans = phoenix_spans(p, project);
            spans.len() >= want_spans
        },
    );
    assert_eq!(spans.len(), want_spans, "the same number of spans");
    let ids: HashSet<String> = spans
        .iter()
        .map(|s| s["context"]["span_id"].as_str().unwrap().to_string())
        .collect();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let (mut i, mut o) = (0, 0);
    for s in &spans {
        if let Some(parent) = s["parent_id"].as_str() {
            assert!(
                ids.contains(parent),
                "parent {parent} of {} not found: a broken tree",
                s["name"]
            );
        }
        *kinds
            .entry(s["span_kind"].as_str().unwrap().to_string())
            .or_default() += 1;
        i += s["attributes"]["llm.token_count.prompt"]
            .as_i64()
            .unwrap_or(0);
        o += s["attributes"]["llm.token_count.completion"]
            .as_i64()
            .unwrap_or(0);
    }
    let roots = spans.iter().filter(|s| s["parent_id"].is_null()).count();
    assert_eq!(kinds.get("AGENT"), Some(&roots), "{kinds:?}");
    assert_eq!(kinds.get("LLM"), Some(&(roots * 2)), "{kinds:?}");
    assert_eq!(kinds.get("TOOL"), Some(&roots), "{kinds:?}");
    assert_eq!((i, o), (input, output), "token counts equal");
}

#[test]
fn phoenix_shows_the_same_spans_trees_kinds_and_tokens() {
    let phoenix = start_phoenix();
    // http/protobuf: traces only (Phoenix takes no metrics or logs).
    let mut d = Daemon::start(&[
        ("OCT_OTLP_EXPORT_ENDPOINT", &phoenix.http),
        ("OCT_OTLP_EXPORT_SIGNALS", "traces"),
        (
            "OCT_OTLP_EXPORT_RESOURCE_ATTRIBUTES",
            "openinference.project.name=oct-http",
        ),
        ("OCT_OTLP_EXPORT_INTERVAL", "300ms"),
        ("OCT_OTLP_EXPORT_BATCH_SIZE", "64"),
    ]);
    let (input, output) = agent_traces(&d, 60, 3);
    check_in_phoenix(&phoenix, "oct-http", 240, input, output);
    assert!(d.stop().success());
    // gRPC, with the standard OTEL_* variables.
    let mut d = Daemon::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &phoenix.grpc),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "openinference.project.name=oct-grpc",
        ),
        ("OCT_OTLP_EXPORT_SIGNALS", "traces"),
        ("OCT_OTLP_EXPORT_INTERVAL", "300ms"),
    ]);
    let (input, output) = agent_traces(&d, 10, 4);
    check_in_phoenix(&phoenix, "oct-grpc", 40, input, output);
    assert!(d.stop().success());
}

/// Each finished agent run's behavioural metrics go out as OTLP gauges
/// (`openclaw_trace.run.<metric>`), one point per run at its end, by agent and run.
#[test]
fn run_metrics_are_exported_as_gauges_per_run_and_agent() {
    let (url, got) = receiver();
    let d = Daemon::start(&[
        ("OCT_OTLP_EXPORT_ENDPOINT", &url),
        ("OCT_OTLP_EXPORT_INTERVAL", "200ms"),
    ]);
    agent_traces(&d, 3, 9);
    let gauges = || -> Vec<(String, String, String, f64)> {
        let g = got.lock().unwrap();
        let mut out = Vec::new();
        for m in g
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name.starts_with("openclaw_trace.run."))
        {
            let Some(Data::Gauge(gauge)) = &m.data else {
                panic!("{} is not a gauge", m.name)
            };
            for p in &gauge.data_points {
                let get = |k: &str| {
                    p.attributes
                        .iter()
                        .find(|a| a.key == k)
                        .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                            Av::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default()
                };
                let v = match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                            v,
                        ),
                    ) => v,
                    other => panic!("{other:?}"),
                };
                assert!(p.time_unix_nano > p.start_time_unix_nano);
                out.push((
                    m.name.clone(),
                    get("gen_ai.agent.id"),
                    get("openclaw_trace.run.id"),
                    v,
                ));
            }
        }
        out
    };
    wait_for("three runs' gauges", Duration::from_secs(30), || {
        gauges()
            .iter()
            .filter(|g| g.0 == "openclaw_trace.run.llm_calls")
            .count()
            >= 3
    });
    let all = gauges();
    for t in 0..3u64 {
        let run = hex(9 << 32 | (t + 1), 32);
        let of = |name: &str| -> f64 {
            let found: Vec<_> = all
                .iter()
                .filter(|g| g.0 == format!("openclaw_trace.run.{name}") && g.2 == run)
                .collect();
            assert_eq!(found.len(), 1, "{name} of {run}: {all:?}");
            assert_eq!(found[0].1, "main");
            found[0].3
        };
        assert_eq!(of("llm_calls"), 2.0);
        assert_eq!(of("tool_calls"), 1.0);
        assert_eq!(of("duration_ms"), 5000.0);
        // 100 + t and 101 + t input tokens, 10 and 11 output tokens.
        let tokens = (100 + t + 101 + t + 21) as f64;
        assert_eq!(of("total_tokens"), tokens);
        assert_eq!(of("tokens_per_call"), tokens / 2.0);
        assert!((of("cost_usd") - 0.004).abs() < 1e-12);
        assert_eq!(of("retry_rate"), 0.0);
        assert_eq!(of("blast_radius"), 0.0);
    }
}
