//! Adopting a listening socket inherited as `fd://N` (systemd socket activation, a parent
//! supervisor, an old master handing over).
//!
//! Invariants: every check runs on a borrowed fd, and ownership is taken only once the fd is
//! known to be an open, listening socket; so a wrong `fd://1` fails without closing stdout. Once
//! adopted the fd is close-on-exec like every listener of the master. The socket file of an
//! inherited unix socket belongs to whoever created it and is never removed.
//! `bind_all` adopts inherited fds before binding anything, so `N` can never be a socket this
//! call created itself, and rejects an fd listed twice, so no fd gets two owners.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::stat::{fstat, SFlag};
use socket2::{SockAddr, SockRef};

use super::error::SocketError;
use super::listener::{BoundAddr, Listener};
use crate::addr::BindSpec;

/// Checks that `fd` is an open listening socket, marks it close-on-exec and takes ownership.
pub(crate) fn adopt(spec: &BindSpec, fd: i32) -> Result<Listener, SocketError> {
    check_open(fd)?;
    // SAFETY: `fd` is open (check_open just succeeded); it is only borrowed for the checks
    // below, which close nothing, and by the fd:// contract no other part of the process closes
    // an fd it handed to herdsman.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    check_listening_socket(fd, borrowed)?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|source| SocketError::FdCloexec { fd, source })?;
    let addr = describe_local(fd, borrowed)?;
    // SAFETY: `fd` is open and a listening socket (checked above). By the fd:// contract it was
    // handed to herdsman and nothing else in the process owns it; bind_all adopts each fd at
    // most once and before creating any fd itself, so this is the only OwnedFd for it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Listener::new(
        spec.clone(),
        owned,
        BoundAddr::Inherited { fd, addr },
        None,
    ))
}

/// EBADF unless `fd` is an open descriptor of this process.
fn check_open(fd: i32) -> Result<(), SocketError> {
    if fd < 0 {
        return Err(SocketError::FdBad {
            fd,
            source: Errno::EBADF,
        });
    }
    // SAFETY: F_GETFD only reads the descriptor flags; on a number that is not an open fd it
    // fails with EBADF and touches no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    Errno::result(flags)
        .map(drop)
        .map_err(|source| SocketError::FdBad { fd, source })
}

fn check_listening_socket(fd: i32, borrowed: BorrowedFd<'_>) -> Result<(), SocketError> {
    let stat = fstat(borrowed).map_err(|source| SocketError::FdBad { fd, source })?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(SocketError::FdNotSocket { fd });
    }
    let listening = SockRef::from(&borrowed)
        .is_listener()
        .map_err(|source| SocketError::FdProbe { fd, source })?;
    if !listening {
        return Err(SocketError::FdNotListening { fd });
    }
    Ok(())
}

/// The socket's local address as text: "127.0.0.1:8000", "[::1]:8000", "unix:/run/app.sock".
fn describe_local(fd: i32, borrowed: BorrowedFd<'_>) -> Result<String, SocketError> {
    let local = SockRef::from(&borrowed)
        .local_addr()
        .map_err(|source| SocketError::LocalAddr {
            addr: format!("fd://{fd}"),
            source,
        })?;
    Ok(sockaddr_text(&local))
}

fn sockaddr_text(addr: &SockAddr) -> String {
    if let Some(inet) = addr.as_socket() {
        return inet.to_string();
    }
    if let Some(path) = addr.as_pathname() {
        return format!("unix:{}", path.display());
    }
    if let Some(name) = addr.as_abstract_namespace() {
        return format!("unix:@{}", String::from_utf8_lossy(name));
    }
    if addr.is_unnamed() {
        return "unix:(unnamed)".to_owned();
    }
    format!("address family {}", addr.family())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, IntoRawFd};

    use socket2::{Domain, Socket, Type};

    use super::*;
    use crate::sockets::testutil::is_cloexec;
    use crate::sockets::{bind_all, close_all};

    fn is_open(fd: i32) -> bool {
        check_open(fd).is_ok()
    }

    #[test]
    fn listening_socket_is_adopted_with_its_address() {
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let port = std_listener.local_addr().expect("local addr").port();
        let fd = std_listener.into_raw_fd();
        nix::fcntl::fcntl(
            // SAFETY: `fd` is the open listener released by into_raw_fd just above.
            unsafe { BorrowedFd::borrow_raw(fd) },
            FcntlArg::F_SETFD(FdFlag::empty()),
        )
        .expect("clear CLOEXEC as an inherited fd would have it");
        let listeners = bind_all(&[BindSpec::Fd(fd)], 16).expect("adopt");
        let expected = BoundAddr::Inherited {
            fd,
            addr: format!("127.0.0.1:{port}"),
        };
        assert_eq!(listeners[0].local(), &expected);
        assert_eq!(
            listeners[0].local().to_string(),
            format!("fd://{fd} (127.0.0.1:{port})")
        );
        assert_eq!(listeners[0].fd().as_raw_fd(), fd);
        assert!(is_cloexec(listeners[0].fd()));
        close_all(listeners);
    }

    #[test]
    fn non_listening_socket_is_refused_and_not_closed() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let fd = socket.as_raw_fd();
        let err = bind_all(&[BindSpec::Fd(fd)], 16).expect_err("not listening");
        assert!(
            matches!(err, SocketError::FdNotListening { fd: f } if f == fd),
            "{err:?}"
        );
        assert!(is_open(fd), "a refused fd stays open");
    }

    #[test]
    fn closed_fd_is_refused() {
        let (read, _write) = nix::unistd::pipe().expect("pipe");
        let high = fcntl(&read, FcntlArg::F_DUPFD_CLOEXEC(900)).expect("dup to a high fd");
        // SAFETY: `high` is the fd F_DUPFD_CLOEXEC just created; nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(high) });
        let err = bind_all(&[BindSpec::Fd(high)], 16).expect_err("closed");
        assert!(
            matches!(
                err,
                SocketError::FdBad {
                    source: Errno::EBADF,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = bind_all(&[BindSpec::Fd(-1)], 16).expect_err("negative");
        assert!(
            matches!(
                err,
                SocketError::FdBad {
                    source: Errno::EBADF,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn pipe_is_refused_and_not_closed() {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let err = bind_all(&[BindSpec::Fd(write.as_raw_fd())], 16).expect_err("a pipe");
        assert!(matches!(err, SocketError::FdNotSocket { .. }), "{err:?}");
        let mut writer = std::fs::File::from(write);
        writer.write_all(b"x").expect("the pipe is still open");
        drop(read);
    }

    #[test]
    fn duplicate_fd_is_refused_before_adopting() {
        let std_listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let fd = std_listener.as_raw_fd();
        let err = bind_all(&[BindSpec::Fd(fd), BindSpec::Fd(fd)], 16).expect_err("twice");
        assert!(matches!(err, SocketError::FdDuplicate { .. }), "{err:?}");
        assert!(is_open(fd));
    }
}
