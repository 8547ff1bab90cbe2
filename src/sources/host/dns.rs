//! DNS probes: each host resolved through the system resolver (getaddrinfo, as
//! the agent resolves it), timed. A failure or a timeout opens a condition per host.

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::detector::Condition;
use super::runner::{Collector, Shared};
use super::{HostConfig, HostError, Sample};

pub struct Dns {
    hosts: Vec<String>,
    timeout: Duration,
    /// Lookups still running from an earlier sample (getaddrinfo cannot be cancelled).
    busy: HashMap<String, Arc<AtomicBool>>,
}

impl Dns {
    pub fn new(cfg: &HostConfig) -> Self {
        Dns {
            hosts: cfg.dns_probe_hosts.clone(),
            timeout: cfg.dns_probe_timeout.max(Duration::from_millis(10)),
            busy: HashMap::new(),
        }
    }
}

/// How one lookup ended.
enum Outcome {
    Resolved(Duration),
    Failed(String),
    TimedOut,
}

impl Collector for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        if self.hosts.is_empty() {
            return Err(HostError::Unavailable(
                "no hosts in OCT_DNS_PROBE_HOSTS".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        let mut started = 0;
        for host in &self.hosts {
            let running = self
                .busy
                .get(host)
                .is_some_and(|b| b.load(Ordering::Acquire));
            if running {
                outcomes.insert(host.clone(), Outcome::TimedOut);
                continue;
            }
            let flag = Arc::new(AtomicBool::new(true));
            self.busy.insert(host.clone(), flag.clone());
            let (tx, h) = (tx.clone(), host.clone());
            let spawned = std::thread::Builder::new()
                .name("oct-dns".into())
                // getaddrinfo and NSS modules can use a lot of stack; pages not touched cost nothing.
                .stack_size(512 * 1024)
                .spawn(move || {
                    let t = Instant::now();
                    let r = (h.as_str(), 443)
                        .to_socket_addrs()
                        .map(|mut a| a.next().is_some());
                    let out = match r {
                        Ok(true) => Outcome::Resolved(t.elapsed()),
                        Ok(false) => Outcome::Failed("no addresses".into()),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    flag.store(false, Ordering::Release);
                    let _ = tx.send((h, out));
                });
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    self.busy.remove(host);
                    tracing::warn!(error = %e, "cannot start a DNS probe thread");
                }
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        for _ in 0..started {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((h, out)) => {
                    outcomes.insert(h, out);
                }
                Err(_) => break,
            }
        }
        for host in &self.hosts {
            let out = outcomes.remove(host).unwrap_or(Outcome::TimedOut);
            let q = ("dns.question.name", json!(host));
            let why = match out {
                Outcome::Resolved(d) => {
                    s.gauge("dns.lookup.duration", "s", d.as_secs_f64(), &[q]);
                    continue;
                }
                Outcome::Failed(e) => e,
                Outcome::TimedOut => format!("no answer within {:?}", self.timeout),
            };
            s.gauge(
                "dns.lookup.failures",
                "{lookup}",
                1.0,
                &[q, ("error.type", json!(why))],
            );
            s.seen.push(
                Condition::new(
                    format!("dns_failure:{host}"),
                    "dns_failure",
                    "dns",
                    format!("cannot resolve {host}: {why}"),
                )
                .attr("host", host.clone())
                .attr("error", why),
            );
        }
        Ok(())
    }
}
