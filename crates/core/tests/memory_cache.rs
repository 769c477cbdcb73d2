//! The in-memory cache against the `MastraServerCache` contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use durable_agent_core::{MemoryCache, MemoryCacheConfig};

fn cache(ttl_ms: Option<u64>, max_size: u64) -> MemoryCache {
    MemoryCache::new(MemoryCacheConfig {
        ttl: ttl_ms.map(Duration::from_millis),
        max_size,
    })
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    check()
}

#[test]
fn values_round_trip_as_json_text() {
    let c = cache(None, 100);
    for (i, text) in [r#"{"a":[1,2.5,null,true,"s"]}"#, "[]", "\"str\"", "0", "false", "null"]
        .iter()
        .enumerate()
    {
        c.set(&format!("k{i}"), text, None);
        assert_eq!(c.get(&format!("k{i}")).as_deref(), Some(*text));
    }
    assert_eq!(c.get("missing"), None);
    c.delete("k0");
    assert_eq!(c.get("k0"), None);
    c.clear();
    assert_eq!(c.get("k1"), None);
    assert_eq!(c.key_count(), 0);
}

#[test]
fn lists_follow_lrange() {
    let c = cache(None, 100);
    for v in ["\"a\"", "\"b\"", "\"c\"", "\"d\""] {
        c.list_push("l", v).unwrap();
    }
    assert_eq!(c.list_length("l").unwrap(), 4);
    assert_eq!(c.list_from_to("l", 1, 2).unwrap(), r#"["b","c"]"#);
    assert_eq!(c.list_from_to("l", -2, -1).unwrap(), r#"["c","d"]"#);
    assert_eq!(c.list_from_to("l", 0, -1).unwrap(), r#"["a","b","c","d"]"#);
    assert_eq!(c.list_from_to("l", 3, 1).unwrap(), "[]");
    assert_eq!(c.list_from_to("missing", 0, -1).unwrap(), "[]");
    assert_eq!(c.list_length("missing").unwrap(), 0);
    assert_eq!(c.get("l").as_deref(), Some(r#"["a","b","c","d"]"#));
}

#[test]
fn wrong_types_are_errors_and_change_nothing() {
    let c = cache(None, 100);
    c.set("v", "{\"x\":1}", None);
    assert_eq!(c.list_push("v", "1").unwrap_err().code(), "ERR_WRONG_TYPE");
    assert_eq!(c.list_length("v").unwrap_err().code(), "ERR_WRONG_TYPE");
    assert_eq!(c.increment("v").unwrap_err().code(), "ERR_WRONG_TYPE");
    assert_eq!(c.get("v").as_deref(), Some("{\"x\":1}"));
    // A failing counter leaves no half-made list behind.
    assert_eq!(
        c.list_push_indexed("new-list", "v", "{}").unwrap_err().code(),
        "ERR_WRONG_TYPE"
    );
    assert_eq!(c.get("new-list"), None);
    assert_eq!(
        c.list_push_indexed("l", "l:counter", "[1]").unwrap_err().code(),
        "ERR_INVALID_VALUE"
    );
    assert_eq!(
        c.list_push_indexed("l", "l", "{}").unwrap_err().code(),
        "ERR_INVALID_VALUE"
    );
    assert_eq!(c.get("l"), None);
    assert_eq!(c.get("l:counter"), None);
}

#[test]
fn increment_starts_at_one_and_reads_back() {
    let c = cache(None, 100);
    assert_eq!(c.increment("n").unwrap(), 1);
    assert_eq!(c.increment("n").unwrap(), 2);
    assert_eq!(c.get("n").as_deref(), Some("2"));
    c.set("m", "41", None);
    assert_eq!(c.increment("m").unwrap(), 42);
}

#[test]
fn list_push_indexed_sets_index_and_keeps_order_across_threads() {
    let c = Arc::new(cache(None, 100));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|i| {
                        c.list_push_indexed("l", "l:counter", &format!(r#"{{"t":{t},"i":{i}}}"#))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut indices: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..1000).collect::<Vec<_>>());
    let list: Vec<serde_json::Value> = serde_json::from_str(&c.list_from_to("l", 0, -1).unwrap()).unwrap();
    let stored: Vec<i64> = list.iter().map(|v| v["index"].as_i64().unwrap()).collect();
    assert_eq!(stored, (0..1000).collect::<Vec<_>>(), "list order is index order");
}

#[test]
fn ttl_expires_keys_and_writes_refresh_it() {
    let c = cache(Some(300), 100);
    c.set("v", "1", None);
    c.list_push("l", "1").unwrap();
    c.set("forever", "1", Some(None));
    c.set("short", "1", Some(Some(Duration::from_millis(50))));
    assert!(eventually(Duration::from_secs(2), || c.get("short").is_none()));
    // Keep pushing to `l` for longer than its TTL: it must stay alive.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        c.list_push("l", "1").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(c.list_length("l").unwrap() > 10);
    assert!(eventually(Duration::from_secs(2), || c.get("v").is_none()));
    assert!(eventually(Duration::from_secs(2), || c.list_length("l").unwrap() == 0));
    assert_eq!(c.get("forever").as_deref(), Some("1"));
}

#[test]
fn max_size_evicts_least_recently_used_even_without_ttl() {
    let c = cache(None, 3);
    for k in ["k1", "k2", "k3"] {
        c.set(k, "1", None);
    }
    c.get("k1"); // k2 is now the least recently used
    c.set("k4", "1", None);
    assert_eq!(c.key_count(), 3);
    assert_eq!(c.get("k2"), None);
    assert!(c.get("k1").is_some() && c.get("k4").is_some());
    // Far past capacity, with no TTL, inserts keep working and stay bounded.
    for i in 0..10_000 {
        c.list_push(&format!("list{i}"), "1").unwrap();
    }
    assert_eq!(c.key_count(), 3);
}
