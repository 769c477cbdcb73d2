//! `NativePubSub` and `NativeSubscription`: topic logs and their readers over
//! either cache. In memory, publishing and reading ready events are
//! synchronous calls (no thread hop); waits and Redis work go through the
//! completion bridge.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::Result;
use durable_agent_core::cache::memory::ttl_from_ms;
use durable_agent_core::{CacheError, Page, Retention, Store, Subscription};
use futures::FutureExt as _;
use napi::bindgen_prelude::{ClassInstance, Either};
use napi_derive::napi;
use tokio::sync::Notify;

use crate::bridge::{queued_now, Bridge, NativeBridge, OnReady, Reply};
use crate::error::{Coded, IntoNapi};
use crate::memory_cache::NativeMemoryCache;
use crate::redis_cache::NativeRedisCache;

/// Events per page read from a store.
const PAGE: usize = 1024;

#[napi(object)]
pub struct NativePubSubOptions {
    /// Prepended to topic names to form their keys in the cache.
    pub key_prefix: String,
    /// Topic TTL in ms, refreshed by every publish; 0 = never; absent = the cache's default.
    pub ttl_ms: Option<f64>,
    /// Keep at most this many of a topic's newest events.
    pub max_events: Option<f64>,
}

#[napi]
pub struct NativePubSub {
    pub(crate) store: Store,
    pub(crate) prefix: String,
    pub(crate) retention: Retention,
    pub(crate) bridge: Bridge,
}

fn retention(options: &NativePubSubOptions) -> std::result::Result<Retention, CacheError> {
    let ttl = options
        .ttl_ms
        .map(|ms| ttl_from_ms("retention.ttlMs", ms))
        .transpose()?;
    let max_events = match options.max_events {
        None => None,
        Some(n) if n.is_finite() && n >= 1.0 && n.fract() == 0.0 => Some(n as u64),
        Some(n) => {
            return Err(CacheError::InvalidOption {
                option: "retention.maxEvents",
                reason: format!("must be a positive integer, got {n}"),
            })
        }
    };
    Ok(Retention { ttl, max_events })
}

#[napi]
impl NativePubSub {
    /// The bridge this object reports through (see `bridge.rs`).
    #[napi(getter)]
    pub fn bridge(&self) -> NativeBridge {
        NativeBridge::from(&self.bridge)
    }

    /// Topic logs in `cache`, either kind.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "cache: NativeMemoryCache | NativeRedisCache, options: NativePubSubOptions, onReady: () => void"
    )]
    pub fn new(
        cache: Either<ClassInstance<NativeMemoryCache>, ClassInstance<NativeRedisCache>>,
        options: NativePubSubOptions,
        on_ready: OnReady,
    ) -> Result<Self> {
        let store: Store = match cache {
            Either::A(memory) => Arc::new(memory.cache().clone()),
            Either::B(redis) => Arc::new(redis.cache().clone()),
        };
        // In memory nothing waits on I/O: work runs on the JS thread.
        let bridge = if store.synchronous() {
            Bridge::new_local(on_ready)
        } else {
            Bridge::new(on_ready)
        };
        Ok(NativePubSub {
            store,
            retention: retention(&options).into_napi()?,
            prefix: options.key_prefix,
            bridge,
        })
    }

    fn key(&self, topic: &str) -> String {
        format!("{}{topic}", self.prefix)
    }

    /// How many topics of this store have readers in this process.
    #[napi(getter)]
    pub fn topics_read(&self) -> u32 {
        self.store.signals().keys().len() as u32
    }

    /// Whether publishing and ready reads answer synchronously (in memory).
    #[napi(getter)]
    pub fn synchronous(&self) -> bool {
        self.store.synchronous()
    }

    /// In memory: stores the event and returns its index at once.
    #[napi(catch_unwind)]
    pub fn publish_now(&self, topic: String, json: String) -> Result<i64> {
        // A synchronous store's future is ready as it is made.
        match self
            .store
            .append(&self.key(&topic), &json, &self.retention)
            .now_or_never()
        {
            Some(appended) => appended.map(|i| i as i64).into_napi(),
            None => Err(napi::Error::new("ERR_INTERNAL", "publishNow needs a synchronous store")),
        }
    }

    /// Stores the event; reports its index. Queued now: publishes keep
    /// the order they were made in, and those made together share Redis
    /// pipelines (see the core's `cache/redis/queue.rs`).
    #[napi(catch_unwind)]
    pub fn publish(&self, id: u32, topic: String, json: String) {
        let appended = queued_now(|| self.store.append(&self.key(&topic), &json, &self.retention));
        self.bridge
            .submit(id, async move { appended.await.map(|i| Reply::Number(i as i64)) });
    }

    /// Reports every retained event from `offset` (absent: from the oldest
    /// retained one) as one JSON array.
    #[napi(catch_unwind)]
    pub fn history(&self, id: u32, topic: String, offset: Option<i64>) -> Result<()> {
        let mut sub = Subscription::new(self.store.clone(), self.key(&topic), start(offset)?);
        self.bridge.submit::<_, CacheError>(id, async move {
            let mut pages: Vec<Page> = Vec::new();
            while let Some(page) = sub.read_available(PAGE).await? {
                pages.push(page);
            }
            Ok(Reply::Json(join_pages(&pages)))
        });
        Ok(())
    }

    /// Reports the index the topic's next event will get.
    #[napi(catch_unwind)]
    pub fn next_index(&self, id: u32, topic: String) {
        let (store, key) = (self.store.clone(), self.key(&topic));
        self.bridge.submit(id, async move {
            store.next_index(&key).await.map(|i| Reply::Number(i as i64))
        });
    }

    /// Deletes the topic's events and index.
    #[napi(catch_unwind)]
    pub fn clear_topic(&self, id: u32, topic: String) {
        let deleted = queued_now(|| self.store.delete(&self.key(&topic)));
        self.bridge
            .submit(id, async move { deleted.await.map(|()| Reply::Unit) });
    }

    /// A reader of `topic` from index `offset` (absent: from the oldest
    /// retained event). `afterId`: the `id` of the event at `offset - 1`,
    /// which the reader received before; its first read checks it is still
    /// there (`ERR_TOPIC_REWRITTEN` if not).
    #[napi(catch_unwind)]
    pub fn subscribe(
        &self,
        topic: String,
        offset: Option<i64>,
        after_id: Option<String>,
    ) -> Result<NativeSubscription> {
        let (store, key) = (self.store.clone(), self.key(&topic));
        let sub = match (start(offset)?, after_id) {
            (Some(from), Some(id)) if from > 0 => Subscription::after_event(store, key, from - 1, id),
            (_, Some(_)) => {
                return Err(Coded::thrown(&CacheError::InvalidValue(
                    "a reader resuming after an event needs the offset after it".into(),
                )))
            }
            (from, None) => Subscription::new(store, key, from),
        };
        Ok(NativeSubscription {
            inner: Arc::new(tokio::sync::Mutex::new(Some(sub))),
            bridge: self.bridge.clone(),
            cancel: Arc::new(Notify::new()),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }
}

fn start(offset: Option<i64>) -> Result<Option<u64>> {
    offset
        .map(|o| {
            u64::try_from(o)
                .map_err(|_| Coded::thrown(&CacheError::InvalidValue(format!("offset must be >= 0, got {o}"))))
        })
        .transpose()
}

/// Concatenates pages' JSON arrays (never empty ones) into one.
fn join_pages(pages: &[Page]) -> String {
    durable_agent_core::json::array(pages.iter().map(|p| &p.events[1..p.events.len() - 1]))
}

/// One reader's position in a topic. Pages never overlap and never skip.
#[napi]
pub struct NativeSubscription {
    /// `None` once closed: the reader and its topic signal are released then,
    /// not when JS collects this object.
    inner: Arc<tokio::sync::Mutex<Option<Subscription>>>,
    bridge: Bridge,
    cancel: Arc<Notify>,
    closed: Arc<AtomicBool>,
}

#[napi]
impl NativeSubscription {
    /// The next page (a JSON array) if events are ready now, else `null`.
    #[napi(catch_unwind)]
    pub fn try_next(&self, max: u32) -> Result<Option<String>> {
        // A `next` in flight holds the lock; then nothing is ready here.
        let Ok(mut guard) = self.inner.try_lock() else {
            return Ok(None);
        };
        let Some(sub) = guard.as_mut() else {
            return Ok(None);
        };
        // Inside the runtime: taking a page read ahead starts the next read.
        let page = napi::bindgen_prelude::within_runtime_if_available(|| sub.try_next(max as usize));
        Ok(page.into_napi()?.map(|page| page.events))
    }

    /// Reports the next page of what is stored now, or no value when the
    /// reader has caught up (or is closed). Never waits for new events.
    #[napi(catch_unwind)]
    pub fn read_available(&self, id: u32, max: u32) {
        let (inner, closed) = (self.inner.clone(), self.closed.clone());
        self.bridge.submit::<_, CacheError>(id, async move {
            let mut guard = inner.lock().await;
            let Some(sub) = guard.as_mut().filter(|_| !closed.load(Ordering::SeqCst)) else {
                *guard = None;
                return Ok(Reply::Absent);
            };
            let page = sub.read_available(max as usize).await;
            // Closed while reading: release the reader now (its close() could
            // not, the lock was ours), and report nothing.
            if closed.load(Ordering::SeqCst) {
                *guard = None;
                return Ok(Reply::Absent);
            }
            Ok(match page? {
                Some(page) => Reply::Json(page.events),
                None => Reply::Absent,
            })
        });
    }

    /// Reports the next page, waiting for events if needed; reports no value
    /// once closed.
    #[napi(catch_unwind)]
    pub fn next(&self, id: u32, max: u32) {
        let (inner, cancel, closed) = (self.inner.clone(), self.cancel.clone(), self.closed.clone());
        self.bridge.submit(id, async move {
            let mut guard = inner.lock().await;
            let Some(sub) = guard.as_mut().filter(|_| !closed.load(Ordering::SeqCst)) else {
                *guard = None;
                return Ok(Reply::Absent);
            };
            let page = tokio::select! {
                page = sub.next(max as usize) => Some(page),
                () = cancel.notified() => None,
            };
            match page {
                // Closed while reading: release the reader now, report nothing.
                Some(_) if closed.load(Ordering::SeqCst) => {
                    *guard = None;
                    Ok(Reply::Absent)
                }
                Some(page) => page.map(|p| Reply::Json(p.events)),
                None => {
                    *guard = None;
                    Ok(Reply::Absent)
                }
            }
        });
    }

    /// Ends the reader and releases it: a pending `next` reports no value,
    /// later ones too.
    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        match self.inner.try_lock() {
            Ok(mut guard) => *guard = None,
            Err(_) => {
                // A read holds the reader: wake it if it waits for events, and
                // release the reader once it lets go (it may already have
                // checked `closed` and be returning a page).
                self.cancel.notify_one();
                let inner = self.inner.clone();
                napi::bindgen_prelude::spawn(async move {
                    *inner.lock().await = None;
                });
            }
        }
    }
}
