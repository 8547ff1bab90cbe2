//! Each finished agent run's behavioural metrics (the baselines' figures) as Prometheus
//! histograms by agent: `openclaw_trace_run_<metric>{agent}`.

use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;

use super::baseline::{Check, Metric};
use crate::metrics::{LabelCap, Registry};

type Labels = Vec<(&'static str, String)>;

/// A histogram's bucket bounds, per metric.
#[derive(Clone)]
struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

fn buckets(m: Metric) -> &'static [f64] {
    const RATE: &[f64] = &[0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0];
    const COUNT: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];
    match m {
        Metric::Cost => &[0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0],
        Metric::Duration => &[
            100.0,
            500.0,
            1_000.0,
            5_000.0,
            15_000.0,
            60_000.0,
            300_000.0,
            900_000.0,
            3_600_000.0,
        ],
        Metric::Tokens => &[
            100.0,
            1_000.0,
            5_000.0,
            10_000.0,
            50_000.0,
            100_000.0,
            500_000.0,
            1_000_000.0,
        ],
        Metric::TokensPerCall => &[
            100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 50_000.0, 200_000.0,
        ],
        Metric::ErrorRate | Metric::RetryRate | Metric::ToolErrorRate => RATE,
        Metric::LlmCalls | Metric::ToolCalls | Metric::BlastRadius => COUNT,
    }
}

pub struct RunHistograms {
    families: Vec<(Metric, Family<Labels, Histogram, Buckets>)>,
    agents: LabelCap,
}

impl RunHistograms {
    pub fn new(registry: &Registry, label_limit: usize) -> Self {
        let families: Vec<_> = Metric::ALL
            .iter()
            .map(|m| {
                (
                    *m,
                    Family::<Labels, Histogram, Buckets>::new_with_constructor(Buckets(buckets(
                        *m,
                    ))),
                )
            })
            .collect();
        for (m, f) in &families {
            registry.register(
                &format!("openclaw_trace_run_{}", m.name()),
                &format!(
                    "Finished agent runs' {} (a baseline metric), by agent",
                    m.name().replace('_', " ")
                ),
                f.clone(),
            );
        }
        RunHistograms {
            families,
            agents: LabelCap::new(label_limit),
        }
    }

    /// Records a checked run's figures.
    pub fn observe(&self, c: &Check) {
        let labels = vec![("agent", self.agents.value(c.agent_id.as_deref()))];
        for (m, family) in &self.families {
            if let Some(v) = c
                .metrics
                .iter()
                .find(|x| x.metric == m.name())
                .and_then(|x| x.value)
                .filter(|v| v.is_finite())
            {
                family.get_or_create(&labels).observe(v);
            }
        }
    }
}
