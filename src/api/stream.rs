//! `GET /v1/stream`: the live tail as Server-Sent Events.
//! Query: `kind` (comma-separated span kinds or event types), `agent`, `level` (lowest shown).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, SharedState};
use crate::model::{EventType, SpanKind};
use crate::sinks::live::{LEVELS, LiveItem, StreamFilter, level_rank};

/// Parses the query into a filter, naming the parameter that is wrong.
pub fn parse_filter(q: &HashMap<String, String>) -> Result<StreamFilter, ApiError> {
    let mut f = StreamFilter::default();
    if let Some(kinds) = q.get("kind").filter(|k| !k.trim().is_empty()) {
        for k in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            if SpanKind::parse(k).is_none() && EventType::parse(k).is_none() {
                return Err(ApiError::bad_param(
                    "kind",
                    "expected llm_call, tool_call, agent_run, embedding, event, other, error, custom or log",
                ));
            }
            f.kinds.push(k.to_string());
        }
    }
    f.agent = q.get("agent").filter(|a| !a.is_empty()).cloned();
    if let Some(l) = q.get("level").filter(|l| !l.is_empty()) {
        let l = l.trim().to_ascii_lowercase();
        let l = if l == "warning" {
            "warn".to_string()
        } else {
            l
        };
        if !LEVELS.contains(&l.as_str()) {
            return Err(ApiError::bad_param(
                "level",
                "expected trace, debug, info, warn, error or fatal",
            ));
        }
        f.min_level = Some(level_rank(&l));
    }
    Ok(f)
}

fn sse_event(item: &LiveItem) -> Event {
    let e = Event::default().id(item.seq.to_string());
    match e.json_data(item) {
        Ok(e) => e,
        Err(_) => Event::default().comment("unserializable item"),
    }
}

pub async fn stream(
    State(st): State<SharedState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filter = parse_filter(&q)?;
    let (replay, rx) = st.live.subscribe();
    let closed = st.live.closed();
    let replay: Vec<Arc<LiveItem>> = replay.into_iter().filter(|i| filter.matches(i)).collect();
    let first = stream::iter(
        replay
            .into_iter()
            .map(|i| Ok::<_, Infallible>(sse_event(&i))),
    );
    let hub = st.live.clone();
    let live = stream::unfold(Some((rx, closed, filter)), move |state| {
        let hub = hub.clone();
        async move {
            let (mut rx, mut closed, filter) = state?;
            loop {
                let got = tokio::select! {
                    got = rx.recv() => got,
                    _ = closed.wait_for(|c| *c) => return None,
                };
                match got {
                    Ok(item) if filter.matches(&item) => {
                        return Some((Ok(sse_event(&item)), Some((rx, closed, filter))));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        hub.note_dropped();
                        // Too slow to keep up: end this stream rather than hold anything back.
                        let e = Event::default().event("dropped").data(format!(
                            "{{\"reason\":\"subscriber too slow\",\"missed\":{missed}}}"
                        ));
                        return Some((Ok(e), None));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Ok(Sse::new(first.chain(live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_parse_and_name_bad_fields() {
        let f = parse_filter(&q(&[
            ("kind", "error,llm_call"),
            ("agent", "a"),
            ("level", "WARNING"),
        ]))
        .unwrap();
        assert_eq!(f.kinds, vec!["error", "llm_call"]);
        assert_eq!(f.agent.as_deref(), Some("a"));
        assert_eq!(f.min_level, Some(level_rank("warn")));
        let e = parse_filter(&q(&[("kind", "nope")])).unwrap_err();
        assert_eq!(e.body["field"], "kind");
        let e = parse_filter(&q(&[("level", "loud")])).unwrap_err();
        assert_eq!(e.body["field"], "level");
    }
}
