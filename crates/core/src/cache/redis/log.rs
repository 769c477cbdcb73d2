//! Topic logs on Redis Streams, and the tailer that wakes this process's
//! readers when another process appends.
//!
//! A topic is one stream. `XADD key 0-* ...` lets Redis pick the id `0-<n>`
//! with `n` one past the last: the index is `n - 1`, allocated atomically by
//! Redis itself in one command, gap-free, and kept across trimming (a stream
//! remembers its last id). History and live reads are the same query
//! (`XRANGE` from an index), so there is no buffer-and-deduplicate handoff.
//! One stream is one key, so a topic never spans Cluster slots.
//!
//! On a single Redis, the tailer below hears of other processes' appends with
//! a blocking `XREAD`. On a Cluster a multi-key `XREAD` cannot span slots, so
//! every append also announces itself on the topic's sharded channel, in the
//! same script, and `cluster_tailer.rs` listens there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;

use super::{Inner, RedisCache};
use crate::error::CacheError;
use crate::json;
use crate::log::{check_received, fingerprint, Page, Received, Retention};

/// The stream field holding the event's JSON text (without `index`).
pub(super) const FIELD: &str = "e";
/// How long one blocking read of the tailer waits before it looks again.
const TAIL_BLOCK_MS: u64 = 2_000;

/// Appends events and announces the last id on the stream's sharded channel
/// (named like the stream, so in its slot), atomically: a reader elsewhere
/// never misses the wake-up of an acknowledged append.
/// KEYS: stream. ARGV: MAXLEN (0 = none), TTL in ms (0 = none), then the
/// event bodies. Returns the last id.
///
/// A script is not undone when a command fails halfway, so the ACL check on
/// the channel comes first: an append that cannot be announced stores nothing.
pub(super) const APPEND_NOTIFY_SCRIPT: &str = r#"
if not redis.acl_check_cmd('SPUBLISH', KEYS[1], '') then
  return redis.error_reply('NOPERM this user may not publish to the channel ' .. KEYS[1])
end
local last = ''
local maxlen = tonumber(ARGV[1])
for i = 3, #ARGV do
  if maxlen > 0 then
    last = redis.call('XADD', KEYS[1], 'MAXLEN', '=', maxlen, '0-*', 'e', ARGV[i])
  else
    last = redis.call('XADD', KEYS[1], '0-*', 'e', ARGV[i])
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
redis.call('SPUBLISH', KEYS[1], last)
return last
"#;

impl RedisCache {
    /// Appends an event (a JSON object; `index` is set from the stream id),
    /// refreshes the topic's TTL, and returns the index. One round trip.
    pub async fn log_append(&self, key: &str, object_json: &str, retention: &Retention) -> Result<u64, CacheError> {
        let mut outcomes = self.log_append_each(&[(key, object_json)], retention).await;
        outcomes.pop().expect("one outcome per append")
    }

    /// Appends events, each on its own: one outcome per `(key, object JSON)`,
    /// in order. Why together: calls made in one tick share one round trip,
    /// and a topic's TTL is refreshed once after its last event of the batch
    /// instead of once per event (at 64 publishes in flight, the `PEXPIRE`s
    /// cost Redis as much as the `XADD`s). Events of one topic are appended in
    /// the order given; an event that is not a JSON object fails alone.
    pub async fn log_append_each<K: AsRef<str>, O: AsRef<str>>(
        &self,
        appends: &[(K, O)],
        retention: &Retention,
    ) -> Vec<Result<u64, CacheError>> {
        let mut outcomes: Vec<Option<Result<u64, CacheError>>> = Vec::with_capacity(appends.len());
        // Valid events grouped by topic, topics in order of first appearance.
        let mut topics: Vec<TopicAppends<'_>> = Vec::new();
        let mut topic_of: HashMap<&str, usize> = HashMap::new();
        for (position, (key, object)) in appends.iter().enumerate() {
            match json::without_index(object.as_ref()) {
                Ok(body) => {
                    let key = key.as_ref();
                    let topic = *topic_of.entry(key).or_insert_with(|| {
                        topics.push(TopicAppends {
                            key,
                            events: Vec::new(),
                        });
                        topics.len() - 1
                    });
                    topics[topic].events.push(Appending { position, body });
                    outcomes.push(None);
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        self.append_topics(&topics, retention, &mut outcomes).await;
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every append has an outcome"))
            .collect()
    }

    /// Appends each topic's events (already without `index`), writing each
    /// one's outcome at its `position` in `outcomes`.
    pub(super) async fn append_topics(
        &self,
        topics: &[TopicAppends<'_>],
        retention: &Retention,
        outcomes: &mut [Option<Result<u64, CacheError>>],
    ) {
        if self.is_cluster() {
            // One script per topic (a Cluster routes by key), all at once.
            let appended = futures::future::join_all(topics.iter().map(|topic| {
                let bodies = topic.bodies();
                async move { self.log_append_announced(topic.key, &bodies, retention).await }
            }))
            .await;
            for (topic, outcome) in topics.iter().zip(appended) {
                // One script's appends get consecutive indices.
                let first = outcome.map(|last| last + 1 - topic.events.len() as u64);
                for (n, event) in topic.events.iter().enumerate() {
                    outcomes[event.position] = Some(first.clone().map(|first| first + n as u64));
                }
            }
        } else if !topics.is_empty() {
            self.append_pipelined(topics, retention, outcomes).await;
        }
    }

    /// [`Self::log_append_each`] on a single Redis: one pipeline of each
    /// topic's `XADD`s followed by its `PEXPIRE`, with each command's own
    /// outcome (an error in one topic fails that topic's events only).
    async fn append_pipelined(
        &self,
        topics: &[TopicAppends<'_>],
        retention: &Retention,
        outcomes: &mut [Option<Result<u64, CacheError>>],
    ) {
        let ttl_ms = self.ttl_ms(retention);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for topic in topics {
            let k = self.key(topic.key);
            for event in &topic.events {
                let xadd = pipe.cmd("XADD").arg(&k);
                if let Some(max) = retention.max_events {
                    xadd.arg("MAXLEN").arg("=").arg(max);
                }
                xadd.arg("0-*").arg(FIELD).arg(&*event.body);
            }
            if ttl_ms > 0 {
                pipe.cmd("PEXPIRE").arg(&k).arg(ttl_ms);
            }
        }
        let replies: Vec<redis::RedisResult<redis::Value>> = match self.run_pipe(topics[0].key, &pipe).await {
            Ok(replies) => replies,
            Err(e) => {
                for event in topics.iter().flat_map(|topic| &topic.events) {
                    outcomes[event.position] = Some(Err(e.clone()));
                }
                return;
            }
        };
        let mut replies = replies.into_iter();
        for topic in topics {
            let key = topic.key;
            let appended: Vec<Result<u64, CacheError>> = topic
                .events
                .iter()
                .map(|_| match replies.next() {
                    Some(Ok(redis::Value::BulkString(id))) => index_of(&String::from_utf8_lossy(&id)),
                    Some(Ok(other)) => Err(CacheError::InvalidValue(format!("unexpected reply to XADD: {other:?}"))),
                    Some(Err(e)) => Err(self.classify(key, e)),
                    None => Err(CacheError::InvalidValue(
                        "Redis sent fewer replies than commands".into(),
                    )),
                })
                .collect();
            // The events were stored; a failed refresh of the TTL still fails
            // them, as it would a single append: the caller must hear of it.
            let refreshed = match (ttl_ms > 0).then(|| replies.next()).flatten() {
                Some(Err(e)) => Err(self.classify(key, e)),
                _ => Ok(()),
            };
            self.offer_appended(topic, &appended);
            for (event, outcome) in topic.events.iter().zip(appended) {
                outcomes[event.position] = Some(match &refreshed {
                    Ok(()) => outcome,
                    Err(e) => Err(e.clone()),
                });
            }
        }
    }

    /// Hands a topic's events just appended to this process's waiting
    /// readers: in runs of consecutive indices (another client's appends may
    /// fall between ours); after a failed one, readers look for themselves.
    fn offer_appended(&self, topic: &TopicAppends<'_>, appended: &[Result<u64, CacheError>]) {
        let bodies = topic.bodies();
        let mut run_start = 0;
        for end in 1..=appended.len() {
            let continues =
                end < appended.len() && matches!((&appended[end - 1], &appended[end]), (Ok(a), Ok(b)) if b == &(a + 1));
            if continues {
                continue;
            }
            match &appended[run_start] {
                Ok(first) => self.offer(topic.key, *first, &bodies[run_start..end]),
                Err(_) => self.inner.signals.notify(topic.key),
            }
            run_start = end;
        }
    }

    /// Appends with [`APPEND_NOTIFY_SCRIPT`] (Cluster); returns the last index.
    pub(super) async fn log_append_announced<S: AsRef<str>>(
        &self,
        key: &str,
        bodies: &[S],
        retention: &Retention,
    ) -> Result<u64, CacheError> {
        let mut invocation = self.inner.append_notify.prepare_invoke();
        invocation
            .key(self.key(key))
            .arg(retention.max_events.unwrap_or(0))
            .arg(self.ttl_ms(retention));
        for body in bodies {
            invocation.arg(body.as_ref());
        }
        let mut conn = self.connection()?;
        let id: String = self
            .deadline(key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let last = index_of(&id)?;
        self.offer_through(key, last, bodies);
        Ok(last)
    }

    /// The script flag that makes an append announce itself: on a Cluster only.
    pub(super) fn announce_flag(&self) -> &'static str {
        if self.is_cluster() {
            "1"
        } else {
            ""
        }
    }

    /// Hands events just stored at `first`, `first + 1`, ... (bodies without
    /// `index`) to this process's waiting readers of `key`.
    pub(super) fn offer<S: AsRef<str>>(&self, key: &str, first: u64, bodies: &[S]) {
        self.inner.signals.offer(key, first, || {
            bodies
                .iter()
                .zip(first..)
                .map(|(body, index)| json::with_index(body.as_ref(), index as i64))
                .collect()
        });
    }

    /// [`Self::offer`] of events one script appended, the last at `last`
    /// (one script's appends get consecutive indices).
    pub(super) fn offer_through<S: AsRef<str>>(&self, key: &str, last: u64, bodies: &[S]) {
        self.offer(key, last + 1 - bodies.len() as u64, bodies);
    }

    /// Up to `max` events of the topic at `key` from index `from`.
    ///
    /// The page is built straight from the reply's bytes into one buffer: at
    /// replay rates, an owned `String` per id, field and value cost more than
    /// Redis did. On a single Redis the reply is read by the bulk reader,
    /// which does not build redis-rs values at all.
    pub async fn log_read(
        &self,
        key: &str,
        from: u64,
        max: usize,
        received: Option<&Received>,
    ) -> Result<Page, CacheError> {
        let k = self.key(key);
        // With a received event to check, the read starts one early, at it.
        let first = received.map_or(from, |r| r.index);
        let start = format!("0-{}", first + 1);
        let count = (max + usize::from(received.is_some())).to_string();
        let args: [&[u8]; 6] = [
            b"XRANGE",
            k.as_bytes(),
            start.as_bytes(),
            b"+",
            b"COUNT",
            count.as_bytes(),
        ];
        if let Some(reply) = self.bulk_array(&args).await? {
            let entries = (0..reply.len()).map(|i| {
                let (id, body) = reply
                    .element(i)
                    .stream_entry(FIELD.as_bytes())
                    .ok_or_else(foreign_entry)?;
                let id = std::str::from_utf8(id).map_err(|_| foreign_entry())?;
                Ok((index_of(id)?, body.unwrap_or(b"{}")))
            });
            return self.checked_page(key, &k, from, received, entries).await;
        }
        let reply: redis::Value = self
            .run(
                key,
                redis::cmd("XRANGE")
                    .arg(&k)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(&count),
            )
            .await?;
        let entries = match reply {
            redis::Value::Array(entries) => entries,
            _ => Vec::new(),
        };
        self.checked_page(key, &k, from, received, entries.iter().map(stream_entry))
            .await
    }

    /// [`build_page`], except that a read that found nothing to check the
    /// `received` event against looks whether the stream at `k` exists: absent
    /// (cleared or expired, not written again) there is nothing to check yet,
    /// and the reader waits.
    async fn checked_page<'a>(
        &self,
        key: &str,
        k: &str,
        from: u64,
        received: Option<&Received>,
        entries: impl ExactSizeIterator<Item = Result<(u64, &'a [u8]), CacheError>>,
    ) -> Result<Page, CacheError> {
        if entries.len() == 0 && received.is_some() {
            let exists: bool = self.run(key, redis::cmd("EXISTS").arg(k)).await?;
            if !exists {
                return Ok(Page::empty(from));
            }
        }
        build_page(key, from, received, entries)
    }

    /// The index the next event of the topic at `key` will get (0 when absent).
    pub async fn log_next_index(&self, key: &str) -> Result<u64, CacheError> {
        let last: redis::Value = self
            .run(
                key,
                redis::cmd("XREVRANGE")
                    .arg(self.key(key))
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        match last {
            redis::Value::Array(entries) if !entries.is_empty() => Ok(stream_entry(&entries[0])?.0 + 1),
            _ => Ok(0),
        }
    }

    /// Makes sure this process hears of appends to `key` made elsewhere, from
    /// index `from` on: a reader that found nothing at `from` calls this before
    /// it waits (see `pubsub::Subscription`). The tailer follows every key that
    /// has a reader here.
    pub fn follow(&self, key: &str, from: u64) {
        if self.is_cluster() {
            self.inner.cluster_tailer.follow(key, self.key(key));
        } else {
            self.inner.tailer.follow(&self.inner, key, from);
        }
    }
}

/// One topic's events in a [`RedisCache::log_append_each`] batch, in order.
pub(super) struct TopicAppends<'a> {
    pub(super) key: &'a str,
    pub(super) events: Vec<Appending<'a>>,
}

pub(super) struct Appending<'a> {
    /// Where its outcome goes.
    pub(super) position: usize,
    /// The event without `index`.
    pub(super) body: std::borrow::Cow<'a, str>,
}

impl TopicAppends<'_> {
    fn bodies(&self) -> Vec<&str> {
        self.events.iter().map(|event| &*event.body).collect()
    }
}

/// `0-<n>` is index `n - 1`.
pub(super) fn index_of(id: &str) -> Result<u64, CacheError> {
    id.strip_prefix("0-")
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(|| CacheError::InvalidValue(format!("stream entry id `{id}` was not written by durable-agent")))
}

/// The page of XRANGE entries (index and body) of the topic at `key` read
/// from index `from`, or from the event the reader `received` before it,
/// which is checked and left out.
fn build_page<'a>(
    key: &str,
    from: u64,
    received: Option<&Received>,
    entries: impl ExactSizeIterator<Item = Result<(u64, &'a [u8]), CacheError>>,
) -> Result<Page, CacheError> {
    let mut events = String::with_capacity(entries.len() * 256 + 2);
    events.push('[');
    let mut entries = entries.peekable();
    if let Some(received) = received {
        let found = match entries.peek() {
            Some(Ok((index, body))) => {
                let mut text = String::new();
                push_event(&mut text, body, *index);
                Some((*index, text))
            }
            Some(Err(_)) => return Err(entries.next().expect("peeked").unwrap_err()),
            None => None,
        };
        if check_received(key, received, found.as_ref().map(|(i, text)| (*i, text.as_str())))? {
            entries.next();
        }
    }
    let (mut count, mut next, mut last_start) = (0, from, None);
    for entry in entries {
        let (index, body) = entry?;
        if count == 0 && index > from {
            return Err(CacheError::OffsetExpired {
                topic: key.to_owned(),
                offset: from,
                first: index,
            });
        }
        if count > 0 {
            events.push(',');
        }
        last_start = Some(events.len());
        push_event(&mut events, body, index);
        count += 1;
        next = index + 1;
    }
    let last = last_start.map(|start| fingerprint(&events[start..]));
    events.push(']');
    Ok(Page {
        count,
        events,
        next,
        last,
    })
}

fn foreign_entry() -> CacheError {
    CacheError::InvalidValue("a stream entry was not written by durable-agent".into())
}

/// The index and the event body of one XRANGE entry: `[id, [field, value, ...]]`.
fn stream_entry(entry: &redis::Value) -> Result<(u64, &[u8]), CacheError> {
    let foreign = foreign_entry;
    let redis::Value::Array(parts) = entry else {
        return Err(foreign());
    };
    let (Some(id), Some(redis::Value::Array(fields))) = (parts.first(), parts.get(1)) else {
        return Err(foreign());
    };
    let id = match id {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).map_err(|_| foreign())?,
        redis::Value::SimpleString(text) => text.as_str(),
        _ => return Err(foreign()),
    };
    let body = fields
        .chunks(2)
        .find_map(|pair| match pair {
            [redis::Value::BulkString(field), redis::Value::BulkString(value)] if field == FIELD.as_bytes() => {
                Some(value.as_slice())
            }
            _ => None,
        })
        .unwrap_or(b"{}");
    Ok((index_of(id)?, body))
}

/// Appends the event with its index to `out`. Our own bodies are JSON objects
/// without `index` (checked, cheaply: a foreign one must not break the page);
/// anything else, written by another program, is kept as `value`.
fn push_event(out: &mut String, body: &[u8], index: u64) {
    let ours = std::str::from_utf8(body).ok().filter(|text| is_our_body(text));
    match ours {
        Some(object) => json::push_with_index(out, object, index as i64),
        None => {
            let text = String::from_utf8_lossy(body).into_owned();
            let value = match json::without_index(&text) {
                Ok(object) if json::is_json(&object) => json::with_index(&object, index as i64),
                _ => format!("{{\"index\":{index},\"value\":{}}}", json::valid_or_quoted(text)),
            };
            out.push_str(&value);
        }
    }
}

/// Whether a stream entry's body is one of ours: a JSON object without
/// `index`.
fn is_our_body(text: &str) -> bool {
    text.starts_with('{') && !text.contains("\"index\"") && json::is_json(text)
}

/// The tailer of one cache: started with the first followed key, stopped by
/// `close()`.
#[derive(Default)]
pub(super) struct TailerSlot {
    state: Mutex<TailerState>,
    changed: Arc<Notify>,
    stopped: Arc<AtomicBool>,
}

#[derive(Default)]
struct TailerState {
    running: bool,
    /// Keys followed, with the index from which to read (the stream id to
    /// read after is `0-<index>`).
    keys: HashMap<String, u64>,
    /// The tailer connection's `CLIENT ID`, to interrupt its blocking read.
    client_id: Option<i64>,
}

impl TailerSlot {
    fn follow(&self, inner: &Arc<Inner>, key: &str, from: u64) {
        let (start, interrupt) = {
            let mut state = lock(&self.state);
            // Entries with index >= from have ids after `0-<from>`. Readers of
            // one key wait at different indices; the tailer reads from the
            // lowest, so that an append any of them waits for wakes them.
            let added = match state.keys.get_mut(key) {
                Some(at) if *at <= from => false,
                Some(at) => {
                    *at = from;
                    true
                }
                None => {
                    state.keys.insert(key.to_owned(), from);
                    true
                }
            };
            let start = !state.running;
            state.running = true;
            (start, added.then_some(state.client_id).flatten())
        };
        if start {
            tokio::spawn(tail(Arc::downgrade(inner)));
        }
        self.changed.notify_one();
        if let Some(client_id) = interrupt {
            // Cut the blocking read short so the new key is included now.
            let cache = RedisCache { inner: inner.clone() };
            tokio::spawn(async move {
                let _: Result<i64, _> = cache.run("", redis::cmd("CLIENT").arg("UNBLOCK").arg(client_id)).await;
            });
        }
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }
}

/// The tailer: one connection of its own (a blocking read would stall the
/// shared one), reading every followed stream after the last id it saw, and
/// waking that key's readers when something new arrived. It holds the cache
/// weakly, and ends when the cache is closed or dropped.
async fn tail(inner: Weak<Inner>) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(cache) = inner.upgrade().map(|inner| RedisCache { inner }) else {
            return;
        };
        let slot = &cache.inner.tailer;
        if slot.stopped.load(Ordering::SeqCst) {
            return;
        }
        // Keys without readers any more are dropped from the read.
        let readers = cache.inner.signals.keys();
        let followed: Vec<(String, u64)> = {
            let mut state = lock(&slot.state);
            state.keys.retain(|key, _| readers.contains(key));
            state.keys.iter().map(|(k, at)| (k.clone(), *at)).collect()
        };
        if followed.is_empty() {
            let changed = slot.changed.clone();
            drop(cache);
            let _ = tokio::time::timeout(Duration::from_millis(TAIL_BLOCK_MS), changed.notified()).await;
            continue;
        }
        if conn.is_none() {
            match connect(&cache).await {
                Ok((c, id)) => {
                    lock(&slot.state).client_id = Some(id);
                    conn = Some(c);
                    backoff = Duration::from_millis(50);
                    // Appends may have happened while we were away: readers look again.
                    for (key, _) in &followed {
                        cache.inner.signals.notify(key);
                    }
                }
                Err(error) => {
                    // Readers here miss other processes' appends until this
                    // succeeds (their own reads still work): say so.
                    tracing::warn!(addr = %cache.addr(), %error, "durable-agent: topic tailer cannot connect to Redis; retrying");
                    drop(cache);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(TAIL_BLOCK_MS)
            .arg("STREAMS");
        for (key, _) in &followed {
            cmd.arg(cache.key(key));
        }
        for (_, at) in &followed {
            cmd.arg(format!("0-{at}"));
        }
        let by_physical: HashMap<String, &str> = followed.iter().map(|(k, _)| (cache.key(k), k.as_str())).collect();
        drop(cache);
        let reply: Result<redis::Value, _> = cmd.query_async(c).await;
        let Some(cache) = inner.upgrade().map(|inner| RedisCache { inner }) else {
            return;
        };
        match reply {
            Ok(reply) => {
                let mut state = lock(&cache.inner.tailer.state);
                for (physical, entries) in xread_streams(&reply) {
                    let Some(key) = by_physical.get(physical) else {
                        continue;
                    };
                    match entries.last() {
                        Some(Some((last, _))) => {
                            if let Some(at) = state.keys.get_mut(*key) {
                                *at = (*at).max(last + 1);
                            }
                            offer_entries(&cache, key, &entries);
                        }
                        Some(None) => {
                            // An id we did not write: reading on would return
                            // it again at once. Readers meet it in their own
                            // read and fail with a clear error; stop following.
                            state.keys.remove(*key);
                            cache.inner.signals.notify(key);
                        }
                        None => {}
                    }
                }
            }
            Err(error) => {
                // Unblocked to follow a new key, or the connection failed: rebuild.
                tracing::debug!(%error, "durable-agent: topic tailer read ended; reconnecting");
                conn = None;
            }
        }
    }
}

/// An entry the tailer read: its index and its body.
type TailEntry<'a> = (u64, &'a [u8]);

/// The streams of an XREAD reply (`[[key, [entry, ...]], ...]`, nil when
/// the block timed out), each entry as its index and body, or `None` for an
/// entry we did not write. Lenient: a foreign entry must not fail the read,
/// or the tailer would fail on it for ever.
fn xread_streams(reply: &redis::Value) -> Vec<(&str, Vec<Option<TailEntry<'_>>>)> {
    let redis::Value::Array(streams) = reply else {
        return Vec::new();
    };
    streams
        .iter()
        .filter_map(|stream| match stream {
            redis::Value::Array(parts) => match (parts.first(), parts.get(1)) {
                (Some(redis::Value::BulkString(key)), Some(redis::Value::Array(entries))) => Some((
                    std::str::from_utf8(key).ok()?,
                    entries.iter().map(|entry| stream_entry(entry).ok()).collect(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Offers the entries an XREAD returned to the key's readers, when they are
/// consecutive events of ours; anything else only wakes them to read.
fn offer_entries(cache: &RedisCache, key: &str, entries: &[Option<TailEntry<'_>>]) {
    let ours: Option<Vec<(u64, &str)>> = entries
        .iter()
        .map(|entry| {
            let (index, body) = (*entry)?;
            let body = std::str::from_utf8(body).ok().filter(|body| is_our_body(body))?;
            Some((index, body))
        })
        .collect();
    match ours {
        Some(ours) if ours.windows(2).all(|pair| pair[1].0 == pair[0].0 + 1) && !ours.is_empty() => {
            let bodies: Vec<&str> = ours.iter().map(|(_, body)| *body).collect();
            cache.offer(key, ours[0].0, &bodies);
        }
        _ => cache.inner.signals.notify(key),
    }
}

async fn connect(cache: &RedisCache) -> Result<(MultiplexedConnection, i64), redis::RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(cache.inner.connect_timeout))
        // The blocking read answers after up to TAIL_BLOCK_MS.
        .set_response_timeout(Some(Duration::from_millis(TAIL_BLOCK_MS) + cache.inner.command_timeout));
    let super::Backend::Single(client) = &cache.inner.backend else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "the XREAD tailer serves a single Redis; a cluster has its own",
        )));
    };
    let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
    let id: i64 = redis::cmd("CLIENT").arg("ID").query_async(&mut conn).await?;
    Ok((conn, id))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    fn entry(id: &str, body: &[u8]) -> Value {
        Value::Array(vec![
            bulk(id.as_bytes()),
            Value::Array(vec![bulk(FIELD.as_bytes()), bulk(body)]),
        ])
    }

    #[test]
    fn a_tail_read_with_foreign_entries_still_parses() {
        // Bytes that are not UTF-8, and an id we did not write, next to ours:
        // a strict parse fails the whole read, and the tailer with it.
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk(b"p:{t}"),
                Value::Array(vec![entry("0-1", br#"{"n":0}"#), entry("0-2", b"\xff\xfe")]),
            ]),
            Value::Array(vec![
                bulk(b"p:{u}"),
                Value::Array(vec![entry("1700000000000-0", b"{}")]),
            ]),
        ]);
        let streams = xread_streams(&reply);
        assert_eq!(streams.len(), 2);
        assert_eq!(streams[0].0, "p:{t}");
        assert_eq!(
            streams[0].1,
            vec![Some((0, &br#"{"n":0}"#[..])), Some((1, &b"\xff\xfe"[..]))]
        );
        assert_eq!(streams[1].1, vec![None]);
        assert!(xread_streams(&Value::Nil).is_empty(), "a block that timed out");
    }
}
