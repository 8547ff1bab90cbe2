//! The container's cgroup (v2, or v1's memory and cpu controllers): memory usage
//! against its limit, CPU usage against its quota, and OOM kills inside it.

use std::path::{Path, PathBuf};

use super::detector::{Condition, instant};
use super::procfs::{self, keyed_u64, read_into, read_u64};
use super::runner::{Collector, Shared};
use super::{HostError, Sample};

/// Where a process's cgroup accounting lives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CgroupDirs {
    /// The unified (v2) directory, when memory is accounted there.
    pub v2: Option<PathBuf>,
    /// v1's memory controller directory.
    pub memory_v1: Option<PathBuf>,
    /// v1's cpuacct controller directory.
    pub cpu_v1: Option<PathBuf>,
    /// The cgroup path as the process sees it (`/` is the root: no container).
    pub memory_path: String,
    pub cpu_path: String,
}

/// Reads `/proc/<pid>/cgroup` and finds the matching directories under /sys/fs/cgroup.
pub fn locate(pid: &str) -> Option<CgroupDirs> {
    let mut text = String::new();
    read_into(format!("/proc/{pid}/cgroup"), &mut text).ok()?;
    locate_in(&text, Path::new("/sys/fs/cgroup"))
}

fn locate_in(text: &str, root: &Path) -> Option<CgroupDirs> {
    let mut out = CgroupDirs::default();
    let dir = |mount: PathBuf, path: &str| {
        let d = mount.join(path.trim_start_matches('/'));
        // Inside a cgroup namespace the mount's root is our own cgroup.
        if d.is_dir() { d } else { mount }
    };
    let mut v2_path = None;
    let (mut mem_v1_path, mut cpu_v1_path) = (None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            let mount = if root.join("cgroup.controllers").exists() {
                root.to_path_buf()
            } else {
                root.join("unified")
            };
            let d = dir(mount, path);
            if d.join("memory.current").exists() || d.join("cpu.stat").exists() {
                v2_path = Some(path.to_string());
                out.v2 = Some(d);
            }
            continue;
        }
        let names: Vec<&str> = ctrls.split(',').collect();
        let mount = |c: &str| {
            [root.join(ctrls), root.join(c)]
                .into_iter()
                .find(|m| m.is_dir())
        };
        if names.contains(&"memory")
            && let Some(m) = mount("memory")
        {
            out.memory_v1 = Some(dir(m, path));
            mem_v1_path = Some(path.to_string());
        }
        if names.contains(&"cpuacct")
            && let Some(m) = mount("cpuacct")
        {
            out.cpu_v1 = Some(dir(m, path));
            cpu_v1_path = Some(path.to_string());
        }
    }
    // On a hybrid host the v1 controllers hold the accounting; prefer them.
    let v2_has = |f: &str| out.v2.as_ref().is_some_and(|d| d.join(f).exists());
    let (mem_v2, cpu_v2) = (v2_has("memory.current"), v2_has("cpu.stat"));
    out.memory_path = mem_v1_path
        .filter(|_| !mem_v2)
        .or_else(|| v2_path.clone().filter(|_| mem_v2))
        .unwrap_or_else(|| "/".into());
    out.cpu_path = cpu_v1_path
        .filter(|_| !cpu_v2)
        .or_else(|| v2_path.clone().filter(|_| cpu_v2))
        .unwrap_or_else(|| "/".into());
    if mem_v2 {
        out.memory_v1 = None;
    }
    if cpu_v2 {
        out.cpu_v1 = None;
    }
    (out.v2.is_some() || out.memory_v1.is_some() || out.cpu_v1.is_some()).then_some(out)
}

impl CgroupDirs {
    /// Memory in use and the limit (`None`: unlimited).
    pub fn memory(&self) -> Option<(u64, Option<u64>)> {
        if let Some(d) = &self.v2
            && let Ok(Some(used)) = read_u64(d.join("memory.current"))
        {
            return Some((used, read_u64(d.join("memory.max")).ok().flatten()));
        }
        let d = self.memory_v1.as_ref()?;
        let used = read_u64(d.join("memory.usage_in_bytes")).ok()??;
        // v1 says "no limit" with a number near 2^63.
        let limit = read_u64(d.join("memory.limit_in_bytes"))
            .ok()
            .flatten()
            .filter(|l| *l < 1 << 62);
        Some((used, limit))
    }

    /// The cgroup's OOM kills so far, with the directory that counts them.
    pub fn oom_kills(&self) -> Option<(PathBuf, u64)> {
        let mut buf = String::new();
        if let Some(d) = &self.v2
            && read_into(d.join("memory.events"), &mut buf).is_ok()
        {
            return Some((d.clone(), keyed_u64(&buf, "oom_kill")?));
        }
        let d = self.memory_v1.as_ref()?;
        read_into(d.join("memory.oom_control"), &mut buf).ok()?;
        Some((d.clone(), keyed_u64(&buf, "oom_kill")?))
    }

    /// CPU time used, in nanoseconds.
    pub fn cpu_ns(&self) -> Option<u64> {
        let mut buf = String::new();
        if let Some(d) = &self.v2
            && read_into(d.join("cpu.stat"), &mut buf).is_ok()
        {
            return keyed_u64(&buf, "usage_usec").map(|u| u * 1000);
        }
        read_u64(self.cpu_v1.as_ref()?.join("cpuacct.usage"))
            .ok()
            .flatten()
    }

    /// The CPU quota in cores (`None`: no quota).
    pub fn cpu_quota(&self) -> Option<f64> {
        let mut buf = String::new();
        if let Some(d) = &self.v2
            && read_into(d.join("cpu.max"), &mut buf).is_ok()
        {
            let mut f = buf.split_whitespace();
            let quota: f64 = f.next()?.parse().ok()?;
            let period: f64 = f.next()?.parse().ok()?;
            return (period > 0.0).then(|| quota / period);
        }
        let d = self.cpu_v1.as_ref()?;
        // cpu and cpuacct are usually mounted together; the quota sits in cpu.
        let d = [
            d.clone(),
            PathBuf::from(d.to_string_lossy().replace("cpuacct", "cpu")),
        ]
        .into_iter()
        .find(|d| d.join("cpu.cfs_quota_us").exists())?;
        read_into(d.join("cpu.cfs_quota_us"), &mut buf).ok()?;
        let quota: f64 = buf.trim().parse().ok()?;
        let period = read_u64(d.join("cpu.cfs_period_us")).ok()?? as f64;
        (quota > 0.0 && period > 0.0).then(|| quota / period)
    }
}

/// Compares a cgroup's OOM kill count with what was already reported; returns new kills.
pub fn new_oom_kills(shared: &mut Shared, dir: PathBuf, count: u64) -> u64 {
    let seen = shared.oom_reported.entry(dir).or_insert(count);
    let new = count.saturating_sub(*seen);
    *seen = count;
    new
}

#[derive(Default)]
pub struct Cgroup {
    dirs: Option<CgroupDirs>,
    last_cpu: Option<(u64, std::time::Instant)>,
}

impl Collector for Cgroup {
    fn name(&self) -> &'static str {
        "cgroup"
    }

    fn collect(&mut self, s: &mut Sample, shared: &mut Shared) -> Result<(), HostError> {
        if self.dirs.is_none() {
            let d = locate("self").ok_or_else(|| {
                HostError::Unavailable(
                    "no cgroup memory or cpu accounting found under /sys/fs/cgroup".into(),
                )
            })?;
            if d.memory_path == "/" && d.cpu_path == "/" {
                return Err(HostError::Unavailable(
                    "this process is in the root cgroup (not in a container); host figures cover it".into(),
                ));
            }
            self.dirs = Some(d);
        }
        let Some(d) = &self.dirs else { return Ok(()) };
        if d.memory_path != "/"
            && let Some((used, limit)) = d.memory()
        {
            s.gauge("container.memory.usage", "By", used as f64, &[]);
            if let Some(l) = limit {
                s.gauge("container.memory.limit", "By", l as f64, &[]);
                if l > 0 {
                    s.gauge(
                        "container.memory.utilization",
                        "1",
                        used as f64 / l as f64,
                        &[],
                    );
                }
            }
        }
        if d.cpu_path != "/"
            && let Some(ns) = d.cpu_ns()
        {
            let now = std::time::Instant::now();
            let quota = d.cpu_quota();
            s.counter(
                "container.cpu.time",
                "s",
                ns as f64 / 1e9,
                procfs::boot_time_ns(),
                &[],
            );
            if let Some(q) = quota {
                s.gauge("container.cpu.limit", "{cpu}", q, &[]);
            }
            if let Some((last_ns, at)) = self.last_cpu {
                let secs = now.duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    let cores = ns.saturating_sub(last_ns) as f64 / 1e9 / secs;
                    let of = quota.unwrap_or_else(procfs::cpu_count);
                    s.gauge("container.cpu.utilization", "1", cores / of, &[]);
                }
            }
            self.last_cpu = Some((ns, now));
        }
        if let Some((dir, count)) = d.oom_kills() {
            let new = new_oom_kills(shared, dir, count);
            if new > 0 {
                let c = Condition::new(
                    "oom_kill:container".into(),
                    "oom_kill",
                    "oom",
                    format!("the kernel killed {new} process(es) of this container for exceeding its memory limit"),
                )
                .attr("oom_kills", new)
                .attr("cgroup", d.memory_path.clone());
                s.records.push(instant("cgroup", &c, s.time_ns, s.time_ns));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("memory/app")).unwrap();
        std::fs::create_dir_all(r.join("cpu,cpuacct")).unwrap();
        std::fs::write(r.join("memory/app/memory.usage_in_bytes"), "100\n").unwrap();
        std::fs::write(
            r.join("memory/app/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        std::fs::write(
            r.join("memory/app/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        )
        .unwrap();
        let d = locate_in("4:memory:/app\n2:cpu,cpuacct:/\n0::/\n", r).unwrap();
        assert_eq!(d.memory_v1, Some(r.join("memory/app")));
        assert_eq!(d.cpu_v1, Some(r.join("cpu,cpuacct")));
        assert_eq!(d.memory(), Some((100, None)));
        assert_eq!(d.oom_kills().unwrap().1, 3);

        let root2 = tempfile::tempdir().unwrap();
        let r = root2.path();
        std::fs::write(r.join("cgroup.controllers"), "cpu memory\n").unwrap();
        std::fs::write(r.join("memory.current"), "5000\n").unwrap();
        std::fs::write(r.join("memory.max"), "10000\n").unwrap();
        std::fs::write(r.join("cpu.max"), "50000 100000\n").unwrap();
        std::fs::write(r.join("cpu.stat"), "usage_usec 42\n").unwrap();
        std::fs::write(r.join("memory.events"), "low 0\noom 1\noom_kill 1\n").unwrap();
        // In a namespace the path names a directory that is not there: the root is ours.
        let d = locate_in("0::/kubepods/x\n", r).unwrap();
        assert_eq!(d.memory(), Some((5000, Some(10000))));
        assert_eq!(d.cpu_quota(), Some(0.5));
        assert_eq!(d.cpu_ns(), Some(42_000));
        assert_eq!(d.oom_kills().unwrap().1, 1);
    }
}
