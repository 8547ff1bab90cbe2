//! The tamper-evident record: an append-only hash chain over every change to the
//! stored spans, events and activity rows, written in the same transaction as the
//! change, and signed heads (Ed25519) kept in the database and in a file outside it.
//!
//! How changes are seen: on the writer's connection only, SQLite's update hook (never
//! called for changes made by any other connection, so a change made with another client
//! is never chained) notes each inserted, updated or deleted row; `seal` turns what it
//! noted into one chain link per transaction before the transaction commits: a
//! `changes` link packing every row inserted or changed (table, id, SHA-256 digest of
//! its canonical content as stored), and one `delete` (or `prune`, for retention) link
//! per table naming the ids deleted.
//! `trim` drops the chain's prefix that covers only deleted rows and records the
//! point it starts again from, so what remains verifies from its first kept entry.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::settings::{Setting, parse_bool, parse_duration};

#[derive(Clone, Debug, PartialEq)]
pub struct AuditConfig {
    pub enabled: bool,
    /// `None`: beside the database (`<db>.audit-key`).
    pub key_file: Option<PathBuf>,
    /// `None`: beside the database (`<db>.audit-heads`).
    pub head_file: Option<PathBuf>,
    pub checkpoint_interval: Duration,
    /// Article 13 fields of the EU AI Act package.
    pub ai_act_provider: Option<String>,
    pub ai_act_purpose: Option<String>,
    pub ai_act_contact: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            // On: its cost on saturated batched ingest is within the 10 % target
            // (BENCHMARKS.md, audit chain: 9.3 % and 9.2 % in two 16-round runs).
            enabled: true,
            key_file: None,
            head_file: None,
            checkpoint_interval: Duration::from_secs(60),
            ai_act_provider: None,
            ai_act_purpose: None,
            ai_act_contact: None,
        }
    }
}

pub const SETTINGS: &[Setting<AuditConfig>] = &[
    Setting {
        name: "audit",
        env: "OCT_AUDIT",
        default: "on",
        help: "Keep the tamper-evident hash chain over stored rows, signed heads and key (on)",
        set: |c, v| {
            c.enabled = match v.trim().to_ascii_lowercase().as_str() {
                "on" => true,
                "off" => false,
                other => parse_bool(other)?,
            };
            Ok(())
        },
    },
    Setting {
        name: "audit_key_file",
        env: "OCT_AUDIT_KEY_FILE",
        default: "<database>.audit-key",
        help: "Ed25519 key that signs the chain's heads (created with mode 0600 when absent)",
        set: |c, v| {
            c.key_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "audit_head_file",
        env: "OCT_AUDIT_HEAD_FILE",
        default: "<database>.audit-heads",
        help: "File outside the database that every signed head is appended to",
        set: |c, v| {
            c.head_file = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "audit_checkpoint_interval",
        env: "OCT_AUDIT_CHECKPOINT_INTERVAL",
        default: "1m",
        help: "How often the chain's head is signed (and at shutdown)",
        set: |c, v| {
            c.checkpoint_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "ai_act_provider",
        env: "OCT_AI_ACT_PROVIDER",
        default: "",
        help: "The AI system's provider, named in the EU AI Act export",
        set: |c, v| {
            c.ai_act_provider = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "ai_act_purpose",
        env: "OCT_AI_ACT_PURPOSE",
        default: "",
        help: "The AI system's intended purpose, stated in the EU AI Act export",
        set: |c, v| {
            c.ai_act_purpose = Some(v.to_string());
            Ok(())
        },
    },
    Setting {
        name: "ai_act_contact",
        env: "OCT_AI_ACT_CONTACT",
        default: "",
        help: "Contact for the AI system, given in the EU AI Act export",
        set: |c, v| {
            c.ai_act_contact = Some(v.to_string());
            Ok(())
        },
    },
];

fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl AuditConfig {
    pub fn key_path(&self, db: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| beside(db, ".audit-key"))
    }
    pub fn head_path(&self, db: &Path) -> PathBuf {
        self.head_file
            .clone()
            .unwrap_or_else(|| beside(db, ".audit-heads"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit key {path}: {msg}")]
    Key { path: PathBuf, msg: String },
    #[error("audit head file {path}: {msg}")]
    HeadFile { path: PathBuf, msg: String },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The chained tables and the columns whose values make a row's canonical content.
/// Fixed lists: a column added by a later migration does not change old digests.
pub const CHAINED: &[(&str, &str)] = &[
    (
        "spans",
        "id, trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status, \
         status_message, agent_id, session_id, user_id, operation, provider, request_model, \
         response_model, input_tokens, output_tokens, total_tokens, cache_read_tokens, \
         cache_write_tokens, reasoning_tokens, cost_usd, cost_source, finish_reasons, tool_name, \
         tool_call_id, error_type, latency_ms, unpack(input_text), input_text_len, \
         unpack(output_text), output_text_len, unpack(attributes), unpack(resource), source, \
         received_ns, cost_computed_usd",
    ),
    (
        "events",
        "id, uid, type, time_ns, name, severity, message, stack_trace, category, trace_id, \
         span_id, agent_id, session_id, user_id, attributes, resource, source, received_ns",
    ),
    ("activity", super::activity::COLUMNS),
];

/// Appends one value's canonical bytes (its SQLite type, then its content) to `out`.
#[inline]
fn canon_value(out: &mut Vec<u8>, v: ValueRef) {
    // The tag and a number (or a length) in one 9-byte write: the writer appends about
    // forty values per row.
    let head = |tag: u8, n: [u8; 8]| {
        let mut h = [tag; 9];
        h[1..].copy_from_slice(&n);
        h
    };
    match v {
        ValueRef::Null => out.push(0),
        ValueRef::Integer(v) => out.extend_from_slice(&head(1, v.to_be_bytes())),
        ValueRef::Real(v) => out.extend_from_slice(&head(2, v.to_bits().to_be_bytes())),
        ValueRef::Text(t) => {
            out.extend_from_slice(&head(3, (t.len() as u64).to_be_bytes()));
            out.extend_from_slice(t);
        }
        ValueRef::Blob(b) => {
            out.extend_from_slice(&head(4, (b.len() as u64).to_be_bytes()));
            out.extend_from_slice(b);
        }
    }
}

/// SHA-256 over a row's values, each tagged with its SQLite type (`canon_value`).
pub fn row_digest(row: &rusqlite::Row, ncols: usize) -> rusqlite::Result<[u8; 32]> {
    let mut buf = Vec::with_capacity(512);
    for i in 0..ncols {
        canon_value(&mut buf, row.get_ref(i)?);
    }
    Ok(sha256(&buf))
}

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: i64,
    pub time_ns: i64,
    /// insert, update, delete, prune, trim.
    pub op: String,
    pub tbl: String,
    pub row_id: Option<i64>,
    /// For delete/prune: which ids went; for trim: where the chain starts again.
    pub detail: Option<String>,
    #[serde(with = "hex_bytes")]
    pub digest: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub prev_hash: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(b: &[u8]) -> String {
        crate::util::hex::encode(b)
    }
    pub fn decode(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) || !s.is_ascii() {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect()
    }
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(b))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

fn lp(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

impl Entry {
    /// The hash this entry must carry: over the previous hash and every field.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"oct-audit-v1");
        lp(&mut h, &self.prev_hash);
        h.update(self.seq.to_be_bytes());
        h.update(self.time_ns.to_be_bytes());
        lp(&mut h, self.op.as_bytes());
        lp(&mut h, self.tbl.as_bytes());
        h.update(self.row_id.unwrap_or(i64::MIN).to_be_bytes());
        lp(&mut h, &self.digest);
        lp(&mut h, self.detail.as_deref().unwrap_or("").as_bytes());
        h.finalize().into()
    }

    pub fn from_row_pub(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
        Ok(Entry {
            seq: r.get(0)?,
            time_ns: r.get(1)?,
            op: r.get(2)?,
            tbl: r.get(3)?,
            row_id: r.get(4)?,
            detail: r.get(5)?,
            digest: r.get::<_, Option<Vec<u8>>>(6)?.unwrap_or_default(),
            prev_hash: r.get(7)?,
            hash: r.get(8)?,
        })
    }
}

pub const ENTRY_COLUMNS: &str = "seq, time_ns, op, tbl, row_id, detail, digest, prev_hash, hash";

/// The migration that adds the chain's tables.
/// From this version `changes` entries pack compactly (`Changes`): an older build would
/// read them as 42-byte rows, so it must refuse the file. Nothing in the tables changes.
pub const COMPACT_CHANGES_MIGRATION: &str = "-- changes entries: compact packing";

pub const MIGRATION: &str = r#"
    CREATE TABLE audit_chain (
        seq INTEGER PRIMARY KEY,
        time_ns INTEGER NOT NULL,
        op TEXT NOT NULL,
        tbl TEXT NOT NULL,
        row_id INTEGER,
        detail TEXT,
        digest BLOB,
        prev_hash BLOB NOT NULL,
        hash BLOB NOT NULL
    );
    CREATE TABLE audit_heads (
        seq INTEGER PRIMARY KEY,
        hash BLOB NOT NULL,
        time_ns INTEGER NOT NULL,
        public_key BLOB NOT NULL,
        signature BLOB NOT NULL
    );
"#;

/// A row change the hook noted: table index, row id, what happened and, for an insert
/// or update, the digest of the row's new content (`None`: read it back at seal).
#[derive(Clone, Copy, Debug)]
struct Noted {
    table: u8,
    id: i64,
    op: Op,
    digest: Option<[u8; 32]>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Insert,
    Update,
    Delete,
}

thread_local! {
    /// Rows changed on this thread's chained connection since the last seal.
    static PENDING: std::cell::RefCell<Vec<Noted>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Set while rows are rewritten with the same content (`same_content`).
    static SAME_CONTENT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, whose updates store the same values in another form (span values packed
/// by `store::codec`), without noting them: the chain digests content, which reads
/// the same through `unpack()`, so there is nothing to record.
pub fn same_content<T>(f: impl FnOnce() -> T) -> T {
    SAME_CONTENT.with(|s| s.set(true));
    let out = f();
    SAME_CONTENT.with(|s| s.set(false));
    out
}

/// Starts chaining on the writer's connection: SQLite's update hook (this connection
/// only) notes every row inserted, updated or deleted in a chained table, on the thread
/// that runs the statement (the writer); a rollback forgets them. The writer's inserts
/// hand over the digest of the values they bound (`digest_inserted`), so sealing reads
/// back only rows changed otherwise. No trigger: a trigger would make every insert keep
/// a statement journal (a copy of each page it touches), which cost more than the chain
/// itself.
pub fn install(conn: &mut Connection) -> rusqlite::Result<()> {
    use rusqlite::hooks::Action;
    conn.execute_batch("CREATE TEMP TABLE IF NOT EXISTS audit_installed (x INTEGER)")?;
    conn.update_hook(Some(|action: Action, db: &str, table: &str, id: i64| {
        if db != "main" {
            return;
        }
        let Some(t) = CHAINED.iter().position(|(name, _)| *name == table) else {
            return;
        };
        let op = match action {
            Action::SQLITE_INSERT => Op::Insert,
            Action::SQLITE_UPDATE if SAME_CONTENT.with(|s| s.get()) => return,
            Action::SQLITE_UPDATE => Op::Update,
            Action::SQLITE_DELETE => Op::Delete,
            _ => return,
        };
        PENDING.with(|p| {
            p.borrow_mut().push(Noted {
                table: t as u8,
                id,
                op,
                digest: None,
            })
        });
    }))?;
    conn.rollback_hook(Some(|| {
        PENDING.with(|p| p.borrow_mut().clear());
        DIGESTING.with(|d| d.borrow_mut().clear());
    }))?;
    Ok(())
}

/// Where a batch's digests come back from the hashing thread.
type DigestsBack = std::sync::mpsc::Receiver<Vec<[u8; 32]>>;

/// The writer's rows waiting for their digests: their canonical bytes are gathered on
/// the writer and hashed on the `oct-audit-hash` thread while the writer goes on
/// inserting (SHA-256 was most of what the chain cost the writer); sealing collects the
/// digests.
struct Digesting {
    /// Canonical bytes of the rows not yet handed over, one after another.
    buf: Vec<u8>,
    /// Per row in `buf`: (where its bytes end, its index in `PENDING`).
    rows: Vec<(usize, usize)>,
    /// Handed over: the rows' indexes in `PENDING`, and where their digests come back.
    inflight: Vec<(Vec<usize>, DigestsBack)>,
    /// Buffers the hashing thread is done with, to be filled again: a buffer reused
    /// is still in the cache; a fresh one cost the writer a miss on every line it wrote.
    spare: (
        std::sync::mpsc::Sender<Vec<u8>>,
        std::sync::mpsc::Receiver<Vec<u8>>,
    ),
}

impl Default for Digesting {
    fn default() -> Self {
        Digesting {
            buf: Vec::new(),
            rows: Vec::new(),
            inflight: Vec::new(),
            spare: std::sync::mpsc::channel(),
        }
    }
}

/// Spare buffers kept between transactions, at most (the rest are freed).
const SPARE_BUFFERS: usize = 2;

thread_local! {
    static DIGESTING: std::cell::RefCell<Digesting> = std::cell::RefCell::new(Digesting::default());
}

/// Rows are handed over to the hashing thread by this many bytes.
const HAND_OVER_BYTES: usize = 48 << 10;

/// A fresh buffer's size: room for a hand-over's bytes and a large row after them, and
/// under glibc's mmap threshold (128 KiB), so a buffer comes from (and goes back to)
/// the heap: mapped afresh, each hand-over page-faulted its pages in on the writer.
const BUFFER_BYTES: usize = 112 << 10;

struct HashJob {
    buf: Vec<u8>,
    ends: Vec<usize>,
    reply: std::sync::mpsc::Sender<Vec<[u8; 32]>>,
    /// Where `buf` goes back, emptied, once hashed.
    spare: std::sync::mpsc::Sender<Vec<u8>>,
}

impl HashJob {
    /// Hashes the rows; gives the buffer back before the digests, so a writer holding
    /// every job's digests holds every buffer too.
    fn run(self) {
        let digests = hash_rows(&self.buf, &self.ends);
        let mut buf = self.buf;
        buf.clear();
        let _ = self.spare.send(buf);
        let _ = self.reply.send(digests);
    }
}

/// SHA-256 of each row's bytes (`ends`: where each ends in `buf`).
fn hash_rows(buf: &[u8], ends: &[usize]) -> Vec<[u8; 32]> {
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let d = sha256(&buf[start..end]);
            start = end;
            d
        })
        .collect()
}

/// SHA-256 (ring's, in assembly: faster than the portable one at the size profile).
fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The hashing thread, started on first use; `None` when it cannot start (rows are
/// then hashed on the writer).
fn hash_thread() -> Option<&'static std::sync::mpsc::Sender<HashJob>> {
    static SENDER: std::sync::OnceLock<Option<std::sync::mpsc::Sender<HashJob>>> =
        std::sync::OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<HashJob>();
            std::thread::Builder::new()
                .name("oct-audit-hash".into())
                .spawn(move || {
                    for job in rx {
                        job.run();
                    }
                })
                .ok()
                .map(|_| tx)
        })
        .as_ref()
}

impl Digesting {
    /// Hands the gathered rows to the hashing thread (or hashes them here).
    fn hand_over(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        // The next buffer: one the hashing thread gave back, or a new one at its working
        // size (grown from empty by doubling, each hand-over copied its bytes about twice
        // more on the writer).
        let next = self
            .spare
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BUFFER_BYTES));
        let buf = std::mem::replace(&mut self.buf, next);
        let (ends, idx): (Vec<usize>, Vec<usize>) = self.rows.drain(..).unzip();
        let (tx, rx) = std::sync::mpsc::channel();
        let job = HashJob {
            buf,
            ends,
            reply: tx,
            spare: self.spare.0.clone(),
        };
        match hash_thread() {
            Some(h) => {
                if let Err(e) = h.send(job) {
                    e.0.run();
                }
            }
            None => job.run(),
        }
        self.inflight.push((idx, rx));
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.rows.clear();
        self.inflight.clear();
    }
}

/// Fills in the digests of the rows `digest_inserted` took, in `pending` (what was
/// taken from `PENDING`); a row whose digest does not come back is read back at seal.
fn collect_digests(pending: &mut [Noted]) {
    DIGESTING.with(|d| {
        let mut d = d.borrow_mut();
        // The last rows: hashed here, while the thread finishes the others.
        let buf = std::mem::take(&mut d.buf);
        let rows = std::mem::take(&mut d.rows);
        let ends: Vec<usize> = rows.iter().map(|r| r.0).collect();
        for ((_, i), digest) in rows.iter().zip(hash_rows(&buf, &ends)) {
            if let Some(n) = pending.get_mut(*i) {
                n.digest = Some(digest);
            }
        }
        d.buf = buf;
        d.buf.clear();
        for (idx, rx) in std::mem::take(&mut d.inflight) {
            let Ok(digests) = rx.recv() else { continue };
            for (i, digest) in idx.into_iter().zip(digests) {
                if let Some(n) = pending.get_mut(i) {
                    n.digest = Some(digest);
                }
            }
        }
        // Keep a few buffers for the next transaction; free the others.
        let back: Vec<Vec<u8>> = d.spare.1.try_iter().collect();
        for b in back.into_iter().take(SPARE_BUFFERS) {
            let _ = d.spare.0.send(b);
        }
    });
}

/// The writer just inserted row `id` of `CHAINED[table]`: when the chain noted that
/// insert, this gathers the row's canonical bytes for its digest (`encode` appends the
/// values it bound, in the canonical column order after `id`, with `Canonical`),
/// hashed off the writer and collected at seal, so sealing need not read the row back.
/// A no-op when chaining is off. Debug builds check every such digest against the row
/// read back at seal.
pub fn digest_inserted(table: usize, id: i64, encode: impl FnOnce(&mut Vec<u8>)) {
    let at = PENDING.with(|p| {
        let p = p.borrow();
        let last = p.last()?;
        (last.table as usize == table && last.id == id && last.op == Op::Insert)
            .then(|| p.len() - 1)
    });
    let Some(at) = at else {
        return;
    };
    DIGESTING.with(|d| {
        let mut d = d.borrow_mut();
        id.canon(&mut d.buf);
        encode(&mut d.buf);
        let end = d.buf.len();
        d.rows.push((end, at));
        if end >= HAND_OVER_BYTES {
            d.hand_over();
        }
    });
}

/// A value as the writer binds it, appended as `canon_value` appends it once stored
/// (read back, what `verify` digests). Statically dispatched: `ToSql`'s dynamic calls
/// were most of what gathering a row cost the writer.
pub trait Canonical {
    fn canon(&self, out: &mut Vec<u8>);
}

impl Canonical for i64 {
    fn canon(&self, out: &mut Vec<u8>) {
        canon_value(out, ValueRef::Integer(*self));
    }
}

/// As SQLite stores a float: a NaN as NULL, and a zero (stored as an integer in a REAL
/// column) reads back without its sign.
impl Canonical for f64 {
    fn canon(&self, out: &mut Vec<u8>) {
        let v = match *self {
            f if f.is_nan() => ValueRef::Null,
            0.0 => ValueRef::Real(0.0),
            f => ValueRef::Real(f),
        };
        canon_value(out, v);
    }
}

impl Canonical for str {
    fn canon(&self, out: &mut Vec<u8>) {
        canon_value(out, ValueRef::Text(self.as_bytes()));
    }
}

impl Canonical for String {
    fn canon(&self, out: &mut Vec<u8>) {
        self.as_str().canon(out);
    }
}

impl Canonical for [u8] {
    fn canon(&self, out: &mut Vec<u8>) {
        canon_value(out, ValueRef::Blob(self));
    }
}

impl<T: Canonical + ?Sized> Canonical for &T {
    fn canon(&self, out: &mut Vec<u8>) {
        (**self).canon(out);
    }
}

impl<T: Canonical> Canonical for Option<T> {
    fn canon(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.canon(out),
            None => canon_value(out, ValueRef::Null),
        }
    }
}

/// True when `install` ran on this connection.
pub fn installed(conn: &Connection) -> bool {
    conn.prepare_cached(
        "SELECT 1 FROM sqlite_temp_master WHERE type = 'table' AND name = 'audit_installed'",
    )
    .and_then(|mut s| s.exists([]))
    .unwrap_or(false)
}

/// The chain's last entry: (seq, hash); (0, zeros) when empty.
pub fn tail(conn: &Connection) -> rusqlite::Result<(i64, Vec<u8>)> {
    Ok(conn
        .prepare_cached("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, vec![0u8; 32])))
}

/// Rows per `changes` entry when a chain starts on rows already stored.
const ADOPT_ROWS_PER_ENTRY: usize = 10_000;

/// Starts the chain over what is already stored: when the chain is empty (it was never
/// on for this database) and chained tables hold rows, appends `changes` entries with
/// every row's digest as it is now (detail `adopted`), so a database that turns the
/// chain on (as an upgrade does, now that it is on by default) verifies from that
/// moment instead of reporting every older row as added. A chain that exists is left
/// alone: rows written while it was turned off stay reported, as they should.
/// Returns the rows adopted.
pub fn adopt_existing(conn: &mut Connection) -> rusqlite::Result<u64> {
    let tx = conn.transaction()?;
    if tail(&tx)?.0 > 0 {
        return Ok(0);
    }
    let mut app = Appender::new(&tx)?;
    let mut adopted = 0u64;
    let mut packed = Changes::with_capacity(ADOPT_ROWS_PER_ENTRY);
    let mut flush = |packed: &mut Changes| -> rusqlite::Result<()> {
        if !packed.is_empty() {
            app.push(
                &tx,
                "changes",
                "*",
                None,
                packed.bytes(),
                Some("adopted".into()),
            )?;
            packed.clear();
        }
        Ok(())
    };
    for (ti, (t, cols)) in CHAINED.iter().enumerate() {
        let ncols = cols.split(',').count();
        let mut stmt = tx.prepare(&format!("SELECT {cols} FROM main.{t} ORDER BY id"))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            packed.push(&Change::new(ti, false, r.get(0)?, row_digest(r, ncols)?));
            adopted += 1;
            if packed.rows() >= ADOPT_ROWS_PER_ENTRY {
                flush(&mut packed)?;
            }
        }
        // Entries do not mix tables.
        flush(&mut packed)?;
    }
    tx.commit()?;
    Ok(adopted)
}

struct Appender {
    seq: i64,
    hash: Vec<u8>,
    now: i64,
}

impl Appender {
    fn new(conn: &Connection) -> rusqlite::Result<Self> {
        let (seq, hash) = tail(conn)?;
        Ok(Appender {
            seq,
            hash,
            now: crate::model::now_ns(),
        })
    }

    fn push(
        &mut self,
        conn: &Connection,
        op: &str,
        tbl: &str,
        row_id: Option<i64>,
        digest: &[u8],
        detail: Option<String>,
    ) -> rusqlite::Result<()> {
        let mut e = Entry {
            seq: self.seq + 1,
            time_ns: self.now,
            op: op.to_string(),
            tbl: tbl.to_string(),
            row_id,
            detail,
            digest: digest.to_vec(),
            prev_hash: std::mem::take(&mut self.hash),
            hash: Vec::new(),
        };
        e.hash = e.compute_hash().to_vec();
        conn.prepare_cached(
            "INSERT INTO audit_chain (seq, time_ns, op, tbl, row_id, detail, digest, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            e.seq,
            e.time_ns,
            e.op,
            e.tbl,
            e.row_id,
            e.detail,
            (!e.digest.is_empty()).then_some(&e.digest[..]),
            e.prev_hash,
            e.hash
        ])?;
        self.seq = e.seq;
        self.hash = e.hash;
        Ok(())
    }
}

/// Which ids a delete or prune entry covers, as inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deleted {
    pub ids: Vec<(i64, i64)>,
    pub count: u64,
    /// For spans retention deleted: the latest start among them (usage hours up to
    /// it may have lost spans: `verify` does not recompute them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_start_ns: Option<i64>,
    /// For spans retention deleted: the traces (hex ids) left with some of their
    /// spans (their summaries still count the ones gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_traces: Vec<String>,
}

/// What retention tells the chain about the spans it deleted (see `Deleted`).
#[derive(Clone, Debug, Default)]
pub struct PruneNote {
    pub max_start_ns: Option<i64>,
    pub partial_traces: Vec<String>,
}

impl Deleted {
    fn of(mut ids: Vec<i64>) -> Deleted {
        ids.sort_unstable();
        ids.dedup();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for id in &ids {
            match ranges.last_mut() {
                Some((_, hi)) if *hi + 1 == *id => *hi = *id,
                _ => ranges.push((*id, *id)),
            }
        }
        Deleted {
            count: ids.len() as u64,
            ids: ranges,
            ..Default::default()
        }
    }
    pub fn contains(&self, id: i64) -> bool {
        let i = self.ids.partition_point(|(_, hi)| *hi < id);
        self.ids.get(i).is_some_and(|(lo, _)| *lo <= id)
    }
}

/// Where the chain starts again after `trim`: entries up to `trimmed_through` are
/// gone but for `kept` (the latest entries of rows still stored below that point, such
/// as activity rows, which retention keeps), whose hashes `kept_digest` covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trimmed {
    pub trimmed_through: i64,
    pub anchor: String,
    #[serde(default)]
    pub kept: Vec<i64>,
    #[serde(default)]
    pub kept_digest: String,
    /// What the prune entries trimmed away said (see `Deleted`), carried forward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_max_start_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_traces: Vec<String>,
}

/// SHA-256 over the hashes of the kept entries, in order.
pub fn kept_digest(hashes: &[Vec<u8>]) -> String {
    let mut h = Sha256::new();
    for x in hashes {
        h.update(x);
    }
    hex_bytes::encode(&h.finalize())
}

/// One row's change inside a `changes` entry: its table, whether it was an update, its
/// id and the digest of its content. Entries written before schema 16 pack 42 bytes a row
/// (table index, 0 for an insert or 1 for an update, row id big-endian, the whole
/// 32-byte digest); `Changes` packs them compactly (below), and `unpack` reads both.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Index into `CHAINED`.
    pub table: usize,
    pub update: bool,
    pub row_id: i64,
    digest: [u8; 32],
    digest_len: usize,
}

/// A v1 row's length in a `changes` entry.
const V1_LEN: usize = 42;
/// The first byte of a compact packing (a v1 packing starts with a table index, under 64).
const COMPACT: u8 = 0xff;
/// The digest bytes a compact packing keeps: the first 128 bits of the SHA-256 digest.
/// Editing a stored row so that it keeps its entry's digest is a second preimage of
/// those bits (2^128 work); they halve what the chain costs a row (about a tenth of a
/// span's bytes at the size cap, #20).
pub const DIGEST_KEPT: usize = 16;

impl Change {
    pub fn new(table: usize, update: bool, row_id: i64, digest: [u8; 32]) -> Change {
        Change {
            table,
            update,
            row_id,
            digest,
            digest_len: 32,
        }
    }
    /// The digest as the entry recorded it (whole, or its first `DIGEST_KEPT` bytes).
    pub fn digest(&self) -> &[u8] {
        &self.digest[..self.digest_len]
    }
    /// Whether `full`, a row's digest now, is the one recorded.
    pub fn matches(recorded: &[u8], full: &[u8; 32]) -> bool {
        !recorded.is_empty() && full.starts_with(recorded)
    }

    /// The changes a `changes` entry's digest column packs, either packing (a trailing
    /// partial record is ignored).
    pub fn unpack(b: &[u8]) -> Box<dyn Iterator<Item = Change> + '_> {
        match b.split_first() {
            Some((&COMPACT, rest)) => Box::new(Compact { rest, prev_id: 0 }),
            _ => Box::new(b.chunks_exact(V1_LEN).map(|c| {
                let mut id = [0u8; 8];
                id.copy_from_slice(&c[2..10]);
                let mut digest = [0u8; 32];
                digest.copy_from_slice(&c[10..42]);
                Change::new(c[0] as usize, c[1] != 0, i64::from_be_bytes(id), digest)
            })),
        }
    }
}

/// A `changes` entry being packed compactly: `COMPACT`, then a row at a time one byte
/// (table index << 1 | update), the id's difference from the previous row's as a
/// zigzag LEB128 varint (one byte in a batch of new rows), and `DIGEST_KEPT` bytes of
/// the digest: 18 bytes a row where v1 took 42.
#[derive(Default)]
pub struct Changes {
    packed: Vec<u8>,
    prev_id: i64,
    rows: usize,
}

impl Changes {
    pub fn with_capacity(rows: usize) -> Changes {
        Changes {
            packed: Vec::with_capacity(1 + rows * (2 + DIGEST_KEPT)),
            ..Changes::default()
        }
    }
    pub fn push(&mut self, c: &Change) {
        if self.packed.is_empty() {
            self.packed.push(COMPACT);
        }
        self.packed.push(((c.table as u8) << 1) | c.update as u8);
        let delta = c.row_id.wrapping_sub(self.prev_id);
        let mut z = ((delta << 1) ^ (delta >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                self.packed.push(byte);
                break;
            }
            self.packed.push(byte | 0x80);
        }
        self.packed.extend_from_slice(&c.digest[..DIGEST_KEPT]);
        self.prev_id = c.row_id;
        self.rows += 1;
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    pub fn bytes(&self) -> &[u8] {
        &self.packed
    }
    pub fn clear(&mut self) {
        self.packed.clear();
        self.prev_id = 0;
        self.rows = 0;
    }
}

struct Compact<'a> {
    rest: &'a [u8],
    prev_id: i64,
}

impl Iterator for Compact<'_> {
    type Item = Change;
    fn next(&mut self) -> Option<Change> {
        let (&head, mut rest) = self.rest.split_first()?;
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let (&byte, more) = rest.split_first()?;
            rest = more;
            if shift < 64 {
                z |= u64::from(byte & 0x7f) << shift;
            }
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if rest.len() < DIGEST_KEPT {
            self.rest = &[];
            return None;
        }
        let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
        let row_id = self.prev_id.wrapping_add(delta);
        self.prev_id = row_id;
        let mut digest = [0u8; 32];
        digest[..DIGEST_KEPT].copy_from_slice(&rest[..DIGEST_KEPT]);
        self.rest = &rest[DIGEST_KEPT..];
        Some(Change {
            table: (head >> 1) as usize,
            update: head & 1 != 0,
            row_id,
            digest,
            digest_len: DIGEST_KEPT,
        })
    }
}

/// Turns the changes noted since the last seal into chain entries: one `changes`
/// entry packing every row inserted or changed (its table, id and the digest of its
/// content as stored now), and per table one `delete` entry naming the ids deleted
/// (`deleted_op`: `prune` for retention). One link per transaction; the digests were
/// taken by the hook from the values written, so a row costs its digest and about 18 bytes.
/// Call inside the transaction that made the changes; a no-op when chaining is not
/// installed.
pub fn seal(conn: &Connection, deleted_op: &str) -> rusqlite::Result<u64> {
    seal_with(conn, deleted_op, None)
}

/// As `seal`; `note` goes into the entry naming the spans deleted (retention's).
pub fn seal_with(
    conn: &Connection,
    deleted_op: &str,
    note: Option<&PruneNote>,
) -> rusqlite::Result<u64> {
    let mut pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    collect_digests(&mut pending);
    if pending.is_empty() || !installed(conn) {
        return Ok(0);
    }
    // One change per row and seal, for its state now, in the order rows were first
    // touched: (table, id, inserted first, latest state). Only inserts (the usual
    // batch): every row once, nothing to merge.
    let only_inserts = pending.iter().all(|n| n.op == Op::Insert);
    let mut rows: Vec<(Noted, bool)> = Vec::with_capacity(pending.len());
    if only_inserts {
        rows.extend(pending.iter().map(|n| (*n, true)));
    } else {
        let mut at: HashMap<(u8, i64), usize, crate::util::fast_hash::FastHashing> =
            HashMap::default();
        at.reserve(pending.len());
        for n in &pending {
            match at.get(&(n.table, n.id)) {
                Some(&i) => rows[i].0 = *n,
                None => {
                    at.insert((n.table, n.id), rows.len());
                    rows.push((*n, n.op == Op::Insert));
                }
            }
        }
    }
    let mut selects: Vec<Option<(rusqlite::CachedStatement, usize)>> =
        (0..CHAINED.len()).map(|_| None).collect();
    let mut read_back = |ti: usize, id: i64| -> rusqlite::Result<Option<[u8; 32]>> {
        #[cfg(test)]
        READ_BACKS.with(|c| c.set(c.get() + 1));
        if selects[ti].is_none() {
            let (t, cols) = CHAINED[ti];
            let stmt =
                conn.prepare_cached(&format!("SELECT {cols} FROM main.{t} WHERE id = ?1"))?;
            selects[ti] = Some((stmt, cols.split(',').count()));
        }
        let Some((stmt, ncols)) = selects[ti].as_mut() else {
            return Ok(None);
        };
        let ncols = *ncols;
        stmt.query_row([id], |r| row_digest(r, ncols)).optional()
    };
    let mut packed = Changes::with_capacity(rows.len());
    let mut gone: Vec<(usize, Vec<i64>)> = Vec::new();
    for (n, inserted) in rows {
        let ti = n.table as usize;
        let digest = match (n.op, n.digest) {
            (Op::Delete, _) => None,
            (_, Some(d)) => {
                // Debug builds (the tests) check the hook's digest against the row read back.
                #[cfg(debug_assertions)]
                {
                    let stored = read_back(ti, n.id)?;
                    debug_assert_eq!(
                        stored,
                        Some(d),
                        "audit: the digest of {}/{} taken at write differs from the stored row's",
                        CHAINED[ti].0,
                        n.id
                    );
                }
                Some(d)
            }
            (_, None) => read_back(ti, n.id)?,
        };
        match digest {
            Some(digest) => packed.push(&Change::new(ti, !inserted, n.id, digest)),
            // Inserted and deleted in the same transaction: it never was.
            None if inserted => {}
            None => match gone.iter_mut().find(|(gt, _)| *gt == ti) {
                Some((_, ids)) => ids.push(n.id),
                None => gone.push((ti, vec![n.id])),
            },
        }
    }
    drop(selects);
    let mut app = Appender::new(conn)?;
    let mut n = 0;
    if !packed.is_empty() {
        app.push(conn, "changes", "*", None, packed.bytes(), None)?;
        n += 1;
    }
    for (ti, ids) in gone {
        let mut d = Deleted::of(ids);
        if let Some(note) = note.filter(|_| CHAINED[ti].0 == "spans") {
            d.max_start_ns = note.max_start_ns;
            d.partial_traces = note.partial_traces.clone();
        }
        let detail = serde_json::to_string(&d).unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(detail.as_bytes()).into();
        app.push(conn, deleted_op, CHAINED[ti].0, None, &digest, Some(detail))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
thread_local! {
    /// Rows read back by `seal` (each once more in debug builds, to check a digest).
    static READ_BACKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// (table index, row id) -> (seq of its latest entry, its digest there).
pub type Latest = HashMap<(usize, i64), (i64, Vec<u8>)>;

/// The latest entry of every row the chain names.
pub fn latest_changes(conn: &Connection) -> rusqlite::Result<Latest> {
    let mut latest = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT seq, digest FROM audit_chain WHERE op = 'changes' ORDER BY seq")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let seq: i64 = r.get(0)?;
        let packed: Vec<u8> = r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default();
        for c in Change::unpack(&packed) {
            latest.insert((c.table, c.row_id), (seq, c.digest().to_vec()));
        }
    }
    Ok(latest)
}

/// After retention: drops the chain's entries below the first entry still about a
/// stored span or event, except the latest entries of rows still stored (activity rows
/// outlive retention), and appends a `trim` entry naming where the chain starts again,
/// the hash it links to and the entries kept below. Returns the entries dropped.
pub fn trim(conn: &Connection) -> rusqlite::Result<u64> {
    if !installed(conn) {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    seal(&tx, "prune")?;
    let (last, _) = tail(&tx)?;
    let exists = |t: &str, id: i64| -> rusqlite::Result<bool> {
        tx.prepare_cached(&format!("SELECT 1 FROM main.{t} WHERE id = ?1"))?
            .exists([id])
    };
    // The chain from its start, up to the first entry that names a span or event still
    // stored: what retention deleted since the last trim, so each run reads about what
    // it deleted, not every row stored (reading every row's latest entry made a run
    // cost O(rows kept), and retention runs every few seconds on a full volume). An
    // entry naming a stored row that a later entry names again is kept too: retention
    // takes that row soon, being among the oldest. Activity rows are never updated:
    // the entry that names one is its latest.
    let mut keep_from = last;
    let mut live_below: Vec<i64> = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT seq, digest FROM audit_chain WHERE op = 'changes' AND seq <= ?1 ORDER BY seq",
        )?;
        let mut rows = stmt.query([last])?;
        'scan: while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let packed: Vec<u8> = r.get::<_, Option<Vec<u8>>>(1)?.unwrap_or_default();
            for c in Change::unpack(&packed) {
                let t = CHAINED.get(c.table).map(|c| c.0).unwrap_or("");
                if t.is_empty() || !exists(t, c.row_id)? {
                    continue;
                }
                if t == "activity" {
                    live_below.push(seq);
                } else {
                    keep_from = seq;
                    break 'scan;
                }
            }
        }
    }
    let first: Option<i64> = tx.query_row("SELECT min(seq) FROM audit_chain", [], |r| r.get(0))?;
    let mut kept: Vec<i64> = live_below.into_iter().filter(|s| *s < keep_from).collect();
    kept.sort_unstable();
    kept.dedup();
    let dropped: i64 = tx.query_row(
        "SELECT count(*) FROM audit_chain WHERE seq < ?1",
        [keep_from],
        |r| r.get(0),
    )?;
    if first.is_none() || dropped <= kept.len() as i64 {
        return Ok(0);
    }
    let anchor: Vec<u8> = tx.query_row(
        "SELECT hash FROM audit_chain WHERE seq = ?1",
        [keep_from - 1],
        |r| r.get(0),
    )?;
    let mut hashes = Vec::with_capacity(kept.len());
    for s in &kept {
        hashes.push(
            tx.query_row("SELECT hash FROM audit_chain WHERE seq = ?1", [s], |r| {
                r.get::<_, Vec<u8>>(0)
            })?,
        );
    }
    let pruned = pruned_so_far(&tx)?;
    let mut partial: Vec<String> = Vec::new();
    for t in pruned.partial_traces {
        let id = hex_bytes::decode(&t).unwrap_or_default();
        if tx
            .prepare_cached("SELECT 1 FROM traces WHERE trace_id = ?1")?
            .exists([id])?
        {
            partial.push(t);
        }
    }
    partial.sort();
    let detail = serde_json::to_string(&Trimmed {
        trimmed_through: keep_from - 1,
        anchor: hex_bytes::encode(&anchor),
        kept_digest: kept_digest(&hashes),
        kept: kept.clone(),
        pruned_max_start_ns: pruned.max_start_ns,
        partial_traces: partial,
    })
    .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(detail.as_bytes()).into();
    let mut app = Appender::new(&tx)?;
    app.push(&tx, "trim", "audit_chain", None, &digest, Some(detail))?;
    tx.execute(
        "CREATE TEMP TABLE IF NOT EXISTS audit_kept (seq INTEGER PRIMARY KEY)",
        [],
    )?;
    tx.execute("DELETE FROM temp.audit_kept", [])?;
    for s in &kept {
        tx.execute("INSERT INTO temp.audit_kept (seq) VALUES (?1)", [s])?;
    }
    let n = tx.execute(
        "DELETE FROM audit_chain WHERE seq < ?1 AND seq NOT IN (SELECT seq FROM temp.audit_kept)",
        [keep_from],
    )? as u64;
    tx.commit()?;
    Ok(n)
}

/// What the chain's prune and trim entries say about the spans retention deleted.
pub fn pruned_so_far(conn: &Connection) -> rusqlite::Result<super::audit_derived::Pruned> {
    let mut out = super::audit_derived::Pruned::default();
    let mut stmt = conn.prepare(
        "SELECT op, detail FROM audit_chain WHERE op IN ('prune', 'trim') AND detail IS NOT NULL",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let op: String = r.get(0)?;
        let detail: String = r.get(1)?;
        out.absorb_detail(&op, &detail);
    }
    Ok(out)
}

/// Seals each batch's changes into the chain inside its transaction; the last hook,
/// so what earlier hooks write is chained too.
pub struct ChainHook;

impl crate::pipeline::WriteHook for ChainHook {
    fn sqlite_only(&self) -> bool {
        true
    }

    fn in_transaction(
        &self,
        tx: &mut dyn crate::pipeline::HookTx,
        _records: &[crate::model::Record],
        _effects: &[super::write::WriteEffect],
    ) -> Result<(), crate::pipeline::HookError> {
        // Its tables are the SQLite file's; registered only there.
        let Some(tx) = tx.sqlite() else {
            return Ok(());
        };
        seal(tx, "delete")?;
        Ok(())
    }
}

// ---------------------------------------------------------------- keys and heads

/// The Ed25519 key that signs heads.
pub struct Signer {
    pair: ring::signature::Ed25519KeyPair,
}

const KEY_PREFIX: &str = "openclaw-trace-audit-ed25519-pkcs8:";

impl Signer {
    /// Loads the key, creating it (mode 0600) when the file is absent.
    pub fn load_or_create(path: &Path) -> Result<Signer, AuditError> {
        let err = |msg: String| AuditError::Key {
            path: path.to_path_buf(),
            msg,
        };
        if path.exists() {
            return Signer::load(path);
        }
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| err("cannot generate a key".into()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(format!("cannot create: {e}")))?;
        writeln!(f, "{KEY_PREFIX}{}", hex_bytes::encode(doc.as_ref()))
            .and_then(|_| f.sync_all())
            .map_err(|e| err(format!("cannot write: {e}")))?;
        Signer::load(path)
    }

    pub fn load(path: &Path) -> Result<Signer, AuditError> {
        let err = |msg: String| AuditError::Key {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let der = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .and_then(hex_bytes::decode)
            .ok_or_else(|| err("not an openclaw-trace audit key".into()))?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| err(format!("bad key: {e}")))?;
        Ok(Signer { pair })
    }

    pub fn public_key(&self) -> Vec<u8> {
        use ring::signature::KeyPair;
        self.pair.public_key().as_ref().to_vec()
    }

    /// An Ed25519 signature of `msg`.
    pub fn sign_bytes(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    pub fn sign_head(&self, seq: i64, hash: &[u8], time_ns: i64) -> SignedHead {
        let sig = self.pair.sign(&head_message(seq, hash, time_ns));
        SignedHead {
            seq,
            hash: hash.to_vec(),
            time_ns,
            public_key: self.public_key(),
            signature: sig.as_ref().to_vec(),
        }
    }
}

fn head_message(seq: i64, hash: &[u8], time_ns: i64) -> Vec<u8> {
    let mut m = b"openclaw-trace audit head v1\n".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&time_ns.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// A signed (sequence, hash) of the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: i64,
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
    pub time_ns: i64,
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

impl SignedHead {
    /// True when the signature is good for `public_key`.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public_key)
            .verify(
                &head_message(self.seq, &self.hash, self.time_ns),
                &self.signature,
            )
            .is_ok()
    }
}

/// The stored signed heads, in `order` (an SQL tail such as `ORDER BY seq`).
pub fn signed_heads(conn: &Connection, order: &str) -> rusqlite::Result<Vec<SignedHead>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT seq, hash, time_ns, public_key, signature FROM audit_heads {order}"
    ))?;
    stmt.query_map([], |r| {
        Ok(SignedHead {
            seq: r.get(0)?,
            hash: r.get(1)?,
            time_ns: r.get(2)?,
            public_key: r.get(3)?,
            signature: r.get(4)?,
        })
    })?
    .collect()
}

/// The newest signed head stored in the database.
pub fn last_signed(conn: &Connection) -> rusqlite::Result<Option<SignedHead>> {
    Ok(signed_heads(conn, "ORDER BY seq DESC LIMIT 1")?.pop())
}

/// Signs the chain's head unless it is already signed: appends it to the head file,
/// then stores it. Runs on the writer's connection. `None` when nothing new.
pub fn checkpoint(
    conn: &Connection,
    signer: &Signer,
    head_file: &Path,
) -> Result<Option<SignedHead>, AuditError> {
    seal(conn, "delete")?;
    let (seq, hash) = tail(conn)?;
    if seq == 0 {
        return Ok(None);
    }
    if last_signed(conn)?.is_some_and(|h| h.seq >= seq) {
        return Ok(None);
    }
    let head = signer.sign_head(seq, &hash, crate::model::now_ns());
    // The file first: a head it holds that the database lacks is harmless.
    append_head_file(head_file, &head)?;
    conn.execute(
        "INSERT OR IGNORE INTO audit_heads (seq, hash, time_ns, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            head.seq,
            head.hash,
            head.time_ns,
            head.public_key,
            head.signature
        ],
    )?;
    Ok(Some(head))
}

fn append_head_file(path: &Path, head: &SignedHead) -> Result<(), AuditError> {
    let err = |msg: String| AuditError::HeadFile {
        path: path.to_path_buf(),
        msg,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    let line = serde_json::to_string(head).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(format!("{line}\n").as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| err(e.to_string()))
}

/// Reads the head file: its heads, and lines it could not read (1-based). A last
/// line without its newline is an interrupted append, not an error.
pub fn read_head_file(path: &Path) -> std::io::Result<(Vec<SignedHead>, Vec<usize>)> {
    let text = std::fs::read_to_string(path)?;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut heads = Vec::new();
    let mut bad = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<SignedHead>(l) {
            Ok(h) => heads.push(h),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(_) => bad.push(i + 1),
        }
    }
    Ok((heads, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_ranges_cover_exactly_their_ids() {
        let d = Deleted::of(vec![5, 3, 4, 9, 10, 12]);
        assert_eq!(d.ids, vec![(3, 5), (9, 10), (12, 12)]);
        assert_eq!(d.count, 6);
        for id in [3, 4, 5, 9, 10, 12] {
            assert!(d.contains(id), "{id}");
        }
        for id in [1, 2, 6, 8, 11, 13] {
            assert!(!d.contains(id), "{id}");
        }
    }

    /// The writer's digests, taken from the values it bound, equal those of the rows
    /// read back (what `verify` computes), floats without a fraction, a negative zero
    /// and a NaN (stored as NULL) included.
    #[test]
    fn digests_of_bound_values_match_the_stored_rows() {
        use crate::model::{CappedText, Event, EventType, Record, Span, SpanId, SpanKind, TraceId};
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open_writer(&dir.path().join("a.db")).unwrap();
        install(&mut conn).unwrap();
        let mut records = Vec::new();
        for (i, cost) in [Some(0.25), Some(-0.0), Some(1.5), Some(3.0), None]
            .into_iter()
            .enumerate()
        {
            let mut s = Span::new(
                TraceId::generate(),
                SpanId::generate(),
                format!("call {i}"),
                SpanKind::LlmCall,
                1_000_000_000 + i as i64,
            );
            s.end_ns = Some(1_500_000_000 + 7 * i as i64);
            s.cost_usd = cost;
            s.cost_computed_usd = (i == 2).then_some(f64::NAN);
            s.input_tokens = Some(10 + i as i64);
            s.input = Some(CappedText {
                text: format!("héllo {i}"),
                original_len: 7,
            });
            s.attributes
                .insert("k".into(), serde_json::Value::from(i as u64));
            records.push(Record::Span(Box::new(s)));
        }
        // Enough bytes for several hand-overs to the hashing thread.
        for i in 0..200 {
            let mut e = Event::new(EventType::Error, "E".into(), 5 + i);
            e.message = Some(format!("boom {i} {}", "x".repeat(500)));
            records.push(Record::Event(Box::new(e)));
        }
        let tx = conn.transaction().unwrap();
        let out = super::super::write::write_records(&tx, &records, 9).unwrap();
        // The usage rollups, as the pipeline keeps them (`verify` recomputes them).
        use crate::pipeline::WriteHook;
        crate::analytics::usage::RollupHook
            .in_transaction(
                &mut crate::store::sqlite::SqliteHookTx(&tx),
                &records,
                &out.effects,
            )
            .unwrap();
        assert_eq!(PENDING.with(|p| p.borrow().len()), 205);
        let (gathered, handed) = DIGESTING.with(|d| {
            let d = d.borrow();
            (
                d.rows.len(),
                d.inflight.iter().map(|(i, _)| i.len()).sum::<usize>(),
            )
        });
        assert_eq!(gathered + handed, 205, "every insert gathered");
        assert!(handed > 0, "some handed to the hashing thread");
        // Debug builds compare each digest with the row read back, at seal: one read
        // each, none for want of a digest.
        READ_BACKS.with(|c| c.set(0));
        assert_eq!(seal(&tx, "delete").unwrap(), 1);
        let reads = READ_BACKS.with(|c| c.get());
        assert_eq!(reads, if cfg!(debug_assertions) { 205 } else { 0 });
        tx.commit().unwrap();
        let report = super::super::audit_verify::verify_conn(&conn, None, &[]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.rows_checked, 205);
    }

    /// Rows stored before the chain existed are adopted in entries of at most
    /// `ADOPT_ROWS_PER_ENTRY` rows, and then verify; a second start adopts nothing.
    #[test]
    fn rows_stored_before_the_chain_are_adopted_in_bounded_entries() {
        use crate::model::{Event, EventType, Record};
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open_writer(&dir.path().join("a.db")).unwrap();
        let n = 2 * ADOPT_ROWS_PER_ENTRY + 1;
        let records: Vec<Record> = (0..n)
            .map(|i| {
                Record::Event(Box::new(Event::new(
                    EventType::Error,
                    "E".into(),
                    5 + i as i64,
                )))
            })
            .collect();
        let tx = conn.transaction().unwrap();
        super::super::write::write_records(&tx, &records, 9).unwrap();
        tx.commit().unwrap();
        install(&mut conn).unwrap();
        assert_eq!(adopt_existing(&mut conn).unwrap(), n as u64);
        let rows: Vec<usize> = conn
            .prepare("SELECT digest FROM audit_chain WHERE detail = 'adopted' ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok(Change::unpack(&r.get::<_, Vec<u8>>(0)?).count()))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [ADOPT_ROWS_PER_ENTRY, ADOPT_ROWS_PER_ENTRY, 1]);
        assert_eq!(adopt_existing(&mut conn).unwrap(), 0);
        let report = super::super::audit_verify::verify_conn(&conn, None, &[]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.rows_checked, n as u64);
    }

    #[test]
    fn changes_pack_compactly_and_older_entries_still_read() {
        let digest = |n: u8| -> [u8; 32] { std::array::from_fn(|i| n.wrapping_add(i as u8)) };
        let rows = [
            Change::new(0, false, 1, digest(1)),
            Change::new(0, false, 2, digest(2)),
            Change::new(3, true, 1_000_000_007, digest(3)),
            Change::new(1, false, 5, digest(4)),
            Change::new(2, true, i64::MAX, digest(5)),
            Change::new(2, false, 0, digest(6)),
        ];
        let mut packed = Changes::with_capacity(rows.len());
        for c in &rows {
            packed.push(c);
        }
        // One byte each for the first two ids (new rows in a batch go up by one).
        assert_eq!(&packed.bytes()[..3], &[COMPACT, 0, 2]);
        assert_eq!(packed.bytes()[3 + DIGEST_KEPT..][..2], [0, 2]);
        let back: Vec<Change> = Change::unpack(packed.bytes()).collect();
        assert_eq!(back.len(), rows.len());
        for (b, c) in back.iter().zip(&rows) {
            assert_eq!((b.table, b.update, b.row_id), (c.table, c.update, c.row_id));
            assert_eq!(b.digest(), &c.digest[..DIGEST_KEPT]);
            assert!(Change::matches(b.digest(), &c.digest));
            let mut other = c.digest;
            other[DIGEST_KEPT - 1] ^= 1;
            assert!(!Change::matches(b.digest(), &other));
        }
        // A cut entry yields the whole rows before the cut, and nothing made up.
        let cut = &packed.bytes()[..packed.bytes().len() - 3];
        assert_eq!(Change::unpack(cut).count(), rows.len() - 1);
        assert_eq!(Change::unpack(&[COMPACT, 0x80, 0x80]).count(), 0);

        // An entry written before schema 16: 42 bytes a row, the whole digest.
        let mut v1 = Vec::new();
        for c in &rows[..3] {
            v1.push(c.table as u8);
            v1.push(c.update as u8);
            v1.extend_from_slice(&c.row_id.to_be_bytes());
            v1.extend_from_slice(&c.digest);
        }
        let back: Vec<Change> = Change::unpack(&v1).collect();
        assert_eq!(back, rows[..3]);
        assert!(Change::matches(back[2].digest(), &rows[2].digest));
        assert!(!Change::matches(back[2].digest(), &rows[1].digest));
        assert!(!Change::matches(&[], &rows[1].digest));
    }

    #[test]
    fn chain_follows_inserts_updates_and_deletes_in_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = super::super::open_writer(&dir.path().join("a.db")).unwrap();
        install(&mut conn).unwrap();
        let tx = conn.transaction().unwrap();
        for uid in ["a", "b", "c"] {
            tx.execute(
                "INSERT INTO events (uid, type, time_ns, name, severity, source, received_ns)
                 VALUES (?1, 'log', 1, 'n', 'info', 'api', 1)",
                [uid],
            )
            .unwrap();
        }
        tx.execute("UPDATE events SET message = 'x' WHERE uid = 'b'", [])
            .unwrap();
        assert_eq!(
            seal(&tx, "delete").unwrap(),
            1,
            "one link for the three rows"
        );
        tx.execute("DELETE FROM events WHERE uid = 'a'", [])
            .unwrap();
        assert_eq!(seal(&tx, "prune").unwrap(), 1);
        tx.commit().unwrap();
        let ops: Vec<String> = conn
            .prepare("SELECT op FROM audit_chain ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ops, ["changes", "prune"]);
        let latest = latest_changes(&conn).unwrap();
        assert_eq!(latest.len(), 3);
        let report = super::super::audit_verify::verify_conn(&conn, None, &[]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
}
