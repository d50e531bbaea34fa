//! Workers: how one is started (the [`Spawner`] seam: exec'd interpreter today, a zygote fork
//! later), the channel protocol it speaks (docs/protocol.md), the Python runtime it runs, and
//! its captured output.

mod output;
mod protocol;
pub mod python;
mod runtime;
mod spawner;

pub use protocol::{BootErrorKind, InFlightRequest, LineBuffer, WorkerMessage};
pub use runtime::{RuntimeDir, RuntimeError};
pub use spawner::{ExecSpawner, SpawnError, Spawned, Spawner, WorkerSpec};
