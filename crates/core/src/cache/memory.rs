//! `MemoryCache`: the embedded, zero-setup cache, on moka.
//!
//! Every operation is synchronous and cheap, so the binding calls it on the JS
//! thread directly: an async napi call would cost a thread hop (~30 µs), many
//! times the work itself.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::policy::{EvictionPolicy, Expiry};
use moka::sync::Cache;

use super::range::lrange;
use super::runs::{version_of, Commit, CommitOutcome, LeaseAction, LeaseChange, LeaseClaim, LeasedAppend, RunKeys};
use super::store::{RunRecords, StoreFuture, TopicLog};
use crate::error::CacheError;
use crate::json;
use crate::log::{EventLog, Page, PageRequest, Retention};
use crate::signal::Signals;

/// Options of [`MemoryCache`], already validated.
#[derive(Debug, Clone)]
pub struct MemoryCacheConfig {
    /// Default time to live of a key, refreshed by every write to it.
    /// `None` disables expiry.
    pub ttl: Option<Duration>,
    /// How many keys the cache holds before it evicts the least recently used.
    pub max_size: u64,
}

impl Default for MemoryCacheConfig {
    fn default() -> Self {
        MemoryCacheConfig {
            ttl: Some(Duration::from_millis(300_000)),
            max_size: 1000,
        }
    }
}

impl MemoryCacheConfig {
    /// Builds a config from the JS option values, naming the option at fault.
    pub fn from_options(ttl_ms: Option<f64>, max_size: Option<f64>) -> Result<Self, CacheError> {
        let defaults = MemoryCacheConfig::default();
        let ttl = match ttl_ms {
            None => defaults.ttl,
            Some(ms) => ttl_from_ms("ttlMs", ms)?,
        };
        let max_size = match max_size {
            None => defaults.max_size,
            Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => n as u64,
            Some(n) => {
                return Err(CacheError::invalid_option(
                    "maxSize",
                    format!("must be a positive integer, got {n}"),
                ))
            }
        };
        Ok(MemoryCacheConfig { ttl, max_size })
    }
}

/// A TTL in milliseconds as JS gives it: `0` means no expiry.
pub fn ttl_from_ms(option: &'static str, ms: f64) -> Result<Option<Duration>, CacheError> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(CacheError::invalid_option(
            option,
            format!("must be a finite number >= 0, got {ms}"),
        ));
    }
    Ok((ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0)))
}

type List = Vec<Box<str>>;

#[derive(Clone)]
enum Data {
    Value(Arc<str>),
    List(Arc<Mutex<List>>),
    Counter(Arc<AtomicI64>),
    Log(Arc<Mutex<EventLog>>),
}

impl Data {
    fn kind(&self) -> &'static str {
        match self {
            Data::Value(_) => "a value",
            Data::List(_) => "a list",
            Data::Counter(_) => "a counter",
            Data::Log(_) => "a topic log",
        }
    }
}

/// Data that writers change in place behind a mutex (lists and topic logs).
trait Shared: Default + Send + 'static {
    fn view(data: &Data) -> Option<&Arc<Mutex<Self>>>;
    fn wrap(shared: Arc<Mutex<Self>>) -> Data;

    /// What this kind of data is called in errors.
    fn kind() -> &'static str {
        Self::wrap(Arc::default()).kind()
    }
}

/// [`Shared`] for the type that the `Data` variant `$variant` holds.
macro_rules! shared_as {
    ($type:ty, $variant:ident) => {
        impl Shared for $type {
            fn view(data: &Data) -> Option<&Arc<Mutex<Self>>> {
                match data {
                    Data::$variant(shared) => Some(shared),
                    _ => None,
                }
            }
            fn wrap(shared: Arc<Mutex<Self>>) -> Data {
                Data::$variant(shared)
            }
        }
    };
}
shared_as!(List, List);
shared_as!(EventLog, Log);

/// What moka stores per key: the data and the TTL its last write asked for.
#[derive(Clone)]
struct Slot {
    data: Data,
    ttl: Option<Duration>,
}

/// Each write sets the key's expiry to the TTL it asked for; reads leave it.
///
/// Pushes and increments on an existing key mutate the shared list or counter
/// in place, so for moka they are reads: [`MemoryCache::get_for_write`] flags
/// such a read on this thread and `expire_after_read` (which moka calls
/// synchronously inside `get`) refreshes the TTL. That keeps the hot path at one
/// lock-free lookup instead of a keyed compute-and-insert, which cost 3x more.
struct WriteRefreshesTtl;

thread_local! {
    static READ_IS_WRITE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Expiry<String, Slot> for WriteRefreshesTtl {
    fn expire_after_create(&self, _: &String, slot: &Slot, _: Instant) -> Option<Duration> {
        slot.ttl
    }
    fn expire_after_update(&self, _: &String, slot: &Slot, _: Instant, _: Option<Duration>) -> Option<Duration> {
        slot.ttl
    }
    fn expire_after_read(
        &self,
        _: &String,
        slot: &Slot,
        _: Instant,
        remaining: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        let mutable = matches!(slot.data, Data::List(_) | Data::Counter(_) | Data::Log(_));
        if mutable && READ_IS_WRITE.with(|flag| flag.get()) {
            slot.ttl
        } else {
            remaining
        }
    }
}

/// The in-memory cache. Cloning shares the same store.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<String, Slot>,
    ttl: Option<Duration>,
    signals: Arc<Signals>,
    /// Serialises run commits, which compare a state's version and then write
    /// it and its log (see [`Self::run_commit`]).
    commits: Arc<Mutex<()>>,
}

impl MemoryCache {
    pub fn new(config: MemoryCacheConfig) -> Self {
        let entries = Cache::builder()
            .max_capacity(config.max_size)
            // TinyLFU may refuse to admit a new key; a cache of run state must
            // keep the newest keys, so plain LRU.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(WriteRefreshesTtl)
            .build();
        MemoryCache {
            entries,
            ttl: config.ttl,
            signals: Arc::default(),
            commits: Arc::default(),
        }
    }

    /// The value at `key` as JSON text: a value, a list as an array, a counter
    /// as a number. `None` when absent or expired.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match self.entries.get(key)?.data {
            Data::Value(text) => text.to_string(),
            Data::List(list) => json::array(lock(&list).iter().map(|s| &**s)),
            Data::Counter(n) => n.load(Ordering::SeqCst).to_string(),
            Data::Log(log) => lock(&log)
                .read(key, 0, usize::MAX, None)
                .map_or_else(|_| "[]".to_owned(), |p| p.events),
        })
    }

    /// Stores `json` at `key`, replacing whatever was there. `ttl`: `None` uses
    /// the default; `Some(None)` never expires.
    pub fn set(&self, key: &str, json: &str, ttl: Option<Option<Duration>>) {
        let slot = Slot {
            data: Data::Value(Arc::from(json)),
            ttl: ttl.unwrap_or(self.ttl),
        };
        let is_new = !self.entries.contains_key(key);
        self.entries.insert(key.to_owned(), slot);
        if is_new {
            self.enforce_capacity();
        }
    }

    pub fn delete(&self, key: &str) {
        self.entries.invalidate(key);
    }

    pub fn clear(&self) {
        self.entries.invalidate_all();
        self.entries.run_pending_tasks();
    }

    pub fn list_push(&self, key: &str, json: &str) -> Result<(), CacheError> {
        self.with_shared(key, self.ttl, |list: &mut List| {
            list.push(json.into());
            Ok(())
        })
    }

    pub fn list_length(&self, key: &str) -> Result<usize, CacheError> {
        match self.entries.get(key).map(|slot| slot.data) {
            None => Ok(0),
            Some(Data::List(list)) => Ok(lock(&list).len()),
            Some(other) => Err(wrong_type(key, "a list", &other)),
        }
    }

    /// `LRANGE key from to` as the text of a JSON array.
    pub fn list_from_to(&self, key: &str, from: i64, to: i64) -> Result<String, CacheError> {
        match self.entries.get(key).map(|slot| slot.data) {
            None => Ok("[]".to_owned()),
            Some(Data::List(list)) => {
                let list = lock(&list);
                Ok(json::array(list[lrange(list.len(), from, to)].iter().map(|s| &**s)))
            }
            Some(other) => Err(wrong_type(key, "a list", &other)),
        }
    }

    /// Adds one to the counter at `key` (0 when absent) and returns the result.
    /// A value holding an integer counts as a counter, as in Redis.
    pub fn increment(&self, key: &str) -> Result<i64, CacheError> {
        let (result, created) = self.increment_holding(key);
        if created {
            self.enforce_capacity();
        }
        result
    }

    /// [`Self::increment`] without the capacity check, which must not run while
    /// a caller holds another key. Also says whether the counter was created.
    fn increment_holding(&self, key: &str) -> (Result<i64, CacheError>, bool) {
        if let Some(Data::Counter(n)) = self.get_for_write(key) {
            return (add_one(key, &n), false);
        }
        // Absent, or a value to convert: compute under the key's lock so that
        // concurrent first increments create one counter.
        let mut result = Err(CacheError::Closed);
        let mut created = false;
        self.entries.entry_by_ref(key).and_compute_with(|existing| {
            let counter = match existing.map(|e| e.into_value().data) {
                None => {
                    created = true;
                    Arc::new(AtomicI64::new(0))
                }
                Some(Data::Counter(n)) => n,
                Some(Data::Value(text)) => match text.trim().parse::<i64>() {
                    Ok(n) => Arc::new(AtomicI64::new(n)),
                    Err(_) => {
                        result = Err(CacheError::WrongType {
                            key: key.to_owned(),
                            expected: "an integer",
                            found: "a non-integer value",
                        });
                        return Op::Nop;
                    }
                },
                Some(other) => {
                    result = Err(wrong_type(key, "an integer", &other));
                    return Op::Nop;
                }
            };
            result = add_one(key, &counter);
            if result.is_err() {
                return Op::Nop;
            }
            Op::Put(Slot {
                data: Data::Counter(counter),
                ttl: self.ttl,
            })
        });
        (result, created)
    }

    /// Atomically allocates the next 0-based index from `counter_key`, stores
    /// `object_json` with `index` set to it at the end of `list_key`, and
    /// returns the index. Pushes to one list are serialised, so list order is
    /// index order.
    pub fn list_push_indexed(&self, list_key: &str, counter_key: &str, object_json: &str) -> Result<i64, CacheError> {
        if list_key == counter_key {
            return Err(CacheError::InvalidValue(
                "listPushIndexed needs two different keys for the list and its counter".into(),
            ));
        }
        let body = json::without_index(object_json)?;
        let mut counter_created = false;
        let pushed = self.with_shared(list_key, self.ttl, |list: &mut List| {
            let (next, created) = self.increment_holding(counter_key);
            counter_created = created;
            let index = next? - 1;
            list.push(json::with_index(&body, index).into_boxed_str());
            Ok(index)
        });
        if counter_created {
            self.enforce_capacity();
        }
        pushed
    }

    /// Runs `f` on the list or log at `key` (created when absent), then
    /// refreshes the key's TTL to `ttl`. When `f` fails nothing is stored.
    fn with_shared<T: Shared, R>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        f: impl FnOnce(&mut T) -> Result<R, CacheError>,
    ) -> Result<R, CacheError> {
        if let Some(data) = self.get_for_write(key) {
            return match T::view(&data) {
                Some(shared) => f(&mut lock(shared)),
                None => Err(wrong_type(key, T::kind(), &data)),
            };
        }
        // Absent: create it under the key's lock, so concurrent first writers
        // share one.
        let mut outcome = None;
        let mut created = false;
        self.entries.entry_by_ref(key).and_compute_with(|existing| {
            let data = existing.map(|e| e.into_value().data);
            let shared = match &data {
                None => {
                    created = true;
                    Arc::new(Mutex::new(T::default()))
                }
                Some(data) => match T::view(data) {
                    Some(shared) => shared.clone(),
                    None => {
                        outcome = Some(Err(wrong_type(key, T::kind(), data)));
                        return Op::Nop;
                    }
                },
            };
            let result = f(&mut lock(&shared));
            let op = match result {
                Ok(_) => Op::Put(Slot {
                    data: T::wrap(shared),
                    ttl,
                }),
                Err(_) => Op::Nop,
            };
            outcome = Some(result);
            op
        });
        if created {
            self.enforce_capacity();
        }
        outcome.expect("compute closure always runs")
    }

    /// Appends an event (a JSON object; its `index` is set here) to the topic
    /// log at `key`, wakes the topic's readers, and returns the index.
    pub fn log_append(&self, key: &str, object_json: &str, retention: &Retention) -> Result<u64, CacheError> {
        let body = json::without_index(object_json)?;
        let ttl = retention.ttl.unwrap_or(self.ttl);
        let index = self.with_shared(key, ttl, |log: &mut EventLog| {
            Ok(log.append(&body, retention.max_events))
        })?;
        self.signals.notify(key);
        Ok(index)
    }

    /// Appends events in order; returns the index of the last one.
    pub fn log_append_many(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
    ) -> Result<Option<u64>, CacheError> {
        let bodies = json::without_indices(objects)?;
        if bodies.is_empty() {
            return Ok(None);
        }
        let ttl = retention.ttl.unwrap_or(self.ttl);
        let last = self.with_shared(key, ttl, |log: &mut EventLog| {
            Ok(bodies.iter().map(|b| log.append(b, retention.max_events)).last())
        })?;
        self.signals.notify(key);
        Ok(last)
    }

    /// A run's atomic write (see [`Commit`]). Every write of run state goes
    /// through here, under one lock, so comparing the version and writing are
    /// one step; readers see the events before the state that covers them.
    pub fn run_commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, CacheError> {
        let _serialised = lock(&self.commits);
        let run = commit.run;
        let found = match self.entries.get(run.state).map(|slot| slot.data) {
            None => None,
            Some(Data::Value(text)) => version_of(&text),
            Some(other) => return Err(wrong_type(run.state, "a run state", &other)),
        };
        let topic_taken = found.is_none() && self.entries.contains_key(run.topic);
        if found != commit.expected || topic_taken {
            return Ok(CommitOutcome::Stale { found });
        }
        let last_index = self.log_append_many(run.topic, commit.events, &commit.retention)?;
        // A write refreshes a key's TTL but keeps its length; a commit may
        // change the length (a suspended run is kept until resumed).
        let ttl = commit.retention.ttl.unwrap_or(self.ttl);
        if let Some(slot) = self.entries.get(run.topic).filter(|slot| slot.ttl != ttl) {
            self.entries.insert(run.topic.to_owned(), Slot { data: slot.data, ttl });
        }
        self.set(run.state, commit.state, Some(ttl));
        // An abort request lives as long as the run it stops.
        let abort = self.get(run.abort);
        if let Some(abort) = &abort {
            self.set(run.abort, abort, Some(ttl));
        }
        // Owners are stored as JSON strings, as every value here.
        match commit.lease {
            Some(LeaseChange {
                owner,
                action: LeaseAction::Take(lease_ttl),
            }) => self.set(run.lease, &quoted(owner), Some(Some(lease_ttl))),
            Some(LeaseChange {
                owner,
                action: LeaseAction::Release,
            }) if self.get(run.lease) == Some(quoted(owner)) => self.delete(run.lease),
            _ => {}
        }
        Ok(CommitOutcome::Done { last_index, abort })
    }

    /// Records an abort request for the run; false when it has no state.
    /// Under the commit lock, so a commit either sees it or ran before it.
    pub fn run_request_abort(&self, run: RunKeys<'_>, reason_json: &str) -> bool {
        let _serialised = lock(&self.commits);
        if !self.entries.contains_key(run.state) {
            return false;
        }
        self.set(run.abort, reason_json, None);
        true
    }

    /// [`Self::log_append_many`] if the append's owner holds its lease;
    /// `None` if not. Under the lock leases change under.
    pub fn log_append_many_leased(&self, append: LeasedAppend<'_>) -> Result<Option<Option<u64>>, CacheError> {
        let _serialised = lock(&self.commits);
        if self.get(append.run.lease) != Some(quoted(append.owner)) {
            return Ok(None);
        }
        self.log_append_many(append.run.topic, append.events, append.retention)
            .map(Some)
    }

    /// Takes the lease at `key` for `owner` if nobody holds it.
    fn take_lease(&self, key: &str, owner: &str, ttl: Duration) -> bool {
        let _serialised = lock(&self.commits);
        if self.entries.contains_key(key) {
            return false;
        }
        self.set(key, &quoted(owner), Some(Some(ttl)));
        true
    }

    /// Extends the lease at `key` if `owner` still holds it.
    fn renew_lease(&self, key: &str, owner: &str, ttl: Duration) -> bool {
        let _serialised = lock(&self.commits);
        let owner = quoted(owner);
        if self.get(key).as_deref() != Some(owner.as_str()) {
            return false;
        }
        self.set(key, &owner, Some(Some(ttl)));
        true
    }

    /// Takes the lease at `key` back for `owner` after it lapsed, if nobody
    /// else holds it and the state at `state_key` still has `version`.
    fn reclaim_lease(&self, claim: LeaseClaim<'_>, state_key: &str, version: u64) -> bool {
        let _serialised = lock(&self.commits);
        let owner = quoted(claim.owner);
        let free = self.get(claim.key).is_none_or(|holder| holder == owner);
        if !free || self.get(state_key).as_deref().and_then(version_of) != Some(version) {
            return false;
        }
        self.set(claim.key, &owner, Some(Some(claim.ttl)));
        true
    }

    /// Gives the lease at `key` up if `owner` holds it.
    fn release_lease(&self, key: &str, owner: &str) {
        let _serialised = lock(&self.commits);
        if self.get(key) == Some(quoted(owner)) {
            self.delete(key);
        }
    }

    /// Every key that starts with `prefix` and ends with `suffix`.
    fn scan_keys(&self, prefix: &str, suffix: &str) -> Vec<String> {
        self.entries
            .iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(prefix) && key.ends_with(suffix))
            .map(|key| (*key).clone())
            .collect()
    }

    /// A page of the topic log (see [`PageRequest`]).
    pub fn log_read(&self, request: PageRequest<'_>) -> Result<Page, CacheError> {
        let key = request.key;
        match self.entries.get(key).map(|slot| slot.data) {
            // Cleared or expired, and not written again: nothing to check yet.
            None => Ok(Page::empty(request.from)),
            Some(Data::Log(log)) => lock(&log).read(key, request.from, request.max, request.received),
            Some(other) => Err(wrong_type(key, "a topic log", &other)),
        }
    }

    /// The index the next event of the log at `key` will get (0 when absent).
    pub fn log_next_index(&self, key: &str) -> Result<u64, CacheError> {
        match self.entries.get(key).map(|slot| slot.data) {
            None => Ok(0),
            Some(Data::Log(log)) => Ok(lock(&log).next_index()),
            Some(other) => Err(wrong_type(key, "a topic log", &other)),
        }
    }

    /// Looks `key` up for an in-place write, refreshing its TTL if it is a list
    /// or a counter (see [`WriteRefreshesTtl`]).
    fn get_for_write(&self, key: &str) -> Option<Data> {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                READ_IS_WRITE.with(|flag| flag.set(false));
            }
        }
        READ_IS_WRITE.with(|flag| flag.set(true));
        let _reset = Reset;
        self.entries.get(key).map(|slot| slot.data)
    }

    /// moka applies evictions lazily; a new key must not leave the cache above
    /// `max_size` for whoever reads next, so apply them now. Only new keys pay
    /// for this, not pushes to existing lists.
    fn enforce_capacity(&self) {
        self.entries.run_pending_tasks();
    }

    /// Number of live keys (after pending maintenance). For tests and stats.
    pub fn key_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

/// The in-memory store answers at once: each operation's future is ready.
fn now<'a, T: Send + 'a>(result: Result<T, CacheError>) -> StoreFuture<'a, T> {
    Box::pin(futures::future::ready(result))
}

impl TopicLog for MemoryCache {
    fn signals(&self) -> &Arc<Signals> {
        &self.signals
    }

    fn append(&self, key: &str, object_json: &str, retention: &Retention) -> StoreFuture<'static, u64> {
        now(self.log_append(key, object_json, retention))
    }

    fn append_many<'a>(
        &'a self,
        key: &'a str,
        objects: &'a [String],
        retention: &'a Retention,
    ) -> StoreFuture<'a, Option<u64>> {
        now(self.log_append_many(key, objects, retention))
    }

    fn read<'a>(&'a self, request: PageRequest<'a>) -> StoreFuture<'a, Page> {
        now(self.log_read(request))
    }

    fn read_now(&self, request: PageRequest<'_>) -> Option<Result<Page, CacheError>> {
        Some(self.log_read(request))
    }

    fn next_index<'a>(&'a self, key: &'a str) -> StoreFuture<'a, u64> {
        now(self.log_next_index(key))
    }

    fn delete(&self, key: &str) -> StoreFuture<'static, ()> {
        MemoryCache::delete(self, key);
        now(Ok(()))
    }

    fn synchronous(&self) -> bool {
        true
    }
}

impl RunRecords for MemoryCache {
    fn commit<'a>(&'a self, commit: &'a Commit<'a>) -> StoreFuture<'a, CommitOutcome> {
        now(self.run_commit(commit))
    }

    fn load_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>> {
        now(Ok(self.get(run.state)))
    }

    fn delete_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, ()> {
        for key in [run.state, run.topic, run.abort, run.lease] {
            MemoryCache::delete(self, key);
        }
        now(Ok(()))
    }

    fn request_abort<'a>(&'a self, run: RunKeys<'a>, reason_json: &'a str) -> StoreFuture<'a, bool> {
        now(Ok(self.run_request_abort(run, reason_json)))
    }

    fn abort_requested<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>> {
        now(Ok(self.get(run.abort)))
    }

    fn append_many_leased<'a>(&'a self, append: LeasedAppend<'a>) -> StoreFuture<'a, Option<Option<u64>>> {
        now(self.log_append_many_leased(append))
    }

    fn lease_acquire<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool> {
        now(Ok(self.take_lease(claim.key, claim.owner, claim.ttl)))
    }

    fn lease_renew<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool> {
        now(Ok(self.renew_lease(claim.key, claim.owner, claim.ttl)))
    }

    fn lease_reclaim<'a>(&'a self, claim: LeaseClaim<'a>, state_key: &'a str, version: u64) -> StoreFuture<'a, bool> {
        now(Ok(self.reclaim_lease(claim, state_key, version)))
    }

    fn lease_release<'a>(&'a self, key: &'a str, owner: &'a str) -> StoreFuture<'a, ()> {
        self.release_lease(key, owner);
        now(Ok(()))
    }

    fn lease_holder<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        // Held as the JSON string of the owner (see `quoted`).
        now(Ok(self.get(key).and_then(|held| serde_json::from_str(&held).ok())))
    }

    fn keys_matching<'a>(&'a self, prefix: &'a str, suffix: &'a str) -> StoreFuture<'a, Vec<String>> {
        now(Ok(self.scan_keys(prefix, suffix)))
    }
}

/// Adds one to a counter, as Redis's `INCR` does: never past the largest
/// 64-bit integer.
fn add_one(key: &str, counter: &AtomicI64) -> Result<i64, CacheError> {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_add(1))
        .map(|n| n + 1)
        .map_err(|_| CacheError::InvalidValue(format!("incrementing `{key}` would overflow a 64-bit integer")))
}

fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a list or log half-written
    // (each mutation is one push, then trims), so a poisoned lock is safe to reuse.
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wrong_type(key: &str, expected: &'static str, found: &Data) -> CacheError {
    CacheError::WrongType {
        key: key.to_owned(),
        expected,
        found: found.kind(),
    }
}

/// A lease owner as the JSON string this cache holds.
fn quoted(owner: &str) -> String {
    serde_json::to_string(owner).expect("strings serialise")
}
