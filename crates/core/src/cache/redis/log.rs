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
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;

use super::queue::{Append, Lane, Op};
use super::{Inner, RedisCache};
use crate::cache::store::{StoreFuture, TopicLog};
use crate::error::CacheError;
use crate::json;
use crate::log::{check_received, fingerprint, Page, Received, Retention};
use crate::signal::Signals;
use redis::Value;

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
    /// refreshes the topic's TTL, and returns the index. Queued now (see
    /// `queue.rs`): appends made one after another, awaited or not, get
    /// indices in that order, and share pipelines (and, per topic, one TTL
    /// refresh or one script) with the calls next to them.
    pub fn log_append(
        &self,
        key: &str,
        object_json: &str,
        retention: &Retention,
    ) -> impl Future<Output = Result<u64, CacheError>> + Send + 'static {
        let appended = json::without_index(object_json).map(|body| {
            let physical = self.key(key);
            let lane = self.lane(&physical);
            let op = Op::Append(Append {
                key: key.to_owned(),
                physical,
                body: body.into_owned(),
                max_events: retention.max_events,
                ttl_ms: self.ttl_ms(retention),
            });
            self.send_in::<Value>(key, lane, op)
        });
        async move {
            match appended?.await? {
                Value::BulkString(id) => index_of(&String::from_utf8_lossy(&id)),
                other => Err(CacheError::InvalidValue(format!("unexpected reply to XADD: {other:?}"))),
            }
        }
    }

    /// The script flag that makes an append announce itself: on a Cluster only.
    pub(super) fn announce_flag(&self) -> &'static str {
        if self.is_cluster() {
            "1"
        } else {
            ""
        }
    }

    /// [`offer`] of events one script appended, the last at `last` (one
    /// script's appends get consecutive indices).
    pub(super) fn offer_through<S: AsRef<str>>(&self, key: &str, last: u64, bodies: &[S]) {
        offer(&self.inner.signals, key, last + 1 - bodies.len() as u64, bodies);
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
            .send(
                key,
                &k,
                redis::cmd("XRANGE")
                    .arg(&k)
                    .arg(&start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(&count)
                    .clone(),
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
            let exists: bool = self.send(key, k, redis::cmd("EXISTS").arg(k).clone()).await?;
            if !exists {
                return Ok(Page::empty(from));
            }
        }
        build_page(key, from, received, entries)
    }

    /// The index the next event of the topic at `key` will get (0 when absent).
    pub async fn log_next_index(&self, key: &str) -> Result<u64, CacheError> {
        let k = self.key(key);
        let last: redis::Value = self
            .send(
                key,
                &k,
                redis::cmd("XREVRANGE")
                    .arg(&k)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .clone(),
            )
            .await?;
        match last {
            redis::Value::Array(entries) if !entries.is_empty() => Ok(stream_entry(&entries[0])?.0 + 1),
            _ => Ok(0),
        }
    }
}

/// Hands events just stored at `first`, `first + 1`, ... (bodies without
/// `index`) to this process's waiting readers of `key`.
pub(super) fn offer<S: AsRef<str>>(signals: &Signals, key: &str, first: u64, bodies: &[S]) {
    signals.offer(key, first, || {
        bodies
            .iter()
            .zip(first..)
            .map(|(body, index)| json::with_index(body.as_ref(), index as i64))
            .collect()
    });
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
                let unblock = redis::cmd("CLIENT").arg("UNBLOCK").arg(client_id).clone();
                let _: Result<i64, _> = cache.send_in("", Lane::All, Op::Cmd(unblock)).await;
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
            offer(&cache.inner.signals, key, ours[0].0, &bodies);
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

impl TopicLog for RedisCache {
    fn signals(&self) -> &Arc<Signals> {
        &self.inner.signals
    }

    fn append(&self, key: &str, object_json: &str, retention: &Retention) -> StoreFuture<'static, u64> {
        Box::pin(self.log_append(key, object_json, retention))
    }

    fn append_many<'a>(
        &'a self,
        key: &'a str,
        objects: &'a [String],
        retention: &'a Retention,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(self.log_append_many(key, objects, retention))
    }

    fn read<'a>(
        &'a self,
        key: &'a str,
        from: u64,
        max: usize,
        received: Option<&'a Received>,
    ) -> StoreFuture<'a, Page> {
        Box::pin(self.log_read(key, from, max, received))
    }

    fn next_index<'a>(&'a self, key: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.log_next_index(key))
    }

    fn delete(&self, key: &str) -> StoreFuture<'static, ()> {
        Box::pin(RedisCache::delete(self, key))
    }

    /// The tailer (one Redis) or the sharded channels (a Cluster) follow
    /// every key that has a reader here.
    fn follow(&self, key: &str, from: u64) {
        if self.is_cluster() {
            self.inner.cluster_tailer.follow(key, self.key(key));
        } else {
            self.inner.tailer.follow(&self.inner, key, from);
        }
    }

    fn synchronous(&self) -> bool {
        false
    }
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
