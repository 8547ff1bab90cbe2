//! Where each reader stopped in each file or database it follows (table `source_offsets`).
//! Saved only after the records read before that point are committed, so a restart
//! neither repeats nor skips anything (and what a crash repeats has stable ids).

use std::collections::HashMap;

use rusqlite::{Connection, params};

/// A position, and what identifies the content it is a position in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    pub fingerprint: Option<String>,
    pub position: i64,
}

/// Every stored position of `source`, by key.
pub fn load(conn: &Connection, source: &str) -> rusqlite::Result<HashMap<String, Offset>> {
    let mut stmt =
        conn.prepare("SELECT key, fingerprint, position FROM source_offsets WHERE source = ?1")?;
    let rows = stmt.query_map([source], |r| {
        Ok((
            r.get::<_, String>(0)?,
            Offset {
                fingerprint: r.get(1)?,
                position: r.get(2)?,
            },
        ))
    })?;
    rows.collect()
}

/// Loads the positions from the database file, if it exists (a fresh one has none).
pub fn load_from(db_path: &std::path::Path, source: &str) -> HashMap<String, Offset> {
    let loaded = super::open_reader(db_path)
        .map_err(|e| e.to_string())
        .and_then(|c| load(&c, source).map_err(|e| e.to_string()));
    match loaded {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(source, error = %e, "cannot read saved positions; starting from the beginning");
            HashMap::new()
        }
    }
}

pub fn save(
    conn: &Connection,
    source: &str,
    key: &str,
    offset: &Offset,
    now_ns: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO source_offsets (source, key, fingerprint, position, updated_ns)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(source, key) DO UPDATE SET fingerprint = excluded.fingerprint,
            position = excluded.position, updated_ns = excluded.updated_ns",
    )?
    .execute(params![
        source,
        key,
        offset.fingerprint,
        offset.position,
        now_ns
    ])?;
    Ok(())
}

pub fn forget(conn: &Connection, source: &str, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM source_offsets WHERE source = ?1 AND key = ?2")?
        .execute(params![source, key])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        let o = Offset {
            fingerprint: Some("f".into()),
            position: 42,
        };
        save(&c, "tail", "1:2", &o, 1).unwrap();
        save(&c, "tail", "1:2", &Offset { position: 50, ..o }, 2).unwrap();
        save(&c, "other", "1:2", &Offset::default(), 2).unwrap();
        let m = load(&c, "tail").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m["1:2"].position, 50);
        forget(&c, "tail", "1:2").unwrap();
        assert!(load(&c, "tail").unwrap().is_empty());
    }
}
