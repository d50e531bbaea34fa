//! The systemd contract: the notify protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`,
//! `WATCHDOG=1`, `EXTEND_TIMEOUT_USEC=`) and socket activation (`LISTEN_FDS`). Everything is
//! optional: without `NOTIFY_SOCKET` and `LISTEN_*` herdsman behaves exactly as without systemd.
//! docs/deploy/README.md is the operator's view.
//!
//! - `contract`: what to say when, as a pure state machine.
//! - `notifier`: [`Notifier`], what the master loop drives.
//! - `socket`: the datagram socket to `NOTIFY_SOCKET`.
//! - `watchdog`: `WATCHDOG_USEC` and the ping schedule.
//! - `activation`: taking the sockets systemd passed instead of binding.

pub mod activation;
mod contract;
mod notifier;
mod socket;
mod watchdog;

pub use activation::{listeners, ActivationError, ListenError};
pub use contract::{Phase, Summary};
pub use notifier::{Notifier, Observed};
