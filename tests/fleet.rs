//! A fleet's central: real sidecars push to a real central (`POST /v1/push`), in both
//! envelopes, gzipped, with a token; the central is killed with SIGKILL in the middle and
//! restarted; at the end it holds every record exactly once, each stamped with its
//! sidecar, and `/v1/instances` lists the sidecars.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::fleet::{TOKEN, capture, free_port, sidecar, wait_until};
use common::{Daemon, client, count, now_ms, now_ms_with_today_reaching_back};
use serde_json::{Value, json};

/// Rows per instance in the central's table.
fn per_instance(central: &Daemon, table: &str, id: &str) -> i64 {
    count(
        &central.db_path,
        &format!(
            "SELECT count(*) FROM {table} WHERE json_extract(resource, '$.\"service.instance.id\"') = '{id}' AND {}",
            // The central's own record of each sidecar is not the sidecar's data.
            if table == "events" {
                "name != 'openclaw_trace.instance'"
            } else {
                "1"
            }
        ),
    )
}

/// Answers every connection on `port` with 503 and `Retry-After: 1` until `until`; returns
/// how many it answered (a central that is up but refusing, as during its start).
fn refuse_with_503(port: u16, until: Instant) -> std::thread::JoinHandle<usize> {
    use std::io::{Read, Write};
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut answered = 0;
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    answered += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        answered
    })
}

fn budget_alerts(central: &Daemon, threshold: u32) -> i64 {
    count(
        &central.db_path,
        &format!(
            "SELECT count(*) FROM budget_alerts WHERE budget = 'global/day/tokens' AND threshold = {threshold}"
        ),
    )
}

#[test]
fn sidecars_push_to_a_central_that_survives_sigkill_and_keeps_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let port_s = port.to_string();
    // A fleet budget: the three sidecars' tokens together cross it (about 32,000).
    let central_env = [
        ("OCT_PORT", port_s.as_str()),
        ("OCT_AUTH_TOKEN", TOKEN),
        ("OCT_BUDGETS", "global/day=30k tokens"),
    ];
    let mut central = Daemon::start_in(dir.path(), &central_env);

    let a = sidecar(port, "side-a", "v2");
    let b = sidecar(port, "side-b", "v1");
    // A third sidecar pushes once and goes away before the central's restart.
    let mut c = sidecar(port, "side-c", "v2");
    // Every call at one time, in the budget's day whatever the clock.
    let t = now_ms_with_today_reaching_back(30_000) - 30_000;
    let mut tokens_a = capture(&a, "alpha", 0, 40, t);
    let mut tokens_b = capture(&b, "beta", 0, 40, t);
    capture(&c, "gamma", 0, 3, t);
    wait_until(
        "the first half at the central",
        Duration::from_secs(20),
        || {
            per_instance(&central, "spans", "side-a") == 40
                && per_instance(&central, "spans", "side-b") == 40
                && per_instance(&central, "spans", "side-c") == 3
        },
    );
    c.stop();

    assert_eq!(budget_alerts(&central, 100), 0, "under the budget so far");
    // The central dies mid-stream; the sidecars keep capturing and retry, first against
    // nothing, then against a central that answers 503.
    central.kill9();
    tokens_a += capture(&a, "alpha", 40, 60, t);
    tokens_b += capture(&b, "beta", 40, 60, t);
    std::thread::sleep(Duration::from_millis(1500));
    let refused = refuse_with_503(port, Instant::now() + Duration::from_millis(2500))
        .join()
        .unwrap();
    assert!(refused >= 2, "both sidecars were answered 503 ({refused})");
    let central = Daemon::start_in(dir.path(), &central_env);
    wait_until("everything at the central", Duration::from_secs(30), || {
        per_instance(&central, "spans", "side-a") == 100
            && per_instance(&central, "spans", "side-b") == 100
            && per_instance(&central, "events", "side-a") == 4
            && per_instance(&central, "events", "side-b") == 4
    });
    // A few more push cycles: nothing is stored twice.
    std::thread::sleep(Duration::from_millis(2500));
    for (id, sidecar) in [("side-a", &a), ("side-b", &b)] {
        assert_eq!(
            per_instance(&central, "spans", id),
            100,
            "{id} spans once each"
        );
        assert_eq!(
            per_instance(&central, "events", id),
            4,
            "{id} errors once each"
        );
        assert_eq!(count(&sidecar.db_path, "SELECT count(*) FROM spans"), 100);
    }
    // The numbers agree with each sidecar's own.
    let tokens = |id: &str| {
        count(
            &central.db_path,
            &format!(
                "SELECT sum(total_tokens) FROM spans WHERE json_extract(resource, '$.\"service.instance.id\"') = '{id}'"
            ),
        )
    };
    assert_eq!(tokens("side-a"), tokens_a);
    assert_eq!(tokens("side-b"), tokens_b);
    // The fleet budget fired once at each threshold, across the central's restart.
    for threshold in [50, 80, 100] {
        assert_eq!(budget_alerts(&central, threshold), 1, "{threshold} %");
    }
    assert_eq!(
        count(&a.db_path, "SELECT sum(total_tokens) FROM spans"),
        tokens_a
    );
    // v2 keeps everything a sidecar knows: texts, sessions, agents.
    assert_eq!(
        count(
            &central.db_path,
            "SELECT count(*) FROM spans WHERE session_id = 'alpha-s' AND input_text LIKE 'alpha question %'"
        ),
        100
    );

    // The runs list filters by sidecar.
    let runs = client()
        .get(central.url("/v1/traces?instance=side-b&limit=1000"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let runs = runs["traces"].as_array().unwrap();
    assert_eq!(runs.len(), 100);
    assert!(
        runs.iter().all(|r| r["agent_id"].is_null()),
        "v1 carries no agent"
    );

    let list = client()
        .get(central.url("/v1/instances"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let inst = |id: &str| {
        list["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["instance_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {list}"))
            .clone()
    };
    let ia = inst("side-a");
    assert_eq!(
        (
            ia["format"].clone(),
            ia["region"].clone(),
            ia["stale"].clone()
        ),
        (json!(2), json!("ams"), json!(false))
    );
    assert_eq!(ia["version"], env!("CARGO_PKG_VERSION"));
    // What the sidecar says of itself: its store, its volume, its push backlog.
    let status = &ia["status"];
    assert!(status["db_bytes"].as_u64() > Some(0), "{ia}");
    assert!(status["disk_used_percent"].as_f64().is_some(), "{ia}");
    assert!(status["backlog_records"].as_u64().is_some(), "{ia}");
    assert_eq!(status["conditions"], json!([]), "{ia}");
    // Known again after the restart, though it has not pushed since.
    let ic = inst("side-c");
    // Its state as last recorded (at most a minute old when it went away).
    assert!(ic["records"].as_i64() >= Some(3), "{ic}");
    assert_eq!(ic["stale"], false, "{ic}");
    let ib = inst("side-b");
    assert_eq!(
        (ib["format"].clone(), ib["region"].clone()),
        (json!(1), json!("ams"))
    );
}

#[test]
fn a_repeated_batch_is_stored_once_and_a_bad_one_is_refused_naming_the_field() {
    let central = Daemon::start(&[("OCT_INSTANCE_STALE_AFTER", "1s")]);
    let batch = json!({"schema_version": 2,
    "source": {"service": "openclaw-trace", "version": "9.9.9", "instance": {"id": "manual"}},
    "records": [
        {"type": "span", "id": "x", "data": {"trace_id": "0af7651916cd43dd8448eb211c80319c",
          "span_id": "b7ad6b7169203331", "kind": "llm_call", "name": "chat m",
          "start_ns": (now_ms() - 1000) * 1_000_000, "status": "ok", "input_tokens": 5,
          "provider": "openai", "request_model": "gpt-4o"}},
        {"type": "event", "id": "e1", "data": {"id": "0193f0e0-0000-7000-8000-000000000001",
          "type": "custom", "time_ns": now_ms() * 1_000_000, "name": "deploy", "severity": "info"}}
    ]});
    // What the sidecar says of itself rides in a header; one that does not parse is
    // ignored, never a reason to refuse the records.
    for status in [
        r#"{"backlog_records":7,"db_bytes":123456,"disk_used_percent":91.5,"conditions":["disk_low"]}"#,
        "not json",
        r#"{"conditions": 3}"#,
    ] {
        let r = client()
            .post(central.url("/v1/push"))
            .header("x-oct-sidecar-status", status)
            .json(&batch)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(count(&central.db_path, "SELECT count(*) FROM spans"), 1);
    assert_eq!(
        count(
            &central.db_path,
            "SELECT count(*) FROM events WHERE name = 'deploy'"
        ),
        1
    );

    for (body, field) in [
        (json!({"nothing": []}), "records"),
        (
            json!({"records": [{"type": "span", "data": {"span_id": "b7ad6b7169203331"}}]}),
            "trace_id",
        ),
        (json!({"records": [{"type": "teapot", "data": {}}]}), "type"),
        (
            json!({"events": [{"type": "llm_trace", "id": "no-ids", "data": {"created_at": 1}}]}),
            "id",
        ),
    ] {
        let r = client()
            .post(central.url("/v1/push"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.json::<Value>().unwrap()["field"], field, "{body}");
    }
    assert_eq!(
        count(&central.db_path, "SELECT count(*) FROM spans"),
        1,
        "nothing half-kept"
    );

    // Silent past OCT_INSTANCE_STALE_AFTER: flagged, and said in /health.
    std::thread::sleep(Duration::from_millis(1500));
    let list = central.get_json("/v1/instances");
    assert_eq!(list["instances"][0]["instance_id"], "manual");
    assert_eq!(list["instances"][0]["stale"], true);
    assert_eq!(list["instances"][0]["pushes"], 3);
    assert_eq!(
        list["instances"][0]["status"],
        json!({"backlog_records": 7, "db_bytes": 123456, "disk_used_percent": 91.5,
               "conditions": ["disk_low"]})
    );
    let warnings = central.get_json("/health")["warnings"].to_string();
    assert!(warnings.contains("instance manual silent"), "{warnings}");
    assert!(
        warnings.contains("instance manual reports open conditions: disk_low"),
        "{warnings}"
    );
    // The CLI says the same, and exits 1 while a sidecar is stale or unwell.
    let url = central.url("");
    let out = central.cli(&["instances", "--url", &url]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let line = text.lines().find(|l| l.starts_with("manual")).unwrap();
    for want in ["STALE", "disk_low", "92%", " 7 "] {
        assert!(line.contains(want), "{want} in {line}");
    }
    let json = central.cli(&["instances", "--url", &url, "--json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["instances"][0]["instance_id"], "manual");
}

/// A span sent again as an update (`"update": true`, what a sidecar sends when pieces
/// merged into a span it had pushed) joins the stored span on a SQLite central too: the
/// run's tokens and cost count the merged span once, and the same update again changes
/// nothing.
#[test]
fn a_span_sent_again_as_an_update_merges_into_the_stored_one() {
    let central = Daemon::start(&[("OCT_AUTH_TOKEN", TOKEN)]);
    let t = now_ms() - 60_000;
    let span = |update: bool, tokens: Option<i64>| {
        let mut data = json!({"trace_id": "7".repeat(32), "span_id": "8".repeat(16), "kind": "llm_call",
            "name": "chat gpt-4o", "start_ns": t * 1_000_000, "status": "unset", "provider": "openai",
            "request_model": "gpt-4o", "agent_id": "main"});
        if let Some(n) = tokens {
            data["input_tokens"] = json!(n);
            data["output_tokens"] = json!(10);
            data["end_ns"] = json!((t + 900) * 1_000_000);
            data["status"] = json!("ok");
        }
        let mut item = json!({"type": "span", "id": format!("x@{update}{tokens:?}"), "data": data});
        if update {
            item["update"] = json!(true);
        }
        json!({"schema_version": 2, "source": {"instance": {"id": "side-u"}}, "records": [item]})
    };
    let push = |body: Value| {
        let r = client()
            .post(central.url("/v1/push"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    };
    let totals = || {
        count(
            &central.db_path,
            "SELECT COALESCE((SELECT input_tokens * 1000 + span_count FROM traces), -1)",
        )
    };
    push(span(false, None));
    wait_until("the first form stored", Duration::from_secs(10), || {
        totals() == 1
    });
    push(span(true, Some(500)));
    wait_until("the update merged", Duration::from_secs(10), || {
        totals() == 500_001
    });
    push(span(true, Some(500)));
    push(span(false, Some(999)));
    // A marker after them: once it is stored, so are they.
    push(
        json!({"schema_version": 2, "source": {"instance": {"id": "side-u"}},
        "records": [{"type": "event", "id": "m", "data": {"id": "0193a1b2-0000-7000-8000-0000000000aa",
            "time_ns": t * 1_000_000, "name": "marker", "severity": "info"}}]}),
    );
    wait_until("the marker stored", Duration::from_secs(10), || {
        count(
            &central.db_path,
            "SELECT count(*) FROM events WHERE name = 'marker'",
        ) == 1
    });
    assert_eq!(
        totals(),
        500_001,
        "the same update, and a plain resend, change nothing"
    );
    assert_eq!(count(&central.db_path, "SELECT count(*) FROM spans"), 1);
    let usage: Value = client()
        .get(central.url("/v1/usage?percentiles=false"))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(usage["totals"]["input_tokens"], 500, "{usage}");
    assert_eq!(usage["totals"]["calls"], 1, "{usage}");
}
