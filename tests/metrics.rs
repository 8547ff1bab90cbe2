//! `/metrics` against the real binary: values match what was ingested, duplicates are not
//! counted, labels are capped, `promtool check metrics` accepts the output, and a real
//! Prometheus server scrapes it and answers PromQL with the ingested numbers.
//! Needs Debian's `prometheus` package (scripts/setup-prometheus.sh, run by scripts/test.sh).

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn metrics_text(d: &Daemon) -> String {
    let r = client().get(d.url("/metrics")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().unwrap()
}

/// The value of the sample whose line starts with `series` (name and labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn llm(model: &str, input: u64, output: u64, span_id: &str) -> Value {
    json!({"provider":"openai","model":model,"prompt_tokens":input,"completion_tokens":output,
           "cost_usd":0.5,"latency_ms":1500,"trace_id":"0123456789abcdef0123456789abcdef",
           "span_id":span_id})
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (run scripts/setup-prometheus.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn metrics_match_ingested_records_and_pass_promtool() {
    // Exact record counts: no host samples.
    let mut d = Daemon::start(&[("OCT_HOST_DISABLE", "all")]);
    let batch = json!([
        llm("gpt-4o", 100, 10, "00000000000000a1"),
        llm("gpt-4o", 50, 5, "00000000000000a2"),
        llm("claude-sonnet", 7, 3, "00000000000000a3"),
        {"kind":"tool_call","tool_name":"shell","latency_ms":30,"status":"error","error_type":"timeout"},
        {"kind":"agent_run","name":"invoke_agent main","agent_id":"main","latency_ms":4000},
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &batch).status(), 202);
    // The same LLM span again: a duplicate, stored once and counted once.
    assert_eq!(
        post_json(
            &d.url("/v1/traces"),
            &llm("gpt-4o", 100, 10, "00000000000000a1")
        )
        .status(),
        202
    );
    let err = json!({"error_type":"RateLimit","message":"slow down","category":"provider"});
    assert_eq!(post_json(&d.url("/v1/errors"), &err).status(), 202);
    assert_eq!(
        d.wait_count("SELECT count(*) FROM events", 1, Duration::from_secs(5)),
        1
    );
    let until = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let t = metrics_text(&d);
        if sample(&t, "openclaw_trace_records_duplicate_total") == Some(1.0)
            || Instant::now() > until
        {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let llm_labels = r#"gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",gen_ai_response_model="gpt-4o""#;
    for (series, want) in [
        (
            format!(r#"gen_ai_client_token_usage_sum{{{llm_labels},gen_ai_token_type="input"}}"#),
            150.0,
        ),
        (
            format!(r#"gen_ai_client_token_usage_count{{{llm_labels},gen_ai_token_type="input"}}"#),
            2.0,
        ),
        (
            format!(
                r#"gen_ai_client_token_usage_bucket{{le="64.0",{llm_labels},gen_ai_token_type="input"}}"#
            ),
            1.0,
        ),
        (
            format!(r#"gen_ai_client_operation_duration_seconds_sum{{{llm_labels}}}"#),
            3.0,
        ),
        (
            r#"openclaw_trace_llm_tokens_total{gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",type="output"}"#.into(),
            15.0,
        ),
        (
            r#"openclaw_trace_llm_calls_total{gen_ai_provider_name="openai",gen_ai_request_model="claude-sonnet",status="ok"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_llm_cost_usd_total{gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_tool_calls_total{gen_ai_tool_name="shell",status="error"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_tool_errors_total{gen_ai_tool_name="shell",error_type="timeout"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_agent_runs_total{agent_id="main",outcome="ok"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_errors_total{error_type="RateLimit",category="provider"}"#.into(),
            1.0,
        ),
        (
            r#"openclaw_trace_records_received_total{source="api"}"#.into(),
            7.0,
        ),
        ("openclaw_trace_records_written_total".into(), 6.0),
        ("openclaw_trace_records_duplicate_total".into(), 1.0),
        ("openclaw_trace_queue_capacity".into(), 10000.0),
        ("openclaw_trace_queue_depth".into(), 0.0),
        (r#"openclaw_trace_build_info{version="0.1.0"}"#.into(), 1.0),
    ] {
        assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
    }
    assert!(sample(&text, "openclaw_trace_db_size_bytes").unwrap() > 0.0);
    assert!(sample(&text, "openclaw_trace_write_batches_total").unwrap() >= 1.0);
    assert!(sample(&text, "openclaw_trace_batch_write_seconds_total").unwrap() > 0.0);
    let (ok, out) = promtool_check(&text);
    assert!(ok, "promtool check metrics: {out}\n{text}");

    // OpenMetrics when asked, as Prometheus asks.
    let r = client()
        .get(d.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let om = r.text().unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE openclaw_trace_llm_calls counter"));
    assert!(d.stop().success());
}

#[test]
fn label_values_are_capped_and_host_samples_become_gauges() {
    let mut d = Daemon::start(&[("OCT_METRICS_LABEL_LIMIT", "3")]);
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"provider":"p","model":format!("m{i}"),"prompt_tokens":1}))
        .collect();
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(batch)).status(), 202);
    d.wait_count("SELECT count(*) FROM spans", 10, Duration::from_secs(5));
    // A host sample as the host collectors store it (written beside the running daemon).
    let rw = rusqlite::Connection::open(&d.db_path).unwrap();
    rw.busy_timeout(Duration::from_secs(5)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    rw.execute(
        "INSERT INTO metric_points (name, unit, kind, time_ns, value, attributes, source)
         VALUES ('system.memory.usage', 'By', 'gauge', ?1, 12345, '{\"state\":\"used\"}', 'host')",
        [now],
    )
    .unwrap();
    drop(rw);
    let until = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let t = metrics_text(&d);
        let calls: f64 = t
            .lines()
            .filter(|l| l.starts_with("openclaw_trace_llm_calls_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if calls >= 10.0 || Instant::now() > until {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let models: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("openclaw_trace_llm_calls_total"))
        .filter_map(|l| l.split("gen_ai_request_model=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        vec!["m0", "m1", "m2", "other"]
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_llm_calls_total{gen_ai_provider_name="p",gen_ai_request_model="other",status="ok"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_host_system_memory_usage_bytes{state="used"}"#
        ),
        Some(12345.0),
        "{text}"
    );
    let (ok, out) = promtool_check(&text);
    assert!(ok, "promtool: {out}");
    assert!(d.stop().success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server on loopback with its own config and data directory.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: openclaw-trace\n    scrape_interval: 1s\n    \
                 scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (run scripts/setup-prometheus.sh)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// Runs an instant PromQL query; the result vector, or None while the server is not up.
    fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let r = client()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", promql)])
            .send()
            .ok()?;
        let v: Value = r.json().ok()?;
        (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned())?
    }

    /// Polls `promql` until `done` accepts the result, at most `timeout`.
    fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let until = Instant::now() + timeout;
        loop {
            let got = self.query(promql).unwrap_or_default();
            if done(&got) || Instant::now() > until {
                return got;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn real_prometheus_scrapes_and_answers_tokens_by_model() {
    let mut d = Daemon::start(&[]);
    let prom = Prometheus::start(d.addr);
    let up = prom.wait_for(
        r#"up{job="openclaw-trace"}"#,
        Duration::from_secs(60),
        |r| r.first().is_some_and(|s| s["value"][1] == "1"),
    );
    assert_eq!(
        up.first().map(|s| s["value"][1].clone()),
        Some(json!("1")),
        "Prometheus never scraped openclaw-trace successfully"
    );
    // Ingested tokens: gpt-4o 120+30 input, 12+3 output; claude 1000 input, 250 output.
    let batch = json!([
        {"provider":"openai","model":"gpt-4o","prompt_tokens":120,"completion_tokens":12},
        {"provider":"openai","model":"gpt-4o","prompt_tokens":30,"completion_tokens":3},
        {"provider":"anthropic","model":"claude-sonnet-4","prompt_tokens":1000,"completion_tokens":250},
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &batch).status(), 202);
    let promql = "sum by (gen_ai_request_model) (gen_ai_client_token_usage_sum)";
    let want = |r: &[Value]| -> bool {
        let get = |m: &str| {
            r.iter()
                .find(|s| s["metric"]["gen_ai_request_model"] == m)
                .and_then(|s| s["value"][1].as_str()?.parse::<f64>().ok())
        };
        get("gpt-4o") == Some(165.0) && get("claude-sonnet-4") == Some(1250.0)
    };
    let got = prom.wait_for(promql, Duration::from_secs(30), want);
    assert!(want(&got), "PromQL {promql} answered {got:?}");
    // The same through the per-type counter, input only.
    let promql = r#"sum by (gen_ai_request_model) (openclaw_trace_llm_tokens_total{type="input"})"#;
    let got = prom.wait_for(promql, Duration::from_secs(10), |r| r.len() == 2);
    let by_model: std::collections::BTreeMap<String, String> = got
        .iter()
        .map(|s| {
            (
                s["metric"]["gen_ai_request_model"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(by_model["gpt-4o"], "150");
    assert_eq!(by_model["claude-sonnet-4"], "1000");
    assert!(d.stop().success());
}

#[test]
fn budgets_and_sinks_show_in_metrics() {
    // A push endpoint nobody listens on: the sink fails and says so.
    let dead = format!("http://127.0.0.1:{}/ingest", free_port());
    let mut d = Daemon::start(&[
        ("OCT_BUDGETS", "agent:main/day=$1, global/month=100k tokens"),
        ("OCT_PUSH_ENDPOINT", dead.as_str()),
        ("OCT_PUSH_INTERVAL", "200ms"),
        ("OCT_PUSH_RETRY_INITIAL", "50ms"),
    ]);
    let mut call = llm("gpt-4o", 1000, 100, "00000000000000b1");
    call["agent_id"] = json!("main");
    call["cost_usd"] = json!(0.25);
    assert_eq!(post_json(&d.url("/v1/traces"), &call).status(), 202);
    let until = Instant::now() + Duration::from_secs(15);
    let text = loop {
        let t = metrics_text(&d);
        let failing = sample(
            &t,
            r#"openclaw_trace_sink_consecutive_failures{sink="push"}"#,
        )
        .is_some_and(|v| v >= 1.0);
        if (failing
            && sample(
                &t,
                r#"openclaw_trace_budget_spent{budget="agent:main/day/usd",period="day",unit="usd"}"#,
            ) == Some(0.25))
            || Instant::now() > until
        {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_budget_spent{budget="agent:main/day/usd",period="day",unit="usd"}"#
        ),
        Some(0.25),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_budget_limit{budget="agent:main/day/usd",period="day",unit="usd"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_budget_used_ratio{budget="agent:main/day/usd",period="day",unit="usd"}"#
        ),
        Some(0.25)
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_budget_spent{budget="global/month/tokens",period="month",unit="tokens"}"#
        ),
        Some(1100.0)
    );
    assert!(
        sample(
            &text,
            r#"openclaw_trace_sink_consecutive_failures{sink="push"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"openclaw_trace_sink_records_sent_total{sink="push"}"#
        ),
        Some(0.0)
    );
    let (ok, out) = promtool_check(&text);
    assert!(ok, "promtool: {out}");
    assert!(d.stop().success());
}

/// A push receiver on loopback that accepts every batch (200), until dropped.
struct Receiver {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::Read;
        use std::sync::atomic::{AtomicBool, Ordering};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", l.local_addr().unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let (mut buf, mut chunk) = (Vec::new(), [0u8; 65536]);
                let head_end = loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
        Receiver { url, stop }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Every PromQL expression of deploy/grafana/openclaw-trace.json returns data (a series
/// with a number) from a real Prometheus scraping a loaded openclaw-trace: LLM calls of
/// two models with time to first token, failures, tool calls, agent runs, error events,
/// budgets, an agent process it watches, host collectors on, and a push sink delivering.
#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/openclaw-trace.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for p in dashboard["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(exprs.len() >= 40, "{}", exprs.len());
    // The agent: a process with a command line nothing else has.
    let mut agent = Command::new("sleep").arg("987651").spawn().unwrap();
    let receiver = Receiver::start();
    let mut d = Daemon::start(&[
        ("OCT_HOST_DISABLE", "dns"),
        ("OCT_METRICS_INTERVAL", "1s"),
        ("OCT_AGENT_PROCESS", "987651"),
        ("OCT_AGENT_POLL_INTERVAL", "500ms"),
        (
            "OCT_BUDGETS",
            "agent:main/day=$100, global/month=10M tokens",
        ),
        ("OCT_PUSH_ENDPOINT", receiver.url.as_str()),
        ("OCT_PUSH_INTERVAL", "1s"),
    ]);
    let prom = Prometheus::start(d.addr);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let loader = {
        let (url, errors_url, stop) = (d.url("/v1/traces"), d.url("/v1/errors"), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let batch = json!([
                    {"provider":"openai","model":"gpt-4o","prompt_tokens":100 + i,"completion_tokens":20,
                     "latency_ms":800,"agent_id":"main","attributes":{"ttft_ms":120}},
                    {"provider":"anthropic","model":"claude-sonnet-4-5","prompt_tokens":1000,"completion_tokens":200,
                     "latency_ms":2500,"agent_id":"main","attributes":{"ttft_ms":400}},
                    {"provider":"openai","model":"gpt-4o","prompt_tokens":10,"completion_tokens":0,
                     "latency_ms":300,"status":"error","error_type":"rate_limit","agent_id":"main"},
                    {"kind":"tool_call","name":"execute_tool shell","tool_name":"shell","latency_ms":50,"agent_id":"main"},
                    {"kind":"tool_call","name":"execute_tool web","tool_name":"web","latency_ms":900,
                     "status":"error","error_type":"timeout","agent_id":"main"},
                    {"kind":"agent_run","name":"invoke_agent main","latency_ms":4000,"agent_id":"main"},
                ]);
                let _ = client().post(&url).json(&batch).send();
                let _ = client()
                    .post(&errors_url)
                    .json(&json!({"error_type":"tool_failed","message":"boom","category":"tool"}))
                    .send();
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let up = prom.wait_for(
        r#"up{job="openclaw-trace"}"#,
        Duration::from_secs(60),
        |r| r.first().is_some_and(|s| s["value"][1] == "1"),
    );
    assert!(!up.is_empty(), "Prometheus never scraped openclaw-trace");
    let has_number = |r: &[Value]| {
        r.iter().any(|s| {
            s["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(f64::is_finite)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing = Vec::new();
    for (title, expr) in &exprs {
        let promql = expr
            .replace("$__rate_interval", "15s")
            .replace("$__range", "5m")
            .replace("$job", ".+")
            .replace("$instance", ".+");
        let left = deadline.saturating_duration_since(Instant::now());
        let got = prom.wait_for(&promql, left.max(Duration::from_secs(2)), |r| has_number(r));
        if !has_number(&got) {
            missing.push(format!("{title}: {promql} -> {got:?}"));
        }
    }
    // Every metric the alert rules use exists in the same scrape (promtool's unit tests
    // below use made-up series, so a misspelt name would pass them).
    let rules = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prometheus/alerts.yml"
    ))
    .unwrap();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("openclaw_trace_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let promql = format!(r#"count({{__name__="{name}", job="openclaw-trace"}})"#);
        let got = prom.wait_for(&promql, Duration::from_secs(2), |r| has_number(r));
        if !has_number(&got) {
            missing.push(format!(
                "alerts.yml uses {name}, which /metrics does not have"
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = loader.join();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        missing.is_empty(),
        "{} of {} dashboard queries (or alert metrics) returned no data:\n{}",
        missing.len(),
        exprs.len(),
        missing.join("\n")
    );
    assert!(d.stop().success());
}

/// deploy/prometheus/alerts.yml is valid, and its unit tests (series that fire and do not
/// fire each rule, deploy/prometheus/alerts.test.yml) pass.
#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("promtool (run scripts/setup-prometheus.sh)");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each alert has a test case.
    let rules = std::fs::read_to_string(format!("{dir}/alerts.yml")).unwrap();
    let tests = std::fs::read_to_string(format!("{dir}/alerts.test.yml")).unwrap();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            assert!(
                tests.contains(&format!("alertname: {name}")),
                "{name} has no test in alerts.test.yml"
            );
        }
    }
}
