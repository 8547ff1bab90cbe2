//! `GET /v1/dead-letters`: records a sink's remote rejected on their own, newest first.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::query::limit_param;
use super::{ApiError, SharedState};
use crate::store::rows::{Arg, Dialect};
use crate::util::time::format_ns;

#[derive(Serialize)]
pub struct DeadLetterOut {
    pub id: i64,
    pub sink: String,
    pub table: String,
    pub row_id: i64,
    pub record_id: String,
    pub status: Option<i64>,
    pub error: String,
    pub created: String,
    /// The record as the sink would have sent it.
    pub payload: Value,
}

pub async fn list(
    State(st): State<SharedState>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = limit_param(&p)?;
    let sink = p
        .get("sink")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let before: Option<i64> = match p.get("cursor").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| ApiError::bad_param("cursor", "not a cursor this API returned"))?,
        ),
    };
    let items = st
        .store
        .view(Box::new(move |db| {
            // A central on PostgreSQL runs no sink (push and export are refused at start),
            // so it has no dead letters; the table is SQLite's.
            if db.dialect() != Dialect::Sqlite {
                return Ok(json!([]));
            }
            let mut sql = String::from(
                "SELECT id, sink, tbl, row_id, record_id, status, error, created_ns, payload FROM dead_letters WHERE 1=1",
            );
            let mut args: Vec<Arg> = Vec::new();
            if let Some(s) = sink {
                args.push(s.as_str().into());
                sql.push_str(&format!(" AND sink = ?{}", args.len()));
            }
            if let Some(b) = before {
                args.push(b.into());
                sql.push_str(&format!(" AND id < ?{}", args.len()));
            }
            args.push((limit as i64 + 1).into());
            sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
            let rows: Vec<DeadLetterOut> = db
                .rows(&sql, &args)?
                .into_iter()
                .map(|r| DeadLetterOut {
                    id: r.int(0),
                    sink: r.text(1),
                    table: r.text(2),
                    row_id: r.int(3),
                    record_id: r.text(4),
                    status: r.opt_int(5),
                    error: r.text(6),
                    created: format_ns(r.int(7)),
                    payload: r
                        .opt_text(8)
                        .map(|p| serde_json::from_str(&p).unwrap_or(Value::String(p)))
                        .unwrap_or(Value::Null),
                })
                .collect();
            Ok(serde_json::to_value(rows).unwrap_or_default())
        }))
        .await?;
    let mut items: Vec<Value> = match items {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|d| d["id"].to_string())
    } else {
        None
    };
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}
