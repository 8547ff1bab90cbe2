//! Small helpers shared by every component.
pub mod digest;
pub mod dns;
pub mod duration;
pub mod fast_hash;
pub mod heap;
pub mod hex;
pub mod listen;
pub mod time;

/// Lowers the calling thread's priority by `nice` (0: unchanged; on Linux a nice value
/// is per thread), so background work gives way to capture on a small machine.
pub fn nice_this_thread(nice: i32) {
    if nice <= 0 {
        return;
    }
    // SAFETY: two syscalls about the calling thread, with no memory passed.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if rc != 0 {
        tracing::warn!(nice, error = %std::io::Error::last_os_error(), "cannot lower the thread's priority");
    }
}

/// `%XX` escapes decoded (a header value in a setting, a path in a URL); anything else,
/// a stray `%` included, kept as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
