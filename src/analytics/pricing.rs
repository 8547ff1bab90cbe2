//! The price table: Pydantic's maintained `genai-prices` data (converted by
//! `scripts/update-prices.py` into `data/genai-prices.json`, compiled in gzipped),
//! optionally overridden by a file in our `[[model]]` shape or in OpenClaw's
//! `models.providers.*.models[].cost` shape, and the arithmetic that turns a span's
//! token counts into dollars.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The converted genai-prices data, gzipped (`data/genai-prices.json` is the same, readable).
const BUNDLED_GZ: &[u8] = include_bytes!("../../data/genai-prices.json.gz");

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

/// When a price other than an entry's base price applies.
#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    /// From this unix second on (a dated price change).
    From(i64),
    /// Between two times of day, in seconds since midnight UTC (wraps past midnight).
    Hours(u32, u32),
}

impl When {
    fn active(self, unix_s: i64) -> bool {
        match self {
            When::From(t) => unix_s >= t,
            When::Hours(start, end) => {
                let s = unix_s.rem_euclid(86_400) as u32;
                if end < start {
                    s >= start || s < end
                } else {
                    s >= start && s < end
                }
            }
        }
    }
}

/// A price that replaces the base price from a date on, or during some hours of each day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceChange {
    /// `YYYY-MM-DD` (UTC) from which this price applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `[start, end]` times of day (UTC) during which this price applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<[String; 2]>,
    #[serde(flatten)]
    pub price: Price,
    #[serde(skip)]
    when: When,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceEntry {
    pub provider: String,
    pub id: String,
    /// The base price (the one without a date or hours).
    #[serde(flatten)]
    pub price: Price,
    pub origin: Origin,
    /// Later prices; the last one in effect wins over the base price.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<PriceChange>,
}

impl PriceEntry {
    /// The price in effect at `unix_s`.
    pub fn price_at(&self, unix_s: i64) -> Price {
        self.changes
            .iter()
            .rev()
            .find(|c| c.when.active(unix_s))
            .map_or(self.price, |c| c.price)
    }
}

/// What a lookup found: the price, the entry it came from and the name that matched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PriceMatch {
    /// The price in effect at the time asked about (now, for [`PriceTable::lookup`]).
    pub price: Price,
    pub provider: String,
    pub id: String,
    /// The name that matched (shows how a dated or aliased id was read).
    pub matched: String,
    pub origin: Origin,
    /// An OpenRouter `:free` variant: costs nothing whatever the base price.
    pub free: bool,
    /// Index of the entry in [`PriceTable::entries`] (none for an unlisted `:free` model).
    #[serde(skip)]
    pub entry: Option<usize>,
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

/// An override file's shape (TOML or JSON).
#[derive(Deserialize)]
struct TableFile {
    #[serde(default, alias = "models")]
    model: Vec<EntryFile>,
}

#[derive(Deserialize)]
pub(crate) struct EntryFile {
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

/// genai-prices' match rules, as `scripts/update-prices.py` keeps them; names are
/// compared lowercased.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Rule {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Not(Box<Rule>),
    Or(Vec<Rule>),
    And(Vec<Rule>),
}

impl Rule {
    fn matches(&self, s: &str) -> bool {
        match self {
            Rule::Equals(v) => s == v,
            Rule::StartsWith(v) => s.starts_with(v.as_str()),
            Rule::EndsWith(v) => s.ends_with(v.as_str()),
            Rule::Contains(v) => s.contains(v.as_str()),
            Rule::Not(r) => !r.matches(s),
            Rule::Or(rs) => rs.iter().any(|r| r.matches(s)),
            Rule::And(rs) => rs.iter().all(|r| r.matches(s)),
        }
    }
}

/// The bundled data's shape (`data/genai-prices.json`).
#[derive(Deserialize)]
struct BundledFile {
    source: String,
    as_of: String,
    providers: Vec<BundledProviderFile>,
}

#[derive(Deserialize)]
struct BundledProviderFile {
    id: String,
    provider_match: Option<Rule>,
    model_match: Option<Rule>,
    #[serde(default)]
    fallbacks: Vec<String>,
    models: Vec<BundledModelFile>,
}

#[derive(Deserialize)]
struct BundledModelFile {
    id: String,
    #[serde(rename = "match")]
    rule: Rule,
    prices: Vec<BundledPriceFile>,
}

#[derive(Deserialize)]
struct BundledPriceFile {
    input: Option<f64>,
    output: Option<f64>,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
    from: Option<String>,
    hours: Option<[String; 2]>,
}

/// A provider of the bundled data: which names it answers to, and its models in order
/// (the first whose rule matches wins, as in genai-prices).
#[derive(Clone, Debug)]
struct Provider {
    id: String,
    provider_match: Option<Rule>,
    model_match: Option<Rule>,
    fallbacks: Vec<String>,
    models: Vec<(Rule, usize)>,
}

/// Prices for models, looked up by provider and model id.
#[derive(Clone, Debug)]
pub struct PriceTable {
    /// Where the bundled data comes from (package and version).
    pub source: String,
    /// The date the bundled data was taken from its source.
    pub as_of: String,
    pub entries: Vec<PriceEntry>,
    /// Normalised override id or alias → indexes into `entries`, file order.
    by_key: HashMap<String, Vec<usize>>,
    providers: Vec<Provider>,
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

/// Provider names as sources spell them → genai-prices' provider ids.
fn canonical_provider(p: &str) -> String {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "azure_openai" | "azure.ai.openai" | "azure-openai" | "az.ai.openai" => "azure".into(),
        "openai-completions" | "openai-responses" | "openai-codex" => "openai".into(),
        "gemini" | "google-genai" | "google_genai" | "vertex_ai" | "vertexai" | "gcp.gemini"
        | "gcp.vertex_ai" | "gcp.gen_ai" | "google-vertex" | "google-gemini-cli" => "google".into(),
        "mistralai" | "mistral_ai" => "mistral".into(),
        "xai" | "x_ai" | "grok" => "x-ai".into(),
        "aws.bedrock" | "bedrock" | "amazon-bedrock" => "aws".into(),
        "moonshot" => "moonshotai".into(),
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

fn push_new(out: &mut Vec<String>, s: String) {
    if !s.is_empty() && !out.contains(&s) {
        out.push(s);
    }
}

/// `model` without a `vendor/` path and Bedrock's dotted region and vendor prefixes.
fn short_name(base: &str) -> &str {
    let mut short = base.rsplit('/').next().unwrap_or(base);
    while let Some((head, rest)) = short.split_once('.') {
        if DOTTED_PREFIXES.contains(&head) {
            short = rest;
        } else {
            break;
        }
    }
    short
}

/// The normalised names an override is looked up by, most specific first, and whether
/// `model` is a `:free` variant.
pub fn candidates(model: &str) -> (Vec<String>, bool) {
    let raw = model.trim().to_ascii_lowercase();
    // OpenRouter variants (`:free`, `:nitro`, `:beta`) and Bedrock's `-v1:0` end in `:...`.
    let (base, variant) = raw.split_once(':').unwrap_or((&raw, ""));
    let free = variant == "free";
    let mut out: Vec<String> = Vec::new();
    push_new(&mut out, normalize(base));
    let mut short = normalize(short_name(base));
    push_new(&mut out, short.clone());
    while let Some((head, last)) = short.rsplit_once('-') {
        if !is_decoration(last) {
            break;
        }
        short = head.to_string();
        push_new(&mut out, short.clone());
    }
    (out, free)
}

/// `-20250514` → `-2025-05-14` (genai-prices' names carry dashed dates), when `s` has one.
fn dash_compact_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] != b'-' || i + 9 > b.len() {
            continue;
        }
        let d = &b[i + 1..i + 9];
        let end_ok = matches!(b.get(i + 9), None | Some(b'-') | Some(b':'));
        if !end_ok || !d.starts_with(b"20") || !d.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let month = (d[4] - b'0') * 10 + (d[5] - b'0');
        let day = (d[6] - b'0') * 10 + (d[7] - b'0');
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            continue;
        }
        let date = &s[i + 1..i + 9];
        return Some(format!(
            "{}-{}-{}-{}{}",
            &s[..i],
            &date[..4],
            &date[4..6],
            &date[6..],
            &s[i + 9..]
        ));
    }
    None
}

/// The names the bundled rules are tried on, most specific first: the id as sent
/// (lowercased), without a `:variant`, without a `vendor/` or Bedrock prefix, without an
/// `@date`, then with trailing date/version segments dropped one by one; each also with
/// a compact date dashed.
fn bundled_names(model: &str) -> Vec<String> {
    let raw = model.trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let base = raw.split_once(':').map_or(raw.as_str(), |(b, _)| b);
    let mut short = short_name(base).to_string();
    if let Some((head, _)) = short.split_once('@') {
        short = head.to_string();
    }
    let mut names = vec![raw.clone(), base.to_string(), short.clone()];
    while let Some((head, last)) = short.rsplit_once('-') {
        if !is_decoration(last) {
            break;
        }
        short = head.to_string();
        names.push(short.clone());
    }
    for n in names {
        let dashed = dash_compact_date(&n);
        push_new(&mut out, n);
        if let Some(d) = dashed {
            push_new(&mut out, d);
        }
    }
    out
}

fn parse_day(date: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(date.get(..10)?, &format).ok()?;
    Some(d.midnight().assume_utc().unix_timestamp())
}

fn parse_time_of_day(t: &str) -> Option<u32> {
    let mut it = t.trim_end_matches('Z').split(':');
    let h: u32 = it.next()?.parse().ok()?;
    let m: u32 = it.next().unwrap_or("0").parse().ok()?;
    let s: u32 = it.next().unwrap_or("0").parse().ok()?;
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl PriceTable {
    /// The bundled table alone.
    pub fn bundled() -> Result<PriceTable, PricingError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(BUNDLED_GZ)
            .read_to_string(&mut text)
            .map_err(|e| PricingError::Bundled(e.to_string()))?;
        PriceTable::from_bundled_json(&text)
    }

    fn from_bundled_json(text: &str) -> Result<PriceTable, PricingError> {
        let file: BundledFile =
            serde_json::from_str(text).map_err(|e| PricingError::Bundled(e.to_string()))?;
        let mut t = PriceTable {
            source: file.source,
            as_of: file.as_of,
            entries: Vec::new(),
            by_key: HashMap::new(),
            providers: Vec::new(),
        };
        for p in file.providers {
            let mut models = Vec::with_capacity(p.models.len());
            for m in p.models {
                let bad = |why: &str| PricingError::Bundled(format!("{}/{}: {why}", p.id, m.id));
                let mut base = None;
                let mut changes = Vec::new();
                for bp in m.prices {
                    let price = Price {
                        input: bp.input.unwrap_or(0.0),
                        output: bp.output.unwrap_or(0.0),
                        cache_read: bp.cache_read,
                        cache_write: bp.cache_write,
                        reasoning: None,
                    };
                    let when = match (&bp.from, &bp.hours) {
                        (Some(d), _) => When::From(parse_day(d).ok_or_else(|| bad("bad date"))?),
                        (None, Some([a, b])) => When::Hours(
                            parse_time_of_day(a).ok_or_else(|| bad("bad time"))?,
                            parse_time_of_day(b).ok_or_else(|| bad("bad time"))?,
                        ),
                        (None, None) => {
                            base = Some(price);
                            continue;
                        }
                    };
                    changes.push(PriceChange {
                        from: bp.from,
                        hours: bp.hours,
                        price,
                        when,
                    });
                }
                let price = base.ok_or_else(|| bad("no base price"))?;
                models.push((m.rule, t.entries.len()));
                t.entries.push(PriceEntry {
                    provider: p.id.clone(),
                    id: m.id,
                    price,
                    origin: Origin::Bundled,
                    changes,
                });
            }
            t.providers.push(Provider {
                id: p.id,
                provider_match: p.provider_match,
                model_match: p.model_match,
                fallbacks: p.fallbacks,
                models,
            });
        }
        Ok(t)
    }

    /// `as_of` in unix seconds (midnight UTC), when it is a date.
    pub fn as_of_unix(&self) -> Option<i64> {
        parse_day(&self.as_of)
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

    pub(crate) fn add_overrides(&mut self, entries: Vec<EntryFile>) {
        for e in entries {
            let idx = self.entries.len();
            let mut keys = vec![e.id.clone()];
            keys.extend(e.aliases.iter().cloned());
            self.entries.push(PriceEntry {
                provider: if e.provider.is_empty() {
                    String::new()
                } else {
                    canonical_provider(&e.provider)
                },
                id: e.id,
                price: Price {
                    input: e.input,
                    output: e.output,
                    cache_read: e.cache_read,
                    cache_write: e.cache_write,
                    reasoning: e.reasoning,
                },
                origin: Origin::Override,
                changes: Vec::new(),
            });
            for k in keys {
                // Both `vendor/model` and `model` find an OpenRouter-style id.
                let short = k.rsplit('/').next().unwrap_or(&k);
                for key in [normalize(&k), normalize(short)] {
                    let slot = self.by_key.entry(key).or_default();
                    if !slot.contains(&idx) {
                        slot.push(idx);
                    }
                }
            }
        }
    }

    /// An override for `keys`: with `strict`, only one for `provider` (or for any
    /// provider when the entry or the question names none).
    fn find_override(
        &self,
        keys: &[String],
        provider: Option<&str>,
        strict: bool,
    ) -> Option<(usize, String)> {
        for key in keys {
            let Some(idxs) = self.by_key.get(key) else {
                continue;
            };
            let fits = |&&i: &&usize| {
                let p = self.entries[i].provider.as_str();
                !strict || p.is_empty() || provider.is_none_or(|want| want == p)
            };
            if let Some(&i) = idxs.iter().find(fits) {
                return Some((i, key.clone()));
            }
        }
        None
    }

    /// The bundled provider a source's provider name stands for.
    fn provider_index(&self, name: &str) -> Option<usize> {
        self.providers
            .iter()
            .position(|p| p.id == name)
            .or_else(|| {
                self.providers
                    .iter()
                    .position(|p| p.provider_match.as_ref().is_some_and(|r| r.matches(name)))
            })
    }

    /// The first model of provider `p` (then of its fallback providers) matching a name.
    fn find_in_provider(&self, p: usize, names: &[String]) -> Option<(usize, String)> {
        let order = std::iter::once(p).chain(
            self.providers[p]
                .fallbacks
                .iter()
                .filter_map(|f| self.providers.iter().position(|q| &q.id == f)),
        );
        let order: Vec<usize> = order.collect();
        for name in names {
            for &q in &order {
                if let Some((_, i)) = self.providers[q]
                    .models
                    .iter()
                    .find(|(rule, _)| rule.matches(name))
                {
                    return Some((*i, name.clone()));
                }
            }
        }
        None
    }

    /// Without a known provider: the providers whose model names look like `names`
    /// (genai-prices' `model_match`), then OpenRouter for a `vendor/model` id.
    fn find_by_model(&self, names: &[String]) -> Option<(usize, String)> {
        for (p, prov) in self.providers.iter().enumerate() {
            let looks = prov
                .model_match
                .as_ref()
                .is_some_and(|r| names.iter().any(|n| r.matches(n)));
            if looks && let Some(found) = self.find_in_provider(p, names) {
                return Some(found);
            }
        }
        if names.first().is_some_and(|n| n.contains('/')) {
            let p = self.providers.iter().position(|p| p.id == "openrouter")?;
            return self.find_in_provider(p, names);
        }
        None
    }

    /// Finds the price of `model` (served by `provider`, when known) in effect now.
    pub fn lookup(&self, provider: Option<&str>, model: &str) -> Result<PriceMatch, NoMatch> {
        self.lookup_at(provider, model, now_s())
    }

    /// Finds the price of `model` in effect at `unix_s`. Precedence: an override for
    /// the provider, the bundled entry of the provider (or of its fallbacks), any
    /// override of that name, then a bundled entry of a provider the name looks like.
    pub fn lookup_at(
        &self,
        provider: Option<&str>,
        model: &str,
        unix_s: i64,
    ) -> Result<PriceMatch, NoMatch> {
        let (keys, free) = candidates(model);
        let names = bundled_names(model);
        let provider = provider.map(canonical_provider).filter(|p| !p.is_empty());
        let known = provider.as_deref().and_then(|p| self.provider_index(p));
        let found = self
            .find_override(&keys, provider.as_deref(), true)
            .or_else(|| known.and_then(|p| self.find_in_provider(p, &names)))
            .or_else(|| self.find_override(&keys, provider.as_deref(), false))
            .or_else(|| self.find_by_model(&names));
        if let Some((i, matched)) = found {
            let e = &self.entries[i];
            return Ok(PriceMatch {
                price: if free {
                    Price::default()
                } else {
                    e.price_at(unix_s)
                },
                provider: e.provider.clone(),
                id: e.id.clone(),
                matched,
                origin: e.origin,
                free,
                entry: Some(i),
            });
        }
        if free {
            return Ok(PriceMatch {
                price: Price::default(),
                provider: provider.unwrap_or_default(),
                id: model.to_string(),
                matched: model.to_ascii_lowercase(),
                origin: Origin::Bundled,
                free: true,
                entry: None,
            });
        }
        let mut tried = keys;
        for n in names {
            push_new(&mut tried, n);
        }
        Err(NoMatch {
            model: model.to_string(),
            tried,
        })
    }

    /// The price of a match at `unix_s` (a `:free` variant costs nothing).
    pub fn price_of(&self, m: &PriceMatch, unix_s: i64) -> Price {
        match m.entry {
            Some(i) if !m.free => self.entries[i].price_at(unix_s),
            _ => Price::default(),
        }
    }
}

/// Reads an override file: the bundled shape (`[[model]]` / `{"model": [...]}`) or
/// OpenClaw's config (`models.providers.<name>.models[].cost`), as TOML or JSON.
pub(crate) fn parse_overrides(text: &str) -> Result<Vec<EntryFile>, String> {
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

    /// 2026-11-15T20:00:00Z: a fixed time, so dated price changes never age these tests
    /// (20:00 UTC is outside DeepSeek's daytime window).
    const AT: i64 = 1_794_772_800;

    #[test]
    fn bundled_table_loads_and_is_dated() {
        let t = PriceTable::bundled().unwrap();
        assert!(t.source.starts_with("genai-prices "), "{}", t.source);
        assert!(parse_day(&t.as_of).is_some(), "{}", t.as_of);
        assert!(t.entries.len() > 1000, "{}", t.entries.len());
        for provider in [
            "openai",
            "anthropic",
            "google",
            "mistral",
            "deepseek",
            "x-ai",
            "openrouter",
            "aws",
            "azure",
        ] {
            assert!(
                t.entries.iter().any(|e| e.provider == provider),
                "{provider}"
            );
        }
    }

    /// The readable data/genai-prices.json and the gzipped copy compiled in are the same.
    #[test]
    fn bundled_gzip_is_the_readable_file() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/genai-prices.json");
        let readable = std::fs::read_to_string(path).unwrap();
        let mut compiled = String::new();
        flate2::read::GzDecoder::new(BUNDLED_GZ)
            .read_to_string(&mut compiled)
            .unwrap();
        assert!(readable == compiled, "run scripts/update-prices.py again");
    }

    /// Known list prices (USD per million input / output tokens) of current models from
    /// six providers, as genai-prices has them.
    #[test]
    fn known_prices_of_current_models() {
        let t = PriceTable::bundled().unwrap();
        let cases: &[(&str, &str, &str, f64, f64)] = &[
            ("openai", "gpt-5", "gpt-5", 1.25, 10.0),
            ("openai", "gpt-5-mini", "gpt-5-mini", 0.25, 2.0),
            ("openai", "gpt-4.1", "gpt-4.1", 2.0, 8.0),
            ("openai", "gpt-4o", "gpt-4o", 2.5, 10.0),
            ("openai", "o3", "o3", 2.0, 8.0),
            (
                "anthropic",
                "claude-sonnet-4-5",
                "claude-sonnet-4-5",
                3.0,
                15.0,
            ),
            ("anthropic", "claude-opus-4-5", "claude-opus-4-5", 5.0, 25.0),
            (
                "anthropic",
                "claude-haiku-4-5",
                "claude-haiku-4-5",
                1.0,
                5.0,
            ),
            ("google", "gemini-2.5-pro", "gemini-2.5-pro", 1.25, 10.0),
            ("google", "gemini-2.5-flash", "gemini-2.5-flash", 0.3, 2.5),
            ("mistral", "mistral-large-latest", "mistral-large", 2.0, 6.0),
            ("mistral", "codestral-latest", "codestral", 0.3, 0.9),
            ("xai", "grok-4", "grok-4-0709", 3.0, 15.0),
            ("xai", "grok-code-fast-1", "grok-code-fast-1", 0.2, 1.5),
            ("deepseek", "deepseek-chat", "deepseek-chat", 0.135, 0.55),
        ];
        for &(provider, model, id, input, output) in cases {
            let m = t
                .lookup_at(Some(provider), model, AT)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                (m.id.as_str(), m.price.input, m.price.output, m.origin),
                (id, input, output, Origin::Bundled),
                "{provider}/{model}"
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
            // Reasoning is part of output: 1 000 × 1.10 + 3 000 × 4.40 = 14 300 µ$
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
            // Google through the vertex provider name. 10 000 × 1.25 + 2 000 × 10 = 32 500 µ$
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
            // DeepSeek cache hit at night (base price):
            // (1 000 − 600) × 0.135 + 600 × 0.035 + 100 × 0.55 = 54 + 21 + 55 = 130 µ$
            ("deepseek", "deepseek-chat", 1_000, 100, 600, 0, 0, 0.00013),
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
                .lookup_at(Some(provider), model, AT)
                .unwrap_or_else(|e| panic!("{e}"));
            let got = m.price.cost(&usage(i, o, cr, cw, r)).unwrap();
            assert!(
                close(got, want),
                "{provider}/{model}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn dated_and_aliased_ids_resolve_to_the_family() {
        let t = PriceTable::bundled().unwrap();
        for (provider, model, id) in [
            (None, "claude-sonnet-4-20250514", "claude-sonnet-4-0"),
            (
                Some("anthropic"),
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5",
            ),
            (None, "claude-opus-4-1-20250805", "claude-opus-4-1"),
            (None, "claude-3-5-sonnet@20240620", "claude-3-5-sonnet"),
            (
                Some("aws.bedrock"),
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "regional.anthropic.claude-3-7-sonnet-20250219-v1:0",
            ),
            (
                None,
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
                "claude-3-7-sonnet-latest",
            ),
            (Some("openai"), "gpt-4.1-2025-04-14", "gpt-4.1"),
            (None, "openai/gpt-4.1-mini", "gpt-4.1-mini"),
            (Some("openai"), "gpt-4-0613", "gpt-4"),
            (Some("openai"), "o3-mini-2025-01-31", "o3-mini"),
            (Some("openai"), "gpt-5-chat-latest", "gpt-5"),
            (
                Some("google"),
                "gemini-2.5-pro-preview-06-05",
                "gemini-2.5-pro",
            ),
            (None, "GPT-4o", "gpt-4o"),
            (None, "x-ai/grok-4", "grok-4-0709"),
            (None, "kimi-k2", "kimi-k2"),
            (Some("azure"), "gpt-4o-2024-11-20", "gpt-4o"),
            (Some("openclaw"), "claude-sonnet-4-5", "claude-sonnet-4-5"),
        ] {
            let m = t
                .lookup_at(provider, model, AT)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.id, id, "{provider:?}/{model}");
        }
        // A compact date in an OpenRouter id is read as genai-prices' dashed one.
        assert_eq!(
            dash_compact_date("x-20250514").as_deref(),
            Some("x-2025-05-14")
        );
        assert_eq!(dash_compact_date("x-20251399"), None);
    }

    #[test]
    fn prices_change_on_their_date_and_hours() {
        let t = PriceTable::bundled().unwrap();
        let day = |d: &str| parse_day(d).unwrap();
        // OpenAI cut o3 from 10/40 to 2/8 on 2025-06-10.
        let before = t
            .lookup_at(Some("openai"), "o3", day("2025-06-09"))
            .unwrap();
        let after = t
            .lookup_at(Some("openai"), "o3", day("2025-06-10"))
            .unwrap();
        assert_eq!((before.price.input, after.price.input), (10.0, 2.0));
        // DeepSeek's daytime price (00:30-16:30 UTC) and its night discount.
        let noon = day("2026-11-15") + 12 * 3600;
        let m = t
            .lookup_at(Some("deepseek"), "deepseek-chat", noon)
            .unwrap();
        assert_eq!(m.price.input, 0.27);
        assert_eq!(t.price_of(&m, AT).input, 0.135);
    }

    #[test]
    fn unknown_models_stay_unpriced() {
        let t = PriceTable::bundled().unwrap();
        for (provider, model) in [
            (Some("openai"), "llama-local-7b"),
            (Some("local"), "my-local-model"),
            (None, "fake-model"),
            (None, "m"),
            (Some("openai"), ""),
        ] {
            let e = t.lookup_at(provider, model, AT).unwrap_err();
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
        assert_eq!((m.price.input, m.origin), (5.0, Origin::Override));
        // ...and the bundled one is still there for the real provider.
        let m = t.lookup(Some("openai"), "gpt-4o").unwrap();
        assert_eq!((m.price.input, m.origin), (2.5, Origin::Bundled));
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
        // An override of a bundled model wins over genai-prices, dated ids included.
        let json_path = dir.path().join("p.json");
        std::fs::write(
            &json_path,
            r#"{"model":[{"provider":"openai","id":"gpt-4o","input":1,"output":1},
                         {"id":"claude-sonnet-4-5","input":2,"output":3}]}"#,
        )
        .unwrap();
        let t = PriceTable::load(Some(&json_path)).unwrap();
        let m = t.lookup(Some("openai"), "gpt-4o-2024-08-06").unwrap();
        assert_eq!((m.price.input, m.origin), (1.0, Origin::Override));
        let m = t
            .lookup(Some("anthropic"), "claude-sonnet-4-5-20250929")
            .unwrap();
        assert_eq!((m.price.output, m.origin), (3.0, Origin::Override));
        // Other models keep genai-prices' price.
        let m = t.lookup(Some("openai"), "gpt-4o-mini").unwrap();
        assert_eq!((m.price.input, m.origin), (0.15, Origin::Bundled));
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
