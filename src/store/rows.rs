//! Reads for views written once over either store (the OpenClaw views): SQL in SQLite's
//! spelling (`?1` parameters), the few places the two differ spelled by [`Dialect`],
//! parameters typed even when null, and result cells as plain values. SQLite answers
//! on a read connection; PostgreSQL through [`super::postgres::queries::PgReader`].

use std::borrow::Cow;

use rusqlite::types::ValueRef;

use super::StoreError;

/// Which store a query is spelled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A span attribute as text (`alias` the spans table's; SQLite packs attributes).
    pub fn attr(self, alias: &str, key: &str) -> String {
        self.json(format!("{alias}.attributes"), true).attr(key)
    }

    /// A table's attributes parsed once per row, for queries reading several of them:
    /// PostgreSQL would parse the JSON again for each (four times the time for six
    /// keys). `join` goes after the table's join, before `WHERE`.
    pub fn parsed(self, alias: &str) -> Parsed {
        match self {
            Dialect::Sqlite => self.json(format!("{alias}.attributes"), true),
            Dialect::Postgres => Parsed {
                dialect: self,
                join: format!(
                    "CROSS JOIN LATERAL (SELECT {alias}.attributes::jsonb AS a OFFSET 0) {alias}_attrs"
                ),
                json: format!("{alias}_attrs.a"),
            },
        }
    }

    /// A run's root span's OpenClaw attributes (`openclaw.*`), parsed once per row as
    /// [`Dialect::parsed`]: on SQLite the root's own (`root` the spans table's alias); a
    /// central keeps them on the run (`run` the traces table's alias), a few hundred
    /// bytes to parse rather than the root's whole attributes.
    pub fn run_root(self, run: &str, root: &str) -> Parsed {
        match self {
            Dialect::Sqlite => self.parsed(root),
            Dialect::Postgres => Parsed {
                dialect: self,
                join: format!(
                    "CROSS JOIN LATERAL (SELECT {run}.root_attributes::jsonb AS a OFFSET 0) {run}_root"
                ),
                json: format!("{run}_root.a"),
            },
        }
    }

    /// An event attribute as text (events' attributes are plain JSON on both stores).
    pub fn event_attr(self, key: &str) -> String {
        self.json("attributes".into(), false).attr(key)
    }

    /// An event attribute that is a number.
    pub fn event_num_attr(self, key: &str) -> String {
        self.json("attributes".into(), false).num(key)
    }

    /// The JSON text `column` as each store reads it (packed on SQLite when `packed`),
    /// parsed where it is used.
    fn json(self, column: String, packed: bool) -> Parsed {
        let json = match self {
            Dialect::Sqlite if packed => format!("unpack({column})"),
            Dialect::Sqlite => column,
            Dialect::Postgres => format!("{column}::jsonb"),
        };
        Parsed {
            dialect: self,
            join: String::new(),
            json,
        }
    }

    /// A span's text column (`input_text`, `output_text`), packed on SQLite.
    pub fn text(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("unpack({column})"),
            Dialect::Postgres => column.to_string(),
        }
    }

    /// The statement as this store takes it: `?N` becomes `$N` on PostgreSQL.
    pub fn statement(self, sql: &str) -> Cow<'_, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => Cow::Owned(dollar_params(sql)),
        }
    }
}

/// Attributes parsed once per row ([`Dialect::parsed`]).
pub struct Parsed {
    dialect: Dialect,
    pub join: String,
    json: String,
}

impl Parsed {
    /// An attribute as text.
    pub fn attr(&self, key: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json_extract({}, '$.\"{key}\"')", self.json),
            Dialect::Postgres => format!("({} ->> '{key}')", self.json),
        }
    }

    /// An attribute that is a number.
    pub fn num(&self, key: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => self.attr(key),
            Dialect::Postgres => number_of(&self.json, key),
        }
    }
}

fn number_of(json: &str, key: &str) -> String {
    format!(
        "(CASE WHEN jsonb_typeof(({json}) -> '{key}') = 'number' \
         THEN (({json}) ->> '{key}')::float8 END)"
    )
}

/// `?N` placeholders outside quotes and `--` comments as `$N`.
fn dollar_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut comment = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            comment = c != '\n';
        } else if c == '\'' {
            quoted = !quoted;
        } else if c == '-' && !quoted && chars.peek() == Some(&'-') {
            comment = true;
        }
        if c == '?' && !quoted && !comment && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

/// A parameter, typed even when null (PostgreSQL checks each parameter's type).
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}

impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}

impl From<Option<&[u8]>> for Arg {
    fn from(v: Option<&[u8]>) -> Arg {
        Arg::Blob(v.map(<[u8]>::to_vec))
    }
}

/// A result cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A result row, read leniently as SQLite's own getters would convert: an integer
/// column read as a number, a number read as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Row(pub Vec<Cell>);

impl Row {
    fn cell(&self, i: usize) -> &Cell {
        self.0.get(i).unwrap_or(&Cell::Null)
    }

    /// An integer (a real truncated); null is 0, for columns that are never null.
    pub fn int(&self, i: usize) -> i64 {
        self.opt_int(i).unwrap_or(0)
    }

    pub fn opt_int(&self, i: usize) -> Option<i64> {
        match self.cell(i) {
            Cell::Int(v) => Some(*v),
            Cell::Real(v) => Some(*v as i64),
            Cell::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    pub fn opt_real(&self, i: usize) -> Option<f64> {
        match self.cell(i) {
            Cell::Int(v) => Some(*v as f64),
            Cell::Real(v) => Some(*v),
            Cell::Text(t) => t.parse().ok(),
            _ => None,
        }
    }

    pub fn opt_text(&self, i: usize) -> Option<String> {
        match self.cell(i) {
            Cell::Text(t) => Some(t.clone()),
            Cell::Int(v) => Some(v.to_string()),
            Cell::Real(v) => Some(v.to_string()),
            Cell::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Cell::Null => None,
        }
    }

    /// Text, empty when null.
    pub fn text(&self, i: usize) -> String {
        self.opt_text(i).unwrap_or_default()
    }

    pub fn blob(&self, i: usize) -> Option<&[u8]> {
        match self.cell(i) {
            Cell::Blob(b) => Some(b),
            _ => None,
        }
    }
}

/// A store that answers SQL written with [`Dialect`].
pub trait Rows {
    fn dialect(&self) -> Dialect;
    /// Each row of `sql` (SQLite's spelling) with `args` as `?1`, `?2`..., handed to
    /// `f` as it is read (a week of runs is not held twice).
    fn each(
        &self,
        sql: &str,
        args: &[Arg],
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Every row.
    fn rows(&self, sql: &str, args: &[Arg]) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, args, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// The first row, if any.
    fn row(&self, sql: &str, args: &[Arg]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Int(v) => v.to_sql(),
            Arg::Text(v) => v.to_sql(),
            Arg::Blob(v) => v.to_sql(),
        }
    }
}

impl Rows for rusqlite::Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn each(
        &self,
        sql: &str,
        args: &[Arg],
        f: &mut dyn FnMut(Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let n = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(n);
            for i in 0..n {
                cells.push(match r.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            f(Row(cells))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes_only() {
        assert_eq!(
            dollar_params("SELECT '?1', x FROM t WHERE a = ?1 AND b IS ?12 AND c = '$.\"k\"'"),
            "SELECT '?1', x FROM t WHERE a = $1 AND b IS $12 AND c = '$.\"k\"'"
        );
        // A comment's apostrophe opens no quote; its own `?1` stays.
        assert_eq!(
            dollar_params("SELECT a -- the day's ?1\n FROM t WHERE b = ?2"),
            "SELECT a -- the day's ?1\n FROM t WHERE b = $2"
        );
    }

    #[test]
    fn cells_read_leniently() {
        let r = Row(vec![
            Cell::Real(3.9),
            Cell::Int(2),
            Cell::Text("7".into()),
            Cell::Null,
        ]);
        assert_eq!(r.int(0), 3);
        assert_eq!(r.opt_real(1), Some(2.0));
        assert_eq!(r.opt_int(2), Some(7));
        assert_eq!(r.opt_text(1).as_deref(), Some("2"));
        assert_eq!(r.int(3), 0);
        assert_eq!(r.opt_text(3), None);
        assert_eq!(r.int(9), 0);
    }
}
