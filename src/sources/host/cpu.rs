//! Host CPU: time per mode (from `/proc/stat`), utilization between samples, load average.

use serde_json::json;

use super::procfs::{self, read_into};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};

/// `/proc/stat`'s first line, in the order of its columns (guest time is already in user).
const MODES: &[&str] = &[
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

#[derive(Default)]
pub struct Cpu {
    buf: String,
    /// Busy and total ticks at the last sample.
    last: Option<(u64, u64)>,
    boot_ns: i64,
}

/// The aggregate `cpu` line's ticks per mode.
pub fn parse_cpu_line(stat: &str) -> Option<Vec<u64>> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(MODES.len())
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    (ticks.len() >= 4).then_some(ticks)
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        if self.boot_ns == 0 {
            self.boot_ns = procfs::boot_time_ns();
        }
        read_into("/proc/stat", &mut self.buf)?;
        let ticks = parse_cpu_line(&self.buf).ok_or_else(|| HostError::Parse {
            path: "/proc/stat".into(),
            what: "no aggregate cpu line".into(),
        })?;
        let hz = procfs::clock_ticks();
        for (mode, t) in MODES.iter().zip(&ticks) {
            s.counter(
                "system.cpu.time",
                "s",
                *t as f64 / hz,
                self.boot_ns,
                &[("cpu.mode", json!(mode))],
            );
        }
        let total: u64 = ticks.iter().sum();
        let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
        let busy = total.saturating_sub(idle);
        if let Some((last_busy, last_total)) = self.last
            && total > last_total
        {
            let u = busy.saturating_sub(last_busy) as f64 / (total - last_total) as f64;
            s.gauge("system.cpu.utilization", "1", u.clamp(0.0, 1.0), &[]);
        }
        self.last = Some((busy, total));
        s.gauge(
            "system.cpu.logical.count",
            "{cpu}",
            procfs::cpu_count(),
            &[],
        );
        read_into("/proc/loadavg", &mut self.buf)?;
        let loads: Vec<f64> = self
            .buf
            .split_whitespace()
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        for (name, v) in ["1m", "5m", "15m"].iter().zip(loads) {
            s.gauge(
                &format!("system.cpu.load_average.{name}"),
                "{thread}",
                v,
                &[],
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_aggregate_line() {
        let t = "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 5 0 2 50 1 0 0 0 0 0\n";
        assert_eq!(parse_cpu_line(t).unwrap(), vec![10, 1, 5, 100, 2, 0, 1, 0]);
        assert!(parse_cpu_line("intr 1 2").is_none());
    }
}
