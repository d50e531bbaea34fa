//! The operations interface: the control socket that `herdsman ctl` talks to, and the opt-in
//! admin HTTP listener with `/metrics`, `/livez` and `/readyz`. Everything runs inside the
//! master's single poll loop, non-blocking and with bounded work per wakeup, so no client, slow
//! or flooding, can stall supervision. docs/operations.md is the user's view.
//!
//! - `server`: [`Ops`], what the loop drives (bind, pollable, on_ready, reload outcomes,
//!   deadlines, close).
//! - `exchange`: what ops and the master loop exchange: the [`Snapshot`] in, the
//!   [`MasterRequest`]s out.
//! - `conn`: the non-blocking connection table with its limits and deadlines.
//! - `control`: the control socket file, its private directory and the peer check.
//! - `protocol`: the JSON-lines control protocol, shared with `ctl`.
//! - `admin`, `metrics`, `health`, `status`: the HTTP side and what the answers contain.
//! - `ctl`, `render`: the `herdsman ctl` client.

mod admin;
mod conn;
mod control;
mod ctl;
mod error;
mod exchange;
mod health;
mod metrics;
mod protocol;
mod render;
mod server;
mod status;

#[cfg(test)]
mod testutil;

pub use ctl::{run as ctl, CtlArgs, CtlCommand, CODES as CTL_EXIT_CODES};
pub use error::{DirProblem, OpsError};
pub use exchange::{LastRestart, MasterRequest, Snapshot, WorkerStatus};
pub use metrics::OpsCounters;
pub use protocol::{Request, Status};
pub use server::{Ops, ReloadOutcome, Token};
