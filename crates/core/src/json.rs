//! JSON text helpers.
//!
//! Values are kept as the JSON text JavaScript produced, so the only JSON work
//! on the hot path is splicing `"index":N` into an object, which is done on the
//! text itself (the same trick as Mastra's Redis script). Re-encoding through
//! `serde_json::Value` would reorder keys and cost far more.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

use crate::error::CacheError;

/// The object text without an `index` property, ready for [`with_index`] or
/// for the Redis script that splices the index server-side.
///
/// `text` must be a JSON object. The common case (no `index` key anywhere in the
/// text) is a borrow; otherwise the object is rewritten without its top-level
/// `index`, keeping every other member and its exact text in order.
pub fn without_index(text: &str) -> Result<std::borrow::Cow<'_, str>, CacheError> {
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return Err(not_an_object());
    }
    if !trimmed.contains("\"index\"") {
        return Ok(std::borrow::Cow::Borrowed(trimmed));
    }
    let members = parse_members(trimmed)?;
    let mut out = String::with_capacity(trimmed.len());
    out.push('{');
    for (key, raw) in members.iter().filter(|(key, _)| key != "index") {
        if out.len() > 1 {
            out.push(',');
        }
        // Serialising a &str cannot fail.
        out.push_str(&serde_json::to_string(key).expect("string serialises"));
        out.push(':');
        out.push_str(raw.get());
    }
    out.push('}');
    Ok(std::borrow::Cow::Owned(out))
}

/// [`without_index`] of each object, in order; the first failure fails all
/// (nothing of a batch is stored partially).
pub fn without_indices(objects: &[String]) -> Result<Vec<std::borrow::Cow<'_, str>>, CacheError> {
    objects.iter().map(|object| without_index(object)).collect()
}

/// `{"index":N,...}` from an object text that has no `index` member (the output
/// of [`without_index`]). `index` goes first, as in Mastra's Redis cache.
pub fn with_index(object: &str, index: i64) -> String {
    let mut out = String::with_capacity(object.len() + 24);
    push_with_index(&mut out, object, index);
    out
}

/// [`with_index`], appended to `out` (no allocation of its own).
pub fn push_with_index(out: &mut String, object: &str, index: i64) {
    let rest = &object[1..]; // everything after `{`, ending with `}`
    out.push_str("{\"index\":");
    out.push_str(itoa_buf(index, &mut [0u8; 20]));
    if rest.trim_start() == "}" {
        out.push('}');
    } else {
        out.push(',');
        out.push_str(rest);
    }
}

/// `n` in decimal, written into `buf`.
fn itoa_buf(n: i64, buf: &mut [u8; 20]) -> &str {
    use std::io::Write as _;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{n}").expect("20 bytes hold any i64");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).expect("digits are ASCII")
}

/// `text` if it is valid JSON, else `text` as a JSON string.
///
/// For values read from a shared store, which another program may have written:
/// callers embed them in larger JSON documents, where one foreign non-JSON
/// value must not corrupt the rest. A non-JSON value reads back as a string, as
/// in Mastra's Redis cache. Validation runs at about 1.5 GB/s.
pub fn valid_or_quoted(text: String) -> String {
    if is_json(&text) {
        text
    } else {
        quoted(&text)
    }
}

/// [`valid_or_quoted`], appended to `out`.
pub fn push_valid_or_quoted(out: &mut String, text: &str) {
    if is_json(text) {
        out.push_str(text);
    } else {
        out.push_str(&quoted(text));
    }
}

/// Whether `text` is one JSON value.
pub fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// Joins stored JSON texts into the text of one JSON array.
pub fn array<'a>(items: impl ExactSizeIterator<Item = &'a str> + Clone) -> String {
    let len: usize = items.clone().map(str::len).sum::<usize>() + items.len() + 2;
    let mut out = String::with_capacity(len);
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
    out
}

fn not_an_object() -> CacheError {
    CacheError::InvalidValue("listPushIndexed needs a JSON object value, to set `index` on it".into())
}

/// The members of a JSON object, in order, each value kept as its exact text.
fn parse_members(text: &str) -> Result<Vec<(String, Box<RawValue>)>, CacheError> {
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<(String, Box<RawValue>)>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
            while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let members = (&mut de).deserialize_map(Members).map_err(|_| not_an_object())?;
    de.end().map_err(|_| not_an_object())?;
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indexed(text: &str, index: i64) -> String {
        with_index(&without_index(text).unwrap(), index)
    }

    #[test]
    fn splices_index_first() {
        assert_eq!(indexed(r#"{"a":1}"#, 7), r#"{"index":7,"a":1}"#);
        assert_eq!(indexed("{}", 0), r#"{"index":0}"#);
        assert_eq!(indexed(" { } ", 3), r#"{"index":3}"#);
    }

    #[test]
    fn replaces_an_existing_index_and_keeps_member_text() {
        let out = indexed(r#"{"x":1.50,"index":99,"y":{"index":1}}"#, 4);
        assert_eq!(out, r#"{"index":4,"x":1.50,"y":{"index":1}}"#);
        // Nested `index` alone keeps the fast path but is still correct.
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["index"], 4);
    }

    #[test]
    fn rejects_non_objects() {
        for text in ["[1]", "\"s\"", "1", "null", "{\"index\":1"] {
            assert_eq!(without_index(text).unwrap_err().code(), "ERR_INVALID_VALUE", "{text}");
        }
    }

    #[test]
    fn quotes_only_invalid_json() {
        assert_eq!(valid_or_quoted(r#"{"a":1}"#.into()), r#"{"a":1}"#);
        assert_eq!(valid_or_quoted("12".into()), "12");
        assert_eq!(valid_or_quoted("plain text".into()), r#""plain text""#);
        assert_eq!(valid_or_quoted("{\"a\":".into()), r#""{\"a\":""#);
    }

    #[test]
    fn joins_arrays() {
        assert_eq!(array(["1", "{}", "\"a\""].into_iter()), r#"[1,{},"a"]"#);
        assert_eq!(array(std::iter::empty::<&str>()), "[]");
    }
}
