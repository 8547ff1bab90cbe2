//! Evaluation scores: the `gen_ai.evaluation.result` events on a run, a condition on
//! them for the runs list (`score=NAME<0.5`), and their aggregate by name, agent and day.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, params_from_iter};
use serde::Serialize;
use serde_json::{Map, Value};

use super::StoreError;
use super::query::EventOut;
use crate::model::evaluation as ev;

/// One score, as shown on a run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScoreOut {
    pub name: String,
    pub value: Option<f64>,
    pub label: Option<String>,
    pub explanation: Option<String>,
    pub span_id: Option<String>,
    pub time: String,
    /// Where it came from: `api` (`POST /v1/scores`) or `otlp`.
    pub source: String,
}

/// The scores among a run's events, oldest first (events come sorted by time).
pub fn scores_of(events: &[EventOut]) -> Vec<ScoreOut> {
    events
        .iter()
        .filter(|e| e.name == ev::EVENT)
        .filter_map(|e| {
            let a = e.attributes.as_object()?;
            Some(ScoreOut {
                name: a.get(ev::NAME)?.as_str()?.to_string(),
                value: a.get(ev::SCORE_VALUE).and_then(number),
                label: text(a, ev::SCORE_LABEL),
                explanation: text(a, ev::EXPLANATION),
                span_id: e.span_id.clone(),
                time: e.time.clone(),
                source: e.source.clone(),
            })
        })
        .collect()
}

fn text(a: &Map<String, Value>, k: &str) -> Option<String> {
    a.get(k).and_then(Value::as_str).map(str::to_string)
}

/// A value as a number: OTLP may carry it as a double, an int or a numeric string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

/// `score=NAME<OP><VALUE>`: runs with at least one score of that name that satisfies it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreCondition {
    pub name: String,
    pub op: &'static str,
    pub value: f64,
}

impl ScoreCondition {
    /// Parses `relevance<0.5`, `toxicity>=0.8`, `exact=1`, `judge!=0`.
    pub fn parse(s: &str) -> Option<ScoreCondition> {
        const OPS: [&str; 6] = ["<=", ">=", "!=", "<", ">", "="];
        let (at, op) = s.char_indices().find_map(|(i, _)| {
            OPS.iter()
                .find(|o| s[i..].starts_with(**o))
                .map(|o| (i, *o))
        })?;
        let name = s[..at].trim();
        let value: f64 = s[at + op.len()..].trim().parse().ok()?;
        (!name.is_empty() && value.is_finite()).then(|| ScoreCondition {
            name: name.to_string(),
            op,
            value,
        })
    }

    /// The SQL condition on a `traces t` row, and its arguments.
    pub fn sql(&self, args: &mut Vec<SqlValue>) -> String {
        args.push(SqlValue::Text(self.name.clone()));
        args.push(SqlValue::Real(self.value));
        format!(
            " AND EXISTS (SELECT 1 FROM events e WHERE e.trace_id = t.trace_id AND e.name = '{}' \
             AND json_extract(e.attributes, '$.\"{}\"') = ? \
             AND CAST(json_extract(e.attributes, '$.\"{}\"') AS REAL) {} ?)",
            ev::EVENT,
            ev::NAME,
            ev::SCORE_VALUE,
            self.op
        )
    }
}

/// What the aggregate is grouped by, besides the score's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScoreGrouping {
    pub agent: bool,
    pub day: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ScoreFilter {
    pub from_ns: Option<i64>,
    pub to_ns: Option<i64>,
    pub name: Option<String>,
    pub agent_id: Option<String>,
}

/// Scores of one name (and agent, and UTC day, when grouped so).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScoreGroup {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Scores counted (with a value or a label).
    pub count: i64,
    /// Over the scores with a numeric value.
    pub value_count: i64,
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// How many scores carried each label.
    pub labels: Map<String, Value>,
}

/// Scores aggregated by name (and agent and day). A score's agent is its own, else its
/// run's.
pub fn aggregate(
    conn: &Connection,
    f: &ScoreFilter,
    by: ScoreGrouping,
) -> Result<Vec<ScoreGroup>, StoreError> {
    let name = format!("json_extract(e.attributes, '$.\"{}\"')", ev::NAME);
    let value = format!("json_extract(e.attributes, '$.\"{}\"')", ev::SCORE_VALUE);
    let label = format!("json_extract(e.attributes, '$.\"{}\"')", ev::SCORE_LABEL);
    let agent = "COALESCE(e.agent_id, t.agent_id)";
    let day = "date(e.time_ns / 1000000000, 'unixepoch')";
    let mut keys = vec![name.clone()];
    keys.push(if by.agent {
        agent.into()
    } else {
        "NULL".into()
    });
    keys.push(if by.day { day.into() } else { "NULL".into() });
    let keys = keys.join(", ");
    let mut sql = format!(
        "SELECT {keys}, CASE WHEN typeof({value}) IN ('integer', 'real') THEN {value} \
         ELSE CAST({value} AS REAL) END AS v, {value} IS NOT NULL, {label} \
         FROM events e LEFT JOIN traces t ON t.trace_id = e.trace_id \
         WHERE e.name = ? AND {name} IS NOT NULL"
    );
    let mut args = vec![SqlValue::Text(ev::EVENT.into())];
    if let Some(from) = f.from_ns {
        sql.push_str(" AND e.time_ns >= ?");
        args.push(SqlValue::Integer(from));
    }
    if let Some(to) = f.to_ns {
        sql.push_str(" AND e.time_ns < ?");
        args.push(SqlValue::Integer(to));
    }
    if let Some(n) = &f.name {
        sql.push_str(&format!(" AND {name} = ?"));
        args.push(SqlValue::Text(n.clone()));
    }
    if let Some(a) = &f.agent_id {
        sql.push_str(&format!(" AND {agent} = ?"));
        args.push(SqlValue::Text(a.clone()));
    }
    // Then by time and uid: the same order on either store (the mean's sum with it).
    sql.push_str(" ORDER BY 1, 2, 3, e.time_ns, e.uid");
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut fold = ScoreFold::new(by);
    while let Some(r) = rows.next()? {
        let name: String = match r.get_ref(0)? {
            rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            _ => continue,
        };
        fold.add(ScoreRow {
            name,
            agent: r.get(1)?,
            day: r.get(2)?,
            value: r.get::<_, Option<f64>>(3)?,
            has_value: r.get(4)?,
            label: r.get(5).ok().flatten(),
        });
    }
    Ok(fold.finish())
}

/// One score as either store reads it for [`aggregate`].
pub struct ScoreRow {
    pub name: String,
    pub agent: Option<String>,
    pub day: Option<String>,
    pub value: Option<f64>,
    /// The score has a value (which may not be a number).
    pub has_value: bool,
    pub label: Option<String>,
}

/// Scores, in order of name, agent and day, folded into their groups.
pub struct ScoreFold {
    by: ScoreGrouping,
    out: Vec<ScoreGroup>,
    sum: f64,
}

impl ScoreFold {
    pub fn new(by: ScoreGrouping) -> ScoreFold {
        ScoreFold {
            by,
            out: Vec::new(),
            sum: 0.0,
        }
    }

    pub fn add(&mut self, r: ScoreRow) {
        let value = r.value.filter(|v| v.is_finite());
        let same = self.out.last().is_some_and(|g| {
            g.name == r.name && g.agent_id.as_ref().is_none_or(|a| *a == r.agent) && g.day == r.day
        });
        if !same {
            finish(self.out.last_mut(), self.sum);
            self.sum = 0.0;
            self.out.push(ScoreGroup {
                name: r.name,
                agent_id: self.by.agent.then(|| r.agent.clone()),
                day: if self.by.day { r.day } else { None },
                count: 0,
                value_count: 0,
                mean: None,
                min: None,
                max: None,
                labels: Map::new(),
            });
        }
        let g = self.out.last_mut().expect("pushed above");
        g.count += 1;
        if let (true, Some(v)) = (r.has_value, value) {
            g.value_count += 1;
            self.sum += v;
            g.min = Some(g.min.map_or(v, |m| m.min(v)));
            g.max = Some(g.max.map_or(v, |m| m.max(v)));
        }
        if let Some(l) = r.label {
            let n = g.labels.get(&l).and_then(Value::as_i64).unwrap_or(0);
            g.labels.insert(l, (n + 1).into());
        }
    }

    pub fn finish(mut self) -> Vec<ScoreGroup> {
        finish(self.out.last_mut(), self.sum);
        self.out
    }
}

fn finish(g: Option<&mut ScoreGroup>, sum: f64) {
    if let Some(g) = g
        && g.value_count > 0
    {
        g.mean = Some(sum / g.value_count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_each_operator() {
        let c = |s| ScoreCondition::parse(s).map(|c| (c.name, c.op, c.value));
        assert_eq!(c("relevance<0.5"), Some(("relevance".into(), "<", 0.5)));
        assert_eq!(c("tox >= 0.8"), Some(("tox".into(), ">=", 0.8)));
        assert_eq!(c("exact=1"), Some(("exact".into(), "=", 1.0)));
        assert_eq!(c("judge!=-1"), Some(("judge".into(), "!=", -1.0)));
        assert_eq!(c("a<=2"), Some(("a".into(), "<=", 2.0)));
        for bad in ["relevance", "<0.5", "x<abc", "x<", "x<NaN", "x<inf"] {
            assert_eq!(c(bad), None, "{bad}");
        }
    }
}
