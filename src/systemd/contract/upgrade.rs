//! The notify protocol through an in-place upgrade (SIGUSR2). One process, two images: systemd
//! sees the same pid throughout, so the upgrade is told as one reload that spans the exec.
//!
//! - The old image sends `RELOADING=1` with `MONOTONIC_USEC` right before its exec (once: an exec
//!   deferred by a pending signal and tried again does not send it twice). If the exec does not
//!   happen after all (it failed, or the upgrade was abandoned at the retry), the old image
//!   answers with `READY=1` itself. A reload that begins meanwhile (the deferring signal was a
//!   SIGHUP) takes over: its own `READY=1` answers.
//! - The new image starts owing that `READY=1`: it sends it once its rollout ended (the new
//!   workers serve, or they failed and the adopted ones serve), or at once when it keeps the
//!   adopted workers without a rollout.
//!
//! The invariant of the contract holds across the exec: every `RELOADING=1` gets exactly one
//! `READY=1`, unless a stop comes first.

use super::{Contract, Outcome};

impl Contract {
    /// The old image is about to exec the new binary; `monotonic_usec` is CLOCK_MONOTONIC in
    /// microseconds. `None` when already said (a deferred exec tried again) or stopping.
    pub fn upgrading(&mut self, monotonic_usec: u64) -> Option<String> {
        if self.stopping || self.upgrading {
            return None;
        }
        self.owed = true;
        self.reloading = true;
        self.upgrading = true;
        self.outcome = None;
        Some(format!(
            "RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS=upgrading: handing over to the new binary"
        ))
    }

    /// The old image did not exec after all, for `reason`: it serves on. Nothing, if no
    /// upgrade's `RELOADING=1` is waiting (it was never sent, or a reload took it over).
    pub fn upgrade_abandoned(&mut self, reason: &str) {
        if self.upgrading {
            self.upgrading = false;
            self.end_reload(Outcome::UpgradeAbandoned {
                reason: reason.to_string(),
            });
        }
    }

    /// The new image took over, and rolls the workers over to a new generation (`rollout`) or
    /// keeps the adopted ones: the old image's `RELOADING=1` is answered when that ends.
    pub fn resumed(&mut self, rollout: bool) {
        self.served = true;
        self.owed = true;
        self.reloading = true;
        self.upgrading = true;
        self.outcome = None;
        if !rollout {
            self.upgrading = false;
            self.end_reload(Outcome::Upgraded { generation: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::tests::{serving, summary};
    use super::*;
    use crate::systemd::contract::Phase;

    const BOOT: Duration = Duration::from_secs(60);

    #[test]
    fn the_old_image_says_reloading_once_before_the_exec() {
        let mut c = Contract::new(BOOT);
        serving(&mut c, Instant::now());
        assert_eq!(
            c.upgrading(42).as_deref(),
            Some(
                "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=upgrading: handing over to the new binary"
            )
        );
        assert_eq!(c.upgrading(43), None, "a deferred exec tried again");
    }

    #[test]
    fn an_exec_that_did_not_happen_is_answered_by_the_old_image() {
        let mut c = Contract::new(BOOT);
        serving(&mut c, Instant::now());
        c.upgrade_abandoned("no upgrade was under way");
        assert_eq!(c.update(summary(Phase::Serving, 2, 0)), None);
        c.upgrading(1);
        c.upgrade_abandoned("exec failed");
        let ready = c.update(summary(Phase::Serving, 2, 0)).expect("READY=1");
        assert!(
            ready.starts_with(
                "READY=1\nSTATUS=upgrade failed, the current binary keeps serving (exec failed)"
            ),
            "{ready}"
        );
        c.upgrade_abandoned("again");
        assert_eq!(
            c.update(summary(Phase::Serving, 2, 0)),
            None,
            "answered once"
        );
    }

    #[test]
    fn a_reload_during_a_deferred_exec_answers_the_reloading() {
        let mut c = Contract::new(BOOT);
        serving(&mut c, Instant::now());
        c.upgrading(1);
        assert!(c.reloading(2).is_some());
        c.upgrade_abandoned("a reload is in progress");
        assert_eq!(
            c.update(summary(Phase::Reloading, 2, 1)).as_deref(),
            Some("STATUS=reloading to generation 1: 2/2 new workers ready, 2 serving"),
            "no READY=1 before the reload ends"
        );
        c.reloaded(1);
        let ready = c.update(summary(Phase::Serving, 2, 1)).expect("READY=1");
        assert!(
            ready.starts_with("READY=1\nSTATUS=reloaded to generation 1"),
            "{ready}"
        );
    }

    #[test]
    fn the_new_image_says_ready_when_its_rollout_ends() {
        let t0 = Instant::now();
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Serving, 2, 0), t0);
        c.resumed(true);
        c.serving();
        assert!(c
            .update(summary(Phase::Reloading, 2, 1))
            .is_some_and(|s| s.starts_with("STATUS=")));
        c.reloaded(1);
        assert_eq!(
            c.update(summary(Phase::Serving, 2, 1)).as_deref(),
            Some("READY=1\nSTATUS=upgraded in place to generation 1; serving: 2/2 workers ready, generation 1")
        );
        c.reloading(7);
        c.reloaded(2);
        let ready = c.update(summary(Phase::Serving, 2, 2)).expect("READY=1");
        assert!(
            ready.starts_with("READY=1\nSTATUS=reloaded"),
            "a later reload is a reload: {ready}"
        );
    }

    #[test]
    fn the_new_image_reports_a_rolled_back_rollout_or_no_rollout() {
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Serving, 2, 0), Instant::now());
        c.resumed(true);
        c.rolled_back("the application failed to import");
        let ready = c.update(summary(Phase::Serving, 2, 0)).expect("READY=1");
        assert!(
            ready.starts_with("READY=1\nSTATUS=upgraded in place, but the new workers failed"),
            "{ready}"
        );
        let mut c = Contract::new(BOOT);
        c.start(summary(Phase::Serving, 2, 0), Instant::now());
        c.resumed(false);
        let ready = c.update(summary(Phase::Serving, 2, 0)).expect("READY=1");
        assert!(
            ready.starts_with(
                "READY=1\nSTATUS=upgraded in place, the previous workers keep serving"
            ),
            "{ready}"
        );
    }
}
