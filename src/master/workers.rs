//! The master's record of each worker: where it is in its life, what it last reported, and why
//! it is being retired. A record exists from the spawn request until the child is reaped.

use std::time::{Duration, Instant};

use super::event::WorkerId;
use super::policy::Policy;
use crate::worker::{BootErrorKind, InFlightRequest};

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
    /// It served `max_requests` (plus jitter).
    MaxRequests,
    /// Its PSS stayed above `max_worker_memory`.
    Memory,
    /// It reached `max_worker_lifetime` (plus jitter).
    Lifetime,
    /// The target worker count went down.
    ScaleDown,
    /// The master is stopping.
    Shutdown,
}

impl Reason {
    /// Every reason, for metrics that list each one from the start.
    pub const ALL: [Reason; 10] = [
        Reason::Crash,
        Reason::BootFailure,
        Reason::BootTimeout,
        Reason::Liveness,
        Reason::Reload,
        Reason::MaxRequests,
        Reason::Memory,
        Reason::Lifetime,
        Reason::ScaleDown,
        Reason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Crash => "crash",
            Reason::BootFailure => "boot-failure",
            Reason::BootTimeout => "boot-timeout",
            Reason::Liveness => "liveness",
            Reason::Reload => "reload",
            Reason::MaxRequests => "max-requests",
            Reason::Memory => "memory",
            Reason::Lifetime => "lifetime",
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
    /// When the master last got a heartbeat (or the ready message) from its event loop.
    pub last_seen: Instant,
    /// Its liveness timeout, fixed at spawn: it heartbeats at the interval derived from it, so a
    /// reload that shortens `timeout` must not judge it by the new value.
    pub timeout: Duration,
    /// The latest report from its watchdog thread that the event loop is stuck, and when it came.
    pub stall: Option<(Instant, f64, Vec<InFlightRequest>)>,
    pub requests: u64,
    pub in_flight: u64,
    /// Access log lines it reported dropped (its last heartbeat).
    pub access_log_dropped: u64,
    /// What it reported before failing to boot.
    pub boot_error: Option<(BootErrorKind, String)>,
    /// Set once the master decided this worker goes away, and why.
    pub retiring: Option<Reason>,
    /// Set when the worker is due for recycling: it keeps serving until its replacement is
    /// ready, but no longer counts towards the target.
    pub recycle: Option<Reason>,
    /// Requests after which it is recycled (jitter included).
    pub request_limit: Option<u64>,
    /// Time after becoming ready at which it is recycled (jitter included).
    pub lifetime: Option<Duration>,
    /// Latest proportional set size sample, in bytes.
    pub pss: Option<u64>,
    /// Consecutive memory samples over the limit.
    pub memory_strikes: u32,
    /// It stayed ready past `CRASH_GRACE` (and cleared the boot-failure count once).
    pub stable: bool,
}

impl Worker {
    pub fn new(id: WorkerId, generation: u64, now: Instant, policy: &Policy) -> Worker {
        Worker {
            id,
            pid: None,
            generation,
            phase: Phase::Booting {
                deadline: now + policy.boot_timeout,
            },
            started: now,
            ready_at: None,
            last_seen: now,
            timeout: policy.timeout,
            stall: None,
            requests: 0,
            in_flight: 0,
            access_log_dropped: 0,
            boot_error: None,
            retiring: None,
            recycle: None,
            request_limit: policy.recycle.request_limit(id),
            lifetime: policy.recycle.lifetime(id),
            pss: None,
            memory_strikes: 0,
            stable: false,
        }
    }

    /// When it is due for recycling by age, if it has a lifetime and is serving.
    pub fn lifetime_end(&self) -> Option<Instant> {
        match (self.recycle, self.ready_at, self.lifetime) {
            (None, Some(ready), Some(lifetime)) if self.is_live() => Some(ready + lifetime),
            _ => None,
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
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Booting { deadline } => Some(deadline),
            Phase::Ready => Some(self.last_seen + self.timeout),
            Phase::Dumping { kill_at } | Phase::Stopping { kill_at } => Some(kill_at),
            Phase::Killed => None,
        }
    }
}
