//! What the first start, the start after an in-place upgrade and the reload path share, below
//! all three so that none imports another: how many workers `workers` means (logging how
//! `auto` was derived), the seed of the per-worker jitter draws, and removing the pidfile at
//! exit only while it still holds our pid.

use tracing::{info, warn};

use crate::config::WorkerCount;
use crate::sizing;
use crate::sys::pidfile::Pidfile;

/// The number of workers for `count`, logging how `auto` was derived.
pub(super) fn worker_target(count: WorkerCount) -> u32 {
    match count {
        WorkerCount::Fixed(n) => n.get(),
        WorkerCount::Auto => {
            let sizing = sizing::detect();
            info!(
                workers = sizing.workers,
                "auto sizing: {}",
                sizing.explain()
            );
            sizing.workers
        }
    }
}

/// Removes the pidfile if it is still ours; one left alone is said so.
pub(super) fn remove_pidfile(pidfile: Option<Pidfile>) {
    let Some(pidfile) = pidfile else { return };
    let path = pidfile.path().display().to_string();
    match pidfile.remove() {
        Ok(true) => {}
        Ok(false) => warn!(path, "the pidfile no longer holds our pid: left in place"),
        Err(e) => warn!(path, error = %e, "could not remove the pidfile"),
    }
}

/// A seed for the per-worker jitter draws that differs between runs and hosts.
pub(super) fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
