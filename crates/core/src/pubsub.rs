//! Resumable topic streams over any store of topic logs ([`TopicLog`]): read
//! a topic from any index, and wait for what comes next. (Publishing is the
//! log's own `append`.)

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::watch;

use crate::cache::store::TopicLog;
use crate::error::CacheError;
use crate::log::{Identity, Page, PageRequest, Received};
use crate::signal::{Signal, Take};

/// How long a reader caught up on a remote store waits for a wake-up before
/// it looks at the store again (see [`Subscription::woken`]).
const LOOK_AGAIN: Duration = Duration::from_secs(5);

/// A reader's position in one topic. Reads never skip or repeat an event:
/// each page starts where the previous one ended.
pub struct Subscription {
    store: Arc<dyn TopicLog>,
    key: String,
    next: u64,
    /// The event before `next`, as this reader got it: every read checks it
    /// is still there, so a topic written again under the reader is an error
    /// (`ERR_TOPIC_REWRITTEN`), not a silent gap.
    received: Option<Received>,
    /// The topic's signal; held, it lives while this reader does.
    signal: Arc<Signal>,
    seen: watch::Receiver<u64>,
    /// Whether the tailer already follows this key for us (Redis).
    following: bool,
    /// Started "from the oldest retained event" and has read nothing yet: an
    /// expired start moves up to the oldest retained event instead of failing.
    /// Once reading, losing events to retention is an error.
    earliest: bool,
    /// Redis: the read of the page after a full one, started when that page
    /// was handed out, so the round trip and the reply's parsing overlap the
    /// consumer's work on it instead of following it.
    ahead: Option<ReadAhead>,
    /// Caught up: the signal version taken before the read that found
    /// nothing at `next` (what the signal offers since then can be trusted).
    caught_up: Option<u64>,
}

struct ReadAhead {
    /// The page before it: the read starts after that page's last event.
    after: Option<Received>,
    from: u64,
    max: usize,
    task: tokio::task::JoinHandle<Result<Page, CacheError>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(ahead) = self.ahead.take() {
            ahead.task.abort();
        }
    }
}

impl Subscription {
    /// A reader of the topic at `key` starting at index `from`, or at the
    /// oldest retained event when `from` is `None`.
    pub fn new(store: Arc<dyn TopicLog>, key: String, from: Option<u64>) -> Self {
        let signal = store.signals().get(&key);
        let seen = signal.subscribe();
        Subscription {
            store,
            key,
            next: from.unwrap_or(0),
            received: None,
            signal,
            seen,
            following: false,
            earliest: from.is_none(),
            ahead: None,
            caught_up: None,
        }
    }

    /// A reader resuming right after the event at `index` whose `id` member
    /// is `id`: its first read checks that this event is still in the topic
    /// ([`CacheError::TopicRewritten`] if not).
    pub fn after_event(store: Arc<dyn TopicLog>, key: String, index: u64, id: String) -> Self {
        let mut sub = Subscription::new(store, key, Some(index.saturating_add(1)));
        sub.received = Some(Received {
            index,
            identity: Identity::Id(id),
        });
        sub
    }

    /// Up to `max` events from `self.next`: the read started ahead when it
    /// is for this position and found events, else a read now. Only pages
    /// with events are taken from ahead: an empty one may be older than the
    /// caller's wake-up check, so it is read again.
    async fn read(&mut self, max: usize) -> Result<Page, CacheError> {
        if let Some(ahead) = self.ahead.take() {
            if ahead.from == self.next && ahead.max == max && ahead.after == self.received {
                if let Ok(Ok(page)) = ahead.task.await {
                    if page.count > 0 {
                        self.read_ahead(&page, max);
                        return Ok(page);
                    }
                }
            } else {
                ahead.task.abort();
            }
        }
        let read = self.store.read(self.request(max)).await;
        if let Ok(page) = &read {
            self.read_ahead(page, max);
        }
        read
    }

    /// The page read ahead for this position, if it has arrived with
    /// events; the read of the one after it starts then. (Anything else is
    /// left to [`Self::read`], which reports errors and re-reads empty pages.)
    fn arrived(&mut self, max: usize) -> Option<Page> {
        let ahead = self.ahead.as_mut()?;
        if !(ahead.task.is_finished() && ahead.from == self.next && ahead.max == max && ahead.after == self.received) {
            return None;
        }
        let finished = self.ahead.take()?.task.now_or_never();
        match finished {
            Some(Ok(Ok(page))) if page.count > 0 => {
                self.read_ahead(&page, max);
                Some(page)
            }
            // Read again: an error is reported by that read, and an empty
            // page may predate the caller's wake-up check.
            _ => None,
        }
    }

    /// The read of a page from where this subscription is.
    fn request(&self, max: usize) -> PageRequest<'_> {
        PageRequest {
            key: &self.key,
            from: self.next,
            max,
            received: self.received.as_ref(),
        }
    }

    /// After a full page from Redis more is likely stored: start reading it.
    fn read_ahead(&mut self, page: &Page, max: usize) {
        if page.count < max || self.store.synchronous() {
            return;
        }
        let (store, key, from, after) = (self.store.clone(), self.key.clone(), page.next, last_received(page));
        let checked = after.clone();
        let task = tokio::spawn(async move {
            let request = PageRequest {
                key: &key,
                from,
                max,
                received: checked.as_ref(),
            };
            store.read(request).await
        });
        self.ahead = Some(ReadAhead { after, from, max, task });
    }

    /// A read result, after moving an "earliest" start past expired events.
    fn settle(&mut self, read: Result<Page, CacheError>) -> Result<Option<Page>, CacheError> {
        match read {
            Ok(page) if page.count > 0 => {
                self.took(&page);
                Ok(Some(page))
            }
            Ok(_) => Ok(None),
            Err(CacheError::OffsetExpired { first, .. }) if self.earliest => {
                self.next = first;
                self.received = None;
                self.earliest = false;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves past a page handed out.
    fn took(&mut self, page: &Page) {
        self.next = page.next;
        self.received = last_received(page);
        self.earliest = false;
    }

    /// Waits for a wake-up of this topic; false when none came for
    /// [`LOOK_AGAIN`] on a store that is not synchronous. A wake-up is a hint
    /// (the store is what the reader reads): this bounds what any wake-up lost
    /// on its way (a tailer reconnecting after a stall, a message dropped by a
    /// failover) can delay an event, at the cost of one small read per idle
    /// reader and period.
    async fn woken(&mut self) -> bool {
        if self.store.synchronous() {
            // The sender lives in `signal`, so this only ends by a change.
            let _ = self.seen.changed().await;
            return true;
        }
        tokio::time::timeout(LOOK_AGAIN, self.seen.changed()).await.is_ok()
    }

    /// The index of the next event this reader will get.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next page if one is ready without waiting (in memory, or over
    /// Redis a page read ahead that has arrived), `None` otherwise: then
    /// call [`Self::next`].
    pub fn try_next(&mut self, max: usize) -> Result<Option<Page>, CacheError> {
        if !self.store.synchronous() {
            return Ok(self.arrived(max).inspect(|page| self.took(page)));
        }
        loop {
            self.seen.borrow_and_update();
            let Some(read) = self.store.read_now(self.request(max)) else {
                return Ok(None);
            };
            let moved = self.earliest;
            match self.settle(read)? {
                Some(page) => return Ok(Some(page)),
                // An expired "earliest" start moved: read again from there.
                None if moved && !self.earliest => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next page of what is stored now, `None` once caught up: never waits.
    pub async fn read_available(&mut self, max: usize) -> Result<Option<Page>, CacheError> {
        loop {
            let moved = self.earliest;
            let read = self.read(max).await;
            match self.settle(read)? {
                Some(page) => return Ok(Some(page)),
                None if moved && !self.earliest => continue,
                None => return Ok(None),
            }
        }
    }

    /// The next page, waiting for events when the reader has caught up.
    pub async fn next(&mut self, max: usize) -> Result<Page, CacheError> {
        loop {
            if let Some(floor) = self.caught_up {
                // Seen before looking: an offer after the look wakes us.
                self.seen.borrow_and_update();
                match self.signal.take(self.next, max, floor, self.received.as_ref()) {
                    Take::Page(page) => {
                        self.took(&page);
                        return Ok(page);
                    }
                    Take::Wait => {
                        if !self.woken().await {
                            // Looked again without a wake-up: read the store.
                            self.caught_up = None;
                        }
                        continue;
                    }
                    Take::Read => self.caught_up = None,
                }
            }
            // Seen before reading: an append after the read wakes us.
            let floor = *self.seen.borrow_and_update();
            let moved = self.earliest;
            let read = self.read(max).await;
            match self.settle(read)? {
                Some(page) => return Ok(page),
                None if moved && !self.earliest => continue,
                None => {}
            }
            if !self.store.synchronous() {
                if !self.following {
                    self.store.follow(&self.key, self.next);
                    self.following = true;
                }
                // In memory a read costs less than a look at the offers.
                self.caught_up = Some(floor);
            }
            if !self.woken().await {
                self.caught_up = None;
            }
        }
    }
}

/// What a reader received last, after taking `page` (which is not empty).
fn last_received(page: &Page) -> Option<Received> {
    page.last.map(|hash| Received {
        index: page.next - 1,
        identity: Identity::Fingerprint(hash),
    })
}
