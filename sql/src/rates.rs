//! Per-role statement rates: `ALTER ROLE name SET vecraft.statement_rate = n` lets the role's
//! sessions start at most `n` statements a second together on each gateway (a simple query
//! or an Execute counts one), with a burst of `n`; past it a statement is refused with 53400
//! and the session goes on. governor's GCRA limiter keeps each role's budget; a role's limiter
//! is made again when its rate changes.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use pgwire::error::PgWireError;

use crate::errors::user_error;

/// The setting ALTER ROLE … SET takes.
pub const SETTING: &str = "vecraft.statement_rate";

/// The gateway's limiters, by role.
#[derive(Debug, Default)]
pub struct StatementRates {
    limiters: Mutex<HashMap<String, (NonZeroU32, Arc<DefaultDirectRateLimiter>)>>,
}

impl StatementRates {
    /// Takes one statement of `role`'s budget of `rate` a second (none: no limit), or 53400.
    pub fn admit(&self, role: &str, rate: Option<u32>) -> Result<(), PgWireError> {
        let Some(rate) = rate.and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let limiter = {
            let mut limiters = self.limiters.lock();
            let entry = limiters
                .entry(role.to_string())
                .or_insert_with(|| limiter(rate));
            if entry.0 != rate {
                *entry = limiter(rate);
            }
            Arc::clone(&entry.1)
        };
        limiter.check().map_err(|_| {
            let message = format!(
                "statement rate limit exceeded for role \"{role}\": {rate} statements per second"
            );
            user_error("53400", message)
        })
    }
}

fn limiter(rate: NonZeroU32) -> (NonZeroU32, Arc<DefaultDirectRateLimiter>) {
    (rate, Arc::new(RateLimiter::direct(Quota::per_second(rate))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_past_the_rate_is_refused_and_other_roles_go_on() {
        let rates = StatementRates::default();
        let admitted = (0..20)
            .filter(|_| rates.admit("alice", Some(5)).is_ok())
            .count();
        assert_eq!(admitted, 5, "a burst of one second's budget");
        assert!(rates.admit("bob", Some(5)).is_ok(), "each role has its own");
        assert!(rates.admit("alice", None).is_ok(), "no rate, no limit");
        assert!(
            rates.admit("alice", Some(100)).is_ok(),
            "a new rate, a new budget"
        );
    }
}
