//! The daemon's own administrative and security events (start and stop with the
//! effective settings, refused requests, retention runs, ...), in the `activity`
//! table, which is on the audit chain like spans and events. Written on the writer
//! (a job after everything queued before it); read by `GET /v1/activity` and
//! `openclaw-trace activity`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::Value;

use crate::pipeline::Pipeline;

/// The migration that adds the table.
pub const MIGRATION: &str = r#"
    CREATE TABLE activity (
        id INTEGER PRIMARY KEY,
        time_ns INTEGER NOT NULL,
        kind TEXT NOT NULL,
        remote_addr TEXT,
        path TEXT,
        message TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX activity_time ON activity(time_ns);
"#;

/// The canonical columns (see `audit::CHAINED`).
pub const COLUMNS: &str = "id, time_ns, kind, remote_addr, path, message, detail";

#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Activity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub time_ns: i64,
    /// start, stop, auth_refused, retention, export, ...
    pub kind: String,
    pub remote_addr: Option<String>,
    pub path: Option<String>,
    pub message: String,
    pub detail: Option<Value>,
}

/// Inserts one row and chains it, in one transaction.
pub fn insert(conn: &Connection, a: &Activity) -> rusqlite::Result<i64> {
    let tx = conn.unchecked_transaction()?;
    let id = insert_in(&tx, a)?;
    super::audit::seal(&tx, "delete")?;
    tx.commit()?;
    Ok(id)
}

/// Inserts one row inside the caller's transaction (which chains it when it seals).
pub fn insert_in(tx: &Connection, a: &Activity) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO activity (time_ns, kind, remote_addr, path, message, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            a.time_ns,
            a.kind,
            a.remote_addr,
            a.path,
            a.message,
            a.detail.as_ref().map(|d| d.to_string())
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Records `a` from a command run beside the daemon (an export): on a connection of
/// its own, chained as the daemon's writer chains (the chain's tail is read inside
/// the write transaction, so the two append in turn).
pub fn record_from_cli(
    store: &super::StoreConfig,
    audit: &super::audit::AuditConfig,
    a: &Activity,
) -> Result<i64, String> {
    let mut conn = super::open_writer(&store.db_path()).map_err(|e| e.to_string())?;
    // Chained when the database is (whatever this command's OCT_AUDIT says), or will be.
    let chained = super::audit::tail(&conn).map_err(|e| e.to_string())?.0 > 0;
    if chained || audit.enabled {
        super::audit::install(&mut conn).map_err(|e| e.to_string())?;
    }
    insert(&conn, a).map_err(|e| e.to_string())
}

/// Filters of a listing.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub kind: Option<String>,
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    /// Rows with a smaller id (the cursor).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// Newest first.
pub fn list(conn: &Connection, f: &Filter) -> rusqlite::Result<Vec<Activity>> {
    let mut sql = format!("SELECT {COLUMNS} FROM activity WHERE 1=1");
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(k) = &f.kind {
        sql.push_str(" AND kind = ?");
        args.push(SqlValue::Text(k.clone()));
    }
    if let Some(t) = f.from_ns {
        sql.push_str(" AND time_ns >= ?");
        args.push(SqlValue::Integer(t));
    }
    if let Some(t) = f.to_ns {
        sql.push_str(" AND time_ns < ?");
        args.push(SqlValue::Integer(t));
    }
    if let Some(b) = f.before_id {
        sql.push_str(" AND id < ?");
        args.push(SqlValue::Integer(b));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(SqlValue::Integer(f.limit as i64));
    let mut stmt = conn.prepare(&sql)?;
    stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(Activity {
            id: Some(r.get(0)?),
            time_ns: r.get(1)?,
            kind: r.get(2)?,
            remote_addr: r.get(3)?,
            path: r.get(4)?,
            message: r.get(5)?,
            detail: r
                .get::<_, Option<String>>(6)?
                .and_then(|d| serde_json::from_str(&d).ok()),
        })
    })?
    .collect()
}

/// Records activity through the writer; refused requests are rate-limited (one row
/// per remote address a minute, with the count of those passed over since).
pub struct ActivityLog {
    pipeline: Pipeline,
    refused: Mutex<HashMap<String, (Instant, u64)>>,
}

const REFUSED_EVERY: Duration = Duration::from_secs(60);

impl ActivityLog {
    pub fn new(pipeline: Pipeline) -> Self {
        ActivityLog {
            pipeline,
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// Queues `a` on the writer (after everything queued before). False when closed.
    pub fn record(&self, a: Activity) -> bool {
        record_on(&self.pipeline, a)
    }

    /// A request refused for a missing or wrong token.
    pub fn refused(&self, remote: Option<String>, path: &str) {
        let key = remote.clone().unwrap_or_default();
        let passed_over = {
            let Ok(mut m) = self.refused.lock() else {
                return;
            };
            let now = Instant::now();
            if m.len() > 1024 {
                m.retain(|_, (t, _)| now.duration_since(*t) < REFUSED_EVERY);
            }
            match m.get_mut(&key) {
                Some((t, n)) if now.duration_since(*t) < REFUSED_EVERY => {
                    *n += 1;
                    return;
                }
                Some((t, n)) => {
                    *t = now;
                    std::mem::take(n)
                }
                None => {
                    m.insert(key, (now, 0));
                    0
                }
            }
        };
        self.record(Activity {
            time_ns: crate::model::now_ns(),
            kind: "auth_refused".into(),
            remote_addr: remote,
            path: Some(path.to_string()),
            message: "request refused: missing or wrong bearer token".into(),
            detail: (passed_over > 0)
                .then(|| serde_json::json!({ "refused_since_last_row": passed_over })),
            ..Default::default()
        });
    }
}

/// Queues `a` on `pipeline`'s writer.
pub fn record_on(pipeline: &Pipeline, a: Activity) -> bool {
    pipeline.record_activity(a)
}
