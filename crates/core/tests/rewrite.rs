//! A topic written again under a reader (cleared and republished, or rolled
//! back by a Redis failover that lost acknowledged events, whose indices then
//! go to new events) is `ERR_TOPIC_REWRITTEN` for that reader, never a silent
//! gap; readers it did not affect read on.
//!
//! The Redis tests run on a redis-server of their own (`redis-server` on
//! the PATH, as for the Cluster tests): the failover is emulated with
//! `CLIENT KILL TYPE normal`, which would cut everyone's connections on a
//! shared server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use durable_agent_core::log::{Identity, Received};
use durable_agent_core::{
    CacheError, MemoryCache, MemoryCacheConfig, PageRequest, RedisCache, RedisTarget, Retention, Store, Subscription,
};

const KEY: &str = "pubsub:agent.stream.rewritten";

/// A redis-server of the test's own on a free port, stopped when dropped.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis(server: &PrivateRedis, prefix: &str) -> RedisCache {
    common::redis_cache(RedisTarget::Url(server.url.clone()), prefix, 60.0, None)
}

fn unique_prefix() -> String {
    common::unique_prefix("rewrite")
}

/// Appends events `{"n": n}` for each `n` (each text its own, as real events
/// are, with their ids).
async fn append(store: &Store, ns: impl IntoIterator<Item = u64>, retention: &Retention) {
    for n in ns {
        store.append(KEY, &format!(r#"{{"n":{n}}}"#), retention).await.unwrap();
    }
}

/// The `n` of the next `count` events the reader gets, checking indices.
async fn read(sub: &mut Subscription, count: usize) -> Vec<u64> {
    let mut ns = Vec::new();
    while ns.len() < count {
        let from = sub.position();
        let page = match tokio::time::timeout(Duration::from_secs(10), sub.next(count - ns.len()))
            .await
            .expect("events arrive")
        {
            Ok(page) => page,
            // A failover's dropped connections: read on, as a subscription does.
            Err(CacheError::Unavailable { .. }) => continue,
            Err(error) => panic!("read failed: {error}"),
        };
        let events: Vec<serde_json::Value> = serde_json::from_str(&page.events).unwrap();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["index"].as_u64().unwrap(), from + i as u64, "gap-free, in order");
            ns.push(event["n"].as_u64().unwrap());
        }
    }
    ns
}

/// What the reader's next wait ends with, reading on after the transient
/// errors a failover causes (as a callback subscription does).
async fn next_error(mut sub: Subscription) -> CacheError {
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(10), sub.next(64)).await {
            Ok(Err(CacheError::Unavailable { .. })) => continue,
            Ok(Err(error)) => return error,
            Ok(Ok(page)) => panic!("expected an error, got events {}", page.events),
            Err(_) => panic!("the reader neither failed nor got events"),
        }
    }
    panic!("the reader kept meeting an unavailable Redis")
}

fn assert_rewritten(error: CacheError, received: u64) {
    match &error {
        CacheError::TopicRewritten { index, .. } => assert_eq!(*index, received),
        other => panic!("expected TopicRewritten, got {other:?}"),
    }
    assert_eq!(error.code(), "ERR_TOPIC_REWRITTEN");
}

/// A reader got events 0..5 and waits; the topic is deleted and written
/// again, past the reader's position, by `writer`.
async fn cleared_and_written_again(writer: Store, reader: Store) {
    let retention = Retention::default();
    append(&writer, 0..5, &retention).await;
    let mut sub = Subscription::new(reader, KEY.to_owned(), Some(0));
    assert_eq!(read(&mut sub, 5).await, vec![0, 1, 2, 3, 4]);
    let waiting = tokio::spawn(next_error(sub));
    writer.delete(KEY).await.unwrap();
    append(&writer, 100..108, &retention).await;
    assert_rewritten(waiting.await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_a_topic_cleared_and_written_again_under_a_reader_is_an_error() {
    let store = shared(MemoryCache::new(MemoryCacheConfig::default()));
    cleared_and_written_again(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_topic_cleared_and_written_again_under_a_reader_is_an_error() {
    let server = PrivateRedis::start();
    let prefix = unique_prefix();
    let (here, elsewhere) = (redis(&server, &prefix), redis(&server, &prefix));
    // Written by the reader's own client (its offers), then by another (its tailer).
    cleared_and_written_again(shared(here.clone()), shared(here.clone())).await;
    here.clear().await.unwrap();
    cleared_and_written_again(shared(elsewhere.clone()), shared(here.clone())).await;
    here.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_trimming_behind_a_reader_is_no_rewrite() {
    let store = shared(MemoryCache::new(MemoryCacheConfig::default()));
    let retention = Retention {
        max_events: Some(3),
        ..Retention::default()
    };
    append(&store, 0..3, &retention).await;
    let mut sub = Subscription::new(store.clone(), KEY.to_owned(), Some(0));
    assert_eq!(read(&mut sub, 3).await, vec![0, 1, 2]);
    // Event 2, the reader's last, is trimmed away; 3..6 follow it.
    append(&store, 3..6, &retention).await;
    assert_eq!(read(&mut sub, 3).await, vec![3, 4, 5]);
}

/// The tail a failover loses: events 3 and 4 of 0..5 vanish (the new
/// primary had not received them), the stream's last id goes back to index
/// 2, and every client's connection drops, as when a primary dies.
async fn lose_the_last_two_in_a_failover(server: &PrivateRedis, cache: &RedisCache) {
    let client = redis::Client::open(server.url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let key = cache.key(KEY);
    let _: i64 = common::command(&mut admin, &["XDEL", key.as_str(), "0-4", "0-5"]).await;
    let _: () = common::command(&mut admin, &["XSETID", key.as_str(), "0-3"]).await;
    let _: i64 = common::command(&mut admin, &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_events_lost_in_a_failover_and_reused_are_an_error_for_readers_who_got_them() {
    let server = PrivateRedis::start();
    let prefix = unique_prefix();
    let (writer, here, elsewhere) = (
        redis(&server, &prefix),
        redis(&server, &prefix),
        redis(&server, &prefix),
    );
    let retention = Retention::default();
    append(&shared(writer.clone()), 0..5, &retention).await;

    // Readers on the writing client and on another: one got all five (the
    // lost 3 and 4 included), one only 0..3 (nothing lost for it).
    let mut got_all = Subscription::new(shared(writer.clone()), KEY.to_owned(), Some(0));
    assert_eq!(read(&mut got_all, 5).await, vec![0, 1, 2, 3, 4]);
    let mut got_all_elsewhere = Subscription::new(shared(elsewhere.clone()), KEY.to_owned(), Some(0));
    assert_eq!(read(&mut got_all_elsewhere, 5).await, vec![0, 1, 2, 3, 4]);
    let mut got_three = Subscription::new(shared(here.clone()), KEY.to_owned(), Some(0));
    assert_eq!(read(&mut got_three, 3).await, vec![0, 1, 2]);
    let waiting = tokio::spawn(next_error(got_all));
    let waiting_elsewhere = tokio::spawn(next_error(got_all_elsewhere));

    lose_the_last_two_in_a_failover(&server, &writer).await;
    // After the failover, new events take indices 3, 4, 5, ...
    let after = shared(writer.clone());
    for n in 10..14 {
        // The first call may meet the killed connection; the next reconnects.
        let mut tries = 0;
        while let Err(error) = after.append(KEY, &format!(r#"{{"n":{n}}}"#), &retention).await {
            tries += 1;
            assert!(tries < 5, "append after the failover: {error}");
        }
    }
    assert_rewritten(waiting.await.unwrap(), 4);
    assert_rewritten(waiting_elsewhere.await.unwrap(), 4);
    assert_eq!(
        read(&mut got_three, 4).await,
        vec![10, 11, 12, 13],
        "indices 3..7, nothing skipped"
    );
    writer.clear().await.unwrap();
}

/// The check of one read, on `store`: after events 0..3 were read, the topic
/// is deleted. Absent, there is nothing to check (the reader waits); written
/// again below the reader's position, it was rewritten.
async fn read_checks(store: Store) {
    let retention = Retention::default();
    append(&store, 0..3, &retention).await;
    let page = store.read(PageRequest::new(KEY, 0, 10)).await.unwrap();
    let received = Received {
        index: 2,
        identity: Identity::Fingerprint(page.last.expect("a fingerprint of the last event")),
    };
    // Each read from 3 checks that event 2 is still the one received.
    let checked = |received| PageRequest {
        received: Some(received),
        ..PageRequest::new(KEY, 3, 10)
    };
    assert_eq!(
        store.read(checked(&received)).await.unwrap().count,
        0,
        "intact: nothing new"
    );
    append(&store, [3], &retention).await;
    let page = store.read(checked(&received)).await.unwrap();
    assert_eq!(
        (page.count, page.next),
        (1, 4),
        "intact: the new event, not the checked one"
    );
    store.delete(KEY).await.unwrap();
    let page = store.read(checked(&received)).await.unwrap();
    assert_eq!((page.count, page.next), (0, 3), "cleared, not written again: wait");
    append(&store, [100], &retention).await;
    match store.read(checked(&received)).await {
        Err(error) => assert_rewritten(error, 2),
        Ok(page) => panic!("expected TopicRewritten, got {page:?}"),
    }
}

#[tokio::test]
async fn memory_a_read_checks_the_event_received_before_it() {
    read_checks(shared(MemoryCache::new(MemoryCacheConfig::default()))).await;
}

#[tokio::test]
async fn redis_a_read_checks_the_event_received_before_it() {
    let server = PrivateRedis::start();
    read_checks(shared(redis(&server, &unique_prefix()))).await;
}

/// A cache as the store that pubsub takes.
fn shared(cache: impl durable_agent_core::RunRecords) -> durable_agent_core::Store {
    std::sync::Arc::new(cache)
}
