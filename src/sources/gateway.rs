//! A read-only client of the OpenClaw gateway's WebSocket protocol (the one its Control
//! UI and CLI speak; port 18789 by default), hand-rolled over tokio's TCP stream: the
//! gateway is on loopback (`ws://`), and the protocol needs only text frames, so no
//! WebSocket crate is pulled in (see BENCHMARKS.md for what one would add).
//!
//! Protocol 2026.9.6 (checked against the real gateway): after the upgrade the gateway
//! sends `{"type":"event","event":"connect.challenge",...}`; the client answers
//! `{"type":"req","id","method":"connect","params":{minProtocol, maxProtocol, client{id,
//! version, platform, mode}, role:"operator", scopes:["operator.read"], auth{token}}}` and
//! gets `{"type":"res","id","ok":true,"payload":{"type":"hello-ok","protocol":4,
//! "server":{"version",...}}}`; then each method is a `req`/`res` pair (`health`,
//! `status`, `usage.cost`, `sessions.usage`, `cron.list`, `skills.status`), with `event`
//! frames in between. A wrong token answers `ok:false` (`AUTH_TOKEN_MISMATCH`) and closes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest message accepted (`skills.status` lists every bundled skill: ~100 KB).
const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad gateway URL {0:?} (expected ws://host:port)")]
    Url(String),
    #[error("cannot reach the gateway: {0}")]
    Io(#[from] std::io::Error),
    #[error("the gateway did not answer within {0:?}")]
    Timeout(Duration),
    #[error("not a WebSocket answer: {0}")]
    Handshake(String),
    #[error("the gateway closed the connection{0}")]
    Closed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The gateway refused a request: its code and message (never the token).
    #[error("{method}: {code}: {message}")]
    Refused {
        method: String,
        code: String,
        message: String,
    },
}

/// A connected, authenticated client.
pub struct GatewayClient {
    stream: TcpStream,
    next_id: u64,
    timeout: Duration,
    /// The `hello-ok` payload (protocol, server version, methods).
    pub hello: Value,
}

/// `ws://host:port[/path]` → (`host:port`, host, path).
fn parse_url(url: &str) -> Result<(String, String, String), GatewayError> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| GatewayError::Url(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(GatewayError::Url(url.to_string()));
    }
    Ok((
        authority.to_string(),
        authority.to_string(),
        path.to_string(),
    ))
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl GatewayClient {
    /// Connects, upgrades, answers the challenge with the token; fails with the gateway's
    /// own reason when it refuses.
    pub async fn connect(
        url: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<GatewayClient, GatewayError> {
        Self::connect_with_scopes(url, token, &["operator.read"], timeout).await
    }

    /// [`connect`](Self::connect), asking for `scopes` (the gateway grants a shared-token
    /// client what it asks for; methods outside them answer `MISSING_SCOPE`).
    pub async fn connect_with_scopes(
        url: &str,
        token: &str,
        scopes: &[&str],
        timeout: Duration,
    ) -> Result<GatewayClient, GatewayError> {
        let (addr, host, path) = parse_url(url)?;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| GatewayError::Timeout(timeout))??;
        let mut c = GatewayClient {
            stream,
            next_id: 0,
            timeout,
            hello: Value::Null,
        };
        let key: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            base64(&key)
        );
        c.stream.write_all(req.as_bytes()).await?;
        // The answer's head, byte by byte up to the blank line (frames may follow at once).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 << 10 {
                return Err(GatewayError::Handshake("answer head too long".into()));
            }
            let mut b = [0u8; 1];
            let n = tokio::time::timeout(timeout, c.stream.read(&mut b))
                .await
                .map_err(|_| GatewayError::Timeout(timeout))??;
            if n == 0 {
                return Err(GatewayError::Closed(" during the upgrade".into()));
            }
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        let status = head.lines().next().unwrap_or("").to_string();
        if !status.contains(" 101") {
            return Err(GatewayError::Handshake(status));
        }
        // The challenge comes first; then the connect request.
        loop {
            let f = c.read_json().await?;
            if f["type"] == "event" && f["event"] == "connect.challenge" {
                break;
            }
        }
        let params = json!({
            "minProtocol": 3,
            "maxProtocol": 4,
            "client": {"id": "cli", "version": env!("CARGO_PKG_VERSION"), "platform": std::env::consts::OS, "mode": "cli"},
            "role": "operator",
            "scopes": scopes,
            "auth": {"token": token},
        });
        c.hello = c.call("connect", params).await?;
        Ok(c)
    }

    /// One request and its answer's payload (events in between are passed over).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, GatewayError> {
        self.next_id += 1;
        let id = format!("oct-{}", self.next_id);
        let req = json!({"type": "req", "id": id, "method": method, "params": params});
        self.write_text(req.to_string().as_bytes()).await?;
        loop {
            let f = self.read_json().await?;
            if f["type"] != "res" || f["id"] != id.as_str() {
                continue;
            }
            if f["ok"] == true {
                return Ok(f["payload"].clone());
            }
            let e = &f["error"];
            return Err(GatewayError::Refused {
                method: method.to_string(),
                code: e["details"]["code"]
                    .as_str()
                    .or(e["code"].as_str())
                    .unwrap_or("error")
                    .to_string(),
                message: e["message"].as_str().unwrap_or("refused").to_string(),
            });
        }
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), GatewayError> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= u16::MAX as usize {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        // Client frames are masked (RFC 6455 5.3).
        let mask: [u8; 4] = std::array::from_fn(|_| fastrand::u8(..));
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let stream = &mut self.stream;
        tokio::time::timeout(self.timeout, stream.write_all(&f))
            .await
            .map_err(|_| GatewayError::Timeout(self.timeout))??;
        Ok(())
    }

    async fn write_text(&mut self, payload: &[u8]) -> Result<(), GatewayError> {
        self.write_frame(0x1, payload).await
    }

    /// The next whole message, as JSON (pings answered, fragments joined).
    async fn read_json(&mut self) -> Result<Value, GatewayError> {
        let mut message: Vec<u8> = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.read_exact(&mut h).await?;
            let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0f, h[1] & 0x80 != 0);
            let mut len = (h[1] & 0x7f) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                self.read_exact(&mut b).await?;
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.read_exact(&mut b).await?;
                len = u64::from_be_bytes(b);
            }
            if len as usize > MAX_MESSAGE || message.len() + len as usize > MAX_MESSAGE {
                return Err(GatewayError::Protocol(format!(
                    "message over {MAX_MESSAGE} bytes"
                )));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; len as usize];
            self.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            match opcode {
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return serde_json::from_slice(&message)
                            .map_err(|e| GatewayError::Protocol(format!("not JSON: {e}")));
                    }
                }
                0x8 => {
                    let reason = if payload.len() > 2 {
                        format!(
                            ": {} {}",
                            u16::from_be_bytes([payload[0], payload[1]]),
                            String::from_utf8_lossy(&payload[2..])
                        )
                    } else {
                        String::new()
                    };
                    return Err(GatewayError::Closed(reason));
                }
                0x9 => self.write_frame(0xA, &payload).await?,
                _ => {}
            }
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), GatewayError> {
        let t = self.timeout;
        match tokio::time::timeout(t, self.stream.read_exact(buf)).await {
            Err(_) => Err(GatewayError::Timeout(t)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(GatewayError::Closed(String::new()))
            }
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// What `openclaw-trace openclaw gateway` shows: the server, and each read-only method's
/// answer (or its error).
pub async fn snapshot(url: &str, token: &str, timeout: Duration) -> Result<Value, GatewayError> {
    let mut c = GatewayClient::connect(url, token, timeout).await?;
    let mut out = json!({
        "protocol": c.hello["protocol"],
        "server": c.hello["server"],
    });
    for m in [
        "health",
        "status",
        "usage.cost",
        "sessions.usage",
        "cron.list",
    ] {
        out[m] = match c.call(m, json!({})).await {
            Ok(v) => v,
            Err(e) => json!({"error": e.to_string()}),
        };
    }
    Ok(out)
}

/// OpenClaw's own totals (`sessions.usage`) against ours (the usage rollups) over the
/// same days: the figures side by side, the difference in percent, and whether they agree
/// within `tolerance_pct`. `ours` is the usage report over `[startDate, endDate + 1 day)`.
pub fn compare(sessions_usage: &Value, ours: &crate::analytics::usage::UsageRow) -> Value {
    let t = &sessions_usage["totals"];
    let theirs_tokens = t["totalTokens"].as_f64().unwrap_or(0.0);
    let theirs_cost = t["totalCost"].as_f64().unwrap_or(0.0);
    let our_tokens = ours.total_tokens as f64;
    let our_cost = ours.cost_usd.unwrap_or(0.0);
    let pct = |a: f64, b: f64| -> f64 {
        if a == b {
            0.0
        } else {
            100.0 * (b - a).abs() / a.abs().max(b.abs())
        }
    };
    let (tokens_pct, cost_pct) = (pct(theirs_tokens, our_tokens), pct(theirs_cost, our_cost));
    let agree = tokens_pct <= 1.0 && cost_pct <= 1.0;
    json!({
        "from": sessions_usage["startDate"],
        "to": sessions_usage["endDate"],
        "openclaw": {"total_tokens": theirs_tokens, "cost_usd": theirs_cost,
            "input_tokens": t["input"], "output_tokens": t["output"],
            "cache_read_tokens": t["cacheRead"], "cache_write_tokens": t["cacheWrite"]},
        "openclaw_trace": {"total_tokens": ours.total_tokens, "cost_usd": ours.cost_usd,
            "input_tokens": ours.input_tokens, "output_tokens": ours.output_tokens,
            "cache_read_tokens": ours.cache_read_tokens, "cache_write_tokens": ours.cache_write_tokens,
            "calls": ours.calls},
        "tokens_diff_pct": tokens_pct,
        "cost_diff_pct": cost_pct,
        "agree": agree,
        "why_they_may_differ": if agree { Value::Null } else { json!(
            "OpenClaw's sessions.usage reads its live session transcripts: it leaves out archived \
             (.reset/.deleted) sessions, turns that ended in NO_REPLY and heartbeat turns, which \
             openclaw-trace counts from the plugin; openclaw-trace counts only what it captured \
             while running (and the transcripts it read), and only its retention window's days") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_urls() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(&[0u8; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(
            parse_url("ws://127.0.0.1:18789").unwrap().0,
            "127.0.0.1:18789"
        );
        assert!(parse_url("http://x:1").is_err());
        assert!(parse_url("ws://host").is_err());
    }
}
