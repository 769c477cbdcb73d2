//! Resumable topic streams over either cache: publish to a topic log, read it
//! from any index, and wait for what comes next.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use tokio::sync::watch;

use crate::cache::memory::MemoryCache;
use crate::cache::redis::RedisCache;
use crate::cache::runs::{Commit, CommitOutcome};
use crate::error::CacheError;
use crate::log::{Identity, Page, Received, Retention};
use crate::signal::{Signal, Signals, Take};

/// Where topic logs live: in this process, or in Redis for many.
#[derive(Clone)]
pub enum Store {
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl Store {
    fn signals(&self) -> &Arc<Signals> {
        match self {
            Store::Memory(cache) => cache.signals(),
            Store::Redis(cache) => cache.signals(),
        }
    }

    /// How many topics have readers in this process.
    pub fn topics_read(&self) -> usize {
        self.signals().keys().len()
    }

    /// Appends an event and returns its index, once it is stored. Queued
    /// when called: appends keep the order they were made in, awaited or not.
    pub fn append(
        &self,
        key: &str,
        object_json: &str,
        retention: &Retention,
    ) -> BoxFuture<'static, Result<u64, CacheError>> {
        match self {
            Store::Memory(cache) => futures::future::ready(cache.log_append(key, object_json, retention)).boxed(),
            Store::Redis(cache) => cache.log_append(key, object_json, retention).boxed(),
        }
    }

    /// Up to `max` events from index `from`; `received`: the event before
    /// `from` that the reader got, checked to be still there (see [`Received`]).
    pub async fn read(
        &self,
        key: &str,
        from: u64,
        max: usize,
        received: Option<&Received>,
    ) -> Result<Page, CacheError> {
        match self {
            Store::Memory(cache) => cache.log_read(key, from, max, received),
            Store::Redis(cache) => cache.log_read(key, from, max, received).await,
        }
    }

    /// [`Self::read`] when it can answer without waiting (in memory).
    pub fn read_now(
        &self,
        key: &str,
        from: u64,
        max: usize,
        received: Option<&Received>,
    ) -> Option<Result<Page, CacheError>> {
        match self {
            Store::Memory(cache) => Some(cache.log_read(key, from, max, received)),
            Store::Redis(_) => None,
        }
    }

    /// The index the next event of the topic will get.
    pub async fn next_index(&self, key: &str) -> Result<u64, CacheError> {
        match self {
            Store::Memory(cache) => cache.log_next_index(key),
            Store::Redis(cache) => cache.log_next_index(key).await,
        }
    }

    /// Appends events in order; returns the index of the last one.
    pub async fn append_many(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
    ) -> Result<Option<u64>, CacheError> {
        match self {
            Store::Memory(cache) => cache.log_append_many(key, objects, retention),
            Store::Redis(cache) => cache.log_append_many(key, objects, retention).await,
        }
    }

    /// [`Self::append_many`] if `owner` holds the lease at `lease_key`, in one
    /// atomic step; `None` (nothing appended) if not.
    pub async fn append_many_leased(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
        lease_key: &str,
        owner: &str,
    ) -> Result<Option<Option<u64>>, CacheError> {
        match self {
            Store::Memory(cache) => cache.log_append_many_leased(key, objects, retention, lease_key, owner),
            Store::Redis(cache) => {
                cache
                    .log_append_many_leased(key, objects, retention, lease_key, owner)
                    .await
            }
        }
    }

    /// A run's atomic write of state and events (see [`Commit`]).
    pub async fn commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, CacheError> {
        match self {
            Store::Memory(cache) => cache.run_commit(commit),
            Store::Redis(cache) => cache.run_commit(commit).await,
        }
    }

    /// A run's stored state, `None` when absent.
    pub async fn load_run(&self, state_key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.get(state_key)),
            Store::Redis(cache) => cache.run_load(state_key).await,
        }
    }

    /// Deletes a run's keys (state, topic, abort request).
    pub async fn delete_run(&self, keys: &[&str]) -> Result<(), CacheError> {
        match self {
            Store::Memory(cache) => {
                for key in keys {
                    cache.delete(key);
                }
                Ok(())
            }
            Store::Redis(cache) => cache.run_delete(keys).await,
        }
    }

    /// Records a request to abort a run (`reason_json`), if its state exists.
    pub async fn request_abort(&self, state_key: &str, abort_key: &str, reason_json: &str) -> Result<bool, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.run_request_abort(state_key, abort_key, reason_json)),
            Store::Redis(cache) => cache.run_request_abort(state_key, abort_key, reason_json).await,
        }
    }

    /// The reason of a requested abort (JSON text), if any.
    pub async fn abort_requested(&self, abort_key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.get(abort_key)),
            Store::Redis(cache) => cache.get(abort_key).await,
        }
    }

    /// Takes the lease at `key` for `owner` for `ttl`, if nobody holds it.
    pub async fn lease_acquire(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.lease_acquire(key, owner, ttl)),
            Store::Redis(cache) => cache.lease_acquire(key, owner, ttl.as_millis() as u64).await,
        }
    }

    /// Extends the lease at `key` if `owner` still holds it.
    pub async fn lease_renew(&self, key: &str, owner: &str, ttl: Duration) -> Result<bool, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.lease_renew(key, owner, ttl)),
            Store::Redis(cache) => cache.lease_renew(key, owner, ttl.as_millis() as u64).await,
        }
    }

    /// Takes the lease at `key` back for `owner` after it lapsed, if nobody
    /// else holds it and the run state at `state_key` still has `version`.
    pub async fn lease_reclaim(
        &self,
        key: &str,
        state_key: &str,
        owner: &str,
        ttl: Duration,
        version: u64,
    ) -> Result<bool, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.lease_reclaim(key, state_key, owner, ttl, version)),
            Store::Redis(cache) => {
                cache
                    .lease_reclaim(key, state_key, owner, ttl.as_millis() as u64, version)
                    .await
            }
        }
    }

    /// Gives the lease at `key` up if `owner` holds it.
    pub async fn lease_release(&self, key: &str, owner: &str) -> Result<(), CacheError> {
        match self {
            Store::Memory(cache) => {
                cache.lease_release(key, owner);
                Ok(())
            }
            Store::Redis(cache) => cache.lease_release(key, owner).await,
        }
    }

    /// Whether someone holds the lease at `key`.
    pub async fn lease_held(&self, key: &str) -> Result<bool, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.get(key).is_some()),
            Store::Redis(cache) => Ok(cache.lease_holder(key).await?.is_some()),
        }
    }

    /// Every key that starts with `prefix` and ends with `suffix`.
    pub async fn keys_matching(&self, prefix: &str, suffix: &str) -> Result<Vec<String>, CacheError> {
        match self {
            Store::Memory(cache) => Ok(cache.keys_matching(prefix, suffix)),
            Store::Redis(cache) => cache.keys_matching(prefix, suffix).await,
        }
    }

    /// Deletes the topic: its events and its index (the next publish gets
    /// 0). Queued when called, like [`Self::append`].
    pub fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), CacheError>> {
        match self {
            Store::Memory(cache) => {
                cache.delete(key);
                futures::future::ready(Ok(())).boxed()
            }
            Store::Redis(cache) => cache.delete(key).boxed(),
        }
    }
}

/// A reader's position in one topic. Reads never skip or repeat an event:
/// each page starts where the previous one ended.
pub struct Subscription {
    store: Store,
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
    pub fn new(store: Store, key: String, from: Option<u64>) -> Self {
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
    pub fn after_event(store: Store, key: String, index: u64, id: String) -> Self {
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
        let read = self.store.read(&self.key, self.next, max, self.received.as_ref()).await;
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

    /// After a full page from Redis more is likely stored: start reading it.
    fn read_ahead(&mut self, page: &Page, max: usize) {
        if page.count < max || !matches!(self.store, Store::Redis(_)) {
            return;
        }
        let (store, key, from, after) = (self.store.clone(), self.key.clone(), page.next, last_received(page));
        let checked = after.clone();
        let task = tokio::spawn(async move { store.read(&key, from, max, checked.as_ref()).await });
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

    /// The index of the next event this reader will get.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next page if one is ready without waiting (in memory, or over
    /// Redis a page read ahead that has arrived), `None` otherwise: then
    /// call [`Self::next`].
    pub fn try_next(&mut self, max: usize) -> Result<Option<Page>, CacheError> {
        if let Store::Redis(_) = self.store {
            return Ok(self.arrived(max).inspect(|page| self.took(page)));
        }
        loop {
            self.seen.borrow_and_update();
            let Some(read) = self.store.read_now(&self.key, self.next, max, self.received.as_ref()) else {
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
                        // The sender lives in `signal`, so this only ends by a change.
                        let _ = self.seen.changed().await;
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
            if let Store::Redis(cache) = &self.store {
                if !self.following {
                    cache.follow(&self.key, self.next);
                    self.following = true;
                }
                // In memory a read costs less than a look at the offers.
                self.caught_up = Some(floor);
            }
            let _ = self.seen.changed().await;
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
