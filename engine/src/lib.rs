//! herdsman's native engine: a CPython extension module (`_engine`) that serves a WSGI or ASGI
//! app over HTTP/1.1 on hyper, on the listening sockets the worker inherited from the master. The worker
//! runtime loads it by path (the master says where the file is) and keeps the worker contract
//! (python/herdsman/runtime/engines/native.py); this crate does the request path.
//!
//! Layout: `http` (tokio thread: listeners, connections, drain, service), `pool` (the hand-off to
//! the app threads, and how many are awake), `wsgi` (app threads: environ, input,
//! start_response, the handler), `asgi` (the bridge to the worker's asyncio loop, scope, receive
//! and send), `tls` (rustls on every listener), `accesslog`, `inflight`, `shared`, `server`.
//! Invariants: the GIL is held only around calls into Python; the runtime starts in
//! `Server.start`, after any fork; no panic crosses into Python.

use pyo3::prelude::*;

mod accesslog;
mod asgi;
mod http;
mod inflight;
mod notify;
mod pool;
mod server;
mod shared;
mod tls;
mod wsgi;

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    accesslog::py::register(m)?;
    m.add_class::<server::Server>()?;
    m.add("TlsError", m.py().get_type::<server::TlsError>())?;
    m.add_class::<asgi::call::Ready>()?;
    m.add_class::<asgi::call::Receive>()?;
    m.add_class::<asgi::call::Send>()?;
    m.add_class::<asgi::ws::WsReceive>()?;
    m.add_class::<asgi::ws::WsSend>()?;
    m.add_class::<wsgi::file::FileWrapper>()?;
    m.add_class::<wsgi::input::Input>()?;
    m.add_class::<wsgi::respond::StartResponse>()?;
    m.add_class::<wsgi::respond::Write>()?;
    Ok(())
}
