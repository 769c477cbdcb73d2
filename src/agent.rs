//! `NativeAgent`: the binding of the core's durable [`Agent`], one method
//! each, with the model and the tools as JS async functions.
//!
//! The callbacks take and return JSON text (see `core::wire`); the facade
//! (`ts/agent/`) parses, calls the AI SDK model or the tool, and replies.
//! They are weak threadsafe functions called with `call_async_catch`: a JS
//! callback that throws synchronously or returns a non-promise becomes an
//! error of that call, never an uncaught exception, and a stored callback never
//! keeps Node alive (a run in progress does, through the bridge).

use std::sync::Arc;
use std::time::Duration;

use durable_agent_core::agent::{Agent, AgentConfig, AgentError, Callbacks, Decision, StartRun};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use napi::bindgen_prelude::{ClassInstance, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;

use crate::error::Result;
use napi_derive::napi;
use serde_json::value::RawValue;

use crate::bridge::{Bridge, NativeBridge, Reply};
use crate::error::IntoNapi;
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
    agent: Agent,
    bridge: Bridge,
}

fn raw(text: String, what: &str) -> std::result::Result<Box<RawValue>, AgentError> {
    RawValue::from_string(text).map_err(|e| AgentError::InvalidArg(format!("{what} is not valid JSON: {e}")))
}

fn json_array(text: &str, what: &str) -> std::result::Result<Vec<Box<RawValue>>, AgentError> {
    serde_json::from_str(text).map_err(|e| AgentError::InvalidArg(format!("{what} must be a JSON array: {e}")))
}

fn ms(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms.max(1)))
}

#[napi]
impl NativeAgent {
    /// `keepEndedMs`: how long an ended run is kept before its keys expire
    /// (0: as the topic retention says).
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "pubsub: NativePubSub, agentId: string, leaseMs: number, outageMs: number, keepEndedMs: number, callModel: (request: string) => Promise<string>, callTool: (request: string) => Promise<string>"
    )]
    pub fn new(
        pubsub: ClassInstance<NativePubSub>,
        agent_id: String,
        lease_ms: u32,
        outage_ms: u32,
        keep_ended_ms: u32,
        call_model: JsAsyncFn,
        call_tool: JsAsyncFn,
    ) -> Self {
        let config = AgentConfig {
            agent_id,
            prefix: pubsub.prefix.clone(),
            retention: pubsub.retention,
            lease: ms(lease_ms),
            outage: ms(outage_ms),
            keep_ended: (keep_ended_ms > 0).then(|| ms(keep_ended_ms)),
        };
        let callbacks = Arc::new(JsCallbacks {
            model: Arc::new(call_model),
            tool: Arc::new(call_tool),
        });
        NativeAgent {
            agent: Agent::new(pubsub.store.clone(), config, callbacks),
            bridge: pubsub.bridge.clone(),
        }
    }

    /// The bridge this object reports through (the pubsub's).
    #[napi(getter)]
    pub fn bridge(&self) -> NativeBridge {
        NativeBridge::from(&self.bridge)
    }

    /// Runs `work` at once when it completes without waiting (in memory) and
    /// returns its reply; otherwise queues it on the bridge under `id` and
    /// returns `null`.
    fn now_or_submit<F>(&self, id: u32, work: F) -> Result<Option<String>>
    where
        F: std::future::Future<Output = std::result::Result<String, AgentError>> + Send + 'static,
    {
        let mut work = Box::pin(work);
        if self.agent.store().synchronous() {
            if let Some(done) = (&mut work).now_or_never() {
                return done.map(Some).into_napi();
            }
        }
        self.bridge.submit(id, async move { work.await.map(Reply::Json) });
        Ok(None)
    }

    /// `Agent::start`: creates a run and publishes its `start` part.
    /// `messages`: the prompt (a JSON array of language-model messages);
    /// `options`: JSON handed back to every callback. Reports its summary.
    #[napi(catch_unwind)]
    pub fn create(
        &self,
        id: u32,
        run_id: String,
        messages: String,
        max_steps: u32,
        options: String,
    ) -> Result<Option<String>> {
        let start = (|| {
            Ok::<_, AgentError>(StartRun {
                run_id,
                messages: json_array(&messages, "messages")?,
                max_steps,
                options: raw(options, "options")?,
            })
        })();
        let agent = self.agent.clone();
        self.now_or_submit(id, async move { agent.start(start?).await.map(|s| s.text()) })
    }

    /// `Agent::drive`: reports the summary once the run ends or suspends.
    #[napi(catch_unwind)]
    pub fn drive(&self, id: u32, run_id: String) -> Result<()> {
        let drive = self.agent.drive(&run_id).into_napi()?;
        self.bridge
            .submit(id, async move { drive.await.map(|s| Reply::Json(s.text())) });
        Ok(())
    }

    /// `Agent::emit`: stream parts (a JSON array, in order) of the model step
    /// in progress; false when the run is not driven here.
    #[napi(catch_unwind)]
    pub fn emit(&self, run_id: String, parts: String) -> Result<bool> {
        let parts = json_array(&parts, "stream parts").into_napi()?;
        Ok(self.agent.emit(
            &run_id,
            parts.into_iter().map(|part| String::from(Box::<str>::from(part))),
        ))
    }

    /// `Agent::abort`: reports `null` when the run is driven here (its
    /// driver ends it), its summary otherwise.
    #[napi(catch_unwind)]
    pub fn abort(&self, id: u32, run_id: String, reason: Option<String>) -> Result<Option<String>> {
        match self.agent.abort(&run_id, reason).into_napi()? {
            None => Ok(Some("null".to_owned())),
            Some(elsewhere) => self.now_or_submit(id, async move { elsewhere.await.map(|s| s.text()) }),
        }
    }

    /// `Agent::release_all`: stops driving every run driven here without
    /// ending them; returns how many there were.
    #[napi(catch_unwind)]
    pub fn release_all(&self) -> u32 {
        self.agent.release_all() as u32
    }

    /// `Agent::resume`: records an approval decision (`toolCallId` absent:
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
        let decision = if approved {
            Decision::Approved
        } else {
            Decision::Declined { reason }
        };
        let agent = self.agent.clone();
        self.now_or_submit(id, async move {
            agent
                .resume(&run_id, tool_call_id.as_deref(), decision)
                .await
                .map(|s| s.text())
        })
    }

    /// `Agent::recover`: the summary; when its status is `running`, this
    /// process took the run's lease: call `drive` next.
    #[napi(catch_unwind)]
    pub fn recover(&self, id: u32, run_id: String) -> Result<Option<String>> {
        let agent = self.agent.clone();
        self.now_or_submit(id, async move { agent.recover(&run_id).await.map(|s| s.text()) })
    }

    /// `Agent::inspect`: the summary, with `leased`.
    #[napi(catch_unwind)]
    pub fn inspect(&self, id: u32, run_id: String) -> Result<Option<String>> {
        let agent = self.agent.clone();
        self.now_or_submit(id, async move { agent.inspect(&run_id).await.map(|s| s.text()) })
    }

    /// `Agent::check_driven`: reports the new `undrivenSince` (epoch ms, or
    /// `null`), or fails with `ERR_RUN_ABANDONED` / `ERR_RUN_NOT_FOUND`.
    #[napi(catch_unwind)]
    pub fn check_driven(&self, id: u32, run_id: String, undriven_since: Option<f64>) -> Result<Option<String>> {
        let agent = self.agent.clone();
        let since = undriven_since.map(|ms| ms.max(0.0) as u64);
        self.now_or_submit(id, async move {
            let since = agent.check_driven(&run_id, since).await?;
            Ok(since.map_or_else(|| "null".to_owned(), |ms| ms.to_string()))
        })
    }

    /// `Agent::running_runs`: their summaries (a JSON array), with `leased`.
    #[napi(catch_unwind)]
    pub fn running_runs(&self, id: u32) -> Result<Option<String>> {
        let agent = self.agent.clone();
        self.now_or_submit(id, async move {
            let runs = agent.running_runs().await?;
            Ok(serde_json::to_string(&runs).expect("summaries serialise"))
        })
    }

    /// `Agent::cleanup`: deletes a run's state and events.
    #[napi(catch_unwind)]
    pub fn cleanup(&self, id: u32, run_id: String) -> Result<Option<String>> {
        let agent = self.agent.clone();
        self.now_or_submit(id, async move {
            agent.cleanup(&run_id).await?;
            Ok("null".to_owned())
        })
    }

    /// How many runs this process drives now.
    #[napi(getter)]
    pub fn active_runs(&self) -> u32 {
        self.agent.active_runs() as u32
    }
}
