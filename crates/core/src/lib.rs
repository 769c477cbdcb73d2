//! Pure-Rust core of `durable-agent`.
//!
//! Nothing in this crate knows about Node or napi: the binding crate at the
//! repository root adapts it to JavaScript. Values cross this API as JSON text,
//! which is how they are stored (in memory and in Redis) and how they travel to
//! JavaScript (one `JSON.parse` per call instead of one object built per field).

pub mod agent;
pub mod cache;
pub mod error;
pub mod json;
pub mod log;
pub mod pubsub;
pub mod signal;
pub mod wire;

pub use cache::memory::{MemoryCache, MemoryCacheConfig};
pub use cache::redis::{RedisCache, RedisCacheConfig, RedisCacheOptions, RedisTarget, ReplyError, TlsConfig};
pub use cache::store::{RunRecords, Store, StoreFuture, TopicLog};
pub use error::{CacheError, ErrorCode};
pub use log::{Page, PageRequest, Retention};
pub use pubsub::Subscription;
