//! Evaluation scores: posted natively (`POST /v1/scores`) and over OTLP (a span event
//! and a log record named `gen_ai.evaluation.result`), shown on the run, filtering the
//! runs list, aggregated by name, agent and day, and exported as the specification's event.

mod common;

use std::time::Duration;

use common::{Daemon, now_ms, post_json};
use serde_json::{Value, json};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb02";
const C: &str = "cccccccccccccccccccccccccccccc03";

fn runs(d: &Daemon) {
    let t = now_ms() - 60_000;
    let run = |trace: &str, span: &str, agent: &str| {
        json!({"kind": "agent_run", "name": "answer", "trace_id": trace, "span_id": span,
               "agent_id": agent, "timestamp": t, "latency_ms": 1200})
    };
    let r = post_json(
        &d.url("/v1/traces"),
        &json!([
            run(A, "a000000000000001", "alpha"),
            run(B, "b000000000000001", "alpha"),
            run(C, "c000000000000001", "beta"),
            {"provider": "openai", "model": "gpt-4o", "trace_id": B, "span_id": "b000000000000002",
             "parent_span_id": "b000000000000001", "agent_id": "alpha", "timestamp": t + 10,
             "prompt_tokens": 10, "completion_tokens": 5},
        ]),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
}

fn native_scores(d: &Daemon) {
    let r = post_json(
        &d.url("/v1/scores"),
        &json!([
            {"trace_id": A, "name": "relevance", "value": 0.9, "label": "good",
             "explanation": "answers the question"},
            {"trace_id": B, "span_id": "b000000000000002", "name": "relevance", "value": 0.3,
             "label": "poor"},
            {"trace_id": A, "name": "human", "label": "approved"},
            {"trace_id": C, "name": "toxicity", "value": -0.5},
        ]),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
}

/// A span event on run C and a log record on run B, both `gen_ai.evaluation.result`.
fn otlp_scores(d: &Daemon) {
    let ns = (now_ms() - 30_000) as u128 * 1_000_000;
    let attr = |k: &str, v: Value| json!({"key": k, "value": v});
    let spans = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": C, "spanId": "c000000000000009", "parentSpanId": "c000000000000001",
        "name": "chat gpt-4o", "kind": 3, "startTimeUnixNano": ns.to_string(),
        "endTimeUnixNano": (ns + 1_000_000).to_string(),
        "attributes": [attr("gen_ai.operation.name", json!({"stringValue": "chat"})),
                       attr("gen_ai.request.model", json!({"stringValue": "gpt-4o"}))],
        "events": [{"name": "gen_ai.evaluation.result", "timeUnixNano": (ns + 2_000_000).to_string(),
            "attributes": [attr("gen_ai.evaluation.name", json!({"stringValue": "relevance"})),
                           attr("gen_ai.evaluation.score.value", json!({"doubleValue": 0.4})),
                           attr("gen_ai.evaluation.score.label", json!({"stringValue": "poor"})),
                           attr("gen_ai.evaluation.explanation", json!({"stringValue": "off topic"}))]}]
    }]}]}]});
    let r = post_json(&d.url("/v1/traces"), &spans);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    let logs = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{
        "timeUnixNano": (ns + 3_000_000).to_string(), "eventName": "gen_ai.evaluation.result",
        "traceId": B, "spanId": "b000000000000002",
        "attributes": [attr("gen_ai.evaluation.name", json!({"stringValue": "relevance"})),
                       attr("gen_ai.evaluation.score.value", json!({"intValue": "0"}))]
    }]}]}]});
    let r = post_json(&d.url("/v1/logs"), &logs);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
}

fn started() -> Daemon {
    let d = Daemon::start(&[]);
    runs(&d);
    native_scores(&d);
    otlp_scores(&d);
    let n = d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'gen_ai.evaluation.result'",
        6,
        Duration::from_secs(10),
    );
    assert_eq!(n, 6, "four native scores, a span event and a log record");
    d
}

fn trace_ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn scores_show_on_the_run_filter_the_list_and_aggregate() {
    let d = started();

    // On the run.
    let a = d.get_json(&format!("/v1/traces/{A}"));
    let scores = a["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2, "{a}");
    let rel = scores.iter().find(|s| s["name"] == "relevance").unwrap();
    assert_eq!(rel["value"], 0.9);
    assert_eq!(rel["label"], "good");
    assert_eq!(rel["explanation"], "answers the question");
    assert_eq!(rel["source"], "api");
    let human = scores.iter().find(|s| s["name"] == "human").unwrap();
    assert_eq!(
        (human["value"].clone(), human["label"].clone()),
        (Value::Null, json!("approved"))
    );
    let c = d.get_json(&format!("/v1/traces/{C}"));
    let otlp = c["scores"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "relevance")
        .unwrap()
        .clone();
    assert_eq!(otlp["value"], 0.4);
    assert_eq!(otlp["span_id"], "c000000000000009");
    assert_eq!(otlp["explanation"], "off topic");
    assert_eq!(otlp["source"], "otlp");

    // Filtering the runs list.
    let list = |q: &str| trace_ids(&d.get_json(&format!("/v1/traces?{q}")));
    assert_eq!(
        list("score=relevance%3C0.5"),
        vec![B.to_string(), C.to_string()]
    );
    assert_eq!(list("score=relevance%3E%3D0.5"), vec![A.to_string()]);
    assert_eq!(
        list("score=relevance%3C0.5&agent_id=alpha"),
        vec![B.to_string()]
    );
    assert_eq!(list("score=toxicity%3C0"), vec![C.to_string()]);
    assert!(list("score=nosuch%3C1").is_empty());
    let r = common::client()
        .get(d.url("/v1/traces?score=relevance"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "score");

    // Aggregated by name and agent: a score's agent is its run's.
    let agg = d.get_json("/v1/scores?group_by=agent");
    let groups = agg["scores"].as_array().unwrap();
    let find = |name: &str, agent: &str| {
        groups
            .iter()
            .find(|g| g["name"] == name && g["agent_id"] == agent)
            .unwrap_or_else(|| panic!("{name}/{agent} in {agg}"))
            .clone()
    };
    let alpha = find("relevance", "alpha");
    assert_eq!(alpha["count"], 3, "A 0.9, B 0.3 (native), B 0 (OTLP log)");
    assert_eq!(alpha["value_count"], 3);
    assert!(
        (alpha["mean"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{alpha}"
    );
    assert_eq!(
        (alpha["min"].as_f64(), alpha["max"].as_f64()),
        (Some(0.0), Some(0.9))
    );
    assert_eq!(alpha["labels"], json!({"good": 1, "poor": 1}));
    let beta = find("relevance", "beta");
    assert_eq!(
        (beta["count"].clone(), beta["mean"].clone()),
        (json!(1), json!(0.4))
    );
    let human = find("human", "alpha");
    assert_eq!(
        (human["count"].clone(), human["value_count"].clone()),
        (json!(1), json!(0))
    );
    assert_eq!(human["mean"], Value::Null);
    assert_eq!(find("toxicity", "beta")["mean"], -0.5);

    // By day: every score here is from the last minute.
    let by_day = d.get_json("/v1/scores?group_by=day&name=relevance");
    let days = by_day["scores"].as_array().unwrap();
    assert_eq!(days.len(), 1 + usize::from(crossed_midnight()), "{by_day}");
    assert_eq!(
        days.iter()
            .map(|g| g["count"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    let r = common::client()
        .get(d.url("/v1/scores?group_by=model"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "group_by");
}

/// True when the last minute spans two UTC days (the scores are up to 60 s old).
fn crossed_midnight() -> bool {
    let now = now_ms();
    (now - 61_000) / 86_400_000 != now / 86_400_000
}

#[test]
fn bad_scores_are_refused_naming_the_field_and_keep_nothing() {
    let d = Daemon::start(&[]);
    for (body, field) in [
        (json!({"trace_id": A, "value": 1}), "name"),
        (json!({"name": "x", "value": 1}), "trace_id"),
        (
            json!({"trace_id": "nothex", "name": "x", "value": 1}),
            "trace_id",
        ),
        (json!({"trace_id": A, "name": "x"}), "value"),
        (
            json!({"trace_id": A, "name": "x", "value": "high"}),
            "value",
        ),
        (json!({"trace_id": A, "name": "", "value": 1}), "name"),
    ] {
        let r = post_json(&d.url("/v1/scores"), &body);
        assert_eq!(r.status(), 400, "{body}");
        let said: Value = r.json().unwrap();
        assert_eq!(said["field"], field, "{body}: {said}");
    }
    // One bad item refuses the whole batch: nothing half-kept.
    let r = post_json(
        &d.url("/v1/scores"),
        &json!([{"trace_id": A, "name": "ok", "value": 1}, {"trace_id": A, "name": "bad"}]),
    );
    assert_eq!(r.status(), 400);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(common::count(&d.db_path, "SELECT count(*) FROM events"), 0);
}

#[test]
fn scores_are_exported_as_the_gen_ai_evaluation_result_event() {
    let d = started();
    let out = d.cli(&[
        "export",
        "--format",
        "otlp",
        "--db-path",
        d.db_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut found = Vec::new();
    for line in text.lines() {
        let req: Value = serde_json::from_str(line).unwrap();
        for rl in req["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().unwrap() {
                for lr in sl["logRecords"].as_array().unwrap() {
                    if lr["eventName"] == "gen_ai.evaluation.result" {
                        let attr = |k: &str| {
                            lr["attributes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .find(|a| a["key"] == k)
                                .map(|a| a["value"].clone())
                        };
                        found.push((
                            lr["traceId"].as_str().unwrap().to_string(),
                            attr("gen_ai.evaluation.name"),
                            attr("gen_ai.evaluation.score.value"),
                            attr("gen_ai.evaluation.score.label"),
                        ));
                    }
                }
            }
        }
    }
    assert_eq!(found.len(), 6, "{found:?}");
    assert!(
        found.contains(&(
            A.to_string(),
            Some(json!({"stringValue": "relevance"})),
            Some(json!({"doubleValue": 0.9})),
            Some(json!({"stringValue": "good"})),
        )),
        "{found:?}"
    );
}

/// Scores enter baselines: twelve runs of an agent scored about 0.85, then a run scored
/// 0.2 is flagged (`score.relevance`, below), once its score arrives after the run; a
/// run scored higher than usual is not (only a falling score is).
#[test]
fn a_falling_score_is_flagged_by_the_baseline() {
    let d = Daemon::start(&[("OCT_BASELINE_SETTLE", "100ms")]);
    let base = now_ms() - 3_600_000;
    let post_run = |i: u64| -> String {
        let trace = format!("{:032x}", 0x5c0_0000 + i);
        let r = post_json(
            &d.url("/v1/traces"),
            &json!([{"kind": "agent_run", "name": "answer", "trace_id": trace,
                     "span_id": "d000000000000001", "agent_id": "judged",
                     "timestamp": base + i as i64 * 60_000, "latency_ms": 1000}]),
        );
        assert_eq!(r.status(), 202);
        trace
    };
    let score = |trace: &str, value: f64| {
        let r = post_json(
            &d.url("/v1/scores"),
            &json!([{"trace_id": trace, "name": "relevance", "value": value}]),
        );
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    };
    for i in 0..12 {
        let t = post_run(i);
        score(&t, [0.8, 0.85, 0.9][i as usize % 3]);
    }
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'gen_ai.evaluation.result'",
        12,
        Duration::from_secs(10),
    );
    let anomalies = || {
        common::count(
            &d.db_path,
            "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'",
        )
    };
    // A higher score than usual is not an anomaly.
    let high = post_run(12);
    std::thread::sleep(Duration::from_millis(500));
    score(&high, 1.0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(anomalies(), 0);
    // The run is checked when it ends (no score yet: nothing unusual), then again
    // when its score arrives.
    let low = post_run(13);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(anomalies(), 0);
    score(&low, 0.2);
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'",
            1,
            Duration::from_secs(10)
        ),
        1
    );
    let (trace, attrs): (String, String) = d
        .db()
        .query_row(
            "SELECT lower(hex(trace_id)), attributes FROM events WHERE name = 'baseline_anomaly'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(trace, low);
    let a: Value = serde_json::from_str(&attrs).unwrap();
    let m = &a["metrics"][0];
    assert_eq!(m["metric"], "score.relevance", "{a}");
    assert_eq!(m["direction"], "below");
    assert_eq!(m["value"], 0.2);
    assert_eq!(m["median"], 0.85);
    // The CLI's check shows the score against its baseline.
    let out = d.cli(&["baseline", "check", &low, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["anomalous"], true, "{v}");
    assert_eq!(v["scores"][0]["name"], "relevance");
    assert_eq!(v["scores"][0]["runs"], 13);
}
