//! What the integration tests share.

use durable_agent_core::RedisTarget;

/// The Redis Cluster of `REDIS_CLUSTER_NODES` (comma-separated URLs; `npm
/// test` starts one). Missing, the test fails: a Cluster test never skips.
pub fn cluster() -> RedisTarget {
    let nodes = std::env::var("REDIS_CLUSTER_NODES")
        .expect("REDIS_CLUSTER_NODES lists the Redis Cluster to test on (npm test starts one)");
    RedisTarget::Cluster(nodes.split(',').map(str::to_owned).collect())
}
