//! Run state on Redis: a hash `{v: version, s: state}` next to the run's topic
//! stream, written together with the run's events by one script, so a
//! checkpoint and the events it covers land atomically (and in one Cluster
//! slot: both keys share the run topic's hash tag).

use std::time::Duration;

use super::log::appending_script;
use super::{eval, RedisCache};
use crate::cache::runs::{Commit, CommitOutcome, LeaseAction, LeaseChange, LeaseClaim, LeasedAppend, RunKeys};
use crate::cache::store::{RunRecords, StoreFuture};
use crate::error::CacheError;
use crate::json;
use crate::log::Retention;

/// A new run (expected version '') also needs an empty topic.
/// KEYS: state hash, topic stream, abort request, lease. ARGV: expected
/// version ('' = absent), new version, state text, TTL in ms (0 = keep until
/// deleted), MAXLEN (0 = none), lease action ('', 'take', 'release'), lease
/// owner, lease TTL in ms, '1' to announce the appends on the topic's sharded
/// channel (Cluster; see `cluster_tailer.rs`; checked against the ACL before
/// anything is written) else '', then the event bodies. Returns `{1, last id,
/// abort request}` or `{0, found version}`.
pub const RUN_COMMIT_SCRIPT: &str = appending_script!(
    r#"
local announce = ARGV[9] == '1'
local refused = announce_refused(KEYS[2], announce)
if refused then return refused end
local found = redis.call('HGET', KEYS[1], 'v')
if found == false then found = '' end
if found ~= ARGV[1] then return {0, found, ''} end
if found == '' and redis.call('EXISTS', KEYS[2]) == 1 then return {0, '', ''} end
local last = append(KEYS[2], tonumber(ARGV[5]), 10, 0, announce)
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
local ttl = tonumber(ARGV[4])
for i = 1, 2 do
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
end
if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
if ARGV[6] == 'take' then
  redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8])
elseif ARGV[6] == 'release' and redis.call('GET', KEYS[4]) == ARGV[7] then
  redis.call('DEL', KEYS[4])
end
return {1, last, redis.call('GET', KEYS[3]) or ''}
"#
);

/// KEYS: state hash, abort request. ARGV: the reason (JSON). The request
/// lives as long as the state. Returns 1, or 0 when there is no state.
pub const RUN_REQUEST_ABORT_SCRIPT: &str = r#"
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl > 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
else
  redis.call('SET', KEYS[2], ARGV[1])
end
return 1
"#;

/// KEYS: lease. ARGV: owner, TTL in ms. Extends the lease if the owner holds it.
pub const LEASE_RENEW_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: lease, state hash. ARGV: owner, TTL in ms, version. Takes the
/// lease back for its owner after it lapsed, if nobody else holds it and the
/// run's state still has the version the owner wrote last (no other driver
/// claimed it meanwhile, which would have written a version of its own).
pub const LEASE_RECLAIM_SCRIPT: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'v') ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

/// KEYS: lease. ARGV: owner. Deletes the lease if the owner holds it.
pub const LEASE_RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// KEYS: stream, lease. ARGV: owner, MAXLEN (0 = none), TTL in ms (0 =
/// none), '1' to announce the appends on the topic's sharded channel (Cluster;
/// checked against the ACL before anything is written) else '', then the
/// event bodies. Appends only while the owner holds the
/// lease; returns the last id, or 0 (nothing appended) when it does not.
pub const APPEND_LEASED_SCRIPT: &str = appending_script!(
    r#"
local announce = ARGV[4] == '1'
local refused = announce_refused(KEYS[1], announce)
if refused then return refused end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
return append(KEYS[1], tonumber(ARGV[2]), 5, tonumber(ARGV[3]), announce)
"#
);

impl RedisCache {
    /// [`Self::log_append_many`] if the append's owner holds its lease, in
    /// one script; `None` (nothing appended) if not.
    async fn log_append_many_leased(&self, append: LeasedAppend<'_>) -> Result<Option<Option<u64>>, CacheError> {
        let LeasedAppend {
            run,
            events: objects,
            retention,
            owner,
        } = append;
        let key = run.topic;
        if objects.is_empty() {
            return Ok(Some(None));
        }
        let k = self.key(key);
        let mut invocation = eval(APPEND_LEASED_SCRIPT, &[&k, &self.key(run.lease)]);
        invocation
            .arg(owner)
            .arg(retention.max_events.unwrap_or(0))
            .arg(self.ttl_ms(retention))
            .arg(self.announce_flag());
        let bodies = json::without_indices(objects)?;
        for body in &bodies {
            invocation.arg(&**body);
        }
        let reply: redis::Value = self.send(key, &k, invocation).await?;
        match reply {
            redis::Value::Int(0) => Ok(None),
            redis::Value::BulkString(id) => {
                let last = super::entry::index_of(&String::from_utf8_lossy(&id))?;
                self.offer_through(key, last, &bodies);
                Ok(Some(Some(last)))
            }
            other => Err(CacheError::InvalidValue(format!(
                "unexpected reply to a leased append: {other:?}"
            ))),
        }
    }

    /// Takes the lease at `key` for `owner` if nobody holds it (`SET NX PX`).
    async fn take_lease(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, CacheError> {
        let k = self.key(key);
        let set: Option<String> = self
            .send(
                key,
                &k,
                redis::cmd("SET")
                    .arg(&k)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .clone(),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Extends the lease at `key` if `owner` still holds it.
    async fn renew_lease(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, CacheError> {
        let k = self.key(key);
        let mut invocation = eval(LEASE_RENEW_SCRIPT, &[&k]);
        invocation.arg(owner).arg(ttl_ms.max(1));
        let renewed: i64 = self.send(key, &k, invocation).await?;
        Ok(renewed == 1)
    }

    /// Takes the lease at `key` back for `owner`: see [`LEASE_RECLAIM_SCRIPT`].
    async fn reclaim_lease(&self, claim: LeaseClaim<'_>, state_key: &str, version: u64) -> Result<bool, CacheError> {
        let k = self.key(claim.key);
        let mut invocation = eval(LEASE_RECLAIM_SCRIPT, &[&k, &self.key(state_key)]);
        invocation.arg(claim.owner).arg(millis(claim.ttl).max(1)).arg(version);
        let reclaimed: i64 = self.send(claim.key, &k, invocation).await?;
        Ok(reclaimed == 1)
    }

    /// Gives the lease at `key` up if `owner` holds it.
    async fn release_lease(&self, key: &str, owner: &str) -> Result<(), CacheError> {
        let k = self.key(key);
        let mut invocation = eval(LEASE_RELEASE_SCRIPT, &[&k]);
        invocation.arg(owner);
        let _: i64 = self.send(key, &k, invocation).await?;
        Ok(())
    }

    /// The holder of the lease at `key`, if any.
    async fn lease_owner(&self, key: &str) -> Result<Option<String>, CacheError> {
        let k = self.key(key);
        self.send(key, &k, redis::cmd("GET").arg(&k).clone()).await
    }

    /// Every cache key (as given to this cache, without its prefix) that
    /// starts with `prefix` and ends with `suffix` (SCAN, never KEYS).
    async fn scan_keys(&self, prefix: &str, suffix: &str) -> Result<Vec<String>, CacheError> {
        let physical_prefix = self.key(prefix);
        let pattern = format!(
            "{}*{}",
            super::glob_escape(&physical_prefix),
            super::glob_escape(suffix)
        );
        let cache_prefix = self.key_prefix();
        let mut found = Vec::new();
        let mut scan = self.scan(&pattern).await?;
        while let Some(keys) = scan.next_page().await? {
            found.extend(
                keys.into_iter()
                    .filter_map(|k| k.strip_prefix(cache_prefix).map(str::to_owned)),
            );
        }
        Ok(found)
    }

    pub(super) fn ttl_ms(&self, retention: &Retention) -> u64 {
        retention
            .ttl
            .map_or(self.inner.ttl_ms, |ttl| ttl.map_or(0, |d| d.as_millis().max(1) as u64))
    }

    /// A run's atomic write (see [`Commit`]): one script, one round trip.
    async fn run_commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, CacheError> {
        let run = commit.run;
        let state_key = self.key(run.state);
        let mut invocation = eval(
            RUN_COMMIT_SCRIPT,
            &[
                &state_key,
                &self.key(run.topic),
                &self.key(run.abort),
                &self.key(run.lease),
            ],
        );
        invocation
            .arg(commit.expected.map_or_else(String::new, |v| v.to_string()))
            .arg(commit.version)
            .arg(commit.state)
            .arg(self.ttl_ms(&commit.retention))
            .arg(commit.retention.max_events.unwrap_or(0));
        match commit.lease {
            Some(LeaseChange {
                owner,
                action: LeaseAction::Take(ttl),
                ..
            }) => invocation.arg("take").arg(owner).arg(ttl.as_millis().max(1) as u64),
            Some(LeaseChange {
                owner,
                action: LeaseAction::Release,
                ..
            }) => invocation.arg("release").arg(owner).arg(0),
            None => invocation.arg("").arg("").arg(0),
        };
        invocation.arg(self.announce_flag());
        let bodies = json::without_indices(commit.events)?;
        for body in &bodies {
            invocation.arg(&**body);
        }
        let (done, value, abort): (i64, String, Option<String>) = self.send(run.topic, &state_key, invocation).await?;
        if done == 0 {
            return Ok(CommitOutcome::Stale {
                found: value.parse().ok(),
            });
        }
        let last_index = if value.is_empty() {
            None
        } else {
            Some(super::entry::index_of(&value)?)
        };
        if let Some(last) = last_index.filter(|_| !bodies.is_empty()) {
            self.offer_through(run.topic, last, &bodies);
        }
        Ok(CommitOutcome::Done {
            last_index,
            abort: abort.filter(|a| !a.is_empty()),
        })
    }

    /// The stored state of a run, `None` when absent.
    async fn run_load(&self, run: RunKeys<'_>) -> Result<Option<String>, CacheError> {
        let k = self.key(run.state);
        self.send(run.state, &k, redis::cmd("HGET").arg(&k).arg("s").clone())
            .await
    }

    /// Deletes a run: its state, topic, abort request and lease (one slot).
    async fn run_delete(&self, run: RunKeys<'_>) -> Result<(), CacheError> {
        let keys = [run.state, run.topic, run.abort, run.lease].map(|k| self.key(k));
        self.send(run.state, &keys[0], redis::cmd("DEL").arg(&keys).clone())
            .await
    }

    /// Records an abort request for a run, if its state exists; false if not.
    async fn run_request_abort(&self, run: RunKeys<'_>, reason_json: &str) -> Result<bool, CacheError> {
        let k = self.key(run.state);
        let mut invocation = eval(RUN_REQUEST_ABORT_SCRIPT, &[&k, &self.key(run.abort)]);
        invocation.arg(reason_json);
        let set: i64 = self.send(run.state, &k, invocation).await?;
        Ok(set == 1)
    }

    /// Appends events in order; returns the last index. An object that is
    /// not a JSON object fails the call before anything is stored; a failed
    /// append fails it too.
    pub(super) async fn log_append_many(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
    ) -> Result<Option<u64>, CacheError> {
        json::without_indices(objects)?;
        let appends: Vec<_> = objects
            .iter()
            .map(|object| self.log_append(key, object, retention))
            .collect();
        let mut last = None;
        for append in appends {
            last = Some(append.await?);
        }
        Ok(last)
    }
}

impl RunRecords for RedisCache {
    fn commit<'a>(&'a self, commit: &'a Commit<'a>) -> StoreFuture<'a, CommitOutcome> {
        Box::pin(self.run_commit(commit))
    }

    fn load_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.run_load(run))
    }

    fn delete_run<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, ()> {
        Box::pin(self.run_delete(run))
    }

    fn request_abort<'a>(&'a self, run: RunKeys<'a>, reason_json: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.run_request_abort(run, reason_json))
    }

    fn abort_requested<'a>(&'a self, run: RunKeys<'a>) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.get(run.abort))
    }

    fn append_many_leased<'a>(&'a self, append: LeasedAppend<'a>) -> StoreFuture<'a, Option<Option<u64>>> {
        Box::pin(self.log_append_many_leased(append))
    }

    fn lease_acquire<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool> {
        Box::pin(self.take_lease(claim.key, claim.owner, millis(claim.ttl)))
    }

    fn lease_renew<'a>(&'a self, claim: LeaseClaim<'a>) -> StoreFuture<'a, bool> {
        Box::pin(self.renew_lease(claim.key, claim.owner, millis(claim.ttl)))
    }

    fn lease_reclaim<'a>(&'a self, claim: LeaseClaim<'a>, state_key: &'a str, version: u64) -> StoreFuture<'a, bool> {
        Box::pin(self.reclaim_lease(claim, state_key, version))
    }

    fn lease_release<'a>(&'a self, key: &'a str, owner: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.release_lease(key, owner))
    }

    fn lease_holder<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(self.lease_owner(key))
    }

    fn keys_matching<'a>(&'a self, prefix: &'a str, suffix: &'a str) -> StoreFuture<'a, Vec<String>> {
        Box::pin(self.scan_keys(prefix, suffix))
    }
}

/// A lease's TTL as Redis takes it: whole milliseconds, at least one.
fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}
