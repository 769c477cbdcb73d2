//! What a durable run writes: a checkpoint of its state together with the
//! events that checkpoint covers, in one atomic step, guarded by the state's
//! version so that two writers of one run cannot both win.

use std::time::Duration;

use crate::log::Retention;

/// Where a run lives in a store: the key of its topic log and the keys of
/// the records beside it. A store may keep them as it likes; on Redis they
/// share the topic key's hash tag, so one script writes them together (and a
/// Cluster keeps them in one slot).
#[derive(Debug, Clone, Copy)]
pub struct RunKeys<'a> {
    /// The run's topic log (its events).
    pub topic: &'a str,
    /// Its state, written with compare-and-set.
    pub state: &'a str,
    /// Where another process asks its driver to abort it.
    pub abort: &'a str,
    /// Held by the process that drives it.
    pub lease: &'a str,
}

/// One atomic write of a run: append `events` to the run's topic log and
/// replace its state, if and only if the stored state has version `expected`.
#[derive(Debug)]
pub struct Commit<'a> {
    pub run: RunKeys<'a>,
    /// The version the stored state must have; `None`: there must be none,
    /// and no topic log either (a new run starts an empty topic).
    pub expected: Option<u64>,
    /// The version written.
    pub version: u64,
    /// The new state (JSON text).
    pub state: &'a str,
    /// Event objects (JSON text without `index`) to append, in order.
    pub events: &'a [String],
    /// TTL and size bound of both keys; `ttl: Some(None)` keeps them until deleted.
    pub retention: Retention,
    /// Takes or gives up the run's lease in the same step (a driver starting
    /// a run it just created, or stopping at its end), saving a round trip.
    pub lease: Option<LeaseChange<'a>>,
}

/// An append to a run's topic log that lands only while `owner` holds the
/// run's lease (a driver that lost it must not add to the log of the one
/// that took over), in one atomic step.
#[derive(Debug, Clone, Copy)]
pub struct LeasedAppend<'a> {
    pub run: RunKeys<'a>,
    /// Event objects (JSON text without `index`) to append, in order.
    pub events: &'a [String],
    pub retention: &'a Retention,
    pub owner: &'a str,
}

/// A process's claim on a run's lease: the lease key, who holds it (or
/// asks to), and for how long.
#[derive(Debug, Clone, Copy)]
pub struct LeaseClaim<'a> {
    pub key: &'a str,
    pub owner: &'a str,
    pub ttl: Duration,
}

/// What a [`Commit`] does to the run's lease.
#[derive(Debug, Clone, Copy)]
pub struct LeaseChange<'a> {
    pub owner: &'a str,
    pub action: LeaseAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAction {
    /// Hold it for this long (the commit's version check makes the holder unique).
    Take(Duration),
    /// Give it up, if `owner` holds it.
    Release,
}

/// How a [`Commit`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the index of the last event appended, if any, and the reason
    /// of an abort someone requested meanwhile (JSON text), if any.
    Done {
        last_index: Option<u64>,
        abort: Option<String>,
    },
    /// Nothing written: the stored state has another version (`None`: absent).
    Stale { found: Option<u64> },
}

/// The version of a stored state text, which starts `{"version":<n>,`.
pub(crate) fn version_of(state: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Versioned {
        version: u64,
    }
    serde_json::from_str::<Versioned>(state).ok().map(|v| v.version)
}
