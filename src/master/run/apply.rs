//! Applying the state machine's actions with system calls: spawning (exec, or a fork request to
//! the generation's zygote), signalling only pids that are still unreaped children, sending
//! channel messages, measuring memory, closing the listeners, and reporting reload outcomes to
//! `ctl` clients and systemd. Answers that an action produces (a pid, a loaded configuration)
//! are returned as events for the loop to feed back before it waits again.

use std::collections::VecDeque;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{debug, warn};

use super::Supervisor;
use crate::config::User;
use crate::errors::error_chain;
use crate::master::event::{Action, Event, WorkerId, WorkerSignal};
use crate::master::state::Master;
use crate::ops::ReloadOutcome;
use crate::sockets;
use crate::sys::exec::ExecError;
use crate::systemd::Observed;
use crate::worker::{SpawnError, Spawned, Spawner};

impl Supervisor {
    /// Applies one action; returns the exit code when the master must exit.
    pub(super) fn apply(&mut self, action: Action, queue: &mut VecDeque<Event>) -> Option<i32> {
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
            Action::Quarantine { requests } => {
                let line = serde_json::json!({"type": "quarantine", "requests": requests});
                self.spawner.set_quarantine(&requests);
                for (id, e) in self.channels.broadcast(&line.to_string()) {
                    warn!(worker = id, error = %e, "could not send the quarantine to the worker");
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
            Action::Serving => {
                self.check_memory_fit();
                self.hooks.fire("when_ready", None, Vec::new());
            }
            Action::Exit(code) => {
                self.reap_zygotes();
                return Some(code);
            }
        }
        None
    }

    /// Tells systemd's notifier about an action about to be applied.
    pub(super) fn tell_systemd(&mut self, action: &Action) {
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
    pub(super) fn spawn(&mut self, id: WorkerId, generation: u64) -> Option<Event> {
        if !self.specs.contains_key(&generation) {
            return Some(Event::SpawnFailed {
                id,
                error: format!("generation {generation} has no spec"),
                exec_failed: false,
            });
        }
        // gunicorn's pre_fork: fired, not waited for (master::hooks).
        let worker = super::super::hooks::MasterHooks::worker(id, None, None);
        self.hooks.fire("pre_fork", Some(worker), Vec::new());
        let spec = &self.specs[&generation];
        if spec.spawn == crate::config::SpawnMode::Zygote {
            return self.spawn_forked(id, generation);
        }
        Some(match self.spawner.spawn(id, spec) {
            Ok(spawned) => self.register(id, spawned),
            Err(err) => spawn_failed(id, &err, self.config.user.as_ref()),
        })
    }

    /// Takes charge of a worker that now runs (exec'd or forked): its pid and its channel.
    pub(super) fn register(&mut self, id: WorkerId, spawned: Spawned) -> Event {
        self.pids.insert(spawned.pid, id);
        self.channels.insert(id, spawned.channel);
        self.inflight.insert(spawned.pid, spawned.inflight);
        Event::Spawned {
            id,
            pid: spawned.pid,
        }
    }

    pub(super) fn signal(&self, id: WorkerId, pid: i32, signal: WorkerSignal) {
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

    pub(super) fn close_listeners(&mut self) {
        if let Some(listeners) = self.listeners.take() {
            sockets::close_all(listeners);
            self.spawner.set_listeners(Vec::new());
            debug!("listeners closed");
        }
    }

    /// Warns if the first workers, measured now they are ready, do not fit the memory limit.
    pub(super) fn check_memory_fit(&self) {
        let pids: Vec<i32> = self.pids.keys().copied().collect();
        crate::sizing::check_fit(&pids, pids.len() as u32, self.config.max_surge);
    }

    pub(super) fn forget_unused(&mut self, master: &Master) {
        let mut keep = master.generations_in_use();
        keep.extend(self.zygotes.reload_generation());
        self.specs.retain(|generation, _| keep.contains(generation));
        self.stop_unused_zygotes(&keep);
    }
}

/// What systemd's notifier needs to know of the state machine.
pub(super) fn observed(master: &Master) -> Observed {
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
pub(super) fn measure_memory(workers: &[(WorkerId, i32)]) -> Event {
    let samples = workers
        .iter()
        .map(|&(id, pid)| (id, crate::sys::proc::pss_bytes(pid)))
        .collect();
    Event::Memory { samples }
}

/// The answer to a spawn that did not produce a process. An interpreter that could not be
/// executed gets its fix appended, naming `user` (the configured one) when it was switched to.
pub(super) fn spawn_failed(id: WorkerId, err: &SpawnError, user: Option<&User>) -> Event {
    let SpawnError::Exec(exec @ ExecError::Exec { uid, .. }) = err else {
        return Event::SpawnFailed {
            id,
            error: error_chain(err),
            exec_failed: false,
        };
    };
    let who = user
        .filter(|user| Some(user.uid) == *uid)
        .map(User::describe);
    let fix = exec.exec_fix(who.as_deref()).unwrap_or_default();
    Event::SpawnFailed {
        id,
        error: format!("{}; {fix}", error_chain(err)),
        exec_failed: true,
    }
}
