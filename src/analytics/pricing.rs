//! The price table: a bundled, dated list of USD prices per million tokens
//! (`data/prices.toml`), optionally overridden by a file in the same shape or in
//! OpenClaw's `models.providers.*.models[].cost` shape, and the arithmetic that
//! turns a span's token counts into dollars.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The table compiled into the binary.
const BUNDLED: &str = include_str!("../../data/prices.toml");

/// USD per million tokens of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached input read back; absent means no discount (priced as input).
    pub cache_read: Option<f64>,
    /// Input written to the cache; absent means priced as input.
    pub cache_write: Option<f64>,
    /// Reasoning tokens where billed apart from output; absent means part of output.
    pub reasoning: Option<f64>,
}

/// Token counts of one call, as a span carries them.
///
/// Conventions (OpenTelemetry GenAI): `input` counts every input token including
/// cached ones, `output` includes reasoning tokens. A source that reports input
/// without the cached part (Anthropic's API does) is recognised when the cached
/// counts exceed `input`; then `input` is taken as already uncached.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cache_read: Option<i64>,
    pub cache_write: Option<i64>,
    pub reasoning: Option<i64>,
}

impl Price {
    /// The cost of `u` in USD, or `None` when the call carries no token counts at all.
    pub fn cost(&self, u: &Usage) -> Option<f64> {
        if u.input.is_none() && u.output.is_none() {
            return None;
        }
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as f64;
        let (input, output) = (n(u.input), n(u.output));
        let (cache_read, cache_write, reasoning) =
            (n(u.cache_read), n(u.cache_write), n(u.reasoning));
        let cached = cache_read + cache_write;
        // Billable input excludes cached tokens, which have their own rates.
        let billable_input = if cached > input {
            input
        } else {
            input - cached
        };
        let (billable_output, reasoning_cost) = match self.reasoning {
            Some(rate) => {
                let r = reasoning.min(output);
                (output - r, r * rate)
            }
            None => (output, 0.0),
        };
        let micro = billable_input * self.input
            + cache_read * self.cache_read.unwrap_or(self.input)
            + cache_write * self.cache_write.unwrap_or(self.input)
            + billable_output * self.output
            + reasoning_cost;
        Some(micro / 1e6)
    }
}

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Bundled,
    Override,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceEntry {
    pub provider: String,
    pub id: String,
    #[serde(flatten)]
    pub price: Price,
    pub origin: Origin,
}

/// What a lookup found: the price, the entry it came from and the name that matched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceMatch {
    pub price: Price,
    pub provider: String,
    pub id: String,
    /// The normalised name that matched (shows how a dated or aliased id was read).
    pub matched: String,
    pub origin: Origin,
    /// An OpenRouter `:free` variant: costs nothing whatever the base price.
    pub free: bool,
}

/// No entry for a model; says what was tried so a user can add an override.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("no price for model {model:?} (tried {tried:?}); add it with OCT_PRICING_FILE")]
pub struct NoMatch {
    pub model: String,
    pub tried: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("pricing file {path}: {message}")]
    File { path: String, message: String },
    #[error("bundled price table: {0}")]
    Bundled(String),
}

/// The table's on-disk shape (TOML or JSON).
#[derive(Deserialize)]
struct TableFile {
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default, alias = "models")]
    model: Vec<EntryFile>,
}

#[derive(Deserialize)]
struct EntryFile {
    #[serde(default)]
    provider: String,
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    reasoning: Option<f64>,
}

/// Prices for models, looked up by provider and model id.
#[derive(Clone, Debug)]
pub struct PriceTable {
    pub as_of: String,
    pub entries: Vec<PriceEntry>,
    /// Normalised id or alias → indexes into `entries`, overrides first.
    by_key: HashMap<String, Vec<usize>>,
}

/// Prefixes Bedrock puts before a model id (`us.anthropic.claude-...`).
const DOTTED_PREFIXES: &[&str] = &[
    "us",
    "eu",
    "apac",
    "global",
    "anthropic",
    "meta",
    "mistral",
    "amazon",
    "cohere",
    "ai21",
    "deepseek",
    "openai",
    "qwen",
    "xai",
];

/// Provider names as sources spell them → the table's names.
fn canonical_provider(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "azure" | "azure_openai" | "azure.ai.openai" | "openai-completions" => "openai".into(),
        "gemini" | "google-genai" | "google_genai" | "vertex_ai" | "vertexai" | "gcp.gemini"
        | "gcp.vertex_ai" | "gcp.gen_ai" | "google-vertex" => "google".into(),
        "mistralai" | "mistral_ai" => "mistral".into(),
        "x_ai" | "x-ai" | "grok" => "xai".into(),
        "aws.bedrock" | "bedrock" | "amazon-bedrock" => "bedrock".into(),
        _ => p,
    }
}

/// Lowercase, `.`/`@`/`_` as `-`, whitespace trimmed.
fn normalize(s: &str) -> String {
    s.trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            '.' | '@' | '_' => '-',
            c => c,
        })
        .collect()
}

/// A trailing `-segment` that only dates or versions a model.
fn is_decoration(seg: &str) -> bool {
    let digits = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
    let version =
        seg.len() >= 2 && seg.starts_with('v') && seg[1..].bytes().all(|b| b.is_ascii_digit());
    (digits && seg.len() >= 2) || version || matches!(seg, "latest" | "preview" | "exp")
}

/// The names to try for a model id, most specific first, and whether it is a `:free` variant.
pub fn candidates(model: &str) -> (Vec<String>, bool) {
    let raw = model.trim().to_ascii_lowercase();
    // OpenRouter variants (`:free`, `:nitro`, `:beta`) and Bedrock's `-v1:0` end in `:...`.
    let (base, variant) = match raw.split_once(':') {
        Some((b, v)) => (b.to_string(), v.to_string()),
        None => (raw, String::new()),
    };
    let free = variant == "free";
    let mut out: Vec<String> = Vec::new();
    let push = |s: String, out: &mut Vec<String>| {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    };
    push(normalize(&base), &mut out);
    let mut short = base.rsplit('/').next().unwrap_or(&base).to_string();
    while let Some((head, rest)) = short.split_once('.') {
        if DOTTED_PREFIXES.contains(&head) {
            short = rest.to_string();
        } else {
            break;
        }
    }
    let mut short = normalize(&short);
    push(short.clone(), &mut out);
    while let Some((head, last)) = short.rsplit_once('-') {
        if !is_decoration(last) {
            break;
        }
        short = head.to_string();
        push(short.clone(), &mut out);
    }
    (out, free)
}

impl PriceTable {
    /// The bundled table alone.
    pub fn bundled() -> Result<PriceTable, PricingError> {
        let file: TableFile =
            toml::from_str(BUNDLED).map_err(|e| PricingError::Bundled(e.to_string()))?;
        let mut t = PriceTable {
            as_of: file.as_of.unwrap_or_default(),
            entries: Vec::new(),
            by_key: HashMap::new(),
        };
        t.add(file.model, Origin::Bundled);
        Ok(t)
    }

    /// The bundled table with the overrides of `path` (TOML or JSON) taking precedence.
    pub fn load(path: Option<&Path>) -> Result<PriceTable, PricingError> {
        let mut t = PriceTable::bundled()?;
        if let Some(p) = path {
            let text = std::fs::read_to_string(p).map_err(|e| PricingError::File {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            let entries = parse_overrides(&text).map_err(|message| PricingError::File {
                path: p.display().to_string(),
                message,
            })?;
            t.add_overrides(entries);
        }
        Ok(t)
    }

    fn add(&mut self, entries: Vec<EntryFile>, origin: Origin) {
        for e in entries {
            let idx = self.entries.len();
            let mut keys = vec![e.id.clone()];
            keys.extend(e.aliases.iter().cloned());
            self.entries.push(PriceEntry {
                provider: canonical_provider(&e.provider),
                id: e.id,
                price: Price {
                    input: e.input,
                    output: e.output,
                    cache_read: e.cache_read,
                    cache_write: e.cache_write,
                    reasoning: e.reasoning,
                },
                origin,
            });
            for k in keys {
                // Both `vendor/model` and `model` find an OpenRouter-style id.
                let short = k.rsplit('/').next().unwrap_or(&k);
                for key in [normalize(&k), normalize(short)] {
                    let slot = self.by_key.entry(key).or_default();
                    if !slot.contains(&idx) {
                        match origin {
                            Origin::Override => slot.insert(0, idx),
                            Origin::Bundled => slot.push(idx),
                        }
                    }
                }
            }
        }
    }

    fn add_overrides(&mut self, entries: Vec<EntryFile>) {
        // Later entries of the file are inserted first; keep the file's own order of precedence.
        let mut entries = entries;
        entries.reverse();
        self.add(entries, Origin::Override);
    }

    /// Finds the price of `model` (served by `provider`, when known).
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Result<PriceMatch, NoMatch> {
        let (tried, free) = candidates(model);
        let provider = provider.map(canonical_provider);
        for key in &tried {
            let Some(idxs) = self.by_key.get(key) else {
                continue;
            };
            // Prefer the entry of the serving provider; any entry of the same id otherwise.
            let pick = idxs
                .iter()
                .copied()
                .find(|&i| Some(&self.entries[i].provider) == provider.as_ref())
                .or_else(|| idxs.first().copied());
            if let Some(i) = pick {
                let e = &self.entries[i];
                return Ok(PriceMatch {
                    price: if free { Price::default() } else { e.price },
                    provider: e.provider.clone(),
                    id: e.id.clone(),
                    matched: key.clone(),
                    origin: e.origin,
                    free,
                });
            }
        }
        if free {
            return Ok(PriceMatch {
                price: Price::default(),
                provider: provider.unwrap_or_default(),
                id: model.to_string(),
                matched: model.to_ascii_lowercase(),
                origin: Origin::Bundled,
                free: true,
            });
        }
        Err(NoMatch {
            model: model.to_string(),
            tried,
        })
    }
}

/// Reads an override file: the bundled shape (`[[model]]` / `{"model": [...]}`) or
/// OpenClaw's config (`models.providers.<name>.models[].cost`), as TOML or JSON.
fn parse_overrides(text: &str) -> Result<Vec<EntryFile>, String> {
    let value: Value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(json_err) => match toml::from_str::<toml::Table>(text) {
            Ok(t) => serde_json::to_value(t).map_err(|e| e.to_string())?,
            Err(toml_err) => {
                return Err(format!(
                    "neither JSON ({json_err}) nor TOML ({})",
                    toml_err.message()
                ));
            }
        },
    };
    if let Some(providers) = value
        .pointer("/models/providers")
        .and_then(Value::as_object)
    {
        return openclaw_entries(providers);
    }
    let file: TableFile = serde_json::from_value(value).map_err(|e| {
        format!(
            "expected [[model]] entries with id, input and output (USD per million tokens): {e}"
        )
    })?;
    if file.model.is_empty() {
        return Err("no [[model]] entries and no models.providers section".into());
    }
    for e in &file.model {
        check_price(
            &e.id,
            &[
                Some(e.input),
                Some(e.output),
                e.cache_read,
                e.cache_write,
                e.reasoning,
            ],
        )?;
    }
    Ok(file.model)
}

fn check_price(id: &str, rates: &[Option<f64>]) -> Result<(), String> {
    if rates.iter().flatten().any(|r| !r.is_finite() || *r < 0.0) {
        return Err(format!("model {id:?}: prices must be non-negative numbers"));
    }
    Ok(())
}

/// OpenClaw's `cost {input, output, cacheRead, cacheWrite}` is USD per million tokens too.
fn openclaw_entries(providers: &serde_json::Map<String, Value>) -> Result<Vec<EntryFile>, String> {
    let mut out = Vec::new();
    for (provider, p) in providers {
        let Some(models) = p.get("models").and_then(Value::as_array) else {
            continue;
        };
        for (i, m) in models.iter().enumerate() {
            let Some(cost) = m.get("cost").filter(|c| c.is_object()) else {
                continue;
            };
            let id = m.get("id").and_then(Value::as_str).ok_or_else(|| {
                format!("models.providers.{provider}.models[{i}]: missing string id")
            })?;
            let rate = |k: &str| -> Result<Option<f64>, String> {
                match cost.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                        format!(
                            "models.providers.{provider}.models[{i}].cost.{k}: expected a number"
                        )
                    }),
                }
            };
            let entry = EntryFile {
                provider: provider.clone(),
                id: id.to_string(),
                aliases: vec![format!("{provider}/{id}")],
                input: rate("input")?.unwrap_or(0.0),
                output: rate("output")?.unwrap_or(0.0),
                cache_read: rate("cacheRead")?,
                cache_write: rate("cacheWrite")?,
                reasoning: None,
            };
            check_price(
                id,
                &[
                    Some(entry.input),
                    Some(entry.output),
                    entry.cache_read,
                    entry.cache_write,
                ],
            )?;
            out.push(entry);
        }
    }
    if out.is_empty() {
        return Err("models.providers has no model with a cost".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(i: i64, o: i64, cr: i64, cw: i64, r: i64) -> Usage {
        Usage {
            input: Some(i),
            output: Some(o),
            cache_read: Some(cr),
            cache_write: Some(cw),
            reasoning: Some(r),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12_f64.max(b.abs() * 1e-9)
    }

    #[test]
    fn bundled_table_loads_and_is_dated() {
        let t = PriceTable::bundled().unwrap();
        assert!(t.as_of.starts_with("20"), "{}", t.as_of);
        assert!(t.entries.len() > 40);
        for provider in [
            "openai",
            "anthropic",
            "google",
            "mistral",
            "deepseek",
            "xai",
            "openrouter",
        ] {
            assert!(
                t.entries.iter().any(|e| e.provider == provider),
                "{provider}"
            );
        }
    }

    /// (provider, model, input, output, cache read, cache write, reasoning, expected USD).
    /// Each expectation is worked out by hand from the table's per-million prices.
    #[test]
    fn costs_match_hand_computed_values() {
        let t = PriceTable::bundled().unwrap();
        type Case = (&'static str, &'static str, i64, i64, i64, i64, i64, f64);
        let cases: &[Case] = &[
            // 1000 × 2.50 + 500 × 10.00 = 7500 µ$ → 0.0075
            ("openai", "gpt-4o", 1000, 500, 0, 0, 0, 0.0075),
            // dated id: same family. 2000 × 0.15 + 1000 × 0.60 = 900 µ$
            (
                "openai",
                "gpt-4o-mini-2024-07-18",
                2000,
                1000,
                0,
                0,
                0,
                0.0009,
            ),
            // cached: 10 000 input of which 8 000 cached.
            // 2 000 × 2.50 + 8 000 × 1.25 + 1 000 × 10 = 5 000 + 10 000 + 10 000 = 25 000 µ$
            ("openai", "gpt-4o", 10_000, 1_000, 8_000, 0, 0, 0.025),
            // Anthropic with cache write and read, input including both:
            // (5 000 − 1 000 − 2 000) × 3 + 1 000 × 0.30 + 2 000 × 3.75 + 400 × 15
            // = 6 000 + 300 + 7 500 + 6 000 = 19 800 µ$
            (
                "anthropic",
                "claude-sonnet-4-20250514",
                5_000,
                400,
                1_000,
                2_000,
                0,
                0.0198,
            ),
            // Anthropic-native counts (input excludes cache: 100 < 3 000 cached):
            // 100 × 3 + 3 000 × 0.30 + 50 × 15 = 300 + 900 + 750 = 1 950 µ$
            (
                "anthropic",
                "claude-3-5-sonnet-20241022",
                100,
                50,
                3_000,
                0,
                0,
                0.00195,
            ),
            // Bedrock id. 1 000 × 0.80 + 1 000 × 4 = 4 800 µ$
            (
                "aws.bedrock",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                1_000,
                1_000,
                0,
                0,
                0,
                0.0048,
            ),
            // Reasoning is part of output when not priced apart: 1 000 × 1.10 + 3 000 × 4.40 = 14 300 µ$
            ("openai", "o4-mini", 1_000, 3_000, 0, 0, 2_500, 0.0143),
            // OpenRouter id with dots. 1 000 000 × 3 + 100 000 × 15 = 4.5 $
            (
                "openrouter",
                "anthropic/claude-3.5-sonnet",
                1_000_000,
                100_000,
                0,
                0,
                0,
                4.5,
            ),
            // Google, aliases through the vertex provider name. 10 000 × 1.25 + 2 000 × 10 = 32 500 µ$
            (
                "vertex_ai",
                "gemini-2.5-pro",
                10_000,
                2_000,
                0,
                0,
                0,
                0.0325,
            ),
            // Gemini with a version suffix. 1 000 × 0.075 + 1 000 × 0.30 = 375 µ$
            (
                "google",
                "gemini-1.5-flash-002",
                1_000,
                1_000,
                0,
                0,
                0,
                0.000375,
            ),
            // Mistral dated. 1 000 × 2 + 1 000 × 6 = 8 000 µ$
            (
                "mistral",
                "mistral-large-2411",
                1_000,
                1_000,
                0,
                0,
                0,
                0.008,
            ),
            // DeepSeek cache hit. (1 000 − 600) × 0.28 + 600 × 0.028 + 100 × 0.42 = 112 + 16.8 + 42 = 170.8 µ$
            (
                "deepseek",
                "deepseek-chat",
                1_000,
                100,
                600,
                0,
                0,
                0.0001708,
            ),
            // xAI dated. 1 000 × 3 + 1 000 × 15 = 18 000 µ$
            ("xai", "grok-4-0709", 1_000, 1_000, 0, 0, 0, 0.018),
            // `-latest` alias. 1 000 × 2.50 + 1 000 × 10 = 12 500 µ$
            ("openai", "chatgpt-4o-latest", 1_000, 1_000, 0, 0, 0, 0.0125),
            // OpenRouter free variant.
            (
                "openrouter",
                "meta-llama/llama-3.3-70b-instruct:free",
                5_000,
                5_000,
                0,
                0,
                0,
                0.0,
            ),
            // OpenRouter-only id. 1 000 × 0.60 + 1 000 × 2.50 = 3 100 µ$
            (
                "openrouter",
                "moonshotai/kimi-k2",
                1_000,
                1_000,
                0,
                0,
                0,
                0.0031,
            ),
            // Embedding: input only. 1 000 000 × 0.02 = 0.02 $
            (
                "openai",
                "text-embedding-3-small",
                1_000_000,
                0,
                0,
                0,
                0,
                0.02,
            ),
        ];
        for &(provider, model, i, o, cr, cw, r, want) in cases {
            let m = t
                .lookup(Some(provider), model)
                .unwrap_or_else(|e| panic!("{e}"));
            let got = m.price.cost(&usage(i, o, cr, cw, r)).unwrap();
            assert!(
                close(got, want),
                "{provider}/{model}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn aliases_resolve_to_the_family() {
        let t = PriceTable::bundled().unwrap();
        for (model, id) in [
            ("claude-sonnet-4-20250514", "claude-sonnet-4"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-opus-4-1-20250805", "claude-opus-4-1"),
            ("claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            (
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "claude-3-7-sonnet",
            ),
            ("gpt-4.1-2025-04-14", "gpt-4.1"),
            ("openai/gpt-4.1-mini", "gpt-4.1-mini"),
            ("gpt-4-0613", "gpt-4"),
            ("o3-mini-2025-01-31", "o3-mini"),
            ("gpt-5-chat-latest", "gpt-5"),
            ("gemini-2.5-pro-preview-06-05", "gemini-2.5-pro"),
            ("GPT-4o", "gpt-4o"),
            ("x-ai/grok-4", "grok-4"),
            ("kimi-k2", "moonshotai/kimi-k2"),
            ("anthropic/claude-sonnet-4:beta", "claude-sonnet-4"),
        ] {
            let m = t.lookup(None, model).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.id, id, "{model}");
        }
    }

    #[test]
    fn unknown_models_say_so() {
        let t = PriceTable::bundled().unwrap();
        for model in [
            "llama-local-7b",
            "gpt-4o-audio-preview-2024-12-17",
            "claude-2",
            "fake-model",
            "",
        ] {
            let e = t.lookup(Some("openai"), model).unwrap_err();
            assert_eq!(e.model, model);
            assert!(e.to_string().contains("no price for model"), "{e}");
        }
    }

    #[test]
    fn no_tokens_means_no_cost() {
        let p = Price {
            input: 1.0,
            output: 1.0,
            ..Default::default()
        };
        assert_eq!(p.cost(&Usage::default()), None);
        assert_eq!(
            p.cost(&Usage {
                output: Some(0),
                ..Default::default()
            }),
            Some(0.0)
        );
    }

    #[test]
    fn reasoning_priced_apart_when_the_table_says_so() {
        let p = Price {
            input: 1.0,
            output: 4.0,
            reasoning: Some(2.0),
            ..Default::default()
        };
        // (1 000 − 600) × 4 + 600 × 2 + 0 input = 1 600 + 1 200 = 2 800 µ$
        let got = p.cost(&usage(0, 1_000, 0, 0, 600)).unwrap();
        assert!(close(got, 0.0028), "{got}");
    }

    #[test]
    fn openclaw_config_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openclaw.json");
        std::fs::write(
            &path,
            r#"{"models":{"mode":"merge","providers":{"fake":{"baseUrl":"http://x","models":[
                {"id":"fake-model","name":"Fake","cost":{"input":1.0,"output":2.0,"cacheRead":0,"cacheWrite":0}},
                {"id":"gpt-4o","cost":{"input":5,"output":20}}]}}}}"#,
        )
        .unwrap();
        let t = PriceTable::load(Some(&path)).unwrap();
        // The sample transcript's numbers: 123 in, 17 out → 0.000123 + 0.000034.
        let m = t.lookup(Some("fake"), "fake-model").unwrap();
        assert_eq!(m.origin, Origin::Override);
        let got = m.price.cost(&usage(123, 17, 0, 0, 0)).unwrap();
        assert!(close(got, 0.000157), "{got}");
        assert_eq!(t.lookup(None, "fake/fake-model").unwrap().id, "fake-model");
        // An override wins over the bundled entry for its provider...
        let m = t.lookup(Some("fake"), "gpt-4o").unwrap();
        assert_eq!(m.price.input, 5.0);
        // ...and the bundled one is still there for the real provider.
        let m = t.lookup(Some("openai"), "gpt-4o").unwrap();
        assert_eq!(m.price.input, 2.5);
    }

    #[test]
    fn toml_and_json_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("p.toml");
        std::fs::write(
            &toml_path,
            "[[model]]\nprovider = \"local\"\nid = \"my-llm\"\naliases = [\"my-llm-v2\"]\ninput = 0.5\noutput = 1.5\ncache_read = 0.05\n",
        )
        .unwrap();
        let t = PriceTable::load(Some(&toml_path)).unwrap();
        assert_eq!(t.lookup(None, "my-llm-v2").unwrap().price.output, 1.5);
        let json_path = dir.path().join("p.json");
        std::fs::write(
            &json_path,
            r#"{"model":[{"provider":"openai","id":"gpt-4o","input":1,"output":1}]}"#,
        )
        .unwrap();
        let t = PriceTable::load(Some(&json_path)).unwrap();
        assert_eq!(
            t.lookup(Some("openai"), "gpt-4o-2024-08-06")
                .unwrap()
                .price
                .input,
            1.0
        );
    }

    #[test]
    fn bad_override_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (name, body, needle) in [
            (
                "a.json",
                "{\"model\":[{\"id\":\"x\"}]}",
                "expected [[model]]",
            ),
            ("b.toml", "this is = = not", "neither JSON"),
            (
                "c.json",
                "{\"model\":[{\"id\":\"x\",\"input\":-1,\"output\":1}]}",
                "non-negative",
            ),
            (
                "d.json",
                "{\"models\":{\"providers\":{}}}",
                "no model with a cost",
            ),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            let e = PriceTable::load(Some(&p)).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains(name), "{name}: {e}");
        }
        let e = PriceTable::load(Some(&dir.path().join("missing.toml"))).unwrap_err();
        assert!(e.to_string().contains("missing.toml"));
    }
}
