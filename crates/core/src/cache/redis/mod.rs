//! `RedisCache`: the shared cache, on one multiplexed, auto-reconnecting
//! connection (`redis::aio::ConnectionManager`), or on a Redis Cluster
//! (`redis::cluster_async::ClusterConnection`, see `connection.rs`).
//!
//! Concurrent calls share one socket (per node) and are pipelined by the
//! connection itself. A dropped connection fails the calls in flight with
//! `ERR_REDIS_UNAVAILABLE` and is re-established by the next call, so the same
//! object works again once Redis is back. Big reads on a single Redis take
//! connections of their own (`bulk_reader.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError, Script,
    TlsCertificates,
};

use super::memory::ttl_from_ms;
use crate::error::CacheError;
use crate::json;
use crate::signal::Signals;

mod bulk_reader;
mod cluster_tailer;
mod connection;
mod log;
mod runs;

use bulk_reader::{BulkReader, RawArray};
use connection::{Backend, Conn, Connection};

pub use runs::{RUN_COMMIT_SCRIPT, RUN_REQUEST_ABORT_SCRIPT};

/// Where Redis is.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// `redis://`, `rediss://` (TLS) or `redis+unix://` URL, with optional
    /// user, password and database: `redis://user:pass@host:6379/2`.
    Url(String),
    /// The same, spelled out.
    Parts {
        host: String,
        port: u16,
        username: Option<String>,
        password: Option<String>,
        db: i64,
        tls: bool,
    },
    /// A Redis Cluster: URLs of some of its nodes (the rest is discovered).
    /// All must use the same scheme and credentials.
    Cluster(Vec<String>),
}

/// TLS settings beyond the system's trust store.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// PEM certificates to trust instead of the built-in web roots (for a
    /// private CA or a self-signed server certificate).
    pub ca_pem: Option<Vec<u8>>,
}

/// Options of [`RedisCache`], already validated.
#[derive(Debug, Clone)]
pub struct RedisCacheConfig {
    pub target: RedisTarget,
    pub tls: Option<TlsConfig>,
    /// Prepended to every key: scope tenants and apps with it.
    pub key_prefix: String,
    /// TTL set by every write; `None` keeps keys until deleted.
    pub ttl: Option<Duration>,
    /// How long one attempt to (re)connect may take.
    pub connect_timeout: Duration,
    /// How long a command may wait for its reply.
    pub command_timeout: Duration,
}

impl RedisCacheConfig {
    pub const DEFAULT_KEY_PREFIX: &'static str = "mastra:cache:";
    pub const DEFAULT_TTL_SECONDS: f64 = 300.0;
    pub const DEFAULT_CONNECT_TIMEOUT_MS: f64 = 5_000.0;
    pub const DEFAULT_COMMAND_TIMEOUT_MS: f64 = 5_000.0;

    /// Builds a config from the JS option values, naming the option at fault.
    pub fn from_options(
        target: RedisTarget,
        tls: Option<TlsConfig>,
        key_prefix: Option<String>,
        ttl_seconds: Option<f64>,
        connect_timeout_ms: Option<f64>,
        command_timeout_ms: Option<f64>,
    ) -> Result<Self, CacheError> {
        let ttl = ttl_from_ms("ttlSeconds", ttl_seconds.unwrap_or(Self::DEFAULT_TTL_SECONDS) * 1000.0)?;
        let timeout = |option, ms: Option<f64>, default| -> Result<Duration, CacheError> {
            let ms = ms.unwrap_or(default);
            if !ms.is_finite() || ms <= 0.0 {
                return Err(CacheError::invalid_option(
                    option,
                    format!("must be a finite number > 0, got {ms}"),
                ));
            }
            Ok(Duration::from_secs_f64(ms / 1000.0))
        };
        let config = RedisCacheConfig {
            target,
            tls,
            key_prefix: key_prefix.unwrap_or_else(|| Self::DEFAULT_KEY_PREFIX.to_owned()),
            ttl,
            connect_timeout: timeout("connectTimeoutMs", connect_timeout_ms, Self::DEFAULT_CONNECT_TIMEOUT_MS)?,
            command_timeout: timeout("commandTimeoutMs", command_timeout_ms, Self::DEFAULT_COMMAND_TIMEOUT_MS)?,
        };
        config.node_infos()?; // reject a malformed URL now, not at the first call
        Ok(config)
    }

    /// The server, or a cluster's seed nodes, as connection infos.
    fn node_infos(&self) -> Result<Vec<ConnectionInfo>, CacheError> {
        let url_info = |option, url: &str| {
            url.into_connection_info()
                .map_err(|e| CacheError::invalid_option(option, format!("not a Redis URL ({e})")))
        };
        match &self.target {
            RedisTarget::Url(url) => Ok(vec![url_info("url", url)?]),
            RedisTarget::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(CacheError::invalid_option(
                        "cluster.nodes",
                        "must list at least one node",
                    ));
                }
                let infos = urls
                    .iter()
                    .map(|url| url_info("cluster.nodes", url))
                    .collect::<Result<Vec<_>, _>>()?;
                if infos.iter().any(|info| matches!(info.addr(), ConnectionAddr::Unix(_))) {
                    return Err(CacheError::invalid_option(
                        "cluster.nodes",
                        "a cluster node needs a TCP address",
                    ));
                }
                let tls = |info: &ConnectionInfo| matches!(info.addr(), ConnectionAddr::TcpTls { .. });
                if infos.iter().any(|info| tls(info) != tls(&infos[0])) {
                    return Err(CacheError::invalid_option(
                        "cluster.nodes",
                        "mixes redis:// and rediss:// nodes",
                    ));
                }
                Ok(infos)
            }
            RedisTarget::Parts {
                host,
                port,
                username,
                password,
                db,
                tls,
            } => {
                if host.is_empty() {
                    return Err(CacheError::invalid_option("host", "must not be empty"));
                }
                let addr = if *tls {
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(host.clone(), *port)
                };
                let mut redis = RedisConnectionInfo::default().set_db(*db);
                if let Some(user) = username {
                    redis = redis.set_username(user);
                }
                if let Some(password) = password {
                    redis = redis.set_password(password);
                }
                let info = addr
                    .into_connection_info()
                    .map_err(|e| CacheError::invalid_option("host", e.to_string()))?;
                Ok(vec![info.set_redis_settings(redis)])
            }
        }
    }
}

/// Keys of one logical list and its counter (`<key>` and `<key>:counter`, as
/// Mastra's CachingPubSub names them) must live in one Redis Cluster slot so
/// that `listPushIndexed` can touch both atomically: the part before
/// `:counter` becomes the hash tag. A key that already contains `{` or `}`
/// is used as given, so callers can choose their own tags.
pub fn physical_key(prefix: &str, key: &str) -> String {
    if key.contains(['{', '}']) {
        return format!("{prefix}{key}");
    }
    let (base, suffix) = match key.strip_suffix(COUNTER_SUFFIX) {
        Some(base) if !base.is_empty() => (base, COUNTER_SUFFIX),
        _ => (key, ""),
    };
    format!("{prefix}{{{base}}}{suffix}")
}

const COUNTER_SUFFIX: &str = ":counter";

/// Allocates the next 0-based index, splices it into the object as its first
/// member, appends it and refreshes both TTLs: one atomic round trip.
/// KEYS: list, counter. ARGV: object text without `index`, TTL in ms (0 = none).
pub const LIST_PUSH_INDEXED_SCRIPT: &str = r#"
local i = redis.call('INCR', KEYS[2]) - 1
local body = ARGV[1]
local doc
if string.match(body, '^{%s*}$') then
  doc = '{"index":' .. i .. '}'
else
  doc = '{"index":' .. i .. ',' .. string.sub(body, 2)
end
redis.call('RPUSH', KEYS[1], doc)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return i
"#;

/// The Redis cache. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    connection: Mutex<Connection>,
    /// Topic pages and whole lists, when it can serve this Redis.
    bulk: Option<BulkReader>,
    /// Wake-ups for this process's readers of topic logs (see `log.rs`).
    signals: Arc<Signals>,
    tailer: log::TailerSlot,
    /// Live wake-ups on a cluster (sharded pub/sub; see `cluster_tailer.rs`).
    cluster_tailer: cluster_tailer::ClusterTailer,
    /// `host:port` for error messages; never the credentials.
    addr: String,
    key_prefix: String,
    ttl_ms: u64,
    connect_timeout: Duration,
    command_timeout: Duration,
    push_indexed: Script,
    run_commit: Script,
    run_request_abort: Script,
    append_leased: Script,
    append_notify: Script,
    lease_renew: Script,
    lease_release: Script,
}

impl RedisCache {
    /// Validates the config and prepares the client. No I/O happens here: the
    /// connection opens on the first call (and reopens after a failure).
    pub fn new(config: RedisCacheConfig) -> Result<Self, CacheError> {
        let infos = config.node_infos()?;
        let first = &infos[0];
        let addr = match &config.target {
            RedisTarget::Cluster(_) => format!("cluster {}", display_addr(first.addr())),
            _ => display_addr(first.addr()),
        };
        let tls_addr = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
        if tls_addr {
            // Fails only when a provider is already installed, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if config.tls.is_some() && !tls_addr {
            return Err(CacheError::invalid_option(
                "tls",
                "TLS options need a TLS connection (a rediss:// URL or tls: true)",
            ));
        }
        let certificates = config.tls.as_ref().map(|tls| TlsCertificates {
            client_tls: None,
            root_cert: tls.ca_pem.clone(),
        });
        let signals: Arc<Signals> = Arc::default();
        let cluster_tailer = cluster_tailer::ClusterTailer::new(signals.clone());
        let mut bulk = None;
        let backend = match &config.target {
            RedisTarget::Cluster(_) => {
                let builder = || {
                    let builder = ClusterClientBuilder::new(infos.clone())
                        .connection_timeout(config.connect_timeout)
                        .response_timeout(config.command_timeout);
                    match certificates.clone() {
                        Some(certificates) => builder.certs(certificates),
                        None => builder,
                    }
                };
                let invalid = |e: RedisError| CacheError::invalid_option("cluster.nodes", e.to_string());
                cluster_tailer
                    .prepare(builder(), config.connect_timeout, config.command_timeout)
                    .map_err(invalid)?;
                Backend::Cluster(builder().build().map_err(invalid)?)
            }
            _ => {
                let info = infos.into_iter().next().expect("one node");
                if certificates.is_none() {
                    bulk = BulkReader::new(&info, config.connect_timeout, config.command_timeout);
                }
                let client = match certificates {
                    Some(certificates) => Client::build_with_tls(info, certificates),
                    None => Client::open(info),
                };
                Backend::Single(client.map_err(|e| CacheError::invalid_option("tls", e.to_string()))?)
            }
        };
        Ok(RedisCache {
            inner: Arc::new(Inner {
                backend,
                connection: Mutex::new(Connection::NotStarted),
                bulk,
                signals,
                tailer: log::TailerSlot::default(),
                cluster_tailer,
                addr,
                key_prefix: config.key_prefix,
                ttl_ms: config.ttl.map_or(0, |ttl| ttl.as_millis() as u64),
                connect_timeout: config.connect_timeout,
                command_timeout: config.command_timeout,
                push_indexed: Script::new(LIST_PUSH_INDEXED_SCRIPT),
                run_commit: Script::new(RUN_COMMIT_SCRIPT),
                run_request_abort: Script::new(RUN_REQUEST_ABORT_SCRIPT),
                append_leased: Script::new(runs::APPEND_LEASED_SCRIPT),
                append_notify: Script::new(log::APPEND_NOTIFY_SCRIPT),
                lease_renew: Script::new(runs::LEASE_RENEW_SCRIPT),
                lease_release: Script::new(runs::LEASE_RELEASE_SCRIPT),
            }),
        })
    }

    /// Whether this cache talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    pub fn key_prefix(&self) -> &str {
        &self.inner.key_prefix
    }

    /// The Redis key for a cache key.
    pub fn key(&self, key: &str) -> String {
        physical_key(&self.inner.key_prefix, key)
    }

    /// The value at `key` as JSON text (a list as an array), `None` when absent.
    /// Always valid JSON (see [`json::valid_or_quoted`]).
    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        let k = self.key(key);
        let got: Result<Option<String>, CacheError> = self.run(key, redis::cmd("GET").arg(&k)).await;
        match got {
            // A list reads as one JSON array, as in the in-memory cache.
            Err(CacheError::WrongType { .. }) => self.list_from_to(key, 0, -1).await.map(Some),
            other => Ok(other?.map(json::valid_or_quoted)),
        }
    }

    /// `ttl`: `None` uses the default; `Some(None)` never expires.
    pub async fn set(&self, key: &str, json: &str, ttl: Option<Option<Duration>>) -> Result<(), CacheError> {
        let ttl_ms = ttl.map_or(self.inner.ttl_ms, |ttl| ttl.map_or(0, |d| d.as_millis().max(1) as u64));
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(json);
        if ttl_ms > 0 {
            cmd.arg("PX").arg(ttl_ms);
        }
        self.run(key, &cmd).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.run(key, redis::cmd("DEL").arg(self.key(key))).await
    }

    /// The keys matching `pattern`, a page at a time: see [`KeyScan`].
    pub(super) async fn scan(&self, pattern: &str) -> Result<KeyScan, CacheError> {
        let nodes = if self.is_cluster() {
            let slots: redis::Value = self.run("", redis::cmd("CLUSTER").arg("SLOTS")).await?;
            connection::primaries(&slots).into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        Ok(KeyScan {
            cache: self.clone(),
            pattern: pattern.to_owned(),
            nodes,
            cursor: 0,
        })
    }

    /// Deletes every key under this cache's prefix (SCAN + UNLINK, so other
    /// apps' keys and big lists do not block the server).
    pub async fn clear(&self) -> Result<(), CacheError> {
        let mut scan = self.scan(&format!("{}*", glob_escape(&self.inner.key_prefix))).await?;
        while let Some(keys) = scan.next_page().await? {
            let _: i64 = self.run("", redis::cmd("UNLINK").arg(&keys)).await?;
        }
        Ok(())
    }

    pub async fn list_push(&self, key: &str, json: &str) -> Result<(), CacheError> {
        let k = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("RPUSH").arg(&k).arg(json).ignore();
        self.expire_in(&mut pipe, &k);
        self.run_pipe(key, &pipe).await
    }

    pub async fn list_length(&self, key: &str) -> Result<usize, CacheError> {
        self.run(key, redis::cmd("LLEN").arg(self.key(key))).await
    }

    /// `LRANGE key from to` as the text of a JSON array.
    /// Every item is valid JSON (see [`json::valid_or_quoted`]).
    pub async fn list_from_to(&self, key: &str, from: i64, to: i64) -> Result<String, CacheError> {
        let k = self.key(key);
        let (from_arg, to_arg) = (from.to_string(), to.to_string());
        let args: [&[u8]; 4] = [b"LRANGE", k.as_bytes(), from_arg.as_bytes(), to_arg.as_bytes()];
        if let Some(reply) = self.bulk_array(&args).await? {
            if let Some(text) = json_array_of_bulks(&reply) {
                return Ok(text);
            }
        }
        let items: Vec<String> = self.run(key, redis::cmd("LRANGE").arg(&k).arg(from).arg(to)).await?;
        let items: Vec<String> = items.into_iter().map(json::valid_or_quoted).collect();
        Ok(json::array(items.iter().map(String::as_str)))
    }

    pub async fn increment(&self, key: &str) -> Result<i64, CacheError> {
        let k = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("INCR").arg(&k);
        self.expire_in(&mut pipe, &k);
        let (n,): (i64,) = self.run_pipe(key, &pipe).await?;
        Ok(n)
    }

    /// One atomic round trip: see [`LIST_PUSH_INDEXED_SCRIPT`].
    pub async fn list_push_indexed(
        &self,
        list_key: &str,
        counter_key: &str,
        object_json: &str,
    ) -> Result<i64, CacheError> {
        if list_key == counter_key {
            return Err(CacheError::InvalidValue(
                "listPushIndexed needs two different keys for the list and its counter".into(),
            ));
        }
        let body = json::without_index(object_json)?;
        let mut invocation = self.inner.push_indexed.prepare_invoke();
        invocation
            .key(self.key(list_key))
            .key(self.key(counter_key))
            .arg(&*body)
            .arg(self.inner.ttl_ms);
        let mut conn = self.connection()?;
        self.deadline(list_key, async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Closes the connection. Calls made afterwards fail with `ERR_CACHE_CLOSED`;
    /// calls in flight finish; readers waiting for events end.
    pub fn close(&self) {
        *self.inner.connection.lock().unwrap_or_else(|p| p.into_inner()) = Connection::Closed;
        if let Some(bulk) = &self.inner.bulk {
            bulk.close();
        }
        self.inner.tailer.stop();
        self.inner.cluster_tailer.stop();
        // Readers waiting for events wake, read, and meet ERR_CACHE_CLOSED,
        // rather than wait for ever on a cache that will not change.
        for key in self.inner.signals.keys() {
            self.inner.signals.notify(&key);
        }
    }

    /// Wake-ups for this process's readers of topic logs.
    pub fn signals(&self) -> &Arc<Signals> {
        &self.inner.signals
    }

    fn expire_in(&self, pipe: &mut redis::Pipeline, key: &str) {
        if self.inner.ttl_ms > 0 {
            pipe.cmd("PEXPIRE").arg(key).arg(self.inner.ttl_ms).ignore();
        }
    }

    /// The array reply to `args` from the bulk reader, when it can serve this
    /// Redis and this reply; `None`: run the command through redis-rs.
    async fn bulk_array(&self, args: &[&[u8]]) -> Result<Option<RawArray>, CacheError> {
        let Some(reader) = &self.inner.bulk else {
            return Ok(None);
        };
        self.connection()?; // a closed cache fails here, as on every call
        reader.array(args).await
    }

    async fn run<T: redis::FromRedisValue>(&self, key: &str, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.connection()?;
        self.deadline(key, async move { cmd.query_async(&mut conn).await })
            .await
    }

    async fn run_pipe<T: redis::FromRedisValue>(&self, key: &str, pipe: &redis::Pipeline) -> Result<T, CacheError> {
        let mut conn = self.connection()?;
        self.deadline(key, async move { pipe.query_async(&mut conn).await })
            .await
    }

    /// Bounds a call by the connect plus the command timeout, whatever the
    /// connection manager does underneath, and classifies its error.
    async fn deadline<T>(
        &self,
        key: &str,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, CacheError> {
        let limit = self.inner.connect_timeout + self.inner.command_timeout;
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(|e| self.classify(key, e)),
            Err(_) => Err(CacheError::Timeout {
                addr: self.inner.addr.clone(),
                timeout: limit,
            }),
        }
    }

    fn connection(&self) -> Result<Conn, CacheError> {
        let mut state = self.inner.connection.lock().unwrap_or_else(|p| p.into_inner());
        match &*state {
            Connection::Open(conn) => Ok(conn.clone()),
            Connection::Closed => Err(CacheError::Closed),
            Connection::NotStarted => {
                let conn = self
                    .inner
                    .backend
                    .open(self.inner.connect_timeout, self.inner.command_timeout)
                    .map_err(|e| self.classify("", e))?;
                *state = Connection::Open(conn.clone());
                Ok(conn)
            }
        }
    }

    pub(super) fn classify(&self, key: &str, error: RedisError) -> CacheError {
        let addr = self.inner.addr.clone();
        // A failed MULTI/EXEC reports its commands' errors inside one error.
        let code = error.code().map(str::to_owned).or_else(|| {
            let errors = error.clone().into_server_errors()?;
            errors.first().map(|(_, e)| e.code().to_owned())
        });
        match code.as_deref() {
            Some("WRONGTYPE") => {
                return CacheError::WrongType {
                    key: key.to_owned(),
                    expected: "another type",
                    found: "a value of a different Redis type",
                }
            }
            Some("WRONGPASS" | "NOAUTH" | "NOPERM") => return CacheError::Auth { addr, source: error },
            // Only a cluster node redirects, or refuses keys of several
            // slots: the cache was given one as if it were a whole Redis.
            Some("MOVED" | "ASK" | "CROSSSLOT") if !self.is_cluster() => {
                return CacheError::invalid_option(
                    "url",
                    format!("Redis at {addr} is a node of a Redis Cluster (it redirected a key elsewhere): connect with {{ cluster: {{ nodes: [...] }} }}"),
                )
            }
            _ => {}
        }
        // An ACL refusal inside a script is a plain ERR naming the user
        // (for example a Cluster append's SPUBLISH without channel access).
        let refused_in_script = error.to_string().contains("user executing the script can't");
        if error.kind() == redis::ErrorKind::AuthenticationFailed || refused_in_script {
            CacheError::Auth { addr, source: error }
        } else if error.is_timeout() {
            CacheError::Timeout {
                addr,
                timeout: self.inner.command_timeout,
            }
        } else if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            // A cluster none of whose nodes answers.
            || error.kind() == redis::ErrorKind::ClusterConnectionNotFound
        {
            CacheError::Unavailable { addr, source: error }
        } else {
            CacheError::Redis { addr, source: error }
        }
    }
}

/// A SCAN over every node that holds keys: the server, or each primary of a
/// cluster in turn (a SCAN cursor is per node).
pub(super) struct KeyScan {
    cache: RedisCache,
    pattern: String,
    /// Nodes still to scan, the current one last (`None`: the only server).
    nodes: Vec<Option<(String, u16)>>,
    cursor: u64,
}

impl KeyScan {
    /// The next non-empty page of physical keys; `None` once every node is done.
    pub(super) async fn next_page(&mut self) -> Result<Option<Vec<String>>, CacheError> {
        while let Some(node) = self.nodes.last().cloned() {
            let mut scan = redis::cmd("SCAN");
            scan.arg(self.cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(1000);
            let mut conn = self.cache.connection()?;
            let reply = self
                .cache
                .deadline("", async move { conn.on_node(node.as_ref(), &scan).await })
                .await?;
            let (next, keys): (u64, Vec<String>) =
                redis::from_redis_value(reply).map_err(|e| self.cache.classify("", e.into()))?;
            self.cursor = next;
            if next == 0 {
                self.nodes.pop();
            }
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
        Ok(None)
    }
}

/// The text of a JSON array of an `LRANGE` reply's items, each kept when it
/// is JSON (see [`json::valid_or_quoted`]). `None` when an item is not a
/// UTF-8 string: redis-rs reads the list instead, and says why.
fn json_array_of_bulks(reply: &RawArray) -> Option<String> {
    let mut out = String::with_capacity(2 + reply.len() * 200);
    out.push('[');
    for i in 0..reply.len() {
        let item = std::str::from_utf8(reply.element(i).bulk()?).ok()?;
        if i > 0 {
            out.push(',');
        }
        json::push_valid_or_quoted(&mut out, item);
    }
    out.push(']');
    Some(out)
}

fn display_addr(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
        ConnectionAddr::Unix(path) => format!("unix:{}", path.display()),
        other => format!("{other:?}"),
    }
}

/// Escapes glob metacharacters so a prefix matches only itself in SCAN MATCH.
pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_counter_share_a_hash_tag() {
        assert_eq!(physical_key("p:", "pubsub:run.1"), "p:{pubsub:run.1}");
        assert_eq!(physical_key("p:", "pubsub:run.1:counter"), "p:{pubsub:run.1}:counter");
        assert_eq!(physical_key("p:", ":counter"), "p:{:counter}");
        assert_eq!(physical_key("p:", "{mine}x"), "p:{mine}x");
    }

    #[test]
    fn glob_escape_keeps_prefix_literal() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn malformed_url_names_the_option() {
        let err = RedisCacheConfig::from_options(RedisTarget::Url("http://x".into()), None, None, None, None, None)
            .err()
            .unwrap();
        assert_eq!(err.code(), "ERR_INVALID_OPTION");
        assert!(err.to_string().contains("`url`"), "{err}");
    }

    #[test]
    fn negative_ttl_names_the_option() {
        let err = RedisCacheConfig::from_options(
            RedisTarget::Url("redis://127.0.0.1".into()),
            None,
            None,
            Some(-1.0),
            None,
            None,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("`ttlSeconds`"), "{err}");
    }
}
