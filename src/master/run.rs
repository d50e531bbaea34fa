//! The master loop: one `poll` over the signal self-pipe, the worker channels and the operations
//! sockets (control socket, admin listener and their connections), with the timeout set to the
//! nearest deadline of the state machine or of a connection. On every wakeup, in this order: take
//! the signals, read the channels, reap every exited child (draining its channel first so a
//! `boot_error` is seen before the exit), let the state machine see all that, then serve the
//! operations sockets from a fresh snapshot (a bounded amount of work: a flood delays answers,
//! never supervision), then tick. I/O is read before deadlines are judged, so a master that was
//! itself stopped for a while does not kill workers whose heartbeats are merely unread.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, error, warn};

use super::channels::Channels;
use super::event::{Action, Event, StopMode, WorkerId, WorkerSignal};
use super::launch::worker_target;
use super::policy::Policy;
use super::state::Master;
use crate::config::{self, Config, RunArgs};
use crate::errors::error_chain;
use crate::ops::{MasterRequest, Ops, ReloadOutcome, Token};
use crate::sockets::{self, Listener};
use crate::sys::environ::env_snapshot;
use crate::sys::exec::ExecError;
use crate::sys::reap::reap_all;
use crate::sys::signals::{Sig, Signals};
use crate::systemd::{Notifier, Observed};
use crate::worker::{python, ExecSpawner, SpawnError, Spawned, Spawner, WorkerSpec};

mod upgrade;
mod zygotes;
pub(super) use upgrade::workers_setting;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("poll failed")]
    Poll(#[source] nix::Error),
}

/// Everything the loop owns besides the state machine.
pub struct Supervisor {
    signals: Signals,
    listeners: Option<Vec<Listener>>,
    spawner: ExecSpawner,
    channels: Channels,
    ops: Ops,
    /// Unreaped worker pids and their ids.
    pids: BTreeMap<i32, WorkerId>,
    specs: BTreeMap<u64, WorkerSpec>,
    config: Config,
    args: RunArgs,
    next_generation: u64,
    /// Seeds the per-worker jitter draws.
    seed: u64,
    /// What systemd is told (nothing without NOTIFY_SOCKET).
    notifier: Notifier,
    /// The in-place upgrade (SIGUSR2), if one is under way.
    upgrade: upgrade::Upgrade,
    /// The zygotes (`spawn = "zygote"`), one per generation that uses them.
    zygotes: zygotes::Zygotes,
}

impl Supervisor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        signals: Signals,
        listeners: Vec<Listener>,
        ops: Ops,
        spawner: ExecSpawner,
        spec: WorkerSpec,
        config: Config,
        args: RunArgs,
        seed: u64,
    ) -> Supervisor {
        let notifier = Notifier::from_env(config.boot_timeout, Instant::now());
        let upgrade = upgrade::Upgrade::new(&config);
        Supervisor {
            signals,
            listeners: Some(listeners),
            spawner,
            channels: Channels::default(),
            ops,
            pids: BTreeMap::new(),
            specs: BTreeMap::from([(0, spec)]),
            config,
            args,
            next_generation: 1,
            seed,
            notifier,
            upgrade,
            zygotes: zygotes::Zygotes::default(),
        }
    }
}

/// What a wakeup found ready.
struct Woken {
    ops: Vec<(Token, PollFlags)>,
    channels: Vec<WorkerId>,
}

/// Runs the loop until the state machine asks to exit; returns the exit code.
pub fn run(sup: Supervisor, policy: Policy) -> Result<i32, RunError> {
    let master = Master::new(policy, Instant::now());
    run_from(sup, master, VecDeque::from([Event::Tick]))
}

/// Runs the loop from `master`, with `queue` as the first events (after an in-place upgrade:
/// the adopted workers, and the rollout to new ones).
pub(super) fn run_from(
    mut sup: Supervisor,
    mut master: Master,
    mut queue: VecDeque<Event>,
) -> Result<i32, RunError> {
    sup.notifier.start(observed(&master));
    // Deadlines are judged as of the moment just before the channels were read: whatever the
    // workers sent by then has been seen. Taking the time later would let a pause of the master
    // (SIGSTOP, starvation) between the read and the Tick count against them.
    let mut read_at = Instant::now();
    loop {
        if let Some(code) = sup.feed(&mut master, &mut queue, read_at) {
            return Ok(code);
        }
        sup.notifier.update(observed(&master), Instant::now());
        sup.forget_unused(&master);
        // A quiet moment (every event handled): the one an in-place upgrade hands over at.
        sup.step_upgrade(&master);
        let watchdog = sup.notifier.next_deadline();
        let woken = sup.wait(master.next_deadline().into_iter().chain(watchdog).min())?;
        read_at = Instant::now();
        sup.collect(&mut queue, &woken.channels);
        sup.step_zygotes(&master, &mut queue);
        // The state machine sees this wakeup's worker events before operators get a snapshot.
        if let Some(code) = sup.feed(&mut master, &mut queue, read_at) {
            return Ok(code);
        }
        sup.serve_ops(&woken.ops, &master, &mut queue);
        queue.push_back(Event::Tick);
    }
}

impl Supervisor {
    /// Feeds every queued event to the state machine and applies its actions (a `Tick` is judged
    /// as of `read_at`); the exit code once it asks to exit, with the listeners and the
    /// operations sockets closed.
    fn feed(
        &mut self,
        master: &mut Master,
        queue: &mut VecDeque<Event>,
        read_at: Instant,
    ) -> Option<i32> {
        while let Some(event) = queue.pop_front() {
            let now = match event {
                Event::Tick => read_at,
                _ => Instant::now(),
            };
            let mut replies = VecDeque::new();
            for action in master.on_event(event, now) {
                if let Some(code) = self.apply(action, &mut replies) {
                    self.close_listeners();
                    self.ops.close();
                    return Some(code);
                }
            }
            // The answers to this event's actions (a spawned pid, a loaded config) come before
            // anything already queued: a TTOU queued behind a TTIN must see the new worker's pid.
            while let Some(reply) = replies.pop_back() {
                queue.push_front(reply);
            }
        }
        None
    }

    /// Blocks until a signal, a channel message, worker output, an operations socket or the
    /// deadline; returns the operations sockets that are ready.
    /// Returns the ready ops sockets and the workers whose channel has something to read (or
    /// hung up): only those are read, so an idle master's work per wakeup does not grow with the
    /// number of workers.
    fn wait(&self, deadline: Option<Instant>) -> Result<Woken, RunError> {
        let now = Instant::now();
        let channels = self.channels.pollable();
        let mut fds = Vec::with_capacity(channels.len() + 1);
        fds.push(PollFd::new(self.signals.fd(), PollFlags::POLLIN));
        fds.extend(
            channels
                .iter()
                .map(|(_, fd)| PollFd::new(*fd, PollFlags::POLLIN)),
        );
        let output = self.spawner.output_fds();
        fds.extend(output.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        let zygotes = self.zygotes.pollable();
        fds.extend(zygotes.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)));
        let ops = self.ops.pollable(now);
        let first_ops = fds.len();
        fds.extend(ops.iter().map(|(_, fd, flags)| PollFd::new(*fd, *flags)));
        fds.extend(
            self.upgrade
                .pollable()
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        let deadline = [
            deadline,
            self.ops.next_deadline(now),
            self.upgrade.deadline(),
            self.zygotes.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                // Round up so that the deadline has passed when we wake.
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        // A poll that ended by its timeout or a signal says nothing about the channels: after a
        // SIGSTOP it returns with the timeout long expired and no readiness reported although
        // heartbeats are waiting. Then every channel is read before deadlines are judged.
        let read_all = match poll(&mut fds, timeout) {
            Ok(n) => n == 0,
            Err(Errno::EINTR) => true,
            Err(e) => return Err(RunError::Poll(e)),
        };
        let ready = fds[first_ops..]
            .iter()
            .zip(&ops)
            .filter_map(|(fd, (token, _, _))| Some((*token, fd.revents()?)))
            .filter(|(_, revents)| !revents.is_empty())
            .collect();
        let channels = fds[1..=channels.len()]
            .iter()
            .zip(&channels)
            .filter(|(fd, _)| read_all || fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, (id, _))| *id)
            .collect();
        Ok(Woken {
            ops: ready,
            channels,
        })
    }

    /// Serves the operations sockets and queues what they ask of the state machine.
    fn serve_ops(
        &mut self,
        ready: &[(Token, PollFlags)],
        master: &Master,
        queue: &mut VecDeque<Event>,
    ) {
        let now = Instant::now();
        // Draining before a graceful stop (`drain_before_stop`) is stopping, for operators: not
        // ready, and no reload or scaling.
        let stopping = master.is_stopping() || master.is_draining();
        if stopping {
            self.ops.refuse_reloads("the master is stopping");
        }
        self.ops.expire(now);
        if ready.is_empty() && !self.ops.has_backlog() {
            return;
        }
        let mut snapshot = master.snapshot(now);
        snapshot.stopping |= stopping;
        let requests = self.ops.on_ready(ready, now, &snapshot);
        queue.extend(requests.into_iter().map(event_for));
    }

    /// Turns whatever happened into events, in the order the module doc gives.
    fn collect(&mut self, queue: &mut VecDeque<Event>, readable: &[WorkerId]) {
        let mut events = Vec::new();
        for (sig, count) in self.signals.take() {
            self.on_signal(sig, count, &mut events);
        }
        for &id in readable {
            self.channels.drain(id, &mut events);
        }
        self.spawner.drain_output();
        self.upgrade.drain();
        // A zygote's boot_error is read before its exit is handled.
        self.read_zygotes(&mut events);
        for (pid, status) in reap_all() {
            if self.upgrade.reaped(pid, status) {
                continue; // the new binary's check
            }
            if self.zygote_reaped(pid, status, &mut events) {
                continue;
            }
            // What the worker said before exiting comes before its exit.
            if let Some(id) = self.pids.remove(&pid) {
                self.channels.drain(id, &mut events);
                self.channels.remove(id);
            }
            events.push(Event::Exited { pid, status });
        }
        queue.extend(events);
    }

    fn on_signal(&mut self, sig: Sig, count: usize, events: &mut Vec<Event>) {
        debug!(signal = sig.name(), count, "signal received");
        match sig {
            Sig::Term => events.push(Event::Stop(StopMode::Graceful)),
            Sig::Int | Sig::Quit => events.push(Event::Stop(StopMode::Quick)),
            Sig::Hup => events.push(Event::ReloadRequested),
            Sig::Ttin => events.push(Event::Scale(count as i64)),
            Sig::Ttou => events.push(Event::Scale(-(count as i64))),
            Sig::Usr1 => crate::logging::reopen(),
            Sig::Usr2 => self.upgrade.request(),
            Sig::Chld => {} // reaping happens on every wakeup
        }
    }

    /// Applies one action; returns the exit code when the master must exit.
    fn apply(&mut self, action: Action, queue: &mut VecDeque<Event>) -> Option<i32> {
        self.tell_systemd(&action);
        match action {
            Action::Spawn { id, generation } => queue.extend(self.spawn(id, generation)),
            Action::Signal { id, pid, signal } => self.signal(id, pid, signal),
            Action::LoadConfig => {
                let reply = self.load_config();
                if reply == Event::ReloadAborted {
                    self.notifier.refused();
                }
                // With the zygote, the rollout waits until the new generation's zygote is ready.
                queue.extend(self.hold_reload(reply));
            }
            Action::MeasureMemory { workers } => queue.push_back(measure_memory(&workers)),
            Action::SendToWorker { id, line } => {
                if let Err(e) = self.channels.send(id, &line) {
                    warn!(worker = id, error = %e, "could not send a message to the worker");
                }
            }
            Action::CloseListeners => self.close_listeners(),
            // Logged by the state machine; `herdsman ctl reload` clients get the outcome.
            Action::Reloaded { generation } => {
                self.upgrade.rolled_out(generation);
                let outcome = ReloadOutcome::Completed { generation };
                self.ops.reload_finished(&outcome);
            }
            Action::ReloadFailed { reason } => {
                self.upgrade.rollout_failed(&reason);
                let outcome = ReloadOutcome::RolledBack { reason };
                self.ops.reload_finished(&outcome);
            }
            Action::Serving => self.check_memory_fit(),
            Action::Exit(code) => {
                self.reap_zygotes();
                return Some(code);
            }
        }
        None
    }

    /// Tells systemd's notifier about an action about to be applied.
    fn tell_systemd(&mut self, action: &Action) {
        match action {
            Action::Spawn { .. } => self.notifier.spawning(self.config.boot_timeout),
            Action::Serving => self.notifier.serving(),
            Action::LoadConfig => self.notifier.reloading(),
            Action::Reloaded { generation } => self.notifier.reloaded(*generation),
            Action::ReloadFailed { reason } => self.notifier.rolled_back(reason),
            _ => {}
        }
    }

    /// Starts worker `id`; the answer, or none yet when it waits for its zygote.
    fn spawn(&mut self, id: WorkerId, generation: u64) -> Option<Event> {
        let Some(spec) = self.specs.get(&generation) else {
            return Some(Event::SpawnFailed {
                id,
                error: format!("generation {generation} has no spec"),
                exec_failed: false,
            });
        };
        if spec.spawn == crate::config::SpawnMode::Zygote {
            return self.spawn_forked(id, generation);
        }
        Some(match self.spawner.spawn(id, spec) {
            Ok(spawned) => self.register(id, spawned),
            Err(err) => spawn_failed(id, &err),
        })
    }

    /// Takes charge of a worker that now runs (exec'd or forked): its pid and its channel.
    pub(super) fn register(&mut self, id: WorkerId, spawned: Spawned) -> Event {
        self.pids.insert(spawned.pid, id);
        self.channels.insert(id, spawned.channel);
        Event::Spawned {
            id,
            pid: spawned.pid,
        }
    }

    fn signal(&self, id: WorkerId, pid: i32, signal: WorkerSignal) {
        // The state machine only names unreaped children, so the pid cannot have been reused.
        if !self.pids.contains_key(&pid) {
            return;
        }
        let sig =
            Signal::try_from(signal.number()).expect("WorkerSignal numbers are valid signals");
        if let Err(e) = kill(Pid::from_raw(pid), sig) {
            warn!(worker = id, pid, signal = sig.as_str(), error = %e, "could not signal worker");
        }
    }

    /// Starts a reload for the state machine; a refused one is answered to `ctl` clients here,
    /// with the reason, since the state machine only hears that it was aborted.
    fn load_config(&mut self) -> Event {
        self.ops.reload_started();
        match self.reload() {
            Ok(event) => event,
            Err(reason) => {
                self.ops.reload_finished(&ReloadOutcome::Refused { reason });
                Event::ReloadAborted
            }
        }
    }

    /// Loads the configuration again; on success registers the new generation's spec. `Err` is
    /// why the reload was refused (already logged).
    fn reload(&mut self) -> Result<Event, String> {
        let env = env_snapshot();
        let config = match config::load(&self.args, &env) {
            Ok(config) => config,
            Err(errors) => {
                let reason = format!("reload refused, the configuration is invalid; the current workers keep serving:\n{errors}");
                error!("{reason}");
                return Err(reason);
            }
        };
        let python = match python::resolve(config.python.as_deref(), &env) {
            Ok(python) => python,
            Err(e) => {
                let reason = format!("reload refused: {e}; the current workers keep serving");
                error!("{reason}");
                return Err(reason);
            }
        };
        if config.binds != self.config.binds || config.backlog != self.config.backlog {
            warn!("the listeners (bind, backlog) cannot change on reload: restart herdsman to apply that change; keeping the current listeners");
        }
        if config.log_file != self.config.log_file || config.pidfile != self.config.pidfile {
            warn!("log_file and pidfile cannot change on reload: restart herdsman to apply that change; keeping the current ones");
        }
        if config.control_socket != self.config.control_socket
            || config.admin_bind != self.config.admin_bind
        {
            warn!("control_socket and admin_bind cannot change on reload: restart herdsman to apply that change; keeping the current ones");
        }
        self.ops.set_ready_min(config.ready_min);
        let workers_changed = config.workers != self.config.workers;
        let target = if workers_changed {
            worker_target(config.workers)
        } else {
            1
        };
        let policy = Box::new(Policy::from_config(&config, target, self.seed));
        let generation = self.next_generation;
        self.next_generation += 1;
        self.specs
            .insert(generation, WorkerSpec::new(&config, python, &env));
        self.config = config;
        Ok(Event::Reload {
            generation,
            policy,
            workers_changed,
        })
    }

    fn close_listeners(&mut self) {
        if let Some(listeners) = self.listeners.take() {
            sockets::close_all(listeners);
            self.spawner.set_listeners(Vec::new());
            debug!("listeners closed");
        }
    }

    /// Warns if the first workers, measured now they are ready, do not fit the memory limit.
    fn check_memory_fit(&self) {
        let pids: Vec<i32> = self.pids.keys().copied().collect();
        crate::sizing::check_fit(&pids, pids.len() as u32, self.config.max_surge);
    }

    fn forget_unused(&mut self, master: &Master) {
        let mut keep = master.generations_in_use();
        keep.extend(self.zygotes.reload_generation());
        self.specs.retain(|generation, _| keep.contains(generation));
        self.stop_unused_zygotes(&keep);
    }
}

/// The state machine's event for what a control client asked.
fn event_for(request: MasterRequest) -> Event {
    match request {
        MasterRequest::Reload => Event::ReloadRequested,
        MasterRequest::SetTarget(workers) => Event::SetTarget(workers),
        MasterRequest::GracefulStop => Event::Stop(StopMode::Graceful),
        MasterRequest::QuickStop => Event::Stop(StopMode::Quick),
    }
}

/// What systemd's notifier needs to know of the state machine.
fn observed(master: &Master) -> Observed {
    let workers = master.workers();
    let ready = || workers.iter().filter(|w| w.is_live() && w.is_ready());
    Observed {
        stopping: master.is_stopping(),
        draining: master.is_draining(),
        reloading: master.is_reloading(),
        ready: ready().count(),
        fresh: ready()
            .filter(|w| w.generation == master.generation())
            .count(),
        live: workers.len(),
        target: master.target(),
        generation: master.generation(),
    }
}

/// Samples the PSS of each worker.
fn measure_memory(workers: &[(WorkerId, i32)]) -> Event {
    let samples = workers
        .iter()
        .map(|&(id, pid)| (id, crate::sys::proc::pss_bytes(pid)))
        .collect();
    Event::Memory { samples }
}

/// The answer to a spawn that did not produce a process.
pub(super) fn spawn_failed(id: WorkerId, err: &SpawnError) -> Event {
    Event::SpawnFailed {
        id,
        error: error_chain(err),
        exec_failed: matches!(err, SpawnError::Exec(ExecError::Exec { .. })),
    }
}
