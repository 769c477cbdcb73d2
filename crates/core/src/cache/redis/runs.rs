//! Run state on Redis: a hash `{v: version, s: state}` next to the run's topic
//! stream, written together with the run's events by one script, so a
//! checkpoint and the events it covers land atomically (and in one Cluster
//! slot: both keys share the run topic's hash tag).

use super::log::{Appending, TopicAppends};
use super::RedisCache;
use crate::cache::runs::{Commit, CommitOutcome, LeaseAction, LeaseChange};
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
pub const RUN_COMMIT_SCRIPT: &str = r#"
if ARGV[9] == '1' and not redis.acl_check_cmd('SPUBLISH', KEYS[2], '') then
  return redis.error_reply('NOPERM this user may not publish to the channel ' .. KEYS[2])
end
local found = redis.call('HGET', KEYS[1], 'v')
if found == false then found = '' end
if found ~= ARGV[1] then return {0, found, ''} end
if found == '' and redis.call('EXISTS', KEYS[2]) == 1 then return {0, '', ''} end
local last = ''
local maxlen = tonumber(ARGV[5])
for i = 10, #ARGV do
  if maxlen > 0 then
    last = redis.call('XADD', KEYS[2], 'MAXLEN', '=', maxlen, '0-*', 'e', ARGV[i])
  else
    last = redis.call('XADD', KEYS[2], '0-*', 'e', ARGV[i])
  end
end
if ARGV[9] == '1' and last ~= '' then redis.call('SPUBLISH', KEYS[2], last) end
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
"#;

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
pub const APPEND_LEASED_SCRIPT: &str = r#"
if ARGV[4] == '1' and not redis.acl_check_cmd('SPUBLISH', KEYS[1], '') then
  return redis.error_reply('NOPERM this user may not publish to the channel ' .. KEYS[1])
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local last = ''
local maxlen = tonumber(ARGV[2])
for i = 5, #ARGV do
  if maxlen > 0 then
    last = redis.call('XADD', KEYS[1], 'MAXLEN', '=', maxlen, '0-*', 'e', ARGV[i])
  else
    last = redis.call('XADD', KEYS[1], '0-*', 'e', ARGV[i])
  end
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
if ARGV[4] == '1' and last ~= '' then redis.call('SPUBLISH', KEYS[1], last) end
return last
"#;

impl RedisCache {
    /// [`Self::log_append_many`] if `owner` holds the lease at `lease_key`, in
    /// one script; `None` (nothing appended) if not.
    pub async fn log_append_many_leased(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
        lease_key: &str,
        owner: &str,
    ) -> Result<Option<Option<u64>>, CacheError> {
        if objects.is_empty() {
            return Ok(Some(None));
        }
        let mut invocation = self.inner.append_leased.prepare_invoke();
        invocation
            .key(self.key(key))
            .key(self.key(lease_key))
            .arg(owner)
            .arg(retention.max_events.unwrap_or(0))
            .arg(self.ttl_ms(retention))
            .arg(self.announce_flag());
        let bodies = json::without_indices(objects)?;
        for body in &bodies {
            invocation.arg(&**body);
        }
        let mut conn = self.connection()?;
        let reply: redis::Value = self
            .deadline(key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        match reply {
            redis::Value::Int(0) => Ok(None),
            redis::Value::BulkString(id) => {
                let last = super::log::index_of(&String::from_utf8_lossy(&id))?;
                self.offer_through(key, last, &bodies);
                Ok(Some(Some(last)))
            }
            other => Err(CacheError::InvalidValue(format!(
                "unexpected reply to a leased append: {other:?}"
            ))),
        }
    }

    /// Takes the lease at `key` for `owner` if nobody holds it (`SET NX PX`).
    pub async fn lease_acquire(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, CacheError> {
        let set: Option<String> = self
            .run(
                key,
                redis::cmd("SET")
                    .arg(self.key(key))
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1)),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Extends the lease at `key` if `owner` still holds it.
    pub async fn lease_renew(&self, key: &str, owner: &str, ttl_ms: u64) -> Result<bool, CacheError> {
        let mut invocation = self.inner.lease_renew.prepare_invoke();
        invocation.key(self.key(key)).arg(owner).arg(ttl_ms.max(1));
        let mut conn = self.connection()?;
        let renewed: i64 = self
            .deadline(key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease at `key` up if `owner` holds it.
    pub async fn lease_release(&self, key: &str, owner: &str) -> Result<(), CacheError> {
        let mut invocation = self.inner.lease_release.prepare_invoke();
        invocation.key(self.key(key)).arg(owner);
        let mut conn = self.connection()?;
        let _: i64 = self
            .deadline(key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(())
    }

    /// The holder of the lease at `key`, if any.
    pub async fn lease_holder(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.run(key, redis::cmd("GET").arg(self.key(key))).await
    }

    /// Every cache key (as given to this cache, without its prefix) that
    /// starts with `prefix` and ends with `suffix` (SCAN, never KEYS).
    pub async fn keys_matching(&self, prefix: &str, suffix: &str) -> Result<Vec<String>, CacheError> {
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
    pub async fn run_commit(&self, commit: &Commit<'_>) -> Result<CommitOutcome, CacheError> {
        let mut invocation = self.inner.run_commit.prepare_invoke();
        invocation
            .key(self.key(commit.state_key))
            .key(self.key(commit.log_key))
            .key(self.key(commit.abort_key))
            .key(self.key(commit.lease.map_or(commit.state_key, |l| l.key)))
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
        let mut conn = self.connection()?;
        let (done, value, abort): (i64, String, Option<String>) = self
            .deadline(commit.log_key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        if done == 0 {
            return Ok(CommitOutcome::Stale {
                found: value.parse().ok(),
            });
        }
        let last_index = if value.is_empty() {
            None
        } else {
            Some(super::log::index_of(&value)?)
        };
        if let Some(last) = last_index.filter(|_| !bodies.is_empty()) {
            self.offer_through(commit.log_key, last, &bodies);
        }
        Ok(CommitOutcome::Done {
            last_index,
            abort: abort.filter(|a| !a.is_empty()),
        })
    }

    /// The stored state of a run, `None` when absent.
    pub async fn run_load(&self, state_key: &str) -> Result<Option<String>, CacheError> {
        self.run(state_key, redis::cmd("HGET").arg(self.key(state_key)).arg("s"))
            .await
    }

    /// Deletes a run: its state, its topic, and an abort request.
    pub async fn run_delete(&self, keys: &[&str]) -> Result<(), CacheError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.run(keys.first().map_or("", |k| k.as_str()), redis::cmd("DEL").arg(&keys))
            .await
    }

    /// Records an abort request for a run, if its state exists; false if not.
    pub async fn run_request_abort(
        &self,
        state_key: &str,
        abort_key: &str,
        reason_json: &str,
    ) -> Result<bool, CacheError> {
        let mut invocation = self.inner.run_request_abort.prepare_invoke();
        invocation
            .key(self.key(state_key))
            .key(self.key(abort_key))
            .arg(reason_json);
        let mut conn = self.connection()?;
        let set: i64 = self
            .deadline(state_key, async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(set == 1)
    }

    /// Appends events in order, in one round trip; returns the last index.
    /// An object that is not a JSON object fails the call before anything is
    /// stored; a failed append fails it too.
    pub async fn log_append_many(
        &self,
        key: &str,
        objects: &[String],
        retention: &Retention,
    ) -> Result<Option<u64>, CacheError> {
        if objects.is_empty() {
            return Ok(None);
        }
        let events = json::without_indices(objects)?
            .into_iter()
            .enumerate()
            .map(|(position, body)| Appending { position, body })
            .collect();
        let mut outcomes: Vec<Option<Result<u64, CacheError>>> = objects.iter().map(|_| None).collect();
        self.append_topics(&[TopicAppends { key, events }], retention, &mut outcomes)
            .await;
        let mut last = None;
        for outcome in outcomes {
            last = Some(outcome.expect("every append has an outcome")?);
        }
        Ok(last)
    }
}
