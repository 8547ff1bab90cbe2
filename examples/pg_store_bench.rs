//! The PostgreSQL store's write path against a raw `COPY` of the same rows, in one run
//! on one server: `--writers` connections (a central's writers, each taking its
//! sidecars' batches) write `--spans` GenAI spans in batches of `--batch` through
//! `PgStore::write` (binary COPY into staging, then an insert that skips what is already
//! stored, into day partitions with their indexes); then the same rows, encoded the
//! same way, go by plain binary COPY into an unindexed, unpartitioned table. Prints
//! committed spans per second for both and their ratio.
//!
//! `cargo run --release --example pg_store_bench -- --url postgres://… --spans 1000000`
//! (bench/fleet.sh starts a private server and runs this).

use std::sync::Arc;
use std::time::Instant;

use openclaw_trace::model::{CappedText, Record, Span, SpanId, SpanKind, TraceId, now_ns};
use openclaw_trace::store::postgres::PgStore;
use serde_json::{Map, Value, json};

struct Args {
    url: String,
    spans: usize,
    batch: usize,
    writers: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        spans: 200_000,
        batch: 500,
        writers: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--url" => a.url = v,
            "--spans" => a.spans = v.parse().expect("--spans"),
            "--batch" => a.batch = v.parse().expect("--batch"),
            "--writers" => a.writers = v.parse().expect("--writers"),
            _ => panic!("unknown argument {k}"),
        }
    }
    assert!(!a.url.is_empty(), "--url postgres://… is required");
    a
}

/// The `bench/otlp.sh` kind of span: a GenAI call with about 400 bytes of attributes
/// and 200-character texts. Each batch of `batch` comes from one of 50 sidecars in
/// turn, as a central receives them (one push, one sidecar).
fn spans(n: usize, batch: usize, start: i64) -> Vec<Record> {
    let resources: Vec<Arc<Map<String, Value>>> = (0..50)
        .map(|i| {
            let v = json!({"service.name": "openclaw", "service.version": "2026.9.6",
                "service.instance.id": format!("sidecar-{i:02}"), "cloud.region": "ams",
                "host.name": format!("fly-{i:02}"), "telemetry.sdk.language": "nodejs"});
            Arc::new(v.as_object().unwrap().clone())
        })
        .collect();
    (0..n)
        .map(|i| {
            let mut t = [0u8; 16];
            t[..8].copy_from_slice(&(0xbe_0000_0000u64 + (i / 4) as u64).to_be_bytes());
            t[8..].copy_from_slice(&0x5eed_u64.to_be_bytes());
            let at = start + i as i64 * 1_000_000;
            let mut s = Span::new(
                TraceId(t),
                SpanId((i as u64 + 1).to_be_bytes()),
                "chat gpt-4o".into(),
                SpanKind::LlmCall,
                at,
            );
            s.end_ns = Some(at + 750_000_000);
            s.provider = Some("openai".into());
            s.request_model = Some("gpt-4o".into());
            s.response_model = Some("gpt-4o-2024-08-06".into());
            s.input_tokens = Some(1200 + (i % 300) as i64);
            s.output_tokens = Some(180);
            s.total_tokens = Some(1380 + (i % 300) as i64);
            s.cost_usd = Some(0.0048);
            s.agent_id = Some(format!("agent-{}", i % 7));
            s.session_id = Some(format!("session-{:08x}", i / 40));
            for (k, v) in [
                ("gen_ai.operation.name", json!("chat")),
                ("gen_ai.request.temperature", json!(0.2)),
                ("gen_ai.request.max_tokens", json!(1024)),
                ("gen_ai.response.id", json!(format!("chatcmpl-{i:024x}"))),
                ("gen_ai.response.finish_reasons", json!(["stop"])),
                ("server.address", json!("api.openai.com")),
                ("server.port", json!(443)),
                ("openclaw.run_id", json!(format!("run-{:016x}", i / 4))),
                ("openclaw.channel", json!("telegram")),
                (
                    "openclaw.session_key",
                    json!(format!("agent:main:telegram:{}", i % 97)),
                ),
            ] {
                s.attributes.insert(k.into(), v);
            }
            s.input = Some(CappedText::new(
                format!(
                    "question {i}: {}",
                    "what is in the folder and why? ".repeat(6)
                ),
                4096,
            ));
            s.output = Some(CappedText::new(
                format!(
                    "answer {i}: {}",
                    "two files, notes.md and plan.md. ".repeat(6)
                ),
                4096,
            ));
            s.resource = resources[(i / batch) % 50].clone();
            Record::Span(Box::new(s))
        })
        .collect()
}

/// One connection writing batches: through the store, or by raw COPY.
enum Writer {
    Store(PgStore),
    RawCopy(tokio_postgres::Client),
}

impl Writer {
    /// Spans committed.
    async fn write(&mut self, batch: &[Record]) -> usize {
        match self {
            Writer::Store(store) => {
                store.write(batch, now_ns()).await.expect("write").spans as usize
            }
            Writer::RawCopy(c) => {
                openclaw_trace::store::postgres::raw_copy(c, "raw_spans", batch, now_ns())
                    .await
                    .expect("copy") as usize
            }
        }
    }
}

/// The writers take batches until none is left: spans committed, and seconds taken.
async fn drain(writers: Vec<Writer>, batches: Vec<Vec<Record>>) -> (usize, f64) {
    let batches = Arc::new(std::sync::Mutex::new(batches));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for mut w in writers {
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            loop {
                let Some(b) = batches.lock().unwrap().pop() else {
                    break;
                };
                n += w.write(&b).await;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    (total, t.elapsed().as_secs_f64())
}

async fn client(url: &str) -> tokio_postgres::Client {
    openclaw_trace::store::postgres::connect(url)
        .await
        .expect("connect")
}

async fn run_store(url: &str, batches: Vec<Vec<Record>>, writers: usize) -> (usize, f64) {
    let mut ws = Vec::new();
    for _ in 0..writers {
        ws.push(Writer::Store(PgStore::connect(url).await.expect("connect")));
    }
    drain(ws, batches).await
}

async fn run_raw_copy(url: &str, batches: Vec<Vec<Record>>, writers: usize) -> (usize, f64) {
    client(url)
        .await
        .batch_execute(
            "DROP TABLE IF EXISTS raw_spans;
             CREATE TABLE raw_spans AS SELECT * FROM spans WITH NO DATA;
             ALTER TABLE raw_spans DROP COLUMN id;",
        )
        .await
        .unwrap();
    let mut ws = Vec::new();
    for _ in 0..writers {
        ws.push(Writer::RawCopy(client(url).await));
    }
    drain(ws, batches).await
}

/// p50 and p95 in ms of `sql` run `n` times.
async fn timed(client: &tokio_postgres::Client, sql: &str, n: usize) -> (f64, f64) {
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        client.query(sql, &[]).await.expect(sql);
        t.push(s.elapsed().as_secs_f64() * 1000.0);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    (t[n / 2], t[n * 95 / 100])
}

/// What the central's runs list and usage pages read, on the stored spans.
async fn query_times(url: &str, start: i64) {
    let client = client(url).await;
    client.batch_execute("ANALYZE").await.unwrap();
    let day_ago = start + 3_600 * 1_000_000_000 - 86_400 * 1_000_000_000;
    for (name, sql) in [
        (
            "runs_list",
            "SELECT * FROM traces ORDER BY start_ns DESC, trace_id DESC LIMIT 50".to_string(),
        ),
        (
            "runs_list_one_instance",
            "SELECT * FROM traces WHERE instance_id = 'sidecar-07' \
             ORDER BY start_ns DESC LIMIT 50"
                .to_string(),
        ),
        (
            "usage_24h_by_model",
            format!(
                "SELECT model, sum(calls), sum(input_tokens), sum(output_tokens), sum(cost_usd) \
                 FROM usage_hourly WHERE hour_ns >= {day_ago} GROUP BY model"
            ),
        ),
        (
            "usage_24h_by_instance",
            format!(
                "SELECT instance_id, sum(calls), sum(total_tokens), sum(cost_usd) \
                 FROM usage_hourly WHERE hour_ns >= {day_ago} GROUP BY instance_id"
            ),
        ),
        (
            "one_run_spans",
            "SELECT * FROM spans WHERE trace_id = (SELECT trace_id FROM traces \
             ORDER BY start_ns DESC LIMIT 1 OFFSET 1000) ORDER BY start_ns"
                .to_string(),
        ),
    ] {
        let (p50, p95) = timed(&client, &sql, 200).await;
        println!("query {name}: p50 {p50:.2} ms, p95 {p95:.2} ms");
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let start = now_ns() - 3_600 * 1_000_000_000;
    let make = || -> Vec<Vec<Record>> {
        let all = spans(a.spans, a.batch, start);
        let mut out = Vec::new();
        let mut it = all.into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(a.batch).collect());
        }
        out
    };
    let (n, secs) = run_store(&a.url, make(), a.writers).await;
    let store_rate = n as f64 / secs;
    println!(
        "pg_store_write: {n} spans committed in {secs:.2} s = {store_rate:.0} spans/s ({} writers, batches of {})",
        a.writers, a.batch
    );
    query_times(&a.url, start).await;
    let (n, secs) = run_raw_copy(&a.url, make(), a.writers).await;
    let raw_rate = n as f64 / secs;
    println!("raw_copy: {n} spans copied in {secs:.2} s = {raw_rate:.0} spans/s");
    println!("store_to_raw_copy_ratio: {:.2}", store_rate / raw_rate);
}
