//! The EU AI Act package (`openclaw-trace export --format eu-ai-act`): one JSON file,
//! verifiable offline, describing what the system did over a period (Articles 12, 13,
//! 19 and 26(6)): systems, models and tools used, runs, calls, tokens and cost, errors
//! and incidents, data categories seen, human oversight points, retention, the audit
//! chain's range, head and signed checkpoints, the public key, a digest over the package
//! and an Ed25519 signature of that digest.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::audit::{SignedHead, Signer, hex_bytes};

pub const FORMAT: &str = "openclaw-trace-eu-ai-act/1";

/// What the package covers.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub from_ns: Option<i64>,
    pub until_ns: Option<i64>,
    pub agent: Option<String>,
}

/// What describes the system (Article 13), from settings.
#[derive(Clone, Debug, Default)]
pub struct SystemInfo {
    pub provider: Option<String>,
    pub intended_purpose: Option<String>,
    pub contact: Option<String>,
    pub retention_days: u64,
    pub usage_retention_days: u64,
    pub redaction: bool,
}

/// JSON with object keys sorted and no spaces: what the digest is taken over.
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}:{}",
                        serde_json::to_string(k).unwrap_or_default(),
                        canonical(v)
                    )
                })
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// SHA-256 over the package without its `digest` and `signature` fields.
pub fn package_digest(pkg: &Value) -> String {
    let mut body = pkg.clone();
    if let Some(m) = body.as_object_mut() {
        m.remove("digest");
        m.remove("signature");
    }
    hex_bytes::encode(&Sha256::digest(canonical(&body).as_bytes()))
}

fn time_filter(
    col: &str,
    s: &Scope,
    agent_col: Option<&str>,
) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value as V;
    let mut sql = String::from(" WHERE 1=1");
    let mut args = Vec::new();
    if let Some(f) = s.from_ns {
        sql.push_str(&format!(" AND {col} >= ?"));
        args.push(V::Integer(f));
    }
    if let Some(u) = s.until_ns {
        sql.push_str(&format!(" AND {col} < ?"));
        args.push(V::Integer(u));
    }
    if let (Some(a), Some(c)) = (&s.agent, agent_col) {
        sql.push_str(&format!(" AND {c} = ?"));
        args.push(V::Text(a.clone()));
    }
    (sql, args)
}

fn rows(
    conn: &Connection,
    sql: &str,
    args: &[rusqlite::types::Value],
    f: impl Fn(&rusqlite::Row) -> rusqlite::Result<Value>,
) -> rusqlite::Result<Vec<Value>> {
    let mut stmt = conn.prepare(sql)?;
    stmt.query_map(rusqlite::params_from_iter(args), f)?
        .collect()
}

/// A word that looks like an e-mail address.
fn has_email(t: &str) -> bool {
    t.split(|c: char| c.is_whitespace() || "<>()[]\"',;".contains(c))
        .any(|w| {
            let Some((user, host)) = w.split_once('@') else {
                return false;
            };
            !user.is_empty()
                && host.contains('.')
                && !host.starts_with('.')
                && !host.ends_with('.')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        })
}

/// A run of 9 to 15 digits (spaces, dashes, dots, brackets and a leading `+` allowed
/// inside), as a phone number is written.
fn has_phone(t: &str) -> bool {
    let mut digits = 0;
    for c in t.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_digit() {
            digits += 1;
        } else if (digits > 0 && matches!(c, ' ' | '-' | '.' | '(' | ')'))
            || (digits == 0 && matches!(c, '+' | '('))
        {
            // inside a number, or its start
        } else {
            if (9..=15).contains(&digits) {
                return true;
            }
            digits = 0;
        }
    }
    false
}

/// Builds the package (signed when `signer` is given).
pub fn build(
    conn: &Connection,
    scope: &Scope,
    sys: &SystemInfo,
    signer: Option<&Signer>,
    now_ns: i64,
) -> rusqlite::Result<Value> {
    conn.execute_batch("BEGIN")?;
    let out = build_in(conn, scope, sys, signer, now_ns);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn build_in(
    conn: &Connection,
    scope: &Scope,
    sys: &SystemInfo,
    signer: Option<&Signer>,
    now_ns: i64,
) -> rusqlite::Result<Value> {
    let fmt = crate::util::time::format_ns;
    let (sw, sa) = time_filter("start_ns", scope, Some("agent_id"));
    let (ew, ea) = time_filter("time_ns", scope, Some("agent_id"));
    let agents = rows(
        conn,
        &format!("SELECT DISTINCT agent_id FROM spans{sw} AND agent_id IS NOT NULL ORDER BY 1"),
        &sa,
        |r| Ok(json!(r.get::<_, String>(0)?)),
    )?;
    let models = rows(
        conn,
        &format!(
            "SELECT COALESCE(provider, ''), COALESCE(response_model, request_model, ''), count(*),
                    COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0)
             FROM spans{sw} AND kind IN ('llm_call', 'embedding') GROUP BY 1, 2 ORDER BY 3 DESC"
        ),
        &sa,
        |r| {
            Ok(
                json!({"provider": r.get::<_, String>(0)?, "model": r.get::<_, String>(1)?,
                      "calls": r.get::<_, i64>(2)?, "input_tokens": r.get::<_, i64>(3)?,
                      "output_tokens": r.get::<_, i64>(4)?}),
            )
        },
    )?;
    let tools = rows(
        conn,
        &format!(
            "SELECT COALESCE(tool_name, name), count(*), sum(status = 'error')
             FROM spans{sw} AND kind = 'tool_call' GROUP BY 1 ORDER BY 2 DESC"
        ),
        &sa,
        |r| {
            Ok(
                json!({"tool": r.get::<_, String>(0)?, "calls": r.get::<_, i64>(1)?,
                      "failed": r.get::<_, i64>(2)?}),
            )
        },
    )?;
    let totals: Value = conn.query_row(
        &format!(
            "SELECT count(DISTINCT trace_id), sum(kind = 'llm_call'), sum(kind = 'tool_call'),
                    COALESCE(sum(CASE WHEN kind IN ('llm_call','embedding') THEN input_tokens END), 0),
                    COALESCE(sum(CASE WHEN kind IN ('llm_call','embedding') THEN output_tokens END), 0),
                    sum(CASE WHEN kind IN ('llm_call','embedding') THEN COALESCE(cost_usd, cost_computed_usd) END),
                    sum(status = 'error'), count(*), min(start_ns), max(start_ns)
             FROM spans{sw}"
        ),
        rusqlite::params_from_iter(&sa),
        |r| {
            Ok(json!({
                "runs": r.get::<_, i64>(0)?,
                "llm_calls": r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                "tool_calls": r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                "input_tokens": r.get::<_, i64>(3)?,
                "output_tokens": r.get::<_, i64>(4)?,
                "cost_usd": r.get::<_, Option<f64>>(5)?,
                "failed_spans": r.get::<_, Option<i64>>(6)?.unwrap_or(0),
                "spans": r.get::<_, i64>(7)?,
                "first_span": r.get::<_, Option<i64>>(8)?.map(fmt),
                "last_span": r.get::<_, Option<i64>>(9)?.map(fmt),
            }))
        },
    )?;
    // Errors and incidents: error events by category and type (host conditions, OOM
    // kills, restart loops and budget breaches are error events of their category).
    let incidents = rows(
        conn,
        &format!(
            "SELECT COALESCE(category, ''), name, severity, count(*), min(time_ns), max(time_ns)
             FROM events{ew} AND type = 'error' GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 500"
        ),
        &ea,
        |r| {
            Ok(
                json!({"category": r.get::<_, String>(0)?, "name": r.get::<_, String>(1)?,
                      "severity": r.get::<_, String>(2)?, "count": r.get::<_, i64>(3)?,
                      "first": fmt(r.get(4)?), "last": fmt(r.get(5)?)}),
            )
        },
    )?;
    let errors: i64 = incidents.iter().filter_map(|i| i["count"].as_i64()).sum();
    // Human oversight: approvals and other human steps the agent reported (events or
    // spans whose name or category says so).
    let oversight = rows(
        conn,
        &format!(
            "SELECT name, count(*) FROM events{ew} AND type != 'error'
               AND (lower(name) LIKE '%approv%' OR lower(name) LIKE '%human%'
                    OR lower(name) LIKE '%review%' OR lower(COALESCE(category, '')) IN ('approval', 'human', 'oversight'))
             GROUP BY 1 ORDER BY 2 DESC LIMIT 200"
        ),
        &ea,
        |r| Ok(json!({"name": r.get::<_, String>(0)?, "count": r.get::<_, i64>(1)?})),
    )?;
    // Data categories seen, from the stored texts (at most 100,000 spans looked at).
    let (mut credentials, mut emails, mut phones, mut free_text) = (0i64, 0i64, 0i64, 0i64);
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT COALESCE(unpack(input_text), ''), COALESCE(unpack(output_text), ''),
                COALESCE(unpack(attributes), '')
             FROM spans{sw} LIMIT 100000"
        ))?;
        let mut q = stmt.query(rusqlite::params_from_iter(&sa))?;
        while let Some(r) = q.next()? {
            let (i, o, a): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if !i.is_empty() || !o.is_empty() {
                free_text += 1;
            }
            let all = [i.as_str(), o.as_str(), a.as_str()];
            if all.iter().any(|t| t.contains(crate::redact::MASK)) {
                credentials += 1;
            }
            if all.iter().any(|t| has_email(t)) {
                emails += 1;
            }
            if all.iter().any(|t| has_phone(t)) {
                phones += 1;
            }
        }
    }
    let data_categories = json!([
        {"category": "credentials", "spans": credentials, "note": if sys.redaction { "masked before storage ([REDACTED])" } else { "redaction is off: stored as captured" }},
        {"category": "personal_data.email", "spans": emails},
        {"category": "personal_data.phone", "spans": phones},
        {"category": "free_text", "spans": free_text},
    ]);
    // The chain.
    let chain: Value = conn.query_row(
        "SELECT min(seq), max(seq), count(*) FROM audit_chain",
        [],
        |r| {
            Ok(json!({"first_seq": r.get::<_, Option<i64>>(0)?, "last_seq": r.get::<_, Option<i64>>(1)?,
                      "entries": r.get::<_, i64>(2)?}))
        },
    )?;
    let head: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM audit_chain ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .ok();
    let heads: Vec<SignedHead> = super::audit::signed_heads(conn, "ORDER BY seq DESC LIMIT 100")?;
    let mut chain = chain;
    chain["head_hash"] = json!(head.map(|h| hex_bytes::encode(&h)));
    chain["signed_checkpoints"] = serde_json::to_value(&heads).unwrap_or_default();
    chain["public_key"] = json!(signer.map(|s| hex_bytes::encode(&s.public_key())));
    let six_months_days = 183;
    let mut pkg = json!({
        "format": FORMAT,
        "generated_at": fmt(now_ns),
        "regulation": "EU AI Act (Regulation (EU) 2024/1689): Art. 12 record-keeping, Art. 13 transparency, Art. 19 and 26(6) log retention",
        "system": {
            "software": format!("openclaw-trace {}", env!("CARGO_PKG_VERSION")),
            "provider": sys.provider,
            "intended_purpose": sys.intended_purpose,
            "contact": sys.contact,
        },
        "period": {
            "from": scope.from_ns.map(fmt),
            "until": scope.until_ns.map(fmt),
            "agent": scope.agent,
        },
        "summary": {
            "systems": agents,
            "totals": totals,
            "models": models,
            "tools": tools,
            "errors": errors,
            "incidents": incidents,
            "data_categories": data_categories,
            "human_oversight": oversight,
        },
        "retention": {
            "retention_days": sys.retention_days,
            "usage_retention_days": sys.usage_retention_days,
            "meets_six_months": sys.retention_days == 0 || sys.retention_days >= six_months_days,
            "note": if sys.retention_days == 0 { "kept until the size limits need room" } else { "rows older than retention_days are deleted (prune entries on the chain)" },
        },
        "chain": chain,
    });
    let digest = package_digest(&pkg);
    if let Some(m) = pkg.as_object_mut() {
        m.insert("digest".into(), json!(digest));
        if let Some(s) = signer {
            let sig = s.sign_bytes(digest.as_bytes());
            m.insert("signature".into(), json!(hex_bytes::encode(&sig)));
        }
    }
    Ok(pkg)
}

/// What `verify --from-export` found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PackageReport {
    pub ok: bool,
    pub problems: Vec<Map<String, Value>>,
    pub checkpoints_checked: u64,
}

fn problem(kind: &str, message: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("kind".into(), json!(kind));
    m.insert("message".into(), json!(message));
    m
}

/// Checks a package offline: its digest, its signature (against `trusted_key` when
/// given, else the key it names), its signed checkpoints and that its chain range
/// agrees with them.
pub fn verify_package(pkg: &Value, trusted_key: Option<&[u8]>) -> PackageReport {
    let mut rep = PackageReport::default();
    let mut problems = Vec::new();
    if pkg["format"] != FORMAT {
        problems.push(problem(
            "format",
            format!("not an {FORMAT} package (format {})", pkg["format"]),
        ));
    }
    let stated = pkg["digest"].as_str().unwrap_or("");
    let digest = package_digest(pkg);
    if stated != digest {
        problems.push(problem(
            "edited",
            "the package's digest does not match its content: the package was edited".into(),
        ));
    }
    let key = pkg["chain"]["public_key"]
        .as_str()
        .and_then(hex_bytes::decode);
    match (&key, trusted_key) {
        (Some(k), Some(t)) if k[..] != t[..] => problems.push(problem(
            "bad_signature",
            "the package names another public key than this machine's audit key".into(),
        )),
        (None, _) => problems.push(problem(
            "bad_signature",
            "the package carries no public key".into(),
        )),
        _ => {}
    }
    let key = trusted_key.map(|k| k.to_vec()).or(key);
    if let Some(k) = &key {
        let sig = pkg["signature"].as_str().and_then(hex_bytes::decode);
        let good = sig.is_some_and(|s| {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k)
                .verify(stated.as_bytes(), &s)
                .is_ok()
        });
        if !good {
            problems.push(problem(
                "bad_signature",
                "the package's signature does not match its digest".into(),
            ));
        }
        let heads: Vec<SignedHead> =
            serde_json::from_value(pkg["chain"]["signed_checkpoints"].clone()).unwrap_or_default();
        let last = pkg["chain"]["last_seq"].as_i64().unwrap_or(0);
        let head_hash = pkg["chain"]["head_hash"].as_str().unwrap_or("");
        for h in &heads {
            rep.checkpoints_checked += 1;
            if h.public_key[..] != k[..] || !h.verify(k) {
                problems.push(problem(
                    "bad_signature",
                    format!(
                        "the signed checkpoint for entry {} has a bad signature",
                        h.seq
                    ),
                ));
            } else if h.seq > last {
                problems.push(problem(
                    "truncated",
                    format!(
                        "the chain range ends at entry {last} but a signed checkpoint covers entry {}",
                        h.seq
                    ),
                ));
            } else if h.seq == last && hex_bytes::encode(&h.hash) != head_hash {
                problems.push(problem(
                    "rewritten",
                    format!("the head hash differs from the signed checkpoint at entry {last}"),
                ));
            }
        }
    }
    rep.ok = problems.is_empty();
    rep.problems = problems;
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": 0, "y": "x"}], "c": null}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":null,"d":[1,{"y":"x","z":0}]},"b":1}"#
        );
    }

    #[test]
    fn personal_data_is_recognized() {
        assert!(has_email("write to jane.doe@example.com today"));
        assert!(!has_email("user@localhost or @handle"));
        assert!(has_phone("call +44 20 7946 0958 now"));
        assert!(has_phone("tel 555-123-4567"));
        assert!(!has_phone("in 2026 we had 42 runs"));
    }
}
