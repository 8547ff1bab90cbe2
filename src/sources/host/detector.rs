//! Conditions: one error event per condition, opened when it starts and closed
//! (its row updated with the end and duration) when it ends, never one per sample.
//! An open condition is recorded in the event's attributes (`state: active`), so
//! a restarted sidecar picks it up again instead of opening a duplicate.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::model::{Event, EventType, Record};
use crate::util::time::format_ns;

/// A condition a collector sees right now.
#[derive(Clone, Debug)]
pub struct Condition {
    /// Identifies the condition (`disk_full:/data`): one event per key while it lasts.
    pub key: String,
    /// The event's name (`disk_full`, `agent_exited`, ...).
    pub name: &'static str,
    pub category: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub attributes: Map<String, Value>,
}

impl Condition {
    pub fn new(key: String, name: &'static str, category: &'static str, message: String) -> Self {
        Condition {
            key,
            name,
            category,
            severity: "error",
            message,
            attributes: Map::new(),
        }
    }

    pub fn warning(mut self) -> Self {
        self.severity = "warning";
        self
    }

    pub fn attr(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.attributes.insert(k.to_string(), v.into());
        self
    }
}

/// The end of a condition, to be written onto its event.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub uid: String,
    /// Merged into the event's attributes.
    pub patch: Map<String, Value>,
}

struct Active {
    uid: String,
    owner: String,
    start_ns: i64,
}

/// Open conditions, by key.
#[derive(Default)]
pub struct Detector {
    active: HashMap<String, Active>,
    /// Consecutive sightings of conditions not yet confirmed.
    pending: HashMap<String, u32>,
}

impl Detector {
    /// Registers a condition found open in the store at startup.
    pub fn adopt(&mut self, key: String, uid: String, owner: String, start_ns: i64) {
        self.active.insert(
            key,
            Active {
                uid,
                owner,
                start_ns,
            },
        );
    }

    pub fn is_active(&self, key: &str) -> bool {
        self.active.contains_key(key)
    }

    /// Keys of the open conditions `owner` reported.
    pub fn owned_by(&self, owner: &str) -> HashSet<String> {
        self.active
            .iter()
            .filter(|(_, a)| a.owner == owner)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Opens a condition: its event, or `None` when it is already open.
    pub fn open(&mut self, owner: &str, c: Condition, now_ns: i64) -> Option<Record> {
        if self.active.contains_key(&c.key) {
            return None;
        }
        let ev = event(&c, owner, now_ns, None);
        self.active.insert(
            c.key,
            Active {
                uid: ev.uid.clone(),
                owner: owner.to_string(),
                start_ns: now_ns,
            },
        );
        Some(Record::Event(Box::new(ev)))
    }

    /// Closes a condition, with extra attributes for its event.
    pub fn close(
        &mut self,
        key: &str,
        now_ns: i64,
        extra: Map<String, Value>,
    ) -> Option<Resolution> {
        let a = self.active.remove(key)?;
        let mut patch = extra;
        patch.insert("state".into(), json!("resolved"));
        patch.insert("ended_at".into(), json!(format_ns(now_ns)));
        patch.insert("ended_ns".into(), json!(now_ns));
        patch.insert(
            "duration_ms".into(),
            json!((now_ns - a.start_ns).max(0) / 1_000_000),
        );
        Some(Resolution { uid: a.uid, patch })
    }

    /// Everything `owner` sees now, in full: new conditions open (once seen `confirm`
    /// runs in a row), open conditions of this owner that are no longer seen close.
    pub fn observe(
        &mut self,
        owner: &str,
        seen: Vec<Condition>,
        confirm: u32,
        now_ns: i64,
        opened: &mut Vec<Record>,
        closed: &mut Vec<Resolution>,
    ) {
        let keys: HashSet<String> = seen.iter().map(|c| c.key.clone()).collect();
        let gone: Vec<String> = self
            .active
            .iter()
            .filter(|(k, a)| a.owner == owner && !keys.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            closed.extend(self.close(&k, now_ns, Map::new()));
        }
        let prefix = format!("{owner}\u{0}");
        self.pending
            .retain(|k, _| !k.starts_with(&prefix) || keys.contains(&k[prefix.len()..]));
        for c in seen {
            if self.active.contains_key(&c.key) {
                continue;
            }
            let n = self
                .pending
                .entry(format!("{prefix}{}", c.key))
                .or_insert(0);
            *n += 1;
            if *n >= confirm.max(1) {
                self.pending.remove(&format!("{prefix}{}", c.key));
                opened.extend(self.open(owner, c, now_ns));
            }
        }
    }
}

/// A condition that began and ended between two looks: one event, already resolved.
pub fn instant(owner: &str, c: &Condition, start_ns: i64, end_ns: i64) -> Record {
    Record::Event(Box::new(event(c, owner, start_ns, Some(end_ns))))
}

fn event(c: &Condition, owner: &str, start_ns: i64, end_ns: Option<i64>) -> Event {
    let mut e = Event::new(EventType::Error, c.name.to_string(), start_ns);
    e.severity = c.severity.to_string();
    e.category = Some(c.category.to_string());
    e.message = Some(c.message.clone());
    e.source = "host";
    let mut attrs = c.attributes.clone();
    attrs.insert("condition".into(), json!(c.key));
    attrs.insert("owner".into(), json!(owner));
    attrs.insert("started_at".into(), json!(format_ns(start_ns)));
    match end_ns {
        None => {
            attrs.insert("state".into(), json!("active"));
        }
        Some(end) => {
            attrs.insert("state".into(), json!("resolved"));
            attrs.insert("ended_at".into(), json!(format_ns(end)));
            attrs.insert("ended_ns".into(), json!(end));
            attrs.insert(
                "duration_ms".into(),
                json!((end - start_ns).max(0) / 1_000_000),
            );
        }
    }
    e.attributes = attrs;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(key: &str) -> Condition {
        Condition::new(key.into(), "disk_full", "disk", "full".into())
    }

    #[test]
    fn one_event_per_condition_with_start_and_end() {
        let mut d = Detector::default();
        let (mut opened, mut closed) = (Vec::new(), Vec::new());
        for t in 0..5 {
            d.observe("disk", vec![cond("a")], 1, t, &mut opened, &mut closed);
        }
        assert_eq!(opened.len(), 1);
        assert!(closed.is_empty());
        d.observe("other", vec![], 1, 6, &mut opened, &mut closed);
        assert!(closed.is_empty(), "another owner's run closes nothing");
        d.observe("disk", vec![], 1, 2_000_000_007, &mut opened, &mut closed);
        assert_eq!(closed.len(), 1);
        let Record::Event(e) = &opened[0] else {
            panic!()
        };
        assert_eq!(closed[0].uid, e.uid);
        assert_eq!(closed[0].patch["duration_ms"], json!(2000));
        assert_eq!(e.attributes["state"], json!("active"));
    }

    #[test]
    fn confirmation_needs_consecutive_sightings() {
        let mut d = Detector::default();
        let (mut opened, mut closed) = (Vec::new(), Vec::new());
        d.observe("p", vec![cond("z")], 2, 1, &mut opened, &mut closed);
        d.observe("p", vec![], 2, 2, &mut opened, &mut closed);
        d.observe("p", vec![cond("z")], 2, 3, &mut opened, &mut closed);
        assert!(opened.is_empty());
        d.observe("p", vec![cond("z")], 2, 4, &mut opened, &mut closed);
        assert_eq!(opened.len(), 1);
    }
}
