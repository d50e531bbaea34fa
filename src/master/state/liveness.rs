//! Liveness: what workers say on their channel (ready, heartbeats with request counts, boot
//! errors, stalls) and the deadlines judged on every `Tick`. A booting worker past its
//! `boot_timeout` or a ready one silent past its `timeout` is first asked for its traceback
//! (SIGUSR2), then killed after the dump grace; a stopping worker past its deadline is killed.
//! Deadlines are only judged on `Tick`, which the loop sends after reading every message, so an
//! unread heartbeat is never taken for a missing one.

use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::recycle::mark_recycle;
use super::{dump, kill, Master};
use crate::master::event::{Action, WorkerId};
use crate::master::exits::SAME_TRACEBACK;
use crate::master::policy::{Policy, CRASH_GRACE};
use crate::master::workers::{Phase, Reason, Worker};
use crate::worker::WorkerMessage;

impl Master {
    /// A boot error's message followed by its traceback (indented), which the failed-boot line
    /// then carries: one record says what failed and why. A traceback identical to the last
    /// one is not printed again (every attempt of a broken deploy fails the same way).
    fn with_traceback(&mut self, message: String, traceback: Option<String>) -> String {
        let Some(traceback) = traceback.filter(|t| !t.trim().is_empty()) else {
            return message;
        };
        if self.last_boot_traceback.as_deref() == Some(traceback.as_str()) {
            return format!("{message}{SAME_TRACEBACK}");
        }
        let indented: Vec<String> = traceback.lines().map(|l| format!("    {l}")).collect();
        self.last_boot_traceback = Some(traceback);
        format!("{message}\n{}", indented.join("\n"))
    }

    pub(super) fn on_message(
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
                access_log_dropped,
            } => {
                let more = access_log_dropped.saturating_sub(w.access_log_dropped);
                w.access_log_dropped = access_log_dropped;
                w.last_seen = now;
                w.stall = None;
                w.requests = requests;
                w.in_flight = in_flight;
                if w.request_limit.is_some_and(|limit| requests >= limit) {
                    mark_recycle(w, Reason::MaxRequests);
                }
                if more > 0 {
                    let pid = w.pid;
                    warn!(
                        worker = id,
                        pid,
                        dropped = more,
                        "the worker dropped access log lines: their destination failed or did not keep up"
                    );
                    self.stats.access_log_dropped += more;
                }
            }
            WorkerMessage::BootError {
                kind,
                message,
                traceback,
            } => {
                debug!(worker = id, ?kind, message = %message, "boot error reported");
                let message = self.with_traceback(message, traceback);
                if let Some(w) = self.find(id) {
                    w.boot_error = Some((kind, message));
                }
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
            // Only a worker that newly proves it stays up clears the failure count: workers that
            // were stable all along say nothing about the slot that keeps failing.
            let proven = !w.stable && w.ready_at.is_some_and(|t| now >= t + CRASH_GRACE);
            w.stable |= proven;
            let started_after_failure = last_failure.is_none_or(|t| w.started >= t);
            self.ever_ready = true;
            if proven && started_after_failure {
                self.boot_failures = 0;
            }
        }
    }

    pub(super) fn expire(&mut self, now: Instant, out: &mut Vec<Action>) {
        let policy = self.policy.clone();
        for w in &mut self.workers {
            expire_worker(w, &policy, now, out);
        }
    }
}

/// Marks a booting worker ready; false if it was not booting.
pub(super) fn mark_ready(w: &mut Worker, interface: &str, now: Instant) -> bool {
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

pub(super) fn expire_worker(w: &mut Worker, policy: &Policy, now: Instant, out: &mut Vec<Action>) {
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

/// Says what the missing heartbeats mean: a blocked event loop in a live process (its watchdog
/// thread still reported recently) or a process that answers nothing at all.
pub(super) fn report_liveness_failure(w: &Worker, now: Instant) {
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
pub(super) fn list(requests: &[crate::worker::InFlightRequest]) -> String {
    if requests.is_empty() {
        return "none known".to_string();
    }
    requests
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
