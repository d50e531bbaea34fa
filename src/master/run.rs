//! The master loop: one `poll` over the signal self-pipe and the worker channels, with the
//! timeout set to the state machine's nearest deadline. On every wakeup, in this order: take
//! the signals, read the channels, reap every exited child (draining its channel first so a
//! `boot_error` is seen before the exit), then tick. I/O is read before deadlines are judged, so
//! a master that was itself stopped for a while does not kill workers whose heartbeats are
//! merely unread.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, error, warn};

use super::channels::Channels;
use super::event::{Action, Event, StopMode, WorkerId, WorkerSignal};
use super::policy::Policy;
use super::state::Master;
use crate::cli::RunArgs;
use crate::config::{self, Config};
use crate::sockets::{self, Listener};
use crate::sys::exec::ExecError;
use crate::sys::reap::reap_all;
use crate::sys::signals::{Sig, Signals};
use crate::systemd::Notifier;
use crate::worker::{python, ExecSpawner, SpawnError, Spawner, WorkerSpec};

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
}

impl Supervisor {
    pub fn new(
        signals: Signals,
        listeners: Vec<Listener>,
        spawner: ExecSpawner,
        spec: WorkerSpec,
        config: Config,
        args: RunArgs,
        seed: u64,
    ) -> Supervisor {
        let notifier = Notifier::from_env(config.boot_timeout, Instant::now());
        Supervisor {
            signals,
            listeners: Some(listeners),
            spawner,
            channels: Channels::default(),
            pids: BTreeMap::new(),
            specs: BTreeMap::from([(0, spec)]),
            config,
            args,
            next_generation: 1,
            seed,
            notifier,
        }
    }
}

/// Runs the loop until the state machine asks to exit; returns the exit code.
pub fn run(mut sup: Supervisor, policy: Policy) -> Result<i32, RunError> {
    let mut master = Master::new(policy, Instant::now());
    sup.notifier.start(&master);
    let mut queue: VecDeque<Event> = VecDeque::from([Event::Tick]);
    // Deadlines are judged as of the moment just before the channels were read: whatever the
    // workers sent by then has been seen. Taking the time later would let a pause of the master
    // (SIGSTOP, starvation) between the read and the Tick count against them.
    let mut read_at = Instant::now();
    loop {
        while let Some(event) = queue.pop_front() {
            let now = match event {
                Event::Tick => read_at,
                _ => Instant::now(),
            };
            let mut replies = VecDeque::new();
            for action in master.on_event(event, now) {
                if let Some(code) = sup.apply(action, &mut replies) {
                    sup.close_listeners();
                    return Ok(code);
                }
            }
            // The answers to this event's actions (a spawned pid, a loaded config) come before
            // anything already queued: a TTOU queued behind a TTIN must see the new worker's pid.
            while let Some(reply) = replies.pop_back() {
                queue.push_front(reply);
            }
        }
        sup.notifier.update(&master, Instant::now());
        sup.forget_unused(&master);
        let watchdog = sup.notifier.next_deadline();
        sup.wait(master.next_deadline().into_iter().chain(watchdog).min())?;
        read_at = Instant::now();
        sup.collect(&mut queue);
    }
}

impl Supervisor {
    /// Blocks until a signal, a channel message or the deadline.
    fn wait(&self, deadline: Option<Instant>) -> Result<(), RunError> {
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
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                // Round up so that the deadline has passed when we wake.
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(RunError::Poll(e)),
        }
    }

    /// Turns whatever happened into events, in the order the module doc gives.
    fn collect(&mut self, queue: &mut VecDeque<Event>) {
        let mut events = Vec::new();
        for (sig, count) in self.signals.take() {
            self.on_signal(sig, count, &mut events);
        }
        let ids: Vec<WorkerId> = self
            .channels
            .pollable()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.channels.drain(id, &mut events);
        }
        self.spawner.drain_output();
        for (pid, status) in reap_all() {
            // What the worker said before exiting comes before its exit.
            if let Some(id) = self.pids.remove(&pid) {
                self.channels.drain(id, &mut events);
                self.channels.remove(id);
            }
            events.push(Event::Exited { pid, status });
        }
        queue.extend(events);
        queue.push_back(Event::Tick);
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
            Sig::Usr2 => {
                warn!("SIGUSR2 (binary upgrade) is not supported by this version; ignored")
            }
            Sig::Chld => {} // reaping happens on every wakeup
        }
    }

    /// Applies one action; returns the exit code when the master must exit.
    fn apply(&mut self, action: Action, queue: &mut VecDeque<Event>) -> Option<i32> {
        self.notifier.on_action(&action, self.config.boot_timeout);
        match action {
            Action::Spawn { id, generation } => queue.push_back(self.spawn(id, generation)),
            Action::Signal { id, pid, signal } => self.signal(id, pid, signal),
            Action::LoadConfig => {
                let reply = self.reload();
                if reply == Event::ReloadAborted {
                    self.notifier.refused();
                }
                queue.push_back(reply);
            }
            Action::MeasureMemory { workers } => queue.push_back(measure_memory(&workers)),
            Action::SendToWorker { id, line } => {
                if let Err(e) = self.channels.send(id, &line) {
                    warn!(worker = id, error = %e, "could not send a message to the worker");
                }
            }
            Action::CloseListeners => self.close_listeners(),
            // Logged by the state machine; the control socket will answer waiting clients.
            Action::Serving => self.check_memory_fit(),
            Action::Reloaded { .. } | Action::ReloadFailed { .. } => {}
            Action::Exit(code) => return Some(code),
        }
        None
    }

    fn spawn(&mut self, id: WorkerId, generation: u64) -> Event {
        let Some(spec) = self.specs.get(&generation) else {
            return Event::SpawnFailed {
                id,
                error: format!("generation {generation} has no spec"),
                exec_failed: false,
            };
        };
        match self.spawner.spawn(id, spec) {
            Ok(spawned) => {
                self.pids.insert(spawned.pid, id);
                self.channels.insert(id, spawned.channel);
                Event::Spawned {
                    id,
                    pid: spawned.pid,
                }
            }
            Err(err) => {
                let exec_failed = matches!(err, SpawnError::Exec(ExecError::Exec { .. }));
                Event::SpawnFailed {
                    id,
                    error: error_chain(&err),
                    exec_failed,
                }
            }
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

    /// Loads the configuration again; on success registers the new generation's spec.
    fn reload(&mut self) -> Event {
        let env = env_snapshot();
        let config = match config::load(&self.args, &env) {
            Ok(config) => config,
            Err(errors) => {
                error!("reload refused, the configuration is invalid; the current workers keep serving:\n{errors}");
                return Event::ReloadAborted;
            }
        };
        let python = match python::resolve(config.python.as_deref(), &env) {
            Ok(python) => python,
            Err(e) => {
                error!("reload refused: {e}; the current workers keep serving");
                return Event::ReloadAborted;
            }
        };
        if config.binds != self.config.binds || config.backlog != self.config.backlog {
            warn!("the listeners (bind, backlog) cannot change on reload: restart herdsman to apply that change; keeping the current listeners");
        }
        if config.log_file != self.config.log_file || config.pidfile != self.config.pidfile {
            warn!("log_file and pidfile cannot change on reload: restart herdsman to apply that change; keeping the current ones");
        }
        let workers_changed = config.workers != self.config.workers;
        let target = if workers_changed {
            super::start::worker_target(config.workers)
        } else {
            1
        };
        let policy = Box::new(Policy::from_config(&config, target, self.seed));
        let generation = self.next_generation;
        self.next_generation += 1;
        self.specs
            .insert(generation, WorkerSpec::new(&config, python, &env));
        self.config = config;
        Event::Reload {
            generation,
            policy,
            workers_changed,
        }
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
        let keep = master.generations_in_use();
        self.specs.retain(|generation, _| keep.contains(generation));
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

/// The master's environment as it is now.
pub fn env_snapshot() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// An error and its sources, joined with ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
