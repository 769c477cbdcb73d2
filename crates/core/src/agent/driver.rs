//! The durable loop: model step, then the tool calls it asked for, until the
//! model stops, `maxSteps` is reached, the run is aborted, or a tool call needs
//! approval. Each completed model step and each completed tool call is
//! checkpointed with the events it produced (see `RunStore::commit`); a step
//! whose result is checkpointed never runs again for that run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::StreamExt as _;
use serde_json::{json, Value};

use super::control::{new_lease_owner, stop_requested, Inbox, Lease, RunControl, Stop};
use super::error::AgentError;
use super::outage::{transient, Outage, CALL_RIDE_OUT};
use super::parts::{error_part, iso_now, EventWriter};
use super::run::{abort_part, RunStore};
use super::state::{Decision, Phase, RunState, Status, ToolCall};
use crate::cache::runs::LeaseAction;
use crate::error::CacheError;
use crate::wire::{
    join, raw, raw_text, ErrorInfo, LoopOptions, ModelReply, ModelRequest, ToolReply, ToolRequest, CHUNK, SUSPENDED,
};

/// The model and the tools, as the embedder provides them (the binding: JS
/// async functions). Requests and replies are JSON text.
pub trait Callbacks: Send + Sync + 'static {
    /// One model step. Request: `{runId, step, messages, options}`. While it
    /// runs, the model's stream parts arrive through [`RunControl::emit`].
    /// Reply: `{content, toolCalls, finishReason, usage, response?,
    /// providerMetadata?}` or `{error: {name, message}}`; `Err` is a failure of
    /// the call itself (a rejected promise), with its message. A tool call
    /// with an `error` is invalid (never run: its result is that error).
    fn model(&self, request: String) -> BoxFuture<'static, Result<String, String>>;

    /// One tool call. Request: `{runId, step, toolCallId, toolName, input,
    /// idempotencyKey, messages, options}`. Reply: `{output}` or `{error: {name, message}}`.
    fn tool(&self, request: String) -> BoxFuture<'static, Result<String, String>>;
}

pub struct Driver {
    run: RunStore,
    callbacks: Arc<dyn Callbacks>,
    state: RunState,
    inbox: Inbox,
    writer: EventWriter,
    /// The state's version was written by the caller just now (`create`,
    /// `resume`): no other driver can start from it, so no claim is needed.
    claimed: bool,
    /// An abort asked for by another process, seen at a checkpoint or while
    /// waiting for a callback ("" without a reason).
    requested_abort: Option<String>,
    /// How long a lease on the run lasts, when this driver takes one.
    lease_ttl: Option<Duration>,
    /// How long a store outage is ridden out (see [`Self::riding_out`]).
    ride_out: Option<Duration>,
    lease: Option<Arc<Lease>>,
    /// The lease went with the checkpoint that ended or suspended the run.
    lease_given_up: bool,
}

enum Flow {
    Continue,
    Stop,
}

impl Driver {
    /// A driver for `state` (running), and the handle to feed and stop it.
    pub fn new(run: RunStore, callbacks: Arc<dyn Callbacks>, state: RunState) -> (Driver, RunControl) {
        let (control, inbox) = RunControl::new();
        (Driver::with_inbox(run, callbacks, state, inbox), control)
    }

    /// A driver listening to `inbox`, whose [`RunControl`] the caller made
    /// (and could hand out, e.g. to abort, before the state was loaded).
    pub fn with_inbox(run: RunStore, callbacks: Arc<dyn Callbacks>, state: RunState, inbox: Inbox) -> Driver {
        let writer = EventWriter::new(&state.run_id, state.version);
        Driver {
            run,
            callbacks,
            state,
            inbox,
            writer,
            claimed: false,
            requested_abort: None,
            lease_ttl: None,
            ride_out: None,
            lease: None,
            lease_given_up: false,
        }
    }

    /// For a state this caller has just committed itself (`run::create`,
    /// `run::resume` that returned it): its version is already a claim.
    pub fn freshly_committed(mut self) -> Self {
        self.claimed = true;
        self
    }

    /// Holds a lease on the run while driving it (taken at the start, renewed
    /// every third of `ttl`, given up at the end), so that other processes
    /// know it is driven and can recover it once the lease lapses.
    pub fn with_lease(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Rides a store that is away out for up to `outage` (default: the
    /// lease), each result in hand, before giving the run up. Past the
    /// lease, another process may take the run over (then this driver
    /// stops); if none did, this one takes its lease back and goes on.
    pub fn riding_out(mut self, outage: Duration) -> Self {
        self.ride_out = Some(outage);
        self
    }

    /// For a run whose lease `owner` took with the checkpoint that made or
    /// resumed it (`run::create`, `run::resume` with a lease): this driver
    /// holds it already.
    pub fn holding_lease(mut self, owner: String, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self.lease = Some(Arc::new(Lease {
            owner,
            ttl,
            renewed: Mutex::new(Instant::now()),
            due: Default::default(),
        }));
        self
    }

    /// Runs the loop until the run finishes, fails, aborts or suspends, and
    /// returns its last state. An error means the run could not be
    /// checkpointed (the store stayed away for longer than the lease, or
    /// another writer took it over): it stays at its last checkpoint.
    ///
    /// A store that is away is ridden out for up to the lease (see
    /// `outage.rs`), with every result in hand: the write is tried again, and
    /// the run goes on once it lands.
    pub async fn drive(mut self) -> Result<RunState, AgentError> {
        if let (Some(ttl), Status::Running, None) = (self.lease_ttl, self.state.status, &self.lease) {
            let owner = new_lease_owner();
            let mut outage = self.outage();
            let acquired = match self.run.take_lease(&owner, ttl, &mut outage).await {
                Ok(acquired) => acquired,
                Err(e) => return Err(self.gave_up(&outage, e)),
            };
            if !acquired {
                return Err(AgentError::RunActive(self.state.run_id.clone()));
            }
            self.lease = Some(Arc::new(Lease {
                owner,
                ttl,
                renewed: Mutex::new(Instant::now()),
                due: Default::default(),
            }));
        }
        let outcome = self.run_loop().await;
        if let (Some(lease), false) = (&self.lease, self.lease_given_up) {
            // Best effort: a lease not given up lapses by itself.
            let _ = self.run.store.lease_release(&self.run.lease_key, &lease.owner).await;
        }
        outcome.map(|()| self.state)
    }

    async fn run_loop(&mut self) -> Result<(), AgentError> {
        if self.state.status == Status::Running && !self.claimed {
            // Claim the run with a checkpoint of its own: this driver then
            // starts from a version no other driver starts from (so its event
            // ids are new even when a crashed driver published some from the
            // same checkpoint), and a second driver of that checkpoint is
            // refused before it calls anything.
            self.commit(Vec::new()).await?;
            self.writer = EventWriter::new(&self.state.run_id, self.state.version);
        }
        loop {
            if self.state.status != Status::Running {
                return Ok(());
            }
            if *self.inbox.release.borrow() {
                return Err(AgentError::Released(self.state.run_id.clone()));
            }
            let cancel = self
                .inbox
                .cancel
                .borrow()
                .clone()
                .or_else(|| self.requested_abort.take());
            if let Some(reason) = cancel {
                self.abort(reason).await?;
                continue;
            }
            let flow = match self.state.phase {
                Phase::Model => self.model_step().await?,
                Phase::Tools => self.tool_step().await?,
                Phase::Finish => {
                    let finish = self.finish_part();
                    self.state.status = Status::Finished;
                    self.commit(vec![finish]).await?;
                    Flow::Continue
                }
            };
            if let Flow::Stop = flow {
                return Ok(());
            }
        }
    }

    /// How long this driver rides a store outage out: as it was told, else
    /// its lease (no other process can take the run before it lapses).
    fn outage(&self) -> Outage {
        Outage::new(self.ride_out.or(self.lease_ttl).unwrap_or(CALL_RIDE_OUT))
    }

    /// The error of a write that failed: an outage this driver could not
    /// ride out says so (and for how long it waited).
    fn gave_up(&self, outage: &Outage, error: CacheError) -> AgentError {
        if transient(&error) {
            AgentError::GaveUp {
                run_id: self.state.run_id.clone(),
                lasted: outage.lasted(),
                source: error,
            }
        } else {
            error.into()
        }
    }

    /// [`Self::gave_up`] for an error of a run operation.
    fn gave_up_on(&self, outage: &Outage, error: AgentError) -> AgentError {
        match error {
            AgentError::Cache(error) => self.gave_up(outage, error),
            other => other,
        }
    }

    /// Keeps the lease (see [`Lease::keep`]) before a write, riding `outage` out.
    async fn keep_lease(&self, outage: &mut Outage) -> Result<(), AgentError> {
        let Some(lease) = &self.lease else { return Ok(()) };
        // The version stored now: the last this driver wrote.
        let stored = self.state.version;
        loop {
            match lease.keep(&self.run, stored).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(AgentError::LeaseLost(self.state.run_id.clone())),
                Err(e) if outage.again(&e).await => continue,
                Err(e) => return Err(self.gave_up(outage, e)),
            }
        }
    }

    /// Checkpoints the state (already updated) with `events`.
    async fn commit(&mut self, events: Vec<String>) -> Result<(), AgentError> {
        let mut outage = self.outage();
        self.keep_lease(&mut outage).await?;
        let expected = self.state.version;
        self.state.version += 1;
        self.state.next_event += events.len() as u64;
        self.state.updated_at = iso_now();
        // The checkpoint that ends or suspends the run also gives the lease up.
        let release = self
            .lease
            .as_ref()
            .filter(|_| self.state.status != Status::Running)
            .map(|lease| (lease.owner.as_str(), LeaseAction::Release));
        let requested = self
            .run
            .commit_leasing(&self.state, Some(expected), &events, release, &mut outage)
            .await
            .map_err(|e| self.gave_up_on(&outage, e))?;
        self.lease_given_up |= release.is_some();
        if let (Some(reason), Status::Running) = (requested, self.state.status) {
            self.requested_abort = Some(reason.unwrap_or_default());
        }
        Ok(())
    }

    /// Publishes parts outside a checkpoint; refused once another driver
    /// holds the run's lease.
    ///
    /// A store that is away is ridden out. An append is not idempotent, but
    /// this driver is the topic's only writer, so the log's length says
    /// whether a failed attempt landed: appended again only if it did not.
    /// A lease that lapsed meanwhile is taken back if nobody took the run.
    async fn append(&mut self, events: Vec<String>) -> Result<(), AgentError> {
        let owner = self.lease.as_ref().map(|lease| lease.owner.clone());
        let before = self.state.next_event;
        let after = before + events.len() as u64;
        let mut outage = self.outage();
        loop {
            match self.run.append(&events, owner.as_deref()).await {
                Ok(next) => {
                    if let Some(next) = next {
                        self.state.next_event = next;
                    }
                    return Ok(());
                }
                Err(AgentError::LeaseLost(_)) if self.lease.is_some() => {
                    // Lapsed while the store was away: take it back, or stop.
                    if let Some(lease) = &self.lease {
                        lease.due_now();
                    }
                    self.keep_lease(&mut outage).await?;
                }
                Err(AgentError::Cache(e)) => {
                    if !outage.again(&e).await {
                        return Err(self.gave_up(&outage, e));
                    }
                    tracing::warn!(run = %self.state.run_id, code = e.code(), "append failed; retrying");
                    // Find out whether it landed, as long as the store lets us.
                    let landed = loop {
                        match self.run.store.next_index(&self.run.log_key).await {
                            Ok(next) => break next,
                            Err(e) if outage.again(&e).await => continue,
                            Err(e) => return Err(self.gave_up(&outage, e)),
                        }
                    };
                    if landed == after {
                        self.state.next_event = after;
                        return Ok(());
                    }
                    if landed != before {
                        return Err(AgentError::Conflict(self.state.run_id.clone()));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The reason of an abort from this process, if one was asked for. Checked
    /// again when a callback's reply wins the wait: the wait looks at the
    /// abort first, but the reply can become ready between the two looks (a
    /// tool that rejects on its abort signal does exactly that, and the
    /// runtime thread can be preempted between them), and an aborted run
    /// records nothing after the abort.
    fn aborted_here(&self) -> Option<String> {
        self.inbox.cancel.borrow().clone()
    }

    /// Resolves when the run must stop waiting for its callbacks (see
    /// [`stop_requested`]); owns what it watches, so the driver stays free.
    fn stop_watcher(&self) -> impl std::future::Future<Output = Stop> + 'static {
        stop_requested(
            self.inbox.cancel.clone(),
            self.inbox.release.clone(),
            self.run.clone(),
            self.lease.clone(),
            self.state.version,
        )
    }

    /// The step's `start-step` event, the first time (`pending`): with the
    /// model call's warnings when the adapter's first part is `stream-start`,
    /// which is taken out (it is not a part of the run's stream).
    fn step_start(&mut self, pending: &mut bool, parts: &mut Vec<String>) -> Option<String> {
        if !std::mem::take(pending) {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct StreamStart {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            warnings: Value,
        }
        let warnings = match parts.first().map(|part| serde_json::from_str::<StreamStart>(part)) {
            Some(Ok(StreamStart { kind, warnings })) if kind == "stream-start" && warnings.is_array() => {
                parts.remove(0);
                warnings
            }
            _ => json!([]),
        };
        Some(self.chunk(&json!({ "type": "start-step", "request": {}, "warnings": warnings })))
    }

    fn chunk(&mut self, part: &Value) -> String {
        self.writer.chunk(part)
    }

    fn finish_part(&mut self) -> String {
        let part = json!({
            "type": "finish",
            "finishReason": self.state.finish_reason.as_deref().unwrap_or("stop"),
            "totalUsage": self.state.usage,
        });
        self.chunk(&part)
    }

    async fn abort(&mut self, reason: String) -> Result<(), AgentError> {
        let part = abort_part(Some(&reason).filter(|r| !r.is_empty()).map(String::as_str));
        let event = self.chunk(&part);
        self.state.status = Status::Aborted;
        self.commit(vec![event]).await
    }

    async fn fail(&mut self, error: ErrorInfo) -> Result<Flow, AgentError> {
        let event = self.chunk(&error_part(&error.name, &error.message));
        self.state.status = Status::Failed;
        self.state.finish_reason = Some("error".into());
        self.commit(vec![event]).await?;
        Ok(Flow::Stop)
    }

    async fn model_step(&mut self) -> Result<Flow, AgentError> {
        // Published with the step's first parts (or its reply): a write, and a
        // wake-up of every reader, less per step.
        let mut start = true;
        let request = ModelRequest {
            run_id: &self.state.run_id,
            step: self.state.step,
            messages: &self.state.messages,
            options: &self.state.options,
        }
        .text();
        let call = self.callbacks.model(request);
        tokio::pin!(call);
        // One watcher for the whole step: made anew per pass of the loop, its
        // timer would restart with every batch of parts, and a model that
        // streams steadily would never have its lease renewed.
        let stop = self.stop_watcher();
        tokio::pin!(stop);
        let mut parts = Vec::new();
        // Once every `RunControl` is gone no part can come: stop listening,
        // or the closed channel (ready at once, forever) would spin the loop.
        let mut parts_open = true;
        let reply = loop {
            enum Next {
                Cancelled(Stop),
                Parts,
                Done(Result<String, String>),
            }
            let next = tokio::select! {
                biased;
                stop = &mut stop => Next::Cancelled(stop),
                received = self.inbox.parts.recv_many(&mut parts, 256), if parts_open => {
                    parts_open = received > 0;
                    Next::Parts
                }
                reply = &mut call => Next::Done(reply),
            };
            match next {
                Next::Cancelled(Stop::Abort(reason)) => {
                    self.requested_abort = Some(reason);
                    return Ok(Flow::Continue);
                }
                Next::Cancelled(Stop::LeaseLost) => return Err(AgentError::LeaseLost(self.state.run_id.clone())),
                Next::Cancelled(Stop::Release) => return Err(AgentError::Released(self.state.run_id.clone())),
                Next::Parts => {
                    let mut events: Vec<String> = self.step_start(&mut start, &mut parts).into_iter().collect();
                    events.extend(parts.drain(..).map(|p| self.writer.event(CHUNK, &p)));
                    self.append(events).await?;
                }
                Next::Done(reply) => match self.aborted_here() {
                    Some(reason) => {
                        self.requested_abort = Some(reason);
                        return Ok(Flow::Continue);
                    }
                    None => break reply,
                },
            }
        };
        // Parts emitted just before the reply.
        while let Ok(part) = self.inbox.parts.try_recv() {
            parts.push(part);
        }
        let mut events: Vec<String> = self.step_start(&mut start, &mut parts).into_iter().collect();
        events.extend(parts.drain(..).map(|p| self.writer.event(CHUNK, &p)));
        self.append(events).await?;

        let reply = match reply {
            Ok(text) => serde_json::from_str::<ModelReply>(&text)
                .map_err(|e| ErrorInfo::new("InvalidModelReply", format!("the model adapter replied with {e}"))),
            Err(message) => Err(ErrorInfo::new("Error", message)),
        };
        let reply = match reply {
            Ok(ModelReply { error: Some(error), .. }) | Err(error) => return self.fail(error).await,
            Ok(reply) => reply,
        };
        self.state.usage.add(&reply.usage);
        if !reply.content.is_empty() {
            self.state.messages.push(raw_text(format!(
                r#"{{"role":"assistant","content":{}}}"#,
                join(&reply.content)
            )));
        }
        let finish_reason = reply.finish_reason.unwrap_or_else(|| "stop".to_owned());
        let mut step_finish = json!({
            "type": "finish-step",
            "response": reply.response.map_or(Value::Object(Default::default()), |r| serde_json::from_str(r.get()).unwrap_or(Value::Null)),
            "usage": reply.usage,
            "finishReason": finish_reason,
        });
        if let Some(meta) = reply.provider_metadata {
            step_finish["providerMetadata"] = serde_json::from_str(meta.get()).unwrap_or(Value::Null);
        }
        self.state.finish_reason = Some(finish_reason);
        if reply.tool_calls.is_empty() {
            let events = vec![self.chunk(&step_finish), self.finish_part()];
            self.state.phase = Phase::Finish;
            self.state.status = Status::Finished;
            self.commit(events).await?;
            return Ok(Flow::Stop);
        }
        let require_all = self.loop_options().require_tool_approval;
        // Invalid calls get their `tool-error` now, with this checkpoint, as
        // in the AI SDK: they are never run nor put to the user for approval.
        let mut events = Vec::new();
        let mut pending = Vec::new();
        for c in reply.tool_calls {
            let call = ToolCall {
                tool_call_id: c.tool_call_id,
                tool_name: c.tool_name,
                input: c.input,
                needs_approval: c.needs_approval || require_all,
                decision: None,
                approval_requested: false,
            };
            match c.error {
                Some(error) => {
                    let (part, result) = tool_error(&call, &error);
                    events.push(self.chunk(&part));
                    self.state.tool_results.push(raw(&result));
                }
                None => pending.push(call),
            }
        }
        self.state.pending = pending;
        self.state.step_finish = Some(raw(&step_finish));
        self.state.phase = Phase::Tools;
        self.commit(events).await?;
        Ok(Flow::Continue)
    }

    /// What of the caller's options the loop itself reads.
    fn loop_options(&self) -> LoopOptions {
        serde_json::from_str(self.state.options.get()).unwrap_or_default()
    }

    async fn tool_step(&mut self) -> Result<Flow, AgentError> {
        // Declined calls: their result is the refusal.
        let declined: Vec<ToolCall> = self
            .state
            .pending
            .iter()
            .filter(|c| matches!(c.decision, Some(Decision::Declined { .. })))
            .cloned()
            .collect();
        if !declined.is_empty() {
            let mut events = Vec::new();
            for call in &declined {
                let Some(Decision::Declined { reason }) = &call.decision else {
                    continue;
                };
                let reason = reason.clone().unwrap_or_else(|| "declined by the user".to_owned());
                events.push(self.chunk(&json!({
                    "type": "tool-output-denied",
                    "toolCallId": call.tool_call_id,
                    "toolName": call.tool_name,
                    "reason": reason,
                })));
                self.state.tool_results.push(raw(&json!({
                    "type": "tool-result",
                    "toolCallId": call.tool_call_id,
                    "toolName": call.tool_name,
                    "output": { "type": "execution-denied", "reason": reason },
                })));
                self.state.pending.retain(|c| c.tool_call_id != call.tool_call_id);
            }
            self.commit(events).await?;
        }

        let runnable: Vec<ToolCall> = self
            .state
            .pending
            .iter()
            .filter(|c| !c.needs_approval || c.decision == Some(Decision::Approved))
            .cloned()
            .collect();
        let calls: Vec<_> = runnable
            .into_iter()
            .map(|call| {
                let request = ToolRequest {
                    run_id: &self.state.run_id,
                    step: self.state.step,
                    tool_call_id: &call.tool_call_id,
                    tool_name: &call.tool_name,
                    input: &call.input,
                    idempotency_key: format!("{}:{}:{}", self.state.run_id, self.state.step, call.tool_call_id),
                    // The conversation up to these calls (AI SDK tools get it as `messages`).
                    messages: &self.state.messages,
                    options: &self.state.options,
                }
                .text();
                // The callback is called when the call starts (see below).
                let callbacks = self.callbacks.clone();
                async move { (call, callbacks.tool(request).await) }
            })
            .collect();
        // A call's callback runs once its future is first polled: at most
        // `toolCallConcurrency` at a time, the next as one completes.
        let mut left = calls.len();
        let mut running =
            futures::stream::iter(calls).buffer_unordered(self.loop_options().tool_call_concurrency.max(1));
        let stop = self.stop_watcher();
        tokio::pin!(stop);
        while left > 0 {
            left -= 1;
            let next = tokio::select! {
                biased;
                stop = &mut stop => Err(stop),
                // Never `None`: the loop runs while calls are pending.
                done = running.next() => done.ok_or(Stop::Abort(String::new())),
            };
            // Cancelled: abandon the calls; the loop publishes `abort`.
            let (call, reply) = match next {
                Ok(done) => match self.aborted_here() {
                    // The reply may be the abort's own doing (a tool that
                    // stops on its signal): it does not count.
                    Some(reason) => {
                        self.requested_abort = Some(reason);
                        return Ok(Flow::Continue);
                    }
                    None => done,
                },
                Err(Stop::Abort(reason)) => {
                    self.requested_abort = Some(reason);
                    return Ok(Flow::Continue);
                }
                Err(Stop::LeaseLost) => return Err(AgentError::LeaseLost(self.state.run_id.clone())),
                Err(Stop::Release) => return Err(AgentError::Released(self.state.run_id.clone())),
            };
            let reply = match reply {
                Ok(text) => serde_json::from_str::<ToolReply>(&text)
                    .map_err(|e| ErrorInfo::new("InvalidToolReply", format!("the tool adapter replied with {e}"))),
                Err(message) => Err(ErrorInfo::new("Error", message)),
            };
            let (part, result) = match reply {
                Ok(ToolReply { error: None, output }) => {
                    let output: Value =
                        output.map_or(Value::Null, |o| serde_json::from_str(o.get()).unwrap_or(Value::Null));
                    (
                        json!({
                            "type": "tool-result",
                            "toolCallId": call.tool_call_id,
                            "toolName": call.tool_name,
                            "input": serde_json::from_str::<Value>(call.input.get()).unwrap_or(Value::Null),
                            "output": output,
                        }),
                        json!({
                            "type": "tool-result",
                            "toolCallId": call.tool_call_id,
                            "toolName": call.tool_name,
                            "output": { "type": "json", "value": output },
                        }),
                    )
                }
                Ok(ToolReply { error: Some(error), .. }) | Err(error) => tool_error(&call, &error),
            };
            let event = self.chunk(&part);
            self.state.tool_results.push(raw(&result));
            self.state.pending.retain(|c| c.tool_call_id != call.tool_call_id);
            self.commit(vec![event]).await?;
        }

        let waiting: Vec<ToolCall> = self.state.awaiting_approval().cloned().collect();
        if !waiting.is_empty() {
            let mut events = Vec::new();
            for call in waiting.iter().filter(|c| !c.approval_requested) {
                let input: Value = serde_json::from_str(call.input.get()).unwrap_or(Value::Null);
                events.push(self.chunk(&json!({
                    "type": "tool-approval-request",
                    "approvalId": call.tool_call_id,
                    "toolCall": {
                        "type": "tool-call",
                        "toolCallId": call.tool_call_id,
                        "toolName": call.tool_name,
                        "input": input,
                    },
                })));
            }
            let calls: Vec<Value> = waiting
                .iter()
                .map(|c| {
                    json!({
                        "toolCallId": c.tool_call_id,
                        "toolName": c.tool_name,
                        "args": serde_json::from_str::<Value>(c.input.get()).unwrap_or(Value::Null),
                    })
                })
                .collect();
            let first = &calls[0];
            let marker = json!({
                "type": "approval",
                "toolCallId": first["toolCallId"],
                "toolName": first["toolName"],
                "args": first["args"],
                "toolCalls": calls,
            });
            events.push(self.writer.event(SUSPENDED, &marker.to_string()));
            for call in self.state.pending.iter_mut() {
                call.approval_requested |= call.needs_approval && call.decision.is_none();
            }
            self.state.status = Status::Suspended;
            self.commit(events).await?;
            return Ok(Flow::Stop);
        }

        // Every call has its result: the step is complete.
        let mut events = Vec::new();
        let results = join(&self.state.tool_results);
        self.state
            .messages
            .push(raw_text(format!(r#"{{"role":"tool","content":{results}}}"#)));
        self.state.tool_results.clear();
        if let Some(step_finish) = self.state.step_finish.take() {
            events.push(self.writer.event(CHUNK, step_finish.get()));
        }
        self.state.step += 1;
        if self.state.step >= self.state.max_steps {
            events.push(self.finish_part());
            self.state.phase = Phase::Finish;
            self.state.status = Status::Finished;
        } else {
            self.state.phase = Phase::Model;
        }
        self.commit(events).await?;
        Ok(Flow::Continue)
    }
}

/// A failed call's `tool-error` part and the tool result the model gets.
fn tool_error(call: &ToolCall, error: &ErrorInfo) -> (Value, Value) {
    (
        json!({
            "type": "tool-error",
            "toolCallId": call.tool_call_id,
            "toolName": call.tool_name,
            "input": serde_json::from_str::<Value>(call.input.get()).unwrap_or(Value::Null),
            "error": error.json(),
        }),
        json!({
            "type": "tool-result",
            "toolCallId": call.tool_call_id,
            "toolName": call.tool_name,
            "output": { "type": "error-text", "value": error.message },
        }),
    )
}
