//! The cost transform: fills `cost_usd` on LLM and embedding spans from the price
//! table. A cost the agent reported stays (`reported`); the table's figure is kept
//! beside it when they differ. Without tokens or a price the cost stays unknown.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::pricing::{NoMatch, PriceMatch, PriceTable, Usage};
use crate::model::{CostSource, Record, Span, SpanKind};
use crate::pipeline::Transform;

/// Models without a price, remembered so `/health` and the log can say so (bounded).
const MAX_UNPRICED: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unpriced {
    pub provider: Option<String>,
    pub model: String,
    pub calls: u64,
}

/// Models whose lookups are remembered (bounded; forgotten all at once when full).
const MAX_CACHED_MODELS: usize = 1024;

/// A lookup's outcome: the entry that prices the model, or why there is none.
type Found = Result<Arc<PriceMatch>, Arc<NoMatch>>;

/// Model → (provider, outcome) of the lookups made so far.
type FoundByModel = HashMap<String, Vec<(Option<String>, Found)>>;

pub struct CostTransform {
    prices: Arc<PriceTable>,
    unpriced: Mutex<BTreeMap<(Option<String>, String), u64>>,
    /// Every span of a model asks the same question, and a lookup tries several
    /// normalised names, each a new string.
    found: Mutex<FoundByModel>,
}

/// True for the spans that carry token usage.
pub fn is_usage_span(s: &Span) -> bool {
    matches!(s.kind, SpanKind::LlmCall | SpanKind::Embedding)
}

pub fn usage_of(s: &Span) -> Usage {
    Usage {
        input: s.input_tokens,
        output: s.output_tokens,
        cache_read: s.cache_read_tokens,
        cache_write: s.cache_write_tokens,
        reasoning: s.reasoning_tokens,
    }
}

/// Two costs agree when they differ by less than a millionth (float noise, rounding).
fn differ(a: f64, b: f64) -> bool {
    (a - b).abs() > 1e-12_f64.max(a.abs().max(b.abs()) * 1e-6)
}

impl CostTransform {
    pub fn new(prices: Arc<PriceTable>) -> Self {
        CostTransform {
            prices,
            unpriced: Mutex::new(BTreeMap::new()),
            found: Mutex::new(HashMap::new()),
        }
    }

    /// [`PriceTable::lookup`]'s entry, remembered per provider and model.
    fn lookup(&self, provider: Option<&str>, model: &str) -> Found {
        let look = || {
            self.prices
                .lookup(provider, model)
                .map(Arc::new)
                .map_err(Arc::new)
        };
        let Ok(mut found) = self.found.lock() else {
            return look();
        };
        if let Some(by_provider) = found.get(model)
            && let Some((_, f)) = by_provider.iter().find(|(p, _)| p.as_deref() == provider)
        {
            return f.clone();
        }
        let f = look();
        if found.len() >= MAX_CACHED_MODELS {
            found.clear();
        }
        found
            .entry(model.to_string())
            .or_default()
            .push((provider.map(str::to_string), f.clone()));
        f
    }

    /// The table's cost for a span, or `None` when it has no tokens or no price.
    pub fn compute(&self, s: &Span) -> Option<f64> {
        let usage = usage_of(s);
        let models = [s.response_model.as_deref(), s.request_model.as_deref()];
        let mut first_miss = None;
        for model in models.into_iter().flatten() {
            match self.lookup(s.provider.as_deref(), model) {
                // The price in effect when the call started (prices change on dates).
                Ok(m) => {
                    let at = s.start_ns.div_euclid(1_000_000_000);
                    return self.prices.price_of(&m, at).cost(&usage);
                }
                Err(e) => {
                    first_miss.get_or_insert(e);
                }
            }
        }
        if let Some(miss) = first_miss
            && (usage.input.is_some() || usage.output.is_some())
        {
            self.note_unpriced(s.provider.clone(), miss.model.clone(), &miss.to_string());
        }
        None
    }

    fn note_unpriced(&self, provider: Option<String>, model: String, why: &str) {
        let Ok(mut m) = self.unpriced.lock() else {
            return;
        };
        let key = (provider, model);
        if let Some(n) = m.get_mut(&key) {
            *n += 1;
            return;
        }
        if m.len() < MAX_UNPRICED {
            tracing::warn!(
                provider = key.0.as_deref().unwrap_or(""),
                reason = why,
                "cost unknown"
            );
            m.insert(key, 1);
        }
    }

    /// Models seen without a price, with how many calls they had.
    pub fn unpriced(&self) -> Vec<Unpriced> {
        self.unpriced
            .lock()
            .map(|m| {
                m.iter()
                    .map(|((provider, model), calls)| Unpriced {
                        provider: provider.clone(),
                        model: model.clone(),
                        calls: *calls,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Transform for CostTransform {
    fn apply(&self, record: &mut Record) {
        let Record::Span(s) = record else {
            return;
        };
        if !is_usage_span(s) {
            return;
        }
        let computed = self.compute(s);
        match s.cost_usd {
            Some(reported) => {
                s.cost_source = Some(CostSource::Reported);
                s.cost_computed_usd = computed.filter(|c| differ(*c, reported));
            }
            None => {
                s.cost_usd = computed;
                s.cost_source = computed.map(|_| CostSource::Computed);
                s.cost_computed_usd = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanId, TraceId};

    fn llm(model: &str, input: Option<i64>, output: Option<i64>, cost: Option<f64>) -> Record {
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            format!("chat {model}"),
            SpanKind::LlmCall,
            0,
        );
        s.provider = Some("openai".into());
        s.request_model = Some(model.into());
        s.input_tokens = input;
        s.output_tokens = output;
        s.cost_usd = cost;
        s.cost_source = cost.map(|_| CostSource::Reported);
        Record::Span(Box::new(s))
    }

    fn span(r: &Record) -> &Span {
        match r {
            Record::Span(s) => s,
            _ => panic!(),
        }
    }

    #[test]
    fn fills_reports_and_keeps_both() {
        let t = CostTransform::new(Arc::new(PriceTable::bundled().unwrap()));
        // Computed: 1 000 × 2.50 + 1 000 × 10 = 12 500 µ$.
        let mut r = llm("gpt-4o", Some(1000), Some(1000), None);
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, Some(0.0125));
        assert_eq!(span(&r).cost_source, Some(CostSource::Computed));
        // Reported and equal: one figure.
        let mut r = llm("gpt-4o", Some(1000), Some(1000), Some(0.0125));
        t.apply(&mut r);
        assert_eq!(span(&r).cost_source, Some(CostSource::Reported));
        assert_eq!(span(&r).cost_computed_usd, None);
        // Reported and different: both kept.
        let mut r = llm("gpt-4o", Some(1000), Some(1000), Some(0.02));
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, Some(0.02));
        assert_eq!(span(&r).cost_computed_usd, Some(0.0125));
        // Reported zero stays a reported zero.
        let mut r = llm("gpt-4o", Some(1000), Some(1000), Some(0.0));
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, Some(0.0));
        assert_eq!(span(&r).cost_source, Some(CostSource::Reported));
    }

    #[test]
    fn unknown_is_never_a_fake_zero() {
        let t = CostTransform::new(Arc::new(PriceTable::bundled().unwrap()));
        let mut r = llm("my-local-model", Some(10), Some(10), None);
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, None);
        assert_eq!(span(&r).cost_source, None);
        let mut r = llm("gpt-4o", None, None, None);
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, None, "no tokens, no cost");
        let u = t.unpriced();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].model, "my-local-model");
        // Tool calls are left alone.
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "x".into(),
            SpanKind::ToolCall,
            0,
        );
        s.input_tokens = Some(5);
        let mut r = Record::Span(Box::new(s));
        t.apply(&mut r);
        assert_eq!(span(&r).cost_usd, None);
    }
}
