//! The Redis cache against a real server (`REDIS_URL`, else 127.0.0.1:6379).

use std::time::{Duration, Instant};

use durable_agent_core::{RedisCache, RedisCacheConfig, RedisCacheOptions, RedisTarget, RunRecords as _};

mod common;

fn redis_url() -> String {
    common::redis_url()
}

/// A cache under a prefix of its own, so tests never see each other's keys.
fn cache(ttl_seconds: f64) -> RedisCache {
    cache_on(RedisTarget::Url(redis_url()), ttl_seconds)
}

fn cache_on(target: RedisTarget, ttl_seconds: f64) -> RedisCache {
    common::redis_cache(target, &common::unique_prefix("core"), ttl_seconds, Some(2000.0))
}

#[tokio::test]
async fn contract_round_trip() {
    let c = cache(60.0);
    c.set("v", r#"{"a":[1,2.5,null,true,"s"]}"#, None).await.unwrap();
    assert_eq!(
        c.get("v").await.unwrap().as_deref(),
        Some(r#"{"a":[1,2.5,null,true,"s"]}"#)
    );
    assert_eq!(c.get("missing").await.unwrap(), None);
    for v in ["\"a\"", "\"b\"", "\"c\""] {
        c.list_push("l", v).await.unwrap();
    }
    assert_eq!(c.list_length("l").await.unwrap(), 3);
    assert_eq!(c.list_from_to("l", 1, 2).await.unwrap(), r#"["b","c"]"#);
    assert_eq!(c.list_from_to("l", -1, -1).await.unwrap(), r#"["c"]"#);
    assert_eq!(c.get("l").await.unwrap().as_deref(), Some(r#"["a","b","c"]"#));
    assert_eq!(c.increment("n").await.unwrap(), 1);
    assert_eq!(c.increment("n").await.unwrap(), 2);
    assert_eq!(c.get("n").await.unwrap().as_deref(), Some("2"));
    let e = c.list_push("v", "1").await.unwrap_err();
    assert_eq!(e.code(), "ERR_WRONG_TYPE");
    c.delete("v").await.unwrap();
    assert_eq!(c.get("v").await.unwrap(), None);
    c.clear().await.unwrap();
    assert_eq!(c.list_length("l").await.unwrap(), 0);
    assert_eq!(c.get("n").await.unwrap(), None);
}

#[tokio::test]
async fn list_push_indexed_is_atomic_under_concurrency() {
    let c = cache(60.0);
    let calls = (0..500).map(|i| {
        let c = c.clone();
        async move {
            c.list_push_indexed("run", "run:counter", &format!(r#"{{"i":{i},"index":-5}}"#))
                .await
        }
    });
    let mut indices: Vec<i64> = futures::future::try_join_all(calls).await.unwrap();
    indices.sort_unstable();
    assert_eq!(indices, (0..500).collect::<Vec<_>>());
    let list: Vec<serde_json::Value> = serde_json::from_str(&c.list_from_to("run", 0, -1).await.unwrap()).unwrap();
    let stored: Vec<i64> = list.iter().map(|v| v["index"].as_i64().unwrap()).collect();
    assert_eq!(stored, (0..500).collect::<Vec<_>>());
    assert_eq!(c.list_push_indexed("run", "run:counter", "{}").await.unwrap(), 500);
    assert_eq!(c.list_from_to("run", -1, -1).await.unwrap(), r#"[{"index":500}]"#);
    c.clear().await.unwrap();
}

#[tokio::test]
async fn ttl_applies_to_every_write() {
    let c = cache(1.0);
    c.set("v", "1", None).await.unwrap();
    c.list_push_indexed("l", "l:counter", "{}").await.unwrap();
    c.set("forever", "1", Some(None)).await.unwrap();
    let start = Instant::now();
    loop {
        let gone = c.get("v").await.unwrap().is_none()
            && c.list_length("l").await.unwrap() == 0
            && c.get("l:counter").await.unwrap().is_none();
        if gone {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "keys did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.get("forever").await.unwrap().as_deref(), Some("1"));
    c.clear().await.unwrap();
}

#[tokio::test]
async fn unreachable_server_fails_fast_with_its_address() {
    let config = RedisCacheConfig::from_options(
        RedisTarget::Url("redis://127.0.0.1:1".into()),
        RedisCacheOptions {
            connect_timeout_ms: Some(1000.0),
            command_timeout_ms: Some(1000.0),
            ..Default::default()
        },
    )
    .unwrap();
    let c = RedisCache::new(config).unwrap();
    let start = Instant::now();
    let err = c.get("k").await.unwrap_err();
    assert_eq!(err.code(), "ERR_REDIS_UNAVAILABLE");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn closed_cache_refuses_calls() {
    let c = cache(60.0);
    c.set("k", "1", None).await.unwrap();
    c.close();
    assert_eq!(c.get("k").await.unwrap_err().code(), "ERR_CACHE_CLOSED");
}

/// A cache on the test Redis Cluster.
fn cluster_cache() -> RedisCache {
    cache_on(common::cluster(), 60.0)
}

#[tokio::test]
async fn cluster_keys_on_every_node_work_and_clear_removes_them_all() {
    let c = cluster_cache();
    // 60 keys of each kind hash to slots all over the cluster.
    for i in 0..60 {
        c.set(&format!("v{i}"), &i.to_string(), None).await.unwrap();
        c.list_push(&format!("l{i}"), "\"x\"").await.unwrap();
        assert_eq!(c.increment(&format!("n{i}")).await.unwrap(), 1);
        let index = c
            .list_push_indexed(&format!("s{i}"), &format!("s{i}:counter"), r#"{"a":1}"#)
            .await
            .unwrap();
        assert_eq!(index, 0);
    }
    assert_eq!(c.get("v7").await.unwrap().as_deref(), Some("7"));
    assert_eq!(c.list_from_to("s7", 0, -1).await.unwrap(), r#"[{"index":0,"a":1}]"#);
    // Every key is `<prefix>{<key>}...`: a SCAN on each primary finds them all.
    assert_eq!(c.keys_matching("{v", "").await.unwrap().len(), 60);
    assert_eq!(c.keys_matching("{", "").await.unwrap().len(), 60 * 5);
    c.clear().await.unwrap();
    assert!(c.keys_matching("{", "").await.unwrap().is_empty());
    assert_eq!(c.get("v7").await.unwrap(), None);
    c.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_list_push_indexed_is_atomic_under_concurrency() {
    let c = cluster_cache();
    let calls: Vec<_> = (0..500)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                c.list_push_indexed("stream", "stream:counter", &format!(r#"{{"i":{i}}}"#))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut indices = Vec::new();
    for call in calls {
        indices.push(call.await.unwrap());
    }
    indices.sort_unstable();
    assert_eq!(indices, (0..500).collect::<Vec<i64>>());
    assert_eq!(c.list_length("stream").await.unwrap(), 500);
    c.clear().await.unwrap();
    c.close();
}

/// Each future on a task of its own, spawned last one first.
fn spawn_reversed<F>(futures: Vec<F>) -> Vec<tokio::task::JoinHandle<F::Output>>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut handles: Vec<_> = futures.into_iter().rev().map(tokio::spawn).collect();
    handles.reverse();
    handles
}

/// Calls are queued when they are made, not when their futures are first
/// polled: 10,000 of each kind, polled in the reverse of the order they were
/// made in, on more than one worker thread, still take effect in call order.
async fn calls_keep_the_order_they_were_made_in(c: RedisCache) {
    const N: usize = 10_000;
    let sets: Vec<_> = (0..N).map(|i| c.set("k", &i.to_string(), None)).collect();
    let pushes: Vec<_> = (0..N).map(|i| c.list_push("l", &i.to_string())).collect();
    let indexed: Vec<_> = (0..N)
        .map(|i| c.list_push_indexed("p", "p:counter", &format!(r#"{{"i":{i}}}"#)))
        .collect();
    let increments: Vec<_> = (0..N).map(|_| c.increment("n")).collect();
    for handle in spawn_reversed(sets) {
        handle.await.unwrap().unwrap();
    }
    for handle in spawn_reversed(pushes) {
        handle.await.unwrap().unwrap();
    }
    let indices: Vec<i64> = futures::future::join_all(spawn_reversed(indexed))
        .await
        .into_iter()
        .map(|h| h.unwrap().unwrap())
        .collect();
    let counted: Vec<i64> = futures::future::join_all(spawn_reversed(increments))
        .await
        .into_iter()
        .map(|h| h.unwrap().unwrap())
        .collect();
    assert_eq!(c.get("k").await.unwrap().as_deref(), Some("9999"));
    let list: Vec<u64> = serde_json::from_str(&c.list_from_to("l", 0, -1).await.unwrap()).unwrap();
    assert_eq!(list, (0..N as u64).collect::<Vec<_>>());
    assert_eq!(indices, (0..N as i64).collect::<Vec<_>>());
    assert_eq!(counted, (1..=N as i64).collect::<Vec<_>>());
    c.clear().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_the_order_they_were_made_in_on_one_redis() {
    calls_keep_the_order_they_were_made_in(cache(60.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_keep_the_order_they_were_made_in_on_a_cluster() {
    calls_keep_the_order_they_were_made_in(cluster_cache()).await;
}

/// A `clear()` runs between the calls made before it and those made after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_runs_between_the_calls_around_it() {
    for c in [cache(60.0), cluster_cache()] {
        let before: Vec<_> = (0..500).map(|i| c.set(&format!("b{i}"), "1", None)).collect();
        let clear = c.clear();
        let after: Vec<_> = (0..500).map(|i| c.set(&format!("a{i}"), "2", None)).collect();
        futures::future::join_all(after).await;
        clear.await.unwrap();
        futures::future::join_all(before).await;
        for i in [0, 250, 499] {
            assert_eq!(c.get(&format!("b{i}")).await.unwrap(), None);
            assert_eq!(c.get(&format!("a{i}")).await.unwrap().as_deref(), Some("2"));
        }
        c.clear().await.unwrap();
    }
}
