//! The control socket's file and its access rules (security checklist: control socket).
//!
//! Invariants:
//! - Default location: `<master pid>.sock` in the private directory
//!   `${XDG_RUNTIME_DIR:-/tmp}/herdsman-<uid>/`. The directory is created with mode 0700; an
//!   existing one is used only if it is a real directory (not a symlink) owned by our uid with no
//!   group or other access. Anyone can create that name first in a shared /tmp, so an unsafe one
//!   neither stops the master nor is used: the socket goes into a fallback directory beside it,
//!   `herdsman-<uid>.XXXXXX` (random, made by mkdtemp with mode 0700, so nobody else can have made
//!   it; an existing safe one is reused), with a warning that names the problem and the fix.
//!   `herdsman ctl` looks in the default directory if it is safe and in every safe fallback, and
//!   never in an unsafe one. Stale sockets of dead masters are removed at start, so `herdsman
//!   ctl` finds only live ones.
//! - The socket is created with its final mode 0600 (umask 0177 around bind(2), under the same
//!   lock as the listeners' binds): there is no window with a wider mode. As for `unix:` binds,
//!   a symlink, a non-socket or a live socket at the path is refused, a stale one replaced.
//! - Every accepted connection's peer credentials (SO_PEERCRED) are checked: only our own uid
//!   and root may talk to the master. Anything else is closed with a logged warning.
//! - At exit the file is removed only if the path still names the socket we created.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;

use nix::errno::Errno;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use nix::unistd::geteuid;
use tracing::{debug, warn};

use super::error::{DirProblem, OpsError};
use crate::sockets::{self, SocketFile, UMASK_LOCK};

/// umask during bind(2): the socket gets 0777 & !0o177 = 0600.
const SOCKET_UMASK: u32 = 0o177;

/// The private directory of `uid`'s control sockets, under `runtime_dir` (`$XDG_RUNTIME_DIR`)
/// when it is set and not empty, else under /tmp.
pub fn private_dir(uid: u32, runtime_dir: Option<OsString>) -> PathBuf {
    let base = runtime_dir
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    base.join(format!("herdsman-{uid}"))
}

/// The private directory of this process's effective uid, from its environment.
pub fn own_private_dir() -> PathBuf {
    private_dir(geteuid().as_raw(), std::env::var_os("XDG_RUNTIME_DIR"))
}

/// The bound control socket.
pub struct ControlSocket {
    listener: UnixListener,
    file: SocketFile,
}

impl ControlSocket {
    /// Creates the socket at `configured`, or in the private directory.
    pub fn bind(configured: Option<&Path>) -> Result<ControlSocket, OpsError> {
        let path = match configured {
            Some(path) => path.to_path_buf(),
            None => {
                let dir = usable_private_dir(own_private_dir())?;
                remove_stale_sockets(&dir);
                dir.join(format!("{}.sock", std::process::id()))
            }
        };
        let (len, max) = (path.as_os_str().len(), crate::addr::max_unix_path_len());
        if len > max {
            return Err(OpsError::PathTooLong { path, len, max });
        }
        sockets::clear_stale(&path).map_err(OpsError::Occupied)?;
        let listener = bind_private(&path)?;
        let bind_failed = |source| OpsError::Bind {
            path: path.clone(),
            source,
        };
        let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let file = SocketFile::record(&shown).map_err(bind_failed)?;
        if let Err(source) = listener.set_nonblocking(true) {
            file.remove_if_ours();
            return Err(bind_failed(source));
        }
        Ok(ControlSocket { listener, file })
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Closes the socket and removes its file if it is still ours.
    pub fn close(self) {
        drop(self.listener);
        self.file.remove_if_ours();
    }
}

/// bind(2) with umask 0177, so the socket is born 0600.
fn bind_private(path: &Path) -> Result<UnixListener, OpsError> {
    let _guard = UMASK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let previous = umask(Mode::from_bits_truncate(SOCKET_UMASK));
    let bound = UnixListener::bind(path);
    umask(previous);
    bound.map_err(|source| OpsError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates `dir` with mode 0700, or checks that the existing one is ours alone.
fn ensure_private_dir(dir: &Path) -> Result<(), OpsError> {
    match nix::unistd::mkdir(dir, Mode::S_IRWXU) {
        Ok(()) => debug!(dir = %dir.display(), "created the control socket directory"),
        Err(Errno::EEXIST) => {}
        Err(source) => {
            return Err(OpsError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    }
    let ours = geteuid().as_raw();
    let unsafe_dir = |problem| OpsError::UnsafeDir {
        dir: dir.to_path_buf(),
        problem,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| OpsError::CreateDir {
        dir: dir.to_path_buf(),
        source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    check_private(&meta, ours).map_err(unsafe_dir)
}

/// `dir` if it is ours alone (created if missing); if something unsafe holds its name, a
/// fallback beside it (see the module doc).
fn usable_private_dir(dir: PathBuf) -> Result<PathBuf, OpsError> {
    let problem = match ensure_private_dir(&dir) {
        Ok(()) => return Ok(dir),
        Err(OpsError::UnsafeDir { problem, .. }) => problem,
        Err(e) => return Err(e),
    };
    let fallback = match fallback_dirs(&dir).into_iter().next() {
        Some(existing) => existing,
        None => {
            let template = PathBuf::from(format!("{}.XXXXXX", dir.display()));
            nix::unistd::mkdtemp(&template).map_err(|source| OpsError::CreateDir {
                dir: template,
                source,
            })?
        }
    };
    warn!(
        dir = %dir.display(),
        fallback = %fallback.display(),
        "not using the control socket directory {}: {problem}; using {} instead (herdsman ctl          looks there too); remove {} so that the usual one is used",
        dir.display(),
        fallback.display(),
        dir.display()
    );
    Ok(fallback)
}

/// The directories `herdsman ctl` looks in for the sockets of this user's masters: the default
/// one if it is safe, then the safe fallbacks beside it.
pub fn private_dirs(dir: &Path) -> Vec<PathBuf> {
    let ours = geteuid().as_raw();
    let safe = std::fs::symlink_metadata(dir).is_ok_and(|m| check_private(&m, ours).is_ok());
    let default = safe.then(|| dir.to_path_buf());
    default.into_iter().chain(fallback_dirs(dir)).collect()
}

/// The fallbacks of `dir` (`<dir>.XXXXXX`) that are ours alone, sorted.
fn fallback_dirs(dir: &Path) -> Vec<PathBuf> {
    let (Some(base), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let ours = geteuid().as_raw();
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| check_private(&m, ours).is_ok()))
        .collect();
    dirs.sort();
    dirs
}

/// A directory only `ours` can use.
fn check_private(meta: &std::fs::Metadata, ours: u32) -> Result<(), DirProblem> {
    if meta.file_type().is_symlink() {
        return Err(DirProblem::Symlink);
    }
    if !meta.is_dir() {
        return Err(DirProblem::NotADirectory);
    }
    if meta.uid() != ours {
        return Err(DirProblem::Owner {
            owner: meta.uid(),
            ours,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(DirProblem::Mode(mode));
    }
    Ok(())
}

/// Removes the `*.sock` files in `dir` nobody listens on any more (masters that were killed).
fn remove_stale_sockets(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "sock") {
            // Live sockets and anything that is not a socket are left alone.
            let _ = sockets::clear_stale(&path);
        }
    }
}

/// Whether the peer of `conn` may use the control socket: our own uid or root. `Err` carries the
/// peer's uid (or the error reading it) for the log.
pub fn check_peer(conn: BorrowedFd<'_>) -> Result<u32, PeerRefused> {
    let creds = getsockopt(&conn, PeerCredentials).map_err(PeerRefused::Unknown)?;
    let (uid, ours) = (creds.uid(), geteuid().as_raw());
    if uid == ours || uid == 0 {
        Ok(uid)
    } else {
        Err(PeerRefused::Uid {
            uid,
            pid: creds.pid(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRefused {
    Uid { uid: u32, pid: i32 },
    Unknown(Errno),
}

/// Whether `err` from connect(2) means nobody listens there (a stale socket or no socket).
pub fn is_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_private_dir_follows_xdg_runtime_dir() {
        assert_eq!(
            private_dir(1000, Some("/run/user/1000".into())),
            PathBuf::from("/run/user/1000/herdsman-1000")
        );
        assert_eq!(private_dir(0, None), PathBuf::from("/tmp/herdsman-0"));
        assert_eq!(
            private_dir(7, Some("".into())),
            PathBuf::from("/tmp/herdsman-7")
        );
    }

    #[test]
    fn private_dirs_are_created_0700_and_others_refused() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("herdsman-x");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ensure_private_dir(&dir).expect("an existing private dir is fine");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err();
        assert!(err.to_string().contains("its mode is 0750"), "{err}");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err();
        assert!(err.to_string().contains("it is a symlink"), "{err}");
        let meta = std::fs::symlink_metadata(base.path()).unwrap();
        let other = meta.uid() + 1;
        assert_eq!(
            check_private(&meta, other),
            Err(DirProblem::Owner {
                owner: meta.uid(),
                ours: other
            })
        );
    }

    #[test]
    fn an_unsafe_private_dir_gets_a_reused_private_fallback_and_is_never_listed() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("herdsman-x");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let fallback = usable_private_dir(dir.clone()).expect("a fallback");
        assert_ne!(fallback, dir);
        assert!(fallback
            .to_string_lossy()
            .starts_with(&*format!("{}.", dir.display())));
        let mode = std::fs::metadata(&fallback).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(usable_private_dir(dir.clone()).unwrap(), fallback, "reused");
        assert_eq!(
            private_dirs(&dir),
            vec![fallback.clone()],
            "the unsafe one is skipped"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            usable_private_dir(dir.clone()).unwrap(),
            dir,
            "safe again: used"
        );
        assert_eq!(private_dirs(&dir), vec![dir, fallback]);
    }

    #[test]
    fn the_socket_is_born_0600_and_removed_only_while_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let socket = ControlSocket::bind(Some(&path)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let client = UnixStream::connect(&path).unwrap();
        let (conn, _) = socket.listener.accept().unwrap();
        assert_eq!(check_peer(conn.as_fd()), Ok(geteuid().as_raw()));
        drop(client);
        let err = ControlSocket::bind(Some(&path))
            .err()
            .expect("a live socket is refused");
        assert!(matches!(err, OpsError::Occupied(_)), "{err}");
        socket.close();
        assert!(!path.exists());
    }
}
