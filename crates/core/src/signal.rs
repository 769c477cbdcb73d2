//! In-process wake-ups for topic readers, and the events that woke them.
//!
//! A reader that has caught up waits for its topic's signal, then reads the
//! store again: the store is the truth, a signal only says "look again". A
//! reader marks the signal seen *before* it reads, so an append that lands
//! after the read always wakes it (no lost wake-ups). Appends in this process
//! signal directly; for Redis, the tailer signals appends made elsewhere.
//!
//! Over Redis a signal also carries the events that caused it (this process's
//! own appends, the tailer's reads), so a reader waiting for exactly those
//! takes them without reading the store again: one round trip less between
//! publish and delivery, and no read per event per reader. See [`Recent`] for
//! when a reader may trust them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use crate::log::{fingerprint, Page, Received};

/// How many offered events a topic's signal keeps, and how many bytes of
/// them at most. A reader further behind than this reads the store, as it
/// would anyway.
const RECENT_MAX: usize = 256;
const RECENT_MAX_BYTES: usize = 1 << 20;

/// One topic's signal: a version bumped by every append, and the events
/// offered with the latest bumps.
#[derive(Debug)]
pub struct Signal {
    version: watch::Sender<u64>,
    recent: Mutex<Recent>,
}

impl Signal {
    fn new() -> Self {
        Signal {
            version: watch::channel(0).0,
            recent: Mutex::new(Recent::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Something changed, unknown what: waiting readers read the store.
    pub fn notify(&self) {
        self.version.send_modify(|v| {
            *v = v.wrapping_add(1);
            lock(&self.recent).forget(*v);
        });
    }

    /// Events `first`, `first + 1`, ... (JSON objects with their `index`) are
    /// stored now: wakes the readers and hands the events to them.
    pub fn offer(&self, first: u64, events: Vec<String>) {
        self.version.send_modify(|v| {
            *v = v.wrapping_add(1);
            lock(&self.recent).insert(first, events, *v);
        });
    }

    /// What a reader that found nothing at `from` when the version was
    /// `floor`, and `received` the event before it, should do now (see
    /// [`Recent`]).
    pub fn take(&self, from: u64, max: usize, floor: u64, received: Option<&Received>) -> Take {
        lock(&self.recent).take(from, max, floor, received)
    }
}

/// What a caught-up reader does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// These events, offered since it looked.
    Page(Page),
    /// Wait: nothing at its position has been offered since it looked.
    Wait,
    /// Read the store: something changed that the offers here do not show.
    Read,
}

/// The events offered most recently, each with the version its offer set.
///
/// A reader may trust an offered event only if it was offered *after* the
/// reader's own read of the store found nothing at its position (its
/// "floor" version, taken before that read): an event offered before that
/// read and at or past that position is not in the topic any more (the
/// topic was deleted and written again), so it is never handed out. Events
/// offered later were stored after that read, in the topic as it now is.
/// One window remains: a tailer read that Redis served before the reader's
/// read but that is offered after it, with the topic deleted and rewritten
/// in between (within one reply's transit). Clearing a topic while it is
/// being read guarantees its readers nothing either way.
#[derive(Debug, Default)]
struct Recent {
    /// Index of `events[0]`.
    first: u64,
    events: VecDeque<(u64, Box<str>)>,
    /// The length of the events' texts together.
    bytes: usize,
    /// One past the highest index ever offered: an index below it that is not
    /// held (any more) must be read from the store.
    offered_end: u64,
    /// The version of the latest change offered without its events.
    unknown: u64,
}

impl Recent {
    fn insert(&mut self, first: u64, events: Vec<String>, version: u64) {
        let end = self.first + self.events.len() as u64;
        if self.events.is_empty() || first < self.first || first > end {
            self.clear();
            self.first = first;
        } else {
            // A newer offer of held indices replaces them (what it does not
            // cover is still counted in `offered_end`).
            for (_, event) in self.events.drain((first - self.first) as usize..) {
                self.bytes -= event.len();
            }
        }
        self.offered_end = self.offered_end.max(first + events.len() as u64);
        for event in events {
            self.bytes += event.len();
            self.events.push_back((version, event.into_boxed_str()));
        }
        while self.events.len() > RECENT_MAX || self.bytes > RECENT_MAX_BYTES {
            let Some((_, event)) = self.events.pop_front() else {
                break;
            };
            self.bytes -= event.len();
            self.first += 1;
        }
    }

    fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }

    fn forget(&mut self, version: u64) {
        self.clear();
        self.unknown = version;
    }

    fn take(&self, from: u64, max: usize, floor: u64, received: Option<&Received>) -> Take {
        if self.unknown > floor {
            return Take::Read;
        }
        let end = self.first + self.events.len() as u64;
        if from >= self.first && from < end {
            // The events held are the reader's next only if the event held
            // just before them is the very one it received last. Another
            // event there means the topic was written again under the reader
            // (cleared, or a Redis failover gave lost indices to new events),
            // or the one held predates that; none held proves nothing. Either
            // way the store's read, which checks the same, tells.
            if let Some(received) = received {
                let held = received
                    .index
                    .checked_sub(self.first)
                    .and_then(|i| self.events.get(i as usize));
                if held.is_none_or(|(_, event)| !received.identity.matches(event)) {
                    return Take::Read;
                }
            }
            let fresh: Vec<&str> = self
                .events
                .range((from - self.first) as usize..)
                .take(max)
                .take_while(|(version, _)| *version > floor)
                .map(|(_, event)| &**event)
                .collect();
            if fresh.is_empty() {
                return Take::Read;
            }
            return Take::Page(Page {
                count: fresh.len(),
                next: from + fresh.len() as u64,
                events: crate::json::array(fresh.iter().copied()),
                last: fresh.last().map(|event| fingerprint(event)),
            });
        }
        if from < self.offered_end {
            Take::Read
        } else {
            Take::Wait
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
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
        let signal = Arc::new(Signal::new());
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
        if let Some(signal) = self.find(key) {
            signal.notify();
        }
    }

    /// Wakes the readers of `key`, if any, and offers them the events
    /// `first`, `first + 1`, ... that `events()` makes (only made if someone
    /// reads `key`).
    pub fn offer(&self, key: &str, first: u64, events: impl FnOnce() -> Vec<String>) {
        if let Some(signal) = self.find(key) {
            signal.offer(first, events());
        }
    }

    fn find(&self, key: &str) -> Option<Arc<Signal>> {
        self.lock().get(key).and_then(Weak::upgrade)
    }

    /// Keys that currently have readers.
    pub fn keys(&self) -> Vec<String> {
        let mut topics = self.lock();
        topics.retain(|_, weak| weak.strong_count() > 0);
        topics.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<Signal>>> {
        lock(&self.topics)
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

    fn events(first: u64, n: u64) -> Vec<String> {
        (first..first + n).map(|i| format!(r#"{{"index":{i}}}"#)).collect()
    }

    fn page(take: Take) -> (u64, usize, String) {
        match take {
            Take::Page(page) => (page.next, page.count, page.events),
            other => panic!("expected a page, got {other:?}"),
        }
    }

    #[test]
    fn a_caught_up_reader_takes_what_is_offered_after_its_read() {
        let signal = Signal::new();
        let floor = *signal.subscribe().borrow();
        assert_eq!(signal.take(3, 10, floor, None), Take::Wait, "nothing offered yet");
        signal.offer(3, events(3, 2));
        assert_eq!(
            page(signal.take(3, 10, floor, None)),
            (5, 2, r#"[{"index":3},{"index":4}]"#.into())
        );
        assert_eq!(page(signal.take(4, 10, floor, None)).1, 1, "from inside the offer");
        assert_eq!(page(signal.take(3, 1, floor, None)).1, 1, "at most max");
        assert_eq!(signal.take(5, 10, floor, None), Take::Wait, "past what was offered");
    }

    #[test]
    fn events_offered_before_the_readers_read_are_never_handed_out() {
        // Offered, then the topic was deleted and written again elsewhere:
        // the reader's read found nothing at 3, so the held 3 is stale.
        let signal = Signal::new();
        signal.offer(3, events(3, 2));
        let floor = *signal.subscribe().borrow();
        assert_eq!(signal.take(3, 10, floor, None), Take::Read);
        // A fresh offer of the same index replaces the stale one.
        signal.offer(3, events(3, 1));
        assert_eq!(page(signal.take(3, 10, floor, None)), (4, 1, r#"[{"index":3}]"#.into()));
        assert_eq!(
            signal.take(4, 10, floor, None),
            Take::Read,
            "4 was offered once: the store has it"
        );
    }

    #[test]
    fn a_change_offered_without_events_sends_readers_to_the_store() {
        let signal = Signal::new();
        let floor = *signal.subscribe().borrow();
        signal.offer(0, events(0, 1));
        signal.notify();
        assert_eq!(signal.take(0, 10, floor, None), Take::Read);
        assert_eq!(signal.take(1, 10, floor, None), Take::Read);
        let floor = *signal.subscribe().borrow();
        assert_eq!(
            signal.take(1, 10, floor, None),
            Take::Wait,
            "after a read since the change"
        );
    }

    #[test]
    fn indices_offered_but_not_held_are_read_from_the_store() {
        let signal = Signal::new();
        let floor = *signal.subscribe().borrow();
        // A gap: 0..2 offered, then 5.. (2..5 were stored by another client).
        signal.offer(0, events(0, 2));
        signal.offer(5, events(5, 1));
        assert_eq!(signal.take(2, 10, floor, None), Take::Read);
        assert_eq!(page(signal.take(5, 10, floor, None)).1, 1);
        // Beyond what is kept: the oldest go, and are read from the store.
        signal.offer(6, events(6, RECENT_MAX as u64 + 10));
        assert_eq!(signal.take(6, 10, floor, None), Take::Read);
        assert_eq!(page(signal.take(20, 10, floor, None)).1, 10);
        // An older offer inside what is held cuts it short; what it cut is read.
        signal.offer(100, events(100, 1));
        assert_eq!(page(signal.take(100, 10, floor, None)).0, 101);
        assert_eq!(signal.take(101, 10, floor, None), Take::Read);
    }

    #[test]
    fn what_is_kept_is_bounded_in_bytes_too() {
        let signal = Signal::new();
        let floor = *signal.subscribe().borrow();
        let big = |i: u64| format!(r#"{{"index":{i},"pad":"{}"}}"#, "x".repeat(300 << 10));
        signal.offer(0, (0..4).map(big).collect());
        // Four events of 300 KiB: the oldest goes, 1 MiB holds the rest.
        assert_eq!(signal.take(0, 10, floor, None), Take::Read);
        assert_eq!(page(signal.take(1, 10, floor, None)).1, 3);
        let recent = lock(&signal.recent);
        assert_eq!(recent.bytes, recent.events.iter().map(|(_, e)| e.len()).sum::<usize>());
    }

    #[tokio::test]
    async fn an_offer_wakes_the_reader() {
        let signals = Signals::default();
        let signal = signals.get("t");
        let mut rx = signal.subscribe();
        rx.borrow_and_update();
        let mut made = false;
        signals.offer("nobody", 0, || {
            made = true;
            events(0, 1)
        });
        assert!(!made, "events for a topic nobody reads are not made");
        signals.offer("t", 0, || events(0, 1));
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
