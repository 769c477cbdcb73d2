//! `NativeRedisCache`: the Redis cache. Calls run on tokio and share one
//! pipelined connection; results return through the completion bridge.

use crate::error::Result;
use durable_agent_core::cache::memory::ttl_from_ms;
use durable_agent_core::cache::redis::{physical_key, LIST_PUSH_INDEXED_SCRIPT};
use durable_agent_core::{
    CacheError, RedisCache, RedisCacheConfig, RedisCacheOptions, RedisTarget, ReplyError, TlsConfig,
};
use napi_derive::napi;

use crate::bridge::{queued_now, Bridge, NativeBridge, OnReady, Reply};
use crate::error::IntoNapi;

/// Where Redis is: `url`, `host` and friends, or a cluster's node URLs.
#[napi(object)]
pub struct NativeRedisTarget {
    pub url: Option<String>,
    /// Seed nodes of a Redis Cluster (`redis://` or `rediss://` URLs).
    pub cluster_nodes: Option<Vec<String>>,
    pub host: Option<String>,
    pub port: Option<u32>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<u32>,
    /// Connect with TLS (implied by a `rediss://` URL).
    pub tls: Option<bool>,
    /// PEM certificate(s) to trust instead of the public web roots.
    pub ca: Option<String>,
}

#[napi(object)]
pub struct NativeRedisOptions {
    pub key_prefix: Option<String>,
    pub ttl_seconds: Option<f64>,
    pub connect_timeout_ms: Option<f64>,
    pub command_timeout_ms: Option<f64>,
}

/// Every operation takes a request id and returns at once; its outcome
/// arrives through the completion bridge (see `bridge.rs`) under that id.
#[napi]
pub struct NativeRedisCache {
    cache: RedisCache,
    bridge: Bridge,
}

impl NativeRedisCache {
    pub fn cache(&self) -> &RedisCache {
        &self.cache
    }
}

#[napi]
impl NativeRedisCache {
    /// The bridge this object reports through (see `bridge.rs`).
    #[napi(getter)]
    pub fn bridge(&self) -> NativeBridge {
        NativeBridge::from(&self.bridge)
    }
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "target: NativeRedisTarget, options: NativeRedisOptions, onReady: () => void"
    )]
    pub fn new(target: NativeRedisTarget, options: NativeRedisOptions, on_ready: OnReady) -> Result<Self> {
        let tls = target.ca.map(|pem| TlsConfig {
            ca_pem: Some(pem.into_bytes()),
        });
        let target = match (target.url, target.cluster_nodes) {
            (_, Some(nodes)) => RedisTarget::Cluster(nodes),
            (Some(url), None) => RedisTarget::Url(url),
            (None, None) => RedisTarget::Parts {
                host: target.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
                port: u16::try_from(target.port.unwrap_or(6379)).map_err(|_| {
                    crate::error::Coded::thrown(&durable_agent_core::CacheError::InvalidOption {
                        option: "port",
                        reason: "must be at most 65535".into(),
                    })
                })?,
                username: target.username,
                password: target.password,
                db: i64::from(target.db.unwrap_or(0)),
                tls: target.tls.unwrap_or(false),
            },
        };
        let config = RedisCacheConfig::from_options(
            target,
            RedisCacheOptions {
                tls,
                key_prefix: options.key_prefix,
                ttl_seconds: options.ttl_seconds,
                connect_timeout_ms: options.connect_timeout_ms,
                command_timeout_ms: options.command_timeout_ms,
            },
        )
        .into_napi()?;
        Ok(NativeRedisCache {
            // In the runtime: the cache's command queue belongs to it.
            cache: queued_now(|| RedisCache::new(config)).into_napi()?,
            bridge: Bridge::new(on_ready),
        })
    }

    /// `host:port` of the server (no credentials).
    #[napi(getter)]
    pub fn addr(&self) -> String {
        self.cache.addr().to_owned()
    }

    // Each call is queued in the core when it is made (`queued_now`), so
    // calls keep their order whenever their futures run.

    #[napi(catch_unwind)]
    pub fn get(&self, id: u32, key: String) {
        let got = queued_now(|| self.cache.get(&key));
        self.bridge.submit::<_, CacheError>(id, async move {
            Ok(match got.await? {
                Some(json) => Reply::Json(json),
                None => Reply::Absent,
            })
        });
    }

    #[napi(catch_unwind)]
    pub fn set(&self, id: u32, key: String, json: String, ttl_ms: Option<f64>) -> Result<()> {
        let ttl = ttl_ms.map(|ms| ttl_from_ms("ttlMs", ms)).transpose().into_napi()?;
        let set = queued_now(|| self.cache.set(&key, &json, ttl));
        self.bridge.submit(id, async move { set.await.map(|()| Reply::Unit) });
        Ok(())
    }

    #[napi(catch_unwind)]
    pub fn delete(&self, id: u32, key: String) {
        let deleted = queued_now(|| self.cache.delete(&key));
        self.bridge
            .submit(id, async move { deleted.await.map(|()| Reply::Unit) });
    }

    #[napi(catch_unwind)]
    pub fn clear(&self, id: u32) {
        let cleared = queued_now(|| self.cache.clear());
        self.bridge
            .submit(id, async move { cleared.await.map(|()| Reply::Unit) });
    }

    #[napi(catch_unwind)]
    pub fn list_push(&self, id: u32, key: String, json: String) {
        let pushed = queued_now(|| self.cache.list_push(&key, &json));
        self.bridge
            .submit(id, async move { pushed.await.map(|()| Reply::Unit) });
    }

    #[napi(catch_unwind)]
    pub fn list_length(&self, id: u32, key: String) {
        let length = queued_now(|| self.cache.list_length(&key));
        self.bridge
            .submit(id, async move { length.await.map(|n| Reply::Number(n as i64)) });
    }

    #[napi(catch_unwind)]
    pub fn list_from_to(&self, id: u32, key: String, from: i64, to: i64) {
        let cache = self.cache.clone();
        self.bridge.submit(
            id,
            async move { cache.list_from_to(&key, from, to).await.map(Reply::Json) },
        );
    }

    #[napi(catch_unwind)]
    pub fn increment(&self, id: u32, key: String) {
        let incremented = queued_now(|| self.cache.increment(&key));
        self.bridge
            .submit(id, async move { incremented.await.map(Reply::Number) });
    }

    #[napi(catch_unwind)]
    pub fn list_push_indexed(&self, id: u32, list_key: String, counter_key: String, json: String) {
        let pushed = queued_now(|| self.cache.list_push_indexed(&list_key, &counter_key, &json));
        self.bridge.submit(id, async move { pushed.await.map(Reply::Number) });
    }

    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.cache.close();
    }

    /// The code our caches give an error reply Redis sent with this text
    /// (`cluster`: to a Redis Cluster client), or `null` for a reply no
    /// caller causes: the JS-client mode reads its client's errors with it,
    /// so both modes give the same mistake the same code.
    #[napi(catch_unwind)]
    pub fn reply_error_code(text: String, cluster: bool) -> Option<String> {
        ReplyError::of(&text).map(|reply| reply.code(cluster).to_owned())
    }
}

/// The Redis key that holds cache key `key` under `prefix` (with the hash tag
/// that keeps a list and its counter in one Cluster slot). The JS-client
/// compatibility mode uses it so both modes share one key layout.
#[napi(catch_unwind)]
pub fn redis_key(prefix: String, key: String) -> String {
    physical_key(&prefix, &key)
}

/// The Lua script behind `listPushIndexed`, for the JS-client mode.
#[napi(catch_unwind)]
pub fn list_push_indexed_script() -> &'static str {
    LIST_PUSH_INDEXED_SCRIPT
}
