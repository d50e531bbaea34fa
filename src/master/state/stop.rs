//! Stopping: a state with a deadline, never a sleep. A stop request TERMs (graceful) or QUITs
//! (quick) every worker and sets the SIGKILL deadline; the master exits once the last worker is
//! reaped, with the code the stop was started with. A second request escalates at once (quick),
//! a third kills. With `drain_before_stop`, a graceful stop of a master that has served first
//! drains: nothing changes but the snapshot (so `/readyz` says 503) until the drain deadline or
//! a second stop request. Giving up at first start is a stop with the failure's exit code.

use std::time::Instant;

use tracing::{error, info, warn};

use super::{kill, signal, Master, Stopping};
use crate::exit;
use crate::master::event::{Action, StopMode, WorkerSignal};
use crate::master::exits::Failure;
use crate::master::workers::{Phase, Reason};

impl Master {
    pub(super) fn on_stop(
        &mut self,
        mode: StopMode,
        code: i32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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

    pub(super) fn begin_stop(
        &mut self,
        mode: StopMode,
        code: i32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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

    pub(super) fn end_drain(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.drain_until.is_some_and(|until| now >= until) {
            self.drain_until = None;
            info!("drain over: stopping gracefully");
            self.begin_stop(StopMode::Graceful, exit::OK, now, out);
        }
    }

    pub(super) fn begin_quick(&mut self, now: Instant, out: &mut Vec<Action>) {
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

    pub(super) fn give_up(&mut self, failure: &Failure, now: Instant, out: &mut Vec<Action>) {
        let code = failure.exit_code();
        error!(
            attempts = self.boot_failures,
            exit_code = code,
            "giving up: {}; exiting with code {code}",
            failure.give_up_hint()
        );
        self.begin_stop(StopMode::Quick, code, now, out);
    }

    pub(super) fn maybe_exit(&self, out: &mut Vec<Action>) {
        if let Some(stop) = self.stop {
            if self.workers.is_empty() {
                info!(exit_code = stop.exit_code, "all workers stopped");
                out.push(Action::Exit(stop.exit_code));
            }
        }
    }
}
