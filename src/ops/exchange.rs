//! What the operations layer and the master loop exchange, in ops' own terms so that `ops`
//! never imports `master`:
//! - in: [`Snapshot`], a read-only picture of the master for operators (what `herdsman ctl
//!   status` shows and what `/metrics` exports), built by the state machine on demand so it
//!   never disagrees with the decisions being made;
//! - out: [`MasterRequest`], what a control client asked of the master, which the loop turns
//!   into state machine events.

use std::collections::BTreeMap;
use std::time::Duration;

/// A worker's stable id (1, 2, 3, ..., never reused), as the master numbers them.
pub type WorkerId = u64;

/// What a control client asked the master to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterRequest {
    /// `reload`: the same as SIGHUP.
    Reload,
    /// `scale N`: set the target worker count (at least 1).
    SetTarget(u32),
    /// `stop`: a graceful stop, as SIGTERM.
    GracefulStop,
    /// `quit`: a quick stop, as SIGINT.
    QuickStop,
}

/// One worker as operators see it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    pub id: WorkerId,
    pub pid: Option<i32>,
    pub generation: u64,
    /// `booting`, `ready`, `recycling`, `dumping`, `stopping`, `killed`.
    pub state: &'static str,
    /// Time since it was started.
    pub age: Duration,
    /// Time since its event loop last sent a heartbeat (or its ready message).
    pub heartbeat_age: Duration,
    pub requests: u64,
    pub in_flight: u64,
    /// Latest PSS sample in bytes (only sampled with `max_worker_memory`).
    pub pss: Option<u64>,
    /// Why it is going away, if it is.
    pub leaving: Option<&'static str>,
}

/// The most recent worker exit and why it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRestart {
    pub worker: WorkerId,
    pub pid: Option<i32>,
    pub reason: &'static str,
    /// How long ago.
    pub ago: Duration,
}

/// Everything at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub uptime: Duration,
    pub target: u32,
    pub generation: u64,
    pub reloading: bool,
    pub stopping: bool,
    pub workers: Vec<WorkerStatus>,
    /// Worker exits by reason since the master started (`crash`, `liveness`, `reload`, ...).
    pub restarts: BTreeMap<&'static str, u64>,
    /// Every reason a worker can exit for, in the master's order (for metrics that list each
    /// one from the start, zeros included).
    pub restart_reasons: Vec<&'static str>,
    pub last_restart: Option<LastRestart>,
    /// Workers that became ready, and the total of their boot times (start to ready).
    pub boots: u64,
    pub boot_seconds_total: f64,
    /// Completed and failed reloads, and the total duration of the completed ones.
    pub reloads: u64,
    pub reload_failures: u64,
    pub reload_seconds_total: f64,
    /// Access log lines the workers dropped (a failing or lagging destination).
    pub access_log_dropped: u64,
}

impl Snapshot {
    /// Workers serving now (ready, including those about to be recycled).
    pub fn ready(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| matches!(w.state, "ready" | "recycling"))
            .count()
    }
}
