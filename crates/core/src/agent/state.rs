//! A run's checkpoint: everything needed to continue it in any process.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    Running,
    /// Waiting for approval of tool calls; kept until resumed or cleaned up.
    Suspended,
    Finished,
    Failed,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Aborted)
    }
}

/// What a running run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// Call the model for step `step`.
    Model,
    /// Execute the step's pending tool calls.
    Tools,
    /// Publish `finish`.
    Finish,
}

/// Token usage, summed over steps. Absent counts stay absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        fn sum(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0) + b);
            }
        }
        sum(&mut self.input_tokens, other.input_tokens);
        sum(&mut self.output_tokens, other.output_tokens);
        sum(&mut self.total_tokens, other.total_tokens);
        sum(&mut self.reasoning_tokens, other.reasoning_tokens);
        sum(&mut self.cached_input_tokens, other.cached_input_tokens);
    }
}

/// A user's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    Approved,
    Declined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// A tool call of the current step that has no result yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    pub tool_call_id: String,
    pub tool_name: String,
    pub input: Box<RawValue>,
    #[serde(default)]
    pub needs_approval: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Whether its `tool-approval-request` part was published.
    #[serde(default)]
    pub approval_requested: bool,
}

/// The checkpoint. `version` comes first: stores compare it (see
/// `cache::runs`) without reading the rest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunState {
    pub version: u64,
    pub run_id: String,
    pub agent_id: String,
    pub status: Status,
    pub phase: Phase,
    /// The current step, 0-based.
    pub step: u32,
    pub max_steps: u32,
    /// The prompt so far, as language-model messages.
    pub messages: Vec<Box<RawValue>>,
    /// Tool calls of the current step still without a result.
    pub pending: Vec<ToolCall>,
    /// Tool-result content of the current step, for its `tool` message.
    pub tool_results: Vec<Box<RawValue>>,
    /// The current step's `finish-step` part, published once its tools are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_finish: Option<Box<RawValue>>,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// The index the run's next event gets: every event before it belongs to
    /// what this checkpoint covers.
    pub next_event: u64,
    /// The caller's options, kept for the callbacks (opaque here).
    pub options: Box<RawValue>,
    pub created_at: String,
    pub updated_at: String,
}

impl RunState {
    /// Approval requests that have no decision yet.
    pub fn awaiting_approval(&self) -> impl Iterator<Item = &ToolCall> {
        self.pending
            .iter()
            .filter(|call| call.needs_approval && call.decision.is_none())
    }
}
