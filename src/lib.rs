//! napi binding of `durable-agent-core`.
//!
//! Each module adapts one core type; none holds logic of its own. Values cross
//! as JSON text (the TS facade stringifies and parses), errors with their
//! stable code as `err.code` (see `error.rs`), and the contracts both sides
//! read (topic names, retry policy) from `wire.rs`.

#![deny(clippy::all)]

mod agent;
mod bridge;
mod error;
mod memory_cache;
mod pubsub;
mod redis_cache;
mod wire;

pub use agent::NativeAgent;
pub use bridge::NativeBridge;
pub use memory_cache::NativeMemoryCache;
pub use pubsub::{NativePubSub, NativeSubscription};
pub use redis_cache::{list_push_indexed_script, redis_key, NativeRedisCache};
pub use wire::{wire_constants, WireConstants};

/// mimalloc instead of glibc's malloc: the addon allocates and frees a value
/// per element of every Redis reply and a buffer per page of events, where
/// glibc's malloc and its page faults took a fifth of replay time
/// (`cargo run --release -p durable-agent-core --example replay_probe`, with
/// the example given this allocator: 20k events, median 64 ms -> 48 ms).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Takes three strings and returns their total length, doing nothing else:
/// the benchmark's measure of what one synchronous native call with
/// `listPushIndexed`'s arguments costs (napi's argument conversion), which
/// any store that keeps values in native memory pays per write.
#[napi_derive::napi(catch_unwind)]
pub fn bench_native_call(a: String, b: String, c: String) -> u32 {
    (a.len() + b.len() + c.len()) as u32
}

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

/// napi-rs's default runtime has a worker per core. On the 2-core machines we
/// measure on, a second worker only adds cross-thread wake-ups between a call's
/// task and the Redis connection's driver task, while Node's thread and
/// redis-server want the cores: one worker gave 94k concurrent Redis calls/s
/// against 80k with two (`npm run bench -- --only redis`).
#[napi_derive::module_init]
fn init_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("durable-agent")
        .enable_all()
        .build()
        .expect("failed to start the tokio runtime");
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
}
