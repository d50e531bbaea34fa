//! `bind_all`: turns the configured bind specs into listeners, all or nothing.
//!
//! Invariants: the result keeps the order of the specs (a TCP spec may yield several listeners,
//! one per resolved address, kept together). Inherited `fd://N` sockets are adopted first, before
//! this call creates any fd, so `N` can only name an fd we were given. On any failure every
//! listener this call set up is closed and the unix socket files it created are removed before
//! the error is returned; nothing is retried (an EMFILE in the master is simply returned, F16).

use tracing::debug;

use super::error::SocketError;
use super::inherited::adopt;
use super::listener::{close_all, Listener};
use super::tcp::bind_tcp;
use super::unix::bind_unix;
use crate::addr::BindSpec;

/// Binds (or adopts) every spec, in order; all or nothing.
pub fn bind_all(specs: &[BindSpec], backlog: u32) -> Result<Vec<Listener>, SocketError> {
    reject_duplicate_fds(specs)?;
    let mut slots: Vec<Vec<Listener>> = specs.iter().map(|_| Vec::new()).collect();
    for index in inherited_first(specs) {
        match bind_spec(&specs[index], backlog) {
            Ok(listeners) => slots[index] = listeners,
            Err(err) => {
                close_all(slots.into_iter().flatten().collect());
                return Err(err);
            }
        }
    }
    let listeners: Vec<Listener> = slots.into_iter().flatten().collect();
    for listener in &listeners {
        debug!(listener = %listener.local(), "listening");
    }
    Ok(listeners)
}

fn bind_spec(spec: &BindSpec, backlog: u32) -> Result<Vec<Listener>, SocketError> {
    match spec {
        BindSpec::Tcp { host, port } => bind_tcp(spec, host, *port, backlog),
        BindSpec::Unix(path) => bind_unix(spec, path, backlog).map(|listener| vec![listener]),
        BindSpec::Fd(fd) => adopt(spec, *fd).map(|listener| vec![listener]),
    }
}

/// Spec indices with the `fd://` ones first, each group in configuration order.
fn inherited_first(specs: &[BindSpec]) -> Vec<usize> {
    let is_fd = |index: &usize| matches!(specs[*index], BindSpec::Fd(_));
    let (mut order, rest): (Vec<usize>, Vec<usize>) = (0..specs.len()).partition(is_fd);
    order.extend(rest);
    order
}

/// Two owners of one fd would close it twice: each `fd://N` may appear once.
fn reject_duplicate_fds(specs: &[BindSpec]) -> Result<(), SocketError> {
    let mut seen = Vec::new();
    for spec in specs {
        if let BindSpec::Fd(fd) = spec {
            if seen.contains(fd) {
                return Err(SocketError::FdDuplicate { fd: *fd });
            }
            seen.push(*fd);
        }
    }
    Ok(())
}
