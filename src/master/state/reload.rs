//! Reloads and their rollback. A reload request loads the configuration once at a time
//! (requests during a reload coalesce into one that follows it); the new generation becomes
//! current and the one replacement path (`reconcile`) rolls it out. It completes when no older
//! worker is left and the target is ready, and becomes the stable generation; a boot failure
//! that is decisive during a rollout rolls back to the stable generation, whose workers were
//! never touched.

use std::time::Instant;

use tracing::{debug, error, info};

use super::{Master, Rollout};
use crate::master::event::Action;
use crate::master::exits::Failure;
use crate::master::policy::Policy;

impl Master {
    pub(super) fn on_reload_requested(&mut self, out: &mut Vec<Action>) {
        if self.stop.is_some() || self.drain_until.is_some() {
            return;
        }
        if self.loading_config || self.rollout.is_some() {
            debug!("reload requested during a reload: it will follow this one");
            self.reload_pending = true;
            return;
        }
        self.loading_config = true;
        out.push(Action::LoadConfig);
    }

    pub(super) fn on_reload(
        &mut self,
        generation: u64,
        policy: Policy,
        workers_changed: bool,
        now: Instant,
    ) {
        self.loading_config = false;
        if self.stop.is_some() {
            return;
        }
        let target = if workers_changed {
            policy.target
        } else {
            self.policy.target
        };
        self.policy = Policy {
            target: target.max(1),
            ..policy
        };
        let every = self.policy.recycle.memory_interval;
        self.next_memory_sample = self.policy.recycle.max_memory.map(|_| now + every);
        info!(
            generation,
            from = self.current,
            workers = self.policy.target,
            "reloading"
        );
        self.current = generation;
        self.rollout = Some(Rollout { started: now });
        self.boot_failures = 0;
        self.spawn_after = None;
    }

    pub(super) fn on_reload_aborted(&mut self, out: &mut Vec<Action>) {
        self.loading_config = false;
        self.start_pending_reload(out);
    }

    /// Like a rollback, but nothing was rolled out: no worker of the new generation exists.
    pub(super) fn on_reload_cannot_start(&mut self, reason: String, out: &mut Vec<Action>) {
        self.loading_config = false;
        if self.stop.is_some() {
            return;
        }
        error!(
            generation = self.current,
            "reload failed: {reason}; the current workers keep serving"
        );
        self.stats.reload_failures += 1;
        out.push(Action::ReloadFailed { reason });
        self.start_pending_reload(out);
    }

    pub(super) fn start_pending_reload(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.reload_pending) {
            self.on_reload_requested(out);
        }
    }

    pub(super) fn check_rollout(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(rollout) = self.rollout else { return };
        let old_left = self.count(|w| w.is_live() && w.generation != self.current);
        let ready = self.count(|w| self.is_good(w) && w.is_ready());
        if old_left == 0 && ready >= self.policy.target as usize {
            info!(
                generation = self.current,
                workers = ready,
                duration = ?now.saturating_duration_since(rollout.started),
                "reload complete"
            );
            self.stable = self.current;
            self.rollout = None;
            self.stats.reloads += 1;
            self.stats.reload_seconds +=
                now.saturating_duration_since(rollout.started).as_secs_f64();
            out.push(Action::Reloaded {
                generation: self.current,
            });
            self.start_pending_reload(out);
        }
    }

    pub(super) fn roll_back(&mut self, failure: &Failure, out: &mut Vec<Action>) {
        error!(
            generation = self.current,
            kept_generation = self.stable,
            "reload failed: {}; the previous generation keeps serving",
            failure.give_up_hint()
        );
        self.current = self.stable;
        self.rollout = None;
        self.boot_failures = 0;
        self.spawn_after = None;
        self.stats.reload_failures += 1;
        out.push(Action::ReloadFailed {
            reason: failure.give_up_hint(),
        });
        self.start_pending_reload(out);
    }
}
