//! Unix-domain listeners for a `unix:PATH` spec (security checklist: unix listening socket).
//!
//! Invariants:
//! - The file is created with its final mode 0660: the umask is 0o117 for the bind(2) call only
//!   and restored right after, so there is no window where the socket is more open than that.
//!   The umask is process-wide; a lock keeps two binds in this process from saving and restoring
//!   each other's value.
//! - Nothing is clobbered: a symlink or a non-socket at the path is refused and left intact; a
//!   socket a server still answers on is refused; only a socket nobody listens on (connect(2)
//!   says ECONNREFUSED: a dead run left it) is removed, and only if it is still the very file we
//!   inspected. If another process creates the path between that check and our bind(2), bind
//!   fails with EADDRINUSE and we report it; we never retry by unlinking.
//! - The listener records the device and inode of the file it created, so that `close_all`
//!   removes it only while it is still ours.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use nix::sys::stat::{umask, Mode};
use socket2::{Domain, SockAddr, Socket, Type};
use tracing::{debug, warn};

use super::error::{PathOccupant, SocketError};
use super::listener::{BoundAddr, Listener, SocketFile};
use super::tcp::listen_backlog;
use crate::addr::{max_unix_path_len, BindSpec};

/// umask during bind(2): the socket file gets 0777 & !0o117 = 0660, never world-accessible.
const BIND_UMASK: u32 = 0o117;

/// Serialises the save/restore of the process-wide umask around bind(2).
pub(crate) static UMASK_LOCK: Mutex<()> = Mutex::new(());

/// Binds and listens on `path` with mode 0660, replacing only a stale socket file.
pub(crate) fn bind_unix(
    spec: &BindSpec,
    path: &Path,
    backlog: u32,
) -> Result<Listener, SocketError> {
    check_path_len(path)?;
    check_parent_exists(path)?;
    clear_stale(path)?;
    let socket =
        Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|source| SocketError::Socket {
            addr: label(path),
            source,
        })?;
    bind_with_umask(&socket, path)?;
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let file = SocketFile::record(&shown).map_err(|source| SocketError::UnixInspect {
        path: path.to_path_buf(),
        source,
    })?;
    if let Err(source) = socket.listen(listen_backlog(backlog)) {
        file.remove_if_ours();
        return Err(SocketError::Listen {
            addr: label(path),
            source,
        });
    }
    Ok(Listener::new(
        spec.clone(),
        socket.into(),
        BoundAddr::Unix(shown),
        Some(file),
    ))
}

fn label(path: &Path) -> String {
    format!("unix:{}", path.display())
}

fn check_path_len(path: &Path) -> Result<(), SocketError> {
    let len = path.as_os_str().len();
    let max = max_unix_path_len();
    match len {
        0 => Err(SocketError::UnixPathEmpty),
        _ if len > max => Err(SocketError::UnixPathTooLong {
            path: path.to_path_buf(),
            len,
            max,
        }),
        _ => Ok(()),
    }
}

fn check_parent_exists(path: &Path) -> Result<(), SocketError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    match fs::metadata(parent) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SocketError::UnixParentMissing {
            path: path.to_path_buf(),
            parent: parent.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Refuses whatever sits at `path` unless it is a socket nobody listens on, which it removes.
pub(crate) fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::UnixInspect {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let taken = |what| SocketError::UnixPathTaken {
        path: path.to_path_buf(),
        what,
    };
    if meta.file_type().is_symlink() {
        return Err(taken(PathOccupant::Symlink));
    }
    if !meta.file_type().is_socket() {
        return Err(taken(PathOccupant::NotSocket));
    }
    match probe(path)? {
        Probe::Live => Err(taken(PathOccupant::LiveServer)),
        Probe::Gone => Ok(()),
        Probe::Stale => {
            let seen = SocketFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
            };
            remove_stale(&seen)
        }
    }
}

/// What a connect(2) to an existing socket file says about it.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// A server accepted, or its backlog is full: it is alive.
    Live,
    /// Nobody listens (ECONNREFUSED): left behind by a dead server.
    Stale,
    /// The file vanished meanwhile.
    Gone,
}

fn probe(path: &Path) -> Result<Probe, SocketError> {
    let failed = |source| SocketError::UnixProbe {
        path: path.to_path_buf(),
        source,
    };
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    let addr = SockAddr::unix(path).map_err(failed)?;
    match socket.connect(&addr) {
        Ok(()) => Ok(Probe::Live),
        Err(err) => match err.kind() {
            io::ErrorKind::ConnectionRefused => Ok(Probe::Stale),
            io::ErrorKind::NotFound => Ok(Probe::Gone),
            io::ErrorKind::WouldBlock => Ok(Probe::Live),
            _ => Err(failed(err)),
        },
    }
}

/// Removes the stale socket, only if the path still names the file that was probed. If it
/// changed meanwhile it is left alone, and bind(2) then reports the path as in use.
fn remove_stale(seen: &SocketFile) -> Result<(), SocketError> {
    let path = &seen.path;
    let unchanged = fs::symlink_metadata(path).is_ok_and(|meta| {
        meta.file_type().is_socket() && meta.dev() == seen.dev && meta.ino() == seen.ino
    });
    if !unchanged {
        debug!(path = %path.display(), "stale unix socket changed before removal; left alone");
        return Ok(());
    }
    match fs::remove_file(path) {
        Ok(()) => {
            warn!(path = %path.display(), "removed a stale unix socket left by a dead server");
            Ok(())
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SocketError::UnixRemoveStale {
            path: path.clone(),
            source,
        }),
    }
}

/// bind(2) with the umask set so the file is created with mode 0660.
fn bind_with_umask(socket: &Socket, path: &Path) -> Result<(), SocketError> {
    let failed = |source| SocketError::UnixBind {
        path: PathBuf::from(path),
        source,
    };
    let addr = SockAddr::unix(path).map_err(failed)?;
    let _serial = UMASK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let previous = umask(Mode::from_bits_truncate(BIND_UMASK));
    let bound = socket.bind(&addr);
    umask(previous);
    bound.map_err(failed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::os::unix::net::{UnixListener, UnixStream};

    use super::*;
    use crate::sockets::testutil::{is_cloexec, tempdir};
    use crate::sockets::{bind_all, close_all};

    fn unix(path: &Path) -> BindSpec {
        BindSpec::Unix(path.to_path_buf())
    }

    fn bind_one(path: &Path) -> Result<Vec<Listener>, SocketError> {
        bind_all(&[unix(path)], 16)
    }

    fn taken_by(err: SocketError) -> PathOccupant {
        match err {
            SocketError::UnixPathTaken { what, .. } => what,
            other => panic!("expected UnixPathTaken, got {other:?}"),
        }
    }

    /// A socket file nobody listens on, as a killed server leaves it.
    fn stale_socket(path: &Path) {
        drop(UnixListener::bind(path).expect("bind a socket to leave behind"));
    }

    #[test]
    fn socket_is_created_with_mode_0660_and_accepts() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        let listeners = bind_one(&path).expect("bind a fresh path");
        let meta = fs::symlink_metadata(&path).expect("socket file exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(listeners[0].local(), &BoundAddr::Unix(path.clone()));
        assert_eq!(
            listeners[0].local().to_string(),
            format!("unix:{}", path.display())
        );
        assert!(is_cloexec(listeners[0].fd()));
        UnixStream::connect(&path).expect("connect to the listener");
        close_all(listeners);
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        stale_socket(&path);
        let listeners = bind_one(&path).expect("a stale socket is replaced");
        // The inode number may be reused, so a successful connect is the proof: the stale file
        // refused connections.
        UnixStream::connect(&path).expect("connect to the new listener");
        let mode = fs::symlink_metadata(&path)
            .expect("new file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        close_all(listeners);
    }

    #[test]
    fn live_socket_is_refused_and_keeps_serving() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        let live = UnixListener::bind(&path).expect("a live server");
        let err = bind_one(&path).expect_err("a live server holds the path");
        assert!(
            err.to_string().contains("in use by a running server"),
            "{err}"
        );
        assert_eq!(taken_by(err), PathOccupant::LiveServer);
        UnixStream::connect(&path).expect("the live server still answers");
        drop(live);
    }

    #[test]
    fn regular_file_is_refused_and_left_intact() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        fs::write(&path, "precious").expect("write a regular file");
        let err = bind_one(&path).expect_err("a regular file holds the path");
        assert_eq!(taken_by(err), PathOccupant::NotSocket);
        assert_eq!(fs::read_to_string(&path).expect("file kept"), "precious");
    }

    #[test]
    fn symlink_is_refused_and_left_intact() {
        let dir = tempdir();
        let target = dir.path().join("target");
        let path = dir.path().join("app.sock");
        fs::write(&target, "precious").expect("write the target");
        symlink(&target, &path).expect("create the symlink");
        let err = bind_one(&path).expect_err("a symlink holds the path");
        assert_eq!(taken_by(err), PathOccupant::Symlink);
        assert!(fs::symlink_metadata(&path)
            .expect("link kept")
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_to_string(&target).expect("target kept"),
            "precious"
        );
    }

    #[test]
    fn symlink_to_a_stale_socket_is_refused_too() {
        let dir = tempdir();
        let target = dir.path().join("old.sock");
        let path = dir.path().join("app.sock");
        stale_socket(&target);
        symlink(&target, &path).expect("create the symlink");
        assert_eq!(
            taken_by(bind_one(&path).expect_err("symlink")),
            PathOccupant::Symlink
        );
        assert!(fs::symlink_metadata(&target)
            .expect("target kept")
            .file_type()
            .is_socket());
    }

    #[test]
    fn missing_parent_directory_is_named() {
        let dir = tempdir();
        let path = dir.path().join("missing").join("app.sock");
        match bind_one(&path).expect_err("no parent") {
            SocketError::UnixParentMissing { parent, .. } => {
                assert_eq!(parent, dir.path().join("missing"))
            }
            other => panic!("expected UnixParentMissing, got {other:?}"),
        }
    }

    #[test]
    fn too_long_path_reports_the_limit() {
        let path = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        match bind_one(&path).expect_err("too long") {
            SocketError::UnixPathTooLong { len, max, .. } => {
                assert_eq!((len, max), (205, max_unix_path_len()));
                assert_eq!(max, 107);
            }
            other => panic!("expected UnixPathTooLong, got {other:?}"),
        }
        assert!(matches!(
            bind_one(Path::new("")),
            Err(SocketError::UnixPathEmpty)
        ));
    }

    #[test]
    fn close_all_removes_our_socket_file() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        close_all(bind_one(&path).expect("bind"));
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "our socket file is removed"
        );
    }

    #[test]
    fn close_all_leaves_a_replacement_alone() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        let listeners = bind_one(&path).expect("bind");
        fs::remove_file(&path).expect("someone removes our file");
        let other = UnixListener::bind(&path).expect("and binds their own");
        close_all(listeners);
        assert!(fs::symlink_metadata(&path)
            .expect("theirs kept")
            .file_type()
            .is_socket());
        UnixStream::connect(&path).expect("their server still answers");
        drop(other);
    }

    #[test]
    fn failure_later_removes_the_socket_file_created_earlier() {
        let dir = tempdir();
        let path = dir.path().join("app.sock");
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("occupy a port");
        let port = taken.local_addr().expect("local addr").port();
        let specs = [
            unix(&path),
            BindSpec::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
        ];
        let err = bind_all(&specs, 16).expect_err("the port is taken");
        assert!(matches!(err, SocketError::Bind { .. }), "{err:?}");
        assert!(
            fs::symlink_metadata(&path).is_err(),
            "the unix socket file is removed"
        );
    }
}
