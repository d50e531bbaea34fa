//! The loop's side of the in-place upgrade (SIGUSR2); the mechanics are in `crate::upgrade`.
//!
//! In the old image, SIGUSR2 only records a request. The loop acts on it at its next quiet
//! moment (every event handled, every action applied): it refuses while an upgrade or a reload
//! is under way, while the master is starting or stopping, or when no executable file is at the
//! binary's path; otherwise it starts the new binary's check as a child and goes on serving.
//! The check's exit arrives through the normal reaping. Once it passed, at the next quiet
//! moment where nothing else is changing the workers, the state goes into the handover and the
//! new binary is exec'd in place. A signal that the loop has not taken yet defers the exec to
//! the following quiet moment. Every failure is logged and leaves the old image serving.
//!
//! In the new image, [`Supervisor::adopt`] takes the handed-over workers (pids, channels,
//! output pipes, the spec of their generation) and the rollout to the next generation runs as
//! a reload; its end is reported as the end of the upgrade.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::Supervisor;
use crate::config::{self, Config, WorkerCount};
use crate::errors::error_chain;
use crate::master::state::Master;
use crate::master::workers::{Phase, Reason, Worker};
use crate::ops::OpsCounters;
use crate::sockets::Listener;
use crate::sys::environ::env_snapshot;
use crate::sys::reap::ExitStatus;
use crate::upgrade::{
    exec_in_place, Binary, Check, Deferred, HandedListener, HandedOutput, HandedPhase,
    HandedWorker, Handover, Outcome, SocketFileId, VERSION,
};
use crate::worker::WorkerSpec;

/// Why the state could not be put into a handover; the upgrade is abandoned and this image
/// keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum HandoverBuildError {
    /// The current generation's worker spec is gone.
    #[error("generation {generation} has no spec")]
    FindSpec { generation: u64 },
    /// A worker cannot be handed over yet (it has no pid, or no channel, yet).
    #[error("worker {id} has no {missing} yet")]
    HandWorker { id: u64, missing: &'static str },
}

/// Where an upgrade stands, in this image.
pub(in crate::master) struct Upgrade {
    binary: Binary,
    requested: bool,
    stage: Stage,
    /// The pidfile written at the master's first start, kept for its whole life.
    pidfile: Option<PathBuf>,
}

enum Stage {
    Idle,
    /// The new binary's check runs.
    Checking(Check),
    /// The check passed: hand over at the next quiet moment.
    Passed,
    /// The new image rolls the adopted workers over to `generation`.
    RollingOut {
        generation: u64,
        started: Instant,
    },
}

impl Upgrade {
    /// Remembers the binary to exec, and what the master set up at start from `config`.
    pub(in crate::master) fn new(config: &Config) -> Upgrade {
        Upgrade {
            binary: Binary::remember(),
            requested: false,
            stage: Stage::Idle,
            pidfile: config.pidfile.clone(),
        }
    }

    /// SIGUSR2: acted on at the next quiet moment.
    pub(super) fn request(&mut self) {
        self.requested = true;
    }

    /// The check's output pipe, to poll with the channels.
    pub(super) fn pollable(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match &self.stage {
            Stage::Checking(check) => check.pollable(),
            _ => None,
        }
    }

    /// When the check is killed if it has not finished.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.stage {
            Stage::Checking(check) => check.deadline(),
            _ => None,
        }
    }

    pub(super) fn drain(&mut self) {
        if let Stage::Checking(check) = &mut self.stage {
            check.drain();
        }
    }

    /// Takes the check's exit; returns whether `pid` was the check.
    pub(super) fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        match &mut self.stage {
            Stage::Checking(check) => check.reaped(pid, status),
            _ => false,
        }
    }

    /// A rollout finished: the upgrade's, if it is the one under way.
    pub(super) fn rolled_out(&mut self, generation: u64) {
        if let Stage::RollingOut {
            generation: ours,
            started,
        } = self.stage
        {
            if ours == generation {
                info!(
                    generation,
                    pid = std::process::id(),
                    duration = ?started.elapsed(),
                    "upgrade complete: the new binary serves with new workers"
                );
                self.stage = Stage::Idle;
            }
        }
    }

    /// A rollout was rolled back: the upgrade's, if one is under way (one at a time).
    pub(super) fn rollout_failed(&mut self, reason: &str) {
        if let Stage::RollingOut { generation, .. } = self.stage {
            error!(
                generation,
                pid = std::process::id(),
                "upgrade failed: the new binary runs, but its workers could not start ({reason}); the previous workers keep serving"
            );
            self.stage = Stage::Idle;
        }
    }
}

impl Supervisor {
    /// At a quiet moment of the loop: starts a requested upgrade, takes the check's outcome,
    /// hands over once it passed. Returns only if this image goes on.
    pub(super) fn step_upgrade(&mut self, master: &Master) {
        let now = Instant::now();
        if std::mem::take(&mut self.upgrade.requested) {
            self.start_upgrade(master, now);
        }
        if let Stage::Checking(check) = &mut self.upgrade.stage {
            check.expire(now);
            match check.outcome() {
                None => return,
                Some(Outcome::Passed) => {
                    info!("upgrade: the new binary passed its check");
                    self.upgrade.stage = Stage::Passed;
                }
                Some(failed) => {
                    report_failed_check(&self.upgrade.binary, failed);
                    self.upgrade.stage = Stage::Idle;
                }
            }
        }
        if matches!(self.upgrade.stage, Stage::Passed) {
            self.hand_over(master, now);
        }
    }

    fn start_upgrade(&mut self, master: &Master, now: Instant) {
        let refused = match &self.upgrade.stage {
            Stage::Idle => master.upgrade_blocker(),
            Stage::RollingOut { .. } => Some("the previous upgrade is still replacing the workers"),
            Stage::Checking(_) | Stage::Passed => Some("an upgrade is already in progress"),
        };
        if let Some(why) = refused {
            warn!("upgrade refused: {why}; send SIGUSR2 again later");
            return;
        }
        let binary = &self.upgrade.binary;
        let path = binary.path().display().to_string();
        let started = binary
            .check()
            .and_then(|()| Check::start(binary, &env_snapshot(), now));
        match started {
            Ok(check) => {
                info!(path, pid = check.pid(), "upgrade: checking the new binary");
                self.upgrade.stage = Stage::Checking(check);
            }
            Err(e) => error!(
                path,
                "upgrade refused: {}; the current master keeps serving",
                error_chain(&e)
            ),
        }
    }

    /// Writes the handover and execs the new binary; comes back only if that did not happen.
    fn hand_over(&mut self, master: &Master, now: Instant) {
        if let Some(why) = master.upgrade_blocker() {
            warn!("upgrade abandoned: {why}; send SIGUSR2 again later");
            self.notifier.upgrade_abandoned(why);
            self.upgrade.stage = Stage::Idle;
            return;
        }
        if self.zygote_spawns_pending() {
            // Workers waiting for their zygote have no pid to hand over yet: wait for them (the
            // zygote's answer, or its boot timeout, wakes the loop).
            debug!("upgrade: waiting for the zygote to fork the workers it owes");
            return;
        }
        let mut handover = match self.handover(master, now) {
            Ok(handover) => handover,
            Err(why) => {
                error!("upgrade abandoned: {why}; the current master keeps serving");
                self.notifier.upgrade_abandoned(&why.to_string());
                self.upgrade.stage = Stage::Idle;
                return;
            }
        };
        self.spawner.flush_output();
        let binary = &self.upgrade.binary;
        info!(
            path = %binary.path().display(),
            workers = handover.workers.len(),
            "upgrade: handing over to the new binary"
        );
        // systemd (Type=notify-reload) sees the upgrade as a reload; the new image, or this one
        // if the exec does not happen, answers READY=1.
        self.notifier.upgrading();
        let signals = &self.signals;
        let env: Vec<_> = std::env::vars_os().collect();
        match exec_in_place(binary, &mut handover, &env, || signals.pending()) {
            Ok(Deferred) => {
                debug!("upgrade: a signal came in; handing over at the next quiet moment")
            }
            Err(e) => {
                let why = error_chain(&e);
                error!("upgrade failed: {why}; the current master keeps serving");
                self.notifier.upgrade_abandoned(&why);
                self.upgrade.stage = Stage::Idle;
            }
        }
    }

    /// The state the new image takes over.
    fn handover(&self, master: &Master, now: Instant) -> Result<Handover, HandoverBuildError> {
        let generation = master.generation();
        let spec = self
            .specs
            .get(&generation)
            .ok_or(HandoverBuildError::FindSpec { generation })?;
        let workers = master
            .workers()
            .iter()
            .map(|w| self.handed_worker(w, now))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = self.spawner.output_pipes().into_iter();
        let (mut counters, quarantine) = master.handed_records(now);
        let ops = self.ops.counters();
        counters.reloads_refused = ops.reloads_refused;
        counters.shed_control = ops.shed_control;
        counters.shed_admin = ops.shed_admin;
        Ok(Handover {
            version: VERSION,
            pid: std::process::id(),
            uptime_ms: millis(master.uptime(now)),
            signal_mask: Vec::new(), // filled in right before exec
            runtime_dir: self.spawner.script().parent().map(PathBuf::from),
            pidfile: self.upgrade.pidfile.clone(),
            config: config::render(&self.config),
            binds: self.config.binds.iter().map(Into::into).collect(),
            backlog: self.config.backlog,
            config_workers: workers_setting(self.config.workers),
            target: master.target(),
            next_worker_id: master.next_worker_id(),
            generation,
            spec: spec.into(),
            listeners: self
                .listeners
                .iter()
                .flatten()
                .map(handed_listener)
                .collect(),
            workers,
            outputs: outputs
                .map(|(worker, pid, fd)| HandedOutput { worker, pid, fd })
                .collect(),
            counters,
            quarantine,
        })
    }

    fn handed_worker(&self, w: &Worker, now: Instant) -> Result<HandedWorker, HandoverBuildError> {
        let missing = |missing| HandoverBuildError::HandWorker { id: w.id, missing };
        let pid = w.pid.ok_or_else(|| missing("pid"))?;
        let remaining = |at: Instant| millis(at.saturating_duration_since(now));
        let phase = match (w.phase, w.retiring) {
            (Phase::Booting { .. }, None) => HandedPhase::Booting,
            (Phase::Ready, None) => HandedPhase::Ready,
            (phase, reason) => HandedPhase::Stopping {
                reason: reason.unwrap_or(Reason::Shutdown).as_str().to_string(),
                kill_in_ms: match phase {
                    Phase::Dumping { kill_at } | Phase::Stopping { kill_at } => remaining(kill_at),
                    _ => 0,
                },
            },
        };
        Ok(HandedWorker {
            id: w.id,
            pid,
            generation: w.generation,
            phase,
            channel_fd: self
                .channels
                .raw_fd(w.id)
                .ok_or_else(|| missing("channel"))?,
            age_ms: millis(now.saturating_duration_since(w.started)),
            ready_ms: w.ready_at.map(|t| millis(now.saturating_duration_since(t))),
            requests: w.requests,
            timeout_ms: millis(w.timeout),
            inflight_fd: self.inflight.get(&pid).map(AsRawFd::as_raw_fd),
        })
    }

    /// A new image's loop: takes over the workers of `handover` (pids, channels, in-flight
    /// files, output pipes), the operations layer's counters and the quarantine for new workers,
    /// with the spec of their generation, and, when `next` is given, makes it the spec of the
    /// following generation, whose rollout is the upgrade's. Returns that generation.
    pub(in crate::master) fn adopt(
        &mut self,
        handover: &Handover,
        next: Option<WorkerSpec>,
        rolled_back: Option<&str>,
        now: Instant,
    ) -> Option<u64> {
        for w in &handover.workers {
            self.pids.insert(w.pid, w.id);
            // SAFETY: the handover names this fd as the channel of this worker only; intake
            // checked that it is open and named once, and nothing else in this image owns it.
            let channel = unsafe { OwnedFd::from_raw_fd(w.channel_fd) };
            self.channels.insert(w.id, channel);
            if let Some(fd) = w.inflight_fd {
                // SAFETY: as for the channel: open, named once, owned by nothing else.
                let inflight = unsafe { OwnedFd::from_raw_fd(fd) };
                self.inflight.insert(w.pid, inflight);
            }
        }
        let c = &handover.counters;
        self.ops.restore_counters(OpsCounters {
            reloads_refused: c.reloads_refused,
            shed_control: c.shed_control,
            shed_admin: c.shed_admin,
        });
        // New workers get the quarantine in their in-flight file, as in the previous image.
        let quarantined: Vec<String> = handover
            .quarantine
            .iter()
            .filter(|r| r.quarantined_for_ms.is_some())
            .map(|r| r.request.clone())
            .collect();
        self.spawner.set_quarantine(&quarantined);
        for output in &handover.outputs {
            // SAFETY: as for the channels: open, named once, owned by nothing else.
            let read = unsafe { OwnedFd::from_raw_fd(output.fd) };
            self.spawner.adopt_output(output.worker, output.pid, read);
        }
        let adopted = handover.generation;
        self.specs = [(adopted, handover.spec.clone().into())].into();
        self.next_generation = adopted + 1;
        let rollout = next.map(|spec| {
            let generation = self.next_generation;
            self.specs.insert(generation, spec);
            self.next_generation += 1;
            self.upgrade.stage = Stage::RollingOut {
                generation,
                started: now,
            };
            generation
        });
        // The previous image's RELOADING=1 is answered once the rollout ends (or now).
        match rolled_back {
            Some(reason) => {
                self.notifier.resumed(true);
                self.notifier.upgrade_abandoned(reason);
            }
            None => self.notifier.resumed(rollout.is_some()),
        }
        rollout
    }
}

/// Logs why the check failed, with what it wrote.
fn report_failed_check(binary: &Binary, outcome: Outcome) {
    let path = binary.path().display().to_string();
    match outcome {
        Outcome::Passed => {}
        Outcome::Failed { status, output } => error!(
            path,
            %status,
            "upgrade refused: the new binary's check failed ({status}); the current master keeps serving; it said:\n{output}"
        ),
        Outcome::TimedOut { output } => error!(
            path,
            "upgrade refused: the new binary's check did not finish within {:?} and was killed; the current master keeps serving; it said:\n{output}",
            crate::upgrade::CHECK_TIMEOUT
        ),
    }
}

fn handed_listener(listener: &Listener) -> HandedListener {
    HandedListener {
        fd: listener.fd().as_raw_fd(),
        bind: listener.spec().into(),
        address: listener.local().into(),
        socket_file: listener
            .created_file()
            .map(|(path, dev, ino)| SocketFileId {
                path: path.to_path_buf(),
                dev,
                ino,
            }),
    }
}

/// `workers` as the handover says it: a number, or `None` for `auto`.
pub(in crate::master) fn workers_setting(count: WorkerCount) -> Option<u32> {
    match count {
        WorkerCount::Fixed(n) => Some(n.get()),
        WorkerCount::Auto => None,
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}
