//! The JSON the loop exchanges with its callbacks (see [`super::driver::Callbacks`]):
//! the replies it reads, the options it reads, and helpers to build raw JSON.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::state::Usage;

/// The caller's options the loop reads (the rest is the callbacks' business).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct LoopOptions {
    /// Every tool call waits for approval.
    pub(super) require_tool_approval: bool,
    /// At most this many tool calls of a step run at once.
    pub(super) tool_call_concurrency: usize,
}

impl Default for LoopOptions {
    fn default() -> Self {
        LoopOptions {
            require_tool_approval: false,
            // Mastra's default.
            tool_call_concurrency: 10,
        }
    }
}

/// A model step's reply.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelReply {
    #[serde(default)]
    pub(super) error: Option<ErrorInfo>,
    #[serde(default)]
    pub(super) content: Vec<Box<RawValue>>,
    #[serde(default)]
    pub(super) tool_calls: Vec<ToolCallReply>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) usage: Usage,
    #[serde(default)]
    pub(super) response: Option<Box<RawValue>>,
    #[serde(default)]
    pub(super) provider_metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ToolCallReply {
    pub(super) tool_call_id: String,
    pub(super) tool_name: String,
    pub(super) input: Box<RawValue>,
    #[serde(default)]
    pub(super) needs_approval: bool,
    /// An invalid call (its input is not JSON, its tool's schema rejects it,
    /// or there is no such tool): never run, its result is this error.
    #[serde(default)]
    pub(super) error: Option<ErrorInfo>,
}

#[derive(Deserialize)]
pub(super) struct ToolReply {
    #[serde(default)]
    pub(super) error: Option<ErrorInfo>,
    #[serde(default)]
    pub(super) output: Option<Box<RawValue>>,
}

#[derive(Deserialize, Clone)]
pub(super) struct ErrorInfo {
    #[serde(default = "default_error_name")]
    pub(super) name: String,
    #[serde(default)]
    pub(super) message: String,
}

fn default_error_name() -> String {
    "Error".to_owned()
}

impl ErrorInfo {
    pub(super) fn new(name: &str, message: impl Into<String>) -> Self {
        ErrorInfo {
            name: name.to_owned(),
            message: message.into(),
        }
    }

    pub(super) fn json(&self) -> Value {
        json!({ "name": self.name, "message": self.message })
    }
}

pub(super) fn raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a Value serialises to valid JSON")
}

pub(super) fn raw_text(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("built from valid JSON parts")
}

pub(super) fn join(values: &[Box<RawValue>]) -> String {
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(v.get());
    }
    out.push(']');
    out
}
