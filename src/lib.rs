//! napi binding of `durable-agent-core`.
//!
//! Each module adapts one core type; none holds logic of its own. Values cross
//! as JSON text (the TS facade stringifies and parses), and errors cross with
//! their stable code in the message (see `error.rs`), which the facade moves to
//! `err.code`.

#![deny(clippy::all)]

mod error;
mod memory_cache;
mod redis_cache;

pub use memory_cache::NativeMemoryCache;
pub use redis_cache::{list_push_indexed_script, redis_key, NativeRedisCache};

/// Panics on purpose, so tests can prove a Rust panic reaches JS as an `Error`
/// (in a sync call and in an async one) instead of aborting the process.
#[napi_derive::napi(catch_unwind)]
pub fn debug_panic_sync() {
    panic!("debugPanicSync: deliberate panic");
}

/// See [`debug_panic_sync`].
#[napi_derive::napi]
pub async fn debug_panic_async() {
    panic!("debugPanicAsync: deliberate panic");
}
