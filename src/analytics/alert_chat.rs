//! Alerts as readable messages for chat services, from the alert's JSON (the payload the
//! generic webhook gets): a title line and a few `label: value` lines.
//!
//! - Slack incoming webhook: `{"text": ...}` in Slack's mrkdwn, `&`, `<`, `>` escaped
//!   (so captured text cannot ping `<!channel>` or forge links).
//! - Discord webhook: `{"content": ..., "allowed_mentions": {"parse": []}}` (no pings),
//!   content at most 2,000 characters.
//! - Telegram `sendMessage`: `{"chat_id", "text", "parse_mode": "HTML",
//!   "disable_web_page_preview": true}`, HTML-escaped, at most 4,096 characters.

use serde_json::{Value, json};

/// A message before a service's markup: a title and labelled lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub title: String,
    pub lines: Vec<(String, String)>,
}

fn text(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

fn amount(v: f64, unit: &str) -> String {
    if unit == "usd" {
        format!("${v:.2}")
    } else {
        format!("{} tokens", v.round() as i64)
    }
}

/// The message for an alert payload (`budget_alert`, `baseline_anomaly`, `host_condition`,
/// or anything else: its type and fields).
pub fn message(alert: &Value) -> Message {
    let kind = text(alert, "type").unwrap_or_else(|| "alert".into());
    let mut lines = Vec::new();
    let mut put = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            lines.push((label.to_string(), v));
        }
    };
    let title = match kind.as_str() {
        "budget_alert" => {
            let unit = text(alert, "unit").unwrap_or_default();
            let pct = num(alert, "threshold_pct").unwrap_or(0.0);
            put("Spent", num(alert, "spent").map(|v| amount(v, &unit)));
            put("Limit", num(alert, "limit").map(|v| amount(v, &unit)));
            put("Period", text(alert, "period_key"));
            put("Agent", text(alert, "agent_id"));
            put("Time", text(alert, "time"));
            format!(
                "{} Budget {} reached {pct:.0}%",
                if pct >= 100.0 { "🛑" } else { "⚠️" },
                text(alert, "budget").unwrap_or_default()
            )
        }
        "baseline_anomaly" => {
            put("Run", text(alert, "run_id"));
            if let Some(ms) = alert.get("metrics").and_then(Value::as_array) {
                for m in ms {
                    let name = text(m, "metric").unwrap_or_default();
                    let value = num(m, "value")
                        .map(|v| format!("{v:.4}"))
                        .unwrap_or("-".into());
                    let median = num(m, "median")
                        .map(|v| format!("{v:.4}"))
                        .unwrap_or("-".into());
                    put(
                        &name,
                        Some(format!(
                            "{value} ({} the median {median})",
                            text(m, "direction").unwrap_or_else(|| "off".into())
                        )),
                    );
                }
            }
            put("Time", text(alert, "time"));
            format!(
                "📈 Unusual run of agent {}",
                text(alert, "agent_id").unwrap_or_else(|| "-".into())
            )
        }
        "host_condition" => {
            put("Message", text(alert, "message"));
            put("Category", text(alert, "category"));
            put("State", text(alert, "state"));
            put("Agent", text(alert, "agent_id"));
            put("Time", text(alert, "time"));
            format!(
                "{} Host: {}",
                match text(alert, "severity").as_deref() {
                    Some("error" | "fatal" | "critical") => "🛑",
                    _ => "⚠️",
                },
                text(alert, "name").unwrap_or_default()
            )
        }
        _ => {
            if let Some(o) = alert.as_object() {
                for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "type").take(10) {
                    put(k, text(&json!({ "v": v }), "v"));
                }
            }
            format!("openclaw-trace alert: {kind}")
        }
    };
    Message { title, lines }
}

/// Cuts `s` to at most `max` characters, marking the cut.
fn fit(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack incoming webhook body.
pub fn slack(alert: &Value) -> Value {
    let m = message(alert);
    let mut t = format!("*{}*", slack_escape(&m.title));
    for (k, v) in &m.lines {
        t.push_str(&format!("\n*{}:* {}", slack_escape(k), slack_escape(v)));
    }
    json!({ "text": fit(t, 3_000) })
}

/// Discord webhook body: no mentions whatever the text says.
pub fn discord(alert: &Value) -> Value {
    let m = message(alert);
    // Markdown characters in captured text are shown as they are.
    let esc = |s: &str| {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, '*' | '_' | '~' | '`' | '|' | '>' | '\\') {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    let mut t = format!("**{}**", esc(&m.title));
    for (k, v) in &m.lines {
        t.push_str(&format!("\n**{}:** {}", esc(k), esc(v)));
    }
    json!({ "content": fit(t, 2_000), "allowed_mentions": { "parse": [] } })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Telegram `sendMessage` body for `chat_id` (a number, or `@channel`).
pub fn telegram(chat_id: &str, alert: &Value) -> Value {
    let m = message(alert);
    let mut t = format!("<b>{}</b>", html_escape(&m.title));
    for (k, v) in &m.lines {
        t.push_str(&format!("\n<b>{}:</b> {}", html_escape(k), html_escape(v)));
    }
    // Cut before the markup could be broken: the lines' text, never a tag.
    if t.chars().count() > 4_096 {
        t = format!("<b>{}</b>", html_escape(&fit(m.title.clone(), 200)));
        for (k, v) in &m.lines {
            let line = format!(
                "\n<b>{}:</b> {}",
                html_escape(k),
                html_escape(&fit(v.clone(), 300))
            );
            if t.chars().count() + line.chars().count() > 4_096 {
                break;
            }
            t.push_str(&line);
        }
    }
    let chat = chat_id
        .parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(chat_id));
    json!({
        "chat_id": chat,
        "text": t,
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> Value {
        json!({"type": "budget_alert", "budget": "agent:main/day", "agent_id": "main",
            "period_key": "2026-12-06", "threshold_pct": 80, "unit": "usd", "limit": 5.0,
            "spent": 4.1, "time": "2026-12-06T03:00:00Z"})
    }

    #[test]
    fn budget_messages_read_well_in_each_service() {
        let s = slack(&budget());
        assert_eq!(
            s["text"],
            "*⚠️ Budget agent:main/day reached 80%*\n*Spent:* $4.10\n*Limit:* $5.00\n*Period:* 2026-12-06\n*Agent:* main\n*Time:* 2026-12-06T03:00:00Z"
        );
        let d = discord(&budget());
        assert!(
            d["content"]
                .as_str()
                .unwrap()
                .starts_with("**⚠️ Budget agent:main/day reached 80%**")
        );
        assert_eq!(d["allowed_mentions"]["parse"], json!([]));
        let t = telegram("-100123", &budget());
        assert_eq!(t["chat_id"], -100123);
        assert_eq!(t["parse_mode"], "HTML");
        assert!(t["text"].as_str().unwrap().contains("<b>Spent:</b> $4.10"));
        assert_eq!(telegram("@ops", &budget())["chat_id"], "@ops");
    }

    #[test]
    fn captured_text_cannot_ping_or_inject_markup() {
        let a = json!({"type": "host_condition", "name": "disk_full", "severity": "error",
            "message": "<!channel> @everyone <b>x</b> & *y*"});
        let s = slack(&a)["text"].as_str().unwrap().to_string();
        assert!(
            s.contains("&lt;!channel&gt; @everyone &lt;b&gt;x&lt;/b&gt; &amp;"),
            "{s}"
        );
        let t = telegram("1", &a)["text"].as_str().unwrap().to_string();
        assert!(t.contains("&lt;b&gt;x&lt;/b&gt; &amp; *y*"), "{t}");
        let d = discord(&a);
        assert!(d["content"].as_str().unwrap().contains("\\*y\\*"));
        assert_eq!(d["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn long_messages_fit_each_service() {
        let a = json!({"type": "host_condition", "name": "x", "message": "é".repeat(10_000)});
        assert!(discord(&a)["content"].as_str().unwrap().chars().count() <= 2_000);
        assert!(slack(&a)["text"].as_str().unwrap().chars().count() <= 3_000);
        let t = telegram("1", &a)["text"].as_str().unwrap().to_string();
        assert!(t.chars().count() <= 4_096);
        assert!(t.starts_with("<b>") && t.contains("</b>"));
    }
}
