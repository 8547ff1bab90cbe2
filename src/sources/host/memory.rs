//! Host memory and swap, from `/proc/meminfo`.

use serde_json::json;

use super::procfs::{keyed_u64, read_into};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};

#[derive(Default)]
pub struct Memory {
    buf: String,
}

/// Bytes per state the way `free` and OpenTelemetry's hostmetrics count them.
#[derive(Debug, PartialEq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    /// Page cache plus reclaimable slab.
    pub cached: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    pub fn used(&self) -> u64 {
        self.total
            .saturating_sub(self.free + self.buffers + self.cached)
    }
}

pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let kb = |k: &str| keyed_u64(text, k).map(|v| v * 1024);
    let free = kb("MemFree")?;
    Some(MemInfo {
        total: kb("MemTotal")?,
        free,
        // Kernels before 3.14 lack MemAvailable; free is the closest lower bound.
        available: kb("MemAvailable").unwrap_or(free),
        buffers: kb("Buffers").unwrap_or(0),
        cached: kb("Cached").unwrap_or(0) + kb("SReclaimable").unwrap_or(0),
        swap_total: kb("SwapTotal").unwrap_or(0),
        swap_free: kb("SwapFree").unwrap_or(0),
    })
}

impl Collector for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        read_into("/proc/meminfo", &mut self.buf)?;
        let m = parse_meminfo(&self.buf).ok_or_else(|| HostError::Parse {
            path: "/proc/meminfo".into(),
            what: "no MemTotal/MemFree".into(),
        })?;
        let state = |v: &str| [("system.memory.state", json!(v))];
        s.gauge("system.memory.usage", "By", m.used() as f64, &state("used"));
        s.gauge("system.memory.usage", "By", m.free as f64, &state("free"));
        s.gauge(
            "system.memory.usage",
            "By",
            m.buffers as f64,
            &state("buffers"),
        );
        s.gauge(
            "system.memory.usage",
            "By",
            m.cached as f64,
            &state("cached"),
        );
        s.gauge("system.memory.limit", "By", m.total as f64, &[]);
        s.gauge(
            "system.linux.memory.available",
            "By",
            m.available as f64,
            &[],
        );
        if m.total > 0 {
            s.gauge(
                "system.memory.utilization",
                "1",
                m.used() as f64 / m.total as f64,
                &state("used"),
            );
        }
        let swap_used = m.swap_total.saturating_sub(m.swap_free);
        let paging = |v: &str| [("system.paging.state", json!(v))];
        s.gauge(
            "system.paging.usage",
            "By",
            swap_used as f64,
            &paging("used"),
        );
        s.gauge(
            "system.paging.usage",
            "By",
            m.swap_free as f64,
            &paging("free"),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let t = "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 300 kB\nSReclaimable: 20 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        let m = parse_meminfo(t).unwrap();
        assert_eq!(m.available, 600 * 1024);
        assert_eq!(m.cached, 320 * 1024);
        assert_eq!(m.used(), (1000 - 100 - 50 - 320) * 1024);
    }
}
