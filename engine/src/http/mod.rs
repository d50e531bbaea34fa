//! The HTTP side of the engine, on the tokio thread: listeners, connections (keep-alive and the
//! drain), the service that hands each request to the app's threads, and the response body.

pub mod body;
pub mod conn;
pub mod listen;
pub mod prefixed;
pub mod proxy;
pub mod proxyproto;
pub mod service;

use std::net::SocketAddr;

/// Who is at each end of a connection (None on a unix socket), and its scheme; per request,
/// the client and scheme a trusted proxy forwarded (proxy.rs).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// `http` or `https` (`wsgi.url_scheme`).
    pub scheme: &'static str,
    /// The port the client connected to at a trusted proxy (`X-Forwarded-Port`): becomes
    /// `SERVER_PORT`.
    pub server_port: Option<u16>,
    /// The socket's peer when a PROXY header replaced `remote` with the client it carried: the
    /// address whose proxy headers may be believed.
    pub hop: Option<SocketAddr>,
}
