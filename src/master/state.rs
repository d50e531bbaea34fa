//! The supervision state machine: `on_event(event, now) -> Vec<Action>`. Pure: it reads no
//! clock and makes no system call, so every fault path is unit-tested with an injected clock.
//!
//! Invariants it keeps:
//! - One replacement path: a worker is only retired (reload, scale-down) once the ready workers
//!   exceed the target, so capacity never dips for a planned replacement; at most `max_surge`
//!   extra workers boot at a time.
//! - Only workers it still tracks (spawned, not yet reaped) are ever signalled.
//! - Boot failures (workers that never became ready) back off exponentially; before any worker
//!   was ever ready they end in a give-up with the documented exit code, during a reload in a
//!   rollback to the last good generation, otherwise the master keeps serving with what it has.
//! - A worker that served and died is replaced at once: never a pause of the whole server, only
//!   a spawn rate bound, and one replacement always boots while fewer than the target serve.
//! - Stopping is a state with a deadline: TERM (or QUIT) all, SIGKILL at the deadline, exit when
//!   the last worker is reaped; a second stop request escalates at once.
//! - With `drain_before_stop`, a graceful stop request of a master that has served first drains:
//!   everything keeps running (crashed workers are replaced) while the snapshot says stopping
//!   (so `/readyz` answers 503) until the drain deadline, then the graceful stop begins; a
//!   second stop request ends the drain at once.
//!
//! This file holds the state, the event dispatch and the shared helpers (signalling a worker
//! it still tracks). Each concern is an `impl Master` block of its own, in `state/`:
//! `reconcile` (spawning and retiring towards the target), `failures` (exits, boot failures and
//! backoff), `stop` (stop, drain, give-up), `reload` (reload and rollback), `liveness` (worker
//! messages and deadlines), `recycle` (memory and request limits), `status` (the operators'
//! snapshot) and `upgrade` (adoption after an in-place upgrade).

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::debug;

use super::event::{Action, Event, StopMode, WorkerId, WorkerSignal};
use super::policy::{Policy, SpawnBucket};
use super::workers::{Phase, Reason, Worker};
use crate::exit;

mod failures;
mod liveness;
mod quarantine;
mod reconcile;
mod recycle;
mod reload;
mod status;
mod stop;
mod upgrade;
pub use upgrade::{Adopted, AdoptedPhase};

#[derive(Debug, Clone, Copy)]
struct Stopping {
    mode: StopMode,
    /// When the workers still there are killed. It is each worker's own `kill_at` (`Phase::
    /// Stopping`): a stop gives it to every worker, including one whose spawn is still
    /// unanswered, and no worker is added while stopping, so no master-level kill is needed.
    deadline: Instant,
    exit_code: i32,
}

#[derive(Debug, Clone, Copy)]
struct Rollout {
    started: Instant,
}

/// The master's whole decision state.
pub struct Master {
    policy: Policy,
    workers: Vec<Worker>,
    next_id: WorkerId,
    /// The generation new workers are spawned from.
    current: u64,
    /// The last generation that was fully rolled out; a failed reload returns to it.
    stable: u64,
    rollout: Option<Rollout>,
    reload_pending: bool,
    loading_config: bool,
    ever_ready: bool,
    started: Instant,
    boot_failures: u32,
    /// When the latest boot failure happened: only a worker started after it can prove that
    /// booting works again.
    last_boot_failure: Option<Instant>,
    spawn_after: Option<Instant>,
    /// The spawn rate bound once the master has served (see `spawn_missing`).
    spawn_tokens: SpawnBucket,
    /// When the next spawn token comes, while spawns wait for one.
    spawn_throttled: Option<Instant>,
    stop: Option<Stopping>,
    /// The end of the drain before a graceful stop, while draining.
    drain_until: Option<Instant>,
    announced: bool,
    /// When worker memory is sampled next (only with `max_worker_memory`).
    next_memory_sample: Option<Instant>,
    stats: Stats,
    /// The last boot error's traceback: the same one again is not printed again.
    last_boot_traceback: Option<String>,
    /// Requests that keep killing workers (see `quarantine`).
    quarantine: quarantine::Quarantine,
}

/// Counters for operators (see [`crate::ops::Snapshot`]).
#[derive(Debug, Default)]
struct Stats {
    restarts: BTreeMap<&'static str, u64>,
    last_restart: Option<(WorkerId, Option<i32>, Reason, Instant)>,
    boots: u64,
    boot_seconds: f64,
    reloads: u64,
    reload_failures: u64,
    reload_seconds: f64,
    access_log_dropped: u64,
}

impl Master {
    /// A master that will start `policy.target` workers of generation 0 on its first event.
    pub fn new(policy: Policy, now: Instant) -> Master {
        let memory_interval = policy
            .recycle
            .max_memory
            .map(|_| policy.recycle.memory_interval);
        let memory_start = |now: Instant| memory_interval.map(|every| now + every);
        Master {
            spawn_tokens: SpawnBucket::full(policy.spawn_burst(), now),
            policy,
            workers: Vec::new(),
            next_id: 1,
            current: 0,
            stable: 0,
            rollout: None,
            reload_pending: false,
            loading_config: false,
            ever_ready: false,
            started: now,
            boot_failures: 0,
            last_boot_failure: None,
            spawn_after: None,
            spawn_throttled: None,
            stop: None,
            drain_until: None,
            announced: false,
            next_memory_sample: memory_start(now),
            stats: Stats::default(),
            last_boot_traceback: None,
            quarantine: quarantine::Quarantine::default(),
        }
    }

    /// Feeds one event; returns what to do, in order.
    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Stop(mode) => self.on_stop(mode, exit::OK, now, &mut out),
            Event::Scale(delta) => self.on_scale(delta),
            Event::SetTarget(target) => self.on_scale(i64::from(target) - i64::from(self.target())),
            Event::ReloadRequested => self.on_reload_requested(&mut out),
            Event::Reload {
                generation,
                policy,
                workers_changed,
            } => self.on_reload(generation, *policy, workers_changed, now),
            Event::ReloadAborted => self.on_reload_aborted(&mut out),
            Event::ReloadCannotStart { reason } => self.on_reload_cannot_start(reason, &mut out),
            Event::Spawned { id, pid } => self.on_spawned(id, pid, &mut out),
            Event::SpawnFailed {
                id,
                error,
                exec_failed,
            } => self.on_spawn_failed(id, error, exec_failed, now, &mut out),
            Event::SpawnAborted { id, failure } => {
                self.on_spawn_aborted(id, failure, now, &mut out)
            }
            Event::Message { id, message } => self.on_message(id, message, now, &mut out),
            Event::ChannelClosed { id } => debug!(worker = id, "channel closed"),
            Event::Exited {
                pid,
                status,
                serving,
            } => self.on_exited(pid, status, serving, now, &mut out),
            Event::Memory { samples } => self.on_memory(samples),
            // Deadlines are judged only here: the loop sends a Tick after it has read every
            // message that arrived, so a heartbeat waiting further down the queue is never
            // mistaken for a missing one.
            Event::Tick => {
                self.end_drain(now, &mut out);
                self.expire(now, &mut out);
                self.expire_quarantine(now, &mut out);
                self.sample_memory(now, &mut out);
            }
        }
        if self.stop.is_none() {
            self.reconcile(now, &mut out);
        }
        self.maybe_exit(&mut out);
        out
    }

    /// The earliest instant at which [`Event::Tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let workers = self.workers.iter().filter_map(Worker::deadline);
        let spawn = self
            .spawn_after
            .or(self.spawn_throttled)
            .filter(|_| self.stop.is_none() && self.short_of_target());
        let lifetimes = self.workers.iter().filter_map(Worker::lifetime_end);
        let memory = self.next_memory_sample.filter(|_| self.stop.is_none());
        let quarantine = self.quarantine.next_deadline();
        workers
            .chain(spawn)
            .chain(self.drain_until)
            .chain(lifetimes)
            .chain(memory)
            .chain(quarantine)
            .min()
    }

    /// Generations that still have workers, plus the current and stable ones: the loop keeps
    /// the specs of these and may drop the others.
    pub fn generations_in_use(&self) -> Vec<u64> {
        let mut gens: Vec<u64> = self.workers.iter().map(|w| w.generation).collect();
        gens.extend([self.current, self.stable]);
        gens.sort_unstable();
        gens.dedup();
        gens
    }

    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    pub fn target(&self) -> u32 {
        self.policy.target
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// Serving out the drain before a graceful stop (see `drain_before_stop`).
    pub fn is_draining(&self) -> bool {
        self.drain_until.is_some()
    }

    /// Loading a new configuration or rolling a new generation out.
    pub fn is_reloading(&self) -> bool {
        self.rollout.is_some() || self.loading_config
    }

    /// The generation new workers are started from.
    pub fn generation(&self) -> u64 {
        self.current
    }

    /// Serving (or about to) from the current generation and not due for recycling: the
    /// workers that count towards the target.
    fn is_good(&self, w: &Worker) -> bool {
        w.is_live() && w.generation == self.current && w.recycle.is_none()
    }

    fn good(&self) -> usize {
        self.count(|w| self.is_good(w))
    }

    fn short_of_target(&self) -> bool {
        self.good() < self.policy.target as usize
    }

    fn count(&self, pred: impl Fn(&Worker) -> bool) -> usize {
        self.workers.iter().filter(|w| pred(w)).count()
    }

    fn find(&mut self, id: WorkerId) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }
}

fn signal(w: &Worker, signal: WorkerSignal, out: &mut Vec<Action>) {
    if let Some(pid) = w.pid {
        out.push(Action::Signal {
            id: w.id,
            pid,
            signal,
        });
    }
}

fn dump(w: &mut Worker, reason: Reason, kill_at: Instant, out: &mut Vec<Action>) {
    w.retiring = Some(reason);
    w.phase = Phase::Dumping { kill_at };
    signal(w, WorkerSignal::Dump, out);
}

fn kill(w: &mut Worker, out: &mut Vec<Action>) {
    if w.phase != Phase::Killed {
        w.phase = Phase::Killed;
        signal(w, WorkerSignal::Kill, out);
    }
}
