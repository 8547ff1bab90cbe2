//! Network interfaces (`/proc/net/dev`): bytes, packets, errors and drops per
//! direction as running totals; TCP connections by state (`/proc/net/tcp{,6}`).

use serde_json::json;

use super::procfs::{self, read_into};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};

#[derive(Default)]
pub struct Network {
    buf: String,
    boot_ns: i64,
}

/// One interface's counters: receive then transmit.
#[derive(Debug, PartialEq)]
pub struct IfStat {
    pub name: String,
    /// bytes, packets, errors, drops
    pub rx: [u64; 4],
    pub tx: [u64; 4],
}

pub fn parse_net_dev(text: &str) -> Vec<IfStat> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 16 {
                return None;
            }
            Some(IfStat {
                name: name.trim().to_string(),
                rx: [f[0], f[1], f[2], f[3]],
                tx: [f[8], f[9], f[10], f[11]],
            })
        })
        .collect()
}

/// TCP states as `/proc/net/tcp` numbers them, named as OpenTelemetry does.
const TCP_STATES: &[&str] = &[
    "",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait_1",
    "fin_wait_2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

/// Adds the connections of one `/proc/net/tcp`-format table to `counts`.
pub fn count_tcp(text: &str, counts: &mut [u64; 12]) {
    for l in text.lines().skip(1) {
        if let Some(st) = l.split_whitespace().nth(3)
            && let Ok(i) = usize::from_str_radix(st, 16)
            && (1..12).contains(&i)
        {
            counts[i] += 1;
        }
    }
}

impl Collector for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        if self.boot_ns == 0 {
            self.boot_ns = procfs::boot_time_ns();
        }
        read_into("/proc/net/dev", &mut self.buf)?;
        let names = [
            ("system.network.io", "By"),
            ("system.network.packets", "{packet}"),
            ("system.network.errors", "{error}"),
            ("system.network.dropped", "{packet}"),
        ];
        for i in parse_net_dev(&self.buf) {
            // Interfaces that never carried anything (down tunnels, ifb) are noise.
            if i.rx[1] + i.tx[1] == 0 {
                continue;
            }
            for (k, (name, unit)) in names.iter().enumerate() {
                for (dir, v) in [("receive", i.rx[k]), ("transmit", i.tx[k])] {
                    // Errors and drops are stored from their first occurrence on
                    // (a missing series is zero): most interfaces never have any.
                    if k >= 2 && v == 0 {
                        continue;
                    }
                    s.counter(
                        name,
                        unit,
                        v as f64,
                        self.boot_ns,
                        &[
                            ("network.interface.name", json!(i.name)),
                            ("network.io.direction", json!(dir)),
                        ],
                    );
                }
            }
        }
        let mut counts = [0u64; 12];
        let mut any = false;
        for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if read_into(f, &mut self.buf).is_ok() {
                any = true;
                count_tcp(&self.buf, &mut counts);
            }
        }
        if any {
            for (i, n) in counts.iter().enumerate().skip(1) {
                // The common states always, so their series have no gaps; the rest when present.
                if *n > 0 || matches!(i, 1 | 6 | 8 | 10) {
                    s.gauge(
                        "system.network.connections",
                        "{connection}",
                        *n as f64,
                        &[
                            ("network.transport", json!("tcp")),
                            ("network.connection.state", json!(TCP_STATES[i])),
                        ],
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_net_dev_and_tcp() {
        let t = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 5000 40 1 2 0 0 0 0 7000 50 3 4 0 0 0 0\n";
        let v = parse_net_dev(t);
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].name, "eth0");
        assert_eq!(v[1].rx, [5000, 40, 1, 2]);
        assert_eq!(v[1].tx, [7000, 50, 3, 4]);
        let tcp = "  sl  local_address rem_address   st\n   0: 0100007F:1F90 00000000:0000 0A 0\n   1: 0100007F:1F90 0100007F:D2F0 01 0\n";
        let mut c = [0; 12];
        count_tcp(tcp, &mut c);
        assert_eq!((c[10], c[1]), (1, 1));
    }
}
