//! Schedules the rollup of old host metric points (`store::rollup`) on the
//! writer, once per rollup step, sooner while a backlog remains; and the
//! release of the writer's cached pages.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::HostConfig;
use crate::model::now_ns;
use crate::pipeline::Pipeline;
use crate::store::{retention, rollup};

pub(crate) struct RollupSchedule {
    raw_window: Duration,
    step: Duration,
    max_age: Option<Duration>,
    /// Sinks whose cursors hold raw rows back until shipped.
    sinks: Arc<Vec<String>>,
    next: Instant,
    /// Set by a run that left rolled-up work behind: run again on the next tick.
    backlog: Arc<AtomicBool>,
}

impl RollupSchedule {
    /// `None` when rollups are off (`OCT_METRICS_RAW_RETENTION=0`).
    pub fn new(cfg: &HostConfig, retention: &retention::Policy) -> Option<Self> {
        if cfg.raw_retention.is_zero() {
            return None;
        }
        Some(RollupSchedule {
            raw_window: cfg.raw_retention,
            step: cfg.rollup_step,
            max_age: retention.max_age,
            sinks: Arc::new(retention.active_sinks.clone()),
            next: Instant::now(),
            backlog: Arc::new(AtomicBool::new(false)),
        })
    }

    /// When the next run is due.
    pub fn due(&self) -> Instant {
        self.next
    }

    /// Queues a run on the writer when one is due.
    pub fn tick(&mut self, pipeline: &Pipeline, now: Instant) {
        if now < self.next && !self.backlog.load(Ordering::Relaxed) {
            return;
        }
        let backlog = self.backlog.clone();
        let sinks = self.sinks.clone();
        let (raw_window, step, max_age) = (self.raw_window, self.step, self.max_age);
        let queued = pipeline.run_job(move |conn| {
            let report =
                retention::shipped_upto(conn, "metric_points", &sinks).and_then(|shipped_upto| {
                    let policy = rollup::Policy {
                        raw_window,
                        step,
                        max_age,
                        shipped_upto,
                    };
                    rollup::run(conn, &policy, now_ns())
                });
            match report {
                Ok(r) => {
                    backlog.store(r.backlog, Ordering::Relaxed);
                    if r.rolled > 0 || r.expired > 0 {
                        tracing::debug!(
                            rolled = r.rolled,
                            buckets = r.buckets,
                            expired = r.expired,
                            "host metrics rolled up"
                        );
                    }
                }
                Err(e) => {
                    backlog.store(false, Ordering::Relaxed);
                    tracing::warn!(error = %e, "rolling up host metrics failed; will retry");
                }
            }
        });
        if queued {
            self.backlog.store(false, Ordering::Relaxed);
            self.next = now + self.step.min(Duration::from_secs(300));
        }
    }
}

/// How often the writer lets go of its cached pages.
pub(crate) const RELEASE_PAGES_EVERY: Duration = Duration::from_secs(60);

/// Frees the writer's unused cached pages. Samples only ever add rows at the end
/// of the tables, so the pages they filled are not read again; kept, the cache
/// would grow to its cap (`cache_size`) with them as the file grows, and the
/// process's RSS with it. The few hot pages are read back from the OS's cache.
pub(crate) fn release_cached_pages(pipeline: &Pipeline) -> bool {
    pipeline.run_job(|conn| {
        if let Err(e) = conn.execute_batch("PRAGMA shrink_memory") {
            tracing::debug!(error = %e, "releasing cached pages failed");
        }
        // What SQLite (and everyone else) freed stays in malloc's arenas until trimmed.
        crate::util::heap::release_free_pages();
    })
}
