//! How a run being driven is steered from outside its driver: its parts and
//! an abort from this process (`RunControl`), an abort requested by another
//! process, and the lease that tells other processes it is driven.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use super::run::RunStore;
use crate::cache::runs::LeaseClaim;
use crate::error::CacheError;

/// The handle the embedder keeps for a run being driven.
#[derive(Clone)]
pub struct RunControl {
    parts: mpsc::UnboundedSender<String>,
    cancel: Arc<watch::Sender<Option<String>>>,
    release: Arc<watch::Sender<bool>>,
}

impl RunControl {
    /// A control and the inbox a driver listens to. Parts and an abort sent
    /// before the driver starts wait for it.
    pub fn new() -> (RunControl, Inbox) {
        let (parts_tx, parts) = mpsc::unbounded_channel();
        let (cancel_tx, cancel) = watch::channel(None);
        let (release_tx, release) = watch::channel(false);
        let control = RunControl {
            parts: parts_tx,
            cancel: Arc::new(cancel_tx),
            release: Arc::new(release_tx),
        };
        (control, Inbox { parts, cancel, release })
    }

    /// Hands the driver a stream part (JSON text) of the model step in progress.
    pub fn emit(&self, part_json: String) -> bool {
        self.parts.send(part_json).is_ok()
    }

    /// Stops the run: pending callbacks are abandoned, `abort` is published.
    pub fn abort(&self, reason: Option<String>) {
        self.cancel.send_replace(Some(reason.unwrap_or_default()));
    }

    /// Stops driving the run without ending it (its process is shutting
    /// down, or its store is being closed): pending callbacks are abandoned,
    /// nothing is published, and the lease is given up, so that another
    /// process can recover the run from its last checkpoint at once.
    pub fn release(&self) {
        self.release.send_replace(true);
    }
}

/// What the driver listens to: the other end of a [`RunControl`].
pub struct Inbox {
    pub(super) parts: mpsc::UnboundedReceiver<String>,
    pub(super) cancel: watch::Receiver<Option<String>>,
    pub(super) release: watch::Receiver<bool>,
}

/// This driver's hold on its run (see `RunStore::lease_key`).
pub(super) struct Lease {
    pub(super) owner: String,
    pub(super) ttl: Duration,
    pub(super) renewed: Mutex<Instant>,
    /// Renew at the next [`Lease::keep`], however recent the last renewal.
    pub(super) due: AtomicBool,
}

impl Lease {
    /// Makes the next [`Self::keep`] renew, however recently it did: a write
    /// just found the lease gone.
    pub(super) fn due_now(&self) {
        self.due.store(true, Ordering::SeqCst);
    }

    /// Renews the lease once a third of it has passed; false when it was
    /// lost. A lease that lapsed (the store was away, or this process
    /// stalled, for longer than the lease) is taken back if nobody took the
    /// run meanwhile: the run's state still has `version`, the last this
    /// driver wrote (a driver that takes a run over writes its own first).
    pub(super) async fn keep(&self, run: &RunStore, version: u64) -> Result<bool, CacheError> {
        let due = self.due.swap(false, Ordering::SeqCst) || lock(&self.renewed).elapsed() >= self.ttl / 3;
        if !due {
            return Ok(true);
        }
        // The lease runs from when the renewal left, at the latest.
        let asked = Instant::now();
        let claim = LeaseClaim {
            key: &run.lease_key,
            owner: &self.owner,
            ttl: self.ttl,
        };
        let kept =
            run.store.lease_renew(claim).await? || run.store.lease_reclaim(claim, &run.state_key, version).await?;
        if kept {
            *lock(&self.renewed) = asked;
        }
        Ok(kept)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A lease owner id no other driver has: this process, now, and a counter.
pub fn new_lease_owner() -> String {
    static DRIVERS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}:{nanos}:{}",
        std::process::id(),
        DRIVERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// Why a wait for a callback ended early.
pub(super) enum Stop {
    /// Aborted here or by request ("" without a reason).
    Abort(String),
    /// The lease lapsed and someone else took it: another process drives now.
    LeaseLost,
    /// Released by this process (see [`RunControl::release`]).
    Release,
}

/// How often a driver waiting for a callback looks for an abort requested by
/// another process (it also sees one at every checkpoint).
const ABORT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Resolves once the run is aborted, here (through its [`RunControl`]) or by
/// request from elsewhere, or once its lease is lost; keeps the lease
/// meanwhile (the run's state has `version`), looking every [`ABORT_POLL`] or
/// every third of the lease, whichever is sooner.
pub(super) async fn stop_requested(
    mut cancel: watch::Receiver<Option<String>>,
    mut release: watch::Receiver<bool>,
    run: RunStore,
    lease: Option<Arc<Lease>>,
    version: u64,
) -> Stop {
    let every = lease.as_ref().map_or(ABORT_POLL, |lease| ABORT_POLL.min(lease.ttl / 3));
    let here = async {
        loop {
            if let Some(reason) = cancel.borrow_and_update().clone() {
                return reason;
            }
            // Without its handle nobody here can abort it any more.
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    let elsewhere = async {
        loop {
            tokio::time::sleep(every).await;
            // A failing store is noticed by the next checkpoint, not here.
            if let Ok(Some(reason)) = run.abort_requested().await {
                return Stop::Abort(reason.unwrap_or_default());
            }
            // A store that is away is ridden out: the next checkpoint waits for it.
            if let Some(lease) = &lease {
                if let Ok(false) = lease.keep(&run, version).await {
                    return Stop::LeaseLost;
                }
            }
        }
    };
    tokio::select! {
        reason = here => Stop::Abort(reason),
        // Without its handle nobody here can release it any more.
        Ok(_) = release.wait_for(|released| *released) => Stop::Release,
        stop = elsewhere => stop,
    }
}
