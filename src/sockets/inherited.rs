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
use crate::config::BindSpec;

/// Checks that `fd` is an open listening socket, marks it close-on-exec and takes ownership.
pub(crate) fn adopt(spec: &BindSpec, fd: i32) -> Result<Listener, SocketError> {
    check_open(fd)?;
    // SAFETY: `fd` was open a moment ago (check_open) and, by the fd:// contract, it was handed
    // to this process for herdsman to own: nothing else in the process closes it while this
    // borrow lives (bind_all runs before any worker or other owner exists).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    check_listening_socket(fd, borrowed)?;
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map_err(|source| SocketError::FdCloexec { fd, source })?;
    let addr = describe_local(fd, borrowed)?;
    // SAFETY: `fd` is open and is a listening socket (checked above); the fd:// contract gives
    // it to herdsman, bind_all rejects duplicates, and no OwnedFd in this process holds it.
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
