//! Workers: how one is started (the [`Spawner`] seam: an exec'd interpreter, or a fork from
//! the generation's zygote), the channel protocol it speaks (docs/protocol.md), the Python runtime it runs, and
//! its captured output.

pub mod engine_lib;
pub mod gunicorn_cfg;
pub mod inflight;
mod output;
mod protocol;
pub use crate::sys::python;
mod reclaim;
mod runtime;
mod spawner;
mod spec;
pub mod zygote;

pub use protocol::{BootErrorKind, InFlightRequest, LineBuffer, WorkerMessage};
pub use reclaim::Reclaimed;
pub use runtime::{RuntimeDir, RuntimeError};
pub use spawner::{ExecSpawner, SpawnError, Spawned, Spawner};
pub use spec::{heartbeat_interval, idle_heartbeat_interval, WorkerSpec};
