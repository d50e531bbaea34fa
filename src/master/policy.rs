//! The numbers the state machine decides with, taken from the config once, plus the backoff
//! curve. Kept apart so tests can shrink every timeout.

use std::time::Duration;

use crate::config::{defaults, Config};

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
    /// A graceful stop request first keeps serving this long, reporting not-ready.
    pub drain_before_stop: Duration,
    /// How long a quick stop may take before SIGKILL.
    pub quick_timeout: Duration,
    /// How long a worker has to write its traceback after SIGUSR2, before SIGKILL.
    pub dump_grace: Duration,
    /// First backoff delay after a boot failure; doubles per consecutive failure.
    pub backoff_base: Duration,
    /// Longest backoff delay.
    pub backoff_max: Duration,
    /// Recycling limits.
    pub recycle: Recycle,
    /// Workers booting at once, at most (first start, scale-up, replacements alike).
    pub max_booting: u32,
    /// The target never goes above this (`max_workers`; `ctl scale`, TTIN).
    pub max_workers: u32,
}

/// The rate bound on spawns once the master has served: a token bucket holding up to
/// `burst` spawns, refilled at `per_second`. Pure (the caller passes the time). A crash loop of
/// workers that get ready and die (a query of death, a memory limit too small) is held to this
/// rate instead of pausing the whole server; `reconcile` still lets one replacement boot while
/// none is booting and fewer than the target serve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpawnBucket {
    tokens: f64,
    updated: std::time::Instant,
}

impl SpawnBucket {
    pub fn full(burst: u32, now: std::time::Instant) -> SpawnBucket {
        SpawnBucket {
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, burst: u32, now: std::time::Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * f64::from(burst)).min(f64::from(burst));
        self.updated = now;
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, burst: u32, now: std::time::Instant) -> bool {
        self.refill(burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token is there (refilled at `burst` per second).
    pub fn next_token(&self, burst: u32) -> std::time::Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.updated + Duration::from_secs_f64(missing / f64::from(burst.max(1)))
    }
}

/// When workers are recycled (replaced through the readiness-gated path while healthy).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recycle {
    /// After this many requests plus a per-worker jitter in `0..=max_requests_jitter`.
    pub max_requests: Option<u64>,
    pub max_requests_jitter: u64,
    /// This long after becoming ready plus a per-worker jitter in `0..=lifetime_jitter`.
    pub max_lifetime: Option<Duration>,
    pub lifetime_jitter: Duration,
    /// When the worker's PSS stays above this many bytes for `MEMORY_STRIKES` samples.
    pub max_memory: Option<u64>,
    /// How often memory is sampled.
    pub memory_interval: Duration,
    /// Seeds the per-worker jitter draws (fixed in tests, the start time in production).
    pub seed: u64,
}

/// Boot failures are forgotten only once a worker has stayed ready this long; during a reload, a
/// new worker that dies this soon after becoming ready counts as a failed boot of the new
/// generation.
pub const CRASH_GRACE: Duration = Duration::from_secs(5);

/// Consecutive samples over `max_memory` before a worker is recycled: one spike is not enough.
pub const MEMORY_STRIKES: u32 = 3;

impl Recycle {
    /// The request limit of worker `id`, jitter included.
    pub fn request_limit(&self, id: u64) -> Option<u64> {
        let jitter = draw(self.seed, id, 1) % self.max_requests_jitter.saturating_add(1);
        self.max_requests.map(|n| n.saturating_add(jitter))
    }

    /// The lifetime of worker `id`, jitter included.
    pub fn lifetime(&self, id: u64) -> Option<Duration> {
        let span = self.lifetime_jitter.as_millis() as u64;
        let jitter = Duration::from_millis(draw(self.seed, id, 2) % span.saturating_add(1));
        self.max_lifetime.map(|d| d + jitter)
    }
}

/// A deterministic pseudo-random draw (splitmix64) for worker `id`: pure, so tests can pin it.
fn draw(seed: u64, id: u64, stream: u64) -> u64 {
    let mut z = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Policy {
    pub fn from_config(config: &Config, target: u32, seed: u64) -> Policy {
        Policy {
            target: target.max(1),
            max_surge: config.max_surge.max(1),
            startup_attempts: config.startup_attempts.max(1),
            timeout: match config.timeout.is_zero() {
                true => defaults::NO_TIMEOUT,
                false => config.timeout,
            },
            graceful_timeout: config.graceful_timeout,
            boot_timeout: config.boot_timeout,
            drain_before_stop: config.drain_before_stop,
            quick_timeout: config.graceful_timeout.min(Duration::from_secs(5)),
            dump_grace: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            recycle: Recycle::from_config(config, seed),
            max_booting: crate::sizing::max_booting(),
            max_workers: super::launch::max_workers(config).0.max(target),
        }
    }

    /// Spawns the bucket holds and refills per second once the master has served: 5 per worker
    /// wanted, at least 10. Enough that all workers killed at once are replaced at once and that
    /// a pool whose workers keep dying is renewed faster than a query of death at 10/s arrives;
    /// few enough that a crash loop cannot exhaust the pid table or flood the log.
    pub fn spawn_burst(&self) -> u32 {
        self.target.saturating_mul(5).max(10)
    }

    /// Delay before the next spawn after `failures` consecutive boot failures (>= 1).
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.backoff_max)
    }
}

impl Recycle {
    pub fn from_config(config: &Config, seed: u64) -> Recycle {
        Recycle {
            max_requests: config.max_requests,
            max_requests_jitter: config.max_requests_jitter,
            max_lifetime: config.max_worker_lifetime,
            lifetime_jitter: config.max_worker_lifetime_jitter,
            max_memory: config.max_worker_memory,
            memory_interval: config.memory_check_interval,
            seed,
        }
    }
}

#[cfg(test)]
pub(crate) use tests::test_policy;

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
            drain_before_stop: Duration::ZERO,
            quick_timeout: Duration::from_secs(5),
            dump_grace: Duration::from_millis(500),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            recycle: Recycle {
                memory_interval: Duration::from_secs(5),
                seed: 7,
                ..Recycle::default()
            },
            max_booting: 64,
            max_workers: 1000,
        }
    }

    #[test]
    fn jitter_is_within_bounds_and_differs_between_workers() {
        let recycle = Recycle {
            max_requests: Some(100),
            max_requests_jitter: 50,
            max_lifetime: Some(Duration::from_secs(60)),
            lifetime_jitter: Duration::from_secs(10),
            seed: 42,
            ..Recycle::default()
        };
        let limits: Vec<u64> = (1..=20)
            .filter_map(|id| recycle.request_limit(id))
            .collect();
        assert!(limits.iter().all(|n| (100..=150).contains(n)), "{limits:?}");
        let mut distinct = limits.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 5, "draws spread out: {limits:?}");
        let lifetime = recycle.lifetime(3).expect("lifetime set");
        assert!(lifetime >= Duration::from_secs(60) && lifetime <= Duration::from_secs(70));
        assert_eq!(Recycle::default().request_limit(1), None);
        let no_jitter = Recycle {
            max_requests: Some(10),
            ..Recycle::default()
        };
        assert_eq!(no_jitter.request_limit(9), Some(10));
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_bucket_holds_a_burst_then_refills_at_burst_per_second() {
        let t0 = Instant::now();
        let mut b = SpawnBucket::full(2, t0);
        assert!(b.take(2, t0) && b.take(2, t0));
        assert!(!b.take(2, t0), "empty after the burst");
        assert_eq!(b.next_token(2), t0 + Duration::from_millis(500));
        assert!(!b.take(2, t0 + Duration::from_millis(499)));
        assert!(b.take(2, t0 + Duration::from_millis(500)));
        // Never more than the burst, however long it rested.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.take(2, later) && b.take(2, later) && !b.take(2, later));
    }
}
