//! Block device I/O from `/proc/diskstats`: bytes and operations per direction,
//! as running totals (rates per second come from the query's `rate`).

use serde_json::json;

use super::procfs::{self, read_into};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};

#[derive(Default)]
pub struct DiskIo {
    buf: String,
    boot_ns: i64,
}

/// One whole disk's counters.
#[derive(Debug, PartialEq)]
pub struct DiskStat {
    pub device: String,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
}

/// Whole disks only (partitions would count the same bytes twice); loop and ram
/// devices are not storage.
fn is_disk(name: &str) -> bool {
    !name.starts_with("loop")
        && !name.starts_with("ram")
        && std::path::Path::new("/sys/block").join(name).exists()
}

pub fn parse_diskstats(text: &str, keep: impl Fn(&str) -> bool) -> Vec<DiskStat> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            let device = f.get(2)?.to_string();
            if !keep(&device) {
                return None;
            }
            // Sectors here are always 512 bytes, whatever the device's own size.
            Some(DiskStat {
                device,
                reads: n(3)?,
                read_bytes: n(5)? * 512,
                writes: n(7)?,
                write_bytes: n(9)? * 512,
            })
        })
        .filter(|d| d.reads + d.writes > 0)
        .collect()
}

impl Collector for DiskIo {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        if self.boot_ns == 0 {
            self.boot_ns = procfs::boot_time_ns();
        }
        read_into("/proc/diskstats", &mut self.buf).map_err(|e| match e {
            HostError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                HostError::Unavailable("/proc/diskstats does not exist".into())
            }
            e => e,
        })?;
        for d in parse_diskstats(&self.buf, is_disk) {
            let a = |dir: &str| {
                [
                    ("system.device", json!(d.device)),
                    ("disk.io.direction", json!(dir)),
                ]
            };
            s.counter(
                "system.disk.io",
                "By",
                d.read_bytes as f64,
                self.boot_ns,
                &a("read"),
            );
            s.counter(
                "system.disk.io",
                "By",
                d.write_bytes as f64,
                self.boot_ns,
                &a("write"),
            );
            s.counter(
                "system.disk.operations",
                "{operation}",
                d.reads as f64,
                self.boot_ns,
                &a("read"),
            );
            s.counter(
                "system.disk.operations",
                "{operation}",
                d.writes as f64,
                self.boot_ns,
                &a("write"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_diskstats() {
        let t = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n 254       0 vda 22265 5328 5740098 47760 12352 62925 38388264 230274 0 23368 280404\n 254 1 vda1 5 0 10 0 0 0 0 0 0 0 0\n";
        let d = parse_diskstats(t, |n| n == "vda" || n == "loop0");
        assert_eq!(d.len(), 1, "idle loop0 and the partition are left out");
        assert_eq!(d[0].read_bytes, 5740098 * 512);
        assert_eq!(d[0].writes, 12352);
    }
}
