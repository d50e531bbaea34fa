//! A listening socket the master holds for its whole life, and how it is released.
//!
//! Invariants: the fd is close-on-exec (the spawner dup2's it into workers on purpose); a
//! `Listener` never unlinks anything when dropped, because a forked child that drops its copy
//! must not remove the master's socket file. Only [`close_all`] removes a unix socket file, and
//! only while the path still names the very socket this process bound (same device and inode).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tracing::debug;

use crate::addr::BindSpec;

/// The address a listener is bound to, as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundAddr {
    /// A TCP listener with its real local address (the real port when the spec asked for 0).
    Tcp(SocketAddr),
    /// A unix socket bound by herdsman, absolute path.
    Unix(PathBuf),
    /// A listening socket inherited through `fd://N`; `addr` is its local address as text.
    Inherited { fd: i32, addr: String },
}

impl fmt::Display for BoundAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Inherited { fd, addr } => write!(f, "fd://{fd} ({addr})"),
        }
    }
}

/// The identity of a unix socket file this process created: removed at close only if the path
/// still names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketFile {
    pub(crate) path: PathBuf,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl SocketFile {
    /// Records the identity of the socket file now at `path`.
    pub(crate) fn record(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Whether `path` still names the socket we created.
    fn is_still_ours(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => {
                meta.file_type().is_socket() && meta.dev() == self.dev && meta.ino() == self.ino
            }
            Err(_) => false,
        }
    }

    /// Unlinks the file if it is still ours; anything else at the path is left alone.
    pub(crate) fn remove_if_ours(&self) {
        let path = self.path.display();
        if !self.is_still_ours() {
            debug!(%path, "unix socket path no longer names our socket; left alone");
            return;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => debug!(%path, "removed our unix socket file"),
            Err(error) => debug!(%path, %error, "could not remove our unix socket file"),
        }
    }
}

/// One listening socket owned by the master.
#[derive(Debug)]
pub struct Listener {
    spec: BindSpec,
    fd: OwnedFd,
    local: BoundAddr,
    socket_file: Option<SocketFile>,
}

impl Listener {
    pub(crate) fn new(
        spec: BindSpec,
        fd: OwnedFd,
        local: BoundAddr,
        socket_file: Option<SocketFile>,
    ) -> Self {
        Self {
            spec,
            fd,
            local,
            socket_file,
        }
    }

    /// The listening fd (close-on-exec in the master).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The address actually bound.
    pub fn local(&self) -> &BoundAddr {
        &self.local
    }

    /// The configured spec this listener came from (one TCP spec may give several listeners).
    pub fn spec(&self) -> &BindSpec {
        &self.spec
    }

    /// The unix socket file this listener created, as (path, device, inode), for a handover.
    pub(crate) fn created_file(&self) -> Option<(&Path, u64, u64)> {
        let file = self.socket_file.as_ref()?;
        Some((file.path.as_path(), file.dev, file.ino))
    }

    /// A listener handed over by a previous image of this process (in-place upgrade), with the
    /// socket file it created, if any; `fd` must be close-on-exec already.
    pub(crate) fn handed_over(
        spec: BindSpec,
        fd: OwnedFd,
        local: BoundAddr,
        created_file: Option<(PathBuf, u64, u64)>,
    ) -> Self {
        let socket_file = created_file.map(|(path, dev, ino)| SocketFile { path, dev, ino });
        Self::new(spec, fd, local, socket_file)
    }

    /// Closes the fd, then removes the socket file if this process created it and it is still
    /// the same socket.
    fn close(self) {
        let Listener {
            fd,
            local,
            socket_file,
            ..
        } = self;
        drop(fd);
        debug!(listener = %local, "closed listener");
        if let Some(file) = socket_file {
            file.remove_if_ours();
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

/// Closes every listener and removes the unix socket files we created, if still ours.
pub fn close_all(listeners: Vec<Listener>) {
    for listener in listeners {
        listener.close();
    }
}
