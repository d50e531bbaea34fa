//! TCP listeners for a `HOST:PORT` spec.
//!
//! The host is resolved with the system resolver and EVERY distinct address is bound, in the
//! resolver's order: `localhost` usually gives both 127.0.0.1 and ::1, and a client may try either.
//! An address whose family this host cannot use (no IPv6: socket(2) fails with EAFNOSUPPORT or
//! bind(2) with EADDRNOTAVAIL) is skipped with a warning when the name resolved to several
//! addresses and another one bound; a single address that cannot be bound is always an error.
//! With port 0 the first address gets an ephemeral port and the others reuse that same port, so
//! one spec means one port.
//!
//! Each socket: close-on-exec (socket2 creates it so), SO_REUSEADDR (restart while old
//! connections sit in TIME_WAIT), IPV6_V6ONLY on IPv6 (so `[::]` and `0.0.0.0` can both be bound),
//! no SO_REUSEPORT (a second server on the same port must fail loudly), then listen(backlog).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;

use socket2::{Domain, Socket, Type};
use tracing::warn;

use super::error::SocketError;
use super::listener::{close_all, BoundAddr, Listener};
use crate::addr::BindSpec;

/// Binds every distinct address `host` resolves to; on failure closes what it bound.
pub(crate) fn bind_tcp(
    spec: &BindSpec,
    host: &str,
    port: u16,
    backlog: u32,
) -> Result<Vec<Listener>, SocketError> {
    let addrs = resolve(host, port)?;
    let several = addrs.len() > 1;
    let mut bound = Vec::new();
    let mut skipped = None;
    for mut addr in addrs {
        if let (0, Some(first)) = (port, bound.first()) {
            addr.set_port(first_port(first));
        }
        match bind_one(addr, backlog) {
            Ok((fd, local)) => {
                bound.push(Listener::new(spec.clone(), fd, BoundAddr::Tcp(local), None))
            }
            Err(err) if several && is_family_unavailable(&err) => {
                warn!(%addr, error = %err, "skipping an address this host cannot bind");
                skipped.get_or_insert(err);
            }
            Err(err) => {
                close_all(bound);
                return Err(err);
            }
        }
    }
    match skipped {
        Some(err) if bound.is_empty() => Err(err),
        _ => Ok(bound),
    }
}

fn first_port(listener: &Listener) -> u16 {
    match listener.local() {
        BoundAddr::Tcp(addr) => addr.port(),
        _ => 0,
    }
}

/// Resolves `host` and removes duplicate addresses, keeping the resolver's order.
fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, SocketError> {
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|source| SocketError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(SocketError::ResolveEmpty {
            host: host.to_owned(),
        });
    }
    Ok(addrs)
}

/// Whether the error only says this host has no use of that address family or address.
fn is_family_unavailable(err: &SocketError) -> bool {
    match err {
        SocketError::Socket { source, .. } => source.raw_os_error() == Some(libc::EAFNOSUPPORT),
        SocketError::Bind { source, .. } => source.kind() == io::ErrorKind::AddrNotAvailable,
        _ => false,
    }
}

/// Creates, configures, binds and listens one socket; returns it with its real local address.
fn bind_one(addr: SocketAddr, backlog: u32) -> Result<(OwnedFd, SocketAddr), SocketError> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(|source| {
        SocketError::Socket {
            addr: addr.to_string(),
            source,
        }
    })?;
    set_options(&socket, addr)?;
    socket
        .bind(&addr.into())
        .map_err(|source| SocketError::Bind { addr, source })?;
    socket
        .listen(listen_backlog(backlog))
        .map_err(|source| SocketError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    let local = socket
        .local_addr()
        .map_err(|source| SocketError::LocalAddr {
            addr: addr.to_string(),
            source,
        })?
        .as_socket()
        .expect("an inet socket has an inet local address");
    Ok((socket.into(), local))
}

fn set_options(socket: &Socket, addr: SocketAddr) -> Result<(), SocketError> {
    let failed = |option| {
        move |source| SocketError::SetOption {
            addr: addr.to_string(),
            option,
            source,
        }
    };
    socket
        .set_reuse_address(true)
        .map_err(failed("SO_REUSEADDR"))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(failed("IPV6_V6ONLY"))?;
    }
    Ok(())
}

/// listen(2) takes a C int; larger backlogs are capped (the kernel caps at somaxconn anyway).
pub(crate) fn listen_backlog(backlog: u32) -> i32 {
    i32::try_from(backlog).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use socket2::SockRef;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

    use super::*;
    use crate::sockets::testutil::is_cloexec;
    use crate::sockets::{bind_all, close_all};

    fn tcp(host: &str, port: u16) -> BindSpec {
        BindSpec::Tcp {
            host: host.to_owned(),
            port,
        }
    }

    fn tcp_addr(listener: &Listener) -> SocketAddr {
        match listener.local() {
            BoundAddr::Tcp(addr) => *addr,
            other => panic!("expected a TCP listener, got {other}"),
        }
    }

    #[test]
    fn port_zero_binds_loopback_v4_with_the_real_port() {
        let listeners = bind_all(&[tcp("127.0.0.1", 0)], 16).expect("bind 127.0.0.1:0");
        assert_eq!(listeners.len(), 1);
        let addr = tcp_addr(&listeners[0]);
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(addr.port(), 0);
        assert_eq!(
            listeners[0].local().to_string(),
            format!("127.0.0.1:{}", addr.port())
        );
        assert!(is_cloexec(listeners[0].fd()));
        assert!(SockRef::from(&listeners[0].fd())
            .is_listener()
            .expect("SO_ACCEPTCONN"));
        TcpStream::connect(addr).expect("connect to the listener");
        close_all(listeners);
    }

    #[test]
    fn port_zero_binds_loopback_v6_only() {
        if let Err(err) = TcpListener::bind("[::1]:0") {
            eprintln!("skipping: this machine has no IPv6 loopback ([::1]:0 failed: {err})");
            return;
        }
        let listeners = bind_all(&[tcp("::1", 0)], 16).expect("bind [::1]:0");
        let addr = tcp_addr(&listeners[0]);
        assert_eq!(addr.ip(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(
            listeners[0].local().to_string(),
            format!("[::1]:{}", addr.port())
        );
        assert!(SockRef::from(&listeners[0].fd())
            .only_v6()
            .expect("IPV6_V6ONLY"));
        TcpStream::connect(addr).expect("connect to the listener");
        close_all(listeners);
    }

    #[test]
    fn localhost_binds_every_address_on_one_port() {
        let listeners = bind_all(&[tcp("localhost", 0)], 16).expect("bind localhost:0");
        assert!(!listeners.is_empty());
        let port = tcp_addr(&listeners[0]).port();
        for listener in &listeners {
            assert_eq!(tcp_addr(listener).port(), port);
            assert!(tcp_addr(listener).ip().is_loopback());
            assert_eq!(listener.spec(), &tcp("localhost", 0));
        }
        close_all(listeners);
    }

    #[test]
    fn address_in_use_is_a_bind_error_with_a_hint() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port to occupy");
        let port = taken.local_addr().expect("local addr").port();
        let err = bind_all(&[tcp("127.0.0.1", port)], 16).expect_err("port is taken");
        match &err {
            SocketError::Bind { addr, source } => {
                assert_eq!(addr.port(), port);
                assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
            }
            other => panic!("expected Bind, got {other:?}"),
        }
        let text = err.to_string();
        assert!(
            text.contains("already in use") && text.contains("another port"),
            "{text}"
        );
    }

    #[test]
    fn resolve_keeps_order_and_drops_duplicates() {
        let addrs = resolve("127.0.0.1", 80).expect("a literal resolves");
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 80))]);
    }

    #[test]
    fn backlog_is_capped_to_a_c_int() {
        assert_eq!(listen_backlog(2048), 2048);
        assert_eq!(listen_backlog(u32::MAX), i32::MAX);
    }
}
