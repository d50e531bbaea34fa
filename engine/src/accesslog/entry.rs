//! What one finished request gives the access log: borrowed facts the server has at hand once
//! the response is done, nothing computed in advance. Each field says which ASGI scope item of
//! the Python engine (uvicorn) it stands for, because the atoms are defined on those: a line the
//! native engine writes must be the line the Python engine would write for the same request.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;

/// One finished request, built by the server after the response is done.
pub struct Entry<'a> {
    /// The client (scope `client`), after proxy headers are applied; `None` on a unix socket,
    /// where every client atom renders `-` as uvicorn's scope has no client there.
    pub remote: Option<SocketAddr>,
    /// The address the request came in on (scope `server`): `{server_name}e`, `{server_port}e`.
    pub local: Local<'a>,
    /// `http` or `https` (scope `scheme`, after proxy headers): `{wsgi.url_scheme}e`.
    pub scheme: &'a str,
    pub method: &'a str,
    /// The path as received, percent-encoded (scope `raw_path`); `U` shows it decoded.
    pub path: &'a str,
    /// The query string without `?`, `""` when there is none.
    pub query: &'a str,
    /// As written on the request line, e.g. `HTTP/1.1` (uvicorn's `"HTTP/" + http_version`).
    pub version: &'a str,
    pub request_headers: &'a HeaderMap,
    pub status: u16,
    /// The headers the app responded with (before the server adds its own, as uvicorn's ASGI
    /// message has them); only needed when `Format::wants_response_headers()`.
    pub response_headers: Option<&'a HeaderMap>,
    /// Response body bytes sent.
    pub body_bytes: u64,
    /// From the request's start to the end of its response.
    pub duration: Duration,
}

/// The listening socket's address, as uvicorn puts it in the scope's `server`.
#[derive(Clone, Copy, Debug)]
pub enum Local<'a> {
    /// A TCP listener: `(host, port)`.
    Tcp(SocketAddr),
    /// A unix socket: `(path, None)`, so `{server_port}e` is `-`.
    Unix(&'a str),
    /// Not known: both `-`.
    Unknown,
}

impl From<Option<SocketAddr>> for Local<'_> {
    /// A TCP listener's address, or `Unknown` (a unix socket whose path is not at hand).
    fn from(addr: Option<SocketAddr>) -> Self {
        addr.map_or(Local::Unknown, Local::Tcp)
    }
}
