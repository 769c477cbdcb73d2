//! `NativeAgent`: durable runs of one agent, driven in Rust, with the model and
//! the tools as JS async functions.
//!
//! The callbacks take and return JSON text (see `core::agent::driver`); the
//! facade (`ts/agent/`) parses, calls the AI SDK model or the tool, and replies.
//! They are weak threadsafe functions called with `call_async_catch`: a JS
//! callback that throws synchronously or returns a non-promise becomes an
//! error of that call, never an uncaught exception, and a stored callback never
//! keeps Node alive (a run in progress does, through the bridge).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_agent_core::agent::{
    self, AgentError, Callbacks, Decision, Driver, NewRun, RunControl, RunState, RunStore,
};
use durable_agent_core::{Retention, Store};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use napi::bindgen_prelude::{ClassInstance, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Result, Status};
use napi_derive::napi;
use serde_json::json;
use serde_json::value::RawValue;

use crate::bridge::{Bridge, NativeBridge, Reply};
use crate::error::agent_to_napi;
use crate::pubsub::NativePubSub;

/// A JS `(request: string) => Promise<string>`.
type JsAsyncFn = ThreadsafeFunction<String, Promise<String>, String, Status, false, true>;

struct JsCallbacks {
    model: Arc<JsAsyncFn>,
    tool: Arc<JsAsyncFn>,
}

async fn call_js(f: Arc<JsAsyncFn>, request: String) -> std::result::Result<String, String> {
    match f.call_async_catch(request).await {
        Ok(promise) => promise.await.map_err(|e| e.reason.clone()),
        Err(e) => Err(e.reason.clone()),
    }
}

impl Callbacks for JsCallbacks {
    fn model(&self, request: String) -> BoxFuture<'static, std::result::Result<String, String>> {
        call_js(self.model.clone(), request).boxed()
    }

    fn tool(&self, request: String) -> BoxFuture<'static, std::result::Result<String, String>> {
        call_js(self.tool.clone(), request).boxed()
    }
}

#[napi]
pub struct NativeAgent {
    store: Store,
    prefix: String,
    retention: Retention,
    bridge: Bridge,
    agent_id: String,
    /// How long the lease of a run driven here lasts (renewed every third).
    lease: Duration,
    /// How long a driver here rides a store outage out.
    outage: Duration,
    callbacks: Arc<JsCallbacks>,
    /// Runs this process drives now.
    active: Arc<Mutex<HashMap<String, RunControl>>>,
    /// States just created or resumed here, with the lease their checkpoint
    /// took for the driver, handed to the next `drive`.
    prepared: Arc<Mutex<HashMap<String, (RunState, String)>>>,
}

/// Removes a run from `active` when its drive ends.
struct Registered {
    active: Arc<Mutex<HashMap<String, RunControl>>>,
    run_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.active).remove(&self.run_id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What JS learns of a run: everything but the prompt.
fn summary(state: &RunState) -> String {
    let pending: Vec<_> = state
        .pending
        .iter()
        .map(|c| {
            json!({
                "toolCallId": c.tool_call_id,
                "toolName": c.tool_name,
                "args": serde_json::from_str::<serde_json::Value>(c.input.get()).unwrap_or_default(),
                "needsApproval": c.needs_approval,
                "decision": c.decision,
            })
        })
        .collect();
    json!({
        "runId": state.run_id,
        "agentId": state.agent_id,
        "status": state.status.as_str(),
        "step": state.step,
        "nextEvent": state.next_event,
        "pending": pending,
        "usage": state.usage,
        "finishReason": state.finish_reason,
        "options": serde_json::from_str::<serde_json::Value>(state.options.get()).unwrap_or_default(),
        "createdAt": state.created_at,
        "updatedAt": state.updated_at,
    })
    .to_string()
}

/// A summary with `"leased"` added (it is an object: `{...}`).
fn with_leased(summary: String, leased: bool) -> String {
    format!("{},\"leased\":{leased}}}", &summary[..summary.len() - 1])
}

fn raw(text: String, what: &str) -> std::result::Result<Box<RawValue>, AgentError> {
    RawValue::from_string(text).map_err(|e| AgentError::InvalidArg(format!("{what} is not valid JSON: {e}")))
}

#[napi]
impl NativeAgent {
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "pubsub: NativePubSub, agentId: string, leaseMs: number, outageMs: number, callModel: (request: string) => Promise<string>, callTool: (request: string) => Promise<string>"
    )]
    pub fn new(
        pubsub: ClassInstance<NativePubSub>,
        agent_id: String,
        lease_ms: u32,
        outage_ms: u32,
        call_model: JsAsyncFn,
        call_tool: JsAsyncFn,
    ) -> Self {
        NativeAgent {
            lease: Duration::from_millis(u64::from(lease_ms.max(1))),
            outage: Duration::from_millis(u64::from(outage_ms.max(1))),
            store: pubsub.store.clone(),
            prefix: pubsub.prefix.clone(),
            retention: pubsub.retention,
            bridge: pubsub.bridge.clone(),
            agent_id,
            callbacks: Arc::new(JsCallbacks {
                model: Arc::new(call_model),
                tool: Arc::new(call_tool),
            }),
            active: Arc::default(),
            prepared: Arc::default(),
        }
    }

    /// The bridge this object reports through (the pubsub's).
    #[napi(getter)]
    pub fn bridge(&self) -> NativeBridge {
        NativeBridge::from(&self.bridge)
    }

    fn run_store(&self, run_id: &str) -> std::result::Result<RunStore, AgentError> {
        RunStore::new(self.store.clone(), &self.prefix, run_id, self.retention)
    }

    /// Runs `work` at once when it completes without waiting (in memory) and
    /// returns its reply; otherwise queues it on the bridge under `id` and
    /// returns `null`.
    fn now_or_submit<F>(&self, id: u32, work: F) -> Result<Option<String>>
    where
        F: std::future::Future<Output = std::result::Result<String, AgentError>> + Send + 'static,
    {
        let mut work = Box::pin(work);
        if self.store.synchronous() {
            if let Some(done) = (&mut work).now_or_never() {
                return done.map(Some).map_err(agent_to_napi);
            }
        }
        self.bridge.submit(id, async move { work.await.map(Reply::Json) });
        Ok(None)
    }

    /// Creates a run (it must not exist) and publishes its `start` part.
    /// `messages`: the prompt (a JSON array of language-model messages);
    /// `options`: JSON handed back to every callback. Reports the run summary.
    #[napi(catch_unwind)]
    pub fn create(
        &self,
        id: u32,
        run_id: String,
        messages: String,
        max_steps: u32,
        options: String,
    ) -> Result<Option<String>> {
        let new = (|| {
            let messages: Vec<Box<RawValue>> = serde_json::from_str(&messages)
                .map_err(|e| AgentError::InvalidArg(format!("messages must be a JSON array: {e}")))?;
            Ok::<_, AgentError>(NewRun {
                run_id: run_id.clone(),
                agent_id: self.agent_id.clone(),
                messages,
                max_steps,
                options: raw(options, "options")?,
            })
        })();
        let (run, prepared, lease) = (self.run_store(&run_id), self.prepared.clone(), self.lease);
        self.now_or_submit(id, async move {
            let owner = agent::new_lease_owner();
            let state = agent::create_leasing(&run?, new?, Some((&owner, lease))).await?;
            let reply = summary(&state);
            lock(&prepared).insert(state.run_id.clone(), (state, owner));
            Ok(reply)
        })
    }

    /// Drives a created or resumed run until it finishes, fails, aborts or
    /// suspends; reports its summary then. Nothing else may drive it meanwhile.
    #[napi(catch_unwind)]
    pub fn drive(&self, id: u32, run_id: String) -> Result<()> {
        let run = self.run_store(&run_id).map_err(agent_to_napi)?;
        let state = lock(&self.prepared).remove(&run_id);
        let (callbacks, active, agent_id, lease, outage) = (
            self.callbacks.clone(),
            self.active.clone(),
            self.agent_id.clone(),
            self.lease,
            self.outage,
        );
        let callbacks: Arc<dyn Callbacks> = callbacks;
        // Registered now, not when the task starts: an abort right after
        // `drive` must reach the run (it waits in the inbox for the driver).
        let (control, inbox) = RunControl::new();
        lock(&self.active).insert(run_id.clone(), control);
        let registered = Registered {
            active,
            run_id: run_id.clone(),
        };
        self.bridge.submit(id, async move {
            // Unregistered however the drive ends, a panic included.
            let _registered = registered;
            let driver = match state {
                // Its checkpoint was ours, and took the lease for this driver.
                Some((state, owner)) => Driver::with_inbox(run, callbacks, state, inbox)
                    .freshly_committed()
                    .holding_lease(owner, lease),
                None => {
                    let state = agent::load_owned(&run, &run_id, &agent_id).await?;
                    Driver::with_inbox(run, callbacks, state, inbox).with_lease(lease)
                }
            };
            driver
                .riding_out(outage)
                .drive()
                .await
                .map(|state| Reply::Json(summary(&state)))
        });
        Ok(())
    }

    /// Stream parts of the model step in progress (a JSON array of parts, in
    /// order); false when the run is not being driven here.
    #[napi(catch_unwind)]
    pub fn emit(&self, run_id: String, parts: String) -> Result<bool> {
        let parts: Vec<Box<RawValue>> = serde_json::from_str(&parts).map_err(|e| {
            agent_to_napi(AgentError::InvalidArg(format!(
                "stream parts must be a JSON array: {e}"
            )))
        })?;
        let active = lock(&self.active);
        let Some(control) = active.get(&run_id) else {
            return Ok(false);
        };
        Ok(parts
            .into_iter()
            .all(|part| control.emit(String::from(Box::<str>::from(part)))))
    }

    /// Stops a run driven here; false when it is not driven here.
    #[napi(catch_unwind)]
    pub fn abort(&self, run_id: String, reason: Option<String>) -> bool {
        match lock(&self.active).get(&run_id) {
            Some(control) => {
                control.abort(reason);
                true
            }
            None => false,
        }
    }

    /// Stops driving every run this process drives, without ending them (see
    /// `RunControl::release`): each drive ends with `ERR_CACHE_CLOSED` once
    /// it has given its lease up. Returns how many there were.
    #[napi(catch_unwind)]
    pub fn release_all(&self) -> u32 {
        let active = lock(&self.active);
        for control in active.values() {
            control.release();
        }
        active.len() as u32
    }

    /// Aborts a run no driver here holds: a suspended one at once, a running
    /// one by asking its driver in another process; a run that ended is left
    /// as it is. Reports its summary.
    #[napi(catch_unwind)]
    pub fn abort_elsewhere(&self, id: u32, run_id: String, reason: Option<String>) -> Result<Option<String>> {
        let (run, agent_id) = (self.run_store(&run_id), self.agent_id.clone());
        self.now_or_submit(id, async move {
            let state = agent::abort(&run?, &run_id, &agent_id, reason.as_deref()).await?;
            Ok(summary(&state))
        })
    }

    /// Records an approval decision for a suspended run (`toolCallId` absent:
    /// every waiting call). Reports the summary; when its status is
    /// `running`, call `drive` next.
    #[napi(catch_unwind)]
    pub fn resume(
        &self,
        id: u32,
        run_id: String,
        tool_call_id: Option<String>,
        approved: bool,
        reason: Option<String>,
    ) -> Result<Option<String>> {
        let (run, agent_id, prepared, lease) = (
            self.run_store(&run_id),
            self.agent_id.clone(),
            self.prepared.clone(),
            self.lease,
        );
        let decision = if approved {
            Decision::Approved
        } else {
            Decision::Declined { reason }
        };
        self.now_or_submit(id, async move {
            let owner = agent::new_lease_owner();
            let state = agent::resume_leasing(
                &run?,
                &run_id,
                &agent_id,
                tool_call_id.as_deref(),
                decision,
                Some((&owner, lease)),
            )
            .await?;
            let reply = summary(&state);
            if state.status == agent::Status::Running {
                lock(&prepared).insert(run_id, (state, owner));
            }
            Ok(reply)
        })
    }

    /// Reports the summary of a stored run of this agent, with `leased`:
    /// whether a process holds its lease (drives it now).
    #[napi(catch_unwind)]
    pub fn inspect(&self, id: u32, run_id: String) -> Result<Option<String>> {
        let (run, agent_id) = (self.run_store(&run_id), self.agent_id.clone());
        self.now_or_submit(id, async move {
            let run = run?;
            let state = agent::load_owned(&run, &run_id, &agent_id).await?;
            let leased = run.store.lease_holder(&run.lease_key).await?.is_some();
            Ok(with_leased(summary(&state), leased))
        })
    }

    /// Reports the summaries (with `leased`) of this agent's running runs in
    /// the store: those without a lease lost their driver and can be
    /// recovered.
    #[napi(catch_unwind)]
    pub fn running_runs(&self, id: u32) -> Result<Option<String>> {
        let (store, prefix, retention, agent_id) = (
            self.store.clone(),
            self.prefix.clone(),
            self.retention,
            self.agent_id.clone(),
        );
        self.now_or_submit(id, async move {
            let mut found = Vec::new();
            for run_id in agent::list_run_ids(&store, &prefix).await? {
                let run = RunStore::new(store.clone(), &prefix, &run_id, retention)?;
                // Gone meanwhile, or another agent's: not ours to recover.
                let Ok(state) = agent::load_owned(&run, &run_id, &agent_id).await else {
                    continue;
                };
                if state.status != agent::Status::Running {
                    continue;
                }
                let leased = run.store.lease_holder(&run.lease_key).await?.is_some();
                found.push(with_leased(summary(&state), leased));
            }
            Ok(format!("[{}]", found.join(",")))
        })
    }

    /// Deletes a run's state and events.
    #[napi(catch_unwind)]
    pub fn cleanup(&self, id: u32, run_id: String) -> Result<Option<String>> {
        let run = self.run_store(&run_id);
        lock(&self.prepared).remove(&run_id);
        self.now_or_submit(id, async move {
            run?.delete().await?;
            Ok("null".to_owned())
        })
    }

    /// How many runs this process drives now.
    #[napi(getter)]
    pub fn active_runs(&self) -> u32 {
        lock(&self.active).len() as u32
    }
}
