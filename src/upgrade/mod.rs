//! In-place binary upgrade (SIGUSR2): the running master execs the new herdsman binary in its
//! own process, so the pid does not change (systemd, pidfiles and supervisors keep tracking
//! it), the listening sockets never close, and the workers (children of that same pid) keep
//! serving while the new image adopts them and rolls them over to new ones.
//!
//! The pieces, in the order an upgrade uses them:
//! - [`Binary`]: the path and arguments to exec, decided at start.
//! - [`Check`]: `NEW check ARGS` as a child, without blocking the loop; a failure refuses
//!   the upgrade while the old image keeps serving.
//! - [`Handover`]: the versioned state written into a memfd (format and compatibility rule
//!   in `handover.rs`).
//! - [`HandedCounters`], [`HandedRequest`]: what operators see, carried across.
//! - [`exec_in_place`]: blocks every signal, keeps exactly the handed-over fds open across
//!   exec, execs; puts everything back if exec fails.
//! - [`take_handover`]: the new image's first step after installing its signal handlers.
//! - [`roll_back`]: the new image's way back to the previous binary when it cannot take over.
//!
//! The loop's side (when an upgrade may start, what goes into the handover, the rollout that
//! follows in the new image) is in `master`.

mod binary;
mod check;
mod error;
mod exec;
mod handover;
mod intake;
mod records;
mod rollback;

pub use binary::Binary;
pub use check::{Check, Outcome, CHECK_TIMEOUT};
pub use error::UpgradeError;
pub use exec::{exec_in_place, Deferred};
pub use handover::{
    Address, Bind, HandedIdentity, HandedListener, HandedOutput, HandedPhase, HandedWorker,
    Handover, HandoverError, SocketFileId, Spec, CHECK_VAR, FD_VAR, VERSION,
};
pub use intake::{take_check_request, take_handover, Intake};
pub use records::{HandedCounters, HandedRequest};
pub use rollback::{roll_back, Previous, PREVIOUS_VAR, ROLLBACK_VAR};
