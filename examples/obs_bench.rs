//! Costs of the observability hooks on the hot paths: redaction (on the submitting thread),
//! metrics and live-tail hooks (on the writer thread), and encoding `/metrics`.
//! Run: `bash bench/obs.sh` (release) or `cargo run --example obs_bench` (debug: upper bounds).

use std::time::Instant;

use openclaw_trace::metrics::Registry;
use openclaw_trace::metrics::records::RecordMetrics;
use openclaw_trace::model::{CappedText, Record, Span, SpanId, SpanKind, StatusCode, TraceId};
use openclaw_trace::pipeline::{Transform, WriteHook};
use openclaw_trace::redact::{Redactor, redact_text};
use openclaw_trace::sinks::live::LiveHub;

fn llm_span(i: usize, text: &str) -> Record {
    let mut s = Span::new(
        TraceId::generate(),
        SpanId::generate(),
        "chat m".into(),
        SpanKind::LlmCall,
        0,
    );
    s.end_ns = Some(1_000_000_000 + (i as i64 % 7) * 100_000_000);
    s.provider = Some("openai".into());
    s.request_model = Some(format!("model-{}", i % 20));
    s.input_tokens = Some(100 + (i as i64 % 1000));
    s.output_tokens = Some(10 + (i as i64 % 100));
    s.cost_usd = Some(0.001);
    s.status = StatusCode::Ok;
    s.input = Some(CappedText::new(text.to_string(), 16384));
    s.output = Some(CappedText::new(text.to_string(), 16384));
    Record::Span(Box::new(s))
}

fn main() {
    let prose = "The agent read the file, summarised 3 sections and called the search tool. \
                 input_tokens=120 output_tokens=40; see https://docs.example.com/page?x=1. ";
    let clean: String = prose.repeat(16384 / prose.len());
    let secretive = format!(
        "{}api_key=abc123 Authorization: Bearer abcdefghijklmn sk-proj-abcdefghijklmnopqrstuvwxyz {}",
        &clean[..8000],
        &clean[..8000]
    );
    for (label, text) in [
        ("clean 16 KiB", &clean),
        ("16 KiB with 3 secrets", &secretive),
    ] {
        let n = 2000;
        let t = Instant::now();
        let mut changed = 0;
        for _ in 0..n {
            if matches!(redact_text(text), std::borrow::Cow::Owned(_)) {
                changed += 1;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "redact_text {label}: {:.1} µs/call, {:.0} MB/s ({changed} changed)",
            secs / n as f64 * 1e6,
            (text.len() * n) as f64 / secs / 1e6
        );
    }
    let small = "hello world, a short prompt";
    let mut rec = llm_span(0, small);
    let n = 100_000;
    let t = Instant::now();
    for _ in 0..n {
        Redactor.apply(&mut rec);
    }
    println!(
        "Redactor::apply, small span: {:.2} µs/record",
        t.elapsed().as_secs_f64() / n as f64 * 1e6
    );

    let registry = Registry::new();
    let metrics = RecordMetrics::new(&registry, 50);
    let batch: Vec<Record> = (0..2000).map(|i| llm_span(i, small)).collect();
    let effects = vec![openclaw_trace::store::write::WriteEffect::Inserted; batch.len()];
    let rounds = 50;
    let t = Instant::now();
    for _ in 0..rounds {
        metrics.after_commit(&batch, &effects);
    }
    println!(
        "RecordMetrics::after_commit: {:.2} µs/record",
        t.elapsed().as_secs_f64() / (rounds * batch.len()) as f64 * 1e6
    );
    let hub = LiveHub::new();
    for (label, subscribed) in [("no subscriber", false), ("1 subscriber", true)] {
        let _rx = subscribed.then(|| hub.subscribe());
        let t = Instant::now();
        for _ in 0..rounds {
            hub.after_commit(&batch, &effects);
        }
        println!(
            "LiveHub::after_commit ({label}): {:.2} µs/record",
            t.elapsed().as_secs_f64() / (rounds * batch.len()) as f64 * 1e6
        );
    }
    let n = 200;
    let t = Instant::now();
    let mut size = 0;
    for _ in 0..n {
        size = registry.encode_openmetrics().map(|s| s.len()).unwrap_or(0);
    }
    println!(
        "encode /metrics (20 models): {:.2} ms, {size} bytes",
        t.elapsed().as_secs_f64() / n as f64 * 1e3
    );
}
