//! Delivery rules every sink shares: how an answer is classified, how long to
//! wait before the next try, and how secrets are kept out of logs and errors.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The longest `Retry-After` honoured; a remote asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What one attempt to send a batch came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again later: a network error, a timeout, 408, 429 or 5xx.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// This batch is refused (400, 413, 422, ...): split it to find the records at fault.
    Reject {
        status: u16,
        reason: String,
    },
    /// The remote refuses everything (401, 403, 404, 405, 407, 410): no record is at
    /// fault, so nothing is dead-lettered; the sink backs off and reports it.
    Refused {
        status: u16,
        reason: String,
    },
}

/// Classifies an HTTP answer.
pub fn classify_http(status: u16, retry_after: Option<Duration>, body: &str) -> Attempt {
    let reason = || {
        let snippet: String = body.chars().take(200).collect();
        let snippet = snippet.trim();
        if snippet.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {snippet}")
        }
    };
    match status {
        200..=299 => Attempt::Delivered,
        408 | 429 | 500..=599 => Attempt::Retry {
            reason: reason(),
            retry_after,
        },
        401 | 403 | 404 | 405 | 407 | 410 => Attempt::Refused {
            status,
            reason: reason(),
        },
        400..=499 => Attempt::Reject {
            status,
            reason: reason(),
        },
        // 1xx and redirects not followed: the endpoint is wrong, not the data.
        _ => Attempt::Refused {
            status,
            reason: reason(),
        },
    }
}

/// Classifies a transport failure (connection refused, reset, timeout, ...).
pub fn classify_reqwest(err: reqwest::Error) -> Attempt {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    // The URL is dropped from the message: it may carry a token.
    let err = err.without_url();
    let mut reason = format!("{kind}: {err}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Attempt::Retry {
        reason,
        retry_after: None,
    }
}

/// `Retry-After` as seconds or as an HTTP date.
/// A remote's answer as the sinks judge it: status, `Retry-After`, and the body of a failure.
pub async fn read_answer(resp: reqwest::Response) -> (u16, Option<Duration>, String) {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let text = if (200..300).contains(&status) {
        String::new()
    } else {
        resp.text().await.unwrap_or_default()
    };
    (status, retry_after, text)
}

pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let when =
        time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(when.unix_timestamp().max(0) as u64);
    Some(
        when.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// Exponential backoff with full jitter that keeps growing across cycles while
/// the remote stays down, and starts over after a success.
pub struct Backoff {
    builder: ExponentialBuilder,
    current: ExponentialBackoff,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        let max = max.max(initial);
        let builder = ExponentialBuilder::default()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Backoff {
            current: builder.build(),
            builder,
            max,
            failures: 0,
        }
    }

    /// After a success: the next failure waits the initial delay again.
    pub fn reset(&mut self) {
        self.current = self.builder.build();
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait before the next try: uniform in [0, envelope], never less than `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let envelope = self.current.next().unwrap_or(self.max);
        let jittered = envelope.mul_f64(fastrand::f64());
        jittered.max(retry_after.unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
    }
}

/// Query parameters whose values are secrets, by a part of their name.
const SECRET_PARAM_HINTS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "auth",
    "sig",
    "credential",
    "session",
    "code",
];

/// The same mask as everywhere else (`crate::redact`), so logs read alike.
pub const REDACTED: &str = crate::redact::MASK;

/// A URL fit for a log line: secret query values and any userinfo password replaced.
/// Also libpq's `key=value` form (`host=db user=oct password=…`), secret values replaced.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") && url.contains('=') {
        return url
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_string(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAM_HINTS.iter().any(|h| n.contains(h))
}

/// Replaces every known secret in text bound for a log line, an error or /health.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Secrets are the token, header values, and secret values in the URLs' queries or userinfo.
    pub fn new(urls: &[&str], tokens: &[&str], headers: &[(String, String)]) -> Self {
        let mut secrets: Vec<String> = Vec::new();
        for url in urls {
            if let Some((_, q)) = url.split_once('?') {
                for pair in q.split('&') {
                    if let Some((k, v)) = pair.split_once('=')
                        && is_secret_name(k)
                    {
                        secrets.push(v.to_string());
                    }
                }
            }
            if let Some((_, rest)) = url.split_once("://")
                && let Some((userinfo, _)) = rest.split('/').next().unwrap_or("").rsplit_once('@')
                && let Some((_, pass)) = userinfo.split_once(':')
            {
                secrets.push(pass.to_string());
            }
        }
        secrets.extend(tokens.iter().map(|t| t.to_string()));
        for (_, v) in headers {
            secrets.push(v.clone());
            // "Bearer abc" and "Basic abc": the credential alone may show up too.
            if let Some((_, cred)) = v.split_once(' ') {
                secrets.push(cred.to_string());
            }
        }
        // Very short values would blank out ordinary words.
        secrets.retain(|s| s.len() >= 4);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Parses `k1=v1,k2=v2` (the `OTEL_EXPORTER_OTLP_HEADERS` form; values may be %-encoded).
pub fn parse_headers(v: &str) -> Result<Vec<(String, String)>, String> {
    let pairs = parse_pairs(v)?;
    for (k, _) in &pairs {
        if !k
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(format!("{k:?} is not a valid header name"));
        }
    }
    Ok(pairs)
}

/// Parses `k1=v1,k2=v2` (the `OTEL_RESOURCE_ATTRIBUTES` form; values may be %-encoded).
pub fn parse_pairs(v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, val) = part.split_once('=').ok_or_else(|| {
            format!("expected name=value pairs separated by commas, got {part:?}")
        })?;
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("empty name in {part:?}"));
        }
        out.push((k.to_string(), crate::util::percent_decode(val.trim())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_rules() {
        assert_eq!(classify_http(204, None, ""), Attempt::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify_http(s, None, ""), Attempt::Retry { .. }),
                "{s}"
            );
        }
        for s in [400, 413, 422] {
            assert!(
                matches!(classify_http(s, None, ""), Attempt::Reject { .. }),
                "{s}"
            );
        }
        for s in [401, 403, 404] {
            assert!(
                matches!(classify_http(s, None, ""), Attempt::Refused { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn backoff_grows_is_jittered_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut biggest = Duration::ZERO;
        for _ in 0..50 {
            let d = b.next_delay(None);
            assert!(d <= Duration::from_secs(1));
            biggest = biggest.max(d);
        }
        assert!(biggest > Duration::from_millis(200));
        assert_eq!(b.failures(), 50);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert!(b.next_delay(None) <= Duration::from_millis(100));
        assert!(b.next_delay(Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[test]
    fn urls_and_text_are_redacted() {
        let url = "https://user:pw123@ex.com/ingest?x=1&token=s3cret&api_key=k9k9";
        let r = redact_url(url);
        assert_eq!(
            r,
            "https://user:[REDACTED]@ex.com/ingest?x=1&token=[REDACTED]&api_key=[REDACTED]"
        );
        assert_eq!(
            redact_url("host=db.internal user=oct password=pw123 dbname=oct sslmode=require"),
            "host=db.internal user=oct password=[REDACTED] dbname=oct sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://oct:pw123@db:5432/oct?sslmode=require"),
            "postgres://oct:[REDACTED]@db:5432/oct?sslmode=require"
        );
        let red = Redactor::new(
            &[url],
            &["tok-abcdef"],
            &[("Authorization".into(), "Basic dXNlcjpw".into())],
        );
        let msg = format!("failed {url} with tok-abcdef and dXNlcjpw");
        let out = red.redact(&msg);
        for s in ["s3cret", "k9k9", "pw123", "tok-abcdef", "dXNlcjpw"] {
            assert!(!out.contains(s), "{out}");
        }
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers("Authorization=Basic%20abc, x-team = a").unwrap();
        assert_eq!(h[0], ("Authorization".into(), "Basic abc".into()));
        assert_eq!(h[1], ("x-team".into(), "a".into()));
        assert!(parse_headers("nope").is_err());
        assert!(parse_headers("bad name=1").is_err());
    }
}
