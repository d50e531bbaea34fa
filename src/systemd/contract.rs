//! What herdsman tells systemd and when: the notify protocol as a pure state machine. It is fed
//! what happened (a spawn, the first generation serving, a reload starting, ending, failing or
//! being refused) and a [`Summary`] of the workers after every wakeup, and answers the datagrams
//! to send. It reads no clock and no environment, so the whole sequence is unit-tested.
//!
//! The sequence, as `Type=notify-reload` needs it:
//! - start: `EXTEND_TIMEOUT_USEC` (the boot timeout plus a margin) with a `STATUS`; again at a
//!   spawn while a `READY=1` is owed if the last extension would not cover that worker's boot
//!   timeout, so slow imports and boot retries fit in `TimeoutStartSec`;
//! - `READY=1` once every worker of the first start is ready;
//! - a reload: `RELOADING=1` with `MONOTONIC_USEC` in the same datagram when the configuration
//!   is about to be read, then `READY=1` when it ended, whichever way: the new generation is
//!   ready, or it was rolled back, or the configuration was refused. `systemctl reload` returns
//!   on that `READY=1`; the `STATUS` sent with it says which way it went;
//! - an in-place upgrade (SIGUSR2): `RELOADING=1` with `MONOTONIC_USEC` from the old binary right
//!   before its exec, `READY=1` from the new one once it serves (see `upgrade`), or from the old
//!   one if the exec did not happen;
//! - `STOPPING=1` when a stop begins (at the start of the drain, if there is one);
//! - `STATUS=` whenever the line would read differently (phase, ready workers, generation).
//!
//! Invariant: every `RELOADING=1` is followed by exactly one `READY=1` unless a stop comes first.

use std::time::{Duration, Instant};

mod upgrade;

/// Extra time allowed beyond the boot timeout before systemd's start timeout fires: the boot
/// timeout, the traceback dump and the first backoff steps all fit in it.
pub const EXTEND_MARGIN: Duration = Duration::from_secs(10);

/// What the master is doing, as operators read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first start: not every worker has been ready yet.
    Starting,
    Serving,
    Reloading,
    /// Serving out `drain_before_stop`; the stop follows.
    Draining,
    Stopping,
}

/// The workers at one instant, as the `STATUS=` line shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub phase: Phase,
    /// Ready workers (of any generation).
    pub ready: usize,
    /// Ready workers of the current generation (the new ones, during a reload).
    pub fresh: usize,
    /// Workers still tracked: booting, ready or on their way out.
    pub live: usize,
    pub target: u32,
    /// The generation new workers start from.
    pub generation: u64,
}

impl Summary {
    /// One line for `STATUS=`.
    pub fn status(&self) -> String {
        let Summary {
            ready,
            fresh,
            live,
            target,
            generation,
            ..
        } = *self;
        let counts = format!("{ready}/{target} workers ready, generation {generation}");
        match self.phase {
            Phase::Starting => format!("starting: {counts}"),
            Phase::Serving => format!("serving: {counts}"),
            Phase::Reloading => format!(
                "reloading to generation {generation}: {fresh}/{target} new workers ready, {ready} serving"
            ),
            Phase::Draining => {
                format!("draining before a graceful stop (/readyz answers 503): {counts}")
            }
            Phase::Stopping => {
                let plural = if live == 1 { "" } else { "s" };
                format!("stopping: {live} worker{plural} left")
            }
        }
    }
}

/// How the wait for a `READY=1` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Serving,
    Reloaded {
        generation: u64,
    },
    RolledBack {
        reason: String,
    },
    Refused,
    /// The new binary serves: with the workers of `generation`, or with the adopted ones.
    Upgraded {
        generation: Option<u64>,
    },
    /// The new binary serves, but its workers failed to boot: the adopted ones serve.
    UpgradeRolledBack {
        reason: String,
    },
    /// The exec did not happen: the old binary serves on.
    UpgradeAbandoned {
        reason: String,
    },
}

/// The notify protocol's state.
#[derive(Debug)]
pub struct Contract {
    /// `EXTEND_TIMEOUT_USEC` sent while waiting for a `READY=1`.
    extend: Duration,
    /// When the last `EXTEND_TIMEOUT_USEC` was sent.
    extended_at: Option<Instant>,
    /// A `READY=1` is owed: the first one, or the answer to a `RELOADING=1`.
    owed: bool,
    /// `READY=1` has been sent at least once (the first start is over).
    served: bool,
    /// Whether a `RELOADING=1` is waiting for its `READY=1`.
    reloading: bool,
    /// That `RELOADING=1` is an in-place upgrade's (sent by the old image, or inherited by the
    /// new one).
    upgrading: bool,
    /// The `READY=1` to send at the next update, and why.
    outcome: Option<Outcome>,
    stopping: bool,
    /// The last `STATUS=` text sent.
    last: Option<String>,
}

impl Contract {
    /// A contract for a master whose workers get `boot_timeout` to become ready.
    pub fn new(boot_timeout: Duration) -> Contract {
        Contract {
            extend: boot_timeout + EXTEND_MARGIN,
            extended_at: None,
            owed: true,
            served: false,
            reloading: false,
            upgrading: false,
            outcome: None,
            stopping: false,
            last: None,
        }
    }

    /// Whether the first start is over (`READY=1` is due or sent).
    pub fn served(&self) -> bool {
        self.served
    }

    /// The first datagram: more time for the start, and the status.
    pub fn start(&mut self, summary: Summary, now: Instant) -> String {
        self.extended_at = Some(now);
        let status = summary.status();
        self.last = Some(status.clone());
        format!("{}\nSTATUS={status}", self.extend_line())
    }

    /// A worker is being started at `now`: while a `READY=1` is owed, systemd's timeout is
    /// pushed back far enough for it to boot, unless the last extension already covers it.
    pub fn spawning(&mut self, boot_timeout: Duration, now: Instant) -> Option<String> {
        if !self.owed || self.stopping {
            return None;
        }
        let extend = boot_timeout + EXTEND_MARGIN;
        let covered = self
            .extended_at
            .is_some_and(|at| extend <= self.extend && now < at + EXTEND_MARGIN / 2);
        if covered {
            return None;
        }
        self.extend = extend;
        self.extended_at = Some(now);
        Some(self.extend_line())
    }

    /// Every worker of the first start is ready.
    pub fn serving(&mut self) {
        self.served = true;
        // During a reload, the reload's own outcome sends the READY=1.
        if !self.reloading {
            self.outcome = Some(Outcome::Serving);
        }
    }

    /// A reload starts now; `monotonic_usec` is CLOCK_MONOTONIC in microseconds.
    pub fn reloading(&mut self, monotonic_usec: u64) -> Option<String> {
        if self.stopping {
            return None;
        }
        self.owed = true;
        self.reloading = true;
        // A reload that starts while an upgrade's exec is deferred answers its RELOADING=1.
        self.upgrading = false;
        self.outcome = None;
        Some(format!(
            "RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=reloading: reading the configuration"
        ))
    }

    /// The reload completed: `generation` serves.
    pub fn reloaded(&mut self, generation: u64) {
        self.end_reload(Outcome::Reloaded { generation });
    }

    /// The new generation failed to boot; the previous one keeps serving.
    pub fn rolled_back(&mut self, reason: &str) {
        self.end_reload(Outcome::RolledBack {
            reason: reason.to_string(),
        });
    }

    /// The new configuration was invalid; nothing changed.
    pub fn refused(&mut self) {
        self.end_reload(Outcome::Refused);
    }

    fn end_reload(&mut self, outcome: Outcome) {
        let outcome = match (std::mem::take(&mut self.upgrading), outcome) {
            (true, Outcome::Reloaded { generation }) => Outcome::Upgraded {
                generation: Some(generation),
            },
            (true, Outcome::RolledBack { reason }) => Outcome::UpgradeRolledBack { reason },
            (_, outcome) => outcome,
        };
        self.reloading = false;
        self.served = true;
        self.outcome = Some(outcome);
    }

    /// After a wakeup: `STOPPING=1` when a stop began, an owed `READY=1`, or a `STATUS=` when the
    /// summary changed; at most one datagram.
    pub fn update(&mut self, summary: Summary) -> Option<String> {
        let stopping = matches!(summary.phase, Phase::Draining | Phase::Stopping);
        let status = summary.status();
        if stopping && !self.stopping {
            self.stopping = true;
            self.outcome = None;
            self.last = Some(status.clone());
            return Some(format!("STOPPING=1\nSTATUS={status}"));
        }
        if let Some(outcome) = self.outcome.take() {
            self.owed = false;
            // The outcome stays on display until the line would change for another reason.
            let shown = outcome_status(&outcome, &status);
            self.last = Some(status);
            return Some(format!("READY=1\nSTATUS={shown}"));
        }
        if self.last.as_ref() == Some(&status) {
            return None;
        }
        self.last = Some(status.clone());
        Some(format!("STATUS={status}"))
    }

    fn extend_line(&self) -> String {
        format!("EXTEND_TIMEOUT_USEC={}", self.extend.as_micros())
    }
}

/// The `STATUS=` sent with a `READY=1`: how the wait ended.
fn outcome_status(outcome: &Outcome, now: &str) -> String {
    match outcome {
        Outcome::Serving => now.to_string(),
        Outcome::Reloaded { generation } => format!("reloaded to generation {generation}; {now}"),
        Outcome::RolledBack { reason } => {
            format!("reload failed, the previous generation keeps serving ({reason}); {now}")
        }
        Outcome::Refused => format!(
            "reload refused: the new configuration is invalid (see the log); nothing changed; {now}"
        ),
        Outcome::Upgraded {
            generation: Some(generation),
        } => format!("upgraded in place to generation {generation}; {now}"),
        Outcome::Upgraded { generation: None } => {
            format!("upgraded in place, the previous workers keep serving; {now}")
        }
        Outcome::UpgradeRolledBack { reason } => format!(
            "upgraded in place, but the new workers failed, the previous ones keep serving ({reason}); {now}"
        ),
        Outcome::UpgradeAbandoned { reason } => {
            format!("upgrade failed, the current binary keeps serving ({reason}); {now}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: Duration = Duration::from_secs(60);

    pub(super) fn summary(phase: Phase, ready: usize, generation: u64) -> Summary {
        Summary {
            phase,
            ready,
            fresh: ready,
            live: ready,
            target: 2,
            generation,
        }
    }

    pub(super) fn serving(c: &mut Contract, t0: Instant) {
        c.start(summary(Phase::Starting, 0, 0), t0);
        c.serving();
        c.update(summary(Phase::Serving, 2, 0));
    }

    #[test]
    fn boot_extends_the_timeout_then_says_ready_once() {
        let t0 = Instant::now();
        let mut c = Contract::new(BOOT);
        let start = c.start(summary(Phase::Starting, 0, 0), t0);
        assert_eq!(
            start,
            "EXTEND_TIMEOUT_USEC=70000000\nSTATUS=starting: 0/2 workers ready, generation 0"
        );
        assert_eq!(c.spawning(BOOT, t0), None, "the start already covers it");
        assert_eq!(c.update(summary(Phase::Starting, 0, 0)), None, "unchanged");
        let live = Summary {
            live: 2,
            ..summary(Phase::Starting, 0, 0)
        };
        assert_eq!(c.update(live), None, "the line reads the same");
        assert_eq!(
            c.update(summary(Phase::Starting, 1, 0)).as_deref(),
            Some("STATUS=starting: 1/2 workers ready, generation 0")
        );
        c.serving();
        assert_eq!(
            c.update(summary(Phase::Serving, 2, 0)).as_deref(),
            Some("READY=1\nSTATUS=serving: 2/2 workers ready, generation 0")
        );
        assert_eq!(c.update(summary(Phase::Serving, 2, 0)), None);
        let later = t0 + Duration::from_secs(600);
        assert_eq!(c.spawning(BOOT, later), None, "a replacement after READY=1");
    }

    #[test]
    fn a_retry_late_in_the_start_extends_again() {
        let t0 = Instant::now();
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Starting, 0, 0), t0);
        assert_eq!(c.spawning(BOOT, t0 + Duration::from_millis(4_999)), None);
        assert_eq!(
            c.spawning(BOOT, t0 + Duration::from_secs(5)).as_deref(),
            Some("EXTEND_TIMEOUT_USEC=70000000")
        );
        let longer = Duration::from_secs(120);
        assert_eq!(
            c.spawning(longer, t0 + Duration::from_secs(6)).as_deref(),
            Some("EXTEND_TIMEOUT_USEC=130000000"),
            "a longer boot timeout (after a reload) is never cut short"
        );
    }

    #[test]
    fn a_reload_says_reloading_with_the_clock_then_ready() {
        let t0 = Instant::now();
        let mut c = Contract::new(BOOT);
        serving(&mut c, t0);
        assert_eq!(
            c.reloading(123_456_789).as_deref(),
            Some("RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading: reading the configuration")
        );
        let later = t0 + Duration::from_secs(60);
        assert_eq!(
            c.spawning(BOOT, later).as_deref(),
            Some("EXTEND_TIMEOUT_USEC=70000000")
        );
        let rolling = Summary {
            fresh: 1,
            ..summary(Phase::Reloading, 3, 1)
        };
        assert_eq!(
            c.update(rolling).as_deref(),
            Some("STATUS=reloading to generation 1: 1/2 new workers ready, 3 serving")
        );
        c.reloaded(1);
        assert_eq!(
            c.update(summary(Phase::Serving, 2, 1)).as_deref(),
            Some("READY=1\nSTATUS=reloaded to generation 1; serving: 2/2 workers ready, generation 1")
        );
        assert_eq!(c.update(summary(Phase::Serving, 2, 1)), None);
    }

    #[test]
    fn failed_and_refused_reloads_still_answer_ready() {
        let mut c = Contract::new(BOOT);
        serving(&mut c, Instant::now());
        c.reloading(1);
        c.rolled_back("the application failed to import");
        let ready = c.update(summary(Phase::Serving, 2, 0)).unwrap();
        assert!(
            ready.starts_with("READY=1\nSTATUS=reload failed"),
            "{ready}"
        );
        assert!(ready.contains("failed to import"), "{ready}");
        c.reloading(2);
        c.refused();
        let ready = c.update(summary(Phase::Serving, 2, 0)).unwrap();
        assert!(
            ready.starts_with("READY=1\nSTATUS=reload refused"),
            "{ready}"
        );
    }

    #[test]
    fn serving_during_a_reload_waits_for_the_reload() {
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Starting, 0, 0), Instant::now());
        c.reloading(1);
        c.serving();
        let status = c.update(summary(Phase::Reloading, 2, 1)).unwrap();
        assert!(status.starts_with("STATUS=reloading"), "{status}");
        c.reloaded(1);
        let ready = c.update(summary(Phase::Serving, 2, 1)).unwrap();
        assert!(ready.starts_with("READY=1\nSTATUS=reloaded"), "{ready}");
    }

    #[test]
    fn stopping_is_said_once_and_wins_over_an_owed_ready() {
        let t0 = Instant::now();
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Starting, 0, 0), t0);
        c.serving();
        let draining = summary(Phase::Draining, 2, 0);
        assert_eq!(
            c.update(draining).as_deref(),
            Some("STOPPING=1\nSTATUS=draining before a graceful stop (/readyz answers 503): 2/2 workers ready, generation 0")
        );
        let stopping = Summary {
            phase: Phase::Stopping,
            live: 1,
            ..draining
        };
        assert_eq!(
            c.update(stopping).as_deref(),
            Some("STATUS=stopping: 1 worker left")
        );
        assert_eq!(c.reloading(5), None, "no reload while stopping");
        assert_eq!(c.spawning(BOOT, t0 + Duration::from_secs(60)), None);
    }
}
