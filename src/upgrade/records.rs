//! What the handover carries besides fds and workers, so that an upgrade is invisible to
//! operators: the master's counters (`/metrics` counters stay monotonic across an upgrade) and
//! the requests under suspicion or in quarantine (a query of death that killed workers before
//! SIGUSR2 is still refused after it). Both were added in handover version 2; a version 1
//! document has neither (the counters then start again from zero, as they did).
//!
//! Times are relative to the moment the handover was written, in whole milliseconds, since an
//! `Instant` does not survive exec as such.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The counters `/metrics` exports, as of the handover.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandedCounters {
    /// Worker exits by reason name (`crash`, `liveness`, `reload`, ...).
    pub restarts: BTreeMap<String, u64>,
    pub boots: u64,
    pub boot_seconds: f64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub reload_seconds: f64,
    pub reloads_refused: u64,
    pub access_log_dropped: u64,
    pub shed_control: u64,
    pub shed_admin: u64,
}

/// One request ("METHOD PATH") that killed workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandedRequest {
    pub request: String,
    /// Deaths counted towards its quarantine (0 once it is quarantined).
    pub deaths: u32,
    /// Time since the last of them.
    pub last_death_ago_ms: u64,
    /// While quarantined: how much longer it is refused.
    pub quarantined_for_ms: Option<u64>,
}
