//! Bursts of rate-limited (429) or timed-out LLM calls among captured spans. A
//! write hook notes each such call as it is committed; the sampler opens a
//! condition while the window holds at least the burst count, and closes it once
//! a whole window passes without one.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::detector::Condition;
use super::runner::{Collector, Shared};
use super::{HostConfig, HostError, Sample};
use crate::model::{Record, Span, SpanKind, StatusCode};
use crate::pipeline::WriteHook;
use crate::store::write::WriteEffect;

/// Why an LLM call failed, for the two kinds that come in bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    RateLimited,
    TimedOut,
}

/// Reads the span's HTTP status, error type and status message.
pub fn classify(s: &Span) -> Option<Failure> {
    if !matches!(s.kind, SpanKind::LlmCall | SpanKind::Embedding) || s.status != StatusCode::Error {
        return None;
    }
    let http = ["http.response.status_code", "http.status_code"]
        .iter()
        .find_map(|k| match s.attributes.get(*k)? {
            Value::Number(n) => n.as_i64(),
            Value::String(t) => t.parse().ok(),
            _ => None,
        });
    if http == Some(429) {
        return Some(Failure::RateLimited);
    }
    let text = [s.error_type.as_deref(), s.status_message.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    if [
        "429",
        "rate limit",
        "rate_limit",
        "ratelimit",
        "rate-limit",
        "too many requests",
    ]
    .iter()
    .any(|k| text.contains(k))
    {
        return Some(Failure::RateLimited);
    }
    if http == Some(408)
        || http == Some(504)
        || ["timeout", "timed out", "timed_out", "deadline"]
            .iter()
            .any(|k| text.contains(k))
    {
        return Some(Failure::TimedOut);
    }
    None
}

/// Failed LLM calls seen recently, shared by the write hook and the sampler.
#[derive(Default)]
pub struct LlmFailures {
    seen: Mutex<VecDeque<(Instant, Failure, String)>>,
}

/// At most this many recent failures are remembered (a burst needs far fewer).
const SEEN_MAX: usize = 10_000;

impl WriteHook for LlmFailures {
    fn after_commit(&self, records: &[Record], effects: &[WriteEffect]) {
        let now = Instant::now();
        let mut found = Vec::new();
        for (r, effect) in records.iter().zip(effects) {
            // A span reported in pieces counts once: when it first shows the failure.
            // One that expired on arrival is old news, not a burst now.
            if *effect != WriteEffect::Expired
                && let Some(change) = effect.span_change(r)
                && change.became(|s| classify(s).is_some())
                && let Some(f) = classify(change.after)
            {
                found.push((now, f, change.after.provider.clone().unwrap_or_default()));
            }
        }
        if found.is_empty() {
            return;
        }
        if let Ok(mut q) = self.seen.lock() {
            q.extend(found);
            while q.len() > SEEN_MAX {
                q.pop_front();
            }
        }
    }
}

pub struct LlmBursts {
    failures: Arc<LlmFailures>,
    count: usize,
    window: Duration,
}

impl LlmBursts {
    pub fn new(cfg: &HostConfig, failures: Arc<LlmFailures>) -> Self {
        LlmBursts {
            failures,
            count: cfg.llm_burst_count as usize,
            window: cfg.llm_burst_window,
        }
    }
}

impl Collector for LlmBursts {
    fn name(&self) -> &'static str {
        "llm"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        let now = Instant::now();
        let Ok(mut q) = self.failures.seen.lock() else {
            return Ok(());
        };
        while q
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > self.window)
        {
            q.pop_front();
        }
        for (kind, name, what) in [
            (
                Failure::RateLimited,
                "llm_rate_limited",
                "rate-limited (429)",
            ),
            (Failure::TimedOut, "llm_timeouts", "timed-out"),
        ] {
            let recent: Vec<&String> = q
                .iter()
                .filter(|(_, f, _)| *f == kind)
                .map(|(_, _, p)| p)
                .collect();
            let key = format!("{name}:burst");
            // Open at the burst count; stay open until a window passes with none.
            let open =
                recent.len() >= self.count || (!recent.is_empty() && s.active.contains(&key));
            if !open {
                continue;
            }
            let providers: BTreeSet<&str> = recent
                .iter()
                .map(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .collect();
            s.seen.push(
                Condition::new(
                    key,
                    name,
                    "llm",
                    format!(
                        "{} {what} LLM calls in the last {:?} (providers: {})",
                        recent.len(),
                        self.window,
                        if providers.is_empty() {
                            "unknown".into()
                        } else {
                            providers.into_iter().collect::<Vec<_>>().join(", ")
                        }
                    ),
                )
                .attr("calls", recent.len())
                .attr("window_seconds", json!(self.window.as_secs_f64())),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};

    fn span(status: StatusCode, error_type: Option<&str>, msg: Option<&str>) -> Span {
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "chat x".into(),
            SpanKind::LlmCall,
            0,
        );
        s.status = status;
        s.error_type = error_type.map(String::from);
        s.status_message = msg.map(String::from);
        s
    }

    #[test]
    fn classifies_rate_limits_and_timeouts() {
        assert_eq!(
            classify(&span(StatusCode::Error, Some("RateLimitError"), None)),
            Some(Failure::RateLimited)
        );
        assert_eq!(
            classify(&span(StatusCode::Error, Some("AuthError"), None)),
            None
        );
        assert_eq!(
            classify(&span(StatusCode::Error, Some("rate_limit_exceeded"), None)),
            Some(Failure::RateLimited)
        );
        assert_eq!(
            classify(&span(
                StatusCode::Error,
                None,
                Some("HTTP 429 Too Many Requests")
            )),
            Some(Failure::RateLimited)
        );
        assert_eq!(
            classify(&span(StatusCode::Error, Some("timeout"), None)),
            Some(Failure::TimedOut)
        );
        assert_eq!(classify(&span(StatusCode::Ok, Some("timeout"), None)), None);
        let mut s = span(StatusCode::Error, None, None);
        s.attributes
            .insert("http.response.status_code".into(), json!(429));
        assert_eq!(classify(&s), Some(Failure::RateLimited));
    }
}
