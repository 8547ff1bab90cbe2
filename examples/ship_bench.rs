//! Shipping benchmark: seeds a database with a backlog of spans, then starts the
//! real daemon with one sink at a time against a local receiver and measures how
//! fast the backlog drains and the daemon's RSS while it does.
//!
//! `cargo run --release --example ship_bench -- --bin target/release/openclaw-trace --spans 1000000`
//! (bench/ship.sh does this).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use openclaw_trace::model::{
    CappedText, Record, Span, SpanId, SpanKind, StatusCode as SpanStatus, TraceId, now_ns,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

#[derive(Default)]
struct Counts {
    records: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
}

async fn receive(State(c): State<Arc<Counts>>, uri: Uri, body: Bytes) -> StatusCode {
    c.requests.fetch_add(1, Ordering::Relaxed);
    c.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let n = if uri.path() == "/v1/traces" {
        ExportTraceServiceRequest::decode(&body[..])
            .map(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .map(|s| s.spans.len() as u64)
                    .sum()
            })
            .unwrap_or(0)
    } else {
        let needle = b"\"type\":\"span\"";
        body.windows(needle.len()).filter(|w| w == needle).count() as u64
    };
    c.records.fetch_add(n, Ordering::Relaxed);
    StatusCode::OK
}

fn receiver(counts: Arc<Counts>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new()
                .fallback(axum::routing::post(receive))
                .layer(axum::extract::DefaultBodyLimit::disable())
                .with_state(counts);
            axum::serve(l, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

/// Agent-like traces: a run, two LLM calls and a tool call each.
fn seed(db: &Path, spans: u64) {
    let mut conn = openclaw_trace::store::open_writer(db).unwrap();
    let now = now_ns();
    let started = Instant::now();
    let mut written = 0u64;
    while written < spans {
        let mut batch = Vec::with_capacity(10_000);
        while batch.len() < 10_000 && written < spans {
            let t = written / 4;
            let trace = TraceId((t as u128 + 1).to_be_bytes());
            let root = SpanId((t * 4 + 1).to_be_bytes());
            let i = written % 4;
            let (kind, name) = match i {
                0 => (SpanKind::AgentRun, "run".to_string()),
                3 => (SpanKind::ToolCall, "execute_tool ls".to_string()),
                _ => (SpanKind::LlmCall, "chat gpt-4o".to_string()),
            };
            let mut s = Span::new(
                trace,
                SpanId((t * 4 + 1 + i).to_be_bytes()),
                name,
                kind,
                now + written as i64,
            );
            s.end_ns = Some(s.start_ns + 1_200_000_000);
            s.status = SpanStatus::Ok;
            s.agent_id = Some("main".into());
            s.session_id = Some(format!("session-{}", t / 100));
            if i > 0 {
                s.parent_span_id = Some(root);
            }
            if kind == SpanKind::LlmCall {
                s.provider = Some("openai".into());
                s.request_model = Some("gpt-4o".into());
                s.response_model = Some("gpt-4o-2024-08-06".into());
                s.input_tokens = Some(1200 + i as i64);
                s.output_tokens = Some(300);
                s.total_tokens = Some(1500 + i as i64);
                s.cost_usd = Some(0.0061);
                s.finish_reasons = vec!["stop".into()];
                s.input = Some(CappedText::new(
                    "List the files in the working directory and summarise them.".repeat(3),
                    16384,
                ));
                s.output = Some(CappedText::new(
                    "There are three files: a README, a Cargo.toml and src/.".into(),
                    16384,
                ));
            }
            if kind == SpanKind::ToolCall {
                s.tool_name = Some("ls".into());
                s.tool_call_id = Some(format!("call_{t}"));
            }
            s.attributes.insert("openclaw.channel".into(), "cli".into());
            batch.push(Record::Span(Box::new(s)));
            written += 1;
        }
        let tx = conn.transaction().unwrap();
        openclaw_trace::store::write::write_records(&tx, &batch, now).unwrap();
        tx.commit().unwrap();
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    eprintln!(
        "seeded {spans} spans in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    seconds: f64,
    records: u64,
    requests: u64,
    bytes: u64,
    peak_rss_kib: u64,
    median_rss_kib: u64,
}

/// Starts the daemon on a copy of the seeded database with one sink and waits for the drain.
fn drain(bin: &Path, seeded: &Path, work: &Path, sink: &str, spans: u64) -> Run {
    let db = work.join(format!("{sink}.db"));
    std::fs::copy(seeded, &db).unwrap();
    let counts = Arc::new(Counts::default());
    let url = receiver(counts.clone());
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("OCT_PORT", "0")
        .env("OCT_DB_PATH", &db)
        .env("OCT_LOG_FORMAT", "json")
        .env("OCT_CLEANUP_DB_THRESHOLD_BYTES", "100GiB")
        .env("OCT_CLEANUP_DISK_THRESHOLD", "100")
        .env("OCT_RETENTION_DAYS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match sink {
        "push" => {
            cmd.env("OCT_PUSH_ENDPOINT", format!("{url}/ingest"))
                .env("OCT_PUSH_FORMAT", "v2");
        }
        _ => {
            cmd.env("OCT_OTLP_EXPORT_ENDPOINT", &url)
                .env("OCT_OTLP_EXPORT_SIGNALS", "traces");
        }
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                eprintln!("daemon: {line}");
            }
        }
    });
    let mut samples = Vec::new();
    let until = started + Duration::from_secs(3600);
    while counts.records.load(Ordering::Relaxed) < spans && Instant::now() < until {
        if let Some(r) = rss_kib(pid) {
            samples.push(r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = started.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    samples.sort_unstable();
    Run {
        seconds,
        records: counts.records.load(Ordering::Relaxed),
        requests: counts.requests.load(Ordering::Relaxed),
        bytes: counts.bytes.load(Ordering::Relaxed),
        peak_rss_kib: samples.last().copied().unwrap_or(0),
        median_rss_kib: samples.get(samples.len() / 2).copied().unwrap_or(0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let bin = PathBuf::from(arg("--bin").unwrap_or_else(|| "target/release/openclaw-trace".into()));
    let spans: u64 = arg("--spans")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let work = tempfile::tempdir().unwrap();
    let seeded = work.path().join("seed.db");
    seed(&seeded, spans);
    let size = std::fs::metadata(&seeded).map(|m| m.len()).unwrap_or(0);
    println!(
        "backlog: {spans} spans, database {:.0} MiB",
        size as f64 / 1048576.0
    );
    for sink in ["push", "otlp_export"] {
        let r = drain(&bin, &seeded, work.path(), sink, spans);
        println!(
            "{sink:<12} drained {} of {spans} spans in {:.1}s = {:.0} spans/s; {} requests, {:.0} MiB sent; RSS while draining: median {:.1} MiB, peak {:.1} MiB",
            r.records,
            r.seconds,
            r.records as f64 / r.seconds,
            r.requests,
            r.bytes as f64 / 1048576.0,
            r.median_rss_kib as f64 / 1024.0,
            r.peak_rss_kib as f64 / 1024.0,
        );
    }
}
