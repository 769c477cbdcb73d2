//! `NativeMemoryCache`: the in-memory cache, called synchronously on the JS
//! thread (no thread hop: the work is far cheaper than one).

use crate::error::Result;
use durable_agent_core::cache::memory::ttl_from_ms;
use durable_agent_core::{MemoryCache, MemoryCacheConfig};
use napi_derive::napi;

use crate::error::IntoNapi;

#[napi]
pub struct NativeMemoryCache {
    cache: MemoryCache,
}

impl NativeMemoryCache {
    pub fn cache(&self) -> &MemoryCache {
        &self.cache
    }
}

#[napi]
impl NativeMemoryCache {
    #[napi(constructor, catch_unwind)]
    pub fn new(ttl_ms: Option<f64>, max_size: Option<f64>) -> Result<Self> {
        let config = MemoryCacheConfig::from_options(ttl_ms, max_size).into_napi()?;
        Ok(NativeMemoryCache {
            cache: MemoryCache::new(config),
        })
    }

    /// JSON text of the value, or `null` when absent.
    #[napi(catch_unwind)]
    pub fn get(&self, key: String) -> Option<String> {
        self.cache.get(&key)
    }

    /// `ttlMs`: omitted uses the default; `0` never expires.
    #[napi(catch_unwind)]
    pub fn set(&self, key: String, json: String, ttl_ms: Option<f64>) -> Result<()> {
        let ttl = ttl_ms.map(|ms| ttl_from_ms("ttlMs", ms)).transpose().into_napi()?;
        self.cache.set(&key, &json, ttl);
        Ok(())
    }

    #[napi(catch_unwind)]
    pub fn delete(&self, key: String) {
        self.cache.delete(&key);
    }

    #[napi(catch_unwind)]
    pub fn clear(&self) {
        self.cache.clear();
    }

    #[napi(catch_unwind)]
    pub fn list_push(&self, key: String, json: String) -> Result<()> {
        self.cache.list_push(&key, &json).into_napi()
    }

    #[napi(catch_unwind)]
    pub fn list_length(&self, key: String) -> Result<u32> {
        self.cache.list_length(&key).map(|n| n as u32).into_napi()
    }

    /// JSON text of the array `LRANGE key from to` would return.
    #[napi(catch_unwind)]
    pub fn list_from_to(&self, key: String, from: i64, to: i64) -> Result<String> {
        self.cache.list_from_to(&key, from, to).into_napi()
    }

    #[napi(catch_unwind)]
    pub fn increment(&self, key: String) -> Result<i64> {
        self.cache.increment(&key).into_napi()
    }

    #[napi(catch_unwind)]
    pub fn list_push_indexed(&self, list_key: String, counter_key: String, json: String) -> Result<i64> {
        self.cache.list_push_indexed(&list_key, &counter_key, &json).into_napi()
    }

    /// Live keys, after pending evictions. For tests and stats.
    #[napi(catch_unwind)]
    pub fn key_count(&self) -> i64 {
        self.cache.key_count() as i64
    }
}
