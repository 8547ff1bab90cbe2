//! The local SQLite store: one writer connection (owned by the pipeline's writer
//! thread) and a small pool of read-only connections for queries.

pub mod activity;
pub mod ai_act;
pub mod audit;
pub mod audit_derived;
pub mod audit_verify;
pub mod codec;
pub mod merge;
pub mod metric_query;
pub mod offsets;
pub mod postgres;
pub mod query;
pub mod retention;
pub mod rollup;
pub mod rows;
pub mod schema;
pub mod scores;
pub mod sessions;
pub mod span_changes;
pub mod sqlite;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::settings::{Setting, parse_bool, parse_bytes, parse_duration, parse_percent, parse_u64};

#[derive(Clone, Debug, PartialEq)]
pub struct StoreConfig {
    /// `None` means the default location (see `default_db_path`).
    pub db_path: Option<PathBuf>,
    pub retention_days: u64,
    pub cleanup_interval: Duration,
    pub wal_checkpoint_interval: Duration,
    pub wal_restart_threshold_bytes: u64,
    pub cleanup_disk_threshold: f64,
    pub cleanup_db_threshold_bytes: u64,
    /// Pack span attributes, texts and resources with a trained dictionary (`codec`).
    pub pack_values: bool,
    /// PostgreSQL instead of the SQLite file (a fleet's central): `postgres://…`.
    pub database_url: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            db_path: None,
            retention_days: 3,
            cleanup_interval: Duration::from_secs(300),
            wal_checkpoint_interval: Duration::from_secs(600),
            wal_restart_threshold_bytes: 52_428_800,
            cleanup_disk_threshold: 80.0,
            cleanup_db_threshold_bytes: 104_857_600,
            pack_values: true,
            database_url: None,
        }
    }
}

pub const SETTINGS: &[Setting<StoreConfig>] = &[
    Setting {
        name: "db_path",
        env: "OCT_DB_PATH",
        default: "/data/openclaw-trace.db if /data is writable, else $XDG_DATA_HOME/openclaw-trace/openclaw-trace.db (~/.local/share/...)",
        help: "SQLite database file",
        set: |c, v| {
            c.db_path = Some(PathBuf::from(v));
            Ok(())
        },
    },
    Setting {
        name: "retention_days",
        env: "OCT_RETENTION_DAYS",
        default: "3",
        help: "Delete data older than this many days (0 keeps data until the size limits need room)",
        set: |c, v| {
            c.retention_days = parse_u64(v)?;
            Ok(())
        },
    },
    Setting {
        name: "cleanup_interval",
        env: "OCT_CLEANUP_INTERVAL",
        default: "5m",
        help: "How often retention runs (size limits are also checked as data is written)",
        set: |c, v| {
            c.cleanup_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "wal_checkpoint_interval",
        env: "OCT_WAL_CHECKPOINT_INTERVAL",
        default: "10m",
        help: "How often the write-ahead log is checkpointed",
        set: |c, v| {
            c.wal_checkpoint_interval = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        name: "wal_restart_threshold_bytes",
        env: "OCT_WAL_RESTART_THRESHOLD_BYTES",
        default: "52428800",
        help: "A WAL larger than this is checkpointed and truncated at once",
        set: |c, v| {
            c.wal_restart_threshold_bytes = parse_bytes(v)?;
            Ok(())
        },
    },
    Setting {
        name: "cleanup_disk_threshold",
        env: "OCT_CLEANUP_DISK_THRESHOLD",
        default: "80",
        help: "Percent of the volume in use above which the oldest data is deleted",
        set: |c, v| {
            c.cleanup_disk_threshold = parse_percent(v)?;
            Ok(())
        },
    },
    Setting {
        name: "cleanup_db_threshold_bytes",
        env: "OCT_CLEANUP_DB_THRESHOLD_BYTES",
        default: "104857600",
        help: "The database plus its WAL is kept under this size",
        set: |c, v| {
            c.cleanup_db_threshold_bytes = parse_bytes(v)?;
            Ok(())
        },
    },
    Setting {
        name: "pack_values",
        env: "OCT_PACK_VALUES",
        default: "true",
        help: "Store span attributes, texts and resources compressed with a dictionary trained on the database's own rows (false: new values stay plain text; packed ones stay readable)",
        set: |c, v| {
            c.pack_values = parse_bool(v)?;
            Ok(())
        },
    },
    Setting {
        name: "database_url",
        env: "OCT_DATABASE_URL",
        default: "",
        help: "PostgreSQL instead of the SQLite file, for a fleet's central: postgres://user:password@host:5432/db (sslmode=require, sslrootcert=FILE for a private CA); what it serves is in the README (A central on PostgreSQL)",
        set: |c, v| {
            let v = v.trim();
            if v.is_empty() {
                c.database_url = None;
                return Ok(());
            }
            if !(v.starts_with("postgres://") || v.starts_with("postgresql://") || v.contains('='))
            {
                return Err(
                    "expected postgres://user:password@host:port/database or key=value pairs"
                        .into(),
                );
            }
            c.database_url = Some(v.to_string());
            Ok(())
        },
    },
];

impl StoreConfig {
    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone().unwrap_or_else(default_db_path)
    }
}

/// `/data/openclaw-trace.db` (the Go version's default) where `/data` is writable,
/// otherwise a per-user data directory, so it works without root and without flags.
pub fn default_db_path() -> PathBuf {
    let data = Path::new("/data");
    if data.is_dir() && is_writable(data) {
        return data.join("openclaw-trace.db");
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("openclaw-trace").join("openclaw-trace.db")
}

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".openclaw-trace-probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Migrate(#[from] schema::MigrateError),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    BadRequest(String),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
}

/// Opens (creating if needed) the database for writing and brings its schema up to date.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut conn = Connection::open(path).map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    // auto_vacuum must be chosen before the first table exists; it is what lets
    // retention give space back without a full VACUUM.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -2048;
         PRAGMA journal_size_limit = 8388608;",
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    schema::migrate(&mut conn)?;
    Ok(conn)
}

/// A read-only connection: it never takes the write lock, so the CLI can read
/// while the daemon runs.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA cache_size = -512; PRAGMA query_only = ON;")?;
    codec::register(&conn)?;
    Ok(conn)
}

/// A few read-only connections handed out to queries.
pub struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl ReadPool {
    pub fn new(path: PathBuf, max_idle: usize) -> Self {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled read-only connection.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self.idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(conn);
        }
        out
    }
}

/// Sizes of the database file and its WAL, in bytes.
pub fn file_sizes(db: &Path) -> (u64, u64) {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    (size(db), size(Path::new(&wal)))
}

/// Free and total bytes of the volume holding `path`.
pub fn volume_space(path: &Path) -> Option<(u64, u64)> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let dir = if path.is_dir() {
        path
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    let c = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}
