//! The HTTP side of the engine, on the tokio thread: listeners, connections (keep-alive and the
//! drain), the service that hands each request to the app's threads, and the response body.

pub mod body;
pub mod conn;
pub mod listen;
pub mod proxy;
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
}
