//! The connection a [`super::RedisCache`]'s commands run on: one multiplexed,
//! auto-reconnecting connection to a single Redis, or a cluster connection
//! that routes each command to the primary of its key's slot. Both connect
//! on their first command and again after a failure (a connection manager
//! also as soon as its socket closes, so the call after a Redis restart does
//! not meet a dead socket). The command queue (`queue.rs`) owns it.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, Cmd, Pipeline, RedisError, RedisFuture, Value};

/// What a cache connects with: made at construction, no I/O.
// One per cache: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum Backend {
    Single(Client),
    Cluster(ClusterClient),
}

/// A connection commands run on. Scripts, pipelines and commands go through
/// [`ConnectionLike`], so the cache's code is the same for both kinds.
#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Backend {
    /// A lazy connection: it connects on its first command, and again after
    /// a failure, so a call while Redis is down fails within the timeouts and
    /// a later call succeeds once Redis is back. `room`: how many requests
    /// its channel holds (the queue never has more in flight, so none waits).
    pub(super) fn open(
        &self,
        connect_timeout: Duration,
        command_timeout: Duration,
        room: usize,
    ) -> Result<Conn, RedisError> {
        match self {
            Backend::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(command_timeout))
                    .set_pipeline_buffer_size(room)
                    // One attempt per call: a call while Redis is down fails
                    // within the connect timeout instead of waiting out a
                    // backoff schedule; the next call tries again.
                    .set_number_of_retries(0);
                Ok(Conn::Single(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?))
            }
            Backend::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(connect_timeout)
                    .set_response_timeout(command_timeout);
                Ok(Conn::Cluster(client.get_pending_async_connection_with_config(config)))
            }
        }
    }
}

impl Conn {
    /// Runs `cmd` on the node at `host:port` (a cluster's SCAN is per node).
    pub(super) async fn on_node(&mut self, node: Option<&(String, u16)>, cmd: &Cmd) -> Result<Value, RedisError> {
        match (self, node) {
            (Conn::Cluster(conn), Some((host, port))) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                conn.route_command(cmd.clone(), routing).await
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// The primaries of a cluster, from a `CLUSTER SLOTS` reply: each slot range
/// is `[start, end, [host, port, ...], replicas...]`.
pub(super) fn primaries(reply: &Value) -> Vec<(String, u16)> {
    let mut found: Vec<(String, u16)> = Vec::new();
    let Value::Array(ranges) = reply else {
        return found;
    };
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(text)) => text.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else { continue };
        if !found.iter().any(|(h, p)| *h == host && *p == port) {
            found.push((host, port));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn primaries_are_read_once_each_from_cluster_slots() {
        let range = |start, end, port| {
            Value::Array(vec![
                Value::Int(start),
                Value::Int(end),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("10.0.0.9"), Value::Int(9000), bulk("replica")]),
            ])
        };
        let reply = Value::Array(vec![range(0, 99, 7000), range(100, 199, 7001), range(200, 299, 7000)]);
        assert_eq!(
            primaries(&reply),
            vec![("10.0.0.1".to_owned(), 7000), ("10.0.0.1".to_owned(), 7001)]
        );
        assert!(primaries(&Value::Nil).is_empty());
    }
}
