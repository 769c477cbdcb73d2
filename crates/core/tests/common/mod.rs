//! What the integration tests share.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use durable_agent_core::{RedisCache, RedisCacheConfig, RedisCacheOptions, RedisTarget, RunRecords, Store};

/// A cache as the store that pubsub and agents take.
pub fn shared(cache: impl RunRecords) -> Store {
    Arc::new(cache)
}

/// The Redis Cluster of `REDIS_CLUSTER_NODES` (comma-separated URLs; `npm
/// test` starts one). Missing, the test fails: a Cluster test never skips.
pub fn cluster() -> RedisTarget {
    let nodes = std::env::var("REDIS_CLUSTER_NODES")
        .expect("REDIS_CLUSTER_NODES lists the Redis Cluster to test on (npm test starts one)");
    RedisTarget::Cluster(nodes.split(',').map(str::to_owned).collect())
}

/// The test Redis: `REDIS_URL`, else 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or run of this one) uses.
pub fn unique_prefix(label: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("test:{label}:{}:{nanos}:", std::process::id())
}

/// A Redis cache on `target` under `prefix`; `timeout_ms`: its connect and
/// command timeouts (absent: the defaults).
pub fn redis_cache(target: RedisTarget, prefix: &str, ttl_seconds: f64, timeout_ms: Option<f64>) -> RedisCache {
    let options = RedisCacheOptions {
        key_prefix: Some(prefix.to_owned()),
        ttl_seconds: Some(ttl_seconds),
        connect_timeout_ms: timeout_ms,
        command_timeout_ms: timeout_ms,
        ..Default::default()
    };
    RedisCache::new(RedisCacheConfig::from_options(target, options).unwrap()).unwrap()
}

/// Runs a command for a test's setup or teardown, which must succeed.
pub async fn command<T: redis::FromRedisValue>(conn: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(conn).await.unwrap()
}
