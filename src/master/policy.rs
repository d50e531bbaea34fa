//! The numbers the state machine decides with, taken from the config once, plus the backoff
//! curve. Kept apart so tests can shrink every timeout.

use std::time::Duration;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Workers wanted.
    pub target: u32,
    /// Extra workers allowed while replacing (new ones booting before old ones retire).
    pub max_surge: u32,
    /// Consecutive boot failures, before any worker was ever ready (or during a reload), after
    /// which the master gives up (or rolls the reload back).
    pub startup_attempts: u32,
    /// No heartbeat for this long: liveness failure.
    pub timeout: Duration,
    /// A stopping worker gets SIGKILL after this long.
    pub graceful_timeout: Duration,
    /// A booting worker gets killed after this long.
    pub boot_timeout: Duration,
    /// How long a quick stop may take before SIGKILL.
    pub quick_timeout: Duration,
    /// How long a worker has to write its traceback after SIGUSR2, before SIGKILL.
    pub dump_grace: Duration,
    /// First backoff delay after a boot failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
}

/// Default surge: one extra worker at a time keeps memory bounded and capacity never dips.
pub const DEFAULT_MAX_SURGE: u32 = 1;

impl Policy {
    pub fn from_config(config: &Config, target: u32) -> Policy {
        Policy {
            target: target.max(1),
            max_surge: DEFAULT_MAX_SURGE,
            startup_attempts: config.startup_attempts.max(1),
            timeout: config.timeout,
            graceful_timeout: config.graceful_timeout,
            boot_timeout: config.boot_timeout,
            quick_timeout: config.graceful_timeout.min(Duration::from_secs(5)),
            dump_grace: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }

    /// Delay before the next spawn after `failures` consecutive boot failures (>= 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut p = test_policy();
        p.backoff_base = Duration::from_secs(1);
        p.backoff_max = Duration::from_secs(60);
        let got: Vec<u64> = (1..=8).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.backoff(1000), Duration::from_secs(60));
    }

    pub(crate) fn test_policy() -> Policy {
        Policy {
            target: 2,
            max_surge: 1,
            startup_attempts: 3,
            timeout: Duration::from_secs(30),
            graceful_timeout: Duration::from_secs(10),
            boot_timeout: Duration::from_secs(20),
            quick_timeout: Duration::from_secs(5),
            dump_grace: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
pub(crate) use tests::test_policy;
