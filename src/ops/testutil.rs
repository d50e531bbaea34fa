//! Test helpers for the operations layer.

use std::time::Duration;

use super::exchange::{Snapshot, WorkerStatus};

/// A snapshot with `target` and one worker per state (ids from 1, pids from 100).
pub fn snapshot(target: u32, states: &[&'static str]) -> Snapshot {
    let workers = states
        .iter()
        .enumerate()
        .map(|(i, state)| WorkerStatus {
            id: i as u64 + 1,
            pid: Some(100 + i as i32),
            generation: 0,
            state,
            age: Duration::from_secs(10),
            heartbeat_age: Duration::from_millis(500),
            requests: 0,
            in_flight: 0,
            pss: None,
            leaving: None,
        })
        .collect();
    Snapshot {
        uptime: Duration::from_secs(10),
        target,
        generation: 0,
        reloading: false,
        stopping: false,
        workers,
        restarts: Default::default(),
        restart_reasons: crate::master::Reason::ALL
            .map(crate::master::Reason::as_str)
            .to_vec(),
        last_restart: None,
        boots: 0,
        boot_seconds_total: 0.0,
        reloads: 0,
        reload_failures: 0,
        reload_seconds_total: 0.0,
        access_log_dropped: 0,
    }
}
