//! The master loop: one `poll` over the signal self-pipe, the worker channels and the operations
//! sockets (control socket, admin listener and their connections), with the timeout set to the
//! nearest deadline of the state machine or of a connection. On every wakeup, in this order: take
//! the signals, read the channels, reap every exited child (draining its channel first so a
//! `boot_error` is seen before the exit), let the state machine see all that, then serve the
//! operations sockets from a fresh snapshot (a bounded amount of work: a flood delays answers,
//! never supervision), then tick. I/O is read before deadlines are judged, so a master that was
//! itself stopped for a while does not kill workers whose heartbeats are merely unread.
//!
//! This file owns the [`Supervisor`] and the loop itself (feed, wait); the rest are `impl
//! Supervisor` blocks in `run/`: `inputs` (a wakeup turned into events), `apply` (actions
//! applied with system calls), `reload` (loading a new generation), `upgrade` (the in-place
//! upgrade's side of the loop) and `zygotes` (the zygote spawner's side).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::channels::Channels;
use super::event::{Event, WorkerId};
use super::policy::Policy;
use super::state::Master;
use crate::config::{Config, RunArgs};
use crate::ops::{Ops, Token};
use crate::sockets::Listener;
use crate::sys::signals::Signals;
use crate::systemd::Notifier;
use crate::worker::{ExecSpawner, WorkerSpec};

mod apply;
mod inputs;
mod reload;
mod upgrade;
mod zygotes;

use apply::observed;
pub use reload::ReloadError;
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
    /// The in-flight files of the unreaped workers (started by this image or handed over), by pid.
    inflight: BTreeMap<i32, std::os::fd::OwnedFd>,
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
    /// `reload = true`: the source watcher, which asks for reloads.
    watcher: Option<super::watch::Watcher>,
    /// gunicorn's master-side hooks (`master::hooks`), and the worker count they were last told.
    hooks: super::hooks::MasterHooks,
    hooks_target: u32,
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
        let watcher = super::watch::Watcher::start(&config);
        let hooks = super::hooks::MasterHooks::new(&config, spec.python.clone(), spec.env.clone());
        Supervisor {
            signals,
            listeners: Some(listeners),
            spawner,
            channels: Channels::default(),
            ops,
            pids: BTreeMap::new(),
            inflight: BTreeMap::new(),
            specs: BTreeMap::from([(0, spec)]),
            config,
            args,
            next_generation: 1,
            seed,
            notifier,
            upgrade,
            zygotes: zygotes::Zygotes::default(),
            watcher,
            hooks,
            hooks_target: 0,
        }
    }

    /// The master is about to exit with `code`: gunicorn's on_exit, waited for (every worker
    /// has exited by now).
    fn exit(&mut self, code: i32) -> i32 {
        self.hooks.run_now("on_exit");
        code
    }

    /// The master-side hooks, for `start` (on_starting).
    pub fn hooks(&self) -> &super::hooks::MasterHooks {
        &self.hooks
    }
}

/// What a wakeup found ready.
struct Woken {
    ops: Vec<(Token, PollFlags)>,
    channels: Vec<WorkerId>,
    /// The instant deadlines are judged at: taken before the channels' readiness was last
    /// looked at, so every message sent before it is in a channel listed in `channels`.
    read_at: Instant,
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
            return Ok(sup.exit(code));
        }
        sup.notifier.update(observed(&master), Instant::now());
        sup.observe_workers(&master);
        sup.forget_unused(&master);
        // A quiet moment (every event handled): the one an in-place upgrade hands over at.
        sup.step_upgrade(&master);
        let watchdog = sup.notifier.next_deadline();
        let woken = sup.wait(master.next_deadline().into_iter().chain(watchdog).min())?;
        read_at = woken.read_at;
        sup.collect(&mut queue, &woken.channels);
        sup.step_zygotes(&master, &mut queue);
        // The state machine sees this wakeup's worker events before operators get a snapshot.
        if let Some(code) = sup.feed(&mut master, &mut queue, read_at) {
            return Ok(sup.exit(code));
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
        fds.extend(
            self.watcher
                .as_ref()
                .map(|w| PollFd::new(w.fd(), PollFlags::POLLIN)),
        );
        let deadline = [
            deadline,
            self.ops.next_deadline(now),
            self.upgrade.deadline(),
            self.zygotes.next_deadline(),
            self.watcher.as_ref().and_then(|w| w.deadline()),
            self.hooks.next_deadline(),
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
        let mut read_all = match poll(&mut fds, timeout) {
            Ok(n) => n == 0,
            Err(Errno::EINTR) => true,
            Err(e) => return Err(RunError::Poll(e)),
        };
        // The master may be stopped or starved between poll's return and this instant (F9):
        // the channels are looked at again, without waiting, after it, so a heartbeat that
        // arrived in between is read before the deadlines are judged as of `read_at`. Readiness
        // only grows until the channels are read, so this look sees all the first one did.
        let read_at = Instant::now();
        if !read_all && !channels.is_empty() {
            // poll rewrites every entry's revents.
            match poll(&mut fds[1..=channels.len()], PollTimeout::ZERO) {
                Ok(_) => {}
                Err(Errno::EINTR) => read_all = true,
                Err(e) => return Err(RunError::Poll(e)),
            }
        }
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
            read_at,
        })
    }
}
