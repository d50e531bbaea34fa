//! The WSGI side (PEP 3333), on the app's Python threads: the job a request becomes, the
//! environ, `wsgi.input`, `start_response` and `write`, `wsgi.file_wrapper`, and the handler that
//! calls the app and sends what it returns.

pub mod environ;
pub mod file;
pub mod input;
pub mod respond;
pub mod run;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use tokio::sync::oneshot;

use crate::http::service::Reply;
use crate::http::Peer;

/// A request handed from the tokio thread to an app thread.
pub struct Job {
    pub head: Parts,
    pub body: RequestBody,
    pub peer: Peer,
    pub reply: oneshot::Sender<Reply>,
    /// The engine's runtime: `wsgi.input` reads a streamed body through it.
    pub runtime: tokio::runtime::Handle,
}

pub enum RequestBody {
    /// Read before the app was called (small, or none).
    Buffered(Bytes),
    /// Read as the app reads `wsgi.input`.
    Stream(Incoming),
}
