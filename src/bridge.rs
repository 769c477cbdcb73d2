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
//! The order of calls is not the bridge's concern: a Redis call is queued in
//! the core when it is made (see [`queued_now`]), before its work is
//! submitted here.
//!
//! In memory there is nothing to wait for but other in-process work, so a
//! bridge over the in-memory store runs its work on the JS thread instead
//! (`Bridge::new_local`): `flush` polls it at once, a wake-up asks JS (through
//! the same threadsafe function) to call `take_completions`, which polls what
//! was woken before it returns the batch. A run's steps, its readers and its
//! callbacks then never wait for a hop to the runtime thread and back (~40 µs
//! each on a 2-core VM; a one-step run had four).
//!
//! Batch format, parsed by `ts/bridge.ts`: a JSON array of entries, each told
//! apart by its length alone: `[id,<json>]` a value (JSON text or a number),
//! `[id]` no value (JS sees `undefined`), `[id,null,"[CODE] message"]` an
//! error.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Wake, Waker};

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

/// An outcome, its error already formatted as `[CODE] message`.
type Outcome = Result<Reply, String>;

/// A piece of work: it reports the outcome of one call, or of each call of a
/// batch, by request id. A panic inside is reported, never lost.
type Work = Pin<Box<dyn Future<Output = Vec<(u32, Outcome)>> + Send>>;

struct Inner {
    /// Work submitted since the last flush.
    queued: Mutex<Vec<Work>>,
    /// `Some`: work runs on the JS thread (see the module docs).
    local: Option<Local>,
    /// The open batch: empty, or `[` followed by entries.
    batch: Mutex<String>,
    /// Weak (does not keep Node alive) except while JS has calls in flight: the
    /// facade calls `hold`/`release` around them.
    on_ready: Mutex<OnReady>,
}

impl Bridge {
    /// A bridge whose work runs on the tokio runtime.
    pub fn new(on_ready: OnReady) -> Self {
        Self::build(on_ready, None)
    }

    /// A bridge whose work runs on the JS thread: for work that never waits
    /// on I/O (the in-memory store).
    pub fn new_local(on_ready: OnReady) -> Self {
        Self::build(on_ready, Some(Local::default()))
    }

    fn build(on_ready: OnReady, local: Option<Local>) -> Self {
        Bridge {
            inner: Arc::new(Inner {
                queued: Mutex::new(Vec::new()),
                local,
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
        let work = AssertUnwindSafe(work).catch_unwind().map(move |outcome| {
            vec![(
                id,
                match outcome {
                    Ok(outcome) => outcome.map_err(|e| e.batched()),
                    Err(panic) => Err(panic_outcome(&panic)),
                },
            )]
        });
        lock(&self.inner.queued).push(Box::pin(work));
    }

    /// Starts everything queued, concurrently, in one task.
    pub fn flush(&self) {
        let queued = std::mem::take(&mut *lock(&self.inner.queued));
        if queued.is_empty() {
            return;
        }
        if let Some(local) = &self.inner.local {
            {
                let mut tasks = lock(&local.tasks);
                let mut woken = lock(&local.woken);
                for work in queued {
                    let task = local.next_task.fetch_add(1, Ordering::Relaxed);
                    tasks.insert(task, work);
                    woken.push(task);
                }
            }
            self.inner.poll_local();
            return;
        }
        let inner = self.inner.clone();
        napi::bindgen_prelude::spawn(async move {
            let mut running: FuturesUnordered<Work> = queued.into_iter().collect();
            while let Some(outcomes) = running.next().await {
                inner.complete(outcomes);
            }
        });
    }

    /// The finished batch as JSON text, or `None` when there is nothing. A
    /// local bridge first polls the work woken since it last looked.
    pub fn take(&self) -> Option<String> {
        self.inner.poll_local();
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
    /// Polls the local work that was woken, on the calling (JS) thread, inside
    /// the runtime's context (for timers). Completed work joins the batch.
    fn poll_local(self: &Arc<Self>) {
        let Some(local) = &self.local else { return };
        loop {
            // Cleared first: a wake-up during these polls asks again.
            local.scheduled.store(false, Ordering::SeqCst);
            let woken = std::mem::take(&mut *lock(&local.woken));
            if woken.is_empty() {
                return;
            }
            for task in woken {
                // Taken out while polled: a wake-up from inside only marks it.
                let Some(mut work) = lock(&local.tasks).remove(&task) else {
                    continue;
                };
                let waker = Waker::from(Arc::new(LocalWaker {
                    task,
                    inner: Arc::downgrade(self),
                }));
                // Work catches its own panics (see `submit`).
                let polled = napi::bindgen_prelude::within_runtime_if_available(|| {
                    work.as_mut().poll(&mut Context::from_waker(&waker))
                });
                match polled {
                    Poll::Pending => {
                        lock(&local.tasks).insert(task, work);
                    }
                    Poll::Ready(outcomes) => self.complete(outcomes),
                }
            }
        }
    }

    fn complete(&self, outcomes: Vec<(u32, Outcome)>) {
        let first = {
            let mut batch = lock(&self.batch);
            let first = batch.is_empty();
            for (n, (id, outcome)) in outcomes.into_iter().enumerate() {
                batch.push(if first && n == 0 { '[' } else { ',' });
                // Writing to a String cannot fail.
                let _ = match outcome {
                    Ok(Reply::Json(json)) => write!(batch, "[{id},{json}]"),
                    Ok(Reply::Number(n)) => write!(batch, "[{id},{n}]"),
                    Ok(Reply::Absent | Reply::Unit) => write!(batch, "[{id}]"),
                    Err(message) => {
                        let quoted = serde_json::to_string(&message).unwrap_or_else(|_| "\"\"".to_owned());
                        write!(batch, "[{id},null,{quoted}]")
                    }
                };
            }
            first && !batch.is_empty()
        };
        if first {
            // Fails only while Node shuts down, when nobody waits any more.
            let _ = lock(&self.on_ready).call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Work of a local bridge, polled on the JS thread.
#[derive(Default)]
struct Local {
    tasks: Mutex<HashMap<u64, Work>>,
    /// Tasks to poll at the next `take`.
    woken: Mutex<Vec<u64>>,
    next_task: AtomicU64,
    /// Whether JS was already asked to call `take`.
    scheduled: AtomicBool,
}

/// Wakes a piece of local work: marks it, and asks JS for a `take` (once until
/// it comes). Works from any thread (a timer fires on the runtime's).
struct LocalWaker {
    task: u64,
    inner: Weak<Inner>,
}

impl Wake for LocalWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(inner) = self.inner.upgrade() else { return };
        let Some(local) = &inner.local else { return };
        lock(&local.woken).push(self.task);
        if !local.scheduled.swap(true, Ordering::SeqCst) {
            // Fails only while Node shuts down, when nobody waits any more.
            let _ = lock(&inner.on_ready).call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Runs `call` (a core call that queues its work when called and returns
/// the future of its outcome) inside the runtime: queueing may start the
/// cache's dispatcher task, and this runs on the JS thread.
pub fn queued_now<T>(call: impl FnOnce() -> T) -> T {
    napi::bindgen_prelude::within_runtime_if_available(call)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn panic_outcome(panic: &Box<dyn std::any::Any + Send>) -> String {
    format!("[ERR_INTERNAL] panic in native code: {}", panic_message(panic))
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
