//! The command queue of a [`super::RedisCache`]: every command of the cache
//! goes through it, and reaches Redis in the order the cache's methods were
//! called.
//!
//! Why a queue of our own: handing each call's future to redis-rs keeps
//! their order only while every command reaches the socket at the first poll
//! of its future, and under load that breaks in several places. Tokio's
//! cooperative budget makes a channel send yield after 128 operations in one
//! task poll (300 `SET`s of one tick left the 127th value behind); a full
//! command channel hands its permits out in one order while the senders
//! complete in another; a reconnect wakes its waiters in the order of a slab;
//! a script not loaded yet is loaded and retried after calls made later; a
//! Cluster connection routes requests through a task of its own; and calls
//! of different ticks ran on different tasks.
//!
//! So each call is queued when it is made (the cache's writing methods
//! enqueue before they return their future), and one dispatcher task per
//! cache, exempt from the cooperative budget, hands the queue to the
//! connection in order:
//! - On a single Redis the whole queue is one lane: pipelines of consecutive
//!   calls, up to [`SINGLE_IN_FLIGHT`] at once, each handed to a connection
//!   whose channel has room for all of them, so none ever waits to be sent.
//! - On a Cluster each hash tag is a lane (every key of ours carries one: a
//!   topic, its counter and its run state share it), with one pipeline in
//!   flight: the next leaves once the last has its replies, whatever the
//!   cluster connection does inside. Calls on keys of different slots never
//!   had an order on a Cluster.
//!
//! Consecutive appends to one topic in a pipeline share one `PEXPIRE` (a
//! single Redis) or one script (a Cluster): at 64 publishes in flight a
//! `PEXPIRE` per event cost Redis as much as the `XADD`s. A `clear()` is a
//! barrier: it runs alone, after every call made before it and before every
//! call made after it. A fence lets a read on another connection (the bulk
//! reader) start only once every earlier call has its reply.
//!
//! The connection is the dispatcher's, and connects by itself (see
//! `connection.rs`). Pipelines that wait together for a (re)connection are
//! sent in the order the connection wakes them, which is not the order they
//! were made (seen: the first 100 appends of a new cache stored in blocks
//! out of order). So until the connection has answered, and again after it
//! failed, a lane has one pipeline in flight: the next leaves once the
//! connection is up and has taken the one before. A failed
//! attempt fails the calls that waited for it (a Redis that is down answers
//! each call at once, and a caller that wants to ride an outage out retries).
//! A call whose caller gave up before it was sent is never sent.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt as _};
use redis::aio::ConnectionLike as _;
use redis::cluster_routing::SingleNodeRoutingInfo;
use redis::{Cmd, RedisError, Value};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

use super::connection::{Backend, Conn};

/// Pipelines a single Redis connection carries at once.
const SINGLE_IN_FLIGHT: usize = 8;
/// Calls per pipeline on a single Redis: small pipelines let Redis work on
/// one while the replies to another travel (64 publishes in flight: 92k/s
/// one per pipeline, 98k/s all in one, 105-127k/s at 8 to 24).
const SINGLE_BATCH: usize = 16;
/// Calls per pipeline in a Cluster lane, which has one pipeline in flight.
const CLUSTER_BATCH: usize = 64;
/// Room in a single Redis connection's channel: more than it can ever hold.
const CHANNEL_ROOM: usize = 4 * SINGLE_IN_FLIGHT;

/// What a lane is: calls in one lane reach Redis in the order they were made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Lane {
    /// Everything, on a single Redis.
    All,
    /// Keys with this hash tag, on a Cluster.
    Tag(String),
    /// One node of a Cluster (a SCAN cursor is per node).
    Node(String, u16),
    /// No key: any node of a Cluster.
    Any,
}

/// One call's work.
pub(super) enum Op {
    Cmd(Cmd),
    /// One event appended to a topic (see [`Append`]).
    Append(Append),
}

/// An event appended to a topic stream with `XADD key [MAXLEN = n] 0-* e body`,
/// then the stream's TTL refreshed.
pub(super) struct Append {
    /// The cache key (this process's readers wait on it).
    pub(super) key: String,
    /// The physical (prefixed) key.
    pub(super) physical: String,
    /// The event's JSON text without `index`.
    pub(super) body: String,
    pub(super) max_events: Option<u64>,
    /// 0: no TTL.
    pub(super) ttl_ms: u64,
}

impl Append {
    fn same_topic(&self, other: &Append) -> bool {
        self.physical == other.physical && self.max_events == other.max_events && self.ttl_ms == other.ttl_ms
    }
}

/// What the dispatcher does with a topic's events once stored.
pub(super) type OnAppended = dyn Fn(&str, u64, &[&str]) + Send + Sync;

/// How the dispatcher talks to Redis, and what it does with appended events.
pub(super) struct Wiring {
    /// Opened by the dispatcher, on its runtime.
    pub(super) backend: Backend,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
    /// The script that appends and announces on a Cluster (`log.rs`).
    pub(super) append_script: &'static str,
    /// Called with each topic's events once stored (cache key, first index,
    /// bodies): hands them to this process's readers.
    pub(super) appended: Box<OnAppended>,
    /// Called when an append failed: this process's readers of the topic
    /// look for themselves.
    pub(super) append_failed: Box<dyn Fn(&str) + Send + Sync>,
    /// The server a TLS connection goes to (single Redis): see [`probe`].
    pub(super) tls_server: Option<(String, u16)>,
}

/// Why a queued call has no reply.
#[derive(Debug, Clone)]
pub(super) enum QueueError {
    /// The cache is closed.
    Closed,
    /// No reply within the call's time; `sent`: it may have been applied.
    Timeout { sent: bool },
    /// Redis, or the connection, failed the call.
    Redis(RedisError),
    /// The cache cannot work as configured (see [`probe`]).
    Misconfigured(String),
}

pub(super) struct Queue {
    shared: Arc<Shared>,
}

struct Shared {
    /// Where the dispatcher runs: the runtime the cache was made in.
    runtime: Option<tokio::runtime::Handle>,
    state: Mutex<State>,
    /// Wakes the dispatcher: a call was queued, or the cache closed.
    wake: Notify,
    /// Set once the cache is known not to work as configured: every call
    /// fails with it at once.
    misconfigured: watch::Sender<Option<String>>,
    wiring: Wiring,
}

#[derive(Default)]
struct State {
    lanes: HashMap<Lane, VecDeque<Entry>>,
    /// Barriers not run yet, in order; the one numbered `n` runs once every
    /// entry of epoch `n` or lower has its outcome.
    barriers: VecDeque<Barrier>,
    /// Barriers queued so far: the epoch of a new entry.
    epoch: u64,
    closed: bool,
    dispatching: bool,
}

struct Entry {
    epoch: u64,
    kind: EntryKind,
}

enum EntryKind {
    Call(Call),
    /// Answered once every earlier entry of its lane has its outcome.
    Fence(oneshot::Sender<()>),
}

struct Call {
    op: Op,
    reply: oneshot::Sender<Result<Value, QueueError>>,
    /// Set once it is in a pipeline handed to the connection.
    sent: Arc<AtomicBool>,
}

/// Runs alone, with the connection (see [`Queue::barrier`]).
type BarrierBody = Box<dyn FnOnce(Conn) -> BoxFuture<'static, ()> + Send>;

struct Barrier {
    body: BarrierBody,
    /// Told when the barrier could not run (closed, no connection).
    failed: oneshot::Sender<QueueError>,
}

/// A call's reply, once queued: await it.
pub(super) struct Queued {
    rx: oneshot::Receiver<Result<Value, QueueError>>,
    deadline: Instant,
    sent: Arc<AtomicBool>,
    misconfigured: watch::Receiver<Option<String>>,
}

impl Queued {
    pub(super) async fn reply(mut self) -> Result<Value, QueueError> {
        let replied = tokio::time::timeout_at(self.deadline, self.rx);
        let misconfigured = self.misconfigured.wait_for(Option::is_some);
        tokio::select! {
            replied = replied => match replied {
                Ok(Ok(reply)) => reply,
                // The dispatcher is gone: the cache was closed or dropped.
                Ok(Err(_)) => Err(QueueError::Closed),
                // Dropping `rx` keeps a call not sent yet from being sent.
                Err(_) => Err(QueueError::Timeout {
                    sent: self.sent.load(Ordering::SeqCst),
                }),
            },
            Ok(why) = misconfigured => Err(QueueError::Misconfigured(why.clone().unwrap_or_default())),
        }
    }
}

impl Queue {
    /// A queue whose dispatcher runs on the current tokio runtime (or, made
    /// outside one, on the runtime of its first call).
    pub(super) fn new(wiring: Wiring) -> Self {
        Queue {
            shared: Arc::new(Shared {
                runtime: tokio::runtime::Handle::try_current().ok(),
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                misconfigured: watch::channel(None).0,
                wiring,
            }),
        }
    }

    /// The longest a call waits for its reply: one connection attempt and one reply.
    pub(super) fn limit(&self) -> Duration {
        self.shared.wiring.connect_timeout + self.shared.wiring.command_timeout
    }

    /// Queues `op` in `lane`, now: it reaches Redis after every call queued
    /// before it in that lane.
    pub(super) fn call(&self, lane: Lane, op: Op) -> Queued {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + self.limit();
        let sent = Arc::new(AtomicBool::new(false));
        self.enqueue(
            lane,
            EntryKind::Call(Call {
                op,
                reply,
                sent: sent.clone(),
            }),
        );
        Queued {
            rx,
            deadline,
            sent,
            misconfigured: self.shared.misconfigured.subscribe(),
        }
    }

    /// Resolves once every call queued before it (in `lane`) has its
    /// outcome, or fails as a call would once a call's time has passed.
    pub(super) async fn fence(&self, lane: Lane) -> Result<(), QueueError> {
        let (done, rx) = oneshot::channel();
        self.enqueue(lane, EntryKind::Fence(done));
        match tokio::time::timeout(self.limit(), rx).await {
            Ok(done) => done.map_err(|_| QueueError::Closed),
            Err(_) => Err(QueueError::Timeout { sent: false }),
        }
    }

    /// Runs `body` alone: after every call queued before it has its outcome,
    /// and before any call queued after it is sent. `body` gets the
    /// connection and must bound its own commands.
    pub(super) fn barrier(&self, body: BarrierBody) -> impl std::future::Future<Output = Result<(), QueueError>> {
        let (failed, rx) = oneshot::channel();
        {
            let mut state = lock(&self.shared.state);
            if state.closed {
                drop(state);
                return futures::future::ready(Err(QueueError::Closed)).left_future();
            }
            state.epoch += 1;
            state.barriers.push_back(Barrier { body, failed });
        }
        self.start();
        async move {
            match rx.await {
                // The body ran (and dropped the sender) or failed to.
                Ok(error) => Err(error),
                Err(_) => Ok(()),
            }
        }
        .right_future()
    }

    /// Accepts no more calls: those waiting fail with [`QueueError::Closed`];
    /// those sent get their replies.
    pub(super) fn close(&self) {
        let waiting: Vec<Entry> = {
            let mut state = lock(&self.shared.state);
            state.closed = true;
            for barrier in state.barriers.drain(..) {
                let _ = barrier.failed.send(QueueError::Closed);
            }
            state.lanes.drain().flat_map(|(_, entries)| entries).collect()
        };
        for entry in waiting {
            entry.fail(QueueError::Closed);
        }
        self.shared.wake.notify_one();
    }

    fn enqueue(&self, lane: Lane, kind: EntryKind) {
        {
            let mut state = lock(&self.shared.state);
            if state.closed {
                drop(state);
                Entry { epoch: 0, kind }.fail(QueueError::Closed);
                return;
            }
            let epoch = state.epoch;
            state.lanes.entry(lane).or_default().push_back(Entry { epoch, kind });
        }
        self.start();
    }

    /// Wakes the dispatcher, starting it the first time.
    fn start(&self) {
        let start = {
            let mut state = lock(&self.shared.state);
            !std::mem::replace(&mut state.dispatching, true)
        };
        if start {
            // Exempt from the cooperative budget: a send that yields would
            // let a later call overtake it.
            let dispatcher = tokio::task::unconstrained(dispatch(self.shared.clone()));
            match &self.shared.runtime {
                Some(runtime) => drop(runtime.spawn(dispatcher)),
                None => drop(tokio::spawn(dispatcher)),
            }
        }
        self.shared.wake.notify_one();
    }
}

impl Drop for Queue {
    /// A cache dropped without `close()` lets its dispatcher end too.
    fn drop(&mut self) {
        self.close();
    }
}

impl Entry {
    fn fail(self, error: QueueError) {
        match self.kind {
            EntryKind::Call(call) => {
                let _ = call.reply.send(Err(error));
            }
            // A fence has nothing to fail: what it waited for is over.
            EntryKind::Fence(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// A pipeline sent: the calls it carries and how their replies are found.
struct Sent {
    lane: Lane,
    /// In the order pipelines left, per dispatcher.
    seq: u64,
    pipe: redis::Pipeline,
    calls: Vec<SentCall>,
    /// Sent again once already (see [`unsent`]).
    again: bool,
}

struct SentCall {
    reply: oneshot::Sender<Result<Value, QueueError>>,
    found: Found,
}

/// Where a call's reply is in its pipeline's replies.
enum Found {
    At(usize),
    /// An append: its `XADD`'s reply, failed by the reply of the `PEXPIRE`
    /// its run of appends shares, if that failed.
    Xadd {
        at: usize,
        refresh: Option<usize>,
        key: String,
        body: String,
    },
    /// The `n`th of the `count` appends one Cluster script made (it replies
    /// with the last id).
    Scripted {
        at: usize,
        n: usize,
        count: usize,
        key: String,
        body: String,
    },
}

type Done = (Sent, Result<Vec<Value>, RedisError>);

/// The dispatcher: connects, sends each lane's calls in order, hands out
/// replies, runs barriers. Ends when the cache is closed and nothing is in
/// flight, or when the cache is gone.
async fn dispatch(shared: Arc<Shared>) {
    let cluster = matches!(shared.wiring.backend, Backend::Cluster(_));
    let (in_flight_max, batch_max) = if cluster {
        (1, CLUSTER_BATCH)
    } else {
        (SINGLE_IN_FLIGHT, SINGLE_BATCH)
    };
    let wiring = &shared.wiring;
    // Only a client whose settings redis-rs rejects fails here: then so does every call.
    let conn = wiring
        .backend
        .open(wiring.connect_timeout, wiring.command_timeout, CHANNEL_ROOM);
    let mut in_flight: FuturesUnordered<BoxFuture<'static, Done>> = FuturesUnordered::new();
    let mut busy: HashMap<Lane, usize> = HashMap::new();
    let mut barrier: Option<BoxFuture<'static, ()>> = None;
    let mut barriers_done: u64 = 0;
    let mut sent_so_far: u64 = 0;
    // Per lane, pipelines to send again (see `unsent`) once the lane has
    // nothing in flight, in the order they first left; the lane waits.
    let mut again: HashMap<Lane, Vec<Sent>> = HashMap::new();
    // Whether the connection has answered since it was made or last failed
    // (see the module docs): until then, one pipeline in flight per lane.
    let mut connected = false;
    if let Some((host, port)) = wiring.tls_server.clone() {
        tokio::spawn(probe(Arc::downgrade(&shared), host, port, wiring.connect_timeout));
    }
    loop {
        // Made before the state is read: a call queued after the read wakes it.
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let mut state = lock(&shared.state);
            if state.closed && in_flight.is_empty() && barrier.is_none() && again.is_empty() {
                state.dispatching = false;
                return;
            }
            let unusable = match (&conn, &*shared.misconfigured.borrow()) {
                (_, Some(why)) => Some(QueueError::Misconfigured(why.clone())),
                (Err(error), None) => Some(QueueError::Redis(error.clone())),
                _ => None,
            };
            match &conn {
                _ if unusable.is_some() => {
                    let error = unusable.expect("guarded");
                    let waiting: Vec<Entry> = state.lanes.drain().flat_map(|(_, entries)| entries).collect();
                    for barrier in state.barriers.drain(..) {
                        let _ = barrier.failed.send(error.clone());
                    }
                    drop(state);
                    for entry in waiting {
                        entry.fail(error.clone());
                    }
                }
                Ok(c) if barrier.is_none() => {
                    // Pipelines to send again go first, in their order.
                    let ready: Vec<Lane> = again
                        .keys()
                        .filter(|lane| busy.get(*lane).copied().unwrap_or(0) == 0)
                        .cloned()
                        .collect();
                    for lane in ready {
                        let mut pipelines = again.remove(&lane).unwrap_or_default();
                        pipelines.sort_by_key(|sent| sent.seq);
                        if !connected && pipelines.len() > 1 {
                            // The first alone, until the connection is back.
                            again.insert(lane.clone(), pipelines.split_off(1));
                        }
                        *busy.entry(lane).or_default() += pipelines.len();
                        for mut sent in pipelines {
                            sent.again = true;
                            in_flight.push(transmit(c.clone(), sent));
                        }
                    }
                    let lanes: Vec<Lane> = state
                        .lanes
                        .keys()
                        .filter(|lane| !again.contains_key(*lane))
                        .cloned()
                        .collect();
                    for lane in lanes {
                        let entries = state.lanes.get_mut(&lane).expect("listed");
                        let busy_now = busy.entry(lane.clone()).or_default();
                        loop {
                            // Fences at the head whose lane has nothing in flight.
                            while *busy_now == 0
                                && matches!(entries.front(), Some(Entry { kind: EntryKind::Fence(_), epoch }) if *epoch == barriers_done)
                            {
                                if let Some(Entry {
                                    kind: EntryKind::Fence(done),
                                    ..
                                }) = entries.pop_front()
                                {
                                    let _ = done.send(());
                                }
                            }
                            if *busy_now >= if connected { in_flight_max } else { 1 } {
                                break;
                            }
                            let mut calls = Vec::new();
                            while calls.len() < batch_max {
                                match entries.front() {
                                    Some(Entry {
                                        kind: EntryKind::Call(_),
                                        epoch,
                                    }) if *epoch == barriers_done => {
                                        let Some(Entry {
                                            kind: EntryKind::Call(call),
                                            ..
                                        }) = entries.pop_front()
                                        else {
                                            unreachable!("the front is a call")
                                        };
                                        // Its caller gave up before it was sent: never send it.
                                        if !call.reply.is_closed() {
                                            call.sent.store(true, Ordering::SeqCst);
                                            calls.push(call);
                                        }
                                    }
                                    _ => break,
                                }
                            }
                            if calls.is_empty() {
                                break;
                            }
                            *busy_now += 1;
                            sent_so_far += 1;
                            let sent = build(lane.clone(), sent_so_far, calls, cluster, wiring);
                            in_flight.push(transmit(c.clone(), sent));
                        }
                    }
                    state.lanes.retain(|_, entries| !entries.is_empty());
                    busy.retain(|_, n| *n > 0);
                    // The next barrier, once nothing of its epoch waits or flies.
                    let clear = in_flight.is_empty()
                        && again.is_empty()
                        && state
                            .lanes
                            .values()
                            .all(|entries| entries.front().is_none_or(|e| e.epoch > barriers_done));
                    if clear {
                        if let Some(Barrier { body, failed }) = state.barriers.pop_front() {
                            let run = body(c.clone());
                            barrier = Some(
                                async move {
                                    run.await;
                                    // Dropped unsent: the barrier's caller sees it ran.
                                    drop(failed);
                                }
                                .boxed(),
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = &mut woken => {}
            Some((sent, replies)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(n) = busy.get_mut(&sent.lane) {
                    *n = n.saturating_sub(1);
                }
                connected = match &replies {
                    Ok(_) => true,
                    Err(e) => connected && !(e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()),
                };
                match replies {
                    Err(error) if !sent.again && unsent(&error) => again.entry(sent.lane.clone()).or_default().push(sent),
                    replies => deliver(sent, replies, wiring),
                }
            }
            _ = async { barrier.as_mut().expect("guarded").await }, if barrier.is_some() => {
                barrier = None;
                barriers_done += 1;
            }
        }
    }
}

/// Builds one pipeline of `calls` (in order), the `seq`th to leave.
fn build(lane: Lane, seq: u64, calls: Vec<Call>, cluster: bool, wiring: &Wiring) -> Sent {
    let mut pipe = redis::pipe();
    let mut sent = Vec::with_capacity(calls.len());
    let mut calls = calls.into_iter().peekable();
    while let Some(Call { op, reply, .. }) = calls.next() {
        let at = pipe.len();
        let (topic, run) = match op {
            Op::Cmd(cmd) => {
                pipe.add_command(cmd);
                sent.push(SentCall {
                    reply,
                    found: Found::At(at),
                });
                continue;
            }
            Op::Append(first) => append_run(first, reply, &mut calls),
        };
        if cluster {
            // The run's events in one script, which announces them.
            let script = pipe
                .cmd("EVAL")
                .arg(wiring.append_script)
                .arg(1)
                .arg(&topic.physical)
                .arg(topic.max_events.unwrap_or(0))
                .arg(topic.ttl_ms);
            for (_, body) in &run {
                script.arg(body);
            }
            let count = run.len();
            sent.extend(run.into_iter().enumerate().map(|(n, (reply, body))| SentCall {
                reply,
                found: Found::Scripted {
                    at,
                    n,
                    count,
                    key: topic.key.clone(),
                    body,
                },
            }));
        } else {
            // The run's `XADD`s, then one `PEXPIRE`.
            for (_, body) in &run {
                let xadd = pipe.cmd("XADD").arg(&topic.physical);
                if let Some(max) = topic.max_events {
                    xadd.arg("MAXLEN").arg("=").arg(max);
                }
                xadd.arg("0-*").arg(super::entry::FIELD).arg(body);
            }
            let refresh = (topic.ttl_ms > 0).then(|| {
                pipe.cmd("PEXPIRE").arg(&topic.physical).arg(topic.ttl_ms);
                pipe.len() - 1
            });
            sent.extend(run.into_iter().enumerate().map(|(n, (reply, body))| SentCall {
                reply,
                found: Found::Xadd {
                    at: at + n,
                    refresh,
                    key: topic.key.clone(),
                    body,
                },
            }));
        }
    }
    Sent {
        lane,
        seq,
        pipe,
        calls: sent,
        again: false,
    }
}

/// Sends a pipeline; it comes back with its replies.
fn transmit(mut conn: Conn, sent: Sent) -> BoxFuture<'static, Done> {
    async move {
        let count = sent.pipe.len();
        let replies = match (&mut conn, &sent.lane) {
            (Conn::Cluster(c), Lane::Node(host, port)) => {
                let node = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                c.route_pipeline(sent.pipe.clone(), 0, count, node).await
            }
            (c, _) => c.req_packed_commands(&sent.pipe, 0, count).await,
        };
        (sent, replies)
    }
    .boxed()
}

/// Whether a pipeline failed before anything of it reached Redis, so that
/// sending it again cannot apply it twice: the connection could not be made,
/// or the socket was found closed when it was written (a broken pipe: the
/// connection's task had ended, or the peer had gone). A connection manager
/// learns that its socket closed (a Redis restart) only when it is next
/// used, and one whose last attempt to connect failed hands that failure to
/// the next request, however long ago it was: in both cases the first call
/// after Redis came back would fail. Such a pipeline is sent again, once.
pub(super) fn unsent(error: &RedisError) -> bool {
    // redis-rs keeps the I/O error's kind to itself; its text names it
    // ("broken pipe", or "Broken pipe (os error 32)").
    error.is_connection_refusal()
        || (error.is_connection_dropped() && error.to_string().to_ascii_lowercase().contains("broken pipe"))
}

/// The append `first` and the appends to the same topic right after it in
/// `calls`: the topic (with an empty body) and each one's reply and body.
#[allow(clippy::type_complexity)]
fn append_run(
    mut first: Append,
    reply: oneshot::Sender<Result<Value, QueueError>>,
    calls: &mut std::iter::Peekable<std::vec::IntoIter<Call>>,
) -> (Append, Vec<(oneshot::Sender<Result<Value, QueueError>>, String)>) {
    let mut run = vec![(reply, std::mem::take(&mut first.body))];
    while let Some(Call {
        op: Op::Append(next), ..
    }) = calls.peek()
    {
        if !next.same_topic(&first) {
            break;
        }
        let Some(Call {
            op: Op::Append(next),
            reply,
            ..
        }) = calls.next()
        else {
            unreachable!("peeked an append")
        };
        run.push((reply, next.body));
    }
    (first, run)
}

/// Hands each call its reply, and this process's readers the events appended.
fn deliver(sent: Sent, replies: Result<Vec<Value>, RedisError>, wiring: &Wiring) {
    let replies = match replies {
        Ok(replies) => replies,
        Err(error) => {
            let mut failed_topics: Vec<&str> = Vec::new();
            for call in &sent.calls {
                if let Found::Xadd { key, .. } | Found::Scripted { key, .. } = &call.found {
                    if failed_topics.last() != Some(&key.as_str()) {
                        failed_topics.push(key);
                    }
                }
            }
            for topic in failed_topics {
                (wiring.append_failed)(topic);
            }
            for call in sent.calls {
                let _ = call.reply.send(Err(QueueError::Redis(error.clone())));
            }
            return;
        }
    };
    let get = |at: usize| replies.get(at).cloned().unwrap_or(Value::Nil);
    // Appended events, offered in runs of consecutive indices per topic.
    let mut offers: Vec<(String, u64, Vec<String>)> = Vec::new();
    for call in sent.calls {
        let reply = match call.found {
            Found::At(at) => get(at),
            Found::Xadd { at, refresh, key, body } => {
                let refreshed = refresh.map(get);
                let reply = match refreshed {
                    Some(Value::ServerError(e)) => Value::ServerError(e),
                    _ => get(at),
                };
                note_append(&mut offers, &reply, key, body, wiring);
                reply
            }
            Found::Scripted {
                at,
                n,
                count,
                key,
                body,
            } => {
                let reply = match get(at) {
                    Value::BulkString(last) => {
                        // One script's appends get consecutive indices.
                        match super::entry::index_of(&String::from_utf8_lossy(&last)) {
                            Ok(last) => {
                                Value::BulkString(format!("0-{}", last + 1 - (count - 1 - n) as u64).into_bytes())
                            }
                            Err(_) => Value::BulkString(last),
                        }
                    }
                    other => other,
                };
                note_append(&mut offers, &reply, key, body, wiring);
                reply
            }
        };
        let _ = call.reply.send(Ok(reply));
    }
    for (key, first, bodies) in offers {
        let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
        (wiring.appended)(&key, first, &bodies);
    }
}

/// Adds an appended event to the offers, or lets the topic's readers look
/// for themselves when its append failed.
fn note_append(
    offers: &mut Vec<(String, u64, Vec<String>)>,
    reply: &Value,
    key: String,
    body: String,
    wiring: &Wiring,
) {
    let index = match reply {
        Value::BulkString(id) => super::entry::index_of(&String::from_utf8_lossy(id)).ok(),
        _ => None,
    };
    let Some(index) = index else {
        (wiring.append_failed)(&key);
        return;
    };
    if let Some((topic, first, bodies)) = offers.last_mut() {
        if *topic == key && *first + bodies.len() as u64 == index {
            bodies.push(body);
            return;
        }
    }
    offers.push((key, index, vec![body]));
}

/// Finds a TLS connection made to a server that speaks plain Redis: its
/// handshake would wait for the server's answer, which never comes (Redis
/// reads the TLS hello as an inline command and waits for its end of line),
/// until the connect timeout. So a plain `PING` goes to the same address over
/// TCP once, beside the first TLS connection: a plain Redis answers it
/// (`+PONG`, or `-NOAUTH ...`), a TLS server does not (it sends an alert, or
/// closes), and then every call fails at once with a clear error. The probe
/// carries nothing secret.
async fn probe(shared: Weak<Shared>, host: String, port: u16, timeout: Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let answer = tokio::time::timeout(timeout, async {
        let mut tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok()?;
        tcp.write_all(b"PING\r\n").await.ok()?;
        let mut first = [0u8; 1];
        tcp.read_exact(&mut first).await.ok()?;
        Some(first[0])
    })
    .await;
    if !matches!(answer, Ok(Some(b'+' | b'-'))) {
        return;
    }
    let Some(shared) = shared.upgrade() else { return };
    shared.misconfigured.send_replace(Some(format!(
        "the server at {host}:{port} speaks plain Redis, not TLS (it answered a plain PING): connect with \
         redis:// (or without `tls`), or enable TLS on the server"
    )));
    shared.wake.notify_one();
}

/// The hash tag of a physical key, as Redis Cluster reads it: between the
/// first `{` and the next `}`, if not empty; else the whole key.
pub(super) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tags_follow_redis_cluster_rules() {
        assert_eq!(hash_tag("p:{pubsub:run.1}:counter"), "pubsub:run.1");
        assert_eq!(hash_tag("p:{}x"), "p:{}x");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{b}{c}"), "b");
    }
}
