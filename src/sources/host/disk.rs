//! Usage and inodes of the watched paths' volumes; disk high, inodes high, disk
//! full and permission denied as conditions.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::detector::Condition;
use super::procfs::read_into;
use super::runner::{Collector, Shared};
use super::{HostConfig, HostError, Sample};

/// A volume's figures from statvfs, in bytes and inodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Volume {
    pub total: u64,
    /// Free for anyone (root included).
    pub free: u64,
    /// Free for unprivileged writers (what `df` shows as available).
    pub avail: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

impl Volume {
    pub fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
    /// Percent in use the way `df` computes it: used / (used + available).
    pub fn used_pct(&self) -> f64 {
        let denom = self.used() + self.avail;
        if denom == 0 {
            0.0
        } else {
            100.0 * self.used() as f64 / denom as f64
        }
    }
    pub fn inodes_used_pct(&self) -> Option<f64> {
        (self.inodes_total > 0).then(|| {
            100.0 * self.inodes_total.saturating_sub(self.inodes_free) as f64
                / self.inodes_total as f64
        })
    }
}

pub fn statvfs(path: &Path) -> std::io::Result<Volume> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let f = st.f_frsize as u64;
    Ok(Volume {
        total: st.f_blocks as u64 * f,
        free: st.f_bfree as u64 * f,
        avail: st.f_bavail as u64 * f,
        inodes_total: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> std::io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The mount holding a path: mount point, device and filesystem type.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub mountpoint: String,
    pub device: String,
    pub fs_type: String,
}

/// The longest mount point that is a prefix of `path`, from `/proc/self/mountinfo`.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mp = unescape(left.split_whitespace().nth(4)?);
        let mut r = right.split_whitespace();
        let (fs_type, device) = (r.next()?.to_string(), r.next()?.to_string());
        if path.starts_with(&mp) && best.as_ref().is_none_or(|b| mp.len() >= b.mountpoint.len()) {
            best = Some(Mount {
                mountpoint: mp,
                device,
                fs_type,
            });
        }
    }
    best
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b
                .get(i + 1..i + 4)
                .and_then(|o| std::str::from_utf8(o).ok())
            && let Ok(v) = u8::from_str_radix(oct, 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Disk {
    paths: Vec<PathBuf>,
    disk_threshold: f64,
    inode_threshold: f64,
    buf: String,
    /// Paths already logged as missing.
    missing: HashSet<PathBuf>,
}

impl Disk {
    pub fn new(cfg: &HostConfig, paths: Vec<PathBuf>) -> Self {
        Disk {
            paths,
            disk_threshold: cfg.disk_alert_threshold,
            inode_threshold: cfg.inode_alert_threshold,
            buf: String::new(),
            missing: HashSet::new(),
        }
    }
}

impl Collector for Disk {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, s: &mut Sample, _: &mut Shared) -> Result<(), HostError> {
        if self.paths.is_empty() {
            return Err(HostError::Unavailable("no paths to watch".into()));
        }
        read_into("/proc/self/mountinfo", &mut self.buf)?;
        let mut devices = HashSet::new();
        for path in &self.paths {
            let shown = path.display().to_string();
            let meta = match std::fs::metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    s.seen.push(denied(&shown, &e));
                    continue;
                }
                Err(e) => {
                    if self.missing.insert(path.clone()) {
                        tracing::warn!(path = %shown, error = %e, "watched path cannot be read; skipping it");
                    }
                    continue;
                }
            };
            self.missing.remove(path);
            let dir = if meta.is_dir() {
                path.as_path()
            } else {
                path.parent().unwrap_or(Path::new("/"))
            };
            if let Err(e) = writable(dir)
                && e.kind() == std::io::ErrorKind::PermissionDenied
            {
                s.seen.push(denied(&shown, &e));
            }
            // Two paths on one volume are one volume: sample it once.
            if !devices.insert(meta.dev()) {
                continue;
            }
            let v = match statvfs(path) {
                Ok(v) => v,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    s.seen.push(denied(&shown, &e));
                    continue;
                }
                Err(e) => {
                    return Err(HostError::Read {
                        path: shown,
                        source: e,
                    });
                }
            };
            let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            let m = mount_of(&self.buf, &canonical).unwrap_or(Mount {
                mountpoint: "/".into(),
                device: "unknown".into(),
                fs_type: "unknown".into(),
            });
            let base = [
                ("system.device", json!(m.device)),
                ("system.filesystem.mountpoint", json!(m.mountpoint)),
                ("system.filesystem.type", json!(m.fs_type)),
                ("oct.watch.path", json!(shown)),
            ];
            let with = |k: &'static str, v: &str| {
                let mut a = base.to_vec();
                a.push((k, json!(v)));
                a
            };
            let st = "system.filesystem.state";
            s.gauge(
                "system.filesystem.usage",
                "By",
                v.used() as f64,
                &with(st, "used"),
            );
            s.gauge(
                "system.filesystem.usage",
                "By",
                v.avail as f64,
                &with(st, "free"),
            );
            s.gauge(
                "system.filesystem.usage",
                "By",
                v.free.saturating_sub(v.avail) as f64,
                &with(st, "reserved"),
            );
            s.gauge("system.filesystem.limit", "By", v.total as f64, &base);
            s.gauge(
                "system.filesystem.utilization",
                "1",
                v.used_pct() / 100.0,
                &base,
            );
            let used_inodes = v.inodes_total.saturating_sub(v.inodes_free);
            s.gauge(
                "system.filesystem.inodes.usage",
                "{inode}",
                used_inodes as f64,
                &with(st, "used"),
            );
            s.gauge(
                "system.filesystem.inodes.usage",
                "{inode}",
                v.inodes_free as f64,
                &with(st, "free"),
            );

            let pct = v.used_pct();
            let attrs = |c: Condition| {
                c.attr("path", shown.clone())
                    .attr("mountpoint", m.mountpoint.clone())
                    .attr("used_pct", (pct * 10.0).round() / 10.0)
                    .attr("free_bytes", v.avail)
                    .attr("total_bytes", v.total)
            };
            if pct >= self.disk_threshold {
                s.seen.push(
                    attrs(Condition::new(
                        format!("disk_high:{}", m.mountpoint),
                        "disk_high",
                        "disk",
                        format!(
                            "volume {} (holding {shown}) is {pct:.1}% full (threshold {}%)",
                            m.mountpoint, self.disk_threshold
                        ),
                    ))
                    .warning(),
                );
            }
            if v.total > 0 && v.avail == 0 {
                s.seen.push(attrs(Condition::new(
                    format!("disk_full:{}", m.mountpoint),
                    "disk_full",
                    "disk",
                    format!(
                        "volume {} (holding {shown}) is full: no space left for writes",
                        m.mountpoint
                    ),
                )));
            }
            if let Some(ip) = v.inodes_used_pct()
                && ip >= self.inode_threshold
            {
                s.seen.push(attrs(Condition::new(
                    format!("inodes_high:{}", m.mountpoint),
                    "inodes_high",
                    "disk",
                    format!(
                        "volume {} (holding {shown}) has {ip:.1}% of its inodes in use (threshold {}%)",
                        m.mountpoint, self.inode_threshold
                    ),
                ))
                .attr("inodes_used_pct", (ip * 10.0).round() / 10.0));
            }
        }
        Ok(())
    }
}

fn denied(path: &str, e: &std::io::Error) -> Condition {
    Condition::new(
        format!("permission_denied:{path}"),
        "permission_denied",
        "permission",
        format!("permission denied on watched path {path}: {e}"),
    )
    .attr("path", path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_longest_mount_prefix() {
        let mi = "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
                  30 22 0:40 / /data rw - tmpfs tmpfs rw,size=4096k\n\
                  31 22 0:41 / /my\\040disk rw - xfs /dev/sdb rw\n";
        let m = mount_of(mi, Path::new("/data/x/y.db")).unwrap();
        assert_eq!(
            (m.mountpoint.as_str(), m.fs_type.as_str()),
            ("/data", "tmpfs")
        );
        assert_eq!(
            mount_of(mi, Path::new("/var/lib")).unwrap().device,
            "/dev/vda"
        );
        assert_eq!(
            mount_of(mi, Path::new("/my disk/a")).unwrap().fs_type,
            "xfs"
        );
        assert_eq!(
            mount_of(mi, Path::new("/database")).unwrap().mountpoint,
            "/"
        );
    }

    #[test]
    fn used_percent_like_df() {
        let v = Volume {
            total: 100,
            free: 10,
            avail: 5,
            inodes_total: 10,
            inodes_free: 1,
        };
        assert_eq!(v.used(), 90);
        assert!((v.used_pct() - 100.0 * 90.0 / 95.0).abs() < 1e-9);
        assert_eq!(v.inodes_used_pct(), Some(90.0));
    }
}
