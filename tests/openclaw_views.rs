//! The OpenClaw views (`/v1/openclaw/*` and `openclaw-trace openclaw ...`): the real
//! daemon fed plugin events shaped as OpenClaw 2026.9.6 sends them (hook contexts with
//! `trigger` and `channel`, `model.call.completed` with usage and cost, `model.usage`
//! with the context window) and the recorded gateway log (fallback decisions, retries),
//! all moved to now.

mod common;

use std::time::Duration;

use common::openclaw_day::*;
use common::*;
use serde_json::{Value, json};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn openclaw_views_from_plugin_events_and_the_gateway_log() {
    // The recorded gateway log's fallback and retry lines, moved to now.
    let tmp = tempfile::tempdir().unwrap();
    let glob = gateway_log_of_runs(tmp.path());
    let d = Daemon::start(&[
        ("OCT_LOG_PATH", glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "200ms"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
    ]);

    let (_, runs) = deliver_view_day(&d);

    // Cache: per agent, hit rate and dollars saved at the table's prices.
    let price = d.get_json("/v1/pricing?model=claude-sonnet-4-5&provider=anthropic");
    let p = &price["match"]["price"];
    let (input_p, read_p, write_p) = (
        p["input"].as_f64().unwrap(),
        p["cache_read"].as_f64().unwrap(),
        p["cache_write"].as_f64().unwrap(),
    );
    let cache = d.get_json("/v1/openclaw/cache?by=model");
    let row = &cache["rows"][0];
    assert_eq!(row["key"], "claude-sonnet-4-5", "{cache}");
    assert_eq!(row["cache_read_tokens"], 900);
    assert_eq!(row["cache_write_tokens"], 50);
    let saved = 900.0 * (input_p - read_p) / 1e6;
    let premium = 50.0 * (write_p - input_p) / 1e6;
    assert!(close(row["saved_usd"].as_f64().unwrap(), saved), "{row}");
    assert!(
        close(row["net_saved_usd"].as_f64().unwrap(), saved - premium),
        "{row}"
    );
    // 100 input tokens without the cached ones (OpenClaw's convention): 1050 prompt tokens.
    let prompt = row["prompt_tokens"].as_i64().unwrap();
    assert_eq!(prompt, 100 * (runs.len() as i64) + 900 + 50, "{row}");
    assert!(close(
        row["hit_rate"].as_f64().unwrap(),
        900.0 / prompt as f64
    ));
    let by_session = d.get_json("/v1/openclaw/cache?by=session");
    let web = by_session["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "s-web")
        .unwrap();
    assert!(
        close(web["hit_rate"].as_f64().unwrap(), 900.0 / 1050.0),
        "{web}"
    );

    // Heartbeats and crons: their own kinds, cost per run, silent replies counted.
    let sch = d.get_json("/v1/openclaw/scheduled");
    let tot = &sch["totals"];
    assert_eq!(tot["heartbeat_runs"], 3, "{sch}");
    assert_eq!(tot["heartbeat_ok"], 2);
    assert_eq!(tot["no_reply"], 1);
    assert!(close(tot["heartbeat_cost_usd"].as_f64().unwrap(), 0.006));
    assert_eq!(tot["cron_runs"], 1);
    assert!(close(tot["cron_cost_usd"].as_f64().unwrap(), 0.005));
    let cron_days: Vec<&Value> = sch["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "cron")
        .collect();
    assert_eq!(cron_days[0]["job"], "job-7");
    assert!(close(
        cron_days[0]["cost_per_run_usd"].as_f64().unwrap(),
        0.005
    ));

    // Sub-agents: linked to the run that spawned them, cost rolled up.
    let sub = d.get_json("/v1/openclaw/subagents");
    let link = &sub["subagents"][0];
    assert_eq!(
        link["child_session_key"], "agent:main:subagent:abc-123",
        "{sub}"
    );
    assert_eq!(link["parent_trace_id"], trace_of(1));
    assert_eq!(link["label"], "research");
    assert!(close(link["child_cost_usd"].as_f64().unwrap(), 0.03));
    let parent = &sub["parents"][0];
    assert_eq!(parent["trace_id"], trace_of(1));
    assert!(
        close(parent["total_cost_usd"].as_f64().unwrap(), 0.04),
        "{parent}"
    );

    // Context: per turn against the window; the Telegram session is near it and compacted.
    let ctx = d.get_json("/v1/openclaw/context");
    let tg = ctx["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == "s-tg")
        .unwrap();
    assert_eq!(tg["max_context_tokens"], 170_000, "{ctx}");
    assert_eq!(tg["context_window"], 200_000);
    assert_eq!(tg["near_window"], true);
    assert_eq!(tg["compactions"], 1);
    assert_eq!(ctx["compactions"][0]["message_count"], 12);
    let webs = ctx["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == "s-web")
        .unwrap();
    assert_eq!(webs["near_window"], false);

    // Channels and tools.
    let ch = d.get_json("/v1/openclaw/channels");
    let find = |name: &str| {
        ch["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert!(
        close(find("telegram")["cost_usd"].as_f64().unwrap(), 0.02),
        "{ch}"
    );
    assert!(close(find("webchat")["cost_usd"].as_f64().unwrap(), 0.01));
    assert_eq!(find("telegram")["runs"], 1);
    let ls = member(&ch["tools"], "tool", "ls");
    assert_eq!(ls["calls"], 3);
    assert_eq!(ls["runs"], 1);
    // The runs' cost: the one run that called it (which also called `read`).
    let runs = d.get_json("/v1/traces?limit=100");
    let run_cost = member(&runs["traces"], "trace_id", &trace_of(50))["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(run_cost > 0.0);
    let read = member(&ch["tools"], "tool", "read");
    assert_eq!((&read["calls"], &read["runs"]), (&json!(1), &json!(1)));
    for tool in [ls, read] {
        assert!(
            close(tool["runs_cost_usd"].as_f64().unwrap(), run_cost),
            "{ch}"
        );
    }

    // Fallbacks from the gateway log, counted by model pair and linked to their runs.
    let fb = d.get_json("/v1/openclaw/fallbacks");
    assert_eq!(fb["decisions"], 3, "{fb}");
    let pair = fb["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["reason"] == "server_error")
        .unwrap();
    assert_eq!(pair["from"], "fake/fake-model");
    assert_eq!(pair["to"], "fake/fake-model");
    assert_eq!(pair["decision"], "candidate_failed");
    assert_eq!(pair["runs"][0], RETRY_TRACE);
    // By agent: a decision is the agent's whose run it was in (the log names no agent).
    let mine = d.get_json("/v1/openclaw/fallbacks?agent=main");
    assert!(
        mine["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["runs"][0] == RETRY_TRACE),
        "{mine}"
    );
    let none = d.get_json("/v1/openclaw/fallbacks?agent=nobody");
    assert_eq!(none["decisions"], 0, "{none}");

    // Waste: the loop and the retries, counted per agent.
    let w = d.get_json("/v1/openclaw/waste");
    let flagged = |trace: &str| {
        w["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["trace_id"] == trace)
            .map(|r| r["flags"].clone())
            .unwrap_or(Value::Null)
    };
    let lf = flagged(&trace_of(50));
    assert_eq!(lf[0]["flag"], "tool_loop", "{w}");
    assert_eq!(lf[0]["tool"], "ls");
    assert_eq!(lf[0]["repeats"], 3);
    let rf = flagged(RETRY_TRACE);
    assert_eq!(rf[0]["flag"], "provider_retries", "{w}");
    assert!(rf[0]["failures"].as_i64().unwrap() >= 7);
    assert_eq!(w["agents"][0]["agent_id"], "main");
    assert_eq!(w["agents"][0]["tool_loop"], 1);
    assert_eq!(w["agents"][0]["provider_retries"], 1);
    let one = d.get_json(&format!("/v1/openclaw/waste?trace_id={}", trace_of(50)));
    assert_eq!(one["runs"].as_array().unwrap().len(), 1, "{one}");

    // Bad parameters name the field.
    for (path, field) in [
        ("/v1/openclaw/cache?by=planet", "by"),
        ("/v1/openclaw/context?near=2", "near"),
        ("/v1/openclaw/waste?trace_id=xyz", "trace_id"),
        ("/v1/openclaw/scheduled?from=yesterday", "from"),
    ] {
        let r = client().get(d.url(path)).send().unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["field"], field, "{path}");
    }

    // The CLI reads the same database.
    let out = d.cli(&["openclaw", "scheduled", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["totals"], sch["totals"]);
    for (args, want) in [
        (
            &["openclaw", "cache", "--by", "model"][..],
            "claude-sonnet-4-5",
        ),
        (&["openclaw", "scheduled"][..], "job-7"),
        (
            &["openclaw", "subagents"][..],
            "agent:main:subagent:abc-123",
        ),
        (&["openclaw", "context"][..], "near its window"),
        (&["openclaw", "channels"][..], "telegram"),
        (&["openclaw", "fallbacks"][..], "candidate_failed"),
        (&["openclaw", "waste"][..], "tool loop (ls x3)"),
    ] {
        let out = d.cli(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains(want), "{args:?}:\n{text}");
    }
    let bad = d.cli(&["openclaw", "cache", "--by", "planet"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// A run's page lists the runs of the sub-agents it spawned (session keys
/// `agent:<id>:subagent:<uuid>`) among its `sub_traces`, with their cost rolled up; a
/// later run of the same session does not claim them.
#[test]
fn a_run_lists_its_subagents_runs_with_cost_rolled_up() {
    let d = Daemon::start(&[("OCT_LOG_PATH", "off"), ("OCT_OPENCLAW_STATE_DIR", "off")]);
    let base = now_ms() - 30 * 60_000;
    let parent_key = "agent:main:openai:u1";
    let mut runs = Vec::new();
    let mut p1 = spec(1, base);
    p1.session_key = parent_key;
    p1.session_id = "s-web";
    p1.cost = 0.01;
    runs.push(p1);
    // Two runs of the first sub-agent, spawned by run 1 (the hook names the requester
    // session only, as OpenClaw 2026.9.6 sends it).
    for (n, at, cost) in [(40, 2, 0.03), (41, 3, 0.02)] {
        let mut c = spec(n, base + at * 60_000);
        c.session_key = "agent:main:subagent:abc-123";
        c.session_id = "s-sub";
        c.cost = cost;
        runs.push(c);
    }
    // A later run of the same session spawns another sub-agent, its hook inside the run's trace.
    let mut p2 = spec(2, base + 10 * 60_000);
    p2.session_key = parent_key;
    p2.session_id = "s-web";
    p2.cost = 0.005;
    runs.push(p2);
    let mut c2 = spec(42, base + 11 * 60_000);
    c2.session_key = "agent:main:subagent:def-456";
    c2.session_id = "s-sub2";
    c2.cost = 0.004;
    runs.push(c2);
    let mut events: Vec<Value> = runs.iter().flat_map(run_events).collect();
    events.push(json!({"kind": "hook:subagent_spawned", "ts": base + 60_000,
        "event": {"runId": "run-40", "childSessionKey": "agent:main:subagent:abc-123",
                  "agentId": "main", "label": "research", "mode": "run"},
        "ctx": {"requesterSessionKey": parent_key}}));
    events.push(json!({"kind": "hook:subagent_spawned", "ts": base + 10 * 60_000 + 500,
        "event": {"childSessionKey": "agent:main:subagent:def-456", "agentId": "main", "label": "check"},
        "ctx": {"requesterSessionKey": parent_key, "runId": "run-2",
                "trace": {"traceId": trace_of(2), "spanId": span_hex(&trace_of(2), 2)}}}));
    let r = post_json(
        &d.url("/v1/openclaw/events"),
        &json!({"plugin": {"version": "test"}, "events": events}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    d.wait_count(
        "SELECT count(*) FROM traces",
        runs.len() as i64,
        Duration::from_secs(10),
    );
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'openclaw.subagent_spawned'",
        2,
        Duration::from_secs(10),
    );

    let one = d.get_json(&format!("/v1/traces/{}", trace_of(1)));
    let subs: Vec<&str> = one["sub_traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(subs, vec![trace_of(40), trace_of(41)], "{one}");
    assert_eq!(
        one["subagents"][0]["child_session_key"],
        "agent:main:subagent:abc-123"
    );
    assert_eq!(one["subagents"][0]["label"], "research");
    assert!(close(
        one["subagents"][0]["cost_usd"].as_f64().unwrap(),
        0.05
    ));
    let roll = &one["rollup"];
    assert!(
        close(roll["own_cost_usd"].as_f64().unwrap(), 0.01),
        "{roll}"
    );
    assert!(close(roll["sub_traces_cost_usd"].as_f64().unwrap(), 0.05));
    assert!(close(roll["total_cost_usd"].as_f64().unwrap(), 0.06));
    // The same parent as the sub-agents view names, with the same total.
    let view = d.get_json("/v1/openclaw/subagents");
    let parent = member(&view["parents"], "trace_id", &trace_of(1));
    assert!(
        close(parent["total_cost_usd"].as_f64().unwrap(), 0.06),
        "{view}"
    );

    let two = d.get_json(&format!("/v1/traces/{}", trace_of(2)));
    let subs: Vec<&str> = two["sub_traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(subs, vec![trace_of(42)], "{two}");
    assert!(close(
        two["rollup"]["total_cost_usd"].as_f64().unwrap(),
        0.009
    ));
    // A run that spawned nothing: no sub-runs, its own cost.
    let child = d.get_json(&format!("/v1/traces/{}", trace_of(40)));
    assert_eq!(child["sub_traces"].as_array().unwrap().len(), 0);
    assert_eq!(child["subagents"].as_array().unwrap().len(), 0);
    assert!(close(
        child["rollup"]["total_cost_usd"].as_f64().unwrap(),
        0.03
    ));
}

/// The baselines flag a cron job whose cost per run rises (the median of its last three
/// runs against the runs before), once, where the rise starts; a heartbeat whose cost
/// stays flat is not flagged.
#[test]
fn baselines_flag_a_scheduled_job_whose_cost_per_run_rises() {
    let d = Daemon::start(&[
        ("OCT_LOG_PATH", "off"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
        ("OCT_BASELINE_MIN_RUNS", "5"),
        ("OCT_BASELINE_SETTLE", "200ms"),
    ]);
    let base = now_ms() - 60 * 60_000;
    let mut runs = Vec::new();
    let cron_keys: Vec<String> = (0..11)
        .map(|i| format!("agent:ops:cron:job-9:run:{i:04}"))
        .collect();
    // job-9: eight runs at $0.002, then three at $0.01.
    for i in 0..11u32 {
        let mut c = spec(100 + i, base + i as i64 * 2 * 60_000);
        c.agent = "ops";
        c.trigger = "cron";
        c.session_key = &cron_keys[i as usize];
        c.session_id = "s-cron";
        c.cost = if i < 8 { 0.002 } else { 0.01 };
        runs.push(c);
    }
    // Another job of the same agent, always at $0.01: not job-9's history.
    let other: Vec<String> = (0..6)
        .map(|i| format!("agent:ops:cron:job-3:run:{i}"))
        .collect();
    for i in 0..6u32 {
        let mut c = spec(200 + i, base + i as i64 * 2 * 60_000 + 30_000);
        c.agent = "ops";
        c.trigger = "cron";
        c.session_key = &other[i as usize];
        c.session_id = "s-cron3";
        c.cost = 0.01;
        runs.push(c);
    }
    // Heartbeats of another agent at a flat $0.001 (HEARTBEAT_OK).
    for i in 0..10u32 {
        let mut h = spec(300 + i, base + i as i64 * 2 * 60_000 + 45_000);
        h.agent = "hb";
        h.session_key = "agent:hb:main";
        h.session_id = "s-hb";
        h.trigger = "heartbeat";
        h.reply = Some("HEARTBEAT_OK");
        h.cost = 0.001;
        runs.push(h);
    }
    let mut events: Vec<Value> = runs.iter().flat_map(run_events).collect();
    // Heartbeats as OpenClaw 2026.9.6 runs them: no model.usage, so each run's root is its
    // attempt (`openclaw.harness`); $0.001 a run, then $0.004.
    let mut harness_runs = Vec::new();
    for i in 0..11u32 {
        let mut h = spec(400 + i, base + i as i64 * 2 * 60_000 + 50_000);
        h.agent = "hb2";
        h.session_key = "agent:hb2:main";
        h.session_id = "s-hb2";
        h.trigger = "heartbeat";
        h.cost = if i < 8 { 0.001 } else { 0.004 };
        harness_runs.push(h);
    }
    events.extend(
        harness_runs
            .iter()
            .flat_map(run_events)
            .filter(|e| e["kind"] != "tdiag:model.usage")
            .map(|mut e| {
                if let Some(t) = e["ctx"].get_mut("trace") {
                    t["parentSpanId"] = Value::Null;
                }
                e
            }),
    );
    let r = post_json(
        &d.url("/v1/openclaw/events"),
        &json!({"plugin": {"version": "test"}, "events": events}),
    );
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    d.wait_count(
        "SELECT count(*) FROM traces",
        (runs.len() + harness_runs.len()) as i64,
        Duration::from_secs(10),
    );
    // Every run checked: the rise is recorded on job-9's tenth run (the second at $0.01).
    d.wait_count(
        "SELECT count(*) FROM events WHERE name = 'baseline_anomaly'
           AND json_extract(attributes, '$.scheduled_job.job') = 'job-9'",
        1,
        Duration::from_secs(15),
    );
    std::thread::sleep(Duration::from_secs(2));
    let a = d.get_json("/v1/anomalies?agent_id=ops&limit=100");
    let rising: Vec<&Value> = a["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| {
            x["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["metric"] == "cost_per_run")
        })
        .collect();
    let dump: Vec<(Option<String>, i64, String)> = d
        .db()
        .prepare("SELECT agent_id, time_ns, attributes FROM events WHERE name = 'baseline_anomaly'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rising.len(), 1, "{a} {dump:?}");
    assert_eq!(rising[0]["trace_id"], trace_of(109), "{a}");
    let m = rising[0]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "cost_per_run")
        .unwrap();
    assert!(close(m["value"].as_f64().unwrap(), 0.01), "{m}");
    assert!(close(m["median"].as_f64().unwrap(), 0.002), "{m}");
    let db = d.db();
    let msg: String = db
        .query_row(
            "SELECT message FROM events WHERE name = 'baseline_anomaly'
               AND json_extract(attributes, '$.scheduled_job.job') = 'job-9'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(msg.contains("cron job job-9: cost per run rising"), "{msg}");
    // The heartbeat whose runs have their attempt as root: flagged once, at its tenth run.
    let hb2 = d.get_json("/v1/anomalies?agent_id=hb2&limit=100");
    let list = hb2["anomalies"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{hb2}");
    assert_eq!(list[0]["trace_id"], trace_of(409), "{hb2}");
    assert_eq!(list[0]["metrics"][0]["metric"], "cost_per_run");
    assert_eq!(list[0]["run_name"], "openclaw.harness openclaw", "{hb2}");
    // The flat heartbeat is not flagged.
    let hb = d.get_json("/v1/anomalies?agent_id=hb&limit=100");
    assert_eq!(hb["anomalies"].as_array().unwrap().len(), 0, "{hb}");
    // The scheduled view shows the same rise per day where the days differ; here the
    // runs' costs add up per job.
    let sch = d.get_json("/v1/openclaw/scheduled?agent=ops");
    assert_eq!(sch["totals"]["cron_runs"], 17, "{sch}");
}

/// The member of the array `list` whose `key` is `value`.
fn member<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|m| m[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
}
