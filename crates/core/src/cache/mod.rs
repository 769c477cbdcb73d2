//! The two caches behind Mastra's `MastraServerCache` contract.
//!
//! Both store JSON text. [`memory::MemoryCache`] is synchronous (it never
//! leaves the calling thread, so the binding can call it without a thread hop);
//! [`redis::RedisCache`] is async and shares state between processes.

pub mod memory;
pub mod range;
pub mod redis;
pub mod runs;
