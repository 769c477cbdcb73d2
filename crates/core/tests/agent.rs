//! The durable agent loop end to end, on both stores (in memory, and Redis at
//! `REDIS_URL`, else 127.0.0.1:6379): scripted model and tool callbacks that
//! count their calls and stream parts through the run's `RunControl`; every
//! event a run produced is read back from its topic log and checked.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use durable_agent_core::agent::state::Phase;
use durable_agent_core::agent::{
    self, Agent, AgentConfig, AgentError, Callbacks, Decision, Driver, NewRun, RunControl, RunState, RunStore,
    StartRun, Status,
};
use durable_agent_core::cache::runs::LeaseClaim;
use durable_agent_core::{
    MemoryCache, MemoryCacheConfig, PageRequest, RedisCache, RedisTarget, Retention, Store, Subscription, TopicLog,
};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::value::RawValue;
use serde_json::{json, Value};

mod common;
use common::shared;
use tokio::sync::{watch, Barrier};
use tokio::task::JoinHandle;

/// How long anything a test waits for may take.
const DEADLINE: Duration = Duration::from_secs(10);
const AGENT: &str = "agent-1";
/// A pubsub key prefix (the binding's default is `durable-agent:`; any works).
const PREFIX: &str = "pubsub:";
/// The Redis cache's default TTL in these tests.
const REDIS_TTL_SECONDS: f64 = 60.0;

// ---------------------------------------------------------------------------
// Stores

/// A store for one test; a Redis one lives under a key prefix of its own and
/// deletes its keys when dropped (also when the test fails).
struct Env {
    store: Store,
    redis: Option<(RedisCache, String)>,
    /// A cluster cache, cleared when dropped.
    cluster: Option<RedisCache>,
}

impl Env {
    fn memory() -> Env {
        Env {
            store: shared(MemoryCache::new(MemoryCacheConfig::default())),
            redis: None,
            cluster: None,
        }
    }

    fn redis(test: &str) -> Env {
        let prefix = common::unique_prefix(&format!("agent:{test}"));
        let cache = redis_cache(RedisTarget::Url(common::redis_url()), &prefix);
        Env {
            store: shared(cache.clone()),
            redis: Some((cache, prefix)),
            cluster: None,
        }
    }

    /// On the test Redis Cluster.
    fn redis_cluster(test: &str) -> Env {
        let cache = redis_cache(common::cluster(), &common::unique_prefix(&format!("agent:{test}")));
        Env {
            store: shared(cache.clone()),
            redis: None,
            cluster: Some(cache),
        }
    }
}

fn redis_cache(target: RedisTarget, prefix: &str) -> RedisCache {
    common::redis_cache(target, prefix, REDIS_TTL_SECONDS, Some(2000.0))
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(cache) = self.cluster.take() {
            // Drop runs inside the test's runtime: clear on a runtime of its own.
            let cleared = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime
                    .block_on(cache.clear())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .join();
            if !matches!(cleared, Ok(Ok(()))) {
                eprintln!("could not clear a cluster test's keys: {cleared:?}");
            }
        }
        let Some((_, prefix)) = &self.redis else { return };
        let deleted = (|| -> redis::RedisResult<()> {
            let mut conn = redis::Client::open(common::redis_url())?.get_connection()?;
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{prefix}*"))
                    .arg("COUNT")
                    .arg(1000)
                    .query(&mut conn)?;
                if !keys.is_empty() {
                    redis::cmd("DEL").arg(&keys).query::<()>(&mut conn)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })();
        if let Err(e) = deleted {
            eprintln!("could not delete the test keys under {prefix}: {e}");
        }
    }
}

/// Runs each scenario once per store: in memory, on Redis, on a Redis Cluster.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::memory();
                    super::$name(env.store.clone()).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::redis(stringify!($name));
                    super::$name(env.store.clone()).await;
                }
            )*
        }
        mod redis_cluster_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let env = super::Env::redis_cluster(stringify!($name));
                    super::$name(env.store.clone()).await;
                }
            )*
        }
    };
}

on_both_stores!(
    plain_text_run,
    two_step_run_with_parallel_tool_calls,
    tool_failures_become_tool_errors_and_the_run_goes_on,
    invalid_tool_calls_are_never_run_nor_put_to_approval,
    model_failures_fail_the_run,
    max_steps_stops_a_model_that_always_calls_tools,
    abort_during_a_model_call,
    abort_during_tool_calls,
    a_model_reply_that_comes_with_the_abort_does_not_count,
    a_tool_reply_that_comes_with_the_abort_does_not_count,
    abort_requested_elsewhere_stops_a_model_call,
    abort_requested_elsewhere_stops_tool_calls,
    abort_from_elsewhere_of_suspended_and_ended_runs,
    approval_suspends_and_an_approved_resume_runs_the_tool_once,
    declined_tool_call_is_denied_and_the_model_sees_it,
    resume_and_create_errors,
    concurrent_resumes_exactly_one_wins,
    a_stale_writer_is_refused,
    require_tool_approval_option_suspends_every_call,
    terminal_runs_never_call_back_again,
    resume_after_suspension_never_reruns_completed_tool_calls,
    crash_in_tool_step_resumes_from_the_last_checkpoint,
    crash_in_model_step_repeats_only_that_step,
    two_drivers_of_one_checkpoint_only_one_runs,
    a_leased_run_is_driven_by_one_process_and_recovered_once_the_lease_lapses,
    appends_are_fenced_by_the_lease,
    a_new_run_needs_an_empty_topic,
    tool_call_concurrency_bounds_the_calls_in_flight,
    a_run_created_with_its_lease_hands_it_to_its_driver,
    invalid_run_ids_are_rejected,
    a_lapsed_lease_nobody_took_is_taken_back_and_the_run_goes_on,
    a_lapsed_lease_another_process_took_stops_the_driver,
    the_agent_decides_recovery_and_keeps_its_registry,
    an_ended_run_expires_after_keep_ended,
    a_run_summary_has_the_wire_members,
    a_run_nobody_drives_is_abandoned_for_its_readers,
);

// ---------------------------------------------------------------------------
// Scripted callbacks

enum Reply {
    Now(Result<String, String>),
    /// After a (tokio) delay.
    After(Duration, Result<String, String>),
    /// Never resolves (abandoned on abort or when the driver is dropped).
    Never,
    /// Aborts the run ("halt"), then replies in the same poll: a callback
    /// that stops on its abort signal, whose reply is ready as the abort is.
    Aborting(Result<String, String>),
}

/// What the model does on one call: stream `parts`, then reply.
struct ModelStep {
    parts: Vec<Value>,
    reply: Reply,
}

type ModelScript = dyn Fn(usize, &Value) -> ModelStep + Send + Sync;
/// Request, and how many earlier calls had the same `toolCallId`.
type ToolScript = dyn Fn(&Value, usize) -> BoxFuture<'static, Result<String, String>> + Send + Sync;

/// Model and tools as a script; records every request.
struct Fake {
    model: Box<ModelScript>,
    tool: Box<ToolScript>,
    control: Mutex<Option<RunControl>>,
    model_requests: Mutex<Vec<Value>>,
    tool_requests: Mutex<Vec<Value>>,
    /// (model calls, tool calls) so far, to wait on.
    calls: watch::Sender<(usize, usize)>,
}

impl Fake {
    fn new(
        model: impl Fn(usize, &Value) -> ModelStep + Send + Sync + 'static,
        tool: impl Fn(&Value, usize) -> BoxFuture<'static, Result<String, String>> + Send + Sync + 'static,
    ) -> Arc<Fake> {
        Arc::new(Fake {
            model: Box::new(model),
            tool: Box::new(tool),
            control: Mutex::new(None),
            model_requests: Mutex::new(Vec::new()),
            tool_requests: Mutex::new(Vec::new()),
            calls: watch::channel((0, 0)).0,
        })
    }

    /// A fake whose tools must never be called.
    fn model_only(model: impl Fn(usize, &Value) -> ModelStep + Send + Sync + 'static) -> Arc<Fake> {
        Fake::new(model, |request, _| panic!("no tool may be called, got {request}"))
    }

    fn set_control(&self, control: RunControl) {
        *self.control.lock().unwrap() = Some(control);
    }

    fn model_calls(&self) -> usize {
        self.model_requests.lock().unwrap().len()
    }

    fn tool_calls(&self) -> usize {
        self.tool_requests.lock().unwrap().len()
    }

    fn tool_calls_of(&self, tool_call_id: &str) -> usize {
        self.tool_requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["toolCallId"] == tool_call_id)
            .count()
    }

    fn model_request(&self, n: usize) -> Value {
        self.model_requests.lock().unwrap()[n].clone()
    }

    fn tool_requests(&self) -> Vec<Value> {
        self.tool_requests.lock().unwrap().clone()
    }

    /// Waits until the call counts satisfy `ready`.
    async fn wait_calls(&self, ready: impl FnMut(&(usize, usize)) -> bool) {
        let mut calls = self.calls.subscribe();
        tokio::time::timeout(DEADLINE, calls.wait_for(ready))
            .await
            .expect("the callbacks are called in time")
            .unwrap();
    }
}

impl Callbacks for Fake {
    fn model(&self, request: String) -> BoxFuture<'static, Result<String, String>> {
        let request: Value = serde_json::from_str(&request).expect("a model request is JSON");
        let n = {
            let mut requests = self.model_requests.lock().unwrap();
            requests.push(request.clone());
            requests.len() - 1
        };
        let step = (self.model)(n, &request);
        self.calls.send_modify(|c| c.0 += 1);
        let control = self.control.lock().unwrap().clone();
        async move {
            let emit = |part: Value| {
                let control = control.as_ref().expect("the test set the run's control");
                assert!(control.emit(part.to_string()), "the driver takes parts");
            };
            let mut parts = step.parts.into_iter();
            // The first part while the call is still pending (the driver takes
            // it mid-call), the others right before the reply.
            if let Some(first) = parts.next() {
                emit(first);
                tokio::task::yield_now().await;
            }
            parts.for_each(emit);
            match step.reply {
                Reply::Now(reply) => reply,
                Reply::After(delay, reply) => {
                    tokio::time::sleep(delay).await;
                    reply
                }
                Reply::Never => std::future::pending().await,
                Reply::Aborting(reply) => {
                    control
                        .as_ref()
                        .expect("the test set the run's control")
                        .abort(Some("halt".to_owned()));
                    reply
                }
            }
        }
        .boxed()
    }

    fn tool(&self, request: String) -> BoxFuture<'static, Result<String, String>> {
        let request: Value = serde_json::from_str(&request).expect("a tool request is JSON");
        let earlier = self.tool_calls_of(request["toolCallId"].as_str().expect("toolCallId"));
        self.tool_requests.lock().unwrap().push(request.clone());
        let reply = (self.tool)(&request, earlier);
        self.calls.send_modify(|c| c.1 += 1);
        reply
    }
}

/// A model that calls the tool `slow` once, and a tool that never returns.
fn stuck_in_a_tool_call() -> Arc<Fake> {
    Fake::new(
        |n, _| {
            assert_eq!(n, 0, "one model call");
            tool_calls_reply(&[call("slow", "slow", json!({}))])
        },
        |_, _| never(),
    )
}

fn now(reply: Result<String, String>) -> BoxFuture<'static, Result<String, String>> {
    futures::future::ready(reply).boxed()
}

fn never() -> BoxFuture<'static, Result<String, String>> {
    std::future::pending().boxed()
}

fn usage(input: u64, output: u64) -> Value {
    json!({ "inputTokens": input, "outputTokens": output, "totalTokens": input + output })
}

fn text_reply(text: &str) -> ModelStep {
    ModelStep {
        parts: vec![
            json!({ "type": "text-start", "id": "t" }),
            json!({ "type": "text-delta", "id": "t", "delta": text }),
            json!({ "type": "text-end", "id": "t" }),
        ],
        reply: Reply::Now(Ok(json!({
            "content": [{ "type": "text", "text": text }],
            "toolCalls": [],
            "finishReason": "stop",
            "usage": usage(7, 3),
            "response": { "id": "resp-text", "modelId": "fake" },
        })
        .to_string())),
    }
}

/// A tool call as the model adapter reports it.
fn call(id: &str, name: &str, input: Value) -> Value {
    json!({ "toolCallId": id, "toolName": name, "input": input })
}

fn approval_call(id: &str, name: &str, input: Value) -> Value {
    json!({ "toolCallId": id, "toolName": name, "input": input, "needsApproval": true })
}

/// A model reply asking for `calls` (the assistant content holds them too).
fn tool_calls_reply(calls: &[Value]) -> ModelStep {
    let content: Vec<Value> = calls
        .iter()
        .map(|c| json!({ "type": "tool-call", "toolCallId": c["toolCallId"], "toolName": c["toolName"], "input": c["input"] }))
        .collect();
    ModelStep {
        parts: vec![
            json!({ "type": "tool-input-start", "id": calls[0]["toolCallId"], "toolName": calls[0]["toolName"] }),
        ],
        reply: Reply::Now(Ok(json!({
            "content": content,
            "toolCalls": calls,
            "finishReason": "tool-calls",
            "usage": usage(10, 2),
        })
        .to_string())),
    }
}

fn output(value: Value) -> Result<String, String> {
    Ok(json!({ "output": value }).to_string())
}

// ---------------------------------------------------------------------------
// Runs and their events

fn raw(value: Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).unwrap()
}

fn user_message() -> Value {
    json!({ "role": "user", "content": [{ "type": "text", "text": "What's the weather in Paris?" }] })
}

fn run_store(store: &Store, run_id: &str) -> RunStore {
    RunStore::new(store.clone(), PREFIX, run_id, Retention::default()).unwrap()
}

async fn create_with(store: &Store, run_id: &str, max_steps: u32, options: Value) -> (RunStore, RunState) {
    let run = run_store(store, run_id);
    let state = agent::create(
        &run,
        NewRun {
            run_id: run_id.to_owned(),
            agent_id: AGENT.to_owned(),
            messages: vec![raw(user_message())],
            max_steps,
            options: raw(options),
        },
        None,
    )
    .await
    .unwrap();
    (run, state)
}

async fn create(store: &Store, run_id: &str, max_steps: u32) -> (RunStore, RunState) {
    create_with(store, run_id, max_steps, json!({ "temperature": 0.5, "tag": run_id })).await
}

/// Starts driving `state` in a task; the fake gets the run's control.
fn start(run: &RunStore, fake: &Arc<Fake>, state: RunState) -> (JoinHandle<Result<RunState, AgentError>>, RunControl) {
    let (driver, control) = Driver::new(run.clone(), fake.clone(), state);
    fake.set_control(control.clone());
    (tokio::spawn(driver.drive()), control)
}

async fn finish(task: JoinHandle<Result<RunState, AgentError>>) -> RunState {
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the run stops in time")
        .unwrap()
        .expect("the run checkpoints")
}

/// Drives `state` until it stops.
async fn drive(run: &RunStore, fake: &Arc<Fake>, state: RunState) -> RunState {
    finish(start(run, fake, state).0).await
}

/// Starts driving `state` under a lease of `ttl`, in a task; the fake gets
/// the run's control.
fn start_leased(
    run: &RunStore,
    fake: &Arc<Fake>,
    state: RunState,
    ttl: Duration,
) -> JoinHandle<Result<RunState, AgentError>> {
    let (driver, control) = Driver::new(run.clone(), fake.clone(), state);
    fake.set_control(control);
    tokio::spawn(driver.with_lease(ttl).drive())
}

/// Whether a process holds the run's lease.
async fn lease_held(run: &RunStore) -> bool {
    run.store.lease_holder(&run.lease_key).await.unwrap().is_some()
}

/// Waits until the run's lease is held (`held`) or not.
async fn wait_for_lease(run: &RunStore, held: bool, what: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while lease_held(run).await != held {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Model calls so far, and tool calls of each of `tool_call_ids`.
fn calls(fake: &Fake, tool_call_ids: &[&str]) -> (usize, Vec<usize>) {
    let tools = tool_call_ids.iter().map(|id| fake.tool_calls_of(id)).collect();
    (fake.model_calls(), tools)
}

/// Checks that the run finished as stored, and returns the tool results
/// the model saw in its second call, by tool call id.
async fn finished_with_results(run: &RunStore, fake: &Fake, state: &RunState) -> HashMap<String, Value> {
    check_stored(run, state, Status::Finished).await;
    tool_message_results(&fake.model_request(1)["messages"][2])
}

/// A stream part's type, or the event's type for other events.
fn kind(event: &Value) -> String {
    match event["type"].as_str() {
        Some("chunk") => event["data"]["type"].as_str().expect("a part has a type").to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("an event without a type: {event}"),
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events.iter().map(kind).collect()
}

/// Every event of the run, checked: gap-free indices from 0, Mastra's shape,
/// ids unique across the run's drivers.
async fn events(run: &RunStore) -> Vec<Value> {
    let page = run.store.read(PageRequest::new(&run.log_key, 0, 10_000)).await.unwrap();
    let events: Vec<Value> = serde_json::from_str(&page.events).unwrap();
    assert_eq!(page.count, events.len());
    assert_eq!(page.next, events.len() as u64);
    let run_id = run.log_key.strip_prefix(&format!("{PREFIX}agent.stream.")).unwrap();
    let mut ids = HashSet::new();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["index"], i as u64, "gap-free indices, in order: {events:#?}");
        assert_eq!(event["runId"], run_id);
        assert!(matches!(event["type"].as_str(), Some("chunk" | "suspended")), "{event}");
        assert!(
            event["createdAt"].as_i64().is_some_and(|ms| ms > 1_700_000_000_000),
            "{event}"
        );
        let id = event["id"].as_str().expect("an event has an id");
        assert!(ids.insert(id.to_owned()), "event id {id} repeats: {events:#?}");
    }
    events
}

fn parts_of<'a>(events: &'a [Value], kind_: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| kind(e) == kind_).map(|e| &e["data"]).collect()
}

fn position(events: &[Value], kind_: &str) -> usize {
    events.iter().position(|e| kind(e) == kind_).expect("the part is there")
}

/// Waits until the run's log has an event of `kind_`.
async fn wait_for_event(run: &RunStore, kind_: &str) {
    let mut sub = Subscription::new(run.store.clone(), run.log_key.clone(), Some(0));
    tokio::time::timeout(DEADLINE, async {
        loop {
            let page = sub.next(100).await.unwrap();
            let events: Vec<Value> = serde_json::from_str(&page.events).unwrap();
            if events.iter().any(|e| kind(e) == kind_) {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{kind_}` event in time"));
}

/// Checks what a stopped run left: the stored state is `state`, and its
/// `next_event` is the log's next index.
async fn check_stored(run: &RunStore, state: &RunState, status: Status) {
    assert_eq!(state.status, status);
    let stored = agent::load_owned(run, &state.run_id, AGENT).await.unwrap();
    assert_eq!(stored.status, status);
    assert_eq!(stored.version, state.version);
    assert_eq!(stored.next_event, state.next_event);
    assert_eq!(
        stored.next_event,
        run.store.next_index(&run.log_key).await.unwrap(),
        "the checkpoint covers every event of the log"
    );
}

fn json_of(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap()
}

fn code<T: std::fmt::Debug>(result: Result<T, AgentError>) -> &'static str {
    result.expect_err("an error").code()
}

/// The `tool` message's results by toolCallId.
fn tool_message_results(message: &Value) -> HashMap<String, Value> {
    assert_eq!(message["role"], "tool", "{message}");
    message["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["type"], "tool-result");
            (r["toolCallId"].as_str().unwrap().to_owned(), r.clone())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. A plain text run

async fn plain_text_run(store: Store) {
    let (run, created) = create(&store, "plain", 5).await;
    assert_eq!(
        (created.status, created.version, created.next_event),
        (Status::Running, 1, 1)
    );
    let fake = Fake::model_only(|n, _| {
        assert_eq!(n, 0, "one model step");
        text_reply("Sunny in Paris.")
    });

    // A live reader from the start sees the same events as a later read.
    let reader = {
        let mut sub = Subscription::new(store.clone(), run.log_key.clone(), Some(0));
        tokio::spawn(async move {
            let mut seen: Vec<Value> = Vec::new();
            while seen.last().is_none_or(|e| kind(e) != "finish") {
                let page = sub.next(2).await.unwrap();
                seen.extend(serde_json::from_str::<Vec<Value>>(&page.events).unwrap());
            }
            seen
        })
    };

    let state = drive(&run, &fake, created).await;
    let events = events(&run).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    assert_eq!(events[0]["data"], json!({ "type": "start" }));
    // The emitted parts, verbatim and in order.
    let emitted: Vec<&Value> = events[2..5].iter().map(|e| &e["data"]).collect();
    assert_eq!(emitted, text_reply("Sunny in Paris.").parts.iter().collect::<Vec<_>>());
    let step_finish = &events[5]["data"];
    assert_eq!(step_finish["finishReason"], "stop");
    assert_eq!(step_finish["usage"], usage(7, 3));
    assert_eq!(step_finish["response"], json!({ "id": "resp-text", "modelId": "fake" }));
    assert_eq!(
        events[6]["data"],
        json!({ "type": "finish", "finishReason": "stop", "totalUsage": usage(7, 3) })
    );

    check_stored(&run, &state, Status::Finished).await;
    assert_eq!(state.next_event, events.len() as u64);
    assert_eq!(state.finish_reason.as_deref(), Some("stop"));
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));

    let request = fake.model_request(0);
    assert_eq!(request["runId"], "plain");
    assert_eq!(request["step"], 0);
    assert_eq!(request["messages"], json!([user_message()]));
    assert_eq!(request["options"], json!({ "temperature": 0.5, "tag": "plain" }));
    let messages: Vec<Value> = state.messages.iter().map(|m| json_of(m)).collect();
    assert_eq!(
        messages,
        [
            user_message(),
            json!({ "role": "assistant", "content": [{ "type": "text", "text": "Sunny in Paris." }] })
        ]
    );

    let seen = tokio::time::timeout(DEADLINE, reader)
        .await
        .expect("the reader sees finish")
        .unwrap();
    assert_eq!(seen, events);
}

// ---------------------------------------------------------------------------
// 2. Two parallel tool calls, then the answer

async fn two_step_run_with_parallel_tool_calls(store: Store) {
    let (run, created) = create(&store, "two-step", 5).await;
    let calls = [
        call("call-w", "weather", json!({ "city": "Paris" })),
        call("call-t", "clock", json!({ "tz": "Europe/Paris" })),
    ];
    let model_calls = calls.clone();
    // Each tool waits for the other to start: only parallel calls finish.
    let both_started = Arc::new(Barrier::new(2));
    let fake = Fake::new(
        move |n, _| match n {
            0 => tool_calls_reply(&model_calls),
            1 => text_reply("21°C at 14:00."),
            _ => panic!("two model steps"),
        },
        move |request, _| {
            let both_started = both_started.clone();
            let name = request["toolName"].as_str().unwrap().to_owned();
            async move {
                both_started.wait().await;
                match name.as_str() {
                    "weather" => output(json!({ "tempC": 21 })),
                    "clock" => output(json!("14:00")),
                    other => panic!("unknown tool {other}"),
                }
            }
            .boxed()
        },
    );

    let state = drive(&run, &fake, created).await;
    let events = events(&run).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "start-step",
            "tool-input-start",
            "tool-result",
            "tool-result",
            "finish-step",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    let mut results: Vec<&Value> = parts_of(&events, "tool-result");
    results.sort_by_key(|r| r["toolCallId"].as_str().unwrap().to_owned());
    assert_eq!(
        results,
        [
            &json!({ "type": "tool-result", "toolCallId": "call-t", "toolName": "clock",
                     "input": { "tz": "Europe/Paris" }, "output": "14:00" }),
            &json!({ "type": "tool-result", "toolCallId": "call-w", "toolName": "weather",
                     "input": { "city": "Paris" }, "output": { "tempC": 21 } }),
        ]
    );
    let step_finishes = parts_of(&events, "finish-step");
    assert_eq!(step_finishes[0]["finishReason"], "tool-calls");
    assert_eq!(step_finishes[0]["usage"], usage(10, 2));
    assert_eq!(step_finishes[1]["finishReason"], "stop");
    assert_eq!(
        events.last().unwrap()["data"],
        json!({ "type": "finish", "finishReason": "stop", "totalUsage": usage(17, 5) })
    );

    // The tools: step 0, an idempotency key per call, the caller's options.
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 2));
    let mut requests = fake.tool_requests();
    requests.sort_by_key(|r| r["toolCallId"].as_str().unwrap().to_owned());
    for (request, call) in requests.iter().zip([&calls[1], &calls[0]]) {
        assert_eq!(request["runId"], "two-step");
        assert_eq!(request["step"], 0);
        assert_eq!(request["toolCallId"], call["toolCallId"]);
        assert_eq!(request["toolName"], call["toolName"]);
        assert_eq!(request["input"], call["input"]);
        assert_eq!(
            request["idempotencyKey"],
            format!("two-step:0:{}", call["toolCallId"].as_str().unwrap())
        );
        assert_eq!(request["options"], json!({ "temperature": 0.5, "tag": "two-step" }));
    }

    // The second model step sees the calls and both results.
    let second = fake.model_request(1);
    assert_eq!(second["step"], 1);
    let messages = second["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert_eq!(messages[0], user_message());
    assert_eq!(messages[1]["role"], "assistant");
    let asked: Vec<&Value> = messages[1]["content"].as_array().unwrap().iter().collect();
    assert_eq!(asked.len(), 2);
    for (part, call) in asked.iter().zip(&calls) {
        assert_eq!(part["type"], "tool-call");
        assert_eq!(part["toolCallId"], call["toolCallId"]);
        assert_eq!(part["input"], call["input"]);
    }
    let tool_results = tool_message_results(&messages[2]);
    assert_eq!(tool_results.len(), 2);
    assert_eq!(
        tool_results["call-w"],
        json!({ "type": "tool-result", "toolCallId": "call-w", "toolName": "weather",
                "output": { "type": "json", "value": { "tempC": 21 } } })
    );
    assert_eq!(
        tool_results["call-t"],
        json!({ "type": "tool-result", "toolCallId": "call-t", "toolName": "clock",
                "output": { "type": "json", "value": "14:00" } })
    );

    check_stored(&run, &state, Status::Finished).await;
    assert_eq!(state.step, 1);
    assert!(state.pending.is_empty() && state.tool_results.is_empty());
    assert_eq!(
        state.messages.len(),
        4,
        "user, assistant calls, tool results, assistant answer"
    );
}

// ---------------------------------------------------------------------------
// 3. Failures

async fn tool_failures_become_tool_errors_and_the_run_goes_on(store: Store) {
    let (run, created) = create(&store, "tool-errors", 5).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[
                call("e-reply", "flaky", json!({ "q": 1 })),
                call("e-reject", "broken", json!({ "q": 2 })),
                call("e-garbled", "garbled", json!({ "q": 3 })),
            ]),
            1 => text_reply("Sorry, the tools failed."),
            _ => panic!("two model steps"),
        },
        |request, _| match request["toolCallId"].as_str().unwrap() {
            "e-reply" => now(Ok(
                json!({ "error": { "name": "RateLimitError", "message": "slow down" } }).to_string(),
            )),
            "e-reject" => now(Err("the tool crashed".to_owned())),
            "e-garbled" => now(Ok("this is not JSON".to_owned())),
            other => panic!("unknown call {other}"),
        },
    );

    let state = drive(&run, &fake, created).await;
    let events = events(&run).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 3));
    assert!(parts_of(&events, "tool-result").is_empty());
    assert!(
        parts_of(&events, "error").is_empty(),
        "a failed tool does not fail the run"
    );
    let errors: HashMap<String, &Value> = parts_of(&events, "tool-error")
        .into_iter()
        .map(|p| (p["toolCallId"].as_str().unwrap().to_owned(), p))
        .collect();
    assert_eq!(errors.len(), 3);
    assert_eq!(
        *errors["e-reply"],
        json!({ "type": "tool-error", "toolCallId": "e-reply", "toolName": "flaky", "input": { "q": 1 },
                "error": { "name": "RateLimitError", "message": "slow down" } })
    );
    assert_eq!(
        errors["e-reject"]["error"],
        json!({ "name": "Error", "message": "the tool crashed" })
    );
    assert_eq!(errors["e-reject"]["toolName"], "broken");
    assert_eq!(errors["e-garbled"]["error"]["name"], "InvalidToolReply");
    // The tool errors come before the step's end, which comes before step 2.
    let last_error = events.iter().rposition(|e| kind(e) == "tool-error").unwrap();
    assert!(last_error < position(&events, "finish-step"));
    assert_eq!(kinds(&events).last().unwrap(), "finish");

    // The model sees the failures as error-text results.
    let results = tool_message_results(&fake.model_request(1)["messages"][2]);
    assert_eq!(
        results["e-reply"]["output"],
        json!({ "type": "error-text", "value": "slow down" })
    );
    assert_eq!(
        results["e-reject"]["output"],
        json!({ "type": "error-text", "value": "the tool crashed" })
    );
    assert_eq!(results["e-garbled"]["output"]["type"], "error-text");
}

/// A call the model adapter found invalid (its input is not JSON, or its
/// schema rejects it) comes with its error: it gets its `tool-error` with the
/// model step, is never run, and is not put to approval even when every call
/// needs it; the valid call beside it waits for approval as usual.
async fn invalid_tool_calls_are_never_run_nor_put_to_approval(store: Store) {
    let (run, created) = create_with(&store, "invalid-calls", 5, json!({ "requireToolApproval": true })).await;
    const CUT_OFF: &str = "{\"amount\": 10, \"to\": \"acct";
    const MESSAGE: &str = "Invalid input for tool charge: JSON parsing failed";
    let error = json!({ "name": "AI_InvalidToolInputError", "message": MESSAGE });
    let reported = error.clone();
    let fake = Fake::new(
        move |n, _| match n {
            0 => tool_calls_reply(&[
                json!({ "toolCallId": "bad", "toolName": "charge", "input": CUT_OFF, "needsApproval": true, "error": reported }),
                call("good", "lookup", json!({ "q": 1 })),
            ]),
            1 => text_reply("retried"),
            _ => panic!("two model steps"),
        },
        |request, _| {
            assert_eq!(request["toolCallId"], "good", "only the valid call runs");
            now(output(json!("found")))
        },
    );
    let suspended = drive(&run, &fake, created).await;
    assert_eq!(suspended.status, Status::Suspended);
    assert_eq!(fake.tool_calls(), 0);
    let first = events(&run).await;
    assert_eq!(
        parts_of(&first, "tool-error"),
        vec![
            &json!({ "type": "tool-error", "toolCallId": "bad", "toolName": "charge", "input": CUT_OFF, "error": error })
        ]
    );
    let requests = parts_of(&first, "tool-approval-request");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["toolCall"]["toolCallId"], "good");
    assert_eq!(first.last().unwrap()["data"]["toolCalls"].as_array().unwrap().len(), 1);

    let resumed = agent::resume(&run, "invalid-calls", AGENT, None, Decision::Approved, None)
        .await
        .unwrap();
    let state = drive(&run, &fake, resumed).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 1));
    let log = events(&run).await;
    assert_eq!(
        parts_of(&log, "tool-error").len(),
        1,
        "the invalid call's error is recorded once"
    );
    // The model sees both results and can retry the invalid call.
    let results = tool_message_results(&fake.model_request(1)["messages"][2]);
    assert_eq!(
        results["bad"]["output"],
        json!({ "type": "error-text", "value": MESSAGE })
    );
    assert_eq!(results["good"]["output"], json!({ "type": "json", "value": "found" }));
}

async fn model_failures_fail_the_run(store: Store) {
    let cases = [
        (
            "model-error-reply",
            Reply::Now(Ok(
                json!({ "error": { "name": "APICallError", "message": "overloaded" } }).to_string(),
            )),
            ("APICallError", Some("overloaded")),
        ),
        (
            "model-rejected",
            Reply::Now(Err("connection reset".to_owned())),
            ("Error", Some("connection reset")),
        ),
        (
            "model-garbled",
            Reply::Now(Ok("{ not json".to_owned())),
            ("InvalidModelReply", None),
        ),
    ];
    for (run_id, reply, (name, message)) in cases {
        let (run, created) = create(&store, run_id, 5).await;
        let reply = Mutex::new(Some(reply));
        let fake = Fake::model_only(move |n, _| {
            assert_eq!(n, 0, "a failed run calls the model once");
            ModelStep {
                parts: vec![json!({ "type": "text-delta", "id": "t", "delta": "partial" })],
                reply: reply.lock().unwrap().take().unwrap(),
            }
        });
        let state = drive(&run, &fake, created).await;
        let events = events(&run).await;
        assert_eq!(
            kinds(&events),
            ["start", "start-step", "text-delta", "error"],
            "{run_id}"
        );
        let error = &events[3]["data"]["error"];
        assert_eq!(error["name"], name, "{run_id}");
        if let Some(message) = message {
            assert_eq!(error["message"], message, "{run_id}");
        } else {
            assert!(!error["message"].as_str().unwrap().is_empty(), "{run_id}");
        }
        check_stored(&run, &state, Status::Failed).await;
        assert_eq!(state.finish_reason.as_deref(), Some("error"));
        assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));
        assert_inert(&run, &fake, run_id).await;
    }
}

// ---------------------------------------------------------------------------
// 4. maxSteps

async fn max_steps_stops_a_model_that_always_calls_tools(store: Store) {
    let (run, created) = create(&store, "max-steps", 3).await;
    let fake = Fake::new(
        |n, request| {
            assert_eq!(request["step"], n);
            tool_calls_reply(&[call(&format!("search-{n}"), "search", json!({ "page": n }))])
        },
        |request, _| now(output(request["input"]["page"].clone())),
    );
    let state = drive(&run, &fake, created).await;
    let events = events(&run).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (3, 3));
    assert_eq!(state.step, 3);
    let kinds = kinds(&events);
    assert_eq!(kinds.iter().filter(|k| *k == "start-step").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "tool-result").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "finish-step").count(), 3);
    assert_eq!(&kinds[kinds.len() - 3..], ["tool-result", "finish-step", "finish"]);
    assert_eq!(
        events.last().unwrap()["data"],
        json!({ "type": "finish", "finishReason": "tool-calls", "totalUsage": usage(30, 6) })
    );
    // Each step sees every earlier call and result.
    assert_eq!(fake.model_request(2)["messages"].as_array().unwrap().len(), 5);
    assert_inert(&run, &fake, "max-steps").await;
}

// ---------------------------------------------------------------------------
// 5. Abort

async fn abort_during_a_model_call(store: Store) {
    let (run, created) = create(&store, "abort-model", 5).await;
    let fake = Fake::model_only(|_, _| ModelStep {
        parts: vec![json!({ "type": "text-delta", "id": "t", "delta": "thinking" })],
        reply: Reply::Never,
    });
    let (task, control) = start(&run, &fake, created);
    // The part streamed by the pending call is published before the abort.
    wait_for_event(&run, "text-delta").await;
    control.abort(Some("stop".to_owned()));
    let state = finish(task).await;
    let events = events(&run).await;
    assert_eq!(kinds(&events), ["start", "start-step", "text-delta", "abort"]);
    assert_eq!(events[3]["data"], json!({ "type": "abort", "reason": "stop" }));
    check_stored(&run, &state, Status::Aborted).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));
    assert_inert(&run, &fake, "abort-model").await;
}

async fn abort_during_tool_calls(store: Store) {
    let (run, created) = create(&store, "abort-tools", 5).await;
    let fake = stuck_in_a_tool_call();
    let (task, control) = start(&run, &fake, created);
    fake.wait_calls(|&(_, tools)| tools == 1).await;
    control.abort(None);
    let state = finish(task).await;
    let events = events(&run).await;
    assert_eq!(kinds(&events), ["start", "start-step", "tool-input-start", "abort"]);
    assert_eq!(
        events[3]["data"],
        json!({ "type": "abort" }),
        "no reason given, none published"
    );
    check_stored(&run, &state, Status::Aborted).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 1));
    assert_inert(&run, &fake, "abort-tools").await;
}

/// A reply that is ready as the abort is set (between the driver's look at
/// the abort and its look at the reply) does not count: nothing but `abort`
/// is recorded after it.
async fn a_model_reply_that_comes_with_the_abort_does_not_count(store: Store) {
    let (run, created) = create(&store, "abort-with-model-reply", 5).await;
    let fake = Fake::model_only(|_, _| ModelStep {
        parts: Vec::new(),
        reply: Reply::Aborting(Ok(json!({
            "content": [{ "type": "text", "text": "late" }],
            "toolCalls": [],
            "finishReason": "stop",
            "usage": usage(1, 1),
        })
        .to_string())),
    });
    let (task, _control) = start(&run, &fake, created);
    let state = finish(task).await;
    let events = events(&run).await;
    assert_eq!(kinds(&events), ["start", "abort"]);
    assert_eq!(events[1]["data"], json!({ "type": "abort", "reason": "halt" }));
    check_stored(&run, &state, Status::Aborted).await;
}

async fn a_tool_reply_that_comes_with_the_abort_does_not_count(store: Store) {
    let (run, created) = create(&store, "abort-with-tool-reply", 5).await;
    // The tool aborts the run through its control and fails in the same
    // poll, as a tool that rejects on its abort signal does.
    let control: Arc<Mutex<Option<RunControl>>> = Arc::default();
    let slot = control.clone();
    let fake = Fake::new(
        |_, _| tool_calls_reply(&[call("slow", "slow", json!({}))]),
        move |_, _| {
            let slot = slot.clone();
            async move {
                loop {
                    let control = slot.lock().unwrap().clone();
                    if let Some(control) = control {
                        control.abort(Some("halt".to_owned()));
                        return Ok(json!({ "error": { "name": "Error", "message": "tool aborted" } }).to_string());
                    }
                    tokio::task::yield_now().await;
                }
            }
            .boxed()
        },
    );
    let (task, run_control) = start(&run, &fake, created);
    *control.lock().unwrap() = Some(run_control);
    let state = finish(task).await;
    let events = events(&run).await;
    let kinds = kinds(&events);
    assert_eq!(kinds.last().map(String::as_str), Some("abort"), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|k| ["tool-error", "tool-result", "finish-step"].contains(&k.as_str())),
        "nothing of the tool's reply is recorded: {kinds:?}"
    );
    check_stored(&run, &state, Status::Aborted).await;
    assert_eq!(fake.tool_calls(), 1);
}

/// Another process asks (`agent::abort` on a store it shares): the driver,
/// waiting for a model call that never returns, sees the request and aborts.
async fn abort_requested_elsewhere_stops_a_model_call(store: Store) {
    let (run, created) = create(&store, "abort-remote-model", 5).await;
    let fake = Fake::model_only(|_, _| ModelStep {
        parts: vec![json!({ "type": "text-delta", "id": "t", "delta": "thinking" })],
        reply: Reply::Never,
    });
    // The control stays alive and unused: only the request can stop the run.
    let (task, _control) = start(&run, &fake, created);
    wait_for_event(&run, "text-delta").await;
    let asked = agent::abort(&run, "abort-remote-model", AGENT, Some("from elsewhere"))
        .await
        .unwrap();
    assert_eq!(
        asked.status,
        Status::Running,
        "the driver publishes the abort, not the asker"
    );
    let state = finish(task).await;
    let events = events(&run).await;
    assert_eq!(kinds(&events), ["start", "start-step", "text-delta", "abort"]);
    assert_eq!(
        events[3]["data"],
        json!({ "type": "abort", "reason": "from elsewhere" })
    );
    check_stored(&run, &state, Status::Aborted).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));
}

async fn abort_requested_elsewhere_stops_tool_calls(store: Store) {
    let (run, created) = create(&store, "abort-remote-tools", 5).await;
    let fake = stuck_in_a_tool_call();
    let (task, _control) = start(&run, &fake, created);
    fake.wait_calls(|&(_, tools)| tools == 1).await;
    agent::abort(&run, "abort-remote-tools", AGENT, None).await.unwrap();
    let state = finish(task).await;
    assert_eq!(kinds(&events(&run).await).last().map(String::as_str), Some("abort"));
    check_stored(&run, &state, Status::Aborted).await;
}

/// Nobody drives a suspended run: the asker aborts it itself. A run that
/// ended stays as it was; an unknown run is an error.
async fn abort_from_elsewhere_of_suspended_and_ended_runs(store: Store) {
    let fake = transfer_fake();
    let (run, _) = suspended_run(&store, "abort-suspended-remote", &fake).await;
    let aborted = agent::abort(&run, "abort-suspended-remote", AGENT, Some("no"))
        .await
        .unwrap();
    assert_eq!(aborted.status, Status::Aborted);
    let events = events(&run).await;
    assert_eq!(
        events.last().unwrap()["data"],
        json!({ "type": "abort", "reason": "no" })
    );
    let again = agent::abort(&run, "abort-suspended-remote", AGENT, None).await.unwrap();
    assert_eq!(again.status, Status::Aborted);
    assert_eq!(
        crate::events(&run).await.len(),
        events.len(),
        "an ended run is left as it was"
    );
    assert_eq!(fake.tool_calls(), 0);

    let missing = RunStore::new(store.clone(), "pubsub:", "abort-missing", Default::default()).unwrap();
    assert_eq!(
        code(agent::abort(&missing, "abort-missing", AGENT, None).await),
        "ERR_RUN_NOT_FOUND"
    );
}

/// A driver holds the run's lease: a second one (another process) is refused
/// with ERR_RUN_ACTIVE. A driver that dies without giving the lease up (its
/// task is dropped, as when its process is killed) leaves it to lapse; then a
/// new driver recovers the run from its last checkpoint, and the lease is
/// given up when the run ends.
async fn a_leased_run_is_driven_by_one_process_and_recovered_once_the_lease_lapses(store: Store) {
    const LEASE: Duration = Duration::from_millis(300);
    let (run, created) = create(&store, "leased", 5).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[call("c1", "lookup", json!({}))]),
            // The first driver's second model call never returns: it dies there.
            1 => ModelStep {
                parts: vec![],
                reply: Reply::Never,
            },
            2 => text_reply("Recovered."),
            _ => panic!("three model calls"),
        },
        |_, earlier| {
            assert_eq!(earlier, 0, "the checkpointed tool call never runs again");
            now(output(json!("looked up")))
        },
    );
    let first = start_leased(&run, &fake, created, LEASE);
    fake.wait_calls(|&(models, _)| models == 2).await;
    assert!(lease_held(&run).await);

    // While the first driver lives (and renews), nobody else may drive.
    let stored = agent::load_owned(&run, "leased", AGENT).await.unwrap();
    let (second, _control) = Driver::new(run.clone(), fake.clone(), stored.clone());
    assert_eq!(code(second.with_lease(LEASE).drive().await), "ERR_RUN_ACTIVE");
    assert_eq!(fake.model_calls(), 2, "the refused driver called nothing");

    // The first driver dies without giving the lease up.
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    wait_for_lease(&run, false, "the lease lapses").await;
    let stored = agent::load_owned(&run, "leased", AGENT).await.unwrap();
    assert_eq!(
        (stored.status, stored.phase, stored.step),
        (Status::Running, Phase::Model, 1)
    );
    let (recovering, control) = Driver::new(run.clone(), fake.clone(), stored);
    fake.set_control(control);
    let state = tokio::time::timeout(DEADLINE, recovering.with_lease(LEASE).drive())
        .await
        .expect("the recovered run ends in time")
        .unwrap();
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (3, 1));
    assert!(!lease_held(&run).await, "given up at the end");
    let events = events(&run).await;
    assert_eq!(parts_of(&events, "tool-result").len(), 1);
    assert_eq!(parts_of(&events, "finish").len(), 1);
}

/// A driver whose lease lapsed (the store was away, or the process stalled,
/// for longer than the lease) takes it back when nobody took the run
/// meanwhile, and goes on with the result it has in hand.
async fn a_lapsed_lease_nobody_took_is_taken_back_and_the_run_goes_on(store: Store) {
    const LEASE: Duration = Duration::from_millis(300);
    let (run, created) = create(&store, "lapsed", 5).await;
    let release = Arc::new(tokio::sync::Notify::new());
    let released = release.clone();
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[call("c1", "slow", json!({}))]),
            1 => text_reply("Done."),
            _ => panic!("two model calls"),
        },
        move |_, _| {
            let released = released.clone();
            async move {
                released.notified().await;
                output(json!("slow result"))
            }
            .boxed()
        },
    );
    let task = start_leased(&run, &fake, created, LEASE);
    fake.wait_calls(|&(_, tools)| tools == 1).await;
    // The lease lapses while the tool runs (as if the store had been away).
    TopicLog::delete(&*run.store, &run.lease_key).await.unwrap();
    wait_for_lease(&run, true, "the driver takes its lease back").await;
    release.notify_one();
    let state = finish(task).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 1), "the tool ran once");
    assert!(!lease_held(&run).await, "given up at the end");
}

/// A driver whose lease lapsed and was taken by another process stops, with
/// an error that says so, and writes nothing more.
async fn a_lapsed_lease_another_process_took_stops_the_driver(store: Store) {
    const LEASE: Duration = Duration::from_millis(300);
    let (run, created) = create(&store, "taken", 5).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[call("c1", "slow", json!({}))]),
            _ => panic!("one model call"),
        },
        |_, _| never(),
    );
    let task = start_leased(&run, &fake, created, LEASE);
    fake.wait_calls(|&(_, tools)| tools == 1).await;
    let before = events(&run).await.len();
    TopicLog::delete(&*run.store, &run.lease_key).await.unwrap();
    assert!(run
        .store
        .lease_acquire(LeaseClaim {
            key: &run.lease_key,
            owner: "another",
            ttl: LEASE * 100,
        })
        .await
        .unwrap());
    let error = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the driver stops in time")
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), "ERR_RUN_CONFLICT");
    assert!(
        error.to_string().contains("another process took the run over"),
        "{error}"
    );
    assert_eq!(
        events(&run).await.len(),
        before,
        "nothing written after the lease was lost"
    );
}

/// The checkpoint that creates a run can take its lease for the driver that
/// will run it; the checkpoint that ends the run gives it up.
async fn a_run_created_with_its_lease_hands_it_to_its_driver(store: Store) {
    const LEASE: Duration = Duration::from_secs(30);
    let run = run_store(&store, "leased-at-create");
    let owner = agent::new_lease_owner();
    let created = agent::create(
        &run,
        NewRun {
            run_id: "leased-at-create".into(),
            agent_id: AGENT.into(),
            messages: vec![],
            max_steps: 5,
            options: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        },
        Some((&owner, LEASE)),
    )
    .await
    .unwrap();
    assert!(lease_held(&run).await, "taken with the run");
    let fake = Fake::model_only(|_, _| text_reply("Hi."));
    // Nobody else may drive it meanwhile.
    let (other, _control) = Driver::new(run.clone(), fake.clone(), created.clone());
    assert_eq!(code(other.with_lease(LEASE).drive().await), "ERR_RUN_ACTIVE");
    assert_eq!(fake.model_calls(), 0);
    let (driver, control) = Driver::new(run.clone(), fake.clone(), created);
    fake.set_control(control);
    let state = driver
        .freshly_committed()
        .holding_lease(owner, LEASE)
        .drive()
        .await
        .unwrap();
    check_stored(&run, &state, Status::Finished).await;
    assert!(!lease_held(&run).await, "given up with the last checkpoint");
}

/// `toolCallConcurrency: 2`: of five calls of one step, two run at a time;
/// the next starts as one finishes.
async fn tool_call_concurrency_bounds_the_calls_in_flight(store: Store) {
    let (run, created) = create_with(&store, "bounded", 5, json!({ "toolCallConcurrency": 2 })).await;
    // Each call waits until the test lets it finish.
    let gates: Arc<Mutex<Vec<tokio::sync::oneshot::Sender<()>>>> = Arc::default();
    let in_gates = gates.clone();
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(
                &(0..5)
                    .map(|i| call(&format!("c{i}"), "slow", json!({ "i": i })))
                    .collect::<Vec<_>>(),
            ),
            1 => text_reply("All five."),
            _ => panic!("two model steps"),
        },
        move |_, _| {
            let (open, gate) = tokio::sync::oneshot::channel();
            in_gates.lock().unwrap().push(open);
            async move {
                let _ = gate.await;
                output(json!("done"))
            }
            .boxed()
        },
    );
    let (task, _control) = start(&run, &fake, created);
    for started in [2, 3, 4, 5] {
        fake.wait_calls(|&(_, tools)| tools == started).await;
        // However long we let it run, no further call starts.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(fake.tool_calls(), started, "at most two in flight");
        // Let one finish: the next starts.
        let open = gates.lock().unwrap().remove(0);
        let _ = open.send(());
    }
    for open in gates.lock().unwrap().drain(..) {
        let _ = open.send(());
    }
    let state = finish(task).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!(parts_of(&events(&run).await, "tool-result").len(), 5);
}

/// A run's topic holds that run only: a new run whose topic already has
/// events (left by something else) is refused, and nothing is written.
async fn a_new_run_needs_an_empty_topic(store: Store) {
    let run = RunStore::new(store.clone(), "pubsub:", "taken-topic", Default::default()).unwrap();
    store
        .append(
            &run.log_key,
            r#"{"id":"x","type":"chunk","runId":"taken-topic","data":{},"createdAt":1795824000000}"#,
            &Default::default(),
        )
        .await
        .unwrap();
    let refused = agent::create(
        &run,
        NewRun {
            run_id: "taken-topic".into(),
            agent_id: AGENT.into(),
            messages: vec![],
            max_steps: 5,
            options: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
        },
        None,
    )
    .await;
    assert_eq!(code(refused), "ERR_RUN_EXISTS");
    assert_eq!(events(&run).await.len(), 1, "nothing was added to the topic");
    assert_eq!(code(run.load("taken-topic").await), "ERR_RUN_NOT_FOUND");
}

/// A driver that lost its lease must not add to the log of the one that took
/// over: its appends are refused, atomically with the lease check.
async fn appends_are_fenced_by_the_lease(store: Store) {
    let (run, _created) = create(&store, "fenced", 5).await;
    assert!(run
        .store
        .lease_acquire(LeaseClaim {
            key: &run.lease_key,
            owner: "owner-a",
            ttl: Duration::from_secs(30),
        })
        .await
        .unwrap());
    let before = events(&run).await.len() as u64;
    let part = |text: &str| {
        format!(
            r#"{{"id":"{text}","type":"chunk","runId":"fenced","data":{{"type":"text-delta","id":"t","text":"{text}"}},"createdAt":1795824000000}}"#
        )
    };
    assert_eq!(
        run.append(&[part("a")], Some("owner-a")).await.unwrap(),
        Some(before + 1)
    );
    assert_eq!(
        code(run.append(&[part("b")], Some("owner-b")).await),
        "ERR_RUN_CONFLICT"
    );
    let events = events(&run).await;
    assert_eq!(events.len() as u64, before + 1, "the refused append added nothing");
    assert_eq!(events.last().unwrap()["id"], "a");
}

// ---------------------------------------------------------------------------
// 6. Approval

/// A run suspended on one call that needs approval.
async fn suspended_run(store: &Store, run_id: &str, fake: &Arc<Fake>) -> (RunStore, RunState) {
    let (run, created) = create(store, run_id, 5).await;
    let state = drive(&run, fake, created).await;
    assert_eq!(state.status, Status::Suspended);
    (run, state)
}

fn transfer_fake() -> Arc<Fake> {
    Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[approval_call("pay-1", "transfer", json!({ "amount": 100 }))]),
            1 => text_reply("Done."),
            _ => panic!("two model steps"),
        },
        |request, _| {
            assert_eq!(request["toolCallId"], "pay-1");
            now(output(json!({ "ok": true })))
        },
    )
}

async fn approval_suspends_and_an_approved_resume_runs_the_tool_once(store: Store) {
    let fake = transfer_fake();
    let (run, suspended) = suspended_run(&store, "approve", &fake).await;
    let events_before = events(&run).await;
    assert_eq!(
        kinds(&events_before),
        [
            "start",
            "start-step",
            "tool-input-start",
            "tool-approval-request",
            "suspended"
        ]
    );
    assert_eq!(
        events_before[3]["data"],
        json!({ "type": "tool-approval-request", "approvalId": "pay-1",
                "toolCall": { "type": "tool-call", "toolCallId": "pay-1", "toolName": "transfer", "input": { "amount": 100 } } })
    );
    assert_eq!(events_before[4]["type"], "suspended");
    let marker = &events_before[4]["data"];
    assert_eq!(marker["type"], "approval");
    assert_eq!(marker["toolCallId"], "pay-1");
    assert_eq!(marker["toolName"], "transfer");
    assert_eq!(marker["args"], json!({ "amount": 100 }));
    assert_eq!(marker["toolCalls"].as_array().unwrap().len(), 1);
    check_stored(&run, &suspended, Status::Suspended).await;
    assert_eq!(
        (fake.model_calls(), fake.tool_calls()),
        (1, 0),
        "the tool waits for approval"
    );
    assert!(
        parts_of(&events_before, "finish-step").is_empty(),
        "the step is not over"
    );

    // A suspended run does not move by itself.
    let reloaded = agent::load_owned(&run, "approve", AGENT).await.unwrap();
    let again = drive(&run, &fake, reloaded).await;
    assert_eq!((again.status, again.version), (Status::Suspended, suspended.version));
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));

    let resumed = agent::resume(&run, "approve", AGENT, Some("pay-1"), Decision::Approved, None)
        .await
        .unwrap();
    assert_eq!(resumed.status, Status::Running);
    assert_eq!(resumed.version, suspended.version + 1);
    assert_eq!(resumed.phase, Phase::Tools);
    // Resumed once: it is not waiting any more.
    assert_eq!(
        code(agent::resume(&run, "approve", AGENT, Some("pay-1"), Decision::Approved, None).await),
        "ERR_RUN_NOT_SUSPENDED"
    );
    assert_eq!(
        (fake.model_calls(), fake.tool_calls()),
        (1, 0),
        "resume itself calls nothing"
    );

    let state = drive(&run, &fake, resumed).await;
    let events = events(&run).await;
    assert_eq!(events[..events_before.len()], events_before[..]);
    assert_eq!(
        kinds(&events[events_before.len()..]),
        [
            "tool-result",
            "finish-step",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 1));
    let request = &fake.tool_requests()[0];
    assert_eq!(request["idempotencyKey"], "approve:0:pay-1");
    assert_eq!(request["input"], json!({ "amount": 100 }));
    let results = tool_message_results(&fake.model_request(1)["messages"][2]);
    assert_eq!(
        results["pay-1"]["output"],
        json!({ "type": "json", "value": { "ok": true } })
    );

    assert_eq!(
        code(agent::resume(&run, "approve", AGENT, None, Decision::Approved, None).await),
        "ERR_RUN_NOT_SUSPENDED"
    );
    assert_eq!(
        code(agent::abort_suspended(&run, "approve", AGENT, None).await),
        "ERR_RUN_NOT_SUSPENDED"
    );
    assert_inert(&run, &fake, "approve").await;
}

async fn declined_tool_call_is_denied_and_the_model_sees_it(store: Store) {
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[approval_call("pay-1", "transfer", json!({ "amount": 100 }))]),
            1 => text_reply("I did not transfer anything."),
            _ => panic!("two model steps"),
        },
        |request, _| panic!("a declined call never runs: {request}"),
    );
    let (run, suspended) = suspended_run(&store, "decline", &fake).await;
    let before = events(&run).await.len();
    let resumed = agent::resume(
        &run,
        "decline",
        AGENT,
        None,
        Decision::Declined {
            reason: Some("too risky".to_owned()),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        (resumed.status, resumed.version),
        (Status::Running, suspended.version + 1)
    );
    let state = drive(&run, &fake, resumed).await;
    let events = events(&run).await;
    assert_eq!(
        kinds(&events[before..]),
        [
            "tool-output-denied",
            "finish-step",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
    assert_eq!(
        events[before]["data"],
        json!({ "type": "tool-output-denied", "toolCallId": "pay-1", "toolName": "transfer", "reason": "too risky" })
    );
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 0));
    let results = tool_message_results(&fake.model_request(1)["messages"][2]);
    assert_eq!(
        results["pay-1"],
        json!({ "type": "tool-result", "toolCallId": "pay-1", "toolName": "transfer",
                "output": { "type": "execution-denied", "reason": "too risky" } })
    );
}

async fn resume_and_create_errors(store: Store) {
    let fake = transfer_fake();
    let (run, suspended) = suspended_run(&store, "errors", &fake).await;
    let log_len = events(&run).await.len();

    assert_eq!(
        code(agent::resume(&run, "errors", "another-agent", None, Decision::Approved, None).await),
        "ERR_RUN_OWNED_ELSEWHERE"
    );
    assert_eq!(
        code(agent::abort_suspended(&run, "errors", "another-agent", None).await),
        "ERR_RUN_OWNED_ELSEWHERE"
    );
    assert_eq!(
        code(agent::resume(&run, "errors", AGENT, Some("no-such-call"), Decision::Approved, None).await),
        "ERR_UNKNOWN_TOOL_CALL"
    );
    let ghost = run_store(&store, "ghost");
    assert_eq!(
        code(agent::resume(&ghost, "ghost", AGENT, None, Decision::Approved, None).await),
        "ERR_RUN_NOT_FOUND"
    );
    assert_eq!(
        code(agent::load_owned(&ghost, "ghost", AGENT).await),
        "ERR_RUN_NOT_FOUND"
    );

    // Creating a run that exists changes nothing.
    let duplicate = agent::create(
        &run,
        NewRun {
            run_id: "errors".to_owned(),
            agent_id: AGENT.to_owned(),
            messages: vec![raw(user_message())],
            max_steps: 5,
            options: raw(json!({})),
        },
        None,
    )
    .await;
    assert_eq!(code(duplicate), "ERR_RUN_EXISTS");
    let (_, fresh) = create(&store, "fresh", 5).await;
    assert_eq!(fresh.status, Status::Running);
    assert_eq!(
        code(
            agent::create(
                &run_store(&store, "fresh"),
                NewRun {
                    run_id: "fresh".to_owned(),
                    agent_id: AGENT.to_owned(),
                    messages: Vec::new(),
                    max_steps: 1,
                    options: raw(json!({})),
                },
                None
            )
            .await
        ),
        "ERR_RUN_EXISTS"
    );
    assert_eq!(
        code(
            agent::resume(
                &run_store(&store, "fresh"),
                "fresh",
                AGENT,
                None,
                Decision::Approved,
                None
            )
            .await
        ),
        "ERR_RUN_NOT_SUSPENDED",
        "a running run is not waiting for approval"
    );
    assert_eq!(
        code(
            agent::create(
                &run_store(&store, "zero-steps"),
                NewRun {
                    run_id: "zero-steps".to_owned(),
                    agent_id: AGENT.to_owned(),
                    messages: Vec::new(),
                    max_steps: 0,
                    options: raw(json!({})),
                },
                None
            )
            .await
        ),
        "ERR_INVALID_ARG"
    );

    // None of that touched the suspended run.
    check_stored(&run, &suspended, Status::Suspended).await;
    assert_eq!(events(&run).await.len(), log_len);

    // Aborting it while suspended publishes `abort`.
    let aborted = agent::abort_suspended(&run, "errors", AGENT, Some("user left"))
        .await
        .unwrap();
    check_stored(&run, &aborted, Status::Aborted).await;
    let events = events(&run).await;
    assert_eq!(events.len(), log_len + 1);
    assert_eq!(
        events[log_len]["data"],
        json!({ "type": "abort", "reason": "user left" })
    );
    assert_eq!(
        code(agent::resume(&run, "errors", AGENT, None, Decision::Approved, None).await),
        "ERR_RUN_NOT_SUSPENDED"
    );
    assert_eq!((fake.model_calls(), fake.tool_calls()), (1, 0));
}

async fn concurrent_resumes_exactly_one_wins(store: Store) {
    for i in 0..5 {
        let run_id = format!("race-{i}");
        let fake = transfer_fake();
        let (run, suspended) = suspended_run(&store, &run_id, &fake).await;
        let (a, b) = tokio::join!(
            agent::resume(&run, &run_id, AGENT, None, Decision::Approved, None),
            agent::resume(
                &run,
                &run_id,
                AGENT,
                None,
                Decision::Declined {
                    reason: Some("no".to_owned())
                },
                None
            ),
        );
        let (won, lost) = match (a, b) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            (a, b) => panic!("exactly one resume must win: {a:?} / {b:?}"),
        };
        assert!(
            matches!(lost.code(), "ERR_RUN_NOT_SUSPENDED" | "ERR_RUN_CONFLICT"),
            "{lost:?}"
        );
        let stored = agent::load_owned(&run, &run_id, AGENT).await.unwrap();
        assert_eq!(stored.version, suspended.version + 1);
        assert_eq!(stored.status, Status::Running);
        assert_eq!(
            stored.pending[0].decision, won.pending[0].decision,
            "the winner's decision is stored"
        );
    }
}

/// Two writers from one checkpoint (a resume and another, or two drivers):
/// the second one's commit must be refused, even though it writes the same
/// version number the first one did.
async fn a_stale_writer_is_refused(store: Store) {
    let fake = transfer_fake();
    let (run, suspended) = suspended_run(&store, "stale", &fake).await;
    let mut first = agent::load_owned(&run, "stale", AGENT).await.unwrap();
    let mut second = first.clone();
    let expected = first.version;

    first.pending[0].decision = Some(Decision::Approved);
    first.status = Status::Running;
    first.version += 1;
    run.commit(&first, Some(expected), &[]).await.unwrap();

    second.pending[0].decision = Some(Decision::Declined { reason: None });
    second.status = Status::Running;
    second.version += 1;
    assert_eq!(code(run.commit(&second, Some(expected), &[]).await), "ERR_RUN_CONFLICT");

    let stored = agent::load_owned(&run, "stale", AGENT).await.unwrap();
    assert_eq!(stored.version, suspended.version + 1);
    assert_eq!(stored.pending[0].decision, Some(Decision::Approved));

    // A commit against a run that is gone.
    run.delete().await.unwrap();
    first.version += 1;
    assert_eq!(
        code(run.commit(&first, Some(first.version - 1), &[]).await),
        "ERR_RUN_NOT_FOUND"
    );
}

async fn require_tool_approval_option_suspends_every_call(store: Store) {
    let (run, created) = create_with(&store, "require-all", 5, json!({ "requireToolApproval": true })).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[call("a", "lookup", json!({})), call("b", "lookup", json!({}))]),
            1 => text_reply("ok"),
            _ => panic!("two model steps"),
        },
        |_, _| now(output(json!(1))),
    );
    let suspended = drive(&run, &fake, created).await;
    assert_eq!(suspended.status, Status::Suspended);
    assert_eq!(fake.tool_calls(), 0);
    let first = events(&run).await;
    assert_eq!(parts_of(&first, "tool-approval-request").len(), 2);
    assert_eq!(first.last().unwrap()["data"]["toolCalls"].as_array().unwrap().len(), 2);

    // Deciding one call keeps the run waiting for the other.
    let half = agent::resume(&run, "require-all", AGENT, Some("a"), Decision::Approved, None)
        .await
        .unwrap();
    assert_eq!(half.status, Status::Suspended);
    check_stored(&run, &half, Status::Suspended).await;
    let resumed = agent::resume(&run, "require-all", AGENT, Some("b"), Decision::Approved, None)
        .await
        .unwrap();
    assert_eq!(resumed.status, Status::Running);
    let state = drive(&run, &fake, resumed).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!(calls(&fake, &["a", "b"]), (2, vec![1, 1]));
    // No second round of approval requests.
    let log = events(&run).await;
    assert_eq!(parts_of(&log, "tool-approval-request").len(), 2);
}

// ---------------------------------------------------------------------------
// 7. Checkpoints

/// Loads the (stopped) run and drives it again: nothing is called, nothing
/// published, nothing written.
async fn assert_inert(run: &RunStore, fake: &Arc<Fake>, run_id: &str) {
    let calls = (fake.model_calls(), fake.tool_calls());
    let log_len = events(run).await.len();
    let stored = agent::load_owned(run, run_id, AGENT).await.unwrap();
    assert!(stored.status.is_terminal() || stored.status == Status::Suspended);
    let state = drive(run, fake, stored.clone()).await;
    assert_eq!((state.status, state.version), (stored.status, stored.version));
    assert_eq!(
        (fake.model_calls(), fake.tool_calls()),
        calls,
        "a stopped run calls nothing"
    );
    assert_eq!(events(run).await.len(), log_len, "a stopped run publishes nothing");
    let after = agent::load_owned(run, run_id, AGENT).await.unwrap();
    assert_eq!(after.version, stored.version);
}

async fn terminal_runs_never_call_back_again(store: Store) {
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[call("c", "lookup", json!({}))]),
            _ => text_reply("done"),
        },
        |_, _| now(output(json!("found"))),
    );
    let (run, created) = create(&store, "terminal", 5).await;
    let state = drive(&run, &fake, created).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!((fake.model_calls(), fake.tool_calls()), (2, 1));
    // Twice, each from the stored checkpoint.
    assert_inert(&run, &fake, "terminal").await;
    assert_inert(&run, &fake, "terminal").await;
}

async fn resume_after_suspension_never_reruns_completed_tool_calls(store: Store) {
    let (run, created) = create(&store, "mixed", 5).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[
                call("look", "lookup", json!({ "account": "A" })),
                approval_call("pay", "transfer", json!({ "amount": 5 })),
            ]),
            1 => text_reply("Paid."),
            _ => panic!("two model steps"),
        },
        |request, _| match request["toolCallId"].as_str().unwrap() {
            "look" => now(output(json!({ "balance": 10 }))),
            "pay" => now(output(json!({ "paid": 5 }))),
            other => panic!("unknown call {other}"),
        },
    );
    let suspended = drive(&run, &fake, created).await;
    let events_before = events(&run).await;
    assert_eq!(
        kinds(&events_before),
        [
            "start",
            "start-step",
            "tool-input-start",
            "tool-result",
            "tool-approval-request",
            "suspended"
        ]
    );
    check_stored(&run, &suspended, Status::Suspended).await;
    assert_eq!((fake.tool_calls_of("look"), fake.tool_calls_of("pay")), (1, 0));
    let stored = agent::load_owned(&run, "mixed", AGENT).await.unwrap();
    assert_eq!(stored.pending.len(), 1, "only the call awaiting approval is pending");
    assert_eq!(stored.pending[0].tool_call_id, "pay");
    assert_eq!(stored.tool_results.len(), 1);

    // Driving the suspended checkpoint again runs nothing.
    assert_inert(&run, &fake, "mixed").await;

    agent::resume(&run, "mixed", AGENT, Some("pay"), Decision::Approved, None)
        .await
        .unwrap();
    // From the stored checkpoint, as another process would.
    let resumed = agent::load_owned(&run, "mixed", AGENT).await.unwrap();
    let state = drive(&run, &fake, resumed).await;
    let results = finished_with_results(&run, &fake, &state).await;
    assert_eq!(calls(&fake, &["look", "pay"]), (2, vec![1, 1]));
    let events = events(&run).await;
    assert_eq!(parts_of(&events, "tool-result").len(), 2);
    assert_eq!(parts_of(&events, "finish-step").len(), 2, "step 0 ends once");
    assert_eq!(results.len(), 2);
    assert_eq!(results["look"]["output"]["value"], json!({ "balance": 10 }));
    assert_eq!(results["pay"]["output"]["value"], json!({ "paid": 5 }));
}

/// A driver that dies after one of two tool calls completed: the next driver,
/// from the stored checkpoint, runs only the other.
async fn crash_in_tool_step_resumes_from_the_last_checkpoint(store: Store) {
    let (run, created) = create(&store, "crash-tools", 5).await;
    let fake = Fake::new(
        |n, _| match n {
            0 => tool_calls_reply(&[
                call("fast", "lookup", json!({ "n": 1 })),
                call("slow", "lookup", json!({ "n": 2 })),
            ]),
            1 => text_reply("Both done."),
            _ => panic!("two model steps"),
        },
        |request, earlier| match (request["toolCallId"].as_str().unwrap(), earlier) {
            ("fast", 0) => now(output(json!("fast result"))),
            // The first attempt hangs until its driver dies.
            ("slow", 0) => never(),
            ("slow", 1) => now(output(json!("slow result"))),
            (id, n) => panic!("{id} called {} times", n + 1),
        },
    );
    let (task, _control) = start(&run, &fake, created);
    wait_for_event(&run, "tool-result").await;
    fake.wait_calls(|&(_, tools)| tools == 2).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let stored = agent::load_owned(&run, "crash-tools", AGENT).await.unwrap();
    assert_eq!((stored.status, stored.phase), (Status::Running, Phase::Tools));
    assert_eq!(stored.pending.len(), 1);
    assert_eq!(stored.pending[0].tool_call_id, "slow");
    assert_eq!(stored.next_event, run.store.next_index(&run.log_key).await.unwrap());

    let state = drive(&run, &fake, stored).await;
    let results = finished_with_results(&run, &fake, &state).await;
    assert_eq!(calls(&fake, &["fast", "slow"]), (2, vec![1, 2]));
    let events = events(&run).await;
    assert_eq!(parts_of(&events, "tool-result").len(), 2);
    assert_eq!(results.len(), 2);
    assert_eq!(results["fast"]["output"]["value"], "fast result");
    assert_eq!(results["slow"]["output"]["value"], "slow result");
}

/// A driver that dies mid-model-call checkpointed nothing of that step: the
/// next one calls the model again, and the log stays consistent.
async fn crash_in_model_step_repeats_only_that_step(store: Store) {
    let (run, created) = create(&store, "crash-model", 5).await;
    let fake = Fake::model_only(|n, _| match n {
        0 => ModelStep {
            parts: vec![json!({ "type": "text-delta", "id": "t", "delta": "lost" })],
            reply: Reply::Never,
        },
        1 => text_reply("Second try."),
        _ => panic!("two model calls"),
    });
    let (task, _control) = start(&run, &fake, created.clone());
    wait_for_event(&run, "text-delta").await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    let stored = agent::load_owned(&run, "crash-model", AGENT).await.unwrap();
    // Nothing of step 0 was checkpointed (only the driver's claim).
    assert_eq!(
        (stored.status, stored.phase, stored.step, stored.messages.len()),
        (Status::Running, Phase::Model, 0, 1)
    );
    assert_eq!(stored.version, created.version + 1);
    let state = drive(&run, &fake, stored).await;
    check_stored(&run, &state, Status::Finished).await;
    assert_eq!(fake.model_calls(), 2);
    // `events` checks indices and that no event id repeats across drivers.
    let events = events(&run).await;
    assert_eq!(
        kinds(&events),
        [
            "start",
            "start-step",
            "text-delta",
            "start-step",
            "text-start",
            "text-delta",
            "text-end",
            "finish-step",
            "finish"
        ]
    );
}

/// Two drivers handed the same checkpoint (two processes driving one run):
/// one runs it, the other is refused before it calls anything.
async fn two_drivers_of_one_checkpoint_only_one_runs(store: Store) {
    let (run, created) = create(&store, "two-drivers", 5).await;
    let fake = Fake::model_only(|_, _| ModelStep {
        parts: Vec::new(),
        ..text_reply("once")
    });
    let (first, _first_control) = Driver::new(run.clone(), fake.clone(), created.clone());
    let (second, _second_control) = Driver::new(run.clone(), fake.clone(), created);
    let (a, b) = tokio::time::timeout(DEADLINE, async { tokio::join!(first.drive(), second.drive()) })
        .await
        .expect("both drivers stop in time");
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        (a, b) => panic!("exactly one driver must run the checkpoint: {a:?} / {b:?}"),
    };
    assert_eq!(lost.code(), "ERR_RUN_CONFLICT", "{lost:?}");
    check_stored(&run, &won, Status::Finished).await;
    assert_eq!(fake.model_calls(), 1, "the refused driver calls nothing");
    assert_eq!(
        kinds(&events(&run).await),
        ["start", "start-step", "finish-step", "finish"]
    );
}

// ---------------------------------------------------------------------------
// 8. Run ids

async fn invalid_run_ids_are_rejected(store: Store) {
    let too_long = "r".repeat(201);
    for bad in [
        "",
        "a b",
        " ",
        "tab\there",
        "line\n",
        "a{b",
        "{tag}",
        "a}b",
        "nul\0",
        too_long.as_str(),
    ] {
        match RunStore::new(store.clone(), PREFIX, bad, Retention::default()) {
            Ok(_) => panic!("run id {bad:?} must be rejected"),
            Err(e) => assert_eq!(e.code(), "ERR_INVALID_ARG", "{bad:?}: {e}"),
        }
    }
    let longest = "r".repeat(200);
    for good in ["run-1", "rün:ü/1.2_3", longest.as_str()] {
        let run = RunStore::new(store.clone(), PREFIX, good, Retention::default()).unwrap();
        let created = agent::create(
            &run,
            NewRun {
                run_id: good.to_owned(),
                agent_id: AGENT.to_owned(),
                messages: Vec::new(),
                max_steps: 1,
                options: raw(json!({})),
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(created.run_id, good);
        assert_eq!(run.load(good).await.unwrap().run_id, good);
    }
}

// ---------------------------------------------------------------------------
// 9. Redis keys

/// The hash tag Redis Cluster hashes a key by (the whole key without one).
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_run_keys_share_a_hash_tag_and_unended_runs_never_expire() {
    let env = Env::redis("keys");
    let (cache, prefix) = env.redis.clone().unwrap();
    let mut conn = redis::Client::open(common::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let fake = transfer_fake();
    let (run, _) = suspended_run(&env.store, "keys-1", &fake).await;

    let state_key = cache.key(&run.state_key);
    let log_key = cache.key(&run.log_key);
    assert!(state_key.starts_with(&prefix) && log_key.starts_with(&prefix));
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&state_key)
        .arg(&log_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 2, "the run lives at {state_key} and {log_key}");
    assert_ne!(state_key, log_key);
    assert_eq!(hash_tag(&state_key), "pubsub:agent.stream.keys-1");
    assert_eq!(
        hash_tag(&state_key),
        hash_tag(&log_key),
        "{state_key} / {log_key}: one Cluster slot"
    );

    // Suspended: kept until resumed, however long that takes.
    assert_eq!(pttl(&mut conn, &state_key).await, -1);
    assert_eq!(pttl(&mut conn, &log_key).await, -1);

    let resumed = agent::resume(&run, "keys-1", AGENT, None, Decision::Approved, None)
        .await
        .unwrap();
    let state = drive(&run, &fake, resumed).await;
    assert_eq!(state.status, Status::Finished);
    for key in [&state_key, &log_key] {
        let ttl = pttl(&mut conn, key).await;
        assert!(
            ttl > 0 && ttl <= (REDIS_TTL_SECONDS * 1000.0) as i64,
            "{key}: PTTL {ttl}"
        );
    }

    // Running (here: waiting for a model call): kept too, however long the
    // call takes; a run whose process died stays recoverable.
    let (running, created) = create(&env.store, "keys-running", 5).await;
    let hanging = Fake::model_only(|_, _| ModelStep {
        parts: vec![json!({ "type": "text-delta", "id": "t", "delta": "slow" })],
        reply: Reply::Never,
    });
    let (task, control) = start(&running, &hanging, created);
    wait_for_event(&running, "text-delta").await;
    let (running_state, running_log) = (cache.key(&running.state_key), cache.key(&running.log_key));
    assert_eq!(pttl(&mut conn, &running_state).await, -1);
    assert_eq!(pttl(&mut conn, &running_log).await, -1);
    control.abort(None);
    assert_eq!(finish(task).await.status, Status::Aborted);
    for key in [&running_state, &running_log] {
        let ttl = pttl(&mut conn, key).await;
        assert!(ttl > 0, "{key}: PTTL {ttl} once the run ended");
    }

    // Aborted while suspended: expires too.
    let fake = transfer_fake();
    let (run, _) = suspended_run(&env.store, "keys-2", &fake).await;
    let (state_key, log_key) = (cache.key(&run.state_key), cache.key(&run.log_key));
    assert_eq!(pttl(&mut conn, &state_key).await, -1);
    agent::abort_suspended(&run, "keys-2", AGENT, None).await.unwrap();
    for key in [&state_key, &log_key] {
        let ttl = pttl(&mut conn, key).await;
        assert!(ttl > 0, "{key}: PTTL {ttl}");
    }

    // Deleting a run removes both keys.
    run.delete().await.unwrap();
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&state_key)
        .arg(&log_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0);
}

// ---------------------------------------------------------------------------
// A driver whose control the embedder dropped

/// Without its `RunControl` the driver can take no parts, but it must still
/// wait for the model quietly rather than spin: on a paused clock, a spinning
/// driver keeps the runtime busy so the model's timer never fires.
#[test]
fn a_driver_without_its_control_waits_for_the_model_without_spinning() {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let state = runtime.block_on(async {
            let store = shared(MemoryCache::new(MemoryCacheConfig::default()));
            let (run, created) = create(&store, "no-control", 5).await;
            let fake = Fake::model_only(|_, _| ModelStep {
                parts: Vec::new(),
                reply: Reply::After(
                    Duration::from_secs(3600),
                    Ok(json!({ "content": [{ "type": "text", "text": "late" }] }).to_string()),
                ),
            });
            let (driver, control) = Driver::new(run.clone(), fake.clone(), created);
            drop(control);
            let state = driver.drive().await.unwrap();
            (state.status, fake.model_calls(), events(&run).await.len())
        });
        let _ = done.send(state);
    });
    let (status, model_calls, events) = outcome
        .recv_timeout(DEADLINE)
        .expect("the driver waits for the model instead of spinning");
    assert_eq!((status, model_calls, events), (Status::Finished, 1, 4));
}

// ---------------------------------------------------------------------------
// The agent: one home for a run's lifecycle

fn agent_on(store: &Store, fake: &Arc<Fake>, keep_ended: Option<Duration>) -> Agent {
    let config = AgentConfig {
        agent_id: AGENT.to_owned(),
        prefix: PREFIX.to_owned(),
        retention: Retention::default(),
        lease: Duration::from_secs(30),
        outage: Duration::from_secs(30),
        keep_ended,
    };
    Agent::new(store.clone(), config, fake.clone())
}

/// A model step that replies at once, streaming nothing.
fn quiet_text_reply(text: &str) -> ModelStep {
    ModelStep {
        parts: Vec::new(),
        reply: text_reply(text).reply,
    }
}

fn start_run(run_id: &str) -> StartRun {
    StartRun {
        run_id: run_id.to_owned(),
        messages: vec![raw(user_message())],
        max_steps: 3,
        options: raw(json!({})),
    }
}

async fn the_agent_decides_recovery_and_keeps_its_registry(store: Store) {
    let fake = Fake::model_only(|_, _| quiet_text_reply("Recovered."));
    let (here, elsewhere) = (agent_on(&store, &fake, None), agent_on(&store, &fake, None));

    // Started here: leased by this agent, so recovering it elsewhere is refused.
    let started = here.start(start_run("started")).await.unwrap();
    assert_eq!(started.status, "running");
    let inspected = here.inspect("started").await.unwrap();
    assert_eq!(inspected.leased, Some(true));
    let owner = inspected.lease_owner.expect("the driver to be's lease id");
    assert!(owner.starts_with(&format!("{}:", std::process::id())), "{owner}");
    assert_eq!(code(elsewhere.recover("started").await), "ERR_RUN_ACTIVE");

    // A run whose driver died (running, no lease): the first recoverer takes
    // it, atomically; a second one is refused.
    let (_run, _) = create(&store, "orphan", 3).await;
    let listed: Vec<_> = here
        .running_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.run_id, r.leased))
        .collect();
    assert!(listed.contains(&("orphan".to_owned(), Some(false))), "{listed:?}");
    assert_eq!(elsewhere.recover("orphan").await.unwrap().leased, Some(true));
    assert_eq!(code(here.recover("orphan").await), "ERR_RUN_ACTIVE");

    // Driving registers the run at once, and unregisters it when it ends.
    let drive = elsewhere.drive("orphan").unwrap();
    assert_eq!(elsewhere.active_runs(), 1);
    let ended = tokio::time::timeout(DEADLINE, drive).await.unwrap().unwrap();
    assert_eq!((ended.status, elsewhere.active_runs()), ("finished", 0));
    assert_eq!(fake.model_calls(), 1);

    // An ended run is only to be read: recover reports it, drives nothing.
    let again = here.recover("orphan").await.unwrap();
    assert_eq!((again.status, again.next_event), ("finished", ended.next_event));
    assert_eq!(here.active_runs(), 0);

    // Another agent's run is not this one's to recover.
    let other = Agent::new(
        store.clone(),
        AgentConfig {
            agent_id: "another-agent".to_owned(),
            ..here.config().clone()
        },
        fake.clone(),
    );
    assert_eq!(code(other.recover("orphan").await), "ERR_RUN_OWNED_ELSEWHERE");

    for run_id in ["started", "orphan"] {
        here.cleanup(run_id).await.unwrap();
        assert_eq!(code(here.inspect(run_id).await), "ERR_RUN_NOT_FOUND");
    }
}

async fn an_ended_run_expires_after_keep_ended(store: Store) {
    let fake = Fake::model_only(|_, _| quiet_text_reply("Done."));
    let agent = agent_on(&store, &fake, Some(Duration::from_millis(300)));
    agent.start(start_run("kept-then-gone")).await.unwrap();
    let ended = tokio::time::timeout(DEADLINE, agent.drive("kept-then-gone").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, "finished");
    // Readable right after it ended; gone (state and events) once the TTL passed.
    assert_eq!(agent.inspect("kept-then-gone").await.unwrap().status, "finished");
    let run = run_store(&store, "kept-then-gone");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let state_gone = matches!(agent.inspect("kept-then-gone").await, Err(AgentError::RunNotFound(_)));
        if state_gone && store.next_index(&run.log_key).await.unwrap() == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the ended run expires");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_run_summary_has_the_wire_members(store: Store) {
    let fake = Fake::model_only(|_, _| quiet_text_reply("x"));
    let agent = agent_on(&store, &fake, None);
    agent.start(start_run("summary")).await.unwrap();
    let summary: Value = serde_json::from_str(&agent.inspect("summary").await.unwrap().text()).unwrap();
    let mut members: Vec<&str> = summary.as_object().unwrap().keys().map(String::as_str).collect();
    members.sort();
    let mut expected = durable_agent_core::wire::RUN_SUMMARY_FIELDS.to_vec();
    expected.sort();
    assert_eq!(members, expected);
    agent.cleanup("summary").await.unwrap();
}

/// A reader's check of a run: nothing to say while a process drives it or
/// once it ended; a running run nobody drives is counted from the first
/// check that found it so, and abandoned once that lasts longer than a
/// driver rides an outage out and a lease more (30 s + 30 s here).
async fn a_run_nobody_drives_is_abandoned_for_its_readers(store: Store) {
    let fake = Fake::model_only(|_, _| quiet_text_reply("Done."));
    let agent = agent_on(&store, &fake, None);
    agent.start(start_run("watched")).await.unwrap();
    assert_eq!(
        agent.check_driven("watched", None).await.unwrap(),
        None,
        "leased at start"
    );

    let (_run, _) = create(&store, "orphaned", 3).await;
    let since = agent
        .check_driven("orphaned", None)
        .await
        .unwrap()
        .expect("undriven from now");
    assert_eq!(
        agent.check_driven("orphaned", Some(since)).await.unwrap(),
        Some(since),
        "not yet"
    );
    let long_ago = since - 60_001;
    assert_eq!(
        code(agent.check_driven("orphaned", Some(long_ago)).await),
        "ERR_RUN_ABANDONED"
    );

    // Recovered: driven again, so nothing to say; ended, nothing either.
    agent.recover("orphaned").await.unwrap();
    assert_eq!(agent.check_driven("orphaned", Some(long_ago)).await.unwrap(), None);
    let ended = tokio::time::timeout(DEADLINE, agent.drive("orphaned").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.status, "finished");
    assert_eq!(agent.check_driven("orphaned", Some(long_ago)).await.unwrap(), None);

    agent.cleanup("orphaned").await.unwrap();
    assert_eq!(code(agent.check_driven("orphaned", None).await), "ERR_RUN_NOT_FOUND");
    agent.cleanup("watched").await.unwrap();
}
