//! Topic logs on Redis Streams.
//!
//! A topic is one stream. `XADD key 0-* ...` lets Redis pick the id `0-<n>`
//! with `n` one past the last: the index is `n - 1`, allocated atomically by
//! Redis itself in one command, gap-free, and kept across trimming (a stream
//! remembers its last id). History and live reads are the same query
//! (`XRANGE` from an index), so there is no buffer-and-deduplicate handoff.
//! One stream is one key, so a topic never spans Cluster slots.
//!
//! On a single Redis, `tailer.rs` hears of other processes' appends with a
//! blocking `XREAD`. On a Cluster a multi-key `XREAD` cannot span slots, so
//! every append also announces itself on the topic's sharded channel, in the
//! same script, and `cluster_tailer.rs` listens there.

use std::future::Future;
use std::sync::Arc;

use super::entry::{foreign_entry, index_of, is_our_body, stream_entry, FIELD};
use super::queue::{Append, Op};
use super::RedisCache;
use crate::cache::store::{StoreFuture, TopicLog};
use crate::error::CacheError;
use crate::json;
use crate::log::{check_received, fingerprint, Page, PageRequest, Received, Retention};
use crate::signal::Signals;
use redis::Value;

/// A script that appends events to a topic stream: the Lua that appends,
/// written once, then the script's own `body` (this file's append and the
/// run scripts of `runs.rs`). The body may call:
///
/// - `announce_refused(key, announce)`: when `announce`, the error to return
///   if the user may not `SPUBLISH` on the stream's channel; else nil.
///   Checked before anything is written, since a script is not undone when a
///   command fails halfway: an append that cannot be announced stores
///   nothing.
/// - `append(key, maxlen, first, ttl, announce)`: `XADD`s `ARGV[first..]`
///   (trimmed to `maxlen`, 0 = no limit), sets the stream's TTL (`ttl` ms,
///   0 = leaves it), and, when `announce`, publishes the last id on the
///   stream's sharded channel (named like the stream, so in its slot): a
///   reader elsewhere never misses the wake-up of an acknowledged append.
///   Returns the last id ('' when there was nothing to append).
macro_rules! appending_script {
    ($body:literal) => {
        concat!(
            r#"
local function announce_refused(key, announce)
  if announce and not redis.acl_check_cmd('SPUBLISH', key, '') then
    return redis.error_reply('NOPERM this user may not publish to the channel ' .. key)
  end
end
local function append(key, maxlen, first, ttl, announce)
  local last = ''
  for i = first, #ARGV do
    if maxlen > 0 then
      last = redis.call('XADD', key, 'MAXLEN', '=', maxlen, '0-*', 'e', ARGV[i])
    else
      last = redis.call('XADD', key, '0-*', 'e', ARGV[i])
    end
  end
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  if announce and last ~= '' then redis.call('SPUBLISH', key, last) end
  return last
end
"#,
            $body
        )
    };
}
pub(super) use appending_script;

/// Appends events and announces the last id (see [`appending_script`]).
/// KEYS: stream. ARGV: MAXLEN (0 = none), TTL in ms (0 = none), then the
/// event bodies. Returns the last id.
pub(super) const APPEND_NOTIFY_SCRIPT: &str = appending_script!(
    r#"
local refused = announce_refused(KEYS[1], true)
if refused then return refused end
return append(KEYS[1], tonumber(ARGV[1]), 3, tonumber(ARGV[2]), true)
"#
);

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
    pub async fn log_read(&self, request: PageRequest<'_>) -> Result<Page, CacheError> {
        let PageRequest {
            key,
            from,
            max,
            received,
        } = request;
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

    fn read<'a>(&'a self, request: PageRequest<'a>) -> StoreFuture<'a, Page> {
        Box::pin(self.log_read(request))
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
