//! The two caches behind Mastra's `MastraServerCache` contract, and the
//! storage layer over them.
//!
//! Both store JSON text. [`memory::MemoryCache`] is synchronous (it never
//! leaves the calling thread, so the binding can call it without a thread hop);
//! [`redis::RedisCache`] is async and shares state between processes. Both
//! implement the storage traits of [`store`] (topic logs, run records), which
//! is all `pubsub` and `agent` know of them.

pub mod memory;
pub mod range;
pub mod redis;
pub mod runs;
pub mod store;
