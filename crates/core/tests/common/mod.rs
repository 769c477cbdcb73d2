//! What the integration tests share.

use std::sync::Arc;

use durable_agent_core::{RedisTarget, RunRecords, Store};

/// A cache as the store that pubsub and agents take.
#[allow(dead_code)] // Not every test file uses every helper.
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
