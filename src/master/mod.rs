//! The master: a pure supervision state machine ([`state::Master`]) and the single-threaded poll
//! loop ([`run`]) that feeds it events and applies its actions.

mod channels;
mod event;
mod exits;
mod hooks;
mod launch;
mod policy;
mod resume;
mod run;
mod start;
mod state;
mod watch;
mod workers;

pub use event::{Action, Event, StopMode, WorkerId, WorkerSignal};
pub use launch::{check_bounds, max_workers};
pub use policy::Policy;
pub use resume::resume;
pub use run::{ReloadError, RunError};
pub use start::start;
pub use state::Master;
pub use workers::{Phase, Reason, Worker};

#[cfg(test)]
mod state_tests;
