//! Which retention class a topic belongs to, and which classes refuse new publishes because
//! they are at their quota (read by ingress before a publish is stored).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::{ClassConfig, OnFull};
use crate::routing::table::Subscription;

/// The configured classes with their compiled filters, and the full flags.
#[derive(Clone)]
pub struct Classes {
    inner: Arc<Inner>,
}

struct Inner {
    /// Per class, in config order: its settings and compiled filters.
    classes: Vec<(ClassConfig, Vec<Subscription>)>,
    /// Per class: at its quota.
    full: Vec<AtomicBool>,
    /// Classes full now: a publish matches topics against the classes only while one is.
    full_count: AtomicUsize,
}

impl Classes {
    /// Compile the classes (their filters were validated with the config).
    pub fn new(classes: &[ClassConfig]) -> Self {
        let compiled = classes
            .iter()
            .map(|c| {
                let subs = c.topics.iter().filter_map(|t| Subscription::new(t, 0, false, false, None).ok()).collect();
                (c.clone(), subs)
            })
            .collect();
        let full = classes.iter().map(|_| AtomicBool::new(false)).collect();
        Self { inner: Arc::new(Inner { classes: compiled, full, full_count: AtomicUsize::new(0) }) }
    }

    /// The index of the first class with a filter matching `topic`.
    pub fn class_of(&self, topic: &str) -> Option<usize> {
        self.inner.classes.iter().position(|(_, subs)| subs.iter().any(|s| s.matches(topic)))
    }

    /// The settings of class `i`.
    pub fn get(&self, i: usize) -> &ClassConfig {
        &self.inner.classes[i].0
    }

    /// How many classes there are.
    pub fn len(&self) -> usize {
        self.inner.classes.len()
    }

    /// Whether there is no class.
    pub fn is_empty(&self) -> bool {
        self.inner.classes.is_empty()
    }

    /// The class index of `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.inner.classes.iter().position(|(c, _)| c.name == name)
    }

    /// Mark class `i` as at its quota (or not); returns whether that changed.
    pub fn set_full(&self, i: usize, full: bool) -> bool {
        let changed = self.inner.full[i].swap(full, Ordering::Relaxed) != full;
        match (changed, full) {
            (true, true) => self.inner.full_count.fetch_add(1, Ordering::Relaxed),
            (true, false) => self.inner.full_count.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
        changed
    }

    /// Whether class `i` is at its quota.
    pub fn is_full(&self, i: usize) -> bool {
        self.inner.full[i].load(Ordering::Relaxed)
    }

    /// The class refusing a publish to `topic` (at its quota with `on_full = "refuse_ingest"`).
    pub fn refusing(&self, topic: &str) -> Option<&str> {
        if self.inner.full_count.load(Ordering::Relaxed) == 0 {
            return None; // the common case: no topic matching on the publish path
        }
        let i = self.class_of(topic)?;
        let class = self.get(i);
        (class.on_full == OnFull::RefuseIngest && self.is_full(i)).then_some(class.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, topics: &[&str]) -> ClassConfig {
        ClassConfig {
            name: name.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            min_keep_days: 1,
            max_keep_days: 0,
            legal_hold: false,
            quota_bytes: 0,
            on_full: OnFull::RefuseIngest,
        }
    }

    #[test]
    fn the_first_matching_class_wins_and_only_a_full_refusing_class_refuses() {
        let c = Classes::new(&[class("alarms", &["devices/+/alarm"]), class("all", &["devices/#"])]);
        assert_eq!(c.class_of("devices/d1/alarm"), Some(0));
        assert_eq!(c.class_of("devices/d1/telemetry"), Some(1));
        assert_eq!(c.class_of("other/x"), None);
        assert_eq!(c.refusing("devices/d1/alarm"), None);
        assert!(c.set_full(0, true));
        assert!(!c.set_full(0, true), "no change");
        assert_eq!(c.refusing("devices/d1/alarm"), Some("alarms"));
        assert_eq!(c.refusing("devices/d1/telemetry"), None);
        assert!(c.set_full(0, false));
        assert_eq!(c.refusing("devices/d1/alarm"), None, "not full any more");
    }
}
