//! Issue #16's proof: a compressed day against the REAL gateway 2026.9.6 (see
//! tests/openclaw_e2e.rs), driven on loopback: heartbeats (the first answering
//! `HEARTBEAT_OK`, the next a reminder, in turn), a cron job, a session compacted, a
//! sub-agent spawned, a provider failing into its fallback, and turns through two doors
//! (the OpenAI-compatible HTTP endpoint and the gateway's inbound webhook). The numbers
//! openclaw-trace shows equal what the fake LLM served; OpenClaw's own `sessions.usage`,
//! polled by the daemon, agrees or the difference is named.

mod common;
#[path = "openclaw/harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harness::{
    FakeLlm, GATEWAY_TOKEN, Gateway, Proc, free_port, gateway_config, install_dir, long_client,
    node, wait_until,
};
use openclaw_trace::sources::gateway::GatewayClient;
use serde_json::{Value, json};

const HOOK_TOKEN: &str = "e2e-hook-token";

/// An operator connection that may drive the gateway (the daemon's own is read-only).
fn admin<T>(port: u16, f: impl AsyncFnOnce(&mut GatewayClient) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = GatewayClient::connect_with_scopes(
            &format!("ws://127.0.0.1:{port}"),
            GATEWAY_TOKEN,
            &["operator.read", "operator.write", "operator.admin"],
            Duration::from_secs(60),
        )
        .await
        .expect("admin connection");
        f(&mut c).await
    })
}

fn call(port: u16, method: &str, params: Value) -> Value {
    let m = method.to_string();
    admin(port, async move |c| {
        c.call(&m, params)
            .await
            .unwrap_or_else(|e| panic!("{m}: {e}"))
    })
}

/// Starts a cron job (or a heartbeat job) now and waits for its run to finish.
fn run_job(port: u16, id: &str) -> Value {
    let before = call(port, "cron.runs", json!({"id": id}))["total"]
        .as_i64()
        .unwrap_or(0);
    let r = call(port, "cron.run", json!({"id": id}));
    assert_eq!(r["ok"], true, "{r}");
    wait_until("the job's run to finish", Duration::from_secs(60), || {
        let runs = call(port, "cron.runs", json!({"id": id}));
        (runs["total"].as_i64().unwrap_or(0) > before).then(|| runs["entries"][0].clone())
    })
}

fn chat(port: u16, model: &str, text: &str) -> Value {
    long_client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(GATEWAY_TOKEN)
        .json(&json!({"model": model, "messages": [{"role": "user", "content": text}]}))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn a_compressed_day_against_the_real_gateway() {
    let started = Instant::now();
    let install = install_dir();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("workspace")).unwrap();
    std::fs::write(
        state.join("workspace/HEARTBEAT.md"),
        "# Heartbeat\n\n- Check whether anything needs attention.\n",
    )
    .unwrap();
    // The fake LLM, heartbeats answered HEARTBEAT_OK and a reminder in turn.
    let request_log = dir.join("llm-requests.jsonl");
    let mut llm_proc = Proc::spawn(
        "fake LLM",
        Command::new(node(&install))
            .arg(std::path::Path::new(harness::ROOT).join("tests/openclaw/fake-llm.mjs"))
            .env("PORT", "0")
            .env("REQUEST_LOG", &request_log)
            .env(
                "HEARTBEAT_REPLIES",
                "HEARTBEAT_OK,Reminder: water the plants.",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let llm_port: u16 = {
        use std::io::BufRead;
        let mut first = String::new();
        std::io::BufReader::new(llm_proc.child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        first
            .trim()
            .trim_start_matches("listening ")
            .parse()
            .unwrap()
    };
    let llm = FakeLlm {
        proc: llm_proc,
        port: llm_port,
        request_log,
    };

    let gw_port = free_port();
    let sidecar_port = free_port().to_string();
    let log_glob = format!("{}/openclaw-*.log*", logs.display());
    let gw_url = format!("ws://127.0.0.1:{gw_port}");
    let d = Daemon::start(&[
        ("OCT_PORT", sidecar_port.as_str()),
        ("OCT_LOG_PATH", log_glob.as_str()),
        ("OCT_LOG_POLL_INTERVAL", "200ms"),
        ("OCT_OPENCLAW_STATE_DIR", "off"),
        ("OCT_OPENCLAW_GATEWAY_URL", gw_url.as_str()),
        ("OCT_OPENCLAW_GATEWAY_TOKEN", GATEWAY_TOKEN),
        ("OCT_OPENCLAW_GATEWAY_POLL_INTERVAL", "1s"),
    ]);
    let mut config = gateway_config(
        gw_port,
        llm.port,
        &logs,
        json!({"url": format!("http://127.0.0.1:{sidecar_port}"), "flushIntervalMs": 200}),
    );
    // Two agents: `main` (heartbeats, no delivery target), and `fb`, whose primary model
    // fails (HTTP 400 from the fake LLM) into its fallback.
    let model = |id: &str| {
        json!({"id": id, "name": id, "reasoning": false, "input": ["text"],
            "cost": {"input": 1.0, "output": 2.0, "cacheRead": 0, "cacheWrite": 0},
            "contextWindow": 128000, "maxTokens": 4096})
    };
    config["models"]["providers"]["fake"]["models"] =
        json!([model("fake-model"), model("fail-model")]);
    config["agents"]["list"] = json!([
        {"id": "main", "default": true, "heartbeat": {"every": "30m", "target": "none"}},
        {"id": "fb", "model": {"primary": "fake/fail-model", "fallbacks": ["fake/fake-model"]}}
    ]);
    // The second door: the gateway's inbound webhook.
    config["hooks"] = json!({"enabled": true, "token": HOOK_TOKEN, "path": "/hooks",
        "allowedAgentIds": ["main"]});
    let gw = Gateway::start(&install, &state, gw_port, &config);
    eprintln!("gateway up after {:?}", started.elapsed());

    // Door 1, the HTTP endpoint: a chat turn, a turn that spawns a sub-agent, and a
    // turn of the agent whose provider fails into the fallback.
    let hi = chat(gw_port, "openclaw/main", "Say hi");
    assert_eq!(
        hi["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );
    let spawn = chat(gw_port, "openclaw/main", "SPAWN a helper");
    assert_eq!(
        spawn["choices"][0]["message"]["content"],
        "The sub-agent is on it."
    );
    let fb = chat(gw_port, "openclaw/fb", "Say hi");
    assert_eq!(
        fb["choices"][0]["message"]["content"],
        "Hello from the fake LLM."
    );
    // Door 2, the inbound webhook.
    let r = long_client()
        .post(format!("http://127.0.0.1:{gw_port}/hooks/agent"))
        .bearer_auth(HOOK_TOKEN)
        .json(
            &json!({"message": "Summarize this test event: the import completed.",
            "name": "import", "agentId": "main", "deliver": false}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());

    // The scheduled part: a cron job, and the heartbeat job run twice (a minute apart
    // in a real day, at once here).
    let job = call(
        gw_port,
        "cron.add",
        json!({"name": "daily-report", "agentId": "main", "enabled": true,
            "schedule": {"kind": "every", "everyMs": 86_400_000}, "sessionTarget": "isolated",
            "wakeMode": "now", "delivery": {"mode": "none"},
            "payload": {"kind": "agentTurn", "message": "Write the daily report"}}),
    );
    let job_id = job["id"].as_str().unwrap().to_string();
    let cron_run = run_job(gw_port, &job_id);
    assert_eq!(cron_run["status"], "ok", "{cron_run}");
    let jobs = call(gw_port, "cron.list", json!({}));
    let hb_id = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "heartbeat-main")
        .and_then(|j| j["id"].as_str())
        .unwrap()
        .to_string();
    let mut heartbeat_runs = Vec::new();
    for _ in 0..2 {
        heartbeat_runs.push(run_job(gw_port, &hb_id));
    }
    eprintln!("heartbeat runs: {heartbeat_runs:?}");

    // A session compacted: the first chat turn's.
    let sessions = call(gw_port, "sessions.list", json!({}));
    let key = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["key"].as_str())
        .rfind(|k| k.starts_with("agent:main:openai:"))
        .unwrap()
        .to_string();
    let c = call(gw_port, "sessions.compact", json!({"key": key}));
    assert_eq!(c["compacted"], true, "{c}");
    eprintln!("day driven after {:?}", started.elapsed());

    // What the fake LLM served: completions with usage, and the failing model's calls
    // (counted as calls, with no tokens).
    let failed = || {
        llm.requests()
            .iter()
            .filter(|r| r["path"] == "/v1/chat/completions" && r["behavior"] == "fail")
            .count() as i64
    };
    let served = || -> (Vec<Value>, i64, i64) {
        let reqs: Vec<Value> = llm
            .requests()
            .into_iter()
            .filter(|r| r["path"] == "/v1/chat/completions" && r["behavior"] != "fail")
            .collect();
        let p = reqs
            .iter()
            .map(|r| r["usage"]["prompt_tokens"].as_i64().unwrap())
            .sum();
        let c = reqs
            .iter()
            .map(|r| r["usage"]["completion_tokens"].as_i64().unwrap())
            .sum();
        (reqs, p, c)
    };
    // openclaw-trace's totals reach the fake LLM's (the plugin flushes every 200 ms).
    let usage = wait_until(
        "our totals to equal the fake LLM's",
        Duration::from_secs(30),
        || {
            let (reqs, p, c) = served();
            let u = d.get_json("/v1/usage");
            let t = &u["totals"];
            let calls = reqs.len() as i64 + failed();
            eprintln!(
                "served {calls} calls {p}/{c}; ours {} calls {}/{}",
                t["calls"], t["input_tokens"], t["output_tokens"]
            );
            (t["input_tokens"] == p && t["output_tokens"] == c && t["calls"] == calls)
                .then(|| u.clone())
        },
    );
    let (reqs, p, c) = served();
    assert_eq!(
        failed(),
        1,
        "the failing model was called once, then its fallback"
    );
    assert_eq!(usage["totals"]["errors"], 1, "{usage:#}");
    let cost = (p as f64 * 1.0 + c as f64 * 2.0) / 1e6;
    let ours_cost = usage["totals"]["cost_usd"].as_f64().unwrap();
    assert!(
        (ours_cost - cost).abs() < 1e-9,
        "ours ${ours_cost}, served ${cost}"
    );
    eprintln!(
        "served {} completions: {p} in, {c} out, ${cost:.6}",
        reqs.len()
    );

    // Heartbeats: each run counted, the HEARTBEAT_OK ones as such.
    let sched = d.get_json("/v1/openclaw/scheduled");
    let served_hb: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["behavior"] == "heartbeat")
        .collect();
    let served_ok = served_hb
        .iter()
        .filter(|r| r["reply"] == "HEARTBEAT_OK")
        .count() as i64;
    assert!(
        served_ok >= 1 && served_hb.len() as i64 > served_ok,
        "{served_hb:?}"
    );
    assert_eq!(
        sched["totals"]["heartbeat_runs"],
        served_hb.len() as i64,
        "{sched:#}"
    );
    assert_eq!(sched["totals"]["heartbeat_ok"], served_ok, "{sched:#}");
    let hb_cost = served_hb.len() as f64 * (90.0 + 3.0 * 2.0) / 1e6;
    assert!((sched["totals"]["heartbeat_cost_usd"].as_f64().unwrap() - hb_cost).abs() < 1e-9);
    // The cron job: a run of its own kind, its cost, and the gateway's own job list.
    // OpenClaw 2026.9.6 runs an inbound webhook as a one-off cron job too (session key
    // `agent:main:cron:<id>:run:<uuid>`, trigger `cron`, no channel): two cron runs.
    assert_eq!(sched["totals"]["cron_runs"], 2, "{sched:#}");
    let cron_day = sched["days"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "cron" && d["job"] == job_id.as_str())
        .unwrap();
    assert_eq!(cron_day["job"], job_id.as_str());
    assert!(
        (cron_day["cost_usd"].as_f64().unwrap() - 157e-6).abs() < 1e-9,
        "{cron_day}"
    );
    let gw_jobs: Vec<&str> = sched["gateway"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert!(gw_jobs.contains(&"daily-report") && gw_jobs.contains(&"heartbeat-main"));

    // The sub-agent, linked to the run that spawned it, its cost rolled up.
    let sub = d.get_json("/v1/openclaw/subagents");
    eprintln!("subagents: {sub:#}");
    let link = &sub["subagents"][0];
    assert!(
        link["child_session_key"]
            .as_str()
            .unwrap()
            .contains(":subagent:")
    );
    assert!(!link["parent_trace_id"].is_null(), "{sub:#}");
    assert_eq!(link["label"], "counter");
    // OpenClaw 2026.9.6 runs it inside the spawning run's trace.
    assert_eq!(link["in_parent_trace"], true, "{sub:#}");
    // Its model calls are the fake LLM's "SUBTASK" answers: 70 in, 5 out each.
    let calls = link["child_llm_calls"].as_i64().unwrap();
    assert!(calls >= 1, "{sub:#}");
    let child_cost = link["child_cost_usd"].as_f64().unwrap();
    assert!((child_cost - calls as f64 * 80e-6).abs() < 1e-9, "{sub:#}");
    let parent = &sub["parents"][0];
    assert_eq!(parent["trace_id"], link["parent_trace_id"]);
    assert!((parent["subagent_cost_usd"].as_f64().unwrap() - child_cost).abs() < 1e-9);

    // The compaction, an event on the session: the plugin sends it after
    // `sessions.compact` has answered, so it may still be on its way.
    let ctx = wait_until("the compaction event", Duration::from_secs(30), || {
        let ctx = d.get_json("/v1/openclaw/context");
        (!ctx["compactions"].as_array().unwrap().is_empty()).then_some(ctx)
    });
    eprintln!("compactions: {:#}", ctx["compactions"]);

    // The fallback: fail-model -> fake-model, from the gateway log.
    let fbv = wait_until("the fallback decision", Duration::from_secs(20), || {
        let f = d.get_json("/v1/openclaw/fallbacks");
        (f["decisions"].as_i64() >= Some(1)).then_some(f)
    });
    eprintln!("fallbacks: {fbv:#}");
    assert!(
        fbv["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["from"].as_str().is_some_and(|f| f.contains("fail-model"))),
        "{fbv:#}"
    );

    // The doors: runs per channel.
    let ch = d.get_json("/v1/openclaw/channels");
    eprintln!("channels: {:#}", ch["channels"]);
    let webchat = ch["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "webchat")
        .cloned()
        .unwrap_or_else(|| panic!("{ch:#}"));
    // The three HTTP turns (the sub-agent's run is its own, under its parent).
    assert!(webchat["runs"].as_i64().unwrap() >= 3, "{webchat}");

    // OpenClaw's own totals: agreeing, or the difference named.
    // OpenClaw answers sessions.usage from a cache it keeps 30 s and refreshes in the
    // background (slower on a busy machine): two refreshes and then some.
    // The gateway keeps its own schedule (a heartbeat may fire meanwhile), so what was
    // served is read again each time.
    let until = std::time::Instant::now() + Duration::from_secs(150);
    let g = loop {
        let g = d.get_json("/health")["openclaw_gateway"].clone();
        let cmp = &g["comparison"];
        let (_, p, c) = served();
        if g["condition"] == "ok"
            && cmp["openclaw_trace"]["total_tokens"] == p + c
            && cmp["settled"] == true
        {
            break g;
        }
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for the gateway's comparison; the last /health said: {g:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let cmp = &g["comparison"];
    eprintln!("comparison: {cmp:#}");
    // Settled means OpenClaw computed its answer after our newest call (it keeps one for
    // 30 s): before, a day's comparison could read its totals from before the day's turns.
    assert!(
        cmp["openclaw_computed_ms"].as_i64() >= cmp["openclaw_trace_newest_call_ms"].as_i64(),
        "{cmp:#}"
    );
    let ours = cmp["openclaw_trace"]["total_tokens"].as_f64().unwrap();
    let theirs = cmp["openclaw"]["total_tokens"].as_f64().unwrap();
    assert!(theirs > 0.0, "{cmp:#}");
    if cmp["agree"] != true {
        let why = cmp["which_side_counts_what"].as_str().unwrap();
        assert!(!why.is_empty());
    }
    // Every token accounted for: OpenClaw 2026.9.6 counts every run here (the heartbeat
    // turns, the silent one included, and the cron and sub-agent sessions, which it lists)
    // but not the compaction's model call, which no run holds.
    let outside = cmp["outside_runs"]["total_tokens"].as_f64().unwrap();
    let unlisted = cmp["not_in_openclaw"]["total_tokens"].as_f64().unwrap();
    assert!(outside > 0.0, "the compaction's call: {cmp:#}");
    assert_eq!(
        ours - theirs,
        outside + unlisted,
        "OpenClaw {theirs}, ours {ours}: {cmp:#}"
    );
    drop(gw);
    eprintln!("done after {:?}", started.elapsed());
}
