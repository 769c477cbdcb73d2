//! The storage layer: what resumable streams and durable runs need of a
//! store, as two traits each backend implements (the in-memory cache in
//! `memory.rs`, Redis in `redis/log.rs` and `redis/runs.rs`).
//!
//! - [`TopicLog`]: topic logs, the streams readers resume: append with a
//!   gap-free index, read a page from an index, wake this process's readers.
//!   `pubsub.rs` (subscriptions) needs nothing else.
//! - [`RunRecords`]: what a durable run keeps beside its topic log: its state,
//!   written with its events by one compare-and-set, its lease, and abort
//!   requests from other processes. `agent/` needs these (and the log).
//!
//! A store that answers without waiting (in memory) returns ready futures,
//! and says so ([`TopicLog::synchronous`]), so the binding can skip the
//! thread hop. Writes are queued when called (their futures only report),
//! so calls keep the order they were made in on every backend.
//!
//! A new backend implements both traits and passes the shared contract tests
//! (`crates/core/tests/agent.rs` and `pubsub.rs` run every test on every
//! store; the vitest contracts do the same from JS): see the recipe in
//! `docs/durable-agent-design.md`.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::runs::{Commit, CommitOutcome, LeaseClaim, LeasedAppend, RunKeys};
use crate::error::CacheError;
use crate::log::{Page, PageRequest, Retention};
use crate::signal::Signals;

/// What a store's operations return.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, CacheError>>;

/// A store of topic logs and run records, shared by the pubsub and the
/// durable agents over it.
pub type Store = Arc<dyn RunRecords>;

/// Topic logs: append-only, gap-free indices from 0, readable from any index.
pub trait TopicLog: Send + Sync + 'static {
    /// Wake-ups for this process's readers, by topic key.
    fn signals(&self) -> &Arc<Signals>;

    /// Appends an event (a JSON object; its `index` is set by the store) and
    /// returns its index once stored. Queued when called.
    fn append(&self, key: &str, object_json: &str, retention: &Retention) -> StoreFuture<'static, u64>;

    /// Appends events in order; the index of the last one. An object that is
    /// not a JSON object fails the call before anything is stored.
    fn append_many<'a>(
        &'a self,
        key: &'a str,
        objects: &'a [String],
        retention: &'a Retention,
    ) -> StoreFuture<'a, Option<u64>>;

    /// A page of events (see [`PageRequest`]).
    fn read<'a>(&'a self, request: PageRequest<'a>) -> StoreFuture<'a, Page>;

    /// [`Self::read`] when it can answer without waiting; `None` otherwise.
    fn read_now(&self, _request: PageRequest<'_>) -> Option<Result<Page, CacheError>> {
        None
    }

    /// The index the topic's next event will get (0 when absent).
    fn next_index<'a>(&'a self, key: &'a str) -> StoreFuture<'a, u64>;

    /// Deletes the topic: its events and its index. Queued when called.
    fn delete(&self, key: &str) -> StoreFuture<'static, ()>;

    /// Makes sure this process hears of appends to `key` made elsewhere,
    /// from index `from` on (a reader calls it before it waits).
    fn follow(&self, _key: &str, _from: u64) {}

    /// Whether operations answer without waiting (no I/O: in memory).
    fn synchronous(&self) -> bool;
}

/// A durable run's records beside its topic log (see `cache/runs.rs`).
pub trait RunRecords: TopicLog {
    /// One atomic write of a run's state and events (see [`Commit`]).
    fn commit<'a>(&'a self, commit: &'a Commit<'a>) -> StoreFuture<'a, CommitOutcome>;

    /// A run's stored state, `None` when absent.
    fn load_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>>;

    /// Deletes a run: its state, topic, abort request and lease.
    fn delete_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, ()>;

    /// Records a request to abort a run (`reason_json`), if its state exists.
    fn request_abort<'a>(&'a self, run: RunKeys<'a>, reason_json: &'a str) -> StoreFuture<'a, bool>;

    /// The reason of a requested abort of a run (JSON text), if any.
    fn abort_requested<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>>;

    /// [`TopicLog::append_many`] if the append's owner holds its lease, in
    /// one atomic step; `None` (nothing appended) if not.
    fn append_many_leased<'a>(&'a self, append: LeasedAppend<'a>) -> StoreFuture<'a, Option<Option<u64>>>;

    /// Takes the lease for the claim's owner, if nobody holds it.
    fn lease_acquire<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool>;

    /// Extends the lease if the claim's owner still holds it.
    fn lease_renew<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool>;

    /// Takes the lease back for the claim's owner after it lapsed, if nobody
    /// else holds it and the run state at `state_key` still has `version`.
    fn lease_reclaim<'a>(&'a self, claim: LeaseClaim<'a>, state_key: &'a str, version: u64) -> StoreFuture<'a, bool>;

    /// Gives the lease at `key` up if `owner` holds it.
    fn lease_release<'a>(&'a self, key: &'a str, owner: &'a str) -> StoreFuture<'a, ()>;

    /// Who holds the lease at `key`, if anyone.
    fn lease_holder<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Every key that starts with `prefix` and ends with `suffix`.
    fn keys_matching<'a>(&'a self, prefix: &'a str, suffix: &'a str) -> StoreFuture<'a, Vec<String>>;
}
