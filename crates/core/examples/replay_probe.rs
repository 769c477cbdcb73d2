//! Replay cost on the Rust side alone: stores 20,000 events of 195 bytes in a
//! Redis topic, then reads them back page by page (2,048 per page, as the JS
//! facade asks) five times and prints each time. No JS, no napi: what is left
//! is Redis, the reply's parsing and the page's building.
//!
//! `cargo run --release -p durable-agent-core --example replay_probe`
//! (`REDIS_URL`, default `redis://127.0.0.1:6379`; keys under `probe:<pid>:`,
//! deleted afterwards).

use std::time::Instant;

use durable_agent_core::{RedisCache, RedisCacheConfig, RedisCacheOptions, RedisTarget, Retention, Subscription};

const EVENT: &str = r#"{"id":"9c324501-296b-40b1-bc34-2e877dbc7453","type":"chunk","runId":"efca66fd-b01f-4143-9d05-2545fc801aa4","data":{"text":"reply and data"},"createdAt":"2026-11-28T08:28:42.462Z"}"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("probe:{}:", std::process::id());
    let config = RedisCacheConfig::from_options(
        RedisTarget::Url(url),
        RedisCacheOptions {
            key_prefix: Some(prefix),
            ttl_seconds: Some(60.0),
            ..Default::default()
        },
    )?;
    let store = shared(RedisCache::new(config)?);
    let batch: Vec<String> = (0..500).map(|_| EVENT.to_owned()).collect();
    for _ in 0..40 {
        store.append_many("topic", &batch, &Retention::default()).await?;
    }
    for _ in 0..5 {
        let started = Instant::now();
        let mut sub = Subscription::new(store.clone(), "topic".into(), Some(0));
        let (mut events, mut bytes) = (0, 0);
        while let Some(page) = sub.read_available(2048).await? {
            events += page.count;
            bytes += page.events.len();
        }
        println!("{events} events, {bytes} bytes of JSON in {:?}", started.elapsed());
    }
    store.delete("topic").await?;
    Ok(())
}

/// A cache as the store that pubsub takes.
fn shared(cache: impl durable_agent_core::RunRecords) -> durable_agent_core::Store {
    std::sync::Arc::new(cache)
}
