//! Small readers for `/proc` and `/sys` files. Read directly: one `read` per file
//! into a reused buffer is far cheaper than a general-purpose crate's parsing.

use std::io::Read;
use std::path::Path;

use super::HostError;

/// Reads a whole file into `buf` (cleared first).
pub fn read_into(path: impl AsRef<Path>, buf: &mut String) -> Result<(), HostError> {
    let path = path.as_ref();
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(buf))
        .map(|_| ())
        .map_err(|source| HostError::Read {
            path: path.display().to_string(),
            source,
        })
}

/// Reads a file holding one number (cgroup files, `/sys` attributes); `None` for `max`.
pub fn read_u64(path: impl AsRef<Path>) -> Result<Option<u64>, HostError> {
    let mut buf = String::new();
    read_into(&path, &mut buf)?;
    let t = buf.trim();
    if t == "max" {
        return Ok(None);
    }
    t.parse().map(Some).map_err(|_| HostError::Parse {
        path: path.as_ref().display().to_string(),
        what: format!("expected a number, got {t:?}"),
    })
}

/// The value after `key` in `key value` or `key: value kB` lines.
pub fn keyed_u64(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?;
        let rest = rest.strip_prefix(':').unwrap_or(rest);
        if !rest.starts_with([' ', '\t']) {
            return None;
        }
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Clock ticks per second (`USER_HZ`), the unit of `/proc/*/stat` CPU times.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

pub fn cpu_count() -> f64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0)
}

/// Seconds since boot, from `/proc/uptime` (10 ms resolution).
pub fn uptime_secs() -> Option<f64> {
    let mut buf = String::new();
    read_into("/proc/uptime", &mut buf).ok()?;
    buf.split_whitespace().next()?.parse().ok()
}

/// When a process started, in unix nanoseconds. Measured as its age on the
/// uptime clock, so it is as precise as `/proc/uptime` (`btime` is whole seconds).
pub fn process_start_ns(start_ticks: u64, now_ns: i64) -> i64 {
    let started = start_ticks as f64 / clock_ticks();
    match uptime_secs() {
        Some(up) => now_ns - ((up - started).max(0.0) * 1e9) as i64,
        None => boot_time_ns() + (started * 1e9) as i64,
    }
}

/// The boot time in unix nanoseconds (`btime` of `/proc/stat`).
pub fn boot_time_ns() -> i64 {
    let mut buf = String::new();
    if read_into("/proc/stat", &mut buf).is_err() {
        return 0;
    }
    keyed_u64(&buf, "btime").map_or(0, |s| s as i64 * 1_000_000_000)
}

/// The parts of `/proc/<pid>/stat` the collectors use.
#[derive(Clone, Debug, PartialEq)]
pub struct PidStat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
    /// Start time after boot, in clock ticks: with the pid, identifies one process.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The name is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(PidStat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        cpu_ticks: field(14)? + field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

pub fn read_pid_stat(pid: i32, buf: &mut String) -> Option<PidStat> {
    read_into(format!("/proc/{pid}/stat"), buf).ok()?;
    parse_pid_stat(buf)
}

/// Open file descriptors of a process (entries of `/proc/<pid>/fd`).
pub fn open_fds(pid: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}

/// The numeric entries of `/proc`: every process id.
pub fn pids() -> Result<Vec<i32>, HostError> {
    let dir = std::fs::read_dir("/proc").map_err(|source| HostError::Read {
        path: "/proc".into(),
        source,
    })?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(text.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_stat_with_odd_names() {
        let line = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 98765 1000000 321 18446744073709551615";
        let s = parse_pid_stat(line).unwrap();
        assert_eq!(s.comm, "my (odd) proc");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_ticks, 98765);
        assert_eq!(s.rss_pages, 321);
        assert!(parse_pid_stat("garbage").is_none());
    }

    #[test]
    fn own_stat_parses() {
        let mut buf = String::new();
        let s = read_pid_stat(std::process::id() as i32, &mut buf).unwrap();
        assert!(s.threads >= 1);
        assert!(s.rss_pages > 0);
    }

    #[test]
    fn keyed_values() {
        let t = "MemTotal:       16000 kB\nMemFree:  12 kB\nbtime 1700000000\n";
        assert_eq!(keyed_u64(t, "MemTotal"), Some(16000));
        assert_eq!(keyed_u64(t, "MemFree"), Some(12));
        assert_eq!(keyed_u64(t, "btime"), Some(1_700_000_000));
        assert_eq!(keyed_u64(t, "Mem"), None);
    }
}
