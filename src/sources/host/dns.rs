//! DNS probes: each host resolved through the name servers of `/etc/resolv.conf`
//! (and `/etc/hosts`), with the cache off so every sample asks, timed. A failure
//! or a timeout opens a condition per host. The resolver is hickory's (see
//! `util::dns`), so probes need no C library resolver and are cancelled on timeout.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use serde_json::json;

use super::detector::Condition;
use super::runner::{Collector, Shared};
use super::{HostConfig, HostError, Sample};

pub struct Dns {
    hosts: Vec<String>,
    timeout: Duration,
    /// A small runtime of its own (the sampling thread is not async), made on first use.
    rt: Option<(tokio::runtime::Runtime, TokioResolver)>,
}

impl Dns {
    pub fn new(cfg: &HostConfig) -> Self {
        Dns {
            hosts: cfg.dns_probe_hosts.clone(),
            timeout: cfg.dns_probe_timeout.max(Duration::from_millis(10)),
            rt: None,
        }
    }
}

/// How one lookup ended.
enum Outcome {
    Resolved(Duration),
    Failed(String),
    TimedOut,
}

async fn probe(r: &TokioResolver, host: &str, timeout: Duration) -> Outcome {
    let t = Instant::now();
    match tokio::time::timeout(timeout, r.lookup_ip(host)).await {
        Err(_) => Outcome::TimedOut,
        Ok(Ok(found)) if found.iter().next().is_some() => Outcome::Resolved(t.elapsed()),
        Ok(Ok(_)) => Outcome::Failed("no addresses".into()),
        Ok(Err(e)) if e.is_nx_domain() => Outcome::Failed("no such host".into()),
        Ok(Err(e)) if e.is_no_records_found() => Outcome::Failed("no addresses".into()),
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
    }
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
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| HostError::Unavailable(format!("cannot start DNS probes: {e}")))?;
            let resolver = {
                let _in = rt.enter();
                crate::util::dns::resolver(false)
            };
            self.rt = Some((rt, resolver));
        }
        let Some((rt, resolver)) = &self.rt else {
            return Ok(());
        };
        let timeout = self.timeout;
        let found = rt.block_on(futures_util::future::join_all(
            self.hosts.iter().map(|h| probe(resolver, h, timeout)),
        ));
        let mut outcomes: HashMap<String, Outcome> =
            self.hosts.iter().cloned().zip(found).collect();
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
