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
