//! `RedisCache`: the shared cache, on one multiplexed connection to a single
//! Redis, or on a Redis Cluster (`redis::cluster_async::ClusterConnection`,
//! see `connection.rs`).
//!
//! Every command goes through the cache's command queue (`queue.rs`), which
//! sends them in the order the cache's methods were called, in pipelines. A
//! dropped connection fails the calls in flight with `ERR_REDIS_UNAVAILABLE`
//! and is made again for the next call, so the same object works again once
//! Redis is back. Big reads on a single Redis take connections of their own
//! (`bulk_reader.rs`), after every earlier call of this cache has its reply.
//!
//! Every script is sent whole (`EVAL`), never by its hash: a hash unknown to
//! the server (the first call, or after a restart) would be loaded and
//! retried after calls made later. Redis caches the compiled script either
//! way; measured with redis-benchmark, 16 in a pipeline, `EVAL` of the
//! `listPushIndexed` script ran as fast as `EVALSHA` within the noise.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClientBuilder;
use redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    TlsCertificates, Value,
};

use super::memory::ttl_from_ms;
use crate::error::CacheError;
use crate::json;
use crate::signal::Signals;

mod bulk_reader;
mod cluster_tailer;
mod connection;
mod entry;
mod log;
mod queue;
mod runs;
mod tailer;

use bulk_reader::{BulkReader, RawArray};
use connection::{Backend, Conn};
use queue::{Lane, Op, Queue, QueueError, Wiring};

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

/// The options of a Redis cache as JS gives them (`RedisServerCache`'s), each
/// absent one taken from its default.
#[derive(Debug, Clone, Default)]
pub struct RedisCacheOptions {
    pub tls: Option<TlsConfig>,
    pub key_prefix: Option<String>,
    pub ttl_seconds: Option<f64>,
    pub connect_timeout_ms: Option<f64>,
    pub command_timeout_ms: Option<f64>,
}

impl RedisCacheConfig {
    pub const DEFAULT_KEY_PREFIX: &'static str = "mastra:cache:";
    pub const DEFAULT_TTL_SECONDS: f64 = 300.0;
    pub const DEFAULT_CONNECT_TIMEOUT_MS: f64 = 5_000.0;
    pub const DEFAULT_COMMAND_TIMEOUT_MS: f64 = 5_000.0;

    /// Builds a config from the JS option values, naming the option at fault.
    pub fn from_options(target: RedisTarget, options: RedisCacheOptions) -> Result<Self, CacheError> {
        let RedisCacheOptions {
            tls,
            key_prefix,
            ttl_seconds,
            connect_timeout_ms,
            command_timeout_ms,
        } = options;
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

/// Refuses a `tls.ca` that is not PEM certificates a TLS client can trust as
/// roots: found now, not as a handshake that fails or times out later.
fn check_ca(pem: &[u8]) -> Result<(), CacheError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let invalid = |reason: String| CacheError::invalid_option("tls.ca", reason);
    let mut roots = rustls::RootCertStore::empty();
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(format!("is not PEM certificates ({e:?})")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("holds a certificate that cannot be trusted as a root ({e})")))?;
        found += 1;
    }
    if found == 0 {
        return Err(invalid(
            "holds no PEM certificate (a `-----BEGIN CERTIFICATE-----` block)".into(),
        ));
    }
    Ok(())
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

/// The value at a key, whatever it holds: a list as its items (an array
/// reply), anything else as `GET` reads it (a string, nil, or WRONGTYPE).
/// One command, so it reads the key as it is at its place in the queue.
/// KEYS: the key.
const GET_SCRIPT: &str = r#"
if redis.call('TYPE', KEYS[1]).ok == 'list' then
  return redis.call('LRANGE', KEYS[1], 0, -1)
end
return redis.call('GET', KEYS[1])
"#;

/// `RPUSH` and the TTL refresh, atomically. KEYS: list. ARGV: item, TTL in ms (0 = none).
const LIST_PUSH_SCRIPT: &str = r#"
redis.call('RPUSH', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"#;

/// `INCR` and the TTL refresh, atomically. KEYS: counter. ARGV: TTL in ms (0 = none).
const INCREMENT_SCRIPT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if tonumber(ARGV[1]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#;

/// `EVAL script <number of keys> keys...`: add the arguments to it.
pub(super) fn eval(script: &str, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    cmd
}

/// The Redis cache. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// Every command goes through it, in call order (see `queue.rs`).
    queue: Queue,
    /// Topic pages and whole lists, when it can serve this Redis.
    bulk: Option<BulkReader>,
    /// Wake-ups for this process's readers of topic logs (see `log.rs`).
    signals: Arc<Signals>,
    tailer: tailer::TailerSlot,
    /// Live wake-ups on a cluster (sharded pub/sub; see `cluster_tailer.rs`).
    cluster_tailer: cluster_tailer::ClusterTailer,
    /// `host:port` for error messages; never the credentials.
    addr: String,
    key_prefix: String,
    ttl_ms: u64,
    connect_timeout: Duration,
    command_timeout: Duration,
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
        // Where a single Redis over TLS is, for the queue's plain-Redis probe.
        let tls_server = match (&config.target, first.addr()) {
            (RedisTarget::Cluster(_), _) => None,
            (_, ConnectionAddr::TcpTls { host, port, .. }) => Some((host.clone(), *port)),
            _ => None,
        };
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
        if let Some(pem) = config.tls.as_ref().and_then(|tls| tls.ca_pem.as_deref()) {
            check_ca(pem)?;
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
        let (offered, failed) = (signals.clone(), signals.clone());

        let queue = Queue::new(Wiring {
            backend: backend.clone(),
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            append_script: log::APPEND_NOTIFY_SCRIPT,
            appended: Box::new(move |key, first, bodies| log::offer(&offered, key, first, bodies)),
            append_failed: Box::new(move |key| failed.notify(key)),
            tls_server,
        });
        Ok(RedisCache {
            inner: Arc::new(Inner {
                backend,
                queue,
                bulk,
                signals,
                tailer: tailer::TailerSlot::default(),
                cluster_tailer,
                addr,
                key_prefix: config.key_prefix,
                ttl_ms: config.ttl.map_or(0, |ttl| ttl.as_millis() as u64),
                connect_timeout: config.connect_timeout,
                command_timeout: config.command_timeout,
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

    // Every method below queues its command when it is called, not when its
    // future is first polled: calls keep the order they were made in.

    /// The value at `key` as JSON text (a list as an array), `None` when absent.
    /// Always valid JSON (see [`json::valid_or_quoted`]).
    pub fn get(&self, key: &str) -> impl Future<Output = Result<Option<String>, CacheError>> + Send + 'static {
        let k = self.key(key);
        let reply = self.send::<Value>(key, &k, eval(GET_SCRIPT, &[&k]));
        async move {
            Ok(match reply.await? {
                Value::Nil => None,
                Value::Array(items) => {
                    let items: Vec<String> = items
                        .into_iter()
                        .map(|item| redis::from_redis_value::<String>(item).map(json::valid_or_quoted))
                        .collect::<Result<_, _>>()
                        .map_err(|e| CacheError::InvalidValue(format!("a list item is not text: {e}")))?;
                    Some(json::array(items.iter().map(String::as_str)))
                }
                other => Some(json::valid_or_quoted(
                    redis::from_redis_value::<String>(other)
                        .map_err(|e| CacheError::InvalidValue(format!("the value is not text: {e}")))?,
                )),
            })
        }
    }

    /// `ttl`: `None` uses the default; `Some(None)` never expires.
    pub fn set(
        &self,
        key: &str,
        json: &str,
        ttl: Option<Option<Duration>>,
    ) -> impl Future<Output = Result<(), CacheError>> + Send + 'static {
        let ttl_ms = ttl.map_or(self.inner.ttl_ms, |ttl| ttl.map_or(0, |d| d.as_millis().max(1) as u64));
        let k = self.key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&k).arg(json);
        if ttl_ms > 0 {
            cmd.arg("PX").arg(ttl_ms);
        }
        self.send(key, &k, cmd)
    }

    pub fn delete(&self, key: &str) -> impl Future<Output = Result<(), CacheError>> + Send + 'static {
        let k = self.key(key);
        self.send(key, &k, redis::cmd("DEL").arg(&k).clone())
    }

    /// Deletes every key under this cache's prefix (SCAN + UNLINK, so other
    /// apps' keys and big lists do not block the server). It runs alone:
    /// after every call made before it, and before any call made after it,
    /// which therefore survives it.
    pub fn clear(&self) -> impl Future<Output = Result<(), CacheError>> + Send + 'static {
        let (result, outcome) = tokio::sync::oneshot::channel();
        let cache = self.clone();
        let barrier = self.inner.queue.barrier(Box::new(move |conn| {
            Box::pin(async move {
                let _ = result.send(cache.clear_on(conn).await);
            })
        }));
        let cache = self.clone();
        async move {
            barrier.await.map_err(|e| cache.unsent("", e))?;
            outcome.await.unwrap_or(Err(CacheError::Closed))
        }
    }

    /// The body of [`Self::clear`], on the connection it has to itself.
    async fn clear_on(&self, conn: Conn) -> Result<(), CacheError> {
        let pattern = format!("{}*", glob_escape(&self.inner.key_prefix));
        let mut scan = KeyScan::new(self, Via::Direct(conn.clone()), &pattern).await?;
        while let Some(keys) = scan.next_page().await? {
            self.direct("", &conn, None, redis::cmd("UNLINK").arg(&keys)).await?;
        }
        Ok(())
    }

    /// The keys matching `pattern`, a page at a time: see [`KeyScan`].
    pub(super) async fn scan(&self, pattern: &str) -> Result<KeyScan, CacheError> {
        KeyScan::new(self, Via::Queue(self.clone()), pattern).await
    }

    pub fn list_push(&self, key: &str, json: &str) -> impl Future<Output = Result<(), CacheError>> + Send + 'static {
        let k = self.key(key);
        let mut cmd = eval(LIST_PUSH_SCRIPT, &[&k]);
        cmd.arg(json).arg(self.inner.ttl_ms);
        let pushed = self.send::<i64>(key, &k, cmd);
        async move { pushed.await.map(|_| ()) }
    }

    pub fn list_length(&self, key: &str) -> impl Future<Output = Result<usize, CacheError>> + Send + 'static {
        let k = self.key(key);
        self.send(key, &k, redis::cmd("LLEN").arg(&k).clone())
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
        let items: Vec<String> = self
            .send(key, &k, redis::cmd("LRANGE").arg(&k).arg(from).arg(to).clone())
            .await?;
        let items: Vec<String> = items.into_iter().map(json::valid_or_quoted).collect();
        Ok(json::array(items.iter().map(String::as_str)))
    }

    pub fn increment(&self, key: &str) -> impl Future<Output = Result<i64, CacheError>> + Send + 'static {
        let k = self.key(key);
        let mut cmd = eval(INCREMENT_SCRIPT, &[&k]);
        cmd.arg(self.inner.ttl_ms);
        self.send(key, &k, cmd)
    }

    /// One atomic round trip: see [`LIST_PUSH_INDEXED_SCRIPT`].
    pub fn list_push_indexed(
        &self,
        list_key: &str,
        counter_key: &str,
        object_json: &str,
    ) -> impl Future<Output = Result<i64, CacheError>> + Send + 'static {
        let prepared = (|| {
            if list_key == counter_key {
                return Err(CacheError::InvalidValue(
                    "listPushIndexed needs two different keys for the list and its counter".into(),
                ));
            }
            let body = json::without_index(object_json)?;
            let k = self.key(list_key);
            let mut cmd = eval(LIST_PUSH_INDEXED_SCRIPT, &[&k, &self.key(counter_key)]);
            cmd.arg(&*body).arg(self.inner.ttl_ms);
            Ok(self.send::<i64>(list_key, &k, cmd))
        })();
        async move { prepared?.await }
    }

    /// Closes the connection. Calls made afterwards fail with `ERR_CACHE_CLOSED`;
    /// calls in flight finish; readers waiting for events end.
    pub fn close(&self) {
        self.inner.queue.close();
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

    /// The lane of commands on the physical key `k` (see `queue.rs`).
    fn lane(&self, k: &str) -> Lane {
        if self.is_cluster() {
            Lane::Tag(queue::hash_tag(k).to_owned())
        } else {
            Lane::All
        }
    }

    /// Queues `cmd` (on the physical key `k`) now; its reply, decoded. `key`
    /// names the cache key in errors.
    fn send<T: FromRedisValue + Send + 'static>(
        &self,
        key: &str,
        k: &str,
        cmd: Cmd,
    ) -> impl Future<Output = Result<T, CacheError>> + Send + 'static {
        self.send_in(key, self.lane(k), Op::Cmd(cmd))
    }

    /// [`Self::send`] of any operation in any lane.
    fn send_in<T: FromRedisValue + Send + 'static>(
        &self,
        key: &str,
        lane: Lane,
        op: Op,
    ) -> impl Future<Output = Result<T, CacheError>> + Send + 'static {
        let queued = self.inner.queue.call(lane, op);
        let (cache, key) = (self.clone(), key.to_owned());
        async move { cache.decode(&key, queued.reply().await) }
    }

    /// A queued call's reply as `T`, or its error classified.
    fn decode<T: FromRedisValue>(&self, key: &str, reply: Result<Value, QueueError>) -> Result<T, CacheError> {
        match reply {
            Ok(Value::ServerError(error)) => Err(self.classify(key, error.into())),
            Ok(value) => redis::from_redis_value(value).map_err(|e| self.classify(key, e.into())),
            Err(error) => Err(self.unsent(key, error)),
        }
    }

    /// A call the queue could not complete, as the caller sees it.
    fn unsent(&self, key: &str, error: QueueError) -> CacheError {
        let addr = self.inner.addr.clone();
        match error {
            QueueError::Closed => CacheError::Closed,
            QueueError::Redis(error) => self.classify(key, error),
            QueueError::Misconfigured(reason) => CacheError::invalid_option("tls", reason),
            QueueError::Timeout { sent } => CacheError::Timeout {
                addr,
                timeout: self.inner.queue.limit(),
                sent,
            },
        }
    }

    /// The array reply to `args` from the bulk reader, when it can serve this
    /// Redis and this reply; `None`: run the command through redis-rs. It
    /// reads once every call made before it has its reply.
    async fn bulk_array(&self, args: &[&[u8]]) -> Result<Option<RawArray>, CacheError> {
        let Some(reader) = &self.inner.bulk else {
            return Ok(None);
        };
        self.inner
            .queue
            .fence(Lane::All)
            .await
            .map_err(|e| self.unsent("", e))?;
        reader.array(args).await
    }

    /// Runs a command outside the queue (inside a barrier), bounded like a
    /// queued one, sent again once if it never reached Redis (as the queue
    /// does, see `queue::unsent`), and classifies its error.
    async fn direct(
        &self,
        key: &str,
        conn: &Conn,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> Result<Value, CacheError> {
        let limit = self.inner.queue.limit();
        let attempt = || {
            let mut conn = conn.clone();
            async move { tokio::time::timeout(limit, conn.on_node(node, cmd)).await }
        };
        let reply = match attempt().await {
            Ok(Err(error)) if queue::unsent(&error) => attempt().await,
            first => first,
        };
        match reply {
            Ok(result) => result.map_err(|e| self.classify(key, e)),
            Err(_) => Err(CacheError::Timeout {
                addr: self.inner.addr.clone(),
                timeout: limit,
                sent: true,
            }),
        }
    }

    pub(super) fn classify(&self, key: &str, error: RedisError) -> CacheError {
        let addr = self.inner.addr.clone();
        // A failed MULTI/EXEC reports its commands' errors inside one error.
        let code = error.code().map(str::to_owned).or_else(|| {
            let errors = error.clone().into_server_errors()?;
            errors.first().map(|(_, e)| e.code().to_owned())
        });
        let reply = code
            .as_deref()
            .and_then(ReplyError::of)
            .or_else(|| ReplyError::of(&error.to_string()));
        match reply {
            Some(ReplyError::WrongType) => {
                return CacheError::WrongType {
                    key: key.to_owned(),
                    expected: "another type",
                    found: "a value of a different Redis type",
                }
            }
            Some(ReplyError::NotAnInteger) => {
                return CacheError::WrongType {
                    key: key.to_owned(),
                    expected: "an integer",
                    found: "a non-integer value",
                }
            }
            Some(ReplyError::Overflow) => {
                return CacheError::InvalidValue(format!("incrementing `{key}` would overflow a 64-bit integer"))
            }
            Some(ReplyError::Refused) => return CacheError::Auth { addr, source: error },
            Some(ReplyError::CrossSlot) if self.is_cluster() => return CacheError::InvalidValue(ReplyError::CROSS_SLOT.into()),
            // Only a cluster node redirects, or refuses keys of several
            // slots: the cache was given one as if it were a whole Redis.
            Some(ReplyError::Redirected | ReplyError::CrossSlot) if !self.is_cluster() => {
                return CacheError::invalid_option(
                    "url",
                    format!("Redis at {addr} is a node of a Redis Cluster (it redirected a key elsewhere): connect with {{ cluster: {{ nodes: [...] }} }}"),
                )
            }
            _ => {}
        }
        if error.kind() == redis::ErrorKind::AuthenticationFailed {
            CacheError::Auth { addr, source: error }
        } else if error.is_timeout() {
            CacheError::Timeout {
                addr,
                timeout: self.inner.command_timeout,
                sent: true,
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

/// The error replies of Redis that a caller's own data or setup causes, read
/// from their text: the native client and the JS-client mode (which gets the
/// same text from its client, see `redisReplyErrorCode`) give each the code
/// the in-memory cache gives the same mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// `WRONGTYPE`: the key holds another type.
    WrongType,
    /// `INCR` of a value that is not a 64-bit integer.
    NotAnInteger,
    /// `INCR` past the largest 64-bit integer.
    Overflow,
    /// The credentials or the ACL refused it (`WRONGPASS`, `NOAUTH`,
    /// `NOPERM`, or a script's call the ACL refused).
    Refused,
    /// `MOVED` / `ASK`: a Cluster node answered.
    Redirected,
    /// `CROSSSLOT`: one command's keys are in different Cluster slots.
    CrossSlot,
}

impl ReplyError {
    const CROSS_SLOT: &'static str = "the keys of one call are in different Redis Cluster slots: a list and its \
         counter must share a hash tag (name the counter `<listKey>:counter`, or put the same `{tag}` in both)";

    /// Reads a reply's text as a JS client gives it (`WRONGTYPE Operation
    /// ...`), or as redis-rs does (`"WRONGTYPE": Operation ...`).
    pub fn of(text: &str) -> Option<Self> {
        let text = text.trim_start_matches(['-', '"']);
        let starts = |prefix: &str| text.starts_with(prefix) || text.contains(&format!(": {prefix}"));
        Some(if starts("WRONGTYPE") {
            ReplyError::WrongType
        } else if text.contains("value is not an integer") {
            ReplyError::NotAnInteger
        } else if text.contains("increment or decrement would overflow") {
            ReplyError::Overflow
        } else if starts("WRONGPASS")
            || starts("NOAUTH")
            || starts("NOPERM")
            || text.contains("user executing the script can't")
        {
            ReplyError::Refused
        } else if starts("MOVED") || starts("ASK") {
            ReplyError::Redirected
        } else if starts("CROSSSLOT") {
            ReplyError::CrossSlot
        } else {
            return None;
        })
    }

    /// The code this reply gets (`cluster`: the client talks to a Redis Cluster).
    pub fn code(self, cluster: bool) -> crate::error::ErrorCode {
        match self {
            ReplyError::WrongType | ReplyError::NotAnInteger => "ERR_WRONG_TYPE",
            ReplyError::Overflow => "ERR_INVALID_VALUE",
            ReplyError::Refused => "ERR_REDIS_AUTH",
            ReplyError::CrossSlot if cluster => "ERR_INVALID_VALUE",
            ReplyError::Redirected if cluster => "ERR_REDIS",
            ReplyError::Redirected | ReplyError::CrossSlot => "ERR_INVALID_OPTION",
        }
    }
}

/// How a [`KeyScan`] runs its commands: queued, or on a connection a barrier
/// has to itself.
enum Via {
    Queue(RedisCache),
    Direct(Conn),
}

/// A SCAN over every node that holds keys: the server, or each primary of a
/// cluster in turn (a SCAN cursor is per node).
pub(super) struct KeyScan {
    cache: RedisCache,
    via: Via,
    pattern: String,
    /// Nodes still to scan, the current one last (`None`: the only server).
    nodes: Vec<Option<(String, u16)>>,
    cursor: u64,
}

impl KeyScan {
    async fn new(cache: &RedisCache, via: Via, pattern: &str) -> Result<Self, CacheError> {
        let mut scan = KeyScan {
            cache: cache.clone(),
            via,
            pattern: pattern.to_owned(),
            nodes: vec![None],
            cursor: 0,
        };
        if cache.is_cluster() {
            let slots = scan.run(None, redis::cmd("CLUSTER").arg("SLOTS").clone()).await?;
            scan.nodes = connection::primaries(&slots).into_iter().map(Some).collect();
        }
        Ok(scan)
    }

    /// Runs `cmd` on `node` (`None`: any node, or the only server).
    async fn run(&self, node: Option<(String, u16)>, cmd: Cmd) -> Result<Value, CacheError> {
        match &self.via {
            Via::Queue(cache) => {
                let lane = match (node, cache.is_cluster()) {
                    (Some((host, port)), _) => Lane::Node(host, port),
                    (None, true) => Lane::Any,
                    (None, false) => Lane::All,
                };
                cache.send_in("", lane, Op::Cmd(cmd)).await
            }
            Via::Direct(conn) => self.cache.direct("", conn, node.as_ref(), &cmd).await,
        }
    }

    /// The next non-empty page of physical keys; `None` once every node is done.
    pub(super) async fn next_page(&mut self) -> Result<Option<Vec<String>>, CacheError> {
        while let Some(node) = self.nodes.last().cloned() {
            let mut scan = redis::cmd("SCAN");
            scan.arg(self.cursor)
                .arg("MATCH")
                .arg(&self.pattern)
                .arg("COUNT")
                .arg(1000);
            let reply = self.run(node, scan).await?;
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

    /// The codes the native client gives error replies are the codes
    /// `ReplyError` gives the JS-client mode for the same text.
    #[test]
    fn error_replies_get_the_same_code_in_both_modes() {
        let config = RedisCacheConfig::from_options(
            RedisTarget::Url("redis://127.0.0.1:1".into()),
            RedisCacheOptions::default(),
        )
        .unwrap();
        let cache = RedisCache::new(config).unwrap();
        for (reply, code) in [
            (
                "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                "ERR_WRONG_TYPE",
            ),
            ("-ERR value is not an integer or out of range\r\n", "ERR_WRONG_TYPE"),
            ("-ERR increment or decrement would overflow\r\n", "ERR_INVALID_VALUE"),
            (
                "-NOPERM User u has no permissions to access the 'k' key\r\n",
                "ERR_REDIS_AUTH",
            ),
            ("-MOVED 3999 127.0.0.1:6381\r\n", "ERR_INVALID_OPTION"),
            (
                "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
                "ERR_INVALID_OPTION",
            ),
        ] {
            let value = redis::parse_redis_value(reply.as_bytes()).unwrap();
            let Value::ServerError(error) = value else {
                panic!("{reply} is an error reply")
            };
            assert_eq!(cache.classify("k", RedisError::from(error)).code(), code, "{reply}");
            // A JS client's error message is the reply's text.
            let text = reply.trim_start_matches('-').trim_end();
            assert_eq!(ReplyError::of(text).map(|r| r.code(false)), Some(code), "{text}");
        }
        assert_eq!(ReplyError::of("ERR unknown command"), None);
    }

    #[test]
    fn glob_escape_keeps_prefix_literal() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn malformed_url_names_the_option() {
        let err = RedisCacheConfig::from_options(RedisTarget::Url("http://x".into()), RedisCacheOptions::default())
            .err()
            .unwrap();
        assert_eq!(err.code(), "ERR_INVALID_OPTION");
        assert!(err.to_string().contains("`url`"), "{err}");
    }

    #[test]
    fn a_ca_that_is_not_pem_certificates_is_refused_at_once() {
        let with_ca = |pem: &str| {
            let config = RedisCacheConfig::from_options(
                RedisTarget::Url("rediss://127.0.0.1".into()),
                RedisCacheOptions {
                    tls: Some(TlsConfig {
                        ca_pem: Some(pem.as_bytes().to_vec()),
                    }),
                    ..Default::default()
                },
            )
            .unwrap();
            RedisCache::new(config).map(|_| ())
        };
        for pem in [
            "garbage",
            "",
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        ] {
            let err = with_ca(pem).expect_err(pem);
            assert_eq!(err.code(), "ERR_INVALID_OPTION", "{pem}");
            assert!(err.to_string().contains("`tls.ca`"), "{err}");
        }
    }

    #[test]
    fn negative_ttl_names_the_option() {
        let err = RedisCacheConfig::from_options(
            RedisTarget::Url("redis://127.0.0.1".into()),
            RedisCacheOptions {
                ttl_seconds: Some(-1.0),
                ..Default::default()
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("`ttlSeconds`"), "{err}");
    }
}
