//! The tailer of a single Redis: how this process's readers hear of appends
//! other processes make. One connection of its own does a blocking `XREAD`
//! of every followed stream, after the last id it saw, and wakes (or hands
//! the events to) that key's readers. A Cluster has `cluster_tailer.rs`
//! instead (a multi-key `XREAD` cannot span slots).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;

use super::entry::{is_our_body, stream_entry};
use super::log::offer;
use super::queue::{Lane, Op};
use super::{Inner, RedisCache};

/// How long one blocking read waits before it looks again.
const TAIL_BLOCK_MS: u64 = 2_000;

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
    pub(super) fn follow(&self, inner: &Arc<Inner>, key: &str, from: u64) {
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

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::super::entry::FIELD;
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
