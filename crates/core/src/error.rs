//! Errors of the core, each with a stable code that the binding hands to
//! JavaScript as `err.code`. Codes are part of the public API (see README):
//! never rename one, only add.

use std::time::Duration;

/// A stable, documented error code.
pub type ErrorCode = &'static str;

// Clone: one failed round trip fails every call that shared it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// A constructor option is out of range or malformed.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption { option: &'static str, reason: String },

    /// A value the operation cannot store (for example a non-object for
    /// `listPushIndexed`, which must set `index` on it).
    #[error("{0}")]
    InvalidValue(String),

    /// The key holds another kind of data than the operation works on.
    #[error("key `{key}` holds {found}, but this operation needs {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },

    /// Redis could not be reached (refused, reset, DNS, TLS handshake, ...).
    #[error("Redis at {addr} is unreachable: {source}")]
    Unavailable {
        addr: String,
        #[source]
        source: redis::RedisError,
    },

    /// Redis refused the credentials or the ACL user.
    #[error("Redis at {addr} rejected the credentials: {source}")]
    Auth {
        addr: String,
        #[source]
        source: redis::RedisError,
    },

    /// No answer within the configured time. `sent`: the command left, so
    /// it may have been applied; else it never left this process.
    #[error(
        "Redis at {addr} did not answer within {} ms ({})",
        timeout.as_millis(),
        if *sent { "the call may have been applied" } else { "the call was not sent" }
    )]
    Timeout {
        addr: String,
        timeout: Duration,
        sent: bool,
    },

    /// Any other error reported by Redis.
    #[error("Redis at {addr} failed: {source}")]
    Redis {
        addr: String,
        #[source]
        source: redis::RedisError,
    },

    /// A reader asked for events that retention (TTL or `maxEvents`) dropped.
    #[error("topic `{topic}`: offset {offset} is no longer retained (the oldest retained event is {first})")]
    OffsetExpired { topic: String, offset: u64, first: u64 },

    /// The event a reader received last is no longer in the topic as it
    /// received it: the topic was cleared or expired and written again, or a
    /// Redis failover lost events it had acknowledged, and their indices were
    /// given to new events. Reading on would skip those silently.
    #[error(
        "topic `{topic}`: event {index}, which this reader received, is no longer in the topic as it was \
         (the topic was cleared or expired and written again, or a Redis failover lost acknowledged events); \
         read it again from an offset you trust"
    )]
    TopicRewritten { topic: String, index: u64 },

    /// `close()` was called; the cache accepts no more calls.
    #[error("the cache is closed")]
    Closed,
}

impl CacheError {
    /// The stable code JavaScript sees as `err.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            CacheError::InvalidOption { .. } => "ERR_INVALID_OPTION",
            CacheError::InvalidValue(_) => "ERR_INVALID_VALUE",
            CacheError::WrongType { .. } => "ERR_WRONG_TYPE",
            CacheError::Unavailable { .. } => "ERR_REDIS_UNAVAILABLE",
            CacheError::Auth { .. } => "ERR_REDIS_AUTH",
            CacheError::Timeout { .. } => "ERR_REDIS_TIMEOUT",
            CacheError::Redis { .. } => "ERR_REDIS",
            CacheError::OffsetExpired { .. } => "ERR_OFFSET_EXPIRED",
            CacheError::TopicRewritten { .. } => "ERR_TOPIC_REWRITTEN",
            CacheError::Closed => "ERR_CACHE_CLOSED",
        }
    }

    pub(crate) fn invalid_option(option: &'static str, reason: impl Into<String>) -> Self {
        CacheError::InvalidOption {
            option,
            reason: reason.into(),
        }
    }
}
