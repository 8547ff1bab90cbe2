//! `openclaw-trace health`: asks the daemon at the configured address (OCT_BIND,
//! OCT_PORT) whether it is ready (`GET /ready`, which needs no token). Exit 0 when it
//! answers 200, 1 otherwise: a container's HEALTHCHECK without curl in the image.
//! Plain HTTP/1.1 over a std socket: no runtime, no name lookup.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::config::Config;
use crate::settings::parse_duration;

#[derive(Args, Debug)]
pub struct HealthArgs {
    /// The daemon's address as IP:PORT (default: OCT_BIND and OCT_PORT; 0.0.0.0 means loopback)
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<SocketAddr>,
    /// Give up after this long
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print nothing; only the exit code tells
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot reach the daemon at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon at {addr} answered {status}: {body}")]
    NotReady {
        addr: SocketAddr,
        status: String,
        body: String,
    },
    #[error("the daemon at {addr} sent no HTTP answer")]
    Garbled { addr: SocketAddr },
}

/// Asks `addr` for `/ready`; Ok when it answers 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let connect = |source| HealthError::Connect { addr, source };
    let timeout = timeout.max(Duration::from_millis(10));
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
    s.set_read_timeout(Some(timeout)).map_err(connect)?;
    s.set_write_timeout(Some(timeout)).map_err(connect)?;
    let req = format!(
        "GET /ready HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: openclaw-trace-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(connect)?;
    let mut answer = Vec::new();
    // The answer is a few dozen bytes; read at most 4 KiB of it.
    s.take(4096).read_to_end(&mut answer).map_err(connect)?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/") || code.len() != 3 {
        return Err(HealthError::Garbled { addr });
    }
    if code == "200" {
        return Ok(());
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim();
    Err(HealthError::NotReady {
        addr,
        status: status_line.trim_start_matches(proto).trim().to_string(),
        body: body.chars().take(200).collect(),
    })
}

pub fn run(cfg: &Config, a: &HealthArgs) -> ExitCode {
    let addr = a.addr.unwrap_or_else(|| cfg.api.local_addr());
    match check(addr, a.timeout) {
        Ok(()) => {
            if !a.quiet {
                println!("ready: {addr}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if !a.quiet {
                println!("not ready: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
