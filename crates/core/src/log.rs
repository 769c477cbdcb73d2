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
}

impl Page {
    pub fn empty(next: u64) -> Self {
        Page {
            events: "[]".to_owned(),
            count: 0,
            next,
        }
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
    pub fn read(&self, topic: &str, from: u64, max: usize) -> Result<Page, CacheError> {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_gap_free_and_reads_resume_anywhere() {
        let mut log = EventLog::default();
        for i in 0..5 {
            assert_eq!(log.append(&format!(r#"{{"n":{i}}}"#), None), i);
        }
        let page = log.read("t", 2, 2).unwrap();
        assert_eq!(page.events, r#"[{"index":2,"n":2},{"index":3,"n":3}]"#);
        assert_eq!((page.count, page.next), (2, 4));
        assert_eq!(log.read("t", 4, 10).unwrap().next, 5);
        assert_eq!(log.read("t", 5, 10).unwrap(), Page::empty(5));
        assert_eq!(log.read("t", 9, 10).unwrap(), Page::empty(9));
    }

    #[test]
    fn retention_drops_the_oldest_and_reading_them_is_an_error() {
        let mut log = EventLog::default();
        for i in 0..10 {
            log.append(&format!(r#"{{"n":{i}}}"#), Some(3));
        }
        let page = log.read("t", 7, 100).unwrap();
        assert_eq!(page.count, 3);
        let err = log.read("t", 6, 100).unwrap_err();
        assert_eq!(err.code(), "ERR_OFFSET_EXPIRED");
        assert!(
            err.to_string().contains("offset 6") && err.to_string().contains("7"),
            "{err}"
        );
    }
}
