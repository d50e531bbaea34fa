//! What the first start, the start after an in-place upgrade and the reload path share, below
//! all three so that none imports another: how many workers `workers` means (logging how
//! `auto` was derived) and how many it may mean at most (`max_workers`), the seed of the per-worker jitter draws, and removing the pidfile at
//! exit only while it still holds our pid; logging the runtime directories of dead masters that
//! were reclaimed.

use tracing::{info, warn};

use crate::config::{Config, WorkerCount};
use crate::sizing;
use crate::sys::pidfile::Pidfile;
use crate::worker::RuntimeDir;

/// Logs what creating `runtime` reclaimed: the runtime directories of masters that are gone
/// (killed before they could remove them), except `expected` (after an upgrade: the previous
/// image's, whose lock went with the exec).
pub(super) fn report_reclaimed(runtime: &RuntimeDir, expected: Option<&std::path::Path>) {
    let reclaimed = runtime.reclaimed();
    for dir in &reclaimed.removed {
        if Some(dir.as_path()) != expected {
            info!(path = %dir.display(), "removed the runtime directory of a master that is gone");
        }
    }
    for (dir, e) in &reclaimed.failed {
        warn!(path = %dir.display(), error = %e, "could not remove the runtime directory of a master that is gone");
    }
}

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

/// The most workers `config` allows: `max_workers`, or this machine's bound when it is `auto`
/// (see `sizing::bounds`), and how that was reached.
pub fn max_workers(config: &Config) -> (u32, String) {
    match config.max_workers {
        WorkerCount::Fixed(n) => (n.get(), format!("max_workers = {n}")),
        WorkerCount::Auto => {
            let bound = sizing::max_workers();
            let why = format!("this machine's bound: {}", bound.explanation);
            (bound.max, why)
        }
    }
}

/// Refuses a `workers` count above `max_workers`: the message names both keys and the fix.
/// Checked by `herdsman check`, at start and on reload.
pub fn check_bounds(config: &Config) -> Result<(), String> {
    let WorkerCount::Fixed(n) = config.workers else {
        return Ok(());
    };
    let (max, why) = max_workers(config);
    if n.get() <= max {
        return Ok(());
    }
    Err(format!(
        "workers: {n} is more than the {max} workers allowed ({why}); lower `workers`, or set \
         `max_workers = {n}` (--max-workers {n}, HERDSMAN_MAX_WORKERS={n}) if this machine really \
         is meant to run that many"
    ))
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
