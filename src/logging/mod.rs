//! Master logging through `tracing`: human-readable text on a terminal, one JSON object per line
//! for machines, to stderr or to a log file that SIGUSR1 reopens. Nothing is ever logged from a
//! signal handler or between fork and exec.
//!
//! - `setup`: installs the subscriber and the destination once, at start.
//! - `sink`: the destination; failed writes are dropped and counted, never fatal, and captured
//!   worker output is written without ever blocking.

mod setup;
mod sink;

pub use setup::{init, reopen, LogError};
pub use sink::{file_fd, write_captured};
