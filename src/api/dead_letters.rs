//! `GET /v1/dead-letters`: records a sink's remote rejected on their own, newest first.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use serde_json::{Value, json};

use super::query::limit_param;
use super::{ApiError, SharedState, read};
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
    let items = read(&st, move |c| {
        let mut sql = String::from(
            "SELECT id, sink, tbl, row_id, record_id, status, error, created_ns, payload FROM dead_letters WHERE 1=1",
        );
        let mut args: Vec<SqlValue> = Vec::new();
        if let Some(s) = sink {
            sql.push_str(" AND sink = ?");
            args.push(SqlValue::Text(s));
        }
        if let Some(b) = before {
            sql.push_str(" AND id < ?");
            args.push(SqlValue::Integer(b));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(SqlValue::Integer(limit as i64 + 1));
        let mut stmt = c.prepare(&sql)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                let payload: Option<String> = r.get(8)?;
                Ok(DeadLetterOut {
                    id: r.get(0)?,
                    sink: r.get(1)?,
                    table: r.get(2)?,
                    row_id: r.get(3)?,
                    record_id: r.get(4)?,
                    status: r.get(5)?,
                    error: r.get(6)?,
                    created: format_ns(r.get(7)?),
                    payload: payload
                        .map(|p| serde_json::from_str(&p).unwrap_or(Value::String(p)))
                        .unwrap_or(Value::Null),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    })
    .await?;
    let mut items = items;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(json!({ "items": items, "next_cursor": next_cursor })).into_response())
}
