//! The core's wire constants (`core::wire`), handed to the facade once
//! (`ts/wire.ts`), so that JS and Rust spell them in one place.

use durable_agent_core::wire;
use napi_derive::napi;

/// What JS needs to know of the contracts the core writes (see `core::wire`).
#[napi(object)]
pub struct WireConstants {
    /// A run's topic is this prefix and its id.
    pub run_topic_prefix: String,
    /// The members of a stored event, in the order they are written.
    pub event_fields: Vec<String>,
    /// The event types of a run: a stream part (`data` is the part), and
    /// where it waits for approval (`data`: the calls).
    pub run_part_event: String,
    pub suspended_event: String,
    /// The members of a run summary.
    pub run_summary_fields: Vec<String>,
    /// The members of the loop's callback requests.
    pub model_request_fields: Vec<String>,
    pub tool_request_fields: Vec<String>,
    /// Codes of errors that mean the store is briefly away: retry.
    pub transient_codes: Vec<String>,
    /// The first wait before a retry, doubled after each up to `retryMaxDelayMs`.
    pub retry_first_delay_ms: u32,
    pub retry_max_delay_ms: u32,
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[napi(catch_unwind)]
pub fn wire_constants() -> WireConstants {
    WireConstants {
        run_topic_prefix: wire::RUN_TOPIC_PREFIX.to_owned(),
        event_fields: strings(&wire::EVENT_FIELDS),
        run_part_event: wire::CHUNK.to_owned(),
        suspended_event: wire::SUSPENDED.to_owned(),
        run_summary_fields: strings(&wire::RUN_SUMMARY_FIELDS),
        model_request_fields: strings(&wire::MODEL_REQUEST_FIELDS),
        tool_request_fields: strings(&wire::TOOL_REQUEST_FIELDS),
        transient_codes: strings(&wire::TRANSIENT_CODES),
        retry_first_delay_ms: wire::RETRY_FIRST_DELAY_MS as u32,
        retry_max_delay_ms: wire::RETRY_MAX_DELAY_MS as u32,
    }
}
