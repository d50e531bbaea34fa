//! What the in-place upgrade needs from the state machine: whether this is a moment to hand
//! over (nothing else is changing the workers), the numbers that go into the handover, and the
//! new image's entry point, [`Master::adopt`], which takes the handed-over workers as they were.
//!
//! After adoption the new image rolls the workers over exactly like a reload (the loop feeds
//! [`super::Event::Reload`] for the next generation): the adopted generation is current and
//! stable, so the one replacement path starts new workers first, retires the adopted ones only
//! once their replacements are ready, and a rollout whose workers fail to boot rolls back to the
//! adopted ones, which keep serving.

use std::time::{Duration, Instant};

use super::{quarantine::Quarantine, Master};
use crate::master::event::WorkerId;
use crate::master::policy::{Policy, CRASH_GRACE};
use crate::master::workers::{Phase, Reason, Worker};
use crate::upgrade::{HandedCounters, HandedRequest};

/// A worker handed over by the previous image of this master.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub id: WorkerId,
    pub pid: i32,
    pub generation: u64,
    pub phase: AdoptedPhase,
    /// Time since it was started.
    pub age: Duration,
    /// Time since it became ready, if it did.
    pub ready_for: Option<Duration>,
    pub requests: u64,
    /// Its liveness timeout, fixed when it was spawned.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AdoptedPhase {
    Booting,
    Ready,
    /// On its way out; SIGKILL after `kill_in`.
    Stopping {
        reason: Reason,
        kill_in: Duration,
    },
}

impl Master {
    /// The new image's master: `workers` taken over as they were, `generation` current and
    /// stable, deciding with `policy` from now on. It has served already, so boot failures
    /// never make it give up.
    pub fn adopt(
        policy: Policy,
        generation: u64,
        next_id: WorkerId,
        uptime: Duration,
        workers: Vec<Adopted>,
        now: Instant,
    ) -> Master {
        let mut master = Master::new(policy, now);
        master.started = now.checked_sub(uptime).unwrap_or(now);
        master.current = generation;
        master.stable = generation;
        let highest = workers.iter().map(|w| w.id).max().unwrap_or(0);
        master.next_id = next_id.max(highest + 1);
        master.workers = workers
            .into_iter()
            .map(|w| adopted_worker(w, &master.policy, now))
            .collect();
        master.ever_ready = true;
        master.announced = true;
        master
    }

    /// Why an upgrade cannot hand over now, if it cannot: only a master that serves and is
    /// neither stopping nor reloading hands over.
    pub fn upgrade_blocker(&self) -> Option<&'static str> {
        if self.stop.is_some() || self.drain_until.is_some() {
            Some("the master is stopping")
        } else if self.is_reloading() {
            Some("a reload is in progress")
        } else if !self.announced {
            Some("the master is still starting its workers")
        } else {
            None
        }
    }

    /// The counters and the requests under suspicion, as the handover carries them (the
    /// operations layer's own counters are filled in by the loop).
    pub fn handed_records(&self, now: Instant) -> (HandedCounters, Vec<HandedRequest>) {
        let s = &self.stats;
        let counters = HandedCounters {
            restarts: s
                .restarts
                .iter()
                .map(|(reason, n)| (reason.to_string(), *n))
                .collect(),
            boots: s.boots,
            boot_seconds: s.boot_seconds,
            reloads: s.reloads,
            reload_failures: s.reload_failures,
            reload_seconds: s.reload_seconds,
            access_log_dropped: s.access_log_dropped,
            ..HandedCounters::default()
        };
        (counters, self.quarantine.handed(now))
    }

    /// Takes the counters and the quarantine of the previous image, so that `/metrics` counters
    /// go on from where they were and a quarantined request stays refused. A restart reason this
    /// binary does not know (a newer one's) is dropped.
    pub fn restore_records(
        &mut self,
        counters: &HandedCounters,
        quarantine: &[HandedRequest],
        now: Instant,
    ) {
        let s = &mut self.stats;
        for (name, n) in &counters.restarts {
            if let Some(reason) = Reason::ALL.into_iter().find(|r| r.as_str() == name) {
                *s.restarts.entry(reason.as_str()).or_default() += n;
            }
        }
        s.boots += counters.boots;
        s.boot_seconds += counters.boot_seconds;
        s.reloads += counters.reloads;
        s.reload_failures += counters.reload_failures;
        s.reload_seconds += counters.reload_seconds;
        s.access_log_dropped += counters.access_log_dropped;
        self.quarantine = Quarantine::restore(quarantine, now);
    }

    /// The id the next worker gets.
    pub fn next_worker_id(&self) -> WorkerId {
        self.next_id
    }

    /// How long this master has been running (across upgrades).
    pub fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

fn adopted_worker(a: Adopted, policy: &Policy, now: Instant) -> Worker {
    let started = now.checked_sub(a.age).unwrap_or(now);
    let mut w = Worker::new(a.id, a.generation, started, policy);
    w.pid = Some(a.pid);
    w.timeout = a.timeout;
    // Its heartbeats resume at once: they waited in the channel during the handover.
    w.last_seen = now;
    w.requests = a.requests;
    w.ready_at = a
        .ready_for
        .map(|ready| now.checked_sub(ready).unwrap_or(now));
    w.stable = a.ready_for.is_some_and(|ready| ready >= CRASH_GRACE);
    match a.phase {
        AdoptedPhase::Booting => {} // booting since `started`, judged by the boot timeout
        AdoptedPhase::Ready => w.phase = Phase::Ready,
        AdoptedPhase::Stopping { reason, kill_in } => {
            w.retiring = Some(reason);
            w.phase = Phase::Stopping {
                kill_at: now + kill_in,
            };
        }
    }
    w
}
