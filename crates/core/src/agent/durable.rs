//! The durable agent: one agent's runs in one store, the whole lifecycle of
//! each (start, drive, resume, recover, abort, inspect, clean up), and the
//! registry of the runs this process drives.
//!
//! An embedder (the napi binding) makes one [`Agent`] per agent and calls
//! its methods; each returns serde types of `wire.rs` ([`RunSummary`]). The
//! model and the tools stay behind [`Callbacks`]: the agent never calls back
//! into the embedder for anything else.
//!
//! How long an ended run is kept is part of its last checkpoint: the run's
//! keys get [`AgentConfig::keep_ended`] as their TTL when it finishes, fails
//! or is aborted, so no timer of any process has to delete it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;

use super::control::{new_lease_owner, RunControl};
use super::driver::{Callbacks, Driver};
use super::error::AgentError;
use super::outage::Outage;
use super::run::{self, NewRun, RunStore};
use super::state::{Decision, RunState, Status};
use crate::cache::store::Store;
use crate::log::Retention;
use crate::wire::{RunSummary, RUN_TOPIC_PREFIX};

/// What an [`Agent`] is configured with.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Runs belong to this id: another agent cannot drive or resume them.
    pub agent_id: String,
    /// The pubsub key prefix its runs' keys start with.
    pub prefix: String,
    /// The retention of its runs' topics (the pubsub's).
    pub retention: Retention,
    /// How long the lease of a run driven here lasts (renewed every third).
    pub lease: Duration,
    /// How long a driver here rides a store outage out.
    pub outage: Duration,
    /// How long an ended run (finished, failed, aborted) is kept before its
    /// keys expire; `None`: as long as the topic retention says.
    pub keep_ended: Option<Duration>,
}

/// One agent's durable runs in a store. Cheap to clone (one shared registry).
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: AgentConfig,
    /// The retention an ended run's keys get.
    ended: Retention,
    callbacks: Arc<dyn Callbacks>,
    /// Runs this process drives now.
    active: Mutex<HashMap<String, RunControl>>,
    /// Runs whose lease was just taken here (created, resumed or recovered),
    /// handed to the next [`Agent::drive`].
    prepared: Mutex<HashMap<String, Prepared>>,
}

struct Prepared {
    state: RunState,
    /// Who holds the run's lease (the driver to be).
    owner: String,
    /// `state` is the checkpoint this process wrote (create, resume): its
    /// version is already the driver's claim.
    committed_here: bool,
}

/// A new run, as the embedder asks for it.
pub struct StartRun {
    pub run_id: String,
    /// The prompt: language-model messages (system, user, ...), JSON.
    pub messages: Vec<Box<RawValue>>,
    pub max_steps: u32,
    /// The caller's options, handed back to every callback.
    pub options: Box<RawValue>,
}

/// Removes a run from the registry when its drive ends, however it ends.
struct Registered {
    agent: Agent,
    run_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.agent.inner.active).remove(&self.run_id);
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Agent {
    pub fn new(store: Store, config: AgentConfig, callbacks: Arc<dyn Callbacks>) -> Agent {
        let ended = match config.keep_ended {
            Some(ttl) => Retention {
                ttl: Some(Some(ttl)),
                ..config.retention
            },
            None => config.retention,
        };
        Agent {
            inner: Arc::new(Inner {
                store,
                config,
                ended,
                callbacks,
                active: Mutex::default(),
                prepared: Mutex::default(),
            }),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The store its runs live in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn run_store(&self, run_id: &str) -> Result<RunStore, AgentError> {
        let config = &self.inner.config;
        RunStore::new(self.inner.store.clone(), &config.prefix, run_id, self.inner.ended)
    }

    fn prepare(&self, state: &RunState, owner: String, committed_here: bool) {
        lock(&self.inner.prepared).insert(
            state.run_id.clone(),
            Prepared {
                state: state.clone(),
                owner,
                committed_here,
            },
        );
    }

    /// Creates a run (it must not exist), publishes its `start` part and
    /// takes its lease for the driver: [`Self::drive`] it next.
    pub async fn start(&self, start: StartRun) -> Result<RunSummary, AgentError> {
        let run = self.run_store(&start.run_id)?;
        let new = NewRun {
            run_id: start.run_id,
            agent_id: self.inner.config.agent_id.clone(),
            messages: start.messages,
            max_steps: start.max_steps,
            options: start.options,
        };
        let owner = new_lease_owner();
        let state = run::create(&run, new, Some((&owner, self.inner.config.lease))).await?;
        self.prepare(&state, owner, true);
        Ok(RunSummary::of(&state, None))
    }

    /// Records an approval decision for a suspended run (`tool_call_id`
    /// absent: every waiting call). When no call waits any more the run is
    /// running again, its lease taken here: [`Self::drive`] it next.
    pub async fn resume(
        &self,
        run_id: &str,
        tool_call_id: Option<&str>,
        decision: Decision,
    ) -> Result<RunSummary, AgentError> {
        let run = self.run_store(run_id)?;
        let owner = new_lease_owner();
        let config = &self.inner.config;
        let state = run::resume(
            &run,
            run_id,
            &config.agent_id,
            tool_call_id,
            decision,
            Some((&owner, config.lease)),
        )
        .await?;
        if state.status == Status::Running {
            self.prepare(&state, owner, true);
        }
        Ok(RunSummary::of(&state, None))
    }

    /// The recover decision for a run whose driver may be gone: a run that
    /// is not running (ended, suspended) is only to be read, its summary
    /// returned; a running run whose lease a process holds is
    /// [`AgentError::RunActive`]; one nobody holds is taken here (its lease,
    /// atomically, so two recoverers cannot both drive it): [`Self::drive`]
    /// it next, from its last checkpoint.
    pub async fn recover(&self, run_id: &str) -> Result<RunSummary, AgentError> {
        let run = self.run_store(run_id)?;
        let state = run::load_owned(&run, run_id, &self.inner.config.agent_id).await?;
        if state.status != Status::Running {
            return Ok(RunSummary::of(&state, None));
        }
        let owner = new_lease_owner();
        let config = &self.inner.config;
        if !run
            .take_lease(&owner, config.lease, &mut Outage::new(config.outage))
            .await?
        {
            return Err(AgentError::RunActive(run_id.to_owned()));
        }
        let summary = RunSummary::of(&state, Some(Some(owner.clone())));
        self.prepare(&state, owner, false);
        Ok(summary)
    }

    /// Drives a running run until it finishes, fails, aborts or suspends;
    /// the future reports its summary then. The run is in the registry from
    /// this call on (an abort right after it reaches the driver, which finds
    /// it in its inbox) until the future ends, a panic included.
    pub fn drive(
        &self,
        run_id: &str,
    ) -> Result<impl Future<Output = Result<RunSummary, AgentError>> + Send + 'static, AgentError> {
        let run = self.run_store(run_id)?;
        let prepared = lock(&self.inner.prepared).remove(run_id);
        let (control, inbox) = RunControl::new();
        lock(&self.inner.active).insert(run_id.to_owned(), control);
        let registered = Registered {
            agent: self.clone(),
            run_id: run_id.to_owned(),
        };
        Ok(async move {
            // Unregistered when this ends, however it ends.
            let registered = registered;
            let inner = &registered.agent.inner;
            let (config, callbacks) = (&inner.config, inner.callbacks.clone());
            let driver = match prepared {
                Some(Prepared {
                    state,
                    owner,
                    committed_here,
                }) => {
                    let driver = Driver::with_inbox(run, callbacks, state, inbox).holding_lease(owner, config.lease);
                    if committed_here {
                        driver.freshly_committed()
                    } else {
                        driver
                    }
                }
                None => {
                    let state = run::load_owned(&run, &run.run_id, &config.agent_id).await?;
                    Driver::with_inbox(run, callbacks, state, inbox).with_lease(config.lease)
                }
            };
            let state = driver.riding_out(config.outage).drive().await?;
            Ok(RunSummary::of(&state, None))
        })
    }

    /// Hands stream parts (JSON text, in order) of the model step in
    /// progress to the run's driver; false when it is not driven here.
    pub fn emit(&self, run_id: &str, parts: impl IntoIterator<Item = String>) -> bool {
        let active = lock(&self.inner.active);
        let Some(control) = active.get(run_id) else {
            return false;
        };
        parts.into_iter().all(|part| control.emit(part))
    }

    /// Stops a run wherever it is driven: here, by telling its driver (`None`:
    /// it publishes `abort` within moments); elsewhere, by the store (the
    /// future: aborted at once when suspended, asked of its driver wherever
    /// it is when running). A run that already ended
    /// is left as it is.
    pub fn abort(
        &self,
        run_id: &str,
        reason: Option<String>,
    ) -> Result<Option<impl Future<Output = Result<RunSummary, AgentError>> + Send + 'static>, AgentError> {
        if let Some(control) = lock(&self.inner.active).get(run_id) {
            control.abort(reason);
            return Ok(None);
        }
        let run = self.run_store(run_id)?;
        let agent_id = self.inner.config.agent_id.clone();
        let run_id = run_id.to_owned();
        Ok(Some(async move {
            let state = run::abort(&run, &run_id, &agent_id, reason.as_deref()).await?;
            Ok(RunSummary::of(&state, None))
        }))
    }

    /// A stored run of this agent, with whether a process holds its lease.
    pub async fn inspect(&self, run_id: &str) -> Result<RunSummary, AgentError> {
        let run = self.run_store(run_id)?;
        let state = run::load_owned(&run, run_id, &self.inner.config.agent_id).await?;
        let holder = run.store.lease_holder(&run.lease_key).await?;
        Ok(RunSummary::of(&state, Some(holder)))
    }

    /// What a reader of a run checks now and then, so that it never waits
    /// for ever on a run nobody drives: the run must still exist (else
    /// [`AgentError::RunNotFound`]), and a running run must be driven by
    /// some process. `undriven_since` (epoch ms) is what the reader's last
    /// check returned: since when the run has been running with no driver.
    /// Once that lasts longer than a driver rides an outage out and a lease
    /// more (a driver back from an outage takes its lease back at once; one
    /// alive renews it every third of it), the run is
    /// [`AgentError::Abandoned`]. Returns the new `undriven_since`.
    pub async fn check_driven(&self, run_id: &str, undriven_since: Option<u64>) -> Result<Option<u64>, AgentError> {
        let summary = self.inspect(run_id).await?;
        let driven_here = lock(&self.inner.active).contains_key(run_id);
        if summary.status != Status::Running.as_str() || summary.leased == Some(true) || driven_here {
            return Ok(None);
        }
        let now = epoch_ms();
        let since = undriven_since.unwrap_or(now);
        let config = &self.inner.config;
        let patience = (config.lease * 2).max(config.outage + config.lease);
        if Duration::from_millis(now.saturating_sub(since)) >= patience {
            return Err(AgentError::Abandoned(run_id.to_owned()));
        }
        Ok(Some(since))
    }

    /// This agent's running runs in the store, with whether a process holds
    /// each one's lease: those nobody holds lost their driver (recover them).
    pub async fn running_runs(&self) -> Result<Vec<RunSummary>, AgentError> {
        let (store, prefix) = (&self.inner.store, &self.inner.config.prefix);
        let start = format!("{{{prefix}{RUN_TOPIC_PREFIX}");
        let mut found = Vec::new();
        for key in store.keys_matching(&start, "}:run").await? {
            let Some(run_id) = key.strip_prefix(&start).and_then(|k| k.strip_suffix("}:run")) else {
                continue;
            };
            // Gone meanwhile, or another agent's: not ours to recover.
            match self.inspect(run_id).await {
                Ok(summary) if summary.status == Status::Running.as_str() => found.push(summary),
                Ok(_)
                | Err(
                    AgentError::RunNotFound(_) | AgentError::OwnedElsewhere { .. } | AgentError::CorruptState { .. },
                ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Deletes a run's state and events now.
    pub async fn cleanup(&self, run_id: &str) -> Result<(), AgentError> {
        let run = self.run_store(run_id)?;
        lock(&self.inner.prepared).remove(run_id);
        run.delete().await
    }

    /// Stops driving every run this process drives, without ending them
    /// (see [`RunControl::release`]): each drive ends with
    /// [`AgentError::Released`] once it has given its lease up. Returns how
    /// many there were.
    pub fn release_all(&self) -> usize {
        let active = lock(&self.inner.active);
        for control in active.values() {
            control.release();
        }
        active.len()
    }

    /// How many runs this process drives now.
    pub fn active_runs(&self) -> usize {
        lock(&self.inner.active).len()
    }
}
