//! Core errors to JS errors.
//!
//! A synchronous call fails with a JS `Error` whose `code` is ours: napi-rs
//! sets `err.code` from the error's status, and [`Result`]'s status is our
//! [`ErrorCode`]. Results of async work travel in the bridge's batches
//! instead (see `bridge.rs`), each error as `[CODE] message`, the one text
//! format `ts/errors.ts` (`fromBatchError`) reads back.

use durable_agent_core::agent::AgentError;
use durable_agent_core::{CacheError, ErrorCode};

/// What a native method returns: its error's `code` is ours.
pub type Result<T> = napi::Result<T, ErrorCode>;

/// An error with a stable code, as the binding reports it.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> ErrorCode;

    /// The JS error of a synchronous call.
    fn thrown(&self) -> napi::Error<ErrorCode> {
        napi::Error::new(self.code(), self.to_string())
    }

    /// The text of an error in a bridge batch.
    fn batched(&self) -> String {
        format!("[{}] {self}", self.code())
    }
}

impl Coded for CacheError {
    fn code(&self) -> ErrorCode {
        CacheError::code(self)
    }
}

impl Coded for AgentError {
    fn code(&self) -> ErrorCode {
        AgentError::code(self)
    }
}

pub trait IntoNapi<T> {
    fn into_napi(self) -> Result<T>;
}

impl<T, E: Coded> IntoNapi<T> for std::result::Result<T, E> {
    fn into_napi(self) -> Result<T> {
        self.map_err(|e| e.thrown())
    }
}
