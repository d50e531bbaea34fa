//! The datagram socket to systemd's `NOTIFY_SOCKET`: a filesystem path (`/run/systemd/notify`)
//! or an abstract name (`@/org/freedesktop/systemd1/notify/...`). Each message is one datagram of
//! `KEY=VALUE` lines, sent without blocking.
//!
//! Invariants: nothing here can fail the master. The address is checked once, at start; a send
//! that fails (systemd gone, a full receive queue, `EAGAIN`) is logged at debug level and
//! dropped, because the notify protocol is advisory and systemd resends nothing either. The
//! socket is close-on-exec, so no worker holds it.

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::debug;

/// Why `NOTIFY_SOCKET` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifySocketError {
    #[error(
        "NOTIFY_SOCKET={value:?} is neither an absolute path nor an abstract name starting \
         with `@` (vsock addresses are not supported); systemd notifications are disabled"
    )]
    Address { value: String },
    #[error("NOTIFY_SOCKET={value:?} is not a valid unix socket address; systemd notifications are disabled")]
    Invalid {
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("could not create a socket for systemd notifications")]
    Socket(#[source] io::Error),
}

/// An unbound, non-blocking datagram socket and systemd's address.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl NotifySocket {
    /// The socket for the value of `NOTIFY_SOCKET`.
    pub fn new(value: &OsStr) -> Result<NotifySocket, NotifySocketError> {
        let addr = address(value)?;
        let socket = UnixDatagram::unbound().map_err(NotifySocketError::Socket)?;
        socket
            .set_nonblocking(true)
            .map_err(NotifySocketError::Socket)?;
        Ok(NotifySocket { socket, addr })
    }

    /// Sends one message; a failure is logged at debug level and otherwise ignored.
    pub fn send(&self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            Ok(_) => debug!(message = %message.replace('\n', " "), "told systemd"),
            Err(error) => {
                debug!(%error, message = %message.replace('\n', " "), "could not notify systemd")
            }
        }
    }
}

/// `@name` is an abstract address, `/path` a file; nothing else is accepted.
fn address(value: &OsStr) -> Result<SocketAddr, NotifySocketError> {
    let bytes = value.as_bytes();
    let shown = || value.to_string_lossy().into_owned();
    let invalid = |source| NotifySocketError::Invalid {
        value: shown(),
        source,
    };
    match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..]).map_err(invalid),
        Some(b'/') => SocketAddr::from_pathname(value).map_err(invalid),
        _ => Err(NotifySocketError::Address { value: shown() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_abstract_names_are_accepted() {
        let path = address(OsStr::new("/run/systemd/notify")).expect("a path");
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let name = address(OsStr::new("@/org/freedesktop/systemd1/notify/42")).expect("abstract");
        assert_eq!(
            name.as_abstract_name(),
            Some(&b"/org/freedesktop/systemd1/notify/42"[..])
        );
    }

    #[test]
    fn other_addresses_are_refused() {
        for value in ["", "relative/notify", "vsock:2:1234"] {
            let err = address(OsStr::new(value)).expect_err(value);
            assert!(
                matches!(err, NotifySocketError::Address { .. }),
                "{value}: {err:?}"
            );
        }
        let long = format!("/{}", "x".repeat(200));
        assert!(matches!(
            address(OsStr::new(&long)),
            Err(NotifySocketError::Invalid { .. })
        ));
    }

    #[test]
    fn datagrams_arrive_whole_and_abstract_names_work() {
        let name = format!("herdsman-test-{}", std::process::id());
        let receiver =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .expect("bind an abstract receiver");
        let notify = NotifySocket::new(OsStr::new(&format!("@{name}"))).expect("notify socket");
        notify.send("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).expect("one datagram");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
    }

    #[test]
    fn a_missing_receiver_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        let notify = NotifySocket::new(path.as_os_str()).expect("the address is valid");
        notify.send("READY=1"); // ENOENT: logged at debug, nothing else
    }
}
