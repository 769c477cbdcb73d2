//! Where a run lives in a store, and its state transitions that happen
//! outside the driver: creating, loading, resuming, aborting while suspended,
//! deleting.

use serde_json::json;
use std::time::Duration;

use serde_json::value::RawValue;

use super::error::AgentError;
use super::outage::{Outage, CALL_RIDE_OUT};
use super::parts::{iso_now, EventWriter};
use super::state::{Decision, Phase, RunState, Status, Usage};
use crate::cache::runs::{Commit, CommitOutcome, LeaseAction, LeaseChange, LeaseClaim, LeasedAppend, RunKeys};
use crate::cache::store::Store;
use crate::error::CacheError;
use crate::log::Retention;
use crate::wire::run_topic;

/// A run's place in a store: its topic log and, beside it, its state. On Redis
/// the state key carries the topic key as its hash tag, so one script can
/// write both (and a Cluster keeps them in one slot).
#[derive(Clone)]
pub struct RunStore {
    pub store: Store,
    pub run_id: String,
    pub log_key: String,
    pub state_key: String,
    /// Where another process asks the run's driver to abort.
    pub abort_key: String,
    /// Held by the process driving the run, renewed while it does: a run
    /// whose lease lapsed lost its driver and may be recovered.
    pub lease_key: String,
    pub retention: Retention,
}

impl RunStore {
    /// `prefix`: the pubsub key prefix (the binding's default: `durable-agent:`).
    pub fn new(store: Store, prefix: &str, run_id: &str, retention: Retention) -> Result<Self, AgentError> {
        validate_run_id(run_id)?;
        let log_key = format!("{prefix}{}", run_topic(run_id));
        Ok(RunStore {
            run_id: run_id.to_owned(),
            state_key: format!("{{{log_key}}}:run"),
            abort_key: format!("{{{log_key}}}:abort"),
            lease_key: format!("{{{log_key}}}:lease"),
            log_key,
            store,
            retention,
        })
    }

    /// The run's keys, as the store takes them.
    pub fn keys(&self) -> RunKeys<'_> {
        RunKeys {
            topic: &self.log_key,
            state: &self.state_key,
            abort: &self.abort_key,
            lease: &self.lease_key,
        }
    }

    /// Reads the run's state.
    pub async fn load(&self, run_id: &str) -> Result<RunState, AgentError> {
        let text = self
            .store
            .load_run(self.keys())
            .await?
            .ok_or_else(|| AgentError::RunNotFound(run_id.to_owned()))?;
        serde_json::from_str(&text).map_err(|e| AgentError::CorruptState {
            run_id: run_id.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Writes `state` (whose `version` is the new one) and `events`, if the
    /// stored state still has `expected`. A commit that timed out but landed
    /// counts as done when it is retried (the stored state is then ours).
    /// Returns the reason of an abort someone requested (see
    /// [`Self::request_abort`]), if any: `Some(None)` without a reason.
    pub async fn commit(
        &self,
        state: &RunState,
        expected: Option<u64>,
        events: &[String],
    ) -> Result<Option<Option<String>>, AgentError> {
        let mut outage = Outage::new(CALL_RIDE_OUT);
        self.commit_leasing(state, expected, events, None, &mut outage).await
    }

    /// [`Self::commit`] that also takes or gives up the run's lease for
    /// `owner`, in the same atomic step, riding a store that is away out for
    /// as long as `outage` allows (its error then is the store's).
    pub async fn commit_leasing(
        &self,
        state: &RunState,
        expected: Option<u64>,
        events: &[String],
        lease: Option<(&str, LeaseAction)>,
        outage: &mut Outage,
    ) -> Result<Option<Option<String>>, AgentError> {
        let text = serde_json::to_string(state).expect("run state serialises");
        let retention = if state.status.is_terminal() {
            self.retention
        } else {
            self.kept()
        };
        let commit = Commit {
            run: self.keys(),
            expected,
            version: state.version,
            state: &text,
            events,
            retention,
            lease: lease.map(|(owner, action)| LeaseChange { owner, action }),
        };
        loop {
            match self.store.commit(&commit).await {
                Ok(CommitOutcome::Done { abort, .. }) => return Ok(abort.map(|a| reason_of(&a))),
                // An earlier attempt that failed may have landed: ours only if
                // the stored state is exactly ours (another writer from the
                // same checkpoint writes the same version number).
                Ok(CommitOutcome::Stale { found })
                    if outage.began()
                        && found == Some(state.version)
                        && self.load_text(outage).await?.as_deref() == Some(text.as_str()) =>
                {
                    return Ok(None)
                }
                Ok(CommitOutcome::Stale { found: None }) if expected.is_some() => {
                    return Err(AgentError::RunNotFound(state.run_id.clone()))
                }
                Ok(CommitOutcome::Stale { .. }) if expected.is_none() => {
                    return Err(AgentError::RunExists(state.run_id.clone()))
                }
                Ok(CommitOutcome::Stale { .. }) => return Err(AgentError::Conflict(state.run_id.clone())),
                Err(e) => {
                    if !outage.again(&e).await {
                        return Err(e.into());
                    }
                    tracing::warn!(run = %state.run_id, code = e.code(), "checkpoint failed; retrying");
                }
            }
        }
    }

    /// Takes the run's lease for `owner` if nobody holds it, riding `outage`
    /// out; false when a process holds it.
    pub async fn take_lease(&self, owner: &str, ttl: Duration, outage: &mut Outage) -> Result<bool, CacheError> {
        loop {
            let claim = LeaseClaim {
                key: &self.lease_key,
                owner,
                ttl,
            };
            match self.store.lease_acquire(claim).await {
                Ok(taken) => return Ok(taken),
                Err(e) if outage.again(&e).await => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The stored state's text, riding the outage out.
    async fn load_text(&self, outage: &mut Outage) -> Result<Option<String>, AgentError> {
        loop {
            match self.store.load_run(self.keys()).await {
                Ok(text) => return Ok(text),
                Err(e) if outage.again(&e).await => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends events outside a checkpoint (a model step's stream parts);
    /// returns the index after the last.
    /// `lease_owner`: append only while this owner holds the run's lease
    /// (a driver that lost it must not add to the log of the one that took
    /// over); refused with [`AgentError::LeaseLost`] otherwise.
    pub async fn append(&self, events: &[String], lease_owner: Option<&str>) -> Result<Option<u64>, AgentError> {
        let appended = match lease_owner {
            None => self.store.append_many(&self.log_key, events, &self.kept()).await?,
            Some(owner) => self
                .store
                .append_many_leased(LeasedAppend {
                    run: self.keys(),
                    events,
                    retention: &self.kept(),
                    owner,
                })
                .await?
                .ok_or_else(|| AgentError::LeaseLost(self.run_id.clone()))?,
        };
        Ok(appended.map(|last| last + 1))
    }

    /// A run that has not ended (running, or suspended) is kept until it ends
    /// or is cleaned up, however long a tool call, an approval or a recovery
    /// takes: its keys get the TTL only with its last checkpoint.
    fn kept(&self) -> Retention {
        Retention {
            ttl: Some(None),
            ..self.retention
        }
    }

    /// Deletes the run's state and events.
    pub async fn delete(&self) -> Result<(), AgentError> {
        Ok(self.store.delete_run(self.keys()).await?)
    }

    /// Asks whichever process drives the run to abort it; false when the run
    /// does not exist.
    pub async fn request_abort(&self, reason: Option<&str>) -> Result<bool, AgentError> {
        let reason = serde_json::to_string(&reason).expect("strings serialise");
        Ok(self.store.request_abort(self.keys(), &reason).await?)
    }

    /// A requested abort: `Some(reason)`.
    pub async fn abort_requested(&self) -> Result<Option<Option<String>>, AgentError> {
        Ok(self.store.abort_requested(self.keys()).await?.map(|a| reason_of(&a)))
    }
}

/// An abort request's reason: a JSON string, or null.
fn reason_of(json: &str) -> Option<String> {
    serde_json::from_str::<Option<String>>(json).ok().flatten()
}

/// Run ids become keys: printable, no hash-tag braces, bounded.
pub fn validate_run_id(run_id: &str) -> Result<(), AgentError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 200
        && run_id
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '{' && c != '}');
    if ok {
        Ok(())
    } else {
        Err(AgentError::InvalidArg(format!(
            "runId must be 1-200 printable characters without spaces or braces, got {run_id:?}"
        )))
    }
}

/// What a new run starts from.
pub struct NewRun {
    pub run_id: String,
    pub agent_id: String,
    /// The prompt: language-model messages (system, user, ...), JSON.
    pub messages: Vec<Box<RawValue>>,
    pub max_steps: u32,
    /// The caller's options, handed back to every callback.
    pub options: Box<RawValue>,
}

/// Creates the run (it must not exist) and publishes its `start` part;
/// `lease`: takes the run's lease for its owner (who drives it next) in the
/// same step.
pub async fn create(run: &RunStore, new: NewRun, lease: Option<(&str, Duration)>) -> Result<RunState, AgentError> {
    if new.max_steps == 0 {
        return Err(AgentError::InvalidArg("maxSteps must be at least 1".into()));
    }
    let now = iso_now();
    let mut state = RunState {
        version: 1,
        run_id: new.run_id,
        agent_id: new.agent_id,
        status: Status::Running,
        phase: Phase::Model,
        step: 0,
        max_steps: new.max_steps,
        messages: new.messages,
        pending: Vec::new(),
        tool_results: Vec::new(),
        step_finish: None,
        finish_reason: None,
        usage: Usage::default(),
        next_event: 0,
        options: new.options,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut writer = EventWriter::new(&state.run_id, 0);
    let events = [writer.chunk(&json!({ "type": "start" }))];
    // A new run's topic is empty (the commit refuses one whose topic exists).
    state.next_event = events.len() as u64;
    let lease = lease.map(|(owner, ttl)| (owner, LeaseAction::Take(ttl)));
    run.commit_leasing(&state, None, &events, lease, &mut Outage::new(CALL_RIDE_OUT))
        .await?;
    Ok(state)
}

/// Loads a run for `agent_id`, checking it belongs to that agent.
pub async fn load_owned(run: &RunStore, run_id: &str, agent_id: &str) -> Result<RunState, AgentError> {
    let state = run.load(run_id).await?;
    if state.agent_id != agent_id {
        return Err(AgentError::OwnedElsewhere {
            run_id: run_id.to_owned(),
            owner: state.agent_id,
            agent: agent_id.to_owned(),
        });
    }
    Ok(state)
}

/// Loads a run of `agent_id` that must be suspended.
async fn load_suspended(run: &RunStore, run_id: &str, agent_id: &str) -> Result<RunState, AgentError> {
    let state = load_owned(run, run_id, agent_id).await?;
    if state.status != Status::Suspended {
        return Err(AgentError::NotSuspended {
            run_id: run_id.to_owned(),
            status: state.status.as_str(),
        });
    }
    Ok(state)
}

/// Records approval decisions for a suspended run. `tool_call_id: None`
/// decides every call still waiting. Once no call waits, the run is running
/// again (and must be driven); until then it stays suspended. `lease`: takes
/// the run's lease for its owner in the same step when the run is running
/// again (who drives it next).
pub async fn resume(
    run: &RunStore,
    run_id: &str,
    agent_id: &str,
    tool_call_id: Option<&str>,
    decision: Decision,
    lease: Option<(&str, Duration)>,
) -> Result<RunState, AgentError> {
    let mut state = load_suspended(run, run_id, agent_id).await?;
    let mut decided = 0;
    for call in state
        .pending
        .iter_mut()
        .filter(|c| c.needs_approval && c.decision.is_none())
    {
        if tool_call_id.is_none_or(|id| id == call.tool_call_id) {
            call.decision = Some(decision.clone());
            decided += 1;
        }
    }
    if decided == 0 {
        return Err(AgentError::UnknownToolCall {
            run_id: run_id.to_owned(),
            tool_call_id: tool_call_id.unwrap_or("*").to_owned(),
        });
    }
    if state.awaiting_approval().next().is_none() {
        state.status = Status::Running;
    }
    let expected = state.version;
    state.version += 1;
    state.updated_at = iso_now();
    let lease = lease
        .filter(|_| state.status == Status::Running)
        .map(|(owner, ttl)| (owner, LeaseAction::Take(ttl)));
    run.commit_leasing(&state, Some(expected), &[], lease, &mut Outage::new(CALL_RIDE_OUT))
        .await?;
    Ok(state)
}

/// Aborts a run that no driver holds (a suspended one): publishes `abort`.
pub async fn abort_suspended(
    run: &RunStore,
    run_id: &str,
    agent_id: &str,
    reason: Option<&str>,
) -> Result<RunState, AgentError> {
    let mut state = load_suspended(run, run_id, agent_id).await?;
    let mut writer = EventWriter::new(run_id, state.version);
    let events = [writer.chunk(&abort_part(reason))];
    let expected = state.version;
    state.version += 1;
    state.status = Status::Aborted;
    state.next_event += events.len() as u64;
    state.updated_at = iso_now();
    run.commit(&state, Some(expected), &events).await?;
    Ok(state)
}

/// Aborts a run that no driver in this process holds: a suspended one at once;
/// a running one by asking its driver (wherever it is), which publishes
/// `abort` within moments. A run that already ended is left as it is.
pub async fn abort(run: &RunStore, run_id: &str, agent_id: &str, reason: Option<&str>) -> Result<RunState, AgentError> {
    let state = load_owned(run, run_id, agent_id).await?;
    match state.status {
        Status::Suspended => match abort_suspended(run, run_id, agent_id, reason).await {
            // Resumed meanwhile: now a driver holds it.
            Err(AgentError::NotSuspended { .. } | AgentError::Conflict(_)) => {
                run.request_abort(reason).await?;
                Ok(state)
            }
            other => other,
        },
        Status::Running => {
            if !run.request_abort(reason).await? {
                return Err(AgentError::RunNotFound(run_id.to_owned()));
            }
            Ok(state)
        }
        Status::Finished | Status::Failed | Status::Aborted => Ok(state),
    }
}

pub(crate) fn abort_part(reason: Option<&str>) -> serde_json::Value {
    match reason {
        Some(reason) => json!({ "type": "abort", "reason": reason }),
        None => json!({ "type": "abort" }),
    }
}
