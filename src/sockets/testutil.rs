//! Helpers shared by the socket unit tests.

use std::os::fd::AsFd;

use std::sync::PoisonError;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};

use super::unix::UMASK_LOCK;

/// Whether `fd` has FD_CLOEXEC set.
pub(crate) fn is_cloexec(fd: impl AsFd) -> bool {
    let flags = fcntl(fd, FcntlArg::F_GETFD).expect("F_GETFD on an open fd");
    FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC)
}

/// A temporary directory created outside any bind's umask window: a directory made while
/// another test thread holds umask 0o117 would lack its search bit.
pub(crate) fn tempdir() -> tempfile::TempDir {
    let _serial = UMASK_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    tempfile::tempdir().expect("create a temporary directory")
}
