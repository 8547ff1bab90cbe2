//! Budgets end to end: thresholds alert once per period, survive a restart, show in
//! /health and /v1/budget, and reach a webhook through a failure and a retry.
mod common;
use common::webhook::{fake_webhook, fake_webhook_on};
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn spend(d: &Daemon, agent: &str, cost: f64, n: usize) {
    let calls: Vec<Value> = (0..n)
        .map(|_| json!({"provider": "openai", "model": "gpt-4o", "agent_id": agent, "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": cost}))
        .collect();
    assert_eq!(post_json(&d.url("/v1/traces"), &json!(calls)).status(), 202);
}

fn fired(d: &Daemon) -> Vec<(String, i64)> {
    let conn = d.db();
    let mut st = conn
        .prepare("SELECT budget, threshold FROM budget_alerts ORDER BY budget, threshold")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn budget(d: &Daemon, q: &str) -> Value {
    client()
        .get(d.url(&format!("/v1/budget{q}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn thresholds_alert_once_per_period_and_the_webhook_gets_them_after_a_retry() {
    let hook = fake_webhook();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OCT_BUDGETS", "agent:main/day=$1, global/month=100k tokens"),
        ("OCT_ALERT_WEBHOOK", hook.url.as_str()),
    ];
    let mut d = Daemon::start_in(dir.path(), &env);
    assert_eq!(budget(&d, "?agent=main")["over"], false);
    // $0.30 at a time: 50 % after the 2nd call, 80 % after the 3rd, 100 % after the 4th.
    let steps = [(2, 1), (1, 2), (1, 3), (3, 3)];
    let mut calls = 0;
    for (n, want_alerts) in steps {
        spend(&d, "main", 0.3, n);
        calls += n;
        d.wait_count(
            "SELECT count(*) FROM spans",
            calls as i64,
            Duration::from_secs(10),
        );
        let got = d.wait_count(
            "SELECT count(*) FROM budget_alerts WHERE budget = 'agent:main/day/usd'",
            want_alerts,
            Duration::from_secs(5),
        );
        assert_eq!(got, want_alerts, "after {calls} calls");
    }
    // Spending by another agent leaves main's budget alone, and counts globally in tokens.
    spend(&d, "other", 5.0, 1);
    d.wait_count("SELECT count(*) FROM spans", 8, Duration::from_secs(10));
    let b = budget(&d, "?agent=main");
    assert_eq!(b["over"], true, "{b:#}");
    assert_eq!(b["allowed"], false);
    let main = b["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["budget"] == "agent:main/day/usd")
        .unwrap();
    assert!(
        (main["spent"].as_f64().unwrap() - 2.1).abs() < 1e-9,
        "{main}"
    );
    assert_eq!(main["alerted"], json!([50, 80, 100]));
    let other = budget(&d, "?agent=other");
    assert_eq!(
        other["over"], false,
        "only the global token budget applies: {other:#}"
    );
    assert_eq!(other["budgets"][0]["spent"], 880.0);
    // /health shows it and warns.
    let h = d.get_json("/health");
    assert_eq!(h["analytics"]["budgets"].as_array().unwrap().len(), 2);
    assert!(
        h["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("agent:main/day/usd over")),
        "{h:#}"
    );
    // Events: one per threshold, linked to the agent.
    let events: Vec<(String, String)> = {
        let conn = d.db();
        let mut st = conn
            .prepare(
                "SELECT severity, message FROM events WHERE name = 'budget_alert' ORDER BY time_ns",
            )
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].0, "error");
    assert!(events[2].1.contains("reached 100%"), "{events:?}");
    // The webhook failed once, then got all three, in order.
    let until = Instant::now() + Duration::from_secs(20);
    while hook.received.lock().unwrap().len() < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Vec<Value> = hook.received.lock().unwrap().clone();
    let thresholds: Vec<i64> = got
        .iter()
        .map(|v| v["threshold_pct"].as_i64().unwrap())
        .collect();
    assert_eq!(thresholds, vec![50, 80, 100], "{got:#?}");
    assert_eq!(got[0]["type"], "budget_alert");
    assert_eq!(got[0]["budget"], "agent:main/day/usd");
    assert!(
        *hook.attempts.lock().unwrap() >= 4,
        "the first attempt failed and was retried"
    );
    assert!(
        d.logs()
            .iter()
            .any(|l| l.contains("alert delivery failed; retrying"))
    );
    assert!(
        !d.logs().iter().any(|l| l.contains("secret-token")),
        "the webhook URL's secret is not logged"
    );
    assert!(d.stop().success());

    // After a restart the state comes back and nothing alerts twice.
    let d = Daemon::start_in(dir.path(), &env);
    let until = Instant::now() + Duration::from_secs(5);
    while budget(&d, "?agent=main")["over"] != true && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(budget(&d, "?agent=main")["over"], true);
    spend(&d, "main", 0.3, 2);
    d.wait_count("SELECT count(*) FROM spans", 10, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        fired(&d),
        vec![
            ("agent:main/day/usd".to_string(), 50),
            ("agent:main/day/usd".to_string(), 80),
            ("agent:main/day/usd".to_string(), 100)
        ]
    );
    assert_eq!(
        count(
            &d.db_path,
            "SELECT count(*) FROM events WHERE name = 'budget_alert'"
        ),
        3
    );
}

fn outbox(d: &Daemon) -> i64 {
    count(&d.db_path, "SELECT count(*) FROM alert_outbox")
}

#[test]
fn an_alert_the_webhook_missed_survives_a_restart_and_arrives_once() {
    // A port nothing listens on yet: the webhook is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OCT_BUDGETS", "global/day=$1"),
        ("OCT_ALERT_WEBHOOK", url.as_str()),
    ];
    let mut d = Daemon::start_in(dir.path(), &env);
    spend(&d, "main", 0.6, 1);
    assert_eq!(
        d.wait_count(
            "SELECT count(*) FROM events WHERE name = 'budget_alert'",
            1,
            Duration::from_secs(10)
        ),
        1
    );
    let until = Instant::now() + Duration::from_secs(10);
    while !d
        .logs()
        .iter()
        .any(|l| l.contains("alert delivery failed; retrying"))
    {
        assert!(Instant::now() < until, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.stop().success());
    assert_eq!(outbox(&d), 1, "still waiting when the daemon stopped");

    // Started again; the webhook comes up a moment later.
    let mut d = Daemon::start_in(dir.path(), &env);
    std::thread::sleep(Duration::from_millis(500));
    let hook = fake_webhook_on(port, false);
    let until = Instant::now() + Duration::from_secs(20);
    while hook.received.lock().unwrap().is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nothing more comes, now or after another restart.
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.stop().success());
    let d = Daemon::start_in(dir.path(), &env);
    std::thread::sleep(Duration::from_secs(1));
    let got = hook.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "delivered exactly once: {got:#?}");
    assert_eq!(got[0]["type"], "budget_alert");
    assert_eq!(got[0]["budget"], "global/day/usd");
    assert_eq!(got[0]["threshold_pct"], 50);
    assert_eq!(*hook.attempts.lock().unwrap(), 1);
    assert_eq!(outbox(&d), 0, "delivered alerts leave the queue");
    assert_eq!(
        count(
            &d.db_path,
            "SELECT last_id FROM sink_cursors WHERE sink = 'alert_webhook'"
        ),
        1
    );
}

#[test]
fn bad_budgets_are_refused_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("OCT_PORT", "0")
        .env("OCT_DB_PATH", dir.path().join("t.db"))
        .env("OCT_BUDGETS", "agent:main/week=$5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("OCT_BUDGETS") && err.contains("not day or month"),
        "{err}"
    );
}

#[test]
fn no_budgets_means_never_over() {
    let d = Daemon::start(&[]);
    let b = budget(&d, "?agent=anyone");
    assert_eq!(
        b,
        json!({"agent_id": "anyone", "over": false, "allowed": true, "budgets": []})
    );
}
