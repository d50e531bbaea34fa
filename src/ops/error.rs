//! Why the control socket or the admin listener could not be set up at start. The master prints
//! `Display` with the sources and exits with `exit::BIND`, before any worker is started.

use std::fmt;
use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::sockets::SocketError;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("could not create the control socket directory {}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: Errno,
    },

    #[error(
        "refusing the control socket directory {}: {problem}; remove it, or set control_socket",
        dir.display()
    )]
    UnsafeDir { dir: PathBuf, problem: DirProblem },

    #[error(
        "control socket path {} is {len} bytes long, over the {max}-byte limit of a unix socket \
         address; set control_socket to a shorter path",
        path.display()
    )]
    PathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    #[error("cannot create the control socket")]
    Occupied(#[source] SocketError),

    #[error("could not create the control socket {}", path.display())]
    Bind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not set up the admin listener (admin_bind = {spec:?})")]
    Admin {
        spec: String,
        #[source]
        source: SocketError,
    },

    #[error("could not make the admin listener non-blocking")]
    NonBlocking(#[source] Errno),
}

/// What is wrong with an existing control socket directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirProblem {
    /// A symlink: whoever made it chooses where our socket goes.
    Symlink,
    NotADirectory,
    /// Owned by another user, who could replace our socket.
    Owner {
        owner: u32,
        ours: u32,
    },
    /// Group or others have some access.
    Mode(u32),
}

impl fmt::Display for DirProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirProblem::Symlink => write!(f, "it is a symlink"),
            DirProblem::NotADirectory => write!(f, "it is not a directory"),
            DirProblem::Owner { owner, ours } => {
                write!(
                    f,
                    "it belongs to uid {owner}, not to this master's uid {ours}"
                )
            }
            DirProblem::Mode(mode) => write!(
                f,
                "its mode is {mode:04o}: group or others have access (it must be 0700)"
            ),
        }
    }
}
