//! The listening sockets the worker inherited from the master (never bound here): one accept
//! loop per socket, until the drain begins. Each accepted connection runs in a task of its own
//! (with TLS on, every listener's connections, unix ones too, begin with the handshake).
//!
//! Invariants: the engine works on duplicates of the inherited descriptors, so the runtime may
//! close its own; an accept error never ends the loop (EMFILE and friends back off briefly, so a
//! worker out of descriptors does not spin); the loop ends, and its duplicate is closed, when the
//! phase leaves Serving. A loop is counted (`Accepting`, from before its task is spawned until it
//! returns), so the server is not finished while a loop holds a connection it accepted and has
//! not counted yet: a drain that raced that accept would otherwise end the worker and close the
//! connection before its request was read.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};

use super::conn::Counted;
use super::Peer;
use crate::shared::{Phase, Shared};

/// How long accepting pauses after an error such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// A non-blocking duplicate of `fd`, as a tokio listener of its family. Must run inside the
/// runtime (tokio registers the socket with its reactor).
pub fn adopt(fd: RawFd) -> std::io::Result<Listener> {
    // SAFETY: F_DUPFD_CLOEXEC on the caller's descriptor; on success the new one is ours alone.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` was just created and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(dup) };
    match family(dup)? {
        libc::AF_UNIX => {
            let std = std::os::unix::net::UnixListener::from(owned);
            std.set_nonblocking(true)?;
            Ok(Listener::Unix(UnixListener::from_std(std)?))
        }
        libc::AF_INET | libc::AF_INET6 => {
            let std = std::net::TcpListener::from(owned);
            std.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(std)?))
        }
        other => Err(std::io::Error::other(format!(
            "fd {fd}: unsupported socket family {other}"
        ))),
    }
}

fn family(fd: RawFd) -> std::io::Result<i32> {
    // SAFETY: getsockname into a zeroed sockaddr_storage of the size we pass.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(addr.ss_family as i32)
    }
}

/// One running accept loop in `Shared::accepting`, for as long as this lives.
pub struct Accepting(Arc<Shared>);

impl Accepting {
    pub fn new(shared: Arc<Shared>) -> Accepting {
        shared.accepting.fetch_add(1, Ordering::AcqRel);
        Accepting(shared)
    }
}

impl Drop for Accepting {
    fn drop(&mut self) {
        self.0.accepting.fetch_sub(1, Ordering::AcqRel);
        self.0.check_done();
    }
}

pub async fn accept_loop(open: Accepting, listener: Listener) {
    let shared = open.0.clone();
    let mut phase = shared.phase.subscribe();
    loop {
        if *phase.borrow_and_update() != Phase::Serving {
            return;
        }
        // A slot first (`worker_connections`): at the cap the loop stops accepting, and new
        // connections wait in the kernel's listen queue (or another worker takes them).
        let slot = tokio::select! {
            slot = shared.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return, // never closed
            },
            _ = phase.changed() => continue,
        };
        let accepted = tokio::select! {
            accepted = accept(&listener) => accepted,
            _ = phase.changed() => continue,
        };
        match accepted {
            Ok(Accepted::Tcp(stream, mut peer)) => {
                peer.scheme = shared.settings.url_scheme;
                let _ = stream.set_nodelay(true);
                let counted = Counted::new(shared.clone(), slot);
                let proxied = shared
                    .settings
                    .proxy_protocol
                    .as_ref()
                    .is_some_and(|allowed| allowed.trusts_peer(peer.remote));
                if proxied {
                    // The PROXY header comes before anything else, TLS included.
                    tokio::spawn(super::proxyproto::serve(counted, stream, peer));
                } else {
                    tokio::spawn(serve_stream(counted, stream, peer));
                }
            }
            Ok(Accepted::Unix(stream)) => {
                let peer = Peer {
                    remote: None,
                    local: None,
                    scheme: shared.settings.url_scheme,
                    server_port: None,
                    hop: None,
                };
                let counted = Counted::new(shared.clone(), slot);
                tokio::spawn(serve_stream(counted, stream, peer));
            }
            Err(err) if is_transient(&err) => {}
            Err(err) => {
                shared.log("warning", format!("accept failed: {err} (retrying)"));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// A connection's life once it is counted (and past its PROXY header, if any): HTTP, or the TLS
/// handshake then HTTP when TLS is on.
pub async fn serve_stream<IO>(counted: Counted, stream: IO, peer: Peer)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let tls = counted.shared().settings.tls.clone();
    match tls {
        Some(config) => crate::tls::handshake::serve(counted, config, stream, peer).await,
        None => super::conn::serve(counted, stream, peer).await,
    }
}

enum Accepted {
    Tcp(tokio::net::TcpStream, Peer),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, remote) = l.accept().await?;
            let local = stream.local_addr().ok();
            Ok(Accepted::Tcp(
                stream,
                Peer {
                    remote: Some(remote),
                    local,
                    scheme: "http",
                    server_port: None,
                    hop: None,
                },
            ))
        }
        Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
    }
}

/// Errors about one connection that went away before it was accepted: nothing to report.
fn is_transient(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ECONNABORTED) | Some(libc::EINTR) | Some(libc::EPROTO) | Some(libc::EPERM)
    )
}
