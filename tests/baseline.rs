//! Baselines end to end: runs posted to the real binary, checked automatically as
//! they finish, and from the CLI. Each metric has its own outlier test.
mod common;
use common::*;
use serde_json::{Value, json};
use std::time::Duration;

const MIN_MS: i64 = 60_000;

/// A small deterministic generator, so "normal" runs are the same every time.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// What one run does.
#[derive(Clone)]
struct RunSpec {
    duration_ms: i64,
    llm_calls: usize,
    tokens_per_call: i64,
    cost_per_call: f64,
    /// Extra LLM calls without tokens or cost (to move the call count alone).
    empty_calls: usize,
    tools: Vec<String>,
    errors: usize,
}

fn normal(rng: &mut Lcg, i: usize) -> RunSpec {
    let n_tools = rng.range(2, 4) as usize;
    let mut tools: Vec<String> = (0..n_tools).map(|t| format!("tool{t}")).collect();
    if i.is_multiple_of(5) {
        // Now and then a tool is called twice in a row: normal, not an anomaly.
        tools.insert(1, tools[0].clone());
    }
    let tokens = rng.range(900, 1100);
    RunSpec {
        duration_ms: rng.range(8_000, 12_000),
        llm_calls: rng.range(4, 6) as usize,
        tokens_per_call: tokens,
        cost_per_call: tokens as f64 * 1e-5,
        empty_calls: 0,
        tools,
        errors: usize::from(i % 10 == 3),
    }
}

fn hex(n: u64, width: usize) -> String {
    format!("{n:0width$x}")
}

/// Posts a run as one batch: the root agent_run span, its LLM and tool calls.
fn post_run(d: &Daemon, agent: &str, i: usize, start_ms: i64, r: &RunSpec) -> String {
    let trace = hex(0xabc0_0000 + i as u64, 32);
    let root = hex(1, 16);
    let mut spans = vec![json!({
        "kind": "agent_run", "name": "invoke_agent", "agent_id": agent, "trace_id": trace,
        "span_id": root, "timestamp": start_ms, "latency_ms": r.duration_ms,
    })];
    let mut sid = 2u64;
    let mut errors_left = r.errors;
    let mut t = start_ms + 10;
    for c in 0..r.llm_calls + r.empty_calls {
        let empty = c >= r.llm_calls;
        let status = if errors_left > 0 {
            errors_left -= 1;
            "error"
        } else {
            "ok"
        };
        spans.push(json!({
            "provider": "openai", "model": "gpt-4o", "agent_id": agent, "trace_id": trace,
            "span_id": hex(sid, 16), "parent_span_id": root, "timestamp": t, "latency_ms": 50,
            "prompt_tokens": if empty { 0 } else { r.tokens_per_call * 9 / 10 },
            "completion_tokens": if empty { 0 } else { r.tokens_per_call - r.tokens_per_call * 9 / 10 },
            "cost_usd": if empty { 0.0 } else { r.cost_per_call },
            "status": status,
        }));
        sid += 1;
        t += 20;
    }
    for tool in &r.tools {
        let status = if errors_left > 0 {
            errors_left -= 1;
            "error"
        } else {
            "ok"
        };
        spans.push(json!({
            "kind": "tool_call", "tool_name": tool, "agent_id": agent, "trace_id": trace,
            "span_id": hex(sid, 16), "parent_span_id": root, "timestamp": t, "latency_ms": 5,
            "status": status,
        }));
        sid += 1;
        t += 20;
    }
    let resp = post_json(&d.url("/v1/traces"), &json!(spans));
    assert_eq!(resp.status(), 202, "{}", resp.text().unwrap_or_default());
    trace
}

fn start() -> Daemon {
    Daemon::start(&[("OCT_BASELINE_SETTLE", "100ms")])
}

fn spans_so_far(d: &Daemon) -> i64 {
    count(&d.db_path, "SELECT count(*) FROM spans")
}

/// Posts `n` normal runs of `agent`, a minute apart, ending before `now - 1h`.
fn normal_runs(d: &Daemon, agent: &str, n: usize) -> i64 {
    let mut rng = Lcg(42);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 3 * 3_600_000;
    let mut expected = 0;
    for i in 0..n {
        let r = normal(&mut rng, i);
        expected += 1 + r.llm_calls + r.tools.len();
        post_run(d, agent, i, base + i as i64 * MIN_MS, &r);
    }
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM spans",
            expected as i64,
            Duration::from_secs(30)
        ),
        expected as i64
    );
    base + n as i64 * MIN_MS
}

fn anomaly_events(d: &Daemon) -> Vec<Value> {
    let conn = d.db();
    let mut st = conn
        .prepare("SELECT lower(hex(trace_id)), attributes FROM events WHERE name = 'baseline_anomaly' ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        let (t, a): (String, String) = (r.get(0)?, r.get(1)?);
        let mut a: Value = serde_json::from_str(&a).unwrap();
        a["trace_id"] = json!(t);
        Ok(a)
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

/// Gives the automatic checks (100 ms after each run, then a pipeline job) time to finish.
fn settle(_d: &Daemon) {
    std::thread::sleep(Duration::from_millis(800));
}

fn cli_check(d: &Daemon, run: &str) -> (Option<i32>, Value) {
    let out = d.cli(&["baseline", "check", run, "--json"]);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), v)
}

#[test]
fn a_hundred_normal_runs_raise_nothing() {
    let d = start();
    normal_runs(&d, "steady", 100);
    settle(&d);
    assert_eq!(anomaly_events(&d), Vec::<Value>::new());
    // The CLI agrees for the last run, and shows the baseline.
    let last = hex(0xabc0_0000 + 99, 32);
    let (code, v) = cli_check(&d, &last);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["baseline_runs"], 50);
    let out = d.cli(&["baseline", "show", "--agent", "steady"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("agent steady  runs 50") && text.contains("retry_rate"),
        "{text}"
    );
    let api = d.get_json("/v1/baseline?agent=steady");
    assert_eq!(api["agents"][0]["runs"], 50);
    // cost, duration, LLM and tool calls, tokens, error and retry rates, tool error
    // rate, blast radius, tokens per call.
    assert_eq!(api["agents"][0]["metrics"].as_array().unwrap().len(), 10);
}

/// 20 normal runs, then one changed by `tweak`: exactly that run is flagged, on `metric` alone.
fn outlier_is_flagged_on(metric: &str, tweak: impl Fn(&mut RunSpec)) {
    outlier_is_flagged_on_all(&[metric], tweak)
}

/// As `outlier_is_flagged_on`, for a change that moves several metrics (`metrics`, in the
/// order the check lists them).
fn outlier_is_flagged_on_all(metrics: &[&str], tweak: impl Fn(&mut RunSpec)) {
    let d = start();
    let after = normal_runs(&d, "agent-x", 20);
    let mut r = normal(&mut Lcg(7), 1);
    tweak(&mut r);
    let before = spans_so_far(&d);
    let run = post_run(&d, "agent-x", 999, after, &r);
    let want = before + 1 + (r.llm_calls + r.empty_calls + r.tools.len()) as i64;
    d.wait_count("SELECT count(*) FROM spans", want, Duration::from_secs(10));
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'",
        1,
        Duration::from_secs(10),
    );
    settle(&d);
    let events = anomaly_events(&d);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["trace_id"], run);
    let flagged: Vec<&str> = events[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(flagged, metrics, "{:#}", events[0]);
    // The CLI gate fails on it, and the API says the same.
    let (code, v) = cli_check(&d, &run);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["status"], "anomalous");
    let api = d.get_json(&format!("/v1/baseline?run_id={run}"));
    let anomalous: Vec<&str> = api["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["anomalous"] == true)
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(anomalous, metrics);
    // A much higher threshold lets it pass.
    let out = d.cli(&["baseline", "check", &run, "--threshold", "1000"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn outlier_cost() {
    outlier_is_flagged_on("cost_usd", |r| r.cost_per_call *= 40.0);
}

#[test]
fn outlier_duration() {
    outlier_is_flagged_on("duration_ms", |r| r.duration_ms = 600_000);
}

#[test]
fn outlier_llm_calls() {
    // Calls without tokens also lower the tokens per call.
    outlier_is_flagged_on_all(&["llm_calls", "tokens_per_call"], |r| r.empty_calls = 25);
}

#[test]
fn outlier_tool_calls() {
    outlier_is_flagged_on("tool_calls", |r| {
        r.tools = (0..30).map(|t| format!("tool{t}")).collect();
    });
}

#[test]
fn outlier_tokens() {
    outlier_is_flagged_on_all(&["total_tokens", "tokens_per_call"], |r| {
        r.tokens_per_call *= 30
    });
}

#[test]
fn outlier_error_rate() {
    outlier_is_flagged_on("error_rate", |r| r.errors = 6);
}

#[test]
fn outlier_retry_rate() {
    outlier_is_flagged_on("retry_rate", |r| {
        r.tools = vec!["search".to_string(); 6];
    });
}

#[test]
fn unknown_runs_and_bad_ids() {
    let d = start();
    let r = client()
        .get(d.url(&format!("/v1/baseline?run_id={}", hex(5, 32))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client()
        .get(d.url("/v1/baseline?run_id=xyz"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap();
    assert_eq!(e["field"], "run_id");
    let out = d.cli(&["baseline", "check", "nothex"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_run_left_unchecked_by_a_crash_is_checked_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    // A long settle: the daemon dies before it would check.
    let mut d = Daemon::start_in(dir.path(), &[("OCT_BASELINE_SETTLE", "1h")]);
    normal_runs(&d, "agent-y", 20);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut r = normal(&mut Lcg(9), 1);
    r.cost_per_call *= 40.0;
    let before = spans_so_far(&d);
    let run = post_run(&d, "agent-y", 500, now - 60_000, &r);
    let want = before + 1 + (r.llm_calls + r.tools.len()) as i64;
    assert_eq!(
        d.wait_count("SELECT count(*) FROM spans", want, Duration::from_secs(10)),
        want
    );
    d.kill9();
    assert!(anomaly_events(&d).is_empty());
    let d = Daemon::start_in(dir.path(), &[("OCT_BASELINE_SETTLE", "1h")]);
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'",
        1,
        Duration::from_secs(10),
    );
    let events = anomaly_events(&d);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["trace_id"], run);
    assert_eq!(events[0]["metrics"][0]["metric"], "cost_usd");
}
