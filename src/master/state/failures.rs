//! Worker exits and boot failures. A reaped worker is judged by what it was doing: retired (the
//! exit was asked for), still booting (a boot failure, explained by the `boot_error` it sent),
//! or ready (a crash). Only workers that never became ready back off, exponentially; before any
//! worker was ever ready they end in a give-up with the documented exit code, during a reload in
//! a rollback, otherwise the master keeps serving with what it has. A worker that served and
//! died (a query of death, an operator's `kill -9`, the OOM killer) is replaced at once: the
//! spawn rate bound (`SpawnBucket`, see `reconcile`) is the only brake, never a pause of the
//! whole server. Its death is reported with the requests it was serving, as its in-flight file
//! said (see `Event::Exited`). During a reload, a new worker dying within `CRASH_GRACE` of
//! becoming ready is a failed boot of the new generation (which may roll the reload back).

use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::Master;
use crate::master::event::Action;
use crate::master::exits::{describe_boot_failure, Failure};
use crate::master::policy::CRASH_GRACE;
use crate::master::workers::{Reason, Worker};
use crate::sys::reap::ExitStatus;

impl Master {
    pub(super) fn on_exited(
        &mut self,
        pid: i32,
        status: ExitStatus,
        serving: Vec<String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
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
                report_crash(&w, status, &serving);
                self.judge_death(&serving, now, out);
                let quick = w.ready_at.is_some_and(|t| now < t + CRASH_GRACE);
                if quick && self.rollout.is_some() {
                    let failure = Failure::DiedAfterReady(status);
                    self.on_boot_failure(&w, failure, now, out);
                }
            }
        }
    }

    pub(super) fn count_exit(&mut self, w: &Worker, now: Instant) {
        let reason = match (w.retiring, w.ready_at) {
            (Some(reason), _) => reason,
            (None, None) => Reason::BootFailure,
            (None, Some(_)) => Reason::Crash,
        };
        *self.stats.restarts.entry(reason.as_str()).or_default() += 1;
        self.stats.last_restart = Some((w.id, w.pid, reason, now));
    }

    pub(super) fn on_boot_failure(
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
}

pub(super) fn report_retired(w: &Worker, reason: Reason, status: ExitStatus) {
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

/// Says how a serving worker died and, when it was serving requests, which ones: the first
/// place an operator looks for a request that kills workers.
pub(super) fn report_crash(w: &Worker, status: ExitStatus, serving: &[String]) {
    let reason = Reason::Crash.as_str();
    let requests = if serving.is_empty() {
        String::new()
    } else {
        format!("; it was serving: {}", serving.join(", "))
    };
    if status.is_sigkill() {
        error!(
            worker = w.id,
            pid = w.pid,
            %status,
            reason,
            serving = ?serving,
            "worker was killed by SIGKILL: most likely the out-of-memory killer (see `dmesg` or the container's memory limit); replacing it{requests}"
        );
    } else {
        error!(worker = w.id, pid = w.pid, %status, reason, serving = ?serving, "worker died unexpectedly; replacing it{requests}");
    }
}
