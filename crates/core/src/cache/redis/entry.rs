//! How an event is one entry of a topic's stream: its body under one field,
//! its index in the entry's id (`0-<index + 1>`, allocated by Redis with
//! `XADD key 0-* ...`). Written by the appends (`log.rs`, `queue.rs`, the run
//! scripts), read by every reader (`log.rs`, `tailer.rs`, `runs.rs`).

use crate::error::CacheError;
use crate::json;

/// The stream field holding the event's JSON text (without `index`).
pub(super) const FIELD: &str = "e";

/// `0-<n>` is index `n - 1`.
pub(super) fn index_of(id: &str) -> Result<u64, CacheError> {
    id.strip_prefix("0-")
        .and_then(|n| n.parse::<u64>().ok())
        .and_then(|n| n.checked_sub(1))
        .ok_or_else(|| CacheError::InvalidValue(format!("stream entry id `{id}` was not written by durable-agent")))
}

pub(super) fn foreign_entry() -> CacheError {
    CacheError::InvalidValue("a stream entry was not written by durable-agent".into())
}

/// The index and the event body of one XRANGE entry: `[id, [field, value, ...]]`.
pub(super) fn stream_entry(entry: &redis::Value) -> Result<(u64, &[u8]), CacheError> {
    let foreign = foreign_entry;
    let redis::Value::Array(parts) = entry else {
        return Err(foreign());
    };
    let (Some(id), Some(redis::Value::Array(fields))) = (parts.first(), parts.get(1)) else {
        return Err(foreign());
    };
    let id = match id {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).map_err(|_| foreign())?,
        redis::Value::SimpleString(text) => text.as_str(),
        _ => return Err(foreign()),
    };
    let body = fields
        .chunks(2)
        .find_map(|pair| match pair {
            [redis::Value::BulkString(field), redis::Value::BulkString(value)] if field == FIELD.as_bytes() => {
                Some(value.as_slice())
            }
            _ => None,
        })
        .unwrap_or(b"{}");
    Ok((index_of(id)?, body))
}

/// Whether a stream entry's body is one of ours: a JSON object without
/// `index`.
pub(super) fn is_our_body(text: &str) -> bool {
    text.starts_with('{') && !text.contains("\"index\"") && json::is_json(text)
}
