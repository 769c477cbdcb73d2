//! How a process hears of other processes' appends on a Redis Cluster.
//!
//! The single-node tailer blocks on one `XREAD` over every followed stream;
//! on a Cluster that command cannot span slots. Instead every append there
//! also `SPUBLISH`es on the topic's sharded channel, inside the script that
//! appends (`APPEND_NOTIFY_SCRIPT` and the run scripts), and this tailer holds
//! one RESP3 cluster connection that `SSUBSCRIBE`s to the channel of each
//! topic this process reads. The channel is named like the stream key, so it
//! lives in the stream's slot, on the primary that owns it. redis-rs
//! resubscribes after a reconnection; a slot that moves is handled below.
//!
//! A message only wakes the topic's readers, who then read the stream: the
//! stream stays the one source of truth, and no wake-up can be lost:
//! - a reader follows a topic after a read found nothing, and the tailer
//!   wakes the topic's readers once its subscription is confirmed, so an
//!   append between that read and the subscription is read then;
//! - a disconnection wakes every followed topic's readers, and each
//!   resubscription (a `ssubscribe` push) wakes them again;
//! - when a slot moves to another node, Redis drops the subscriptions to its
//!   channels (a `sunsubscribe` push): a topic still read here is subscribed
//!   again, on its new node, and its readers woken once that is confirmed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ProtocolVersion, PushInfo, PushKind, Value};

use crate::signal::Signals;

/// How often topics that lost their last reader are unsubscribed.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// The longest wait between two attempts to subscribe while the cluster is away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Sharded channel (physical stream key) to the cache key readers wait on.
type Channels = Arc<Mutex<HashMap<String, String>>>;

pub(super) struct ClusterTailer {
    signals: Arc<Signals>,
    channels: Channels,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Built with the cache (no I/O), for cluster caches only.
    client: Option<ClusterClient>,
    /// The cache's connect and command timeouts.
    timeouts: (Duration, Duration),
    /// Opened with the first followed topic.
    conn: Option<ClusterConnection>,
    sweeping: bool,
    stopped: bool,
}

impl ClusterTailer {
    pub(super) fn new(signals: Arc<Signals>) -> Self {
        ClusterTailer {
            signals,
            channels: Arc::default(),
            state: Arc::default(),
        }
    }

    /// Builds this tailer's client from the cache's cluster settings: its own
    /// connections (commands never queue behind a subscription's traffic), in
    /// RESP3, which carries the channel messages as pushes.
    pub(super) fn prepare(
        &self,
        builder: ClusterClientBuilder,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> redis::RedisResult<()> {
        let (signals, channels) = (self.signals.clone(), self.channels.clone());
        // Weak: the state holds the connection, which holds this sender.
        let state = Arc::downgrade(&self.state);
        let client = builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |push: PushInfo| {
                on_push(&signals, &channels, &state, push);
                Ok::<(), std::convert::Infallible>(())
            })
            .build()?;
        let mut state = lock(&self.state);
        state.client = Some(client);
        state.timeouts = (connect_timeout, command_timeout);
        Ok(())
    }

    /// Makes sure this process hears of appends to the stream `physical`
    /// (the cache key `key`) made elsewhere.
    pub(super) fn follow(&self, key: &str, physical: String) {
        let mut state = lock(&self.state);
        if state.stopped {
            return;
        }
        {
            let mut channels = lock(&self.channels);
            if channels.contains_key(&physical) {
                return;
            }
            channels.insert(physical.clone(), key.to_owned());
        }
        let Some(conn) = state.connection() else {
            return;
        };
        let (signals, channels) = (self.signals.clone(), self.channels.clone());
        tokio::spawn(subscribe(
            conn,
            signals,
            channels,
            self.state.clone(),
            key.to_owned(),
            physical,
        ));
        if !state.sweeping {
            state.sweeping = true;
            let (signals, channels, state) = (self.signals.clone(), self.channels.clone(), self.state.clone());
            tokio::spawn(sweep(signals, channels, state));
        }
    }

    /// Drops the connection; readers are woken by the cache's `close()`.
    pub(super) fn stop(&self) {
        let mut state = lock(&self.state);
        state.stopped = true;
        state.conn = None;
        state.client = None;
    }
}

impl Drop for ClusterTailer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl State {
    fn connection(&mut self) -> Option<ClusterConnection> {
        if self.conn.is_none() {
            let client = self.client.as_ref()?;
            let (connect, command) = self.timeouts;
            let config = redis::cluster::ClusterConfig::new()
                .set_connection_timeout(connect)
                .set_response_timeout(command);
            self.conn = Some(client.get_pending_async_connection_with_config(config));
        }
        self.conn.clone()
    }
}

/// Subscribes to `physical`, retrying while the cluster is unreachable and
/// the topic still has readers here; wakes the readers once subscribed.
async fn subscribe(
    mut conn: ClusterConnection,
    signals: Arc<Signals>,
    channels: Channels,
    state: Arc<Mutex<State>>,
    key: String,
    physical: String,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // A replica accepts SSUBSCRIBE too, but after a failover the new
        // primary's messages did not reach subscribers on the old one (seen
        // on Redis 7.0). A keyed read is refused with MOVED by any node that
        // does not own the slot, which refreshes the connection's slot map,
        // so the subscription goes to the primary that owns it now.
        let owner = redis::cmd("EXISTS").arg(&physical).query_async::<i64>(&mut conn).await;
        let subscribed = match owner {
            Ok(_) => conn.ssubscribe(&physical).await,
            Err(error) => Err(error),
        };
        match subscribed {
            Ok(()) => {
                // Appends made before the subscription took are read now.
                signals.notify(&key);
                return;
            }
            Err(error) => {
                // Readers here miss other processes' appends until this
                // succeeds (their own reads still work): say so.
                tracing::warn!(%error, "durable-agent: cannot subscribe to a topic's cluster channel; retrying");
                if stopped(&state) || !signals.keys().contains(&key) {
                    lock(&channels).remove(&physical);
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Unsubscribes from topics that have no reader here any more; ends when
/// nothing is followed (the next `follow` starts it again) or on `stop`.
async fn sweep(signals: Arc<Signals>, channels: Channels, state: Arc<Mutex<State>>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let readers = signals.keys();
        let gone: Vec<String> = {
            let mut channels = lock(&channels);
            let gone: Vec<String> = channels
                .iter()
                .filter(|(_, key)| !readers.contains(key))
                .map(|(physical, _)| physical.clone())
                .collect();
            for physical in &gone {
                channels.remove(physical);
            }
            gone
        };
        let conn = {
            // `follow` checks `sweeping` under this lock as it adds a channel.
            let mut state = lock(&state);
            let conn = state.conn.clone().filter(|_| !state.stopped);
            if conn.is_none() || lock(&channels).is_empty() {
                state.sweeping = false;
            }
            conn
        };
        let Some(mut conn) = conn else { return };
        for physical in &gone {
            if let Err(error) = conn.sunsubscribe(physical).await {
                tracing::debug!(%error, "durable-agent: cluster unsubscribe failed");
            }
        }
        if !lock(&state).sweeping {
            return;
        }
    }
}

/// A push from the cluster: a message or a (re)subscription wakes the
/// topic's readers; a subscription the server dropped (its slot moved) while
/// the topic is still read here is made again; a lost connection wakes every
/// followed topic's readers.
fn on_push(signals: &Arc<Signals>, channels: &Channels, state: &Weak<Mutex<State>>, push: PushInfo) {
    let channel = || match push.data.first() {
        Some(Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    match push.kind {
        PushKind::SMessage | PushKind::SSubscribe => {
            let Some(channel) = channel() else { return };
            let key = lock(channels).get(&channel).cloned();
            if let Some(key) = key {
                signals.notify(&key);
            }
        }
        PushKind::SUnsubscribe => {
            // Our own unsubscribe removed the channel from `channels` first.
            let Some(physical) = channel() else { return };
            let Some(key) = lock(channels).get(&physical).cloned() else {
                return;
            };
            let Some(state) = state.upgrade() else { return };
            let conn = {
                let mut locked = lock(&state);
                if locked.stopped {
                    return;
                }
                locked.connection()
            };
            if let Some(conn) = conn {
                // Pushes arrive on the connection's task, inside the runtime.
                tokio::spawn(subscribe(conn, signals.clone(), channels.clone(), state, key, physical));
            }
        }
        PushKind::Disconnection => {
            let keys: Vec<String> = lock(channels).values().cloned().collect();
            for key in keys {
                signals.notify(&key);
            }
        }
        _ => {}
    }
}

fn stopped(state: &Mutex<State>) -> bool {
    lock(state).stopped
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
