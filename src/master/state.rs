//! The supervision state machine: `on_event(event, now) -> Vec<Action>`. Pure: it reads no
//! clock and makes no system call, so every fault path is unit-tested with an injected clock.
//!
//! Invariants it keeps:
//! - One replacement path: a worker is only retired (reload, scale-down) once the ready workers
//!   exceed the target, so capacity never dips for a planned replacement; at most `max_surge`
//!   extra workers boot at a time.
//! - Only workers it still tracks (spawned, not yet reaped) are ever signalled.
//! - Boot failures back off exponentially; before any worker was ever ready they end in a
//!   give-up with the documented exit code, during a reload in a rollback to the last good
//!   generation, otherwise the master keeps serving with what it has.
//! - Stopping is a state with a deadline: TERM (or QUIT) all, SIGKILL at the deadline, exit when
//!   the last worker is reaped; a second stop request escalates at once.
//! - With `drain_before_stop`, a graceful stop request of a master that has served first drains:
//!   everything keeps running (crashed workers are replaced) while the snapshot says stopping
//!   (so `/readyz` answers 503) until the drain deadline, then the graceful stop begins; a
//!   second stop request ends the drain at once.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::event::{Action, Event, StopMode, WorkerId, WorkerSignal};
use super::exits::{describe_boot_failure, Failure};
use super::policy::{Policy, CRASH_GRACE, MEMORY_STRIKES};
use super::workers::{Phase, Reason, Worker};
use crate::exit;
use crate::ops::{LastRestart, Snapshot, WorkerStatus};
use crate::sys::reap::ExitStatus;
use crate::worker::WorkerMessage;

mod upgrade;
pub use upgrade::{Adopted, AdoptedPhase};

#[derive(Debug, Clone, Copy)]
struct Stopping {
    mode: StopMode,
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
    /// SIGKILLs in a row of workers that had only just become ready (see `on_quick_crash`).
    quick_kills: u32,
    /// When the latest boot failure happened: only a worker started after it can prove that
    /// booting works again.
    last_boot_failure: Option<Instant>,
    spawn_after: Option<Instant>,
    stop: Option<Stopping>,
    /// The end of the drain before a graceful stop, while draining.
    drain_until: Option<Instant>,
    announced: bool,
    /// When worker memory is sampled next (only with `max_worker_memory`).
    next_memory_sample: Option<Instant>,
    stats: Stats,
}

/// Counters for operators (see [`Snapshot`]).
#[derive(Debug, Default)]
struct Stats {
    restarts: BTreeMap<&'static str, u64>,
    last_restart: Option<(WorkerId, Option<i32>, Reason, Instant)>,
    boots: u64,
    boot_seconds: f64,
    reloads: u64,
    reload_failures: u64,
    reload_seconds: f64,
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
            quick_kills: 0,
            last_boot_failure: None,
            spawn_after: None,
            stop: None,
            drain_until: None,
            announced: false,
            next_memory_sample: memory_start(now),
            stats: Stats::default(),
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
            Event::Exited { pid, status } => self.on_exited(pid, status, now, &mut out),
            Event::Memory { samples } => self.on_memory(samples),
            // Deadlines are judged only here: the loop sends a Tick after it has read every
            // message that arrived, so a heartbeat waiting further down the queue is never
            // mistaken for a missing one.
            Event::Tick => {
                self.end_drain(now, &mut out);
                self.expire(now, &mut out);
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
            .filter(|_| self.stop.is_none() && self.short_of_target());
        let stop = self.stop.map(|s| s.deadline);
        let lifetimes = self.workers.iter().filter_map(Worker::lifetime_end);
        let memory = self.next_memory_sample.filter(|_| self.stop.is_none());
        workers
            .chain(spawn)
            .chain(stop)
            .chain(self.drain_until)
            .chain(lifetimes)
            .chain(memory)
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

    // ---- stop ---------------------------------------------------------------------------

    fn on_stop(&mut self, mode: StopMode, code: i32, now: Instant, out: &mut Vec<Action>) {
        let drain = self.policy.drain_before_stop;
        match self.stop {
            None if self.drain_until.take().is_some() => {
                info!("second stop request: ending the drain, stopping now");
                self.begin_stop(mode, code, now, out);
            }
            // Only a master that has served can have been put in a load balancer's rotation.
            None if mode == StopMode::Graceful && !drain.is_zero() && self.announced => {
                info!(drain = ?drain, "draining before the graceful stop: the workers keep serving while /readyz answers 503; a second SIGTERM or SIGINT stops at once");
                self.drain_until = Some(now + drain);
            }
            None => self.begin_stop(mode, code, now, out),
            Some(s) if s.mode == StopMode::Graceful => {
                info!("second stop request: escalating to a quick stop");
                self.begin_quick(now, out);
            }
            Some(_) => {
                warn!("stop requested again during a quick stop: killing every worker now");
                for w in &mut self.workers {
                    kill(w, out);
                }
            }
        }
    }

    fn begin_stop(&mut self, mode: StopMode, code: i32, now: Instant, out: &mut Vec<Action>) {
        let (timeout, stop_signal) = match mode {
            StopMode::Graceful => (self.policy.graceful_timeout, WorkerSignal::Term),
            StopMode::Quick => (self.policy.quick_timeout, WorkerSignal::Quit),
        };
        let deadline = now + timeout;
        info!(mode = ?mode, workers = self.workers.len(), timeout = ?timeout, "stopping");
        self.stop = Some(Stopping {
            mode,
            deadline,
            exit_code: code,
        });
        out.push(Action::CloseListeners);
        for w in &mut self.workers {
            w.retiring.get_or_insert(Reason::Shutdown);
            if w.phase != Phase::Killed {
                signal(w, stop_signal, out);
                w.phase = Phase::Stopping { kill_at: deadline };
            }
        }
    }

    fn end_drain(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.drain_until.is_some_and(|until| now >= until) {
            self.drain_until = None;
            info!("drain over: stopping gracefully");
            self.begin_stop(StopMode::Graceful, exit::OK, now, out);
        }
    }

    fn begin_quick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(stop) = self.stop.as_mut() else {
            return;
        };
        stop.mode = StopMode::Quick;
        stop.deadline = stop.deadline.min(now + self.policy.quick_timeout);
        let deadline = stop.deadline;
        for w in &mut self.workers {
            if w.phase != Phase::Killed {
                signal(w, WorkerSignal::Quit, out);
                w.phase = Phase::Stopping { kill_at: deadline };
            }
        }
    }

    fn give_up(&mut self, failure: &Failure, now: Instant, out: &mut Vec<Action>) {
        let code = failure.exit_code();
        error!(
            attempts = self.boot_failures,
            exit_code = code,
            "giving up: {}; exiting with code {code}",
            failure.give_up_hint()
        );
        self.begin_stop(StopMode::Quick, code, now, out);
    }

    fn maybe_exit(&self, out: &mut Vec<Action>) {
        if let Some(stop) = self.stop {
            if self.workers.is_empty() {
                info!(exit_code = stop.exit_code, "all workers stopped");
                out.push(Action::Exit(stop.exit_code));
            }
        }
    }

    // ---- scaling and reloads -------------------------------------------------------------

    fn on_scale(&mut self, delta: i64) {
        if self.stop.is_some() || self.drain_until.is_some() {
            return;
        }
        let target = (self.policy.target as i64 + delta).clamp(1, u32::MAX as i64) as u32;
        if target != self.policy.target {
            info!(
                from = self.policy.target,
                to = target,
                "target worker count changed"
            );
            self.policy.target = target;
        }
    }

    fn on_reload_requested(&mut self, out: &mut Vec<Action>) {
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

    fn on_reload(&mut self, generation: u64, policy: Policy, workers_changed: bool, now: Instant) {
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

    fn on_reload_aborted(&mut self, out: &mut Vec<Action>) {
        self.loading_config = false;
        self.start_pending_reload(out);
    }

    /// Like a rollback, but nothing was rolled out: no worker of the new generation exists.
    fn on_reload_cannot_start(&mut self, reason: String, out: &mut Vec<Action>) {
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

    fn start_pending_reload(&mut self, out: &mut Vec<Action>) {
        if std::mem::take(&mut self.reload_pending) {
            self.on_reload_requested(out);
        }
    }

    fn check_rollout(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    fn roll_back(&mut self, failure: &Failure, out: &mut Vec<Action>) {
        error!(
            generation = self.current,
            keeping = self.stable,
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

    // ---- spawning and retiring -----------------------------------------------------------

    fn reconcile(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.spawn_missing(now, out);
        self.retire_surplus(now, out);
        self.announce_serving(now, out);
        self.check_rollout(now, out);
    }

    fn spawn_missing(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.spawn_after.is_some_and(|t| now < t) {
            return;
        }
        self.spawn_after = None;
        let target = self.policy.target as usize;
        let ceiling = target + self.policy.max_surge as usize;
        while self.short_of_target() && self.count(Worker::is_live) < ceiling {
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

    fn retire_surplus(&mut self, now: Instant, out: &mut Vec<Action>) {
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
    fn next_to_retire(&self) -> Option<(WorkerId, Reason)> {
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
    fn next_booting_surplus(&self) -> Option<(WorkerId, Reason)> {
        if self.good() <= self.policy.target as usize {
            return None;
        }
        self.workers
            .iter()
            .rev()
            .find(|w| w.is_live() && w.is_booting())
            .map(|w| (w.id, Reason::ScaleDown))
    }

    fn retire(&mut self, id: WorkerId, reason: Reason, now: Instant, out: &mut Vec<Action>) {
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
        signal(w, WorkerSignal::Term, out);
    }

    fn announce_serving(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    // ---- worker lifecycle ----------------------------------------------------------------

    fn on_spawned(&mut self, id: WorkerId, pid: i32, out: &mut Vec<Action>) {
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

    fn on_spawn_failed(
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

    fn on_spawn_aborted(
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

    fn on_message(
        &mut self,
        id: WorkerId,
        message: WorkerMessage,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(w) = self.find(id) else { return };
        match message {
            WorkerMessage::Ready { interface } => {
                w.last_seen = now;
                if mark_ready(w, &interface, now) {
                    // Tell it its max-requests limit, so it reports the moment it gets there
                    // instead of at its next heartbeat.
                    if let Some(limit) = w.request_limit {
                        let line = format!("{{\"type\":\"report_at\",\"requests\":{limit}}}");
                        out.push(Action::SendToWorker { id, line });
                    }
                    let boot = now.saturating_duration_since(w.started).as_secs_f64();
                    self.stats.boots += 1;
                    self.stats.boot_seconds += boot;
                }
            }
            WorkerMessage::Heartbeat {
                requests,
                in_flight,
            } => {
                w.last_seen = now;
                w.stall = None;
                w.requests = requests;
                w.in_flight = in_flight;
                if w.request_limit.is_some_and(|limit| requests >= limit) {
                    mark_recycle(w, Reason::MaxRequests);
                }
            }
            WorkerMessage::BootError { kind, message } => {
                debug!(worker = id, ?kind, message = %message, "boot error reported");
                w.boot_error = Some((kind, message));
            }
            WorkerMessage::Hello { python, engine } => {
                debug!(worker = id, python = ?python, engine = ?engine, "worker runtime started")
            }
            WorkerMessage::Stopping { reason } => {
                debug!(worker = id, reason = %reason, "worker stopping")
            }
            WorkerMessage::Stalled { silent, in_flight } => {
                warn!(
                    worker = id,
                    pid = w.pid,
                    silent,
                    in_flight = %list(&in_flight),
                    "worker event loop stalled: its watchdog thread reports no loop activity for {silent:.1}s"
                );
                w.stall = Some((now, silent, in_flight));
            }
            WorkerMessage::Unknown => debug!(worker = id, "unknown message type ignored"),
        }
        let current = self.current;
        let last_failure = self.last_boot_failure;
        let Some(w) = self.find(id) else { return };
        if w.is_ready() && w.generation == current {
            // Only a worker that newly proves it stays up clears the failure count: one that dies
            // right after becoming ready is a failed boot too (see `on_exited`), and workers that
            // were stable all along say nothing about the slot that keeps failing.
            let proven = !w.stable && w.ready_at.is_some_and(|t| now >= t + CRASH_GRACE);
            w.stable |= proven;
            let started_after_failure = last_failure.is_none_or(|t| w.started >= t);
            self.ever_ready = true;
            if proven && started_after_failure {
                self.boot_failures = 0;
                self.quick_kills = 0;
            }
        }
    }

    fn on_exited(&mut self, pid: i32, status: ExitStatus, now: Instant, out: &mut Vec<Action>) {
        let Some(pos) = self.workers.iter().position(|w| w.pid == Some(pid)) else {
            debug!(pid, %status, "reaped a child that is not a worker");
            return;
        };
        let w = self.workers.remove(pos);
        self.count_exit(&w, now);
        match w.retiring {
            Some(Reason::BootTimeout) => self.on_boot_failure(&w, Failure::Timeout, now, out),
            Some(reason) => report_retired(&w, reason, status),
            None if w.ready_at.is_none() => {
                let failure = Failure::from_exit(w.boot_error.clone(), status);
                self.on_boot_failure(&w, failure, now, out);
            }
            None => {
                report_crash(&w, status);
                if w.ready_at.is_some_and(|t| now < t + CRASH_GRACE) {
                    // SIGKILL comes from outside (the OOM killer, an operator): as many as there
                    // are workers are replaced at once (all killed together, F2); only a run of
                    // more than that, e.g. a memory limit too small for one worker, backs off.
                    self.on_quick_crash(&w, status, now, out);
                }
            }
        }
    }

    fn count_exit(&mut self, w: &Worker, now: Instant) {
        let reason = match (w.retiring, w.ready_at) {
            (Some(reason), _) => reason,
            (None, None) => Reason::BootFailure,
            (None, Some(_)) => Reason::Crash,
        };
        *self.stats.restarts.entry(reason.as_str()).or_default() += 1;
        self.stats.last_restart = Some((w.id, w.pid, reason, now));
    }

    /// What operators see: workers, counters, generation.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        let s = &self.stats;
        Snapshot {
            uptime: now.saturating_duration_since(self.started),
            target: self.policy.target,
            generation: self.current,
            reloading: self.rollout.is_some() || self.loading_config,
            stopping: self.stop.is_some() || self.drain_until.is_some(),
            workers: self.workers.iter().map(|w| status_of(w, now)).collect(),
            restarts: s.restarts.clone(),
            restart_reasons: Reason::ALL.map(Reason::as_str).to_vec(),
            last_restart: s.last_restart.map(|(worker, pid, reason, at)| LastRestart {
                worker,
                pid,
                reason: reason.as_str(),
                ago: now.saturating_duration_since(at),
            }),
            boots: s.boots,
            boot_seconds_total: s.boot_seconds,
            reloads: s.reloads,
            reload_failures: s.reload_failures,
            reload_seconds_total: s.reload_seconds,
        }
    }

    /// A worker died right after becoming ready. The first `tolerated` such deaths in a row are
    /// replaced at once; while they keep coming, replacements back off like failed boots. During
    /// a reload it is a failed boot of the new generation (which may roll the reload back).
    fn on_quick_crash(
        &mut self,
        w: &Worker,
        status: ExitStatus,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.rollout.is_some() {
            return self.on_boot_failure(w, Failure::DiedAfterReady(status), now, out);
        }
        if self.stop.is_some() || w.generation != self.current {
            return;
        }
        // Kills from outside are counted apart: they say nothing about whether the app boots.
        let (count, tolerated) = if status.is_sigkill() {
            self.quick_kills += 1;
            (self.quick_kills, self.policy.target.max(1))
        } else {
            self.boot_failures += 1;
            (self.boot_failures, 1)
        };
        self.last_boot_failure = Some(now);
        if count > tolerated {
            let delay = self.policy.backoff(count - tolerated);
            warn!(
                worker = w.id,
                retry_in = ?delay,
                "workers keep dying right after becoming ready: backing off before the next one"
            );
            self.spawn_after = Some(now + delay);
        }
    }

    fn on_boot_failure(
        &mut self,
        w: &Worker,
        failure: Failure,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if self.stop.is_some() || w.generation != self.current {
            debug!(worker = w.id, "boot failure of a worker no longer wanted");
            return;
        }
        self.boot_failures += 1;
        self.last_boot_failure = Some(now);
        let delay = self.policy.backoff(self.boot_failures);
        let attempts = self.policy.startup_attempts;
        let decisive = !self.ever_ready || self.rollout.is_some();
        if decisive && (failure.is_hopeless() || self.boot_failures >= attempts) {
            // A hopeless failure (no interpreter, no uvicorn) is said once, by the give-up line.
            if !failure.is_hopeless() {
                error!(
                    worker = w.id,
                    pid = w.pid,
                    "{}",
                    describe_boot_failure(&failure)
                );
            }
            if self.ever_ready {
                self.roll_back(&failure, out);
            } else {
                self.give_up(&failure, now, out);
            }
            return;
        }
        error!(
            worker = w.id,
            pid = w.pid,
            attempt = self.boot_failures,
            retry_in = ?delay,
            "{}",
            describe_boot_failure(&failure)
        );
        self.spawn_after = Some(now + delay);
    }

    // ---- recycling ----------------------------------------------------------------------

    fn sample_memory(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(due) = self.next_memory_sample else {
            return;
        };
        if now < due || self.stop.is_some() {
            return;
        }
        self.next_memory_sample = Some(now + self.policy.recycle.memory_interval);
        let workers: Vec<(WorkerId, i32)> = self
            .workers
            .iter()
            .filter(|w| w.is_live() && w.is_ready() && w.recycle.is_none())
            .filter_map(|w| Some((w.id, w.pid?)))
            .collect();
        if !workers.is_empty() {
            out.push(Action::MeasureMemory { workers });
        }
    }

    fn on_memory(&mut self, samples: Vec<(WorkerId, Option<u64>)>) {
        let Some(limit) = self.policy.recycle.max_memory else {
            return;
        };
        for (id, pss) in samples {
            let Some(w) = self.find(id) else { continue };
            w.pss = pss;
            match pss {
                Some(bytes) if bytes > limit => w.memory_strikes += 1,
                Some(_) => w.memory_strikes = 0,
                None => {}
            }
            if w.memory_strikes >= MEMORY_STRIKES {
                mark_recycle(w, Reason::Memory);
            }
        }
    }

    // ---- deadlines -----------------------------------------------------------------------

    fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let policy = self.policy.clone();
        for w in &mut self.workers {
            expire_worker(w, &policy, now, out);
        }
        if let Some(stop) = self.stop {
            if now >= stop.deadline {
                for w in &mut self.workers {
                    kill(w, out);
                }
            }
        }
    }
}

fn expire_worker(w: &mut Worker, policy: &Policy, now: Instant, out: &mut Vec<Action>) {
    if w.lifetime_end().is_some_and(|end| now >= end) {
        mark_recycle(w, Reason::Lifetime);
    }
    match w.phase {
        Phase::Booting { deadline } if now >= deadline => {
            error!(
                worker = w.id,
                pid = w.pid,
                boot_timeout = ?policy.boot_timeout,
                "worker did not become ready within the boot timeout: dumping its traceback, then killing it"
            );
            dump(w, Reason::BootTimeout, now + policy.dump_grace, out);
        }
        Phase::Ready if now >= w.last_seen + w.timeout => {
            report_liveness_failure(w, now);
            dump(w, Reason::Liveness, now + policy.dump_grace, out);
        }
        Phase::Dumping { kill_at } if now >= kill_at => kill(w, out),
        Phase::Stopping { kill_at } if now >= kill_at => {
            warn!(
                worker = w.id,
                pid = w.pid,
                "worker did not stop in time: sending SIGKILL"
            );
            kill(w, out);
        }
        _ => {}
    }
}

/// Marks a booting worker ready; false if it was not booting.
fn mark_ready(w: &mut Worker, interface: &str, now: Instant) -> bool {
    if !w.is_booting() {
        return false;
    }
    w.phase = Phase::Ready;
    w.ready_at = Some(now);
    info!(
        worker = w.id,
        pid = w.pid,
        generation = w.generation,
        interface,
        boot = ?now.saturating_duration_since(w.started),
        "worker ready"
    );
    true
}

fn status_of(w: &Worker, now: Instant) -> WorkerStatus {
    let state = match (w.phase, w.recycle) {
        (Phase::Booting { .. }, _) => "booting",
        (Phase::Ready, Some(_)) => "recycling",
        (Phase::Ready, None) => "ready",
        (Phase::Dumping { .. }, _) => "dumping",
        (Phase::Stopping { .. }, _) => "stopping",
        (Phase::Killed, _) => "killed",
    };
    WorkerStatus {
        id: w.id,
        pid: w.pid,
        generation: w.generation,
        state,
        age: now.saturating_duration_since(w.started),
        heartbeat_age: now.saturating_duration_since(w.last_seen),
        requests: w.requests,
        in_flight: w.in_flight,
        pss: w.pss,
        leaving: w.retiring.or(w.recycle).map(Reason::as_str),
    }
}

/// Says what the missing heartbeats mean: a blocked event loop in a live process (its watchdog
/// thread still reported recently) or a process that answers nothing at all.
fn report_liveness_failure(w: &Worker, now: Instant) {
    let silent = now.saturating_duration_since(w.last_seen);
    let recent = w.timeout.min(std::time::Duration::from_secs(5));
    let stall = w
        .stall
        .as_ref()
        .filter(|(at, _, _)| now.saturating_duration_since(*at) <= recent);
    match stall {
        Some((_, _, in_flight)) => error!(
            worker = w.id,
            pid = w.pid,
            silent = ?silent,
            timeout = ?w.timeout,
            in_flight = %list(in_flight),
            "worker event loop blocked: no heartbeat for {silent:.1?} (timeout {:?}) although the process is alive (its watchdog thread still reports); in flight: {}; dumping its traceback, then killing it",
            w.timeout,
            list(in_flight)
        ),
        None => error!(
            worker = w.id,
            pid = w.pid,
            silent = ?silent,
            timeout = ?w.timeout,
            in_flight = w.in_flight,
            "worker unresponsive: no heartbeat for {silent:.1?} (timeout {:?}) and no word from its watchdog thread either: the process is stopped, starved of CPU, or a C extension holds the GIL ({} request(s) in flight at its last heartbeat); dumping its traceback, then killing it",
            w.timeout,
            w.in_flight
        ),
    }
}

/// Requests as one line: "GET /a (1.0s), POST /b (0.2s)", or "none known".
fn list(requests: &[crate::worker::InFlightRequest]) -> String {
    if requests.is_empty() {
        return "none known".to_string();
    }
    requests
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks a serving worker for replacement; the replacement boots before it is retired.
fn mark_recycle(w: &mut Worker, reason: Reason) {
    if w.recycle.is_some() || w.retiring.is_some() || !w.is_ready() {
        return;
    }
    w.recycle = Some(reason);
    info!(
        worker = w.id,
        pid = w.pid,
        reason = reason.as_str(),
        requests = w.requests,
        pss = w.pss,
        "recycling worker: its replacement starts first"
    );
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

fn report_retired(w: &Worker, reason: Reason, status: ExitStatus) {
    let why = reason.as_str();
    match reason {
        Reason::Liveness => {
            error!(worker = w.id, pid = w.pid, %status, reason = why, "worker killed after its liveness timeout; replacing it")
        }
        _ if status.is_sigkill() => {
            warn!(worker = w.id, pid = w.pid, %status, reason = why, "worker killed at its deadline")
        }
        _ => {
            info!(worker = w.id, pid = w.pid, %status, reason = why, requests = w.requests, "worker exited")
        }
    }
}

fn report_crash(w: &Worker, status: ExitStatus) {
    if status.is_sigkill() {
        error!(
            worker = w.id,
            pid = w.pid,
            %status,
            reason = Reason::Crash.as_str(),
            "worker was killed by SIGKILL: most likely the out-of-memory killer (see `dmesg` or the container's memory limit); replacing it"
        );
    } else {
        error!(worker = w.id, pid = w.pid, %status, reason = Reason::Crash.as_str(), "worker died unexpectedly; replacing it");
    }
}
