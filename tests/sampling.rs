//! Sampling that keeps the numbers exact: 10,000 runs with a known mix at 10 %, posted
//! to a daemon with sampling and to one without. Every error, costly and slow run is
//! kept, the rest within a binomial bound of 10 %, and usage, budgets, baselines and
//! run totals are the same on both. The OTLP export and the push carry only kept runs,
//! each span with its sampling ratio.

mod common;
use common::*;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use openclaw_trace::analytics::sampling::ratio_keeps;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use serde_json::{Value, json};

const RUNS: usize = 10_000;
const RATIO: f64 = 0.1;

/// Bodies received, by path (decompressed).
type Shared = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn receive(State(r): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    r.lock().unwrap().push((uri.path().to_string(), raw));
    StatusCode::OK
}

fn receiver() -> (String, Shared) {
    let shared: Shared = Arc::default();
    let app = axum::Router::new()
        .fallback(axum::routing::post(receive))
        .with_state(shared.clone());
    (serve_in_thread(app), shared)
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0
    }
    fn id(&mut self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next().to_be_bytes());
        b[8..].copy_from_slice(&self.next().to_be_bytes());
        b
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mix {
    Normal,
    Error,
    Costly,
    Slow,
}

/// One run: the agent_run root, two LLM calls and a tool call.
fn run_spans(trace: &str, start_ms: i64, mix: Mix) -> Vec<Value> {
    let root = "00000000000000a1";
    let (latency, cost) = match mix {
        Mix::Slow => (45_000, 0.001),
        Mix::Costly => (5_000, 0.2),
        _ => (5_000, 0.001),
    };
    let mut out = vec![json!({
        "kind": "agent_run", "name": "invoke_agent", "agent_id": "a", "trace_id": trace,
        "span_id": root, "timestamp": start_ms, "latency_ms": latency,
    })];
    for c in 0..2 {
        out.push(json!({
            "provider": "openai", "model": "gpt-4o", "agent_id": "a", "trace_id": trace,
            "span_id": format!("00000000000000b{c}"), "parent_span_id": root,
            "timestamp": start_ms + 10 + c * 100, "latency_ms": 80,
            "prompt_tokens": 1000 + c, "completion_tokens": 100, "cost_usd": cost,
            "input_text": "what is in the folder?", "output_text": "two files",
        }));
    }
    out.push(json!({
        "kind": "tool_call", "tool_name": "write", "agent_id": "a", "trace_id": trace,
        "span_id": "00000000000000c1", "parent_span_id": root, "timestamp": start_ms + 300,
        "latency_ms": 5, "input_text": "{\"path\": \"notes.md\"}",
        "status": if mix == Mix::Error { "error" } else { "ok" },
    }));
    out
}

fn mix_of(i: usize) -> Mix {
    if i % 20 == 7 {
        Mix::Error
    } else if i % 25 == 3 {
        Mix::Costly
    } else if i % 40 == 11 {
        Mix::Slow
    } else {
        Mix::Normal
    }
}

fn budget_spent(d: &Daemon) -> Vec<(String, f64)> {
    let b = d.get_json("/v1/budget");
    let mut out: Vec<(String, f64)> = b["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["budget"].as_str().unwrap().to_string(),
                x["spent"].as_f64().unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Sums of the run summaries (what run counts and cost by run read).
fn trace_sums(d: &Daemon) -> (i64, i64, i64, i64, String) {
    d.db()
        .query_row(
            "SELECT count(*), sum(tool_calls), sum(total_tokens), sum(error_count),
                    printf('%.6f', sum(cost_usd)) FROM traces",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

/// The /metrics lines that add up LLM calls, tokens and cost.
fn usage_metrics(d: &Daemon) -> Vec<String> {
    let text = client()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with("openclaw_trace_llm_")
                || l.starts_with("openclaw_trace_tokens")
                || l.starts_with("openclaw_trace_cost")
        })
        .map(|l| match l.rsplit_once(' ') {
            Some((k, x)) => match x.parse::<f64>() {
                Ok(x) => format!("{k} {x:.6}"),
                Err(_) => l.to_string(),
            },
            None => l.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// Floats to 9 decimals: sums of the same costs batched differently differ in the last bits.
fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => json!(format!("{:.9}", n.as_f64().unwrap())),
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        v => v,
    }
}

#[test]
fn ten_thousand_runs_keep_errors_and_costly_runs_and_every_total() {
    let (url, got) = receiver();
    let push_endpoint = format!("{url}/push");
    let common_env = [
        ("OCT_BUDGETS", "global/day=$100000, agent:a/day=900M tokens"),
        ("OCT_BASELINE_RUNS", "20"),
        ("OCT_BASELINE_SETTLE", "100ms"),
    ];
    let mut env_b = common_env.to_vec();
    env_b.extend([
        (
            "OCT_SAMPLING",
            "ratio=10%, slower_than=30s, costlier_than=$0.1",
        ),
        ("OCT_SAMPLING_DECISION_WAIT", "2s"),
        ("OCT_OTLP_EXPORT_ENDPOINT", url.as_str()),
        ("OCT_OTLP_EXPORT_PROTOCOL", "http/json"),
        ("OCT_OTLP_EXPORT_SIGNALS", "traces"),
        ("OCT_OTLP_EXPORT_INTERVAL", "200ms"),
        ("OCT_PUSH_ENDPOINT", push_endpoint.as_str()),
        ("OCT_PUSH_INTERVAL", "200ms"),
    ]);
    let a = Daemon::start(&common_env);
    let b = Daemon::start(&env_b);

    let mut rng = Lcg(0x5eed_0019);
    // Runs 500 ms apart from two hours ago, squeezed early in a UTC day so that the day
    // budgets see every one of them on any date.
    let now = now_ms_with_today_reaching_back(20_000);
    let reach = (2 * 3_600_000).min(now.rem_euclid(86_400_000) - 1_000);
    let step = 500 * reach / (2 * 3_600_000);
    let start = now - reach;
    let mut runs: Vec<(String, [u8; 16], Mix)> = Vec::with_capacity(RUNS);
    let mut body = Vec::new();
    for i in 0..RUNS {
        let id = rng.id();
        let trace = hex(&id);
        let mix = mix_of(i);
        body.extend(run_spans(&trace, start + i as i64 * step, mix));
        runs.push((trace, id, mix));
        if body.len() >= 400 || i == RUNS - 1 {
            let batch = json!(std::mem::take(&mut body));
            for d in [&a, &b] {
                // A full queue answers 429: wait and send again.
                let mut tries = 0;
                loop {
                    let resp = post_json(&d.url("/v1/traces"), &batch);
                    if resp.status() == 429 && tries < 600 {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    assert_eq!(resp.status(), 202, "{}", resp.text().unwrap_or_default());
                    break;
                }
            }
        }
    }
    let spans = (RUNS * 4) as i64;
    a.wait_count(
        "SELECT count(*) FROM spans",
        spans,
        Duration::from_secs(120),
    );
    b.wait_count(
        "SELECT count(*) FROM run_sampling WHERE kept IS NOT NULL",
        RUNS as i64,
        Duration::from_secs(300),
    );

    // Which runs were kept, and why.
    let decided: HashMap<String, (i64, Option<String>, f64)> = {
        let db = b.db();
        let mut st = db
            .prepare("SELECT hex(trace_id), kept, rule, ratio FROM run_sampling")
            .unwrap();
        st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?.to_lowercase(),
                (r.get(1)?, r.get(2)?, r.get(3)?),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(decided.len(), RUNS);
    let (mut normal, mut normal_kept, mut by_baseline) = (0u64, 0u64, 0u64);
    let mut kept_ids = HashSet::new();
    for (trace, id, mix) in &runs {
        let (kept, rule, ratio) = &decided[trace];
        if *kept == 1 {
            kept_ids.insert(trace.clone());
        }
        match mix {
            Mix::Error => assert_eq!((*kept, rule.as_deref()), (1, Some("error")), "{trace}"),
            Mix::Costly => assert_eq!((*kept, rule.as_deref()), (1, Some("cost")), "{trace}"),
            Mix::Slow => assert_eq!((*kept, rule.as_deref()), (1, Some("slow")), "{trace}"),
            Mix::Normal => {
                normal += 1;
                match rule.as_deref() {
                    Some("baseline") => by_baseline += 1,
                    Some("ratio") => {
                        normal_kept += 1;
                        assert_eq!(*ratio, RATIO);
                        assert!(ratio_keeps(id, RATIO));
                    }
                    None => {
                        assert_eq!(*kept, 0);
                        assert!(!ratio_keeps(id, RATIO), "decided by the trace id alone");
                    }
                    other => panic!("{trace}: {other:?}"),
                }
            }
        }
    }
    assert_eq!(by_baseline, 0, "identical normal runs are not outliers");
    // Binomial bound: within 4 standard deviations of 10 %.
    let n = normal as f64;
    let sd = (n * RATIO * (1.0 - RATIO)).sqrt();
    let k = normal_kept as f64;
    eprintln!(
        "normal runs {normal}, kept by ratio {normal_kept} ({:.2} %), bound ±{:.0}",
        k / n * 100.0,
        4.0 * sd
    );
    assert!(
        (k - n * RATIO).abs() <= 4.0 * sd,
        "{normal_kept} of {normal}"
    );

    // A dropped run keeps one span (its root), without texts, and no events, once its
    // rows went (a decision wait after the decision).
    b.wait_count(
        "SELECT count(*) FROM run_sampling WHERE kept = 1 OR anchor_id IS NOT NULL",
        RUNS as i64,
        Duration::from_secs(60),
    );
    let db = b.db();
    let stored: i64 = db
        .query_row("SELECT count(*) FROM spans", [], |r| r.get(0))
        .unwrap();
    let dropped = RUNS as i64 - kept_ids.len() as i64;
    assert_eq!(stored, kept_ids.len() as i64 * 4 + dropped);
    let dropped_texts: i64 = db
        .query_row(
            "SELECT count(*) FROM spans s JOIN run_sampling r ON r.trace_id = s.trace_id
             WHERE r.kept = 0 AND (s.input_text IS NOT NULL OR s.output_text IS NOT NULL OR s.kind != 'agent_run')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dropped_texts, 0);
    eprintln!(
        "kept {} runs, dropped {dropped}; spans stored {stored} of {spans}",
        kept_ids.len()
    );

    // Every total is the same with and without sampling.
    for q in [
        "/v1/usage?group_by=agent,model",
        "/v1/usage?bucket=hour",
        "/v1/baseline?agent=a",
    ] {
        assert_eq!(rounded(a.get_json(q)), rounded(b.get_json(q)), "{q}");
    }
    let spent = |d: &Daemon| -> Vec<(String, String)> {
        budget_spent(d)
            .into_iter()
            .map(|(k, v)| (k, format!("{v:.9}")))
            .collect()
    };
    assert_eq!(spent(&a), spent(&b));
    assert!(budget_spent(&a).iter().all(|(_, s)| *s > 0.0));
    assert_eq!(trace_sums(&a), trace_sums(&b));
    let (ma, mb) = (usage_metrics(&a), usage_metrics(&b));
    assert!(!ma.is_empty());
    assert_eq!(ma, mb);

    // /health and /metrics count the decisions.
    let h = b.get_json("/health");
    let s = &h["analytics"]["sampling"];
    assert_eq!(s["kept_runs"], kept_ids.len() as u64, "{s}");
    assert_eq!(s["dropped_runs"], dropped as u64);
    assert_eq!(s["ratio"], RATIO);
    assert!(a.get_json("/health")["analytics"]["sampling"].is_null());
    let metrics = client()
        .get(b.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "openclaw_trace_sampling_runs_total{{decision=\"dropped\"}} {dropped}"
        )),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("sampling"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The OTLP export and the push carry every span of the kept runs and nothing else.
    let want_spans = kept_ids.len() * 4;
    let exported = |got: &Shared| -> (HashMap<String, usize>, usize, usize) {
        let mut per_trace: HashMap<String, usize> = HashMap::new();
        let (mut with_ratio, mut pushed) = (0, 0);
        for (path, raw) in got.lock().unwrap().iter() {
            if path == "/v1/traces" {
                let req: ExportTraceServiceRequest = serde_json::from_slice(raw).unwrap();
                for s in req
                    .resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                {
                    *per_trace.entry(hex(&s.trace_id)).or_default() += 1;
                    let ratio = s
                        .attributes
                        .iter()
                        .find(|a| a.key == "sampling.ratio")
                        .and_then(|a| a.value.as_ref()?.value.as_ref());
                    match ratio {
                        Some(Av::DoubleValue(r)) if *r == RATIO || *r == 1.0 => with_ratio += 1,
                        other => panic!("sampling.ratio: {other:?}"),
                    }
                }
            } else if path == "/push" {
                let v: Value = serde_json::from_slice(raw).unwrap();
                let items = v["records"].as_array().or(v["events"].as_array()).unwrap();
                for i in items {
                    let t = i["data"]["trace_id"].as_str().unwrap_or_default();
                    assert!(kept_ids.contains(t), "pushed a dropped run's record: {i}");
                    assert!(i.to_string().contains("sampling.ratio"), "{i}");
                    pushed += 1;
                }
            }
        }
        (per_trace, with_ratio, pushed)
    };
    wait_for(
        "the kept runs' spans exported",
        Duration::from_secs(120),
        || exported(&got).1 >= want_spans,
    );
    std::thread::sleep(Duration::from_secs(1));
    let (per_trace, with_ratio, pushed) = exported(&got);
    assert_eq!(with_ratio, want_spans, "each span once, with its ratio");
    assert_eq!(per_trace.len(), kept_ids.len());
    for (t, n) in &per_trace {
        assert!(kept_ids.contains(t), "exported a dropped run: {t}");
        assert_eq!(*n, 4, "{t}");
    }
    wait_for(
        "the kept runs' LLM calls pushed",
        Duration::from_secs(60),
        || exported(&got).2 >= kept_ids.len() * 2,
    );
    eprintln!("exported {with_ratio} spans, pushed {pushed} records");
}

/// OpenClaw reports a call twice (the plugin, then the transcript): a dropped run's
/// rows stay a decision wait after its decision, so the transcript's late copy still
/// merges into them and counts once; usage is the same as without sampling.
#[test]
fn late_pieces_of_a_dropped_run_count_once() {
    let root = env!("CARGO_MANIFEST_DIR");
    let fixture = |name: &str| {
        fixture_at_now(
            &std::fs::read_to_string(format!("{root}/tests/fixtures/openclaw/{name}")).unwrap(),
        )
    };
    let mut daemons = Vec::new();
    for sampling in ["off", "ratio=0%, errors=sample, baseline=sample"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let state_text = state.display().to_string();
        let d = Daemon::start_in(
            dir.path(),
            &[
                ("OCT_LOG_PATH", "off"),
                ("OCT_OPENCLAW_STATE_DIR", state_text.as_str()),
                ("OCT_TRANSCRIPT_POLL_INTERVAL", "200ms"),
                ("OCT_TRANSCRIPT_GRACE", "0s"),
                ("OCT_SAMPLING", sampling),
                ("OCT_SAMPLING_DECISION_WAIT", "4s"),
            ],
        );
        let r = client()
            .post(d.url("/v1/openclaw/events"))
            .header("content-type", "application/x-ndjson")
            .body(fixture("bridge_events.jsonl"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        std::thread::sleep(Duration::from_secs(2));
        if sampling != "off" {
            let dropped = count(
                &d.db_path,
                "SELECT count(*) FROM run_sampling WHERE kept = 0",
            );
            assert!(dropped > 0, "runs dropped before the transcript came");
        }
        // The transcript, read after the decisions.
        let sessions = state.join("agents/main/sessions");
        std::fs::create_dir_all(&sessions).unwrap();
        let mut by_session: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for l in fixture("transcript_events.jsonl").lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            by_session
                .entry(v["session_id"].as_str().unwrap().to_string())
                .or_default()
                .push(v["event"].to_string());
        }
        for (sid, lines) in &by_session {
            std::fs::write(
                sessions.join(format!("{sid}.jsonl")),
                lines.join("\n") + "\n",
            )
            .unwrap();
        }
        d.wait_count(
            "SELECT count(*) FROM spans WHERE attributes LIKE '%openclaw.transcript%'",
            1,
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_secs(6));
        daemons.push((dir, d));
    }
    let (a, b) = (&daemons[0].1, &daemons[1].1);
    let q = "/v1/usage?group_by=agent,model";
    let ua = rounded(a.get_json(q));
    assert!(ua["totals"]["calls"].as_i64().unwrap() > 0, "{ua}");
    assert_eq!(ua, rounded(b.get_json(q)));
    assert_eq!(trace_sums(a), trace_sums(b));
    assert_eq!(
        count(
            &b.db_path,
            "SELECT count(*) FROM run_sampling WHERE kept = 0 AND anchor_id IS NULL"
        ),
        0,
        "the dropped runs' rows went"
    );
}

/// The baseline rule keeps a run its agent's baseline flags, even at ratio 0, because the
/// dropped runs before it still make the baseline; a run without a root is decided after
/// the decision wait.
#[test]
fn baseline_outliers_are_kept_and_rootless_runs_wait_for_the_decision_wait() {
    let d = Daemon::start(&[
        ("OCT_SAMPLING", "ratio=0"),
        ("OCT_SAMPLING_DECISION_WAIT", "1500ms"),
        ("OCT_BASELINE_SETTLE", "100ms"),
    ]);
    let start = now_ms() - 3_600_000;
    let post = |i: u64, tools: usize| -> String {
        let trace = format!("{:032x}", 0xba5e_0000 + i);
        let mut spans = run_spans(&trace, start + i as i64 * 60_000, Mix::Normal);
        for t in 1..tools {
            spans.push(json!({
                "kind": "tool_call", "tool_name": format!("t{t}"), "agent_id": "a", "trace_id": trace,
                "span_id": format!("00000000000000d{t:x}"), "parent_span_id": "00000000000000a1",
                "timestamp": start + i as i64 * 60_000 + 400 + t as i64, "latency_ms": 1,
            }));
        }
        assert_eq!(post_json(&d.url("/v1/traces"), &json!(spans)).status(), 202);
        trace
    };
    for i in 0..15 {
        post(i, 1);
    }
    d.wait_count(
        "SELECT count(*) FROM run_sampling WHERE kept = 0 AND anchor_id IS NOT NULL",
        15,
        Duration::from_secs(20),
    );
    let outlier = post(15, 12);
    let decided = "SELECT count(*) FROM run_sampling WHERE kept IS NOT NULL";
    d.wait_count(decided, 16, Duration::from_secs(20));
    let (kept, rule): (i64, Option<String>) = d
        .db()
        .query_row(
            "SELECT kept, rule FROM run_sampling WHERE lower(hex(trace_id)) = ?1",
            [&outlier],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((kept, rule.as_deref()), (1, Some("baseline")));
    // The baseline counts the dropped runs (their figures outlive their spans).
    let b = d.get_json("/v1/baseline?agent=a");
    assert_eq!(b["agents"][0]["runs"], 16, "{b}");

    // A run without a root span: decided after the wait, not before.
    let rootless = "0000000000000000000000000000beef";
    let r = post_json(
        &d.url("/v1/traces"),
        &json!([{"provider": "openai", "model": "gpt-4o", "trace_id": rootless,
                 "span_id": "00000000000000e1", "parent_span_id": "00000000000000e0",
                 "prompt_tokens": 5, "completion_tokens": 1}]),
    );
    assert_eq!(r.status(), 202);
    let q = format!(
        "SELECT count(*) FROM run_sampling WHERE lower(hex(trace_id)) = '{rootless}' AND kept IS NOT NULL"
    );
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(count(&d.db_path, &q), 0, "undecided before the wait");
    assert_eq!(d.wait_count(&q, 1, Duration::from_secs(10)), 1);
}
