//! Why an upgrade did not happen. Every variant leaves the running master as it was: it keeps
//! serving and logs the error.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use super::handover::HandoverError;
use crate::sys::exec::ExecError;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("the new binary {} is missing", path.display())]
    Missing {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the new binary {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("the new binary {} is not executable", path.display())]
    NotExecutable {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("the path of the new binary or one of the master's arguments is not UTF-8")]
    NotUtf8,
    #[error("could not open /dev/null for the check")]
    DevNull(#[source] io::Error),
    #[error("could not create the pipe for the check's output")]
    CheckPipe(#[source] Errno),
    #[error("could not start the check of the new binary")]
    CheckSpawn(#[source] ExecError),
    #[error(transparent)]
    Handover(#[from] HandoverError),
    #[error("could not keep fd {fd} open across exec")]
    Inherit {
        fd: i32,
        #[source]
        source: Errno,
    },
    #[error("could not block signals for the exec")]
    SignalMask(#[source] Errno),
    #[error("could not execute the new binary {}", path.display())]
    Exec {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{var} is not an fd number: {value:?}")]
    BadFdVar { var: &'static str, value: String },
    #[error("the handed-over fd {fd} is not open")]
    NotOpen {
        fd: i32,
        #[source]
        source: Errno,
    },
    #[error("the handover names fd {fd} twice")]
    DuplicateFd { fd: i32 },
    #[error("{var}={value:?}: this binary reads handover formats {reads:?}")]
    UnreadableFormat {
        var: &'static str,
        value: String,
        reads: &'static [u32],
    },
}
