//! `GET /v1/metrics` (one metric's series aggregated per step) and `GET /v1/metrics/names`.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::query::{text, time_param};
use super::{ApiError, SharedState};
use crate::model::now_ns;
use crate::store::metric_query::{MAX_BUCKETS, SeriesQuery};

/// Buckets a series gets when no step is given.
const DEFAULT_BUCKETS: i64 = 120;

/// A step as a duration (`30s`, `5m`) or a number of seconds.
fn step_param(p: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    let Some(v) = text(p, "step") else {
        return Ok(None);
    };
    let ns = match v.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => (secs * 1e9) as i64,
        Ok(_) => 0,
        Err(_) => crate::util::duration::parse(&v)
            .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
            .map_err(|e| ApiError::bad_param("step", e))?,
    };
    if ns < 1_000_000 {
        return Err(ApiError::bad_param("step", "must be at least 1ms"));
    }
    Ok(Some(ns))
}

/// Builds the query: `from` defaults to an hour before `to`, `to` to now, and
/// the step to a size giving about 120 points.
pub fn series_query(p: &HashMap<String, String>) -> Result<SeriesQuery, ApiError> {
    let name = text(p, "name").ok_or_else(|| {
        ApiError::bad_param("name", "required (GET /v1/metrics/names lists them)")
    })?;
    let to_ns = time_param(p, "to")?.unwrap_or_else(now_ns);
    let from_ns = time_param(p, "from")?.unwrap_or(to_ns - 3_600_000_000_000);
    if from_ns >= to_ns {
        return Err(ApiError::bad_param("from", "must be before to"));
    }
    let step_ns = match step_param(p)? {
        Some(s) => s,
        None => ((to_ns - from_ns) / DEFAULT_BUCKETS).max(1_000_000_000),
    };
    if (to_ns - from_ns) / step_ns > MAX_BUCKETS {
        return Err(ApiError::bad_param(
            "step",
            format!("too small for the range (more than {MAX_BUCKETS} steps)"),
        ));
    }
    // `attr.<key>=<value>` keeps only the series with that attribute value.
    let attributes: BTreeMap<String, String> = p
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("attr.")?.to_string(), v.clone())))
        .collect();
    Ok(SeriesQuery {
        name,
        from_ns,
        to_ns,
        step_ns,
        attributes,
    })
}

pub async fn get_metrics(
    State(st): State<SharedState>,
    Query(p): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let q = series_query(&p)?;
    let r = st.store.metric_series(q).await?;
    Ok(axum::Json(r).into_response())
}

pub async fn get_names(State(st): State<SharedState>) -> Result<Response, ApiError> {
    let names = st.store.metric_names().await?;
    Ok(axum::Json(json!({ "metrics": names })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validates_parameters() {
        let e = series_query(&params(&[])).unwrap_err();
        assert_eq!(e.body["field"], "name");
        let e = series_query(&params(&[("name", "x"), ("step", "soon")])).unwrap_err();
        assert_eq!(e.body["field"], "step");
        let e = series_query(&params(&[
            ("name", "x"),
            ("from", "2030-01-01T00:00:00Z"),
            ("to", "2020-01-01T00:00:00Z"),
        ]))
        .unwrap_err();
        assert_eq!(e.body["field"], "from");
        let e =
            series_query(&params(&[("name", "x"), ("from", "0"), ("step", "1ms")])).unwrap_err();
        assert_eq!(e.body["field"], "step");
        let q = series_query(&params(&[
            ("name", "x"),
            ("step", "30"),
            ("attr.cpu.mode", "idle"),
        ]))
        .unwrap();
        assert_eq!(q.step_ns, 30_000_000_000);
        assert_eq!(q.attributes["cpu.mode"], "idle");
        assert_eq!(q.to_ns - q.from_ns, 3_600_000_000_000);
        let q = series_query(&params(&[("name", "x"), ("step", "5m")])).unwrap();
        assert_eq!(q.step_ns, 300_000_000_000);
    }
}
