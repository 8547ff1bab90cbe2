//! Schedules the rollup of old host metric points (`store::rollup`) on the
//! writer, once per rollup step, sooner while a backlog remains.

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
            // The store only grows at its end, so most cached pages will not be
            // read again; without this the cache fills to its cap as the file grows.
            if let Err(e) = conn.execute_batch("PRAGMA shrink_memory") {
                tracing::debug!(error = %e, "shrink_memory failed");
            }
        });
        if queued {
            self.backlog.store(false, Ordering::Relaxed);
            self.next = now + self.step.min(Duration::from_secs(300));
        }
    }
}
