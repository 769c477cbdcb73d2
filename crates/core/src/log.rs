//! Topic event logs: the storage behind resumable streams.
//!
//! A topic's events get gap-free 0-based indices in publish order. Readers ask
//! for events from an index and get them as one JSON array text, each event
//! with its `index` member; an index that retention has dropped is an error,
//! never a silently shorter history.

use std::collections::VecDeque;
use std::time::Duration;

use crate::error::CacheError;
use crate::json;

/// How much of a topic to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Time to live of the whole topic, refreshed by every publish. `None`:
    /// the cache's default TTL; `Some(None)`: never expires.
    pub ttl: Option<Option<Duration>>,
    /// Keep at most this many of the newest events.
    pub max_events: Option<u64>,
}

/// Events read from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// A JSON array of the events, each with its `index`.
    pub events: String,
    pub count: usize,
    /// The index after the last event returned (where the next read starts).
    pub next: u64,
    /// The [`fingerprint`] of the last event returned, which the reader
    /// hands back with its next read ([`Received`]).
    pub last: Option<u64>,
}

impl Page {
    pub fn empty(next: u64) -> Self {
        Page {
            events: "[]".to_owned(),
            count: 0,
            next,
            last: None,
        }
    }
}

/// What a reader asks of a topic log: up to `max` events of the topic at
/// `key` from index `from`; `received`, the event before `from` that the
/// reader got, checked to be still there.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub key: &'a str,
    pub from: u64,
    pub max: usize,
    pub received: Option<&'a Received>,
}

impl<'a> PageRequest<'a> {
    /// A read that checks nothing before `from` (a reader's first).
    pub fn new(key: &'a str, from: u64, max: usize) -> Self {
        PageRequest {
            key,
            from,
            max,
            received: None,
        }
    }
}

/// What a reader received last: the index and identity of the event before
/// the one it reads from. A read checks that this event is still in the
/// topic as it was, so that a topic written again under the reader (see
/// [`CacheError::TopicRewritten`]) is an error, not a silent gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub index: u64,
    pub identity: Identity,
}

/// How a reader knows an event it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The [`fingerprint`] of its text: what a reader keeps of each page.
    Fingerprint(u64),
    /// Its `id` member: what a caller resuming after an event it was handed
    /// has of it.
    Id(String),
}

impl Identity {
    /// Whether `event` (its JSON text as readers get it) is the one known.
    pub fn matches(&self, event: &str) -> bool {
        match self {
            Identity::Fingerprint(hash) => fingerprint(event) == *hash,
            Identity::Id(id) => event_id(event).is_some_and(|found| found == *id),
        }
    }
}

/// The `id` member of an event's JSON text.
fn event_id(event: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct WithId {
        id: Option<String>,
    }
    serde_json::from_str::<WithId>(event).ok()?.id
}

/// A hash of an event's JSON text as readers get it (`index` included). Two
/// different events never share a text (each has its own `id`).
pub fn fingerprint(event: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    event.hash(&mut hasher);
    hasher.finish()
}

/// The check of a read that starts one event early, at `received.index`:
/// what the event found there (`None`: the topic, which holds events, holds
/// none at or after it) means for the reader. `Ok(true)`: it is the event
/// received, skip it; `Ok(false)`: it is not there but the topic goes on
/// right after it (trimmed by `maxEvents`), read on; otherwise the topic was
/// written again. (A topic that holds no events at all, cleared or expired,
/// is not checked: nothing was written again yet, and the reader waits.)
pub fn check_received(topic: &str, received: &Received, found: Option<(u64, &str)>) -> Result<bool, CacheError> {
    match found {
        Some((index, event)) if index == received.index && received.identity.matches(event) => Ok(true),
        Some((index, _)) if index == received.index + 1 => Ok(false),
        Some((index, _)) if index > received.index + 1 => Err(CacheError::OffsetExpired {
            topic: topic.to_owned(),
            offset: received.index + 1,
            first: index,
        }),
        _ => Err(CacheError::TopicRewritten {
            topic: topic.to_owned(),
            index: received.index,
        }),
    }
}

/// An in-memory topic log: the retained events, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    /// Index of `events[0]`.
    first: u64,
    /// Each event's JSON text, `index` included.
    events: VecDeque<Box<str>>,
}

impl EventLog {
    /// The index the next event will get.
    pub fn next_index(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// Appends an event (an object text without `index`, see
    /// [`json::without_index`]) and returns its index, dropping the oldest
    /// events beyond `max_events`.
    pub fn append(&mut self, object: &str, max_events: Option<u64>) -> u64 {
        let index = self.next_index();
        self.events
            .push_back(json::with_index(object, index as i64).into_boxed_str());
        if let Some(max) = max_events {
            while self.events.len() as u64 > max {
                self.events.pop_front();
                self.first += 1;
            }
        }
        index
    }

    /// Up to `max` events from index `from`. Past the end: an empty page.
    /// `received`: the event before `from` the reader got, checked first.
    pub fn read(&self, topic: &str, from: u64, max: usize, received: Option<&Received>) -> Result<Page, CacheError> {
        if let Some(received) = received.filter(|_| !self.events.is_empty()) {
            let at = received.index;
            let found = at
                .checked_sub(self.first)
                .and_then(|i| self.events.get(i as usize))
                .map(|event| (at, &**event))
                // Trimmed away: what follows it decides (see `check_received`).
                .or_else(|| (self.first > at).then_some((self.first, "")));
            check_received(topic, received, found)?;
        }
        if from < self.first {
            return Err(CacheError::OffsetExpired {
                topic: topic.to_owned(),
                offset: from,
                first: self.first,
            });
        }
        let start = (from - self.first) as usize;
        if start >= self.events.len() {
            return Ok(Page::empty(self.next_index().max(from)));
        }
        let end = self.events.len().min(start.saturating_add(max));
        Ok(Page {
            events: json::array(self.events.range(start..end).map(|s| &**s)),
            count: end - start,
            next: self.first + end as u64,
            last: Some(fingerprint(&self.events[end - 1])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_known_by_the_hash_of_its_text_or_by_its_id() {
        let event = r#"{"index":3,"id":"e-1","type":"chunk"}"#;
        assert!(Identity::Fingerprint(fingerprint(event)).matches(event));
        assert!(!Identity::Fingerprint(fingerprint(event)).matches(r#"{"index":3,"id":"e-2","type":"chunk"}"#));
        assert!(Identity::Id("e-1".into()).matches(event));
        assert!(!Identity::Id("e-2".into()).matches(event));
        assert!(
            !Identity::Id("e-1".into()).matches(r#"{"index":3}"#),
            "no id: not the event"
        );
        assert!(!Identity::Id("e-1".into()).matches("not json"));
    }

    #[test]
    fn indices_are_gap_free_and_reads_resume_anywhere() {
        let mut log = EventLog::default();
        for i in 0..5 {
            assert_eq!(log.append(&format!(r#"{{"n":{i}}}"#), None), i);
        }
        let page = log.read("t", 2, 2, None).unwrap();
        assert_eq!(page.events, r#"[{"index":2,"n":2},{"index":3,"n":3}]"#);
        assert_eq!((page.count, page.next), (2, 4));
        assert_eq!(log.read("t", 4, 10, None).unwrap().next, 5);
        assert_eq!(log.read("t", 5, 10, None).unwrap(), Page::empty(5));
        assert_eq!(log.read("t", 9, 10, None).unwrap(), Page::empty(9));
    }

    #[test]
    fn retention_drops_the_oldest_and_reading_them_is_an_error() {
        let mut log = EventLog::default();
        for i in 0..10 {
            log.append(&format!(r#"{{"n":{i}}}"#), Some(3));
        }
        let page = log.read("t", 7, 100, None).unwrap();
        assert_eq!(page.count, 3);
        let err = log.read("t", 6, 100, None).unwrap_err();
        assert_eq!(err.code(), "ERR_OFFSET_EXPIRED");
        assert!(
            err.to_string().contains("offset 6") && err.to_string().contains("7"),
            "{err}"
        );
    }
}
