//! The master's record of each worker: where it is in its life, what it last reported, and why
//! it is being retired. A record exists from the spawn request until the child is reaped.

use std::time::{Duration, Instant};

use super::event::WorkerId;
use crate::worker::BootErrorKind;

/// Why a worker is being retired or was restarted. Carried into logs (and later metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It died on its own after becoming ready.
    Crash,
    /// It failed before becoming ready.
    BootFailure,
    /// It did not become ready within the boot timeout.
    BootTimeout,
    /// Its event loop stopped heartbeating.
    Liveness,
    /// A reload replaced its generation.
    Reload,
    /// The target worker count went down.
    ScaleDown,
    /// The master is stopping.
    Shutdown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Crash => "crash",
            Reason::BootFailure => "boot-failure",
            Reason::BootTimeout => "boot-timeout",
            Reason::Liveness => "liveness",
            Reason::Reload => "reload",
            Reason::ScaleDown => "scale-down",
            Reason::Shutdown => "shutdown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Phase {
    /// Started, not ready yet; killed at `deadline`.
    Booting { deadline: Instant },
    /// Serving.
    Ready,
    /// Asked to dump its traceback; SIGKILL at `kill_at`.
    Dumping { kill_at: Instant },
    /// Asked to stop; SIGKILL at `kill_at`.
    Stopping { kill_at: Instant },
    /// SIGKILL sent; waiting to reap.
    Killed,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub id: WorkerId,
    /// `None` only between the spawn request and its answer.
    pub pid: Option<i32>,
    pub generation: u64,
    pub phase: Phase,
    pub started: Instant,
    pub ready_at: Option<Instant>,
    /// When the master last heard from it (any message).
    pub last_seen: Instant,
    pub requests: u64,
    pub in_flight: u64,
    /// What it reported before failing to boot.
    pub boot_error: Option<(BootErrorKind, String)>,
    /// Set once the master decided this worker goes away, and why.
    pub retiring: Option<Reason>,
}

impl Worker {
    pub fn new(id: WorkerId, generation: u64, now: Instant, boot_timeout: Duration) -> Worker {
        Worker {
            id,
            pid: None,
            generation,
            phase: Phase::Booting {
                deadline: now + boot_timeout,
            },
            started: now,
            ready_at: None,
            last_seen: now,
            requests: 0,
            in_flight: 0,
            boot_error: None,
            retiring: None,
        }
    }

    /// Booting or ready, and not on its way out. A worker killed for its boot timeout keeps its
    /// place until reaped, so that its replacement waits for the boot-failure backoff.
    pub fn is_live(&self) -> bool {
        match self.retiring {
            None => matches!(self.phase, Phase::Booting { .. } | Phase::Ready),
            Some(reason) => reason == Reason::BootTimeout,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub fn is_booting(&self) -> bool {
        matches!(self.phase, Phase::Booting { .. })
    }

    /// The next instant at which something happens to this worker on its own.
    pub fn deadline(&self, timeout: Duration) -> Option<Instant> {
        match self.phase {
            Phase::Booting { deadline } => Some(deadline),
            Phase::Ready => Some(self.last_seen + timeout),
            Phase::Dumping { kill_at } | Phase::Stopping { kill_at } => Some(kill_at),
            Phase::Killed => None,
        }
    }
}
