//! Span attributes, texts and resources stored compressed with a zstd dictionary trained
//! on the database's own rows: small JSON and text values gain little from zstd alone,
//! and five to fifteen times with a dictionary of what such values look like.
//!
//! A stored value says what it is: TEXT is the value itself (rows written before the
//! first dictionary, and values too short to gain), a BLOB is packed:
//! `[FORMAT_ZSTD_DICT][dictionary id, LEB128][text length, LEB128][magicless zstd frame]`.
//! Dictionaries live in the `codec_dicts` table, so the file alone can be read.
//!
//! Every connection gets three SQL functions (`register`):
//! - `unpack(x)`: the text back; every query reading a packed column goes through it;
//! - `pack(x)`: compressed with the connection's current dictionary (the text unchanged
//!   when it has none, when it is short, or when packing would not make it smaller);
//!   the writer's inserts and updates of those columns call it;
//! - `codec_use(id, dict)`: makes a dictionary the connection's current one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use zstd::zstd_safe::{CCtx, CDict, CParameter, DCtx, DDict, DParameter, FrameFormat};

/// The first byte of a packed value: zstd, magicless frame, with a stored dictionary.
pub const FORMAT_ZSTD_DICT: u8 = 1;
/// Shorter values stay text: a packed value carries about 8 bytes of headers.
pub const MIN_PACK_LEN: usize = 32;
/// zstd level: 3 packs these values as small as 9 does (measured, BENCHMARKS.md).
const LEVEL: i32 = 3;
/// Largest dictionary trained; 64 KB gained nothing over 16 KB on real rows.
pub const DICT_MAX_BYTES: usize = 16 * 1024;
/// The `spans` columns stored packed.
pub const PACKED_COLUMNS: [&str; 4] = ["attributes", "input_text", "output_text", "resource"];

/// The schema of the dictionaries (a migration in `store::schema`).
pub const MIGRATION: &str = r#"
    -- zstd dictionaries the packed span values refer to (store::codec). first_span_id:
    -- the next span id when it became current; no row older than the next dictionary's
    -- first_span_id can refer to it, which is when retention may drop it.
    CREATE TABLE codec_dicts (
        id INTEGER PRIMARY KEY,
        dict BLOB NOT NULL,
        first_span_id INTEGER NOT NULL,
        created_ns INTEGER NOT NULL,
        samples INTEGER NOT NULL
    );
"#;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("a packed value is truncated or in an unknown format")]
    Malformed,
    #[error("a packed value names dictionary {0}, which the database does not hold")]
    MissingDictionary(u64),
    #[error("dictionary {0} cannot be loaded")]
    BadDictionary(u64),
    #[error("zstd: {0}")]
    Zstd(&'static str),
    #[error("an unpacked value is not UTF-8")]
    NotUtf8,
    #[error("too few samples to train a dictionary")]
    TooFewSamples,
}

fn zstd_err(code: usize) -> CodecError {
    CodecError::Zstd(zstd::zstd_safe::get_error_name(code))
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

/// A packed value's header: (dictionary id, text length, frame).
fn parse(packed: &[u8]) -> Result<(u64, usize, &[u8]), CodecError> {
    let rest = match packed.split_first() {
        Some((&FORMAT_ZSTD_DICT, rest)) => rest,
        _ => return Err(CodecError::Malformed),
    };
    let (dict, rest) = read_varint(rest).ok_or(CodecError::Malformed)?;
    let (len, frame) = read_varint(rest).ok_or(CodecError::Malformed)?;
    // A text is at most a SQLite value (1 GB by default); a longer claim is damage.
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= 1 << 30)
        .ok_or(CodecError::Malformed)?;
    Ok((dict, len, frame))
}

/// Compresses with one dictionary at a time (the connection's current one).
pub struct Packer {
    cctx: CCtx<'static>,
    current: Option<(u64, Arc<CDict<'static>>)>,
}

impl Packer {
    fn new() -> Self {
        Packer {
            cctx: CCtx::create(),
            current: None,
        }
    }

    /// Makes `dict` (stored as `id`) the one values are packed with.
    pub fn use_dictionary(&mut self, id: u64, dict: &[u8]) -> Result<(), CodecError> {
        let cdict = CDict::try_create(dict, LEVEL).ok_or(CodecError::BadDictionary(id))?;
        let cdict = Arc::new(cdict);
        self.cctx.ref_cdict(&cdict).map_err(zstd_err)?;
        // Magicless, without the dictionary id or length (the header holds both):
        // eight bytes a value saved.
        for p in [
            CParameter::Format(FrameFormat::Magicless),
            CParameter::DictIdFlag(false),
            CParameter::ContentSizeFlag(false),
            CParameter::ChecksumFlag(false),
        ] {
            self.cctx.set_parameter(p).map_err(zstd_err)?;
        }
        self.current = Some((id, cdict));
        Ok(())
    }

    pub fn current(&self) -> Option<u64> {
        self.current.as_ref().map(|(id, _)| *id)
    }

    /// The packed form of `text`, or `None` when it stays text (no dictionary, too
    /// short, or no smaller packed).
    pub fn pack(&mut self, text: &str) -> Option<Vec<u8>> {
        let (id, _) = self.current.as_ref()?;
        if text.len() < MIN_PACK_LEN {
            return None;
        }
        let mut out = Vec::with_capacity(text.len() + 16);
        out.push(FORMAT_ZSTD_DICT);
        write_varint(&mut out, *id);
        write_varint(&mut out, text.len() as u64);
        let head = out.len();
        // Never larger than the text: what does not fit there is not worth packing.
        out.resize(head + text.len(), 0);
        let n = self
            .cctx
            .compress2(&mut out[head..], text.as_bytes())
            .ok()?;
        out.truncate(head + n);
        (out.len() < text.len()).then_some(out)
    }
}

/// Decompresses with any of the database's dictionaries, loaded when first needed.
#[derive(Default)]
pub struct Unpacker {
    dctx: Option<DCtx<'static>>,
    dicts: HashMap<u64, Arc<DDict<'static>>>,
    current: Option<u64>,
}

impl Unpacker {
    /// The text of `packed`; `load` gives a dictionary's bytes by id when not yet loaded.
    pub fn unpack(
        &mut self,
        packed: &[u8],
        load: impl FnOnce(u64) -> Result<Option<Vec<u8>>, CodecError>,
    ) -> Result<String, CodecError> {
        let (id, len, frame) = parse(packed)?;
        let ddict = match self.dicts.entry(id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let bytes = load(id)?.ok_or(CodecError::MissingDictionary(id))?;
                let ddict = DDict::try_create(&bytes).ok_or(CodecError::BadDictionary(id))?;
                e.insert(Arc::new(ddict))
            }
        };
        let dctx = match &mut self.dctx {
            Some(d) => d,
            None => {
                let mut d = DCtx::create();
                d.set_parameter(DParameter::Format(FrameFormat::Magicless))
                    .map_err(zstd_err)?;
                self.dctx.insert(d)
            }
        };
        if self.current != Some(id) {
            dctx.ref_ddict(ddict).map_err(zstd_err)?;
            self.current = Some(id);
        }
        let mut out: Vec<u8> = Vec::with_capacity(len);
        let n = dctx.decompress(&mut out, frame).map_err(zstd_err)?;
        if n != len {
            return Err(CodecError::Malformed);
        }
        String::from_utf8(out).map_err(|_| CodecError::NotUtf8)
    }
}

fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn sql_err(e: CodecError) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(e))
}

/// A dictionary's bytes, read on the connection running the function (the same
/// snapshot as the row being read: a row never commits before its dictionary).
fn load_dictionary(ctx: &Context<'_>, id: u64) -> Result<Option<Vec<u8>>, CodecError> {
    // SAFETY: the connection is only used for this one read, inside the call.
    let conn = unsafe { ctx.get_connection() }.map_err(|_| CodecError::MissingDictionary(id))?;
    conn.query_row(
        "SELECT dict FROM codec_dicts WHERE id = ?1",
        [id as i64],
        |r| r.get(0),
    )
    .optional()
    .map_err(|_| CodecError::MissingDictionary(id))
}

/// Adds `pack`, `unpack` and `codec_use` to `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let pure = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;
    let unpacker = Mutex::new(Unpacker::default());
    conn.create_scalar_function("unpack", 1, pure, move |ctx| match ctx.get_raw(0) {
        ValueRef::Blob(b) => {
            let mut u = unpacker.lock().unwrap_or_else(|p| p.into_inner());
            u.unpack(b, |id| load_dictionary(ctx, id))
                .map(Value::Text)
                .map_err(sql_err)
        }
        v => Ok(owned(v)),
    })?;
    let packer = Arc::new(Mutex::new(Packer::new()));
    let p = packer.clone();
    // Not deterministic: what it gives depends on the current dictionary.
    conn.create_scalar_function(
        "pack",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| match ctx.get_raw(0) {
            ValueRef::Text(t) => {
                let text = std::str::from_utf8(t).map_err(|_| sql_err(CodecError::NotUtf8))?;
                let mut p = p.lock().unwrap_or_else(|p| p.into_inner());
                Ok(match p.pack(text) {
                    Some(b) => Value::Blob(b),
                    None => Value::Text(text.to_owned()),
                })
            }
            v => Ok(owned(v)),
        },
    )?;
    conn.create_scalar_function(
        "codec_use",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| {
            let id: i64 = ctx.get(0)?;
            let dict: Vec<u8> = ctx.get(1)?;
            let mut p = packer.lock().unwrap_or_else(|p| p.into_inner());
            p.use_dictionary(id as u64, &dict).map_err(sql_err)?;
            Ok(id)
        },
    )?;
    Ok(())
}

/// Makes the newest stored dictionary the connection's current one (none: values stay text).
pub fn use_newest(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT codec_use(id, dict) FROM codec_dicts ORDER BY id DESC LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

/// The values of the newest spans' packed columns that are long enough to pack, up to
/// `max_bytes` in all: what a dictionary is trained on.
pub fn samples(conn: &Connection, max_bytes: usize) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT unpack(attributes), unpack(input_text), unpack(output_text), unpack(resource)
         FROM spans ORDER BY id DESC LIMIT 20000",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    let mut total = 0;
    // The same resource in every span teaches the dictionary nothing new after a few.
    let mut resources: HashMap<String, u32> = HashMap::new();
    while let Some(r) = rows.next()? {
        for i in 0..4 {
            let Some(v) = r.get::<_, Option<String>>(i)? else {
                continue;
            };
            if v.len() < MIN_PACK_LEN {
                continue;
            }
            if i == 3 {
                let seen = resources.entry(v.clone()).or_default();
                *seen += 1;
                if *seen > 8 {
                    continue;
                }
            }
            total += v.len();
            out.push(v);
        }
        if total >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// Samples needed, at least, before a dictionary is worth training.
pub const MIN_SAMPLE_BYTES: usize = 128 * 1024;
/// Samples read for training, at most: training takes about ten times their size in
/// memory for a moment, and a core for a fraction of a second.
pub const MAX_SAMPLE_BYTES: usize = 1024 * 1024;

/// Trains a dictionary on `samples` (slow: tens of milliseconds; run it off the writer).
pub fn train(samples: &[String]) -> Result<Vec<u8>, CodecError> {
    let total: usize = samples.iter().map(String::len).sum();
    if total < MIN_SAMPLE_BYTES || samples.len() < 100 {
        return Err(CodecError::TooFewSamples);
    }
    let size = DICT_MAX_BYTES.min(total / 8);
    zstd::dict::from_samples(samples, size).map_err(|_| CodecError::TooFewSamples)
}

/// Stores `dict` and makes it the connection's current one; its id.
pub fn install(
    conn: &Connection,
    dict: &[u8],
    samples: usize,
    now_ns: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO codec_dicts (dict, first_span_id, created_ns, samples)
         VALUES (?1, (SELECT COALESCE(max(id), 0) + 1 FROM spans), ?2, ?3)",
        params![dict, now_ns, samples as i64],
    )?;
    let id = conn.last_insert_rowid();
    conn.query_row(
        "SELECT codec_use(id, dict) FROM codec_dicts WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
}

/// The newest span's id (0: none), the spans written since the newest dictionary
/// became current (all of them when there is none), and how many dictionaries there are.
fn since_newest(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(
        "SELECT n, n + 1 - COALESCE((SELECT first_span_id FROM codec_dicts ORDER BY id DESC LIMIT 1), 1),
            (SELECT count(*) FROM codec_dicts)
         FROM (SELECT COALESCE(max(id), 0) AS n FROM spans)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

/// Drops the dictionaries no stored span can refer to any more: older than the
/// current one, with no span left from before the next one became current.
pub fn drop_unreferenced(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM codec_dicts AS d
         WHERE d.id < (SELECT max(id) FROM codec_dicts)
           AND NOT EXISTS (SELECT 1 FROM spans WHERE id < (
                SELECT first_span_id FROM codec_dicts n WHERE n.id > d.id ORDER BY n.id LIMIT 1))",
        [],
    )
}

/// Packs up to `limit` span rows with id in `[from, before)` that still hold a packable
/// value as text (rows written before a dictionary existed); the next `from`, or `None`
/// when none is left below `before`.
pub fn convert_rows(
    conn: &Connection,
    from: i64,
    before: i64,
    limit: usize,
) -> rusqlite::Result<Option<i64>> {
    let plain = PACKED_COLUMNS
        .iter()
        .map(|c| format!("(typeof({c}) = 'text' AND length({c}) >= {MIN_PACK_LEN})"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let last: Option<i64> = conn.query_row(
        "SELECT max(id) FROM (SELECT id FROM spans WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3)",
        params![from, before, limit as i64],
        |r| r.get(0),
    )?;
    let Some(last) = last else {
        return Ok(None);
    };
    let set = PACKED_COLUMNS
        .iter()
        .map(|c| format!("{c} = pack({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    conn.execute(
        &format!("UPDATE spans SET {set} WHERE id >= ?1 AND id <= ?2 AND ({plain})"),
        params![from, last],
    )?;
    Ok(Some(last + 1))
}

/// Spans stored before the first dictionary is trained, and then since the newest one,
/// before the next: a first one early, a better one on more rows, then one now and then
/// as what the agent sends moves on.
pub fn retrain_after(dictionaries: i64) -> i64 {
    match dictionaries {
        0 => 1_000,
        1 => 10_000,
        _ => 100_000,
    }
}

/// How often the upkeep looks at whether a dictionary is due.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Rows converted a step, and how often: a few milliseconds of the writer's time.
const CONVERT_ROWS: usize = 500;
const CONVERT_EVERY: Duration = Duration::from_millis(100);

type Training = JoinHandle<Result<(Vec<u8>, usize), CodecError>>;

/// Keeps the writer's dictionaries current: trains the first once enough spans are
/// stored and others as the data moves on (on a thread of its own, off the writer),
/// packs the rows written before any dictionary existed a few hundred at a time (an
/// existing database converts in place while capture goes on), and drops the
/// dictionaries no row refers to. Called by the writer between batches.
#[derive(Default)]
pub struct Upkeep {
    checked: Option<Instant>,
    converted: Option<Instant>,
    training: Option<Training>,
    /// Do not sample again before the spans reach this id (too few samples last time).
    wait_for_id: i64,
    /// Rows from `.0` on, before `.1`, may still hold packable text.
    convert: Option<(i64, i64)>,
    /// Whether the conversion was looked for since the process started.
    convert_looked: bool,
}

impl Upkeep {
    pub fn tick(&mut self, conn: &Connection, now_ns: i64) {
        if let Err(e) = self.step(conn, now_ns) {
            tracing::warn!(error = %e, "span value packing upkeep failed; will retry");
        }
    }

    fn step(&mut self, conn: &Connection, now_ns: i64) -> rusqlite::Result<()> {
        if self.training.as_ref().is_some_and(|t| t.is_finished())
            && let Some(t) = self.training.take()
        {
            match t.join() {
                Ok(Ok((dict, samples))) => {
                    let id = install(conn, &dict, samples, now_ns)?;
                    tracing::info!(
                        dictionary = id,
                        bytes = dict.len(),
                        samples,
                        "span values are packed with a new dictionary"
                    );
                    self.convert_looked = false;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "no dictionary trained"),
                Err(_) => tracing::warn!("dictionary training failed"),
            }
        }
        let now = Instant::now();
        if !self.convert_looked {
            self.convert_looked = true;
            // Rows from before the oldest dictionary: written as text.
            self.convert = conn
                .query_row(
                    "SELECT (SELECT min(id) FROM spans),
                        (SELECT first_span_id FROM codec_dicts ORDER BY id LIMIT 1)",
                    [],
                    |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
                )
                .map(|(from, before)| from.zip(before).filter(|(f, b)| f < b))?;
        }
        if let Some((from, before)) = self.convert
            && self
                .converted
                .is_none_or(|t| now.duration_since(t) >= CONVERT_EVERY)
        {
            self.converted = Some(now);
            let next =
                super::audit::same_content(|| convert_rows(conn, from, before, CONVERT_ROWS))?;
            self.convert = next.map(|n| (n, before));
            if self.convert.is_none() {
                tracing::info!("span values stored before the first dictionary are packed");
            }
        }
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < CHECK_EVERY)
        {
            return Ok(());
        }
        self.checked = Some(now);
        drop_unreferenced(conn)?;
        if self.training.is_some() {
            return Ok(());
        }
        let (newest, since, dictionaries) = since_newest(conn)?;
        if since < retrain_after(dictionaries) || newest < self.wait_for_id {
            return Ok(());
        }
        let samples = samples(conn, MAX_SAMPLE_BYTES)?;
        if samples.iter().map(String::len).sum::<usize>() < MIN_SAMPLE_BYTES {
            self.wait_for_id = newest + 1_000;
            return Ok(());
        }
        let spawned = std::thread::Builder::new()
            .name("oct-dictionary".into())
            .spawn(move || {
                // Capture first: training waits for a core the agent and ingest leave idle.
                crate::util::nice_this_thread(19);
                let out = train(&samples).map(|d| (d, samples.len()));
                drop(samples);
                crate::util::heap::release_free_pages();
                out
            });
        match spawned {
            Ok(t) => self.training = Some(t),
            Err(e) => tracing::warn!(error = %e, "cannot start dictionary training"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        c
    }

    fn corpus(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"gen_ai.request.model":"gpt-4o-mini","openclaw.session_key":"agent:main:{i}","tool":"web_search","query":"weather in city number {i} today","run":{}}}"#,
                    i * 7919 % 1000
                )
            })
            .collect()
    }

    #[test]
    fn packed_values_round_trip_byte_for_byte() {
        let c = db();
        let dict = train(&corpus(4000)).unwrap();
        install(&c, &dict, 4000, 1).unwrap();
        let texts = [
            corpus(1)[0].clone(),
            "é".repeat(100),
            // What lossy decoding left of invalid UTF-8 is stored as it was replaced.
            String::from_utf8_lossy(b"abc\xff\xfe def ghi jkl mno pqr stu vwx yz 0123456789")
                .into_owned(),
            "x".repeat(100_000),
            "short".into(),
        ];
        for t in &texts {
            let (stored, back): (Value, String) = c
                .query_row("SELECT pack(?1), unpack(pack(?1))", [t], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!(&back, t);
            match stored {
                Value::Blob(b) => assert!(b.len() < t.len() && t.len() >= MIN_PACK_LEN),
                Value::Text(s) => assert_eq!(&s, t),
                other => panic!("{other:?}"),
            }
        }
        let packed: Vec<u8> = c
            .query_row("SELECT pack(?1)", [&corpus(5000)[4999]], |r| r.get(0))
            .unwrap();
        assert!(
            packed.len() * 4 < corpus(5000)[4999].len(),
            "{}",
            packed.len()
        );
        let (n, t): (Option<String>, String) = c
            .query_row("SELECT unpack(NULL), unpack('plain')", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((n, t.as_str()), (None, "plain"));
    }

    #[test]
    fn damaged_or_unknown_values_are_errors_not_panics() {
        let c = db();
        for bad in [
            &b"\x01"[..],
            b"\x02\x01\x05abcde",
            b"\x01\x09\x05abcde",
            b"\x01\x01\xff\xff\xff\xff\xff\x7f",
        ] {
            let r: rusqlite::Result<String> = c.query_row("SELECT unpack(?1)", [bad], |r| r.get(0));
            assert!(r.is_err(), "{bad:?}");
        }
        let dict = train(&corpus(4000)).unwrap();
        install(&c, &dict, 4000, 1).unwrap();
        let mut packed: Vec<u8> = c
            .query_row("SELECT pack(?1)", [&corpus(1)[0]], |r| r.get(0))
            .unwrap();
        let last = packed.len() - 1;
        packed[last] ^= 0x55;
        packed.truncate(last - 3);
        let r: rusqlite::Result<String> = c.query_row("SELECT unpack(?1)", [&packed], |r| r.get(0));
        assert!(r.is_err());
    }

    #[test]
    fn every_connection_reads_what_the_writer_packed_with_any_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let w = crate::store::open_writer(&path).unwrap();
        let r = crate::store::open_reader(&path).unwrap();
        let mut stored = Vec::new();
        for round in 0..3 {
            let texts: Vec<String> = corpus(3000)
                .into_iter()
                .map(|t| format!("{round}{t}"))
                .collect();
            let dict = train(&texts).unwrap();
            install(&w, &dict, texts.len(), round).unwrap();
            let t = &texts[round as usize];
            let b: Vec<u8> = w.query_row("SELECT pack(?1)", [t], |r| r.get(0)).unwrap();
            stored.push((b, t.clone()));
        }
        // The reader was opened before any dictionary existed; it loads each on first use.
        for (b, t) in &stored {
            let back: String = r.query_row("SELECT unpack(?1)", [b], |r| r.get(0)).unwrap();
            assert_eq!(&back, t);
        }
        // A new writer connection packs with the newest dictionary.
        drop(w);
        let w = crate::store::open_writer(&path).unwrap();
        use_newest(&w).unwrap();
        let b: Vec<u8> = w
            .query_row("SELECT pack(?1)", [&corpus(1)[0]], |r| r.get(0))
            .unwrap();
        assert_eq!(parse(&b).unwrap().0, 3);
    }
}
