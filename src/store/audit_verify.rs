//! Checks the record against its chain: every link, every stored row against the
//! digest of its latest entry, every signed head (database and head file) against the
//! chain. Runs on a read-only connection inside one read transaction, so it may run
//! beside the daemon.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;

use super::audit::{CHAINED, Deleted, ENTRY_COLUMNS, Entry, SignedHead, Trimmed, hex_bytes};

/// One thing found wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    /// edited, missing, added, reordered, truncated, bad_signature, rewritten,
    /// broken_link, stale_head_file, head_file, derived (a trace summary or usage
    /// rollup that differs from the rows it is computed from).
    pub kind: &'static str,
    /// The chain entry concerned (the first bad one is the lowest).
    pub seq: Option<i64>,
    pub table: Option<String>,
    pub row_id: Option<i64>,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub entries: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    #[serde(serialize_with = "ser_hash")]
    pub head_hash: Option<Vec<u8>>,
    pub rows_checked: u64,
    /// Rows of the derived tables (trace summaries, usage rollups) recomputed and compared.
    pub derived_rows_checked: u64,
    pub signed_heads_checked: u64,
    pub last_signed_seq: Option<i64>,
    pub problems: Vec<Problem>,
}

fn ser_hash<S: serde::Serializer>(h: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(b) => s.serialize_str(&hex_bytes::encode(b)),
        None => s.serialize_none(),
    }
}

fn prefix(h: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = h.len().min(8);
    b[..n].copy_from_slice(&h[..n]);
    u64::from_be_bytes(b)
}

/// Checks the database on `conn`. `public_key`: the trusted key (heads are not
/// checked without it); `file_heads`: the heads read from the head file, when any.
pub fn verify_conn(
    conn: &Connection,
    public_key: Option<&[u8]>,
    file_heads: &[SignedHead],
) -> rusqlite::Result<Report> {
    verify_conn_at(conn, public_key, file_heads, None)
}

/// As `verify_conn`; `expire_before_ns`: the age-retention cutoff when age retention
/// is on (usage hours before it are not recomputed: see `audit_derived`).
pub fn verify_conn_at(
    conn: &Connection,
    public_key: Option<&[u8]>,
    file_heads: &[SignedHead],
    expire_before_ns: Option<i64>,
) -> rusqlite::Result<Report> {
    conn.execute_batch("BEGIN")?;
    let out = verify_in(conn, public_key, file_heads, expire_before_ns);
    let _ = conn.execute_batch("COMMIT");
    out
}

fn load_db_heads(conn: &Connection) -> rusqlite::Result<Vec<SignedHead>> {
    super::audit::signed_heads(conn, "ORDER BY seq")
}

fn verify_in(
    conn: &Connection,
    public_key: Option<&[u8]>,
    file_heads: &[SignedHead],
    expire_before_ns: Option<i64>,
) -> rusqlite::Result<Report> {
    let mut pruned = super::audit_derived::Pruned::default();
    let mut rep = Report::default();
    let mut problems: Vec<Problem> = Vec::new();
    let db_heads = load_db_heads(conn)?;
    let head_seqs: HashSet<i64> = db_heads.iter().chain(file_heads).map(|h| h.seq).collect();

    // Pass 1: every entry's hash, by a short prefix, to name reordered entries.
    // And the latest retention trim: where the linked chain starts again.
    let mut by_hash: HashMap<u64, i64> = HashMap::new();
    let mut trim: Option<(i64, Trimmed)> = None;
    {
        let mut stmt = conn
            .prepare("SELECT seq, hash, CASE WHEN op = 'trim' THEN detail END FROM audit_chain")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let h: Vec<u8> = r.get(1)?;
            by_hash.insert(prefix(&h), seq);
            if let Some(t) = r
                .get::<_, Option<String>>(2)?
                .and_then(|d| serde_json::from_str::<Trimmed>(&d).ok())
                && trim
                    .as_ref()
                    .is_none_or(|(_, b)| t.trimmed_through > b.trimmed_through)
            {
                trim = Some((seq, t));
            }
        }
    }
    let trimmed_through = trim.as_ref().map(|(_, t)| t.trimmed_through).unwrap_or(0);
    let mut kept_seen: Vec<(i64, Vec<u8>)> = Vec::new();

    // Pass 2: links and hashes; the latest entry of every row; deletions.
    let mut latest: HashMap<(usize, i64), (i64, Vec<u8>)> = HashMap::new();
    let mut deletions: Vec<Vec<(i64, Deleted)>> = vec![Vec::new(); CHAINED.len()];
    let mut hash_at: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut first: Option<Entry> = None;
    let mut prev: Option<(i64, Vec<u8>)> = None;
    {
        let mut stmt = conn.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM audit_chain ORDER BY seq"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let e = Entry::from_row_pub(r)?;
            rep.entries += 1;
            let computed = e.compute_hash();
            if computed[..] != e.hash[..] {
                // Written under another sequence number? Then it was moved.
                // Candidates: after the entry its previous hash names (where that one
                // sits now), and nearby positions (a swap of neighbours moves both).
                let linked = by_hash.get(&prefix(&e.prev_hash)).copied();
                let moved = linked
                    .into_iter()
                    .flat_map(|s| [s + 1, s - 1])
                    .chain((1..=16).flat_map(|d| [e.seq - d, e.seq + d]))
                    .filter(|w| *w != e.seq && *w > 0)
                    .find(|w| {
                        let mut probe = e.clone();
                        probe.seq = *w;
                        probe.compute_hash()[..] == e.hash[..]
                    });
                problems.push(match moved {
                    Some(w) => Problem {
                        kind: "reordered",
                        seq: Some(e.seq),
                        table: Some(e.tbl.clone()),
                        row_id: e.row_id,
                        message: format!(
                            "entry {} was written as entry {w}: the chain's entries were reordered",
                            e.seq
                        ),
                    },
                    None => Problem {
                        kind: "edited",
                        seq: Some(e.seq),
                        table: Some(e.tbl.clone()),
                        row_id: e.row_id,
                        message: format!(
                            "entry {}'s content does not match its hash: the entry was edited",
                            e.seq
                        ),
                    },
                });
            }
            if e.seq <= trimmed_through {
                // Kept below the trim point: checked as a set against the trim entry.
                kept_seen.push((e.seq, e.hash.clone()));
            }
            match &prev {
                _ if e.seq <= trimmed_through => {}
                None => {
                    // The first linked entry: entry 1, or the one after the trim point,
                    // linking to the hash the trim entry recorded.
                    let expected = trim.as_ref().map(|(_, t)| (t.trimmed_through + 1, &t.anchor));
                    let ok = match expected {
                        None => e.seq == 1,
                        Some((s, anchor)) => {
                            e.seq == s && hex_bytes::encode(&e.prev_hash) == *anchor
                        }
                    };
                    if !ok {
                        problems.push(Problem {
                            kind: "truncated",
                            seq: Some(e.seq),
                            table: None,
                            row_id: None,
                            message: format!(
                                "the chain starts at entry {} and no retention trim says so: its oldest entries were cut",
                                e.seq
                            ),
                        });
                    }
                }
                Some((ps, _)) if e.seq != ps + 1 => problems.push(Problem {
                    kind: "missing",
                    seq: Some(ps + 1),
                    table: None,
                    row_id: None,
                    message: format!(
                        "entries {} to {} are missing from the chain",
                        ps + 1,
                        e.seq - 1
                    ),
                }),
                Some((ps, ph)) if *ph != e.prev_hash && computed[..] == e.hash[..] => {
                    problems.push(Problem {
                        kind: "broken_link",
                        seq: Some(e.seq),
                        table: Some(e.tbl.clone()),
                        row_id: e.row_id,
                        message: format!(
                            "entry {} does not link to entry {ps}: the chain was rewritten before it",
                            e.seq
                        ),
                    })
                }
                _ => {}
            }
            if head_seqs.contains(&e.seq) {
                hash_at.insert(e.seq, e.hash.clone());
            }
            if let ("prune" | "trim", Some(d)) = (e.op.as_str(), e.detail.as_deref()) {
                pruned.absorb_detail(&e.op, d);
            }
            let t = CHAINED.iter().position(|(t, _)| *t == e.tbl);
            match (e.op.as_str(), t, e.row_id) {
                ("changes", _, _) => {
                    for c in super::audit::Change::unpack(&e.digest) {
                        latest.insert((c.table, c.row_id), (e.seq, c.digest().to_vec()));
                    }
                }
                ("delete" | "prune", Some(t), None) => {
                    if let Some(d) = e
                        .detail
                        .as_deref()
                        .and_then(|d| serde_json::from_str::<Deleted>(d).ok())
                    {
                        deletions[t].push((e.seq, d));
                    }
                }
                _ => {}
            }
            if e.seq > trimmed_through {
                prev = Some((e.seq, e.hash.clone()));
            }
            if first.is_none() {
                first = Some(e);
            }
        }
    }
    rep.first_seq = first.as_ref().map(|e| e.seq);
    rep.last_seq = prev.as_ref().map(|(s, _)| *s);
    rep.head_hash = prev.as_ref().map(|(_, h)| h.clone());
    // The entries kept below the trim point are exactly those it names.
    if let Some((tseq, t)) = &trim {
        let seqs: Vec<i64> = kept_seen.iter().map(|(s, _)| *s).collect();
        let hashes: Vec<Vec<u8>> = kept_seen.iter().map(|(_, h)| h.clone()).collect();
        if seqs != t.kept || super::audit::kept_digest(&hashes) != t.kept_digest {
            let first_bad = seqs
                .iter()
                .zip(&t.kept)
                .find(|(a, b)| a != b)
                .map(|(a, _)| *a)
                .or_else(|| t.kept.iter().find(|k| !seqs.contains(k)).copied())
                .or_else(|| seqs.first().copied());
            problems.push(Problem {
                kind: if seqs.len() < t.kept.len() { "missing" } else { "edited" },
                seq: first_bad.or(Some(*tseq)),
                table: None,
                row_id: None,
                message: format!(
                    "the entries kept below the retention trim point (entry {tseq}) are not those it recorded: {} found, {} recorded",
                    seqs.len(),
                    t.kept.len()
                ),
            });
        }
    }

    // Rows against their latest entries.
    for (ti, (t, cols)) in CHAINED.iter().enumerate() {
        let ncols = cols.split(',').count();
        let mut stmt = conn.prepare(&format!("SELECT {cols} FROM main.{t} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            rep.rows_checked += 1;
            let id: i64 = r.get(0)?;
            let d = super::audit::row_digest(r, ncols)?;
            match latest.remove(&(ti, id)) {
                None => problems.push(Problem {
                    kind: "added",
                    seq: None,
                    table: Some(t.to_string()),
                    row_id: Some(id),
                    message: format!(
                        "row {t}/{id} is in no chain entry: it was added outside openclaw-trace (or while OCT_AUDIT was off)"
                    ),
                }),
                Some((seq, digest)) if !super::audit::Change::matches(&digest, &d) => problems.push(Problem {
                    kind: "edited",
                    seq: Some(seq),
                    table: Some(t.to_string()),
                    row_id: Some(id),
                    message: format!(
                        "row {t}/{id} differs from what entry {seq} recorded: the row was edited"
                    ),
                }),
                Some(_) => {}
            }
        }
    }
    for ((ti, id), (seq, _)) in latest {
        let covered = deletions[ti]
            .iter()
            .any(|(ds, d)| *ds > seq && d.contains(id));
        if !covered {
            let t = CHAINED[ti].0;
            problems.push(Problem {
                kind: "missing",
                seq: Some(seq),
                table: Some(t.to_string()),
                row_id: Some(id),
                message: format!(
                    "row {t}/{id} (entry {seq}) is missing and no retention entry deleted it: the row was deleted"
                ),
            });
        }
    }

    // The derived tables against the rows they are computed from.
    rep.derived_rows_checked =
        super::audit_derived::check(conn, &pruned, expire_before_ns, &mut problems)?;

    // Signed heads, from the database and the head file.
    if let Some(key) = public_key {
        let last = rep.last_seq.unwrap_or(0);
        let first_seq = rep.first_seq.unwrap_or(1);
        let mut newest_valid: Option<&SignedHead> = None;
        for (where_, heads) in [("database", &db_heads[..]), ("head file", file_heads)] {
            for h in heads {
                rep.signed_heads_checked += 1;
                if h.public_key != key || !h.verify(key) {
                    problems.push(Problem {
                        kind: "bad_signature",
                        seq: Some(h.seq),
                        table: None,
                        row_id: None,
                        message: format!(
                            "the signed head for entry {} in the {where_} has a bad signature{}",
                            h.seq,
                            if h.public_key != key {
                                " (another key)"
                            } else {
                                ""
                            }
                        ),
                    });
                    continue;
                }
                if newest_valid.is_none_or(|n| h.seq > n.seq) {
                    newest_valid = Some(h);
                }
                if h.seq >= first_seq
                    && let Some(at) = hash_at.get(&h.seq)
                    && *at != h.hash
                {
                    problems.push(Problem {
                        kind: "rewritten",
                        seq: Some(h.seq),
                        table: None,
                        row_id: None,
                        message: format!(
                            "entry {}'s hash differs from its signed head (signed {}): the chain was rewritten at or before it",
                            h.seq,
                            crate::util::time::format_ns(h.time_ns)
                        ),
                    });
                }
            }
        }
        if let Some(h) = newest_valid
            && h.seq > last
        {
            problems.push(Problem {
                kind: "truncated",
                seq: Some(last + 1),
                table: None,
                row_id: None,
                message: format!(
                    "the chain ends at entry {last} but a signed head (signed {}) covers entry {}: its newest entries were cut",
                    crate::util::time::format_ns(h.time_ns),
                    h.seq
                ),
            });
        }
        rep.last_signed_seq = newest_valid.map(|h| h.seq);
        let db_max = db_heads.iter().map(|h| h.seq).max();
        let file_max = file_heads.iter().map(|h| h.seq).max();
        if let Some(d) = db_max
            && file_max.is_none_or(|f| f < d)
        {
            problems.push(Problem {
                kind: "stale_head_file",
                seq: Some(d),
                table: None,
                row_id: None,
                message: format!(
                    "the head file ends at entry {} but the database holds a signed head for entry {d}: the head file was replaced by an older copy",
                    file_max.map(|f| f.to_string()).unwrap_or_else(|| "none".into())
                ),
            });
        }
    }
    problems.sort_by_key(|p| p.seq.unwrap_or(i64::MAX));
    rep.ok = problems.is_empty();
    rep.problems = problems;
    Ok(rep)
}

/// Why `verify` could not check.
#[derive(Debug, thiserror::Error)]
pub enum CannotCheck {
    #[error("{0}")]
    Msg(String),
}

/// Verifies the database at `db` with the key at `key_path` and the head file.
pub fn verify_path(
    db: &Path,
    key_path: &Path,
    head_path: &Path,
    max_age: Option<std::time::Duration>,
) -> Result<Report, CannotCheck> {
    if !db.exists() {
        return Err(CannotCheck::Msg(format!(
            "database {}: no such file",
            db.display()
        )));
    }
    let signer = super::audit::Signer::load(key_path)
        .map_err(|e| CannotCheck::Msg(format!("{e} (the key is needed to check signed heads)")))?;
    let conn = super::open_reader(db).map_err(|e| CannotCheck::Msg(e.to_string()))?;
    let has_chain = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_chain'",
            [],
            |_| Ok(()),
        )
        .is_ok();
    if !has_chain {
        return Err(CannotCheck::Msg(format!(
            "database {} has no audit chain (written by an older openclaw-trace)",
            db.display()
        )));
    }
    let mut extra = Vec::new();
    let file_heads = match super::audit::read_head_file(head_path) {
        Ok((heads, bad)) => {
            for line in bad {
                extra.push(Problem {
                    kind: "head_file",
                    seq: None,
                    table: None,
                    row_id: None,
                    message: format!(
                        "line {line} of the head file {} is not a signed head",
                        head_path.display()
                    ),
                });
            }
            heads
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(CannotCheck::Msg(format!(
                "head file {}: {e}",
                head_path.display()
            )));
        }
    };
    let pk = signer.public_key();
    let expire_before = max_age.map(|a| crate::model::now_ns() - a.as_nanos() as i64);
    let mut rep = verify_conn_at(&conn, Some(&pk), &file_heads, expire_before)
        .map_err(|e| CannotCheck::Msg(format!("cannot read the database: {e}")))?;
    if !extra.is_empty() {
        rep.problems.extend(extra);
        rep.ok = false;
    }
    Ok(rep)
}
