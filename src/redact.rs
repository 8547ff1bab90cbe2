//! Redaction of secrets before anything is stored, pushed, streamed or logged.
//!
//! Two kinds of rules:
//! - values under sensitive keys (`api_key`, `token`, `password`, `Authorization`, `Cookie`, ...),
//!   both in JSON maps and in free text (`key=value`, `key: value`, `"key":"value"`);
//! - strings that look like credentials wherever they appear: OpenAI/Anthropic `sk-…` keys,
//!   Google `AIza…` keys, Slack `xox…` tokens, `Bearer …` tokens, JWTs, and passwords in URLs.
//!
//! The scanner is hand-written (one pass over the bytes, no allocation when nothing matches),
//! so it is cheap enough to run on the submitting thread as a pipeline `Transform`.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::model::{CappedText, Record, SharedMap};
use crate::pipeline::Transform;
use crate::settings::{Setting, parse_bool};
use std::cell::RefCell;
use std::sync::Arc;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

#[derive(Clone, Debug, PartialEq)]
pub struct RedactConfig {
    pub enabled: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig { enabled: true }
    }
}

pub const SETTINGS: &[Setting<RedactConfig>] = &[Setting {
    name: "redact",
    env: "OCT_REDACT",
    default: "on",
    help: "Mask secrets (API keys, tokens, passwords, cookies, JWTs) in captured text, attributes and logs; off keeps raw content",
    set: |c, v| {
        c.enabled = parse_bool(v)?;
        Ok(())
    },
}];

/// How sure a key name is to hold a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyClass {
    Plain,
    /// `token`, `key`: counts and ids sometimes live under such names, so numbers are kept.
    Weak,
    /// `password`, `secret`, `authorization`, ...: everything under it is masked.
    Strong,
}

const STRONG_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "secrets",
    "dsn",
    "credential",
    "credentials",
    "authorization",
    "auth",
    "cookie",
    "cookies",
    "apikey",
    "privatekey",
    "accesstoken",
    "refreshtoken",
    "sessiontoken",
    "bearer",
];
const WEAK_WORDS: &[&str] = &["key", "token"];
/// Joined words that mark a secret even inside a longer word (`xApiKey`, `OPENAIAPIKEY`).
const STRONG_INFIXES: &[&str] = &[
    "password",
    "passwd",
    "credential",
    "authorization",
    "cookie",
    "apikey",
    "privatekey",
    "accesstoken",
];

/// Splits a key into lowercase words at `_ - . /` and camelCase boundaries.
fn key_words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Distinct keys remembered per thread: attribute keys repeat on every span, and
/// classifying one splits it into words.
const KEY_CACHE_MAX: usize = 4096;

// Keys are short, the cache is bounded and per thread (nothing worth a collision attack),
// and SipHash was most of a lookup's time.
type KeyClasses = std::collections::HashMap<String, KeyClass, crate::util::fast_hash::FastHashing>;

thread_local! {
    static KEY_CLASSES: std::cell::RefCell<KeyClasses> = std::cell::RefCell::default();
}

fn classify_key(key: &str) -> KeyClass {
    if key.is_empty() || key.len() > 128 {
        return KeyClass::Plain;
    }
    KEY_CLASSES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(class) = cache.get(key) {
            return *class;
        }
        let class = classify_key_words(key);
        if cache.len() >= KEY_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.to_string(), class);
        class
    })
}

/// Attribute keys that name no secret although their words say `key`: OpenClaw's
/// session keys (`agent:<id>:<channel>:...`) are routing names, which the cron, heartbeat
/// and sub-agent views read. Their values still go through the credential scan.
const NOT_SECRET_KEYS: &[&str] = &[
    "openclaw.session_key",
    "openclaw.child_session_key",
    "openclaw.requester_session_key",
];

fn classify_key_words(key: &str) -> KeyClass {
    if NOT_SECRET_KEYS.contains(&key) {
        return KeyClass::Plain;
    }
    let words = key_words(key);
    let joined: String = words.concat();
    if words.iter().any(|w| STRONG_WORDS.contains(&w.as_str()))
        || STRONG_INFIXES.iter().any(|i| joined.contains(i))
    {
        return KeyClass::Strong;
    }
    if words.iter().any(|w| WEAK_WORDS.contains(&w.as_str())) {
        return KeyClass::Weak;
    }
    KeyClass::Plain
}

/// True for a key whose values are masked.
pub fn is_sensitive_key(key: &str) -> bool {
    classify_key(key) != KeyClass::Plain
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Bytes from `i` while `pred` holds.
fn run_len(b: &[u8], i: usize, pred: impl Fn(u8) -> bool) -> usize {
    b[i..].iter().take_while(|&&c| pred(c)).count()
}

fn starts_with_ci(b: &[u8], i: usize, pat: &[u8]) -> bool {
    b.len() >= i + pat.len() && b[i..i + pat.len()].eq_ignore_ascii_case(pat)
}

/// A credential-looking token starting at `i` (which is at a word start): its length.
fn credential_at(b: &[u8], i: usize) -> Option<usize> {
    let rest = &b[i..];
    // OpenAI (`sk-`, `sk-proj-`) and Anthropic (`sk-ant-`) keys.
    if rest.starts_with(b"sk-") {
        let n = run_len(b, i, is_token_char);
        return (n >= 23).then_some(n);
    }
    // Google API keys: `AIza` and 35 more characters.
    if rest.starts_with(b"AIza") {
        let n = run_len(b, i, is_token_char);
        return (n >= 39).then_some(n);
    }
    // Slack tokens: xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-.
    if rest.len() > 5 && rest.starts_with(b"xox") && b"abposr".contains(&rest[3]) && rest[4] == b'-'
    {
        let n = run_len(b, i, |c| c.is_ascii_alphanumeric() || c == b'-');
        return (n >= 15).then_some(n);
    }
    // JWT: base64url header `eyJ…` . payload `eyJ…` . signature (may be empty).
    if rest.starts_with(b"eyJ") {
        let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        let h = run_len(b, i, b64);
        let p_start = i + h + 1;
        if h >= 10 && b.get(i + h) == Some(&b'.') && b[p_start..].starts_with(b"eyJ") {
            let p = run_len(b, p_start, b64);
            if p >= 10 && b.get(p_start + p) == Some(&b'.') {
                let s = run_len(b, p_start + p + 1, b64);
                return Some(h + 1 + p + 1 + s);
            }
        }
    }
    None
}

/// `Bearer <token>` at `i`: (length of the scheme and spaces, length of the token).
fn bearer_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if !starts_with_ci(b, i, b"bearer") {
        return None;
    }
    let spaces = run_len(b, i + 6, |c| c == b' ' || c == b'\t');
    if spaces == 0 {
        return None;
    }
    let start = i + 6 + spaces;
    let n = run_len(b, start, |c| {
        c.is_ascii_alphanumeric() || b"-._~+/=".contains(&c)
    });
    (n >= 8).then_some((6 + spaces, n))
}

/// The value after a sensitive key at `i` (just past the key): (value start, value end, quoted).
/// Accepts `=`, `:` and the JSON/YAML forms `"key": "value"`, `key = value`.
fn value_after_key(b: &[u8], mut i: usize, to_line_end: bool) -> Option<(usize, usize)> {
    // A closing quote of a quoted key.
    if matches!(b.get(i), Some(b'"') | Some(b'\'')) {
        i += 1;
    }
    i += run_len(b, i, |c| c == b' ' || c == b'\t');
    match b.get(i) {
        Some(b'=') | Some(b':') => i += 1,
        _ => return None,
    }
    // `key::path` or `http://`-like forms are not assignments.
    if matches!(b.get(i), Some(b':') | Some(b'/') | Some(b'=')) {
        return None;
    }
    i += run_len(b, i, |c| c == b' ' || c == b'\t');
    match b.get(i) {
        Some(&q) if q == b'"' || q == b'\'' => {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j] != q && b[j] != b'\n' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(b.len());
            (end > start).then_some((start, end))
        }
        Some(_) => {
            let end = if to_line_end {
                i + run_len(b, i, |c| c != b'\n' && c != b'\r')
            } else {
                let first = run_len(b, i, |c| !is_value_end(c));
                // `Authorization: Basic abc` masks the credential after the scheme too.
                let scheme = &b[i..i + first];
                let is_scheme = [&b"basic"[..], b"bearer", b"token", b"digest"]
                    .iter()
                    .any(|s| scheme.eq_ignore_ascii_case(s));
                if is_scheme && b.get(i + first) == Some(&b' ') {
                    let more = run_len(b, i + first + 1, |c| !is_value_end(c));
                    i + first + 1 + more
                } else {
                    i + first
                }
            };
            (end > i).then_some((i, end))
        }
        None => None,
    }
}

fn is_value_end(c: u8) -> bool {
    c.is_ascii_whitespace() || b",;&\"'()[]{}<>`".contains(&c)
}

fn is_numeric(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|c| c.is_ascii_digit() || *c == b'.')
}

/// False when `b` cannot hold anything [`redact_text`] masks: every rule needs a `:` or
/// `=` (a URL password, a `key: value`), or one of the credential prefixes (`sk-`,
/// `AIza`, `xox?-`, `eyJ`, `bearer `). Most attribute values have none of them, and this
/// one pass costs less than the scanner's word-by-word look.
fn may_hold_secret(b: &[u8]) -> bool {
    // The bytes that can end a rule's trigger; most bytes are none of them.
    static TRIGGERS: [bool; 256] = {
        let bytes = b":=-IJ \t";
        let mut t = [false; 256];
        let mut i = 0;
        while i < bytes.len() {
            t[bytes[i] as usize] = true;
            i += 1;
        }
        t
    };
    (0..b.len()).any(|i| {
        TRIGGERS[b[i] as usize]
            && match b[i] {
                b':' | b'=' => true,
                b'-' => (i >= 2 && &b[i - 2..i] == b"sk") || (i >= 4 && &b[i - 4..i - 1] == b"xox"),
                b'I' => i >= 1 && b[i - 1] == b'A' && b[i + 1..].starts_with(b"za"),
                b'J' => i >= 2 && &b[i - 2..i] == b"ey",
                b' ' | b'\t' => i >= 6 && b[i - 6..i].eq_ignore_ascii_case(b"bearer"),
                _ => false,
            }
    })
}

/// Masks secrets in free text. Borrowed (no copy) when nothing was found.
pub fn redact_text(s: &str) -> Cow<'_, str> {
    if !may_hold_secret(s.as_bytes()) {
        return Cow::Borrowed(s);
    }
    scan_text(s)
}

/// The scanner behind [`redact_text`].
fn scan_text(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out: Option<String> = None;
    // Everything before `copied` is already in `out` (or unchanged).
    let mut copied = 0;
    let mask = |out: &mut Option<String>, copied: &mut usize, from: usize, to: usize| {
        let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
        o.push_str(&s[*copied..from]);
        o.push_str(MASK);
        *copied = to;
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let word_start = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if !c.is_ascii_alphanumeric() || !word_start {
            // Passwords in URLs: scheme://user:password@host.
            if c == b':' && b[i..].starts_with(b"://") {
                let u = i + 3;
                let user = run_len(b, u, |c| !b"/@: \t\n\"'".contains(&c));
                if user > 0 && b.get(u + user) == Some(&b':') {
                    let p = u + user + 1;
                    let pass = run_len(b, p, |c| !b"/@ \t\n\"'".contains(&c));
                    if pass > 0 && b.get(p + pass) == Some(&b'@') {
                        mask(&mut out, &mut copied, p, p + pass);
                        i = p + pass;
                        continue;
                    }
                }
            }
            i += 1;
            continue;
        }
        if let Some(n) = credential_at(b, i) {
            mask(&mut out, &mut copied, i, i + n);
            i += n;
            continue;
        }
        if let Some((scheme, n)) = bearer_at(b, i) {
            mask(&mut out, &mut copied, i + scheme, i + scheme + n);
            i += scheme + n;
            continue;
        }
        // An identifier: maybe a key followed by its value.
        let ident = run_len(b, i, is_ident_char);
        let key = &s[i..i + ident];
        let to_line_end =
            key.eq_ignore_ascii_case("cookie") || key.eq_ignore_ascii_case("set-cookie");
        // Only an identifier followed by `=` or `:` is worth classifying.
        if let Some((vs, ve)) = value_after_key(b, i + ident, to_line_end) {
            let class = classify_key(key);
            if class != KeyClass::Plain
                && !(class == KeyClass::Weak && is_numeric(&b[vs..ve]))
                && &s[vs..ve] != MASK
            {
                mask(&mut out, &mut copied, vs, ve);
                i = ve;
                continue;
            }
        }
        // Skip the rest of the word (credentials only start at a word start).
        i += run_len(b, i, |c| c.is_ascii_alphanumeric()).max(1);
    }
    match out {
        None => Cow::Borrowed(s),
        Some(mut o) => {
            o.push_str(&s[copied..]);
            Cow::Owned(o)
        }
    }
}

/// Masks in place; true when something changed.
pub fn redact_string(s: &mut String) -> bool {
    match redact_text(s) {
        Cow::Borrowed(_) => false,
        Cow::Owned(o) => {
            *s = o;
            true
        }
    }
}

thread_local! {
    /// The last shared map redacted on this thread, and its redacted form: the items of
    /// one export share their resource, so it is redacted once per export, not per item.
    static LAST_SHARED: RefCell<Option<(SharedMap, SharedMap)>> = const { RefCell::new(None) };
}

/// Redacts a map shared between records; the records that shared it share the result.
pub fn redact_shared(m: &mut SharedMap) {
    if m.is_empty() {
        return;
    }
    LAST_SHARED.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((from, to)) = last.as_ref()
            && Arc::ptr_eq(from, m)
        {
            *m = to.clone();
            return;
        }
        let from = m.clone();
        let mut redacted = (**m).clone();
        redact_map(&mut redacted);
        *m = SharedMap::new(redacted);
        // Holding `from` keeps its address from being reused by another map.
        *last = Some((from, m.clone()));
    });
}

/// Masks every value under a sensitive key, and secrets inside every other string.
pub fn redact_map(m: &mut Map<String, Value>) {
    for (k, v) in m.iter_mut() {
        match classify_key(k) {
            KeyClass::Plain => redact_value(v),
            class => mask_value(v, class),
        }
    }
}

fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            redact_string(s);
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(m) => redact_map(m),
        _ => {}
    }
}

/// A value under a sensitive key: strings masked whole (numbers too under strong keys).
fn mask_value(v: &mut Value, class: KeyClass) {
    match v {
        Value::String(s) if !s.is_empty() => *s = MASK.to_string(),
        Value::Number(_) if class == KeyClass::Strong => *v = Value::String(MASK.into()),
        Value::Array(items) => items.iter_mut().for_each(|i| mask_value(i, class)),
        Value::Object(m) => {
            for (_, inner) in m.iter_mut() {
                mask_value(inner, class);
            }
        }
        _ => {}
    }
}

fn redact_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        redact_string(s);
    }
}

fn redact_capped(t: &mut Option<CappedText>) {
    if let Some(t) = t {
        redact_string(&mut t.text);
    }
}

/// Masks secrets in everything free-form a record carries.
pub fn redact_record(r: &mut Record) {
    match r {
        Record::Span(s) => {
            redact_capped(&mut s.input);
            redact_capped(&mut s.output);
            redact_opt(&mut s.status_message);
            redact_string(&mut s.name);
            redact_map(&mut s.attributes);
            redact_shared(&mut s.resource);
        }
        Record::Event(e) => {
            redact_opt(&mut e.message);
            redact_opt(&mut e.stack_trace);
            redact_map(&mut e.attributes);
            redact_shared(&mut e.resource);
        }
        Record::Metric(m) => {
            redact_map(&mut m.attributes);
            redact_shared(&mut m.resource);
        }
    }
}

/// The pipeline transform: records are masked before they are queued, so the store,
/// push, export and the live tail only ever see masked data.
pub struct Redactor;

impl Transform for Redactor {
    fn apply(&self, record: &mut Record) {
        redact_record(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(s: &str) -> String {
        redact_text(s).into_owned()
    }

    proptest::proptest! {
        /// The quick filter never skips a string the scanner would change.
        #[test]
        fn the_filter_never_hides_a_secret(
            s in "([a-zA-Z0-9 \t._/@'\"-]|sk-|AIza|xox[abposr]-|eyJ|[bB]earer |://|[:=]|token|key|password){0,24}"
        ) {
            let scanned = scan_text(&s);
            proptest::prop_assert!(
                may_hold_secret(s.as_bytes()) || matches!(scanned, Cow::Borrowed(_)),
                "{s:?} -> {scanned:?}"
            );
        }
    }

    #[test]
    fn a_shared_resource_is_redacted_once_for_every_record_sharing_it() {
        use crate::model::{Span, SpanId, SpanKind, TraceId};
        let mut m = Map::new();
        m.insert("api_key".into(), json!("abc123secret"));
        m.insert("service.name".into(), json!("agent"));
        let shared = SharedMap::new(m);
        let mut records: Vec<Record> = (0..3)
            .map(|_| {
                let mut s = Span::new(
                    TraceId::generate(),
                    SpanId::generate(),
                    "x".into(),
                    SpanKind::Other,
                    1,
                );
                s.resource = shared.clone();
                Record::Span(Box::new(s))
            })
            .collect();
        let mut other = Map::new();
        other.insert("token".into(), json!("t0ps3cret"));
        let mut lone = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "y".into(),
            SpanKind::Other,
            1,
        );
        lone.resource = SharedMap::new(other);
        records.push(Record::Span(Box::new(lone)));
        records.iter_mut().for_each(redact_record);
        let res = |r: &Record| match r {
            Record::Span(s) => s.resource.clone(),
            _ => unreachable!(),
        };
        assert_eq!(res(&records[0])["api_key"], MASK);
        assert_eq!(res(&records[0])["service.name"], "agent");
        assert!(Arc::ptr_eq(&res(&records[0]), &res(&records[2])));
        assert_eq!(res(&records[3])["token"], MASK);
        // The original map is untouched: a record elsewhere holding it keeps its own view.
        assert_eq!(shared["api_key"], "abc123secret");
    }

    #[test]
    fn openai_and_anthropic_keys() {
        assert_eq!(
            r("use sk-proj-abcDEF1234567890abcdefXYZ now"),
            "use [REDACTED] now"
        );
        assert_eq!(
            r("key sk-ant-api03-AbCdEf0123456789_xyz-QQ."),
            "key [REDACTED]."
        );
        assert_eq!(r("sk-1234567890abcdefghijklmn"), "[REDACTED]");
        // Too short to be a key, or inside a word.
        assert_eq!(r("sk-learn is a library"), "sk-learn is a library");
        assert_eq!(
            r("task-1234567890abcdefghijklmn"),
            "task-1234567890abcdefghijklmn"
        );
    }

    #[test]
    fn google_keys() {
        let k = "AIzaSyA1234567890abcdefghijklmnopqrstuv";
        assert_eq!(k.len(), 39);
        assert_eq!(r(&format!("k={k}x")), "k=[REDACTED]");
        assert_eq!(r(&format!("url?q=1 {k}")), "url?q=1 [REDACTED]");
        assert_eq!(r("AIza is short"), "AIza is short");
    }

    #[test]
    fn openclaw_session_keys_are_not_secrets() {
        let mut m = Map::new();
        m.insert(
            "openclaw.session_key".into(),
            json!("agent:main:cron:job-7"),
        );
        m.insert(
            "openclaw.child_session_key".into(),
            json!("agent:main:subagent:u1"),
        );
        m.insert("session_key".into(), json!("s3cr3t"));
        m.insert(
            "openclaw.requester_session_key".into(),
            json!("sk-abcdefghijklmnopqrstuvwx"),
        );
        redact_map(&mut m);
        assert_eq!(m["openclaw.session_key"], "agent:main:cron:job-7");
        assert_eq!(m["openclaw.child_session_key"], "agent:main:subagent:u1");
        assert_eq!(m["session_key"], MASK);
        assert_eq!(m["openclaw.requester_session_key"], MASK);
    }

    #[test]
    fn slack_tokens() {
        assert_eq!(
            r("token xoxb-123456789012-abcdefABCDEF ok"),
            "token [REDACTED] ok"
        );
        assert_eq!(r("xoxp-1-2-3-abcdef0123"), "[REDACTED]");
        assert_eq!(r("xoxb-1"), "xoxb-1");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            r("curl -H 'Authorization: Bearer abc.def-123_456'"),
            "curl -H 'Authorization: [REDACTED]'"
        );
        assert_eq!(
            r("sent bearer   0123456789abcdef to the server"),
            "sent bearer   [REDACTED] to the server"
        );
        assert_eq!(r("the bearer of bad news"), "the bearer of bad news");
    }

    #[test]
    fn jwts() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(r(&format!("session {jwt} end")), "session [REDACTED] end");
        // Unsigned token (empty signature).
        assert_eq!(r("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4eXoifQ."), "[REDACTED]");
        assert_eq!(r("eyJust a word"), "eyJust a word");
    }

    #[test]
    fn key_value_pairs_in_text() {
        assert_eq!(r("password=hunter2 next"), "password=[REDACTED] next");
        assert_eq!(r("db_password: s3cret!"), "db_password: [REDACTED]");
        assert_eq!(
            r(r#"{"api_key":"abc123","model":"gpt-4o"}"#),
            r#"{"api_key":"[REDACTED]","model":"gpt-4o"}"#
        );
        assert_eq!(
            r(r#"{"client_secret": "x y z"}"#),
            r#"{"client_secret": "[REDACTED]"}"#
        );
        assert_eq!(
            r("https://api.example.com/v1?api_key=abc&limit=5"),
            "https://api.example.com/v1?api_key=[REDACTED]&limit=5"
        );
        assert_eq!(r("OPENAI_API_KEY=xyz"), "OPENAI_API_KEY=[REDACTED]");
        assert_eq!(
            r("SENTRY_DSN=https://k@o1.ingest.io/1"),
            "SENTRY_DSN=[REDACTED]"
        );
        assert_eq!(r("x-auth-token: t0k3n"), "x-auth-token: [REDACTED]");
        assert_eq!(
            r("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            r("Cookie: sid=abc; theme=dark\nnext line"),
            "Cookie: [REDACTED]\nnext line"
        );
        assert_eq!(r("credentials=a:b"), "credentials=[REDACTED]");
        // Counts under token-ish names stay.
        assert_eq!(r("max_token=512"), "max_token=512");
        assert_eq!(r("pin password=123456"), "pin password=[REDACTED]");
    }

    #[test]
    fn url_passwords() {
        assert_eq!(
            r("postgres://app:hunter2@db:5432/main"),
            "postgres://app:[REDACTED]@db:5432/main"
        );
        assert_eq!(
            r("see https://example.com:8080/path"),
            "see https://example.com:8080/path"
        );
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "The monkey ate 3 bananas and typed on the keyboard.",
            "Tokens: the model used 1200 input tokens and 300 output tokens.",
            "input_tokens=42 output_tokens=7 total_tokens=49",
            "Key points: be concise.",
            "The secretary filed the report at 10:30.",
            "Turkey and whiskey; a keynote speech; the primary keys of a table.",
            "ask-me-anything skills, risk-free, desk-1234567890123456789012",
            "He said: password reset emails go out at noon.",
            "Passwords must be long",
            "https://docs.example.com/guide?page=2&lang=en",
            "ratio 3:4, time 12:30:45, C:\\Users\\me",
            "json {\"gen_ai.usage.input_tokens\": 10, \"model\": \"claude\"}",
            "日本語のテキスト and émojis 🎉 stay as they are",
            "",
        ] {
            assert_eq!(r(s), s, "changed: {s}");
            assert!(matches!(redact_text(s), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn sensitive_keys() {
        for k in [
            "api_key",
            "apiKey",
            "X-Api-Key",
            "OPENAI_API_KEY",
            "access_token",
            "refreshToken",
            "client_secret",
            "password",
            "db.password",
            "SENTRY_DSN",
            "aws_credentials",
            "Authorization",
            "Set-Cookie",
            "token",
            "private_key",
        ] {
            assert!(is_sensitive_key(k), "{k}");
        }
        for k in [
            "gen_ai.usage.input_tokens",
            "monkey",
            "keyboard",
            "model",
            "author",
            "tokens",
            "max_tokens",
            "name",
            "secretary",
        ] {
            assert!(!is_sensitive_key(k), "{k}");
        }
        // Weak: masked as strings, numbers (counts) kept.
        assert_eq!(classify_key("llm.token_count.prompt"), KeyClass::Weak);
    }

    #[test]
    fn maps_mask_values_and_scan_strings() {
        let mut m = json!({
            "api_key": "abc",
            "headers": {"Authorization": "Bearer xyzxyzxyz", "accept": "json"},
            "password": 1234,
            "llm.token_count.prompt": 17,
            "note": "my key is sk-abcdefghijklmnopqrstuvwxyz",
            "list": ["fine", "password=p"],
            "nested": {"secrets": ["a", "b"]},
        });
        let Value::Object(map) = &mut m else { panic!() };
        redact_map(map);
        assert_eq!(
            m,
            json!({
                "api_key": "[REDACTED]",
                "headers": {"Authorization": "[REDACTED]", "accept": "json"},
                "password": "[REDACTED]",
                "llm.token_count.prompt": 17,
                "note": "my key is [REDACTED]",
                "list": ["fine", "password=[REDACTED]"],
                "nested": {"secrets": ["[REDACTED]", "[REDACTED]"]},
            })
        );
    }

    #[test]
    fn records_are_masked_by_the_transform() {
        use crate::model::{Event, EventType, Span, SpanId, SpanKind, TraceId};
        let mut s = Span::new(
            TraceId::generate(),
            SpanId::generate(),
            "chat x".into(),
            SpanKind::LlmCall,
            1,
        );
        s.input = Some(CappedText::new(
            "my key: sk-abcdefghijklmnopqrstuvwxyz".into(),
            1000,
        ));
        s.attributes.insert("api_key".into(), json!("k"));
        let mut rec = Record::Span(Box::new(s));
        Redactor.apply(&mut rec);
        let Record::Span(s) = &rec else { panic!() };
        assert_eq!(s.input.as_ref().unwrap().text, "my key: [REDACTED]");
        assert_eq!(s.attributes["api_key"], json!("[REDACTED]"));
        let mut e = Event::new(EventType::Error, "E".into(), 1);
        e.message = Some("failed with token=abc".into());
        let mut rec = Record::Event(Box::new(e));
        Redactor.apply(&mut rec);
        let Record::Event(e) = &rec else { panic!() };
        assert_eq!(e.message.as_deref(), Some("failed with token=[REDACTED]"));
    }
}
