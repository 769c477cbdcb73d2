//! How a run's writer rides out a store that is briefly away (a Redis
//! restart, failover, stall or reconnect): the one retry policy of durable
//! runs.
//!
//! A write that failed because the store did not answer is tried again,
//! after 50, 100 and 200 ms and then every 250 ms (`wire::RETRY_*`: readers
//! in JS wait the same way), for as long as the
//! outage's budget lasts, counted from the first failure. A driver's budget
//! is its lease: no other process can take the run over before the lease
//! lapses, so until then waiting is always right, and after it the driver
//! takes its lease back if nobody took the run meanwhile (see `control.rs`).
//! Each attempt is itself bounded by the cache's timeouts.

use std::time::Duration;

use tokio::time::Instant;

use crate::error::CacheError;
use crate::wire;

const MAX_DELAY: Duration = Duration::from_millis(wire::RETRY_MAX_DELAY_MS);
const FIRST_DELAY: Duration = Duration::from_millis(wire::RETRY_FIRST_DELAY_MS);

/// What a one-shot write outside a driver (creating or resuming a run) rides
/// out: about what the store's own reconnect takes.
pub const CALL_RIDE_OUT: Duration = Duration::from_millis(1_500);

/// One outage, as one writer sees it.
#[derive(Debug)]
pub struct Outage {
    budget: Duration,
    started: Option<Instant>,
    delay: Duration,
}

impl Outage {
    /// An outage that may last `budget` before the writer gives up.
    pub fn new(budget: Duration) -> Self {
        Outage {
            budget,
            started: None,
            delay: FIRST_DELAY,
        }
    }

    /// After an attempt failed with `error`: waits, and says whether to try
    /// again. False for an error that is not the store being away, and once
    /// the budget is spent.
    pub async fn again(&mut self, error: &CacheError) -> bool {
        if !transient(error) {
            return false;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let left = self.budget.saturating_sub(started.elapsed());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.delay.min(left)).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        true
    }

    /// Whether an attempt failed in a way that may have applied it (a reply
    /// that never came).
    pub fn began(&self) -> bool {
        self.started.is_some()
    }

    /// How long the outage has lasted, as this writer saw it.
    pub fn lasted(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |started| started.elapsed())
    }
}

/// A store that is briefly away (see `wire::TRANSIENT_CODES`).
pub fn transient(error: &CacheError) -> bool {
    wire::TRANSIENT_CODES.contains(&error.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> CacheError {
        CacheError::Timeout {
            addr: "x".into(),
            timeout: Duration::from_millis(1),
            sent: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_budget_is_spent_then_gives_up() {
        let mut outage = Outage::new(Duration::from_millis(1_000));
        let start = tokio::time::Instant::now();
        let mut attempts = 0;
        while outage.again(&unavailable()).await {
            attempts += 1;
        }
        // 50 + 100 + 200 + 250 + 250 + 150 (what was left) = 1 s.
        assert_eq!(attempts, 6);
        assert_eq!(start.elapsed(), Duration::from_millis(1_000));
        assert!(outage.began());
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut outage = Outage::new(Duration::from_secs(10));
        assert!(!outage.again(&CacheError::Closed).await);
        assert!(!outage.began());
    }
}
