//! The C heap's hold on memory. glibc's malloc gives each thread that allocates
//! while another holds an arena an arena of its own (up to eight per CPU), and keeps
//! what is freed in each for reuse. On a small machine that shows as RSS that steps
//! up whenever a new thread (a blocking-pool thread, say) first allocates, and never
//! comes back down (#18's first soak: +3.1 MB after minute 10 at a steady load).

/// Caps glibc's arenas at two: the daemon's few threads share them. Call before any
/// thread is started. No-op where the C library is not glibc.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns the heap's free pages to the OS (from every arena, the middle of the
/// heaps included). A few milliseconds at most on this process's heap: it runs once
/// a minute, in the writer's periodic cache release, and after a dictionary is trained
/// (`store::codec`), never per batch.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe; it takes each arena's lock in turn.
    unsafe {
        libc::malloc_trim(0);
    }
}
