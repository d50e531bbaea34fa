//! [`Notifier`]: the systemd notify protocol as the master loop drives it. The loop tells it what
//! it is about to do (spawn, serve, reload, and how a reload ended), tells it about a refused
//! reload, and calls [`Notifier::update`] once per wakeup, after the state machine has seen
//! everything, with an [`Observed`] summary of the workers; it also waits no longer than
//! [`Notifier::next_deadline`], the next watchdog ping. It only ever sees plain values, never
//! the master's state machine, so `systemd` sits below `master`.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. The master keeps the variables in its own
//! environment (a re-executed master needs them); the spawner never passes them to workers.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::contract::{Contract, Phase, Summary};
use super::socket::NotifySocket;
use super::watchdog::{self, Watchdog};
use crate::errors::error_chain;

/// What the master looks like at one instant, as the loop reads it off the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub stopping: bool,
    /// Serving out `drain_before_stop`.
    pub draining: bool,
    pub reloading: bool,
    /// Ready workers (of any generation).
    pub ready: usize,
    /// Ready workers of the current generation.
    pub fresh: usize,
    /// Workers still tracked: booting, ready or on their way out.
    pub live: usize,
    pub target: u32,
    /// The generation new workers start from.
    pub generation: u64,
}

/// The notify socket, the protocol's state and the watchdog schedule.
#[derive(Debug)]
pub struct Notifier {
    /// `None`: not started by systemd (or an unusable `NOTIFY_SOCKET`): nothing is sent.
    socket: Option<NotifySocket>,
    contract: Contract,
    watchdog: Option<Watchdog>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; problems are logged, never fatal.
    pub fn from_env(boot_timeout: Duration, now: Instant) -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            NotifySocket::new(&value)
                .map_err(|e| warn!("{}", error_chain(&e)))
                .ok()
        });
        let watchdog = socket.as_ref().and_then(|_| {
            let var = |name| std::env::var_os(name).map(lossy);
            let (usec, pid) = (var("WATCHDOG_USEC"), var("WATCHDOG_PID"));
            watchdog::interval(usec.as_deref(), pid.as_deref(), std::process::id())
                .map_err(|e| warn!("{e}"))
                .ok()
                .flatten()
        });
        if socket.is_some() {
            info!(watchdog = ?watchdog, "systemd notifications on (NOTIFY_SOCKET)");
        }
        Notifier {
            socket,
            contract: Contract::new(boot_timeout),
            watchdog: watchdog.map(|every| Watchdog::new(every, now)),
        }
    }

    /// Says the start is under way (and may take up to the boot timeout and more).
    pub fn start(&mut self, observed: Observed) {
        if self.socket.is_some() {
            let message = self.contract.start(self.summary(observed), Instant::now());
            self.send(&message);
        }
    }

    /// A worker is about to be spawned.
    pub fn spawning(&mut self, boot_timeout: Duration) {
        if self.socket.is_none() {
            return;
        }
        if let Some(message) = self.contract.spawning(boot_timeout, Instant::now()) {
            self.send(&message);
        }
    }

    /// Every worker of the first start is ready.
    pub fn serving(&mut self) {
        if self.socket.is_some() {
            self.contract.serving();
        }
    }

    /// A reload starts: the configuration is about to be loaded again.
    pub fn reloading(&mut self) {
        if self.socket.is_none() {
            return;
        }
        if let Some(message) = self.contract.reloading(monotonic_usec()) {
            self.send(&message);
        }
    }

    /// The reload to `generation` completed.
    pub fn reloaded(&mut self, generation: u64) {
        if self.socket.is_some() {
            self.contract.reloaded(generation);
        }
    }

    /// The reload was rolled back, for `reason`.
    pub fn rolled_back(&mut self, reason: &str) {
        if self.socket.is_some() {
            self.contract.rolled_back(reason);
        }
    }

    /// An in-place upgrade is about to exec the new binary: `RELOADING=1`, sent now.
    pub fn upgrading(&mut self) {
        if self.socket.is_none() {
            return;
        }
        if let Some(message) = self.contract.upgrading(monotonic_usec()) {
            self.send(&message);
        }
    }

    /// The exec did not happen after all, for `reason`: this image serves on.
    pub fn upgrade_abandoned(&mut self, reason: &str) {
        self.contract.upgrade_abandoned(reason);
    }

    /// The new image of an upgrade took over; `rollout`: it replaces the adopted workers.
    pub fn resumed(&mut self, rollout: bool) {
        self.contract.resumed(rollout);
    }

    /// The reload just started was refused (invalid configuration); nothing changed.
    pub fn refused(&mut self) {
        self.contract.refused();
    }

    /// After a wakeup was handled: what changed, and the watchdog ping when due.
    pub fn update(&mut self, observed: Observed, now: Instant) {
        if self.socket.is_none() {
            return;
        }
        if let Some(message) = self.contract.update(self.summary(observed)) {
            self.send(&message);
        }
        if self.watchdog.as_mut().is_some_and(|w| w.due(now)) {
            self.send("WATCHDOG=1");
        }
    }

    /// When the loop must wake up next for the watchdog.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.watchdog.as_ref().map(Watchdog::next)
    }

    fn summary(&self, observed: Observed) -> Summary {
        let phase = if observed.stopping {
            Phase::Stopping
        } else if observed.draining {
            Phase::Draining
        } else if observed.reloading {
            Phase::Reloading
        } else if self.contract.served() {
            Phase::Serving
        } else {
            Phase::Starting
        };
        Summary {
            phase,
            ready: observed.ready,
            fresh: observed.fresh,
            live: observed.live,
            target: observed.target,
            generation: observed.generation,
        }
    }

    fn send(&self, message: &str) {
        if let Some(socket) = &self.socket {
            socket.send(message);
        }
    }
}

fn lossy(value: OsString) -> String {
    value.to_string_lossy().into_owned()
}

/// CLOCK_MONOTONIC in microseconds: the clock systemd compares `MONOTONIC_USEC` with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_is_read_in_microseconds() {
        let a = monotonic_usec();
        let b = monotonic_usec();
        assert!(a > 0 && b >= a);
    }
}
