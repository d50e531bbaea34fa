//! Why a listener could not be set up. One variant per failed action; the operating-system cause
//! sits in `#[source]`. The master prints `Display` as the reason for exit code 5 (`exit::BIND`),
//! so every message names the problem and how to fix it. Hints that depend on the cause are
//! chosen by `io::ErrorKind` or errno, never by the cause's text.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use nix::errno::Errno;

/// A listener could not be bound, adopted or set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "could not resolve host {host:?} of a `bind` address; check its spelling or use an IP \
         address"
    )]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },

    #[error("host {host:?} of a `bind` address resolved to no address; use an IP address instead")]
    ResolveEmpty { host: String },

    #[error("could not create a socket for {addr}{}", fd_limit_hint(.source))]
    Socket {
        addr: String,
        #[source]
        source: io::Error,
    },

    #[error("could not set {option} on the socket for {addr}")]
    SetOption {
        addr: String,
        option: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("could not bind {addr}: {}", tcp_bind_hint(.source))]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },

    #[error("could not listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: io::Error,
    },

    #[error("could not read the local address of the socket bound to {addr}")]
    LocalAddr {
        addr: String,
        #[source]
        source: io::Error,
    },

    #[error("a `unix:` bind has an empty path; give one such as unix:/run/herdsman/app.sock")]
    UnixPathEmpty,

    #[error(
        "unix socket path {} is {len} bytes long, over the {max}-byte limit of sun_path; \
         use a shorter path such as one under /run",
        path.display()
    )]
    UnixPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },

    #[error(
        "the directory {} for unix socket path {} does not exist; create it first",
        parent.display(), path.display()
    )]
    UnixParentMissing { path: PathBuf, parent: PathBuf },

    #[error("unix socket path {} {what}", path.display())]
    UnixPathTaken { path: PathBuf, what: PathOccupant },

    #[error(
        "could not inspect unix socket path {}; check the permissions of its directory",
        path.display()
    )]
    UnixInspect {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "could not tell whether a server still listens on the existing unix socket {}; \
         if none does, remove the file and start again",
        path.display()
    )]
    UnixProbe {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(
        "could not remove the stale unix socket {} left by a dead server; remove it by hand",
        path.display()
    )]
    UnixRemoveStale {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not bind unix socket {}: {}", path.display(), unix_bind_hint(.source))]
    UnixBind {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("fd://{fd} appears twice in `bind`; list each inherited socket once")]
    FdDuplicate { fd: i32 },

    #[error(
        "fd://{fd} is not an open file descriptor; start herdsman with that socket passed to it \
         or remove the fd:// bind"
    )]
    FdBad {
        fd: i32,
        #[source]
        source: Errno,
    },

    #[error(
        "fd://{fd} is not a socket; pass a listening socket (e.g. from systemd socket activation) \
         or bind HOST:PORT instead"
    )]
    FdNotSocket { fd: i32 },

    #[error(
        "fd://{fd} is a socket that is not listening; call listen(2) on it before passing it \
         or bind HOST:PORT instead"
    )]
    FdNotListening { fd: i32 },

    #[error("could not check whether fd://{fd} is a listening socket")]
    FdProbe {
        fd: i32,
        #[source]
        source: io::Error,
    },

    #[error("could not mark fd://{fd} close-on-exec")]
    FdCloexec {
        fd: i32,
        #[source]
        source: Errno,
    },
}

/// What already sits at a unix socket path that herdsman refuses to replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathOccupant {
    /// A socket a server answers on.
    LiveServer,
    /// A symbolic link (never followed, never removed).
    Symlink,
    /// A regular file, directory, fifo or device (never removed).
    NotSocket,
}

impl fmt::Display for PathOccupant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::LiveServer => {
                "is in use by a running server; stop that server or choose another path"
            }
            Self::Symlink => {
                "is a symbolic link, which herdsman never follows; remove the link or \
                 bind the real path"
            }
            Self::NotSocket => {
                "exists and is not a socket, so herdsman leaves it alone; move it away or \
                 choose another path"
            }
        })
    }
}

fn fd_limit_hint(source: &io::Error) -> &'static str {
    match source.raw_os_error() {
        Some(libc::EMFILE) => ": the open file limit of the process is reached; raise `ulimit -n`",
        Some(libc::ENFILE) => ": the system-wide open file limit is reached",
        Some(libc::EAFNOSUPPORT) => ": this address family is not supported on this host",
        _ => "",
    }
}

fn tcp_bind_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::AddrInUse => {
            "the address is already in use; stop the other server or choose another port"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied; ports below 1024 need root or CAP_NET_BIND_SERVICE, \
             choose a port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => {
            "the address is not assigned to this host; bind one of its addresses or 0.0.0.0"
        }
        _ => "the operating system refused",
    }
}

fn unix_bind_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::AddrInUse => {
            "the path was created by someone else while herdsman was binding it; \
             make sure only one server uses this path"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied; herdsman needs write access to the directory"
        }
        _ => "the operating system refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<SocketError> {
        let os = |errno: i32| io::Error::from_raw_os_error(errno);
        let (addr, path) = ("127.0.0.1:8000".to_owned(), PathBuf::from("/run/app.sock"));
        let sock: SocketAddr = ([127, 0, 0, 1], 8000).into();
        let taken = |what| SocketError::UnixPathTaken {
            path: path.clone(),
            what,
        };
        vec![
            SocketError::Resolve {
                host: "exmaple".into(),
                source: os(libc::ENOENT),
            },
            SocketError::ResolveEmpty {
                host: "example".into(),
            },
            SocketError::Socket {
                addr: addr.clone(),
                source: os(libc::EMFILE),
            },
            SocketError::SetOption {
                addr: addr.clone(),
                option: "SO_REUSEADDR",
                source: os(1),
            },
            SocketError::Bind {
                addr: sock,
                source: os(libc::EADDRINUSE),
            },
            SocketError::Bind {
                addr: sock,
                source: os(libc::EACCES),
            },
            SocketError::Bind {
                addr: sock,
                source: os(libc::EADDRNOTAVAIL),
            },
            SocketError::Listen {
                addr: addr.clone(),
                source: os(libc::EOPNOTSUPP),
            },
            SocketError::LocalAddr {
                addr,
                source: os(libc::ENOTSOCK),
            },
            SocketError::UnixPathEmpty,
            SocketError::UnixPathTooLong {
                path: path.clone(),
                len: 120,
                max: 107,
            },
            SocketError::UnixParentMissing {
                path: path.clone(),
                parent: "/run".into(),
            },
            taken(PathOccupant::LiveServer),
            taken(PathOccupant::Symlink),
            taken(PathOccupant::NotSocket),
            SocketError::UnixInspect {
                path: path.clone(),
                source: os(libc::EACCES),
            },
            SocketError::UnixProbe {
                path: path.clone(),
                source: os(libc::EACCES),
            },
            SocketError::UnixRemoveStale {
                path: path.clone(),
                source: os(libc::EACCES),
            },
            SocketError::UnixBind {
                path,
                source: os(libc::EACCES),
            },
            SocketError::FdDuplicate { fd: 3 },
            SocketError::FdBad {
                fd: 3,
                source: Errno::EBADF,
            },
            SocketError::FdNotSocket { fd: 3 },
            SocketError::FdNotListening { fd: 3 },
            SocketError::FdProbe {
                fd: 3,
                source: os(libc::ENOTSOCK),
            },
            SocketError::FdCloexec {
                fd: 3,
                source: Errno::EBADF,
            },
        ]
    }

    #[test]
    fn messages_are_lowercase_fragments_without_the_cause() {
        for err in every_variant() {
            let text = err.to_string();
            eprintln!("{text}");
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
            if let Some(source) = std::error::Error::source(&err) {
                assert!(
                    !text.contains(&source.to_string()),
                    "cause pasted in: {text}"
                );
            }
        }
    }
}
