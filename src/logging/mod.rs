//! Master logging through `tracing`: human-readable text on a terminal, one JSON object per line
//! for machines, to stderr or to a log file that SIGUSR1 reopens. Nothing is ever logged from a
//! signal handler or between fork and exec.
//!
//! - `setup`: installs the subscriber and the destination once, at start.
//! - `sink`: the destination; failed writes are dropped and counted, never fatal, and captured
//!   worker output is written without ever blocking.

//! - `captured`: a captured worker line as a record in the log's format.

mod captured;
mod setup;
mod sink;

pub use setup::{init, reopen, LogError};
pub use sink::{file_fd, format, write_captured};

/// Writes one captured line of worker `worker` (pid `pid`) as a record of the master's log,
/// without blocking; returns whether it was written.
pub fn write_worker_line(worker: u64, pid: i32, line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    write_captured(&captured::render(format(), worker, pid, line))
}
