//! The query API and CLI on real data: filters, paging, trees, export.
mod common;
use common::*;
use serde_json::{Value, json};
use std::io::Read;
use std::time::Duration;

const T1: &str = "11111111111111111111111111111111";
const T2: &str = "22222222222222222222222222222222";
const T3: &str = "33333333333333333333333333333333";

fn seed(d: &Daemon) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // T1: an agent run with two LLM calls and a tool call; children arrive before the root.
    let spans = json!([
        {"provider":"openai","model":"gpt-4o","trace_id":T1,"span_id":"0000000000000002","parent_span_id":"0000000000000001","prompt_tokens":100,"completion_tokens":20,"cost_usd":0.002,"timestamp":now-9000,"latency_ms":500,"agent_id":"main","session_id":"s1"},
        {"kind":"tool_call","tool_name":"ls","trace_id":T1,"span_id":"0000000000000003","parent_span_id":"0000000000000002","timestamp":now-8400,"latency_ms":50},
        {"provider":"local","model":"my-local-model","trace_id":T1,"span_id":"0000000000000004","parent_span_id":"0000000000000001","prompt_tokens":50,"completion_tokens":5,"timestamp":now-8000,"latency_ms":300,"status":"error","error_type":"rate_limited"},
        {"kind":"agent_run","name":"agent main","trace_id":T1,"span_id":"0000000000000001","timestamp":now-10000,"latency_ms":3000,"agent_id":"main","session_id":"s1","user_id":"u1"},
        {"provider":"anthropic","model":"claude-3-5-haiku","trace_id":T2,"timestamp":now-5000,"latency_ms":100,"agent_id":"helper","prompt_tokens":7,"completion_tokens":3,"cost_usd":0.0001},
        {"kind":"agent_run","name":"sub agent","trace_id":T3,"span_id":"00000000000000aa","parent_trace_id":T1,"timestamp":now-7000,"latency_ms":200,"agent_id":"sub"}
    ]);
    assert_eq!(post_json(&d.url("/v1/traces"), &spans).status(), 202);
    let errs = json!({"error_type":"RateLimit","message":"429 from provider","trace_id":T1,"span_id":"0000000000000004","category":"provider"});
    assert_eq!(post_json(&d.url("/v1/errors"), &errs).status(), 202);
    let ev = json!([{"name":"checkpoint","attributes":{"step":1},"trace_id":T1},{"name":"other","agent_id":"helper"}]);
    assert_eq!(post_json(&d.url("/v1/events"), &ev).status(), 202);
    d.wait_count("SELECT count(*) FROM spans", 6, Duration::from_secs(5));
    d.wait_count("SELECT count(*) FROM events", 3, Duration::from_secs(5));
}

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = client().get(d.url(path)).send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

#[test]
fn trace_list_summaries_filters_and_paging() {
    let d = Daemon::start(&[]);
    seed(&d);
    let (s, all) = get(&d, "/v1/traces");
    assert_eq!(s, 200);
    let ids: Vec<&str> = all["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![T2, T3, T1], "newest first");
    let t1 = &all["traces"][2];
    assert_eq!(
        t1["name"], "agent main",
        "the root's name, though it arrived last"
    );
    assert_eq!(t1["span_count"], 4);
    assert_eq!(t1["llm_calls"], 2);
    assert_eq!(t1["tool_calls"], 1);
    assert_eq!(t1["input_tokens"], 150);
    assert_eq!(t1["output_tokens"], 25);
    assert_eq!(t1["total_tokens"], 175);
    assert!(
        (t1["cost_usd"].as_f64().unwrap() - 0.002).abs() < 1e-12,
        "unknown costs are not counted as 0 but not invented either"
    );
    assert_eq!(t1["status"], "error");
    assert_eq!(t1["error_count"], 1);
    assert_eq!(t1["duration_ms"], 3000.0);
    assert_eq!(t1["agent_id"], "main");
    assert_eq!(t1["user_id"], "u1");
    for (q, want) in [
        ("agent_id=main", vec![T1]),
        ("session_id=s1", vec![T1]),
        ("user_id=u1", vec![T1]),
        ("status=error", vec![T1]),
        ("status=ok", vec![T2, T3]),
        ("provider=anthropic", vec![T2]),
        ("model=my-local-model", vec![T1]),
        ("name=sub%20agent", vec![T3]),
    ] {
        let (_, r) = get(&d, &format!("/v1/traces?{q}"));
        let got: Vec<&str> = r["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{q}");
    }
    let from = all["traces"][1]["start_time"].as_str().unwrap().to_string();
    let (_, r) = get(&d, &format!("/v1/traces?from={from}"));
    assert_eq!(r["traces"].as_array().unwrap().len(), 2);
    let (_, r) = get(&d, &format!("/v1/traces?to={from}"));
    assert_eq!(r["traces"].as_array().unwrap().len(), 1);
    // Paging with a cursor walks every trace exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let path = match &cursor {
            Some(c) => format!("/v1/traces?limit=1&cursor={c}"),
            None => "/v1/traces?limit=1".into(),
        };
        let (_, r) = get(&d, &path);
        for t in r["traces"].as_array().unwrap() {
            seen.push(t["trace_id"].as_str().unwrap().to_string());
        }
        cursor = r["next_cursor"].as_str().map(String::from);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec![T2, T3, T1]);
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "status=weird",
        "from=yesterday",
        "cursor=garbage",
    ] {
        let (s, r) = get(&d, &format!("/v1/traces?{bad}"));
        assert_eq!(s, 400, "{bad}: {r}");
        assert!(r["field"].is_string(), "{bad}: {r}");
    }
}

#[test]
fn one_trace_as_a_tree_with_its_events() {
    let d = Daemon::start(&[]);
    seed(&d);
    let (s, t) = get(&d, &format!("/v1/traces/{T1}"));
    assert_eq!(s, 200);
    let roots = t["spans"].as_array().unwrap();
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["name"], "agent main");
    let kids = roots[0]["children"].as_array().unwrap();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[0]["request_model"], "gpt-4o");
    assert_eq!(kids[0]["children"][0]["tool_name"], "ls");
    assert_eq!(kids[1]["status"], "error");
    assert_eq!(kids[1]["error_type"], "rate_limited");
    let events = t["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "error" && e["span_id"] == "0000000000000004")
    );
    // Its sub-run (a trace whose root names it as parent) is listed as a summary.
    let subs = t["sub_traces"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["trace_id"], T3);
    assert_eq!(subs[0]["name"], "sub agent");
    let (_, sub) = get(&d, &format!("/v1/traces/{T3}"));
    assert_eq!(sub["sub_traces"], json!([]));
    assert_eq!(sub["trace"]["parent_trace_id"], T1);
    let (s, _) = get(&d, "/v1/traces/ffffffffffffffffffffffffffffffff");
    assert_eq!(s, 404);
    let (s, r) = get(&d, "/v1/traces/not-an-id");
    assert_eq!((s, r["field"].as_str()), (400, Some("trace_id")));
}

#[test]
fn export_is_gzip_json_with_sub_traces() {
    let d = Daemon::start(&[]);
    seed(&d);
    let r = client()
        .get(d.url(&format!("/v1/traces/{T1}/export")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let bytes = r.bytes().unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["trace"]["trace_id"], T1);
    assert_eq!(e["spans"].as_array().unwrap().len(), 4);
    assert_eq!(e["events"].as_array().unwrap().len(), 2);
    assert_eq!(e["sub_traces"][0]["trace"]["trace_id"], T3);
    assert_eq!(e["sub_traces"][0]["spans"][0]["name"], "sub agent");
}

#[test]
fn errors_and_events_are_filtered_and_paged() {
    let d = Daemon::start(&[]);
    seed(&d);
    let (_, r) = get(&d, "/v1/errors");
    assert_eq!(r["errors"].as_array().unwrap().len(), 1);
    assert_eq!(
        r["errors"][0]["error_type"]
            .as_str()
            .or(r["errors"][0]["name"].as_str()),
        Some("RateLimit")
    );
    assert_eq!(r["errors"][0]["category"], "provider");
    let (_, r) = get(&d, &format!("/v1/errors?trace_id={T1}&category=provider"));
    assert_eq!(r["errors"].as_array().unwrap().len(), 1);
    let (_, r) = get(&d, "/v1/errors?agent_id=nobody");
    assert_eq!(r["errors"].as_array().unwrap().len(), 0);
    let (_, r) = get(&d, "/v1/events");
    assert_eq!(r["events"].as_array().unwrap().len(), 2);
    let (_, r) = get(&d, "/v1/events?name=checkpoint");
    assert_eq!(r["events"][0]["attributes"]["step"], 1);
    let (_, p1) = get(&d, "/v1/events?limit=1");
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = get(&d, &format!("/v1/events?limit=1&cursor={c}"));
    assert_ne!(p1["events"][0]["id"], p2["events"][0]["id"]);
    assert!(p2["next_cursor"].is_null());
}

#[test]
fn cli_reads_the_database_while_the_daemon_runs() {
    let d = Daemon::start(&[]);
    seed(&d);
    let run = |args: &[&str]| {
        let out = d.cli(args);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["traces"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(T1) && out.contains(T2) && out.contains("agent main"),
        "{out}"
    );
    let (_, out, _) = run(&["traces", "--agent", "main", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["total_tokens"], 175);
    let (code, out, _) = run(&["trace", T1]);
    assert_eq!(code, 0);
    assert!(out.contains("- agent main [agent_run]"), "{out}");
    assert!(out.contains("    - chat gpt-4o [llm_call]"), "{out}");
    assert!(out.contains("      - execute_tool ls [tool_call]"), "{out}");
    assert!(out.contains("RateLimit"), "{out}");
    let (_, out, _) = run(&["trace", T1, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["trace"]["span_count"], 4);
    let (code, _, err) = run(&["trace", "nothex"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = run(&["trace", "ffffffffffffffffffffffffffffffff"]);
    assert_eq!(code, 1, "{err}");
}
