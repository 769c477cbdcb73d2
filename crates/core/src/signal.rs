//! In-process wake-ups for topic readers.
//!
//! A reader that has caught up waits for its topic's signal, then reads the
//! store again: the store is the truth, a signal only says "look again". A
//! reader marks the signal seen *before* it reads, so an append that lands
//! after the read always wakes it (no lost wake-ups). Appends in this process
//! signal directly; for Redis, the tailer signals appends made elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

/// One topic's signal: a version bumped by every append.
#[derive(Debug)]
pub struct Signal {
    version: watch::Sender<u64>,
}

impl Signal {
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn notify(&self) {
        self.version.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The signals of the topics that have readers, by store key. A topic nobody
/// reads has no entry: publishing to it costs one map lookup.
#[derive(Debug, Default)]
pub struct Signals {
    topics: Mutex<HashMap<String, Weak<Signal>>>,
}

impl Signals {
    /// The signal for `key`, created if needed; kept while a reader holds it.
    pub fn get(&self, key: &str) -> Arc<Signal> {
        let mut topics = self.lock();
        if let Some(signal) = topics.get(key).and_then(Weak::upgrade) {
            return signal;
        }
        let signal = Arc::new(Signal {
            version: watch::channel(0).0,
        });
        topics.insert(key.to_owned(), Arc::downgrade(&signal));
        // Drop entries whose readers are gone, so the map stays as small as
        // the set of topics being read.
        if topics.len() > 64 && topics.len().is_power_of_two() {
            topics.retain(|_, weak| weak.strong_count() > 0);
        }
        signal
    }

    /// Wakes the readers of `key`, if any.
    pub fn notify(&self, key: &str) {
        let signal = self.lock().get(key).and_then(Weak::upgrade);
        if let Some(signal) = signal {
            signal.notify();
        }
    }

    /// Keys that currently have readers.
    pub fn keys(&self) -> Vec<String> {
        let mut topics = self.lock();
        topics.retain(|_, weak| weak.strong_count() > 0);
        topics.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Signal>>> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notify_after_marking_seen_wakes_the_reader() {
        let signals = Signals::default();
        let signal = signals.get("t");
        let mut rx = signal.subscribe();
        rx.borrow_and_update();
        signals.notify("t");
        tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed())
            .await
            .expect("woken")
            .unwrap();
    }

    #[test]
    fn topics_without_readers_are_forgotten() {
        let signals = Signals::default();
        let held = signals.get("a");
        drop(signals.get("b"));
        assert_eq!(signals.keys(), vec!["a".to_owned()]);
        drop(held);
        assert!(signals.keys().is_empty());
    }
}
