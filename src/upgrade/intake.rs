//! The new binary's side, run first thing in `main`, right after the signal handlers are
//! installed: take the handover (or, in a `check` run, answer whether it could), mark the
//! adopted fds close-on-exec again, and restore the signal mask the old image blocked for the
//! exec, so the signals sent during the handover are delivered now, to our handlers.
//!
//! Every variable of the upgrade is removed from the environment at once: they are not
//! configuration (the loader rejects unknown `HERDSMAN_*` variables) and must not reach the next
//! exec. If the handover cannot be read but the way back to the previous binary is known
//! (`rollback`), every signal stays blocked: the previous binary, executed again, restores the
//! mask.

use std::ffi::OsStr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::error::UpgradeError;
use super::exec::{set_cloexec, set_mask};
use super::handover::{Handover, CHECK_VAR, FD_VAR, READS};
use super::rollback::{take_previous, take_rollback_reason, Previous};

/// What the new image of an upgrade finds.
#[derive(Debug)]
pub struct Intake {
    /// The handover. After an error, the process must roll back (if it can) or exit: the state
    /// is lost (its workers die with it).
    pub handover: Result<Handover, UpgradeError>,
    /// The way back to the previous binary, until this image has taken over.
    pub previous: Option<Previous>,
    /// This image is the previous binary again, after a rollback, for this reason.
    pub rolled_back: Option<String>,
}

/// The handover, if this process is the new image of an upgrade; `None` otherwise.
pub fn take_handover() -> Option<Intake> {
    let value = std::env::var_os(FD_VAR)?;
    // The process is single-threaded this early: nothing else reads the environment now.
    std::env::remove_var(FD_VAR);
    let previous = take_previous();
    let rolled_back = take_rollback_reason();
    let handover = read_handover(&value);
    let mask = match &handover {
        Ok(handover) => Some(handover.signal_mask.clone()),
        // Blocked until the previous binary restores the handover's mask.
        Err(_) if previous.is_some() => None,
        Err(_) => Some(Vec::new()),
    };
    if let Some(Err(e)) = mask.map(|mask| set_mask(&mask)) {
        eprintln!("herdsman: could not restore the signal mask after the upgrade: {e}");
    }
    Some(Intake {
        handover,
        previous,
        rolled_back,
    })
}

fn read_handover(value: &OsStr) -> Result<Handover, UpgradeError> {
    let text = value.to_string_lossy();
    let fd: RawFd =
        text.parse()
            .ok()
            .filter(|fd| *fd > 2)
            .ok_or_else(|| UpgradeError::BadFdVar {
                var: FD_VAR,
                value: text.to_string(),
            })?;
    // SAFETY: F_GETFD only reads the descriptor flags; a number that is not open fails.
    Errno::result(unsafe { libc::fcntl(fd, libc::F_GETFD) })
        .map_err(|source| UpgradeError::NotOpen { fd, source })?;
    // SAFETY: `fd` is open (checked above); the old image created it for this handover and
    // named it only in this variable, which is gone now, so nothing else owns it.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let handover = Handover::read(memfd)?;
    let fds = handover.fds();
    set_cloexec(&fds).map_err(|(fd, source)| UpgradeError::NotOpen { fd, source })?;
    // Each fd gets exactly one owner in the new image.
    let mut sorted = fds.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(UpgradeError::DuplicateFd { fd: pair[0] });
    }
    Ok(handover)
}

/// In a `check` run: if an old master asks whether this binary reads the handover format it is
/// about to write, refuses a format it does not read. Removes the variable either way.
pub fn take_check_request() -> Result<(), UpgradeError> {
    let Some(value) = std::env::var_os(CHECK_VAR) else {
        return Ok(());
    };
    std::env::remove_var(CHECK_VAR);
    let value = value.to_string_lossy().into_owned();
    match value.parse::<u32>() {
        Ok(version) if READS.contains(&version) => Ok(()),
        _ => Err(UpgradeError::UnreadableFormat {
            var: CHECK_VAR,
            value,
            reads: READS,
        }),
    }
}
