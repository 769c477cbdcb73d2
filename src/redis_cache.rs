//! `NativeRedisCache`: the Redis cache. Every call is async (it waits on the
//! network); concurrent calls share one pipelined connection.

use durable_agent_core::cache::memory::ttl_from_ms;
use durable_agent_core::cache::redis::{physical_key, LIST_PUSH_INDEXED_SCRIPT};
use durable_agent_core::{RedisCache, RedisCacheConfig, RedisTarget, TlsConfig};
use napi::Result;
use napi_derive::napi;

use crate::error::IntoNapi;

/// Where Redis is: `url`, or `host` and friends.
#[napi(object)]
pub struct NativeRedisTarget {
    pub url: Option<String>,
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

#[napi]
pub struct NativeRedisCache {
    cache: RedisCache,
}

#[napi]
impl NativeRedisCache {
    #[napi(constructor, catch_unwind)]
    pub fn new(target: NativeRedisTarget, options: NativeRedisOptions) -> Result<Self> {
        let tls = target.ca.map(|pem| TlsConfig {
            ca_pem: Some(pem.into_bytes()),
        });
        let target = match target.url {
            Some(url) => RedisTarget::Url(url),
            None => RedisTarget::Parts {
                host: target.host.unwrap_or_else(|| "127.0.0.1".to_owned()),
                port: u16::try_from(target.port.unwrap_or(6379)).map_err(|_| {
                    crate::error::to_napi(durable_agent_core::CacheError::InvalidOption {
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
            tls,
            options.key_prefix,
            options.ttl_seconds,
            options.connect_timeout_ms,
            options.command_timeout_ms,
        )
        .into_napi()?;
        Ok(NativeRedisCache {
            cache: RedisCache::new(config).into_napi()?,
        })
    }

    /// `host:port` of the server (no credentials).
    #[napi(getter)]
    pub fn addr(&self) -> String {
        self.cache.addr().to_owned()
    }

    #[napi]
    pub async fn get(&self, key: String) -> Result<Option<String>> {
        self.cache.get(&key).await.into_napi()
    }

    #[napi]
    pub async fn set(&self, key: String, json: String, ttl_ms: Option<f64>) -> Result<()> {
        let ttl = ttl_ms.map(|ms| ttl_from_ms("ttlMs", ms)).transpose().into_napi()?;
        self.cache.set(&key, &json, ttl).await.into_napi()
    }

    #[napi]
    pub async fn delete(&self, key: String) -> Result<()> {
        self.cache.delete(&key).await.into_napi()
    }

    #[napi]
    pub async fn clear(&self) -> Result<()> {
        self.cache.clear().await.into_napi()
    }

    #[napi]
    pub async fn list_push(&self, key: String, json: String) -> Result<()> {
        self.cache.list_push(&key, &json).await.into_napi()
    }

    #[napi]
    pub async fn list_length(&self, key: String) -> Result<u32> {
        self.cache.list_length(&key).await.map(|n| n as u32).into_napi()
    }

    #[napi]
    pub async fn list_from_to(&self, key: String, from: i64, to: i64) -> Result<String> {
        self.cache.list_from_to(&key, from, to).await.into_napi()
    }

    #[napi]
    pub async fn increment(&self, key: String) -> Result<i64> {
        self.cache.increment(&key).await.into_napi()
    }

    #[napi]
    pub async fn list_push_indexed(&self, list_key: String, counter_key: String, json: String) -> Result<i64> {
        self.cache
            .list_push_indexed(&list_key, &counter_key, &json)
            .await
            .into_napi()
    }

    #[napi(catch_unwind)]
    pub fn close(&self) {
        self.cache.close();
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
