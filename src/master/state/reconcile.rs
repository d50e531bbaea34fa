//! Spawning and retiring: after every event (unless stopping) the worker set is brought towards
//! the target. Missing workers are spawned (not before the boot-failure backoff ends, at most
//! `max_surge` booting beyond the target while replacing, at most `max_booting` booting at once,
//! and once the master has served within a spawn rate bound that never leaves the pool without
//! a booting replacement while it is short); a worker is retired only once the
//! ready workers exceed the target, so capacity never dips for a planned replacement (reload,
//! recycle, scale-down). Also the answers to spawn actions and `Serving`, announced once when
//! every worker of the first start is ready.

use std::time::Instant;

use tracing::{debug, info, warn};

use super::{signal, Master};
use crate::master::event::{Action, WorkerId, WorkerSignal};
use crate::master::exits::Failure;
use crate::master::workers::{Phase, Reason, Worker};

impl Master {
    pub(super) fn on_scale(&mut self, delta: i64) {
        if self.stop.is_some() || self.drain_until.is_some() {
            return;
        }
        let max = self.policy.max_workers.max(1);
        let wanted = self.policy.target as i64 + delta;
        let target = wanted.clamp(1, i64::from(max)) as u32;
        if wanted > i64::from(max) {
            warn!(
                wanted,
                max_workers = max,
                "target worker count capped at max_workers; raise `max_workers` to allow more"
            );
        }
        if target != self.policy.target {
            info!(
                from = self.policy.target,
                to = target,
                "target worker count changed"
            );
            self.policy.target = target;
        }
    }

    pub(super) fn reconcile(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.spawn_missing(now, out);
        self.retire_surplus(now, out);
        self.announce_serving(now, out);
        self.check_rollout(now, out);
    }

    /// Spawns towards the target: after the boot-failure backoff, at most `max_surge` beyond the
    /// target, at most `max_booting` booting at once, and, once the master has served, within
    /// the spawn rate bound (`SpawnBucket`): an empty bucket holds spawns back only while another
    /// worker is booting, so a replacement is always on its way while fewer than the target
    /// serve. One pass over the workers, then counted as spawns go: O(workers) per event.
    pub(super) fn spawn_missing(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.spawn_throttled = None;
        if self.spawn_after.is_some_and(|t| now < t) {
            return;
        }
        self.spawn_after = None;
        let target = self.policy.target as usize;
        let ceiling = target + self.policy.max_surge as usize;
        let max_booting = self.policy.max_booting.max(1) as usize;
        let burst = self.policy.spawn_burst();
        let (mut good, mut live, mut booting) = (0, 0, 0);
        for w in &self.workers {
            good += usize::from(self.is_good(w));
            live += usize::from(w.is_live());
            booting += usize::from(w.is_live() && w.is_booting());
        }
        while good < target && live < ceiling && booting < max_booting {
            let token = !self.ever_ready || self.spawn_tokens.take(burst, now);
            if !token && booting > 0 {
                self.spawn_throttled = Some(self.spawn_tokens.next_token(burst));
                debug!(
                    booting,
                    "spawn rate bound reached: the next spawn waits for a token"
                );
                break;
            }
            good += 1;
            live += 1;
            booting += 1;
            let id = self.next_id;
            self.next_id += 1;
            self.workers
                .push(Worker::new(id, self.current, now, &self.policy));
            out.push(Action::Spawn {
                id,
                generation: self.current,
            });
        }
    }

    pub(super) fn retire_surplus(&mut self, now: Instant, out: &mut Vec<Action>) {
        let current = self.current;
        // Workers of another generation that are still booting serve nobody: stop them now.
        let stale: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|w| w.is_live() && w.is_booting() && w.generation != current)
            .map(|w| w.id)
            .collect();
        for id in stale {
            self.retire(id, Reason::Reload, now, out);
        }
        while let Some((id, reason)) = self.next_to_retire() {
            self.retire(id, reason, now, out);
        }
    }

    /// The next ready worker to retire, oldest first: other generations before the current one,
    /// and the current one only when it has more workers than the target.
    pub(super) fn next_to_retire(&self) -> Option<(WorkerId, Reason)> {
        let target = self.policy.target as usize;
        let ready = self.count(|w| w.is_live() && w.is_ready());
        if ready <= target {
            return self.next_booting_surplus();
        }
        let replaced = self
            .workers
            .iter()
            .find(|w| w.is_live() && w.is_ready() && !self.is_good(w));
        if let Some(w) = replaced {
            return Some((w.id, w.recycle.unwrap_or(Reason::Reload)));
        }
        (self.good() > target)
            .then(|| self.workers.iter().find(|w| w.is_live() && w.is_ready()))
            .flatten()
            .map(|w| (w.id, Reason::ScaleDown))
    }

    /// After a scale-down, extra workers of the current generation that are still booting.
    pub(super) fn next_booting_surplus(&self) -> Option<(WorkerId, Reason)> {
        if self.good() <= self.policy.target as usize {
            return None;
        }
        self.workers
            .iter()
            .rev()
            .find(|w| w.is_live() && w.is_booting())
            .map(|w| (w.id, Reason::ScaleDown))
    }

    pub(super) fn retire(
        &mut self,
        id: WorkerId,
        reason: Reason,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let kill_at = now + self.policy.graceful_timeout;
        let Some(w) = self.find(id) else { return };
        info!(
            worker = id,
            pid = w.pid,
            generation = w.generation,
            reason = reason.as_str(),
            "retiring worker"
        );
        w.retiring = Some(reason);
        w.phase = Phase::Stopping { kill_at };
        // Before the SIGTERM: the worker is replaced, not the server stopping (its WebSocket
        // clients get 1012, service restart, rather than 1001).
        let line = format!(r#"{{"type":"retire","reason":"{}"}}"#, reason.as_str());
        out.push(Action::SendToWorker { id, line });
        signal(w, WorkerSignal::Term, out);
    }

    pub(super) fn announce_serving(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.announced {
            return;
        }
        let ready = self.count(|w| w.is_live() && w.is_ready());
        if ready >= self.policy.target as usize {
            self.announced = true;
            info!(
                workers = ready,
                boot = ?now.saturating_duration_since(self.started),
                "serving: all workers ready"
            );
            out.push(Action::Serving);
        }
    }

    pub(super) fn on_spawned(&mut self, id: WorkerId, pid: i32, out: &mut Vec<Action>) {
        if let Some(w) = self.find(id) {
            w.pid = Some(pid);
            // Retired before its pid was known: it still has to be told.
            if w.retiring.is_some() && matches!(w.phase, Phase::Stopping { .. }) {
                signal(w, WorkerSignal::Term, out);
            }
            debug!(
                worker = id,
                pid,
                generation = w.generation,
                "worker spawned"
            );
        }
    }

    pub(super) fn on_spawn_failed(
        &mut self,
        id: WorkerId,
        error: String,
        exec_failed: bool,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let failure = if exec_failed {
            Failure::Exec(error)
        } else {
            Failure::Spawn(error)
        };
        self.on_spawn_aborted(id, failure, now, out);
    }

    pub(super) fn on_spawn_aborted(
        &mut self,
        id: WorkerId,
        failure: Failure,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(pos) = self.workers.iter().position(|w| w.id == id) else {
            return;
        };
        let w = self.workers.remove(pos);
        self.on_boot_failure(&w, failure, now, out);
    }
}
