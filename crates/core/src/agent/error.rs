//! Errors of durable runs, each with a stable code (see README).

use crate::error::{CacheError, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// No state for the run: it never existed, was cleaned up, or expired.
    #[error("run `{0}` not found: it never existed, was cleaned up, or expired")]
    RunNotFound(String),

    /// Resuming (approving, declining) a run that is not waiting.
    #[error("run `{run_id}` is {status}, not suspended")]
    NotSuspended { run_id: String, status: &'static str },

    /// The run was started by another agent.
    #[error("run `{run_id}` belongs to agent `{owner}`, not to `{agent}`")]
    OwnedElsewhere {
        run_id: String,
        owner: String,
        agent: String,
    },

    /// Another process drives the run (it holds the run's lease).
    #[error("run `{0}` is being driven by another process (it holds the run's lease)")]
    RunActive(String),

    /// A new run with the id of an existing one.
    #[error("run `{0}` already exists")]
    RunExists(String),

    /// Another writer changed the run since this one read it (a concurrent
    /// resume, or another process driving it).
    #[error("run `{0}` was changed by another writer")]
    Conflict(String),

    /// The driver's lease lapsed (the store was unreachable, or this process
    /// stalled, for longer than the lease) and another process took the run
    /// over: it drives the run now, and this driver stopped.
    #[error(
        "run `{0}`: this process's lease on it lapsed (the store was unreachable or the process stalled for longer \
         than the lease) and another process took the run over; this process stopped driving it"
    )]
    LeaseLost(String),

    /// This process stopped driving the run without ending it (its cache
    /// was closed): the run stays at its last checkpoint, its lease given
    /// up, for another process to recover at once.
    #[error(
        "run `{0}`: this process stopped driving it because its cache was closed; the run stays at its last \
         checkpoint, and another process sharing the store can recover it now (`recover`, `recoverActiveRuns`)"
    )]
    Released(String),

    /// The store stayed unreachable for longer than the driver could wait
    /// (its lease): the run stays at its last checkpoint, for any process to
    /// recover.
    #[error(
        "run `{run_id}`: gave up driving it after the store was unreachable for {} ms ({source}); the run stays \
         at its last checkpoint, and any process sharing the store can recover it (`recover`, `recoverActiveRuns`)",
        lasted.as_millis()
    )]
    GaveUp {
        run_id: String,
        lasted: std::time::Duration,
        source: CacheError,
    },

    /// A running run that no process has driven for longer than a driver
    /// rides an outage out and a lease more: its driver stopped and nobody
    /// recovered it (see `Agent::check_driven`).
    #[error(
        "run `{0}` is not driven by any process: its driver stopped (its lease lapsed) and nobody recovered it; \
         recover(runId) goes on from its last checkpoint"
    )]
    Abandoned(String),

    /// A decision for a tool call the run is not waiting on.
    #[error("run `{run_id}` has no tool call `{tool_call_id}` waiting for approval")]
    UnknownToolCall { run_id: String, tool_call_id: String },

    /// Bad input from the caller.
    #[error("{0}")]
    InvalidArg(String),

    /// A stored state this version cannot read.
    #[error("run `{run_id}` has an unreadable state: {reason}")]
    CorruptState { run_id: String, reason: String },
}

impl AgentError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AgentError::Cache(e) => e.code(),
            AgentError::RunNotFound(_) => "ERR_RUN_NOT_FOUND",
            AgentError::NotSuspended { .. } => "ERR_RUN_NOT_SUSPENDED",
            AgentError::OwnedElsewhere { .. } => "ERR_RUN_OWNED_ELSEWHERE",
            AgentError::RunExists(_) => "ERR_RUN_EXISTS",
            AgentError::RunActive(_) => "ERR_RUN_ACTIVE",
            AgentError::Abandoned(_) => "ERR_RUN_ABANDONED",
            AgentError::Conflict(_) | AgentError::LeaseLost(_) => "ERR_RUN_CONFLICT",
            AgentError::Released(_) => "ERR_CACHE_CLOSED",
            // What the store said, so callers that check for it still can.
            AgentError::GaveUp { source, .. } => source.code(),
            AgentError::UnknownToolCall { .. } => "ERR_UNKNOWN_TOOL_CALL",
            AgentError::InvalidArg(_) => "ERR_INVALID_ARG",
            AgentError::CorruptState { .. } => "ERR_CORRUPT_STATE",
        }
    }
}
