//! Alerts where people are: Slack (incoming webhook), Discord (webhook) and Telegram
//! (bot `sendMessage`) beside the generic JSON webhook, each a fake server on loopback
//! that checks the service's documented payload shape and answers as the service does
//! (Slack `ok`, Discord 204 after a 429, Telegram `{"ok":true}` after a 502). Budget and
//! host alerts arrive once each, readable, in order; after a restart nothing is sent
//! twice; the bot token never shows in the log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use serde_json::{Value, json};

const BOT_TOKEN: &str = "123456:SECRETtokenABCdef_-";
const CHAT: &str = "-1001234567890";

/// Each request a fake service got: (path, body), and the shape errors it found.
#[derive(Default)]
struct Seen {
    bodies: Vec<(String, Value)>,
    problems: Vec<String>,
    attempts: u32,
}

struct FakeServices {
    base: String,
    slack: Arc<Mutex<Seen>>,
    discord: Arc<Mutex<Seen>>,
    telegram: Arc<Mutex<Seen>>,
    webhook: Arc<Mutex<Seen>>,
    _rt: tokio::runtime::Runtime,
}

fn json_body(headers: &HeaderMap, body: &str, seen: &mut Seen) -> Option<Value> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        seen.problems.push(format!("content-type {ct:?}"));
    }
    match serde_json::from_str::<Value>(body) {
        Ok(v) => Some(v),
        Err(e) => {
            seen.problems.push(format!("not JSON: {e}"));
            None
        }
    }
}

fn fake_services() -> FakeServices {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (slack, discord, telegram, webhook) = (
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
        Arc::new(Mutex::new(Seen::default())),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (s, d, t, w) = (
        slack.clone(),
        discord.clone(),
        telegram.clone(),
        webhook.clone(),
    );
    let app = axum::Router::new()
        // Slack: {"text": ...} (mrkdwn); answers 200 "ok".
        .route(
            "/services/T000/B000/XXXX",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let mut seen = s.lock().unwrap();
                    seen.attempts += 1;
                    if let Some(v) = json_body(&h, &body, &mut seen) {
                        match v.get("text").and_then(Value::as_str) {
                            Some(t) if !t.is_empty() => {}
                            _ => seen.problems.push("slack: no text".into()),
                        }
                        seen.bodies.push(("slack".into(), v));
                    }
                    (StatusCode::OK, "ok").into_response()
                }
            }),
        )
        // Discord: content up to 2000 characters, mentions off; a 429 first, then 204.
        .route(
            "/api/webhooks/42/wh-token",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let d = d.clone();
                async move {
                    let mut seen = d.lock().unwrap();
                    seen.attempts += 1;
                    if seen.attempts == 1 {
                        return (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("content-type", "application/json")],
                            r#"{"message":"You are being rate limited.","retry_after":0.1,"global":false}"#,
                        )
                            .into_response();
                    }
                    if let Some(v) = json_body(&h, &body, &mut seen) {
                        match v.get("content").and_then(Value::as_str) {
                            Some(c) if !c.is_empty() && c.chars().count() <= 2000 => {}
                            _ => seen.problems.push("discord: content missing or too long".into()),
                        }
                        if v["allowed_mentions"]["parse"] != json!([]) {
                            seen.problems.push("discord: mentions not turned off".into());
                        }
                        seen.bodies.push(("discord".into(), v));
                    }
                    StatusCode::NO_CONTENT.into_response()
                }
            }),
        )
        // Telegram: POST /bot<token>/sendMessage with chat_id and text; a 502 first.
        .route(
            "/{bot}/sendMessage",
            axum::routing::post(
                move |axum::extract::Path(bot): axum::extract::Path<String>,
                      h: HeaderMap,
                      body: String| {
                    let t = t.clone();
                    async move {
                        let mut seen = t.lock().unwrap();
                        seen.attempts += 1;
                        if seen.attempts == 1 {
                            return (StatusCode::BAD_GATEWAY, "").into_response();
                        }
                        if bot != format!("bot{BOT_TOKEN}") {
                            seen.problems.push(format!("telegram: wrong bot path {bot}"));
                            return (
                                StatusCode::UNAUTHORIZED,
                                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
                            )
                                .into_response();
                        }
                        if let Some(v) = json_body(&h, &body, &mut seen) {
                            if v["chat_id"] != json!(CHAT.parse::<i64>().unwrap()) {
                                seen.problems.push(format!("telegram: chat_id {}", v["chat_id"]));
                            }
                            match v.get("text").and_then(Value::as_str) {
                                Some(x) if !x.is_empty() && x.chars().count() <= 4096 => {}
                                _ => seen.problems.push("telegram: text missing or too long".into()),
                            }
                            if v["parse_mode"] != "HTML" {
                                seen.problems.push("telegram: parse_mode".into());
                            }
                            seen.bodies.push(("telegram".into(), v));
                        }
                        (
                            StatusCode::OK,
                            [("content-type", "application/json")],
                            r#"{"ok":true,"result":{"message_id":1,"chat":{"id":-1001234567890,"type":"supergroup"},"date":0}}"#,
                        )
                            .into_response()
                    }
                },
            ),
        )
        // The generic webhook: the alert's JSON as it is.
        .route(
            "/hook",
            axum::routing::post(move |h: HeaderMap, body: String| {
                let w = w.clone();
                async move {
                    let mut seen = w.lock().unwrap();
                    seen.attempts += 1;
                    if let Some(v) = json_body(&h, &body, &mut seen) {
                        seen.bodies.push(("webhook".into(), v));
                    }
                    StatusCode::OK
                }
            }),
        );
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeServices {
        base: format!("http://{addr}"),
        slack,
        discord,
        telegram,
        webhook,
        _rt: rt,
    }
}

fn texts(seen: &Arc<Mutex<Seen>>, field: &str) -> Vec<String> {
    seen.lock()
        .unwrap()
        .bodies
        .iter()
        .map(|(_, v)| v[field].as_str().unwrap_or("").to_string())
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn alerts_reach_slack_discord_and_telegram_as_readable_messages_once() {
    let fake = fake_services();
    let dir = tempfile::tempdir().unwrap();
    let slack = format!("{}/services/T000/B000/XXXX", fake.base);
    let discord = format!("{}/api/webhooks/42/wh-token", fake.base);
    let hook = format!("{}/hook", fake.base);
    let env = [
        ("OCT_BUDGETS", "agent:main/day=$1"),
        ("OCT_ALERT_WEBHOOK", hook.as_str()),
        ("OCT_ALERT_SLACK_WEBHOOK", slack.as_str()),
        ("OCT_ALERT_DISCORD_WEBHOOK", discord.as_str()),
        ("OCT_ALERT_TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("OCT_ALERT_TELEGRAM_CHAT_ID", CHAT),
        ("OCT_ALERT_TELEGRAM_API", fake.base.as_str()),
        ("OCT_LLM_BURST_COUNT", "2"),
        ("OCT_METRICS_INTERVAL", "1s"),
        (
            "OCT_HOST_DISABLE",
            "cpu,memory,cgroup,disk,diskio,network,dns,processes,self,agent",
        ),
        ("OCT_LOG_LEVEL", "debug"),
    ];
    let mut d = Daemon::start_in(dir.path(), &env);
    // $0.90 at once: the 50 % and 80 % alerts in one commit (no day boundary in between,
    // whatever the clock); then a host condition.
    let spend = |cost: f64| {
        let r = post_json(
            &d.url("/v1/traces"),
            &json!({"provider": "openai", "model": "gpt-4o", "agent_id": "main",
                    "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": cost}),
        );
        assert_eq!(r.status(), 202);
    };
    spend(0.9);
    wait_for(
        "the budget alerts everywhere",
        Duration::from_secs(20),
        || {
            [&fake.slack, &fake.discord, &fake.telegram, &fake.webhook]
                .iter()
                .all(|s| s.lock().unwrap().bodies.len() == 2)
        },
    );
    // Two rate-limited calls: the host's llm_rate_limited condition opens.
    let limited: Vec<Value> = (0..2)
        .map(|_| {
            json!({"provider": "openai", "model": "gpt-4o", "agent_id": "main",
            "status": "error", "error_type": "rate_limit_exceeded <!channel> & @everyone",
            "metadata": {"http.status_code": 429}})
        })
        .collect();
    assert_eq!(
        post_json(&d.url("/v1/traces"), &json!(limited)).status(),
        202
    );
    let until = Instant::now() + Duration::from_secs(30);
    wait_for("three alerts everywhere", Duration::from_secs(31), || {
        if Instant::now() > until {
            let kinds: Vec<Value> = fake
                .webhook
                .lock()
                .unwrap()
                .bodies
                .iter()
                .map(|b| b.1.clone())
                .collect();
            panic!(
                "slack {} discord {} telegram {} webhook {kinds:?}\n{}",
                fake.slack.lock().unwrap().bodies.len(),
                fake.discord.lock().unwrap().bodies.len(),
                fake.telegram.lock().unwrap().bodies.len(),
                d.logs().join("\n")
            );
        }
        [&fake.slack, &fake.discord, &fake.telegram, &fake.webhook]
            .iter()
            .all(|s| s.lock().unwrap().bodies.len() >= 3)
    });

    for s in [&fake.slack, &fake.discord, &fake.telegram, &fake.webhook] {
        let seen = s.lock().unwrap();
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    }
    // The generic webhook has the JSON; the order is the order the alerts fired.
    let kinds: Vec<String> = fake
        .webhook
        .lock()
        .unwrap()
        .bodies
        .iter()
        .map(|(_, v)| v["type"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(kinds[0], "budget_alert");
    assert!(kinds.contains(&"host_condition".to_string()), "{kinds:?}");

    let slack_texts = texts(&fake.slack, "text");
    assert!(
        slack_texts[0].starts_with(
            "*⚠️ Budget agent:main/day/usd reached 50%*\n*Spent:* $0.90\n*Limit:* $1.00"
        ),
        "{slack_texts:?}"
    );
    let host = slack_texts
        .iter()
        .find(|t| t.contains("llm_rate_limited"))
        .expect("host alert on Slack");
    assert!(!host.contains("<!channel>"), "{host}");
    let discord_texts = texts(&fake.discord, "content");
    assert!(
        discord_texts[0].starts_with("**⚠️ Budget agent:main/day/usd reached 50%**"),
        "{discord_texts:?}"
    );
    assert!(
        discord_texts
            .iter()
            .any(|t| t.contains("llm\\_rate\\_limited")),
        "{discord_texts:?}"
    );
    let tg = texts(&fake.telegram, "text");
    assert!(
        tg[0].starts_with("<b>⚠️ Budget agent:main/day/usd reached 50%</b>\n<b>Spent:</b> $0.90"),
        "{tg:?}"
    );
    assert!(tg.iter().all(|t| !t.contains("<!channel>")), "{tg:?}");
    // Retried after the 429 and the 502, each alert delivered once.
    for s in [&fake.discord, &fake.telegram] {
        let seen = s.lock().unwrap();
        assert!(seen.attempts > seen.bodies.len() as u32);
    }

    // Every destination is past every alert: the queue is empty.
    let outbox = |d: &Daemon| count(&d.db_path, "SELECT count(*) FROM alert_outbox");
    wait_for("the queue to empty", Duration::from_secs(10), || {
        outbox(&d) == 0
    });
    let logs = d.logs().join("\n");
    assert!(!logs.contains("SECRETtoken"), "the bot token is in the log");
    assert!(
        logs.contains("telegram 127.0.0.1 chat -1001234567890"),
        "the log names the destination"
    );
    assert!(d.stop().success());

    // After a restart nothing is sent again.
    let before: Vec<usize> = [&fake.slack, &fake.discord, &fake.telegram, &fake.webhook]
        .iter()
        .map(|s| s.lock().unwrap().bodies.len())
        .collect();
    let mut d = Daemon::start_in(dir.path(), &env);
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<usize> = [&fake.slack, &fake.discord, &fake.telegram, &fake.webhook]
        .iter()
        .map(|s| s.lock().unwrap().bodies.len())
        .collect();
    assert_eq!(before, after);
    assert!(d.stop().success());
}

#[test]
fn a_telegram_token_without_a_chat_or_a_bad_token_is_refused_without_echoing_it() {
    let d = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("HOME", d.path())
        .env("OCT_DB_PATH", d.path().join("t.db"))
        .env("OCT_ALERT_TELEGRAM_BOT_TOKEN", "not a token SECRETtoken")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OCT_ALERT_TELEGRAM_BOT_TOKEN"), "{err}");
    assert!(!err.contains("SECRETtoken"), "{err}");

    let mut d2 = std::process::Command::new(BIN)
        .env_clear()
        .env("HOME", d.path())
        .env("OCT_DB_PATH", d.path().join("t.db"))
        .env("OCT_PORT", "0")
        .env("OCT_OTLP_HTTP_ADDR", "off")
        .env("OCT_OTLP_GRPC_ADDR", "off")
        .env("OCT_ALERT_TELEGRAM_BOT_TOKEN", BOT_TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = d2.wait().unwrap();
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(d2.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("OCT_ALERT_TELEGRAM_CHAT_ID"), "{err}");
    assert!(!err.contains("SECRETtoken"), "{err}");
}
