//! The listening sockets the master binds (or adopts) before forking and holds for its whole
//! life; workers inherit them as fds and only accept. `bind_all` is all or nothing, every fd is
//! close-on-exec in the master, and `close_all` removes only unix socket files that are still
//! ours.

mod bind;
mod error;
mod inherited;
mod listener;
mod tcp;
mod unix;

#[cfg(test)]
mod testutil;

pub use bind::bind_all;
pub use error::{PathOccupant, SocketError};
pub(crate) use listener::SocketFile;
pub use listener::{close_all, BoundAddr, Listener};
pub(crate) use unix::{clear_stale, UMASK_LOCK};
