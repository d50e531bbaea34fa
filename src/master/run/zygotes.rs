//! The loop's side of `spawn = "zygote"` (docs/zygote.md): one zygote per generation that
//! spawns workers, started on the first spawn of that generation (or before a reload rolls over
//! to it), restarted with backoff if it dies while serving, stopped once its generation has no
//! workers and is not current.
//!
//! The state machine knows nothing of zygotes. What it sees:
//! - `Action::Spawn` is answered at once when the generation's zygote is ready (a fork is a
//!   short synchronous round trip), else later, when the zygote becomes ready (`Spawned`), or
//!   fails to boot (`SpawnAborted` with the zygote's own boot failure: an import error counts
//!   exactly like a worker's). Meanwhile the worker is booting, judged by `boot_timeout`; the
//!   zygote gets the same timeout, so a pending spawn always gets its answer.
//! - On reload, `Event::Reload` is held back until the new generation's zygote is ready, so the
//!   rollout begins with a warm zygote; if it cannot import the new code, the state machine gets
//!   `ReloadCannotStart` instead and the old workers were never touched.
//!
//! Workers are the master's children (it is a child subreaper and the zygote double-forks), so
//! reaping, signals, liveness and metrics are exactly those of exec'd workers. A zygote that
//! dies does not touch the workers it forked.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, error, info, warn};

use super::apply::spawn_failed;
use super::Supervisor;
use crate::errors::error_chain;
use crate::master::event::{Event, WorkerId};
use crate::master::exits::{describe_boot_failure, Failure};
use crate::master::state::Master;
use crate::ops::ReloadOutcome;
use crate::sys::reap::ExitStatus;
use crate::worker::zygote::{Zygote, ZygoteError, ZygoteMessage, ZygoteState};
use crate::worker::SpawnError;

/// A fork request takes milliseconds; a zygote that does not answer within this is killed.
const FORK_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait before restarting a zygote that keeps dying.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct Zygotes {
    /// Started and not reaped yet.
    live: Vec<Zygote>,
    /// Spawns waiting for their generation's zygote to be ready, in order.
    pending: Vec<(WorkerId, u64)>,
    /// A `Reload` held back until its generation's zygote is ready.
    reload: Option<(u64, Event)>,
    /// Zygotes to start again: generation -> when.
    restarts: BTreeMap<u64, Instant>,
    /// Deaths in a row of each generation's serving zygote (reset by a successful fork).
    deaths: BTreeMap<u64, u32>,
    /// The master is stopping: nothing starts any more.
    stopped: bool,
}

impl Zygotes {
    fn get(&mut self, generation: u64) -> Option<&mut Zygote> {
        self.live
            .iter_mut()
            .find(|z| z.generation == generation && z.state != ZygoteState::Stopping && !z.failed)
    }

    /// The earliest zygote deadline: a start timeout or a restart.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let starting = self.live.iter().filter_map(|z| match z.state {
            ZygoteState::Starting { deadline } if !z.timed_out => Some(deadline),
            _ => None,
        });
        let restarts = self.restarts.values().copied();
        starting.chain(restarts).min()
    }

    /// The control sockets to poll: those of zygotes that have not said they are ready.
    pub(super) fn pollable(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        self.live
            .iter()
            .filter(|z| matches!(z.state, ZygoteState::Starting { .. }))
            .map(Zygote::control_fd)
            .collect()
    }

    /// The generation a held-back reload is waiting for (its spec must be kept).
    pub(super) fn reload_generation(&self) -> Option<u64> {
        self.reload.as_ref().map(|(generation, _)| *generation)
    }

    fn stop(z: &mut Zygote, signal: Signal) {
        z.state = ZygoteState::Stopping;
        if let Err(e) = kill(Pid::from_raw(z.pid), signal) {
            debug!(generation = z.generation, pid = z.pid, error = %e, "could not signal zygote");
        }
    }
}

/// Wait before the `deaths`-th restart in a row: none for the first, then 1 s doubling.
fn restart_delay(deaths: u32) -> Duration {
    match deaths {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_RESTART_DELAY),
    }
}

impl Supervisor {
    /// `Action::Spawn` for a generation whose workers come from a zygote: forked now if it is
    /// ready, else queued until it is (starting it if needed).
    pub(super) fn spawn_forked(&mut self, id: WorkerId, generation: u64) -> Option<Event> {
        if self.zygotes.get(generation).is_some() {
            if let Some(ZygoteState::Ready) = self.zygotes.get(generation).map(|z| z.state) {
                return Some(self.fork(id, generation));
            }
        } else if let Err(err) = self.start_zygote(generation) {
            return Some(spawn_failed(id, &err, self.config.user.as_ref()));
        }
        self.zygotes.pending.push((id, generation));
        None
    }

    /// Starts generation `generation`'s zygote (its spec must exist).
    fn start_zygote(&mut self, generation: u64) -> Result<(), SpawnError> {
        let spec = &self.specs[&generation];
        let deadline = Instant::now() + self.config.boot_timeout;
        let zygote = self.spawner.start_zygote(generation, spec, deadline)?;
        info!(
            generation,
            zygote_pid = zygote.pid,
            preload = spec.preload,
            "zygote started"
        );
        self.zygotes.live.push(zygote);
        Ok(())
    }

    fn fork(&mut self, id: WorkerId, generation: u64) -> Event {
        let spec = &self.specs[&generation];
        let zygote = self
            .zygotes
            .get(generation)
            .expect("fork is only called with a ready zygote");
        match self.spawner.fork_from(zygote, id, spec, FORK_TIMEOUT) {
            Ok(spawned) => {
                self.zygotes.deaths.remove(&generation);
                self.register(id, spawned)
            }
            Err(err) => {
                if matches!(err, SpawnError::Zygote(ref e) if !matches!(e, ZygoteError::ForkFailed(_)))
                {
                    // It no longer answers as it should: a new one will be started when it is
                    // reaped.
                    error!(generation, zygote_pid = zygote.pid, error = %error_chain(&err), "zygote failed a fork request: killing it");
                    zygote.failed = true;
                    if let Err(e) = kill(Pid::from_raw(zygote.pid), Signal::SIGKILL) {
                        debug!(zygote_pid = zygote.pid, error = %e, "could not kill zygote");
                    }
                }
                spawn_failed(id, &err, self.config.user.as_ref())
            }
        }
    }

    /// With `spawn = "zygote"`, holds `reload` back until the new generation's zygote is ready;
    /// returns the event to feed now, if any.
    pub(super) fn hold_reload(&mut self, reload: Event) -> Option<Event> {
        let Event::Reload { generation, .. } = &reload else {
            return Some(reload);
        };
        let generation = *generation;
        if self.specs[&generation].spawn != crate::config::SpawnMode::Zygote {
            return Some(reload);
        }
        if let Err(err) = self.start_zygote(generation) {
            let reason = format!(
                "the new generation's zygote could not be started: {}",
                error_chain(&err)
            );
            return Some(Event::ReloadCannotStart { reason });
        }
        self.zygotes.reload = Some((generation, reload));
        None
    }

    /// Reads what the starting zygotes said: a ready one forks the spawns waiting for it and
    /// releases a held-back reload.
    pub(super) fn read_zygotes(&mut self, events: &mut Vec<Event>) {
        let mut ready = Vec::new();
        for z in &mut self.zygotes.live {
            if !matches!(z.state, ZygoteState::Starting { .. }) {
                continue;
            }
            for message in z.read().0 {
                match message {
                    ZygoteMessage::ZygoteReady { .. } => {
                        info!(generation = z.generation, zygote_pid = z.pid, boot = ?z.started.elapsed(), "zygote ready");
                        z.state = ZygoteState::Ready;
                        ready.push(z.generation);
                    }
                    ZygoteMessage::BootError { kind, message } => {
                        z.boot_error = Some((kind, message))
                    }
                    other => debug!(generation = z.generation, ?other, "zygote: ignored"),
                }
            }
        }
        for generation in ready {
            self.on_zygote_ready(generation, events);
        }
    }

    fn on_zygote_ready(&mut self, generation: u64, events: &mut Vec<Event>) {
        if self.zygotes.reload_generation() == Some(generation) {
            let (_, reload) = self.zygotes.reload.take().expect("checked just above");
            events.push(reload);
        }
        let (mine, others) = std::mem::take(&mut self.zygotes.pending)
            .into_iter()
            .partition(|(_, g)| *g == generation);
        self.zygotes.pending = others;
        for (id, _) in mine {
            events.push(self.fork(id, generation));
        }
    }

    /// A reaped child; false if it is not a zygote.
    pub(super) fn zygote_reaped(
        &mut self,
        pid: i32,
        status: ExitStatus,
        events: &mut Vec<Event>,
    ) -> bool {
        let Some(pos) = self.zygotes.live.iter().position(|z| z.pid == pid) else {
            return false;
        };
        let z = self.zygotes.live.remove(pos);
        match z.state {
            ZygoteState::Starting { .. } => self.zygote_failed(z, status, events),
            ZygoteState::Ready if !self.zygotes.stopped => {
                let deaths = self.zygotes.deaths.entry(z.generation).or_insert(0);
                *deaths += 1;
                let delay = restart_delay(*deaths);
                if !z.failed {
                    warn!(generation = z.generation, zygote_pid = pid, %status, restart_in = ?delay, "zygote exited; starting a new one (the workers keep serving)");
                }
                self.zygotes
                    .restarts
                    .insert(z.generation, Instant::now() + delay);
            }
            _ => debug!(generation = z.generation, zygote_pid = pid, %status, "zygote exited"),
        }
        true
    }

    /// A zygote died before it was ready: every spawn waiting for it fails as its worker would
    /// have, and a reload waiting for it fails.
    fn zygote_failed(&mut self, z: Zygote, status: ExitStatus, events: &mut Vec<Event>) {
        let failure = match (z.timed_out, z.boot_error) {
            (true, _) => Failure::Timeout,
            (false, reported) => Failure::from_exit(reported, status),
        };
        let what = describe_boot_failure(&failure).replacen("worker", "zygote", 1);
        error!(generation = z.generation, zygote_pid = z.pid, %status, "{what}");
        if self.zygotes.reload_generation() == Some(z.generation) {
            self.zygotes.reload = None;
            let reason = format!(
                "the new code could not be loaded: {}",
                failure.give_up_hint()
            );
            events.push(Event::ReloadCannotStart { reason });
        }
        let (mine, others) = std::mem::take(&mut self.zygotes.pending)
            .into_iter()
            .partition(|(_, g)| *g == z.generation);
        self.zygotes.pending = others;
        for (id, _) in mine {
            events.push(Event::SpawnAborted {
                id,
                failure: failure.clone(),
            });
        }
    }

    /// Once per wakeup, after the state machine has seen everything: start timeouts, restarts,
    /// and the stop.
    pub(super) fn step_zygotes(&mut self, master: &Master, queue: &mut VecDeque<Event>) {
        if self.zygotes.stopped {
            return;
        }
        if master.is_stopping() {
            self.stop_zygotes(queue);
            return;
        }
        let now = Instant::now();
        for z in &mut self.zygotes.live {
            if let ZygoteState::Starting { deadline } = z.state {
                if now >= deadline && !z.timed_out {
                    error!(generation = z.generation, zygote_pid = z.pid, boot_timeout = ?self.config.boot_timeout, "zygote did not become ready within the boot timeout: killing it");
                    z.timed_out = true;
                    if let Err(e) = kill(Pid::from_raw(z.pid), Signal::SIGKILL) {
                        debug!(zygote_pid = z.pid, error = %e, "could not kill zygote");
                    }
                }
            }
        }
        let due: Vec<u64> = self
            .zygotes
            .restarts
            .iter()
            .filter(|(_, at)| now >= **at)
            .map(|(g, _)| *g)
            .collect();
        for generation in due {
            self.zygotes.restarts.remove(&generation);
            self.restart_zygote(master, generation);
        }
    }

    /// Starts a new zygote for a generation whose zygote died while serving, if that generation
    /// still spawns workers (it is current) and has none.
    fn restart_zygote(&mut self, master: &Master, generation: u64) {
        let wanted = generation == master.generation()
            && self.zygotes.get(generation).is_none()
            && self.specs.contains_key(&generation);
        if !wanted {
            return;
        }
        if let Err(err) = self.start_zygote(generation) {
            let deaths = self.zygotes.deaths.entry(generation).or_insert(0);
            *deaths += 1;
            let delay = restart_delay(*deaths).max(Duration::from_secs(1));
            error!(generation, error = %error_chain(&err), retry_in = ?delay, "could not start a new zygote");
            self.zygotes
                .restarts
                .insert(generation, Instant::now() + delay);
        }
    }

    /// The master stops: no spawn waits any more, no zygote is started again, and every zygote
    /// is asked to exit.
    fn stop_zygotes(&mut self, queue: &mut VecDeque<Event>) {
        self.zygotes.stopped = true;
        self.zygotes.restarts.clear();
        if self.zygotes.reload.take().is_some() {
            self.ops.reload_finished(&ReloadOutcome::Refused {
                reason: "the master is stopping".into(),
            });
            queue.push_back(Event::ReloadAborted);
        }
        for (id, _) in std::mem::take(&mut self.zygotes.pending) {
            queue.push_back(Event::SpawnAborted {
                id,
                failure: Failure::Spawn("the master is stopping".into()),
            });
        }
        for z in &mut self.zygotes.live {
            Zygotes::stop(z, Signal::SIGTERM);
        }
    }

    /// Whether spawns wait for a zygote (their workers have no pid yet).
    pub(super) fn zygote_spawns_pending(&self) -> bool {
        !self.zygotes.pending.is_empty()
    }

    /// The master exits: kill and reap every zygote still there, so none is left behind.
    pub(super) fn reap_zygotes(&mut self) {
        for z in self.zygotes.live.drain(..) {
            let pid = Pid::from_raw(z.pid);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }

    /// Stops the zygotes of generations nobody uses any more (`keep`).
    pub(super) fn stop_unused_zygotes(&mut self, keep: &[u64]) {
        for z in &mut self.zygotes.live {
            if z.state != ZygoteState::Stopping && !keep.contains(&z.generation) {
                debug!(
                    generation = z.generation,
                    zygote_pid = z.pid,
                    "generation no longer used: stopping its zygote"
                );
                Zygotes::stop(z, Signal::SIGTERM);
            }
        }
        self.zygotes.restarts.retain(|g, _| keep.contains(g));
        self.zygotes.deaths.retain(|g, _| keep.contains(g));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_immediate_then_back_off() {
        assert_eq!(restart_delay(1), Duration::ZERO);
        assert_eq!(restart_delay(2), Duration::from_secs(1));
        assert_eq!(restart_delay(3), Duration::from_secs(2));
        assert_eq!(restart_delay(20), MAX_RESTART_DELAY);
    }
}
