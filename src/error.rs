//! Core errors to JS errors.
//!
//! napi-rs sets `err.code` from a `Status`, which cannot carry our codes, so
//! the code travels as a `[CODE] ` prefix of the message; the facade
//! (`ts/errors.ts`) strips it into `err.code`. One format, parsed in one place.

use durable_agent_core::agent::AgentError;
use durable_agent_core::{CacheError, ErrorCode};

/// An error with a stable code, as the bridge reports it.
pub trait Coded: std::fmt::Display {
    fn code(&self) -> ErrorCode;
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

pub fn agent_to_napi(error: AgentError) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("[{}] {error}", error.code()))
}

pub fn to_napi(error: CacheError) -> napi::Error {
    napi::Error::new(napi::Status::GenericFailure, format!("[{}] {error}", error.code()))
}

pub trait IntoNapi<T> {
    fn into_napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for Result<T, CacheError> {
    fn into_napi(self) -> napi::Result<T> {
        self.map_err(to_napi)
    }
}
