//! Topic streams: every reader sees every event once, in order, from any
//! offset, with concurrent publishers, in memory and across Redis clients that
//! share nothing but the server (as two processes would).

use std::time::Duration;

use durable_agent_core::{
    MemoryCache, MemoryCacheConfig, PageRequest, RedisCache, RedisTarget, Retention, Store, Subscription,
};

mod common;
use common::shared;

fn redis_url() -> RedisTarget {
    RedisTarget::Url(common::redis_url())
}

fn redis(prefix: &str) -> RedisCache {
    redis_on(redis_url(), prefix)
}

/// A cache on the test Redis Cluster.
fn redis_cluster(prefix: &str) -> RedisCache {
    redis_on(common::cluster(), prefix)
}

fn redis_on(target: RedisTarget, prefix: &str) -> RedisCache {
    common::redis_cache(target, prefix, 60.0, None)
}

/// Two clients of the test Redis (two processes, as far as either knows)
/// under one prefix of their own.
fn two_clients() -> (RedisCache, RedisCache) {
    let prefix = unique_prefix();
    (redis(&prefix), redis(&prefix))
}

fn unique_prefix() -> String {
    common::unique_prefix("pubsub")
}

fn memory() -> Store {
    shared(MemoryCache::new(MemoryCacheConfig::default()))
}

/// Reads `count` events from `from` and returns their `n` fields, checking
/// each event's `index`.
async fn read_all(mut sub: Subscription, count: usize) -> Vec<u64> {
    let start = sub.position();
    let mut seen = Vec::new();
    while seen.len() < count {
        let page = tokio::time::timeout(Duration::from_secs(10), sub.next(64))
            .await
            .expect("events arrive")
            .unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_str(&page.events).unwrap();
        for event in events {
            assert_eq!(
                event["index"].as_u64().unwrap(),
                start + seen.len() as u64,
                "gap-free, in order"
            );
            seen.push(event["n"].as_u64().unwrap());
        }
    }
    seen
}

async fn concurrent_publishers_and_readers(publisher_store: Store, reader_store: Store) {
    let key = "pubsub:agent.stream.run";
    let retention = Retention::default();
    // Some history first, then readers at offsets 0 and 5, then more events
    // from 4 concurrent publishers.
    for n in 0..10u64 {
        publisher_store
            .append(key, &format!(r#"{{"n":{n}}}"#), &retention)
            .await
            .unwrap();
    }
    let from_zero = tokio::spawn(read_all(
        Subscription::new(reader_store.clone(), key.to_owned(), Some(0)),
        210,
    ));
    let from_five = tokio::spawn(read_all(
        Subscription::new(reader_store.clone(), key.to_owned(), Some(5)),
        205,
    ));
    let publishers: Vec<_> = (0..4u64)
        .map(|p| {
            let store = publisher_store.clone();
            tokio::spawn(async move {
                for i in 0..50u64 {
                    let n = 10 + p * 50 + i;
                    store
                        .append(key, &format!(r#"{{"n":{n}}}"#), &Retention::default())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let all = from_zero.await.unwrap();
    let tail = from_five.await.unwrap();
    // Exactly once: the 210 distinct events, and the offset-5 reader saw the same sequence from 5.
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..210).collect::<Vec<_>>());
    assert_eq!(tail, all[5..].to_vec());
    // Per publisher, its own events stay in its publish order.
    for p in 0..4u64 {
        let mine: Vec<u64> = all
            .iter()
            .copied()
            .filter(|n| (10 + p * 50..10 + p * 50 + 50).contains(n))
            .collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_readers_see_every_event_once_in_order() {
    let store = memory();
    concurrent_publishers_and_readers(store.clone(), store).await;
}

/// Readers on a client of their own (connections, signals, tailer), as in
/// another process: live events reach them through the tailer (`XREAD`) on
/// one Redis, through the topic's sharded channel on a Cluster.
async fn readers_on_another_client(target: RedisTarget) {
    let prefix = unique_prefix();
    let publisher = redis_on(target.clone(), &prefix);
    let reader = redis_on(target, &prefix);
    concurrent_publishers_and_readers(shared(publisher.clone()), shared(reader.clone())).await;
    publisher.clear().await.unwrap();
    publisher.close();
    reader.close();
}

/// Readers on the publishing client: live events reach them as offers of the
/// appends themselves.
async fn readers_on_the_publishing_client(target: RedisTarget) {
    let cache = redis_on(target, &unique_prefix());
    concurrent_publishers_and_readers(shared(cache.clone()), shared(cache.clone())).await;
    cache.clear().await.unwrap();
    cache.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_readers_on_another_client_see_every_event_once_in_order() {
    readers_on_another_client(redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_readers_on_the_publishing_client_see_every_event_once_in_order() {
    readers_on_the_publishing_client(redis_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_readers_on_another_client_see_every_event_once_in_order() {
    readers_on_another_client(common::cluster()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_readers_on_the_publishing_client_see_every_event_once_in_order() {
    readers_on_the_publishing_client(common::cluster()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_readers_of_topics_on_every_node_hear_each_live_event() {
    // Topics hash to slots on different primaries; a reader waiting on each
    // one (caught up, so only a wake-up brings its events) gets them all.
    let prefix = unique_prefix();
    let cache = redis_cluster(&prefix);
    let publisher = shared(cache.clone());
    let reader = shared(redis_cluster(&prefix));
    let topics: Vec<String> = (0..12).map(|t| format!("pubsub:run.{t}")).collect();
    let readers: Vec<_> = topics
        .iter()
        .map(|topic| tokio::spawn(read_all(Subscription::new(reader.clone(), topic.clone(), Some(0)), 20)))
        .collect();
    for n in 0..20u64 {
        for topic in &topics {
            publisher
                .append(topic, &format!(r#"{{"n":{n}}}"#), &Retention::default())
                .await
                .unwrap();
        }
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), (0..20).collect::<Vec<_>>());
    }
    cache.clear().await.unwrap();
    cache.close();
}

/// The `gen` of each of `count` events a reader gets next, checking indices.
async fn read_gens(sub: &mut Subscription, count: usize) -> Vec<u64> {
    let mut gens = Vec::new();
    while gens.len() < count {
        let from = sub.position();
        let page = tokio::time::timeout(Duration::from_secs(10), sub.next(64))
            .await
            .expect("events arrive")
            .unwrap();
        let events: Vec<serde_json::Value> = serde_json::from_str(&page.events).unwrap();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["index"].as_u64().unwrap(), from + i as u64);
            gens.push(event["gen"].as_u64().unwrap());
        }
    }
    gens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_deleted_and_written_again_elsewhere_is_read_as_it_now_is() {
    // This process holds events 0..10 of the topic's first life (offered to
    // its reader); another process deletes the topic and writes it again. A
    // reader that starts now must get the second life only, never the
    // events this process still holds from the first.
    let (here, elsewhere) = two_clients();
    let key = "pubsub:agent.stream.reborn";
    let retention = Retention::default();
    let append = |cache: &RedisCache, gen: u64| {
        let cache = cache.clone();
        async move {
            cache
                .log_append(key, &format!(r#"{{"gen":{gen}}}"#), &retention)
                .await
                .unwrap()
        }
    };
    for _ in 0..5 {
        append(&here, 1).await;
    }
    let mut first_life = Subscription::new(shared(here.clone()), key.to_owned(), Some(0));
    assert_eq!(read_gens(&mut first_life, 5).await, vec![1; 5]);
    let waiting = tokio::spawn(async move {
        let gens = read_gens(&mut first_life, 5).await;
        (first_life, gens)
    });
    for _ in 0..5 {
        append(&here, 1).await;
    }
    let (first_life, gens) = waiting.await.unwrap();
    assert_eq!(gens, vec![1; 5]);

    elsewhere.delete(key).await.unwrap();
    for _ in 0..7 {
        append(&elsewhere, 2).await;
    }
    let mut second_life = Subscription::new(shared(here.clone()), key.to_owned(), Some(0));
    assert_eq!(read_gens(&mut second_life, 7).await, vec![2; 7]);
    let more = tokio::spawn(async move { read_gens(&mut second_life, 3).await });
    for _ in 0..3 {
        append(&elsewhere, 2).await;
    }
    assert_eq!(more.await.unwrap(), vec![2; 3], "indices 7..10 of the second life");
    drop(first_life);
    here.clear().await.unwrap();
    here.close();
    elsewhere.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_another_program_wrote_is_delivered_as_a_value_and_the_stream_goes_on() {
    let (publisher, reader) = two_clients();
    let key = "pubsub:mixed";
    let retention = Retention::default();
    publisher.log_append(key, r#"{"n":0}"#, &retention).await.unwrap();
    let mut sub = Subscription::new(shared(reader.clone()), key.to_owned(), Some(0));
    let first = sub.next(64).await.unwrap();
    assert_eq!(first.count, 1);
    // Caught up and waiting: what arrives now comes through the tailer.
    let waiting = tokio::spawn(async move {
        let mut events: Vec<serde_json::Value> = Vec::new();
        while events.len() < 3 {
            let page = tokio::time::timeout(Duration::from_secs(10), sub.next(64))
                .await
                .expect("events arrive")
                .unwrap();
            events.extend(serde_json::from_str::<Vec<serde_json::Value>>(&page.events).unwrap());
        }
        events
    });
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut raw = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(publisher.key(key))
        .arg("0-*")
        .arg("e")
        .arg(&b"\xff\xfe not UTF-8"[..])
        .query_async(&mut raw)
        .await
        .unwrap();
    publisher.log_append(key, r#"{"n":2}"#, &retention).await.unwrap();
    publisher.log_append(key, r#"{"n":3}"#, &retention).await.unwrap();
    let events = waiting.await.unwrap();
    assert_eq!(events[0]["index"], 1);
    assert!(
        events[0]["value"].as_str().unwrap().ends_with("not UTF-8"),
        "{}",
        events[0]
    );
    assert_eq!(
        (events[1]["index"].clone(), events[1]["n"].clone()),
        (2.into(), 2.into())
    );
    assert_eq!(
        (events[2]["index"].clone(), events[2]["n"].clone()),
        (3.into(), 3.into())
    );
    publisher.clear().await.unwrap();
    publisher.close();
    reader.close();
}

async fn retention_reports_expired_offsets(store: Store) {
    let key = "pubsub:retained";
    let retention = Retention {
        ttl: None,
        max_events: Some(3),
    };
    for n in 0..10 {
        store.append(key, &format!(r#"{{"n":{n}}}"#), &retention).await.unwrap();
    }
    let err = store.read(PageRequest::new(key, 2, 10)).await.unwrap_err();
    assert_eq!(err.code(), "ERR_OFFSET_EXPIRED");
    let page = store.read(PageRequest::new(key, 7, 10)).await.unwrap();
    assert_eq!((page.count, page.next), (3, 10));
    assert_eq!(store.next_index(key).await.unwrap(), 10);
    // From the oldest retained event: no error, the 3 retained events.
    let mut earliest = Subscription::new(store.clone(), key.to_owned(), None);
    let page = earliest.next(100).await.unwrap();
    assert_eq!((page.count, page.next), (3, 10));
    store.delete(key).await.unwrap();
    assert_eq!(store.next_index(key).await.unwrap(), 0);
    assert_eq!(store.append(key, "{}", &retention).await.unwrap(), 0);
}

#[tokio::test]
async fn memory_retention_reports_expired_offsets() {
    retention_reports_expired_offsets(memory()).await;
}

#[tokio::test]
async fn redis_retention_reports_expired_offsets() {
    let cache = redis(&unique_prefix());
    retention_reports_expired_offsets(shared(cache.clone())).await;
    cache.clear().await.unwrap();
}

/// Appends made together: each topic's events in the order given, an event
/// that cannot be stored (not an object, or a topic key holding another type)
/// fails alone, and a waiting reader gets each topic's events.
async fn batched_appends(cache: RedisCache) {
    let store = shared(cache.clone());
    cache.set("pubsub:taken", "\"a string\"", None).await.unwrap();
    let waiting = tokio::spawn(read_all(
        Subscription::new(store.clone(), "pubsub:a".into(), Some(0)),
        3,
    ));
    let appends: Vec<(String, String)> = [
        ("a", r#"{"n":0}"#),
        ("b", r#"{"n":0}"#),
        ("taken", r#"{"n":0}"#),
        ("a", r#"{"n":1}"#),
        ("b", "[1]"),
        ("b", r#"{"n":1,"index":99}"#),
        ("a", r#"{"n":2}"#),
    ]
    .into_iter()
    .map(|(topic, event)| (format!("pubsub:{topic}"), event.to_owned()))
    .collect();
    let retention = Retention::default();
    // Made one after another, awaited together: they share pipelines.
    let appending: Vec<_> = appends
        .iter()
        .map(|(topic, event)| store.append(topic, event, &retention))
        .collect();
    let outcomes = futures::future::join_all(appending).await;
    let codes: Vec<Result<u64, &str>> = outcomes
        .iter()
        .map(|o| o.as_ref().map(|i| *i).map_err(|e| e.code()))
        .collect();
    assert_eq!(
        codes,
        [
            Ok(0),
            Ok(0),
            Err("ERR_WRONG_TYPE"),
            Ok(1),
            Err("ERR_INVALID_VALUE"),
            Ok(1),
            Ok(2)
        ]
    );
    assert_eq!(waiting.await.unwrap(), [0, 1, 2]);
    let b = read_all(Subscription::new(store.clone(), "pubsub:b".into(), Some(0)), 2).await;
    assert_eq!(b, [0, 1]);
    // Nothing was appended to the key of another type.
    assert_eq!(
        cache.get("pubsub:taken").await.unwrap().as_deref(),
        Some("\"a string\"")
    );
    // One call alone goes the same way.
    assert_eq!(store.append("pubsub:a", r#"{"n":3}"#, &retention).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_batched_appends_keep_each_topics_order_and_fail_alone() {
    let prefix = unique_prefix();
    let cache = redis(&prefix);
    batched_appends(cache.clone()).await;
    // The topic's TTL was refreshed (once, after its last event of the batch).
    let mut conn = redis::Client::open(std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(cache.key("pubsub:b"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "PTTL {ttl}");
    cache.clear().await.unwrap();
    cache.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_batched_appends_keep_each_topics_order_and_fail_alone() {
    let cache = redis_cluster(&unique_prefix());
    batched_appends(cache.clone()).await;
    cache.clear().await.unwrap();
    cache.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_pages_read_ahead_are_taken_without_waiting() {
    let cache = redis(&unique_prefix());
    let store = shared(cache.clone());
    let events: Vec<String> = (0..100).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    store
        .append_many("pubsub:t", &events, &Retention::default())
        .await
        .unwrap();
    let mut sub = Subscription::new(store.clone(), "pubsub:t".into(), Some(0));
    assert!(sub.try_next(10).unwrap().is_none(), "nothing was read ahead yet");
    let mut seen = Vec::new();
    let mut taken_at_once = 0;
    let page_ns = |page: durable_agent_core::Page| -> Vec<u64> {
        let events: Vec<serde_json::Value> = serde_json::from_str(&page.events).unwrap();
        events.iter().map(|e| e["n"].as_u64().unwrap()).collect()
    };
    // The first page is read now; each full page starts the read of the next,
    // which `try_next` hands out once it has arrived, without a wait.
    seen.extend(page_ns(sub.next(10).await.unwrap()));
    while seen.len() < 100 {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let page = loop {
            if let Some(page) = sub.try_next(10).unwrap() {
                break page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page read ahead never arrived"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        taken_at_once += 1;
        seen.extend(page_ns(page));
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    assert_eq!(taken_at_once, 9);
    // Caught up: nothing ready, and the reader waits as before.
    assert!(sub.try_next(10).unwrap().is_none());
    store
        .append("pubsub:t", r#"{"n":100}"#, &Retention::default())
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), sub.next(10))
        .await
        .unwrap();
    assert_eq!(page_ns(next.unwrap()), [100]);
    cache.clear().await.unwrap();
    cache.close();
}

/// Calls made on a cache that has not connected yet keep their order: the
/// pipelines that wait for the first connection leave one at a time (the
/// connection wakes its waiters in an order of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_made_before_the_first_connection_keep_their_order() {
    let prefix = unique_prefix();
    let events: Vec<String> = (0..400).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    for attempt in 0..10 {
        // A new cache each time: nothing connected yet.
        let cache = redis(&prefix);
        let key = format!("pubsub:first-connection-{attempt}");
        let appends: Vec<_> = events
            .iter()
            .map(|e| cache.log_append(&key, e, &Retention::default()))
            .collect();
        for append in appends {
            append.await.unwrap();
        }
        let page = cache.log_read(PageRequest::new(&key, 0, 1000)).await.unwrap();
        let stored: Vec<serde_json::Value> = serde_json::from_str(&page.events).unwrap();
        let order: Vec<u64> = stored.iter().map(|e| e["n"].as_u64().unwrap()).collect();
        assert_eq!(order, (0..400).collect::<Vec<_>>(), "attempt {attempt}");
        cache.clear().await.unwrap();
        cache.close();
    }
}
