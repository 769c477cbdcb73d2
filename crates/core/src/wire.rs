//! Everything that crosses to JS or to the store, written once: topic
//! names, the stored event envelope, the requests and replies of the loop's
//! callbacks, the run summary JS reads, which errors mean "the store is
//! briefly away" and how long to wait between attempts.
//!
//! The binding hands the constants to JS (`wireConstants()`), and the
//! facade's types of these shapes are checked against them by a test
//! (`__test__/wire.spec.ts`), so the two sides cannot drift apart.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::agent::state::{Decision, RunState, Usage};
use crate::error::ErrorCode;

// ---------------------------------------------------------------------------
// Topics

/// Where a run's events go: `agent.stream.<runId>` (Mastra's `AGENT_STREAM_TOPIC`).
pub const RUN_TOPIC_PREFIX: &str = "agent.stream.";

/// The topic of run `run_id`.
pub fn run_topic(run_id: &str) -> String {
    format!("{RUN_TOPIC_PREFIX}{run_id}")
}

// ---------------------------------------------------------------------------
// Events

/// The members of a stored event, in the order they are written (Mastra's
/// `Event`; the log adds `index`). `createdAt` is epoch milliseconds.
pub const EVENT_FIELDS: [&str; 5] = ["id", "type", "runId", "data", "createdAt"];

/// Event type of a stream part (`data` is the part).
pub const CHUNK: &str = "chunk";
/// Event type marking that the run waits for tool approval (`data`: the calls).
pub const SUSPENDED: &str = "suspended";

/// The text of an event (see [`EVENT_FIELDS`]): `id`, `run_id_json` and
/// `data_json` are JSON text already.
pub fn event_text(id_json: &str, kind_json: &str, run_id_json: &str, data_json: &str, created_at_ms: i64) -> String {
    format!(
        r#"{{"id":{id_json},"type":{kind_json},"runId":{run_id_json},"data":{data_json},"createdAt":{created_at_ms}}}"#
    )
}

// ---------------------------------------------------------------------------
// The loop's callbacks: requests

/// What a model step's callback gets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRequest<'a> {
    pub run_id: &'a str,
    pub step: u32,
    pub messages: &'a [Box<RawValue>],
    pub options: &'a RawValue,
}

/// What a tool call's callback gets.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolRequest<'a> {
    pub run_id: &'a str,
    pub step: u32,
    pub tool_call_id: &'a str,
    pub tool_name: &'a str,
    pub input: &'a RawValue,
    /// The same for every attempt of the same call: `<runId>:<step>:<toolCallId>`.
    pub idempotency_key: String,
    /// The conversation up to the call.
    pub messages: &'a [Box<RawValue>],
    pub options: &'a RawValue,
}

impl ModelRequest<'_> {
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a request serialises")
    }
}

impl ToolRequest<'_> {
    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a request serialises")
    }
}

// ---------------------------------------------------------------------------
// The loop's callbacks: replies, and the options the loop reads

/// The caller's options the loop reads (the rest is the callbacks' business).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoopOptions {
    /// Every tool call waits for approval.
    pub require_tool_approval: bool,
    /// At most this many tool calls of a step run at once.
    pub tool_call_concurrency: usize,
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
pub struct ModelReply {
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub content: Vec<Box<RawValue>>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCallReply>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub response: Option<Box<RawValue>>,
    #[serde(default)]
    pub provider_metadata: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallReply {
    pub tool_call_id: String,
    pub tool_name: String,
    pub input: Box<RawValue>,
    #[serde(default)]
    pub needs_approval: bool,
    /// An invalid call (its input is not JSON, its tool's schema rejects it,
    /// or there is no such tool): never run, its result is this error.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

#[derive(Deserialize)]
pub struct ToolReply {
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    #[serde(default)]
    pub output: Option<Box<RawValue>>,
}

#[derive(Deserialize, Clone)]
pub struct ErrorInfo {
    #[serde(default = "default_error_name")]
    pub name: String,
    #[serde(default)]
    pub message: String,
}

fn default_error_name() -> String {
    "Error".to_owned()
}

impl ErrorInfo {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        ErrorInfo {
            name: name.to_owned(),
            message: message.into(),
        }
    }

    pub fn json(&self) -> Value {
        json!({ "name": self.name, "message": self.message })
    }
}

pub fn raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).expect("a Value serialises to valid JSON")
}

pub fn raw_text(text: String) -> Box<RawValue> {
    RawValue::from_string(text).expect("built from valid JSON parts")
}

pub fn join(values: &[Box<RawValue>]) -> String {
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

// ---------------------------------------------------------------------------
// What JS learns of a run

/// A run as JS sees it: everything but the prompt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub run_id: String,
    pub agent_id: String,
    pub status: &'static str,
    pub step: u32,
    pub next_event: u64,
    pub pending: Vec<PendingCall>,
    pub usage: Usage,
    pub finish_reason: Option<String>,
    pub options: Box<RawValue>,
    pub created_at: String,
    pub updated_at: String,
    /// Whether a process holds the run's lease (drives it now), when looked up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leased: Option<bool>,
    /// Who holds it then: the driver's lease id (`<pid>:<...>`, opaque beyond
    /// the pid of its process).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
}

/// The members of a [`RunSummary`] (`leased` and `leaseOwner` only when
/// looked up), for the test that keeps the facade's type of it in step.
pub const RUN_SUMMARY_FIELDS: [&str; 13] = [
    "runId",
    "agentId",
    "status",
    "step",
    "nextEvent",
    "pending",
    "usage",
    "finishReason",
    "options",
    "createdAt",
    "updatedAt",
    "leased",
    "leaseOwner",
];

/// A tool call of the current step without a result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingCall {
    pub tool_call_id: String,
    pub tool_name: String,
    pub args: Value,
    pub needs_approval: bool,
    pub decision: Option<Decision>,
}

impl RunSummary {
    /// The summary of `state`; `lease`: when looked up, who holds the run's
    /// lease (`Some(None)`: nobody).
    pub fn of(state: &RunState, lease: Option<Option<String>>) -> Self {
        RunSummary {
            run_id: state.run_id.clone(),
            agent_id: state.agent_id.clone(),
            status: state.status.as_str(),
            step: state.step,
            next_event: state.next_event,
            pending: state
                .pending
                .iter()
                .map(|c| PendingCall {
                    tool_call_id: c.tool_call_id.clone(),
                    tool_name: c.tool_name.clone(),
                    args: serde_json::from_str(c.input.get()).unwrap_or_default(),
                    needs_approval: c.needs_approval,
                    decision: c.decision.clone(),
                })
                .collect(),
            usage: state.usage,
            finish_reason: state.finish_reason.clone(),
            options: state.options.clone(),
            created_at: state.created_at.clone(),
            updated_at: state.updated_at.clone(),
            leased: lease.as_ref().map(Option::is_some),
            lease_owner: lease.flatten(),
        }
    }

    pub fn text(&self) -> String {
        serde_json::to_string(self).expect("a summary serialises")
    }
}

// ---------------------------------------------------------------------------
// A store briefly away

/// The codes of errors that mean the store is briefly away (a stall,
/// restart, failover or reconnect): a writer waits and tries again, a reader
/// reads again.
pub const TRANSIENT_CODES: [ErrorCode; 2] = ["ERR_REDIS_UNAVAILABLE", "ERR_REDIS_TIMEOUT"];

/// The wait before the first retry of an attempt that met the store away,
/// doubled after each until [`RETRY_MAX_DELAY_MS`].
pub const RETRY_FIRST_DELAY_MS: u64 = 50;
/// The longest wait between two attempts.
pub const RETRY_MAX_DELAY_MS: u64 = 250;

// ---------------------------------------------------------------------------
// The members of the requests, for the test that keeps the facade's types
// of them in step (checked against what serde writes, below).

pub const MODEL_REQUEST_FIELDS: [&str; 4] = ["runId", "step", "messages", "options"];
pub const TOOL_REQUEST_FIELDS: [&str; 8] = [
    "runId",
    "step",
    "toolCallId",
    "toolName",
    "input",
    "idempotencyKey",
    "messages",
    "options",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        let value: Value = serde_json::from_str(text).unwrap();
        let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn sorted(fields: &[&str]) -> Vec<String> {
        let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        fields.sort();
        fields
    }

    #[test]
    fn the_field_lists_name_what_serde_writes() {
        let options = raw(&json!({}));
        let messages = [raw(&json!({ "role": "user", "content": "hi" }))];
        let model = ModelRequest {
            run_id: "r",
            step: 0,
            messages: &messages,
            options: &options,
        };
        assert_eq!(keys(&model.text()), sorted(&MODEL_REQUEST_FIELDS));
        let input = raw(&json!({}));
        let tool = ToolRequest {
            run_id: "r",
            step: 0,
            tool_call_id: "c",
            tool_name: "t",
            input: &input,
            idempotency_key: "r:0:c".into(),
            messages: &messages,
            options: &options,
        };
        assert_eq!(keys(&tool.text()), sorted(&TOOL_REQUEST_FIELDS));
        let event = event_text("\"e\"", "\"chunk\"", "\"r\"", "{}", 1);
        assert_eq!(keys(&event), sorted(&EVENT_FIELDS));
        let event: Value = serde_json::from_str(&event).unwrap();
        assert_eq!(event["createdAt"], 1);
    }
}
