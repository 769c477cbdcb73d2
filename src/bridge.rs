//! The completion bridge: how async native work reports back to JS.
//!
//! napi-rs's `async fn` creates a promise *and a threadsafe function* per call
//! (a libuv handle each), which made one Redis call cost ~50 µs more than the
//! same call through node-redis and capped concurrent calls below it. Instead,
//! JS creates the promise itself and submits work with a plain synchronous call
//! carrying a request id; the work runs on tokio, and each result is appended
//! to one JSON batch. Only the first result of a batch wakes JS (through one
//! long-lived threadsafe function); JS then takes the whole batch with one
//! synchronous call and one `JSON.parse`, values included (they are JSON text
//! already, so they are embedded as they are).
//!
//! Submitting only queues the work; JS calls `flush` once per tick (a
//! microtask), which runs everything queued in that tick as one tokio task.
//! Commands for Redis then reach the shared connection together and leave in
//! one write, instead of one task, one wake-up and one write per call.
//!
//! Batch format, parsed by `ts/bridge.ts`: `[[id,"v",<json>],[id,"n",<number>],
//! [id,"u"],[id,"a"],[id,"e","[CODE] message"],...]` for a JSON value, a number,
//! no value, an absent value, and an error.

use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;

use crate::error::Coded;

/// The JS callback the bridge calls when a batch has results: `() => void`.
pub type OnReady = ThreadsafeFunction<(), (), (), Status, false, true>;

/// What a piece of work produced.
pub enum Reply {
    /// JSON text, embedded in the batch as it is.
    Json(String),
    /// No value stored (JS sees `undefined`).
    Absent,
    Number(i64),
    Unit,
}

#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

/// Work reports its error already formatted as `[CODE] message`.
type Work = Pin<Box<dyn Future<Output = Result<Reply, String>> + Send>>;

struct Inner {
    /// Work submitted since the last flush.
    queued: Mutex<Vec<(u32, Work)>>,
    /// The open batch: empty, or `[` followed by entries.
    batch: Mutex<String>,
    /// Weak (does not keep Node alive) except while JS has calls in flight: the
    /// facade calls `hold`/`release` around them.
    on_ready: Mutex<OnReady>,
}

impl Bridge {
    pub fn new(on_ready: OnReady) -> Self {
        Bridge {
            inner: Arc::new(Inner {
                queued: Mutex::new(Vec::new()),
                batch: Mutex::new(String::new()),
                on_ready: Mutex::new(on_ready),
            }),
        }
    }

    /// Queues `work`, to report its outcome under `id`; it starts at the next
    /// [`Self::flush`].
    pub fn submit<F, E>(&self, id: u32, work: F)
    where
        F: Future<Output = Result<Reply, E>> + Send + 'static,
        E: Coded,
    {
        let work = work.map(|outcome| outcome.map_err(|e| format!("[{}] {e}", e.code())));
        lock(&self.inner.queued).push((id, Box::pin(work)));
    }

    /// Starts everything queued, concurrently, in one task. A panic in one
    /// piece of work is reported as its `ERR_INTERNAL` error, never lost.
    pub fn flush(&self) {
        let queued = std::mem::take(&mut *lock(&self.inner.queued));
        if queued.is_empty() {
            return;
        }
        let inner = self.inner.clone();
        napi::bindgen_prelude::spawn(async move {
            let mut running: FuturesUnordered<_> = queued
                .into_iter()
                .map(|(id, work)| async move {
                    let outcome = match AssertUnwindSafe(work).catch_unwind().await {
                        Ok(Ok(reply)) => Ok(reply),
                        Ok(Err(message)) => Err(message),
                        Err(panic) => Err(format!(
                            "[ERR_INTERNAL] panic in native code: {}",
                            panic_message(&panic)
                        )),
                    };
                    (id, outcome)
                })
                .collect();
            while let Some((id, outcome)) = running.next().await {
                inner.complete(id, outcome);
            }
        });
    }

    /// The finished batch as JSON text, or `None` when there is nothing.
    pub fn take(&self) -> Option<String> {
        let mut batch = lock(&self.inner.batch);
        if batch.is_empty() {
            return None;
        }
        let mut taken = std::mem::take(&mut *batch);
        taken.push(']');
        Some(taken)
    }

    /// Keeps Node alive until [`Self::release`]: JS has calls in flight.
    // napi-rs deprecates refer/unref in favour of clone, which counts threads
    // (napi_acquire_threadsafe_function); we need the event-loop reference,
    // which only napi_ref/unref_threadsafe_function set.
    #[allow(deprecated)]
    pub fn hold(&self, env: &Env) -> napi::Result<()> {
        lock(&self.inner.on_ready).refer(env)
    }

    #[allow(deprecated)]
    pub fn release(&self, env: &Env) -> napi::Result<()> {
        lock(&self.inner.on_ready).unref(env)
    }
}

impl Inner {
    fn complete(&self, id: u32, outcome: Result<Reply, String>) {
        let first = {
            let mut batch = lock(&self.batch);
            let first = batch.is_empty();
            batch.push(if first { '[' } else { ',' });
            // Writing to a String cannot fail.
            let _ = match outcome {
                Ok(Reply::Json(json)) => write!(batch, "[{id},\"v\",{json}]"),
                Ok(Reply::Absent) => write!(batch, "[{id},\"a\"]"),
                Ok(Reply::Number(n)) => write!(batch, "[{id},\"n\",{n}]"),
                Ok(Reply::Unit) => write!(batch, "[{id},\"u\"]"),
                Err(message) => {
                    let quoted = serde_json::to_string(&message).unwrap_or_else(|_| "\"\"".to_owned());
                    write!(batch, "[{id},\"e\",{quoted}]")
                }
            };
            first
        };
        if first {
            // Fails only while Node shuts down, when nobody waits any more.
            let _ = lock(&self.on_ready).call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// The JS-facing handle of a bridge (`native.bridge`): what `ts/bridge.ts`
/// calls, shared by every native class that reports through a bridge.
#[napi]
pub struct NativeBridge {
    bridge: Bridge,
}

impl From<&Bridge> for NativeBridge {
    fn from(bridge: &Bridge) -> Self {
        NativeBridge { bridge: bridge.clone() }
    }
}

#[napi]
impl NativeBridge {
    /// Starts the work submitted since the last flush (JS calls this once per tick).
    #[napi(catch_unwind)]
    pub fn flush(&self) {
        self.bridge.flush();
    }

    /// The results finished since the last call, as one JSON batch, or `null`.
    #[napi(catch_unwind)]
    pub fn take_completions(&self) -> Option<String> {
        self.bridge.take()
    }

    /// Keeps Node alive while calls are in flight.
    #[napi(catch_unwind)]
    pub fn hold(&self, env: Env) -> napi::Result<()> {
        self.bridge.hold(&env)
    }

    /// Lets Node exit again.
    #[napi(catch_unwind)]
    pub fn release(&self, env: Env) -> napi::Result<()> {
        self.bridge.release(&env)
    }
}
