//! The `http` scope of one request (ASGI 3, HTTP connection scope), as uvicorn builds it:
//! `path` and `raw_path` carry the `root_path` prefix, `path` is percent-decoded as UTF-8
//! (invalid sequences replaced), header names are lowercase bytes with every header in order,
//! `client` and `server` come from the peer after proxy headers (`server` is None on a unix
//! socket), and `state` is a shallow copy of the lifespan's state.

use hyper::http::request::Parts;
use hyper::Version;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::http::Peer;
use crate::server::Server;

struct Names {
    type_: Py<PyString>,
    http: Py<PyString>,
    asgi: Py<PyString>,
    http_version: Py<PyString>,
    method: Py<PyString>,
    scheme: Py<PyString>,
    path: Py<PyString>,
    raw_path: Py<PyString>,
    query_string: Py<PyString>,
    root_path: Py<PyString>,
    headers: Py<PyString>,
    client: Py<PyString>,
    server: Py<PyString>,
    state: Py<PyString>,
    v10: Py<PyString>,
    v11: Py<PyString>,
    v2: Py<PyString>,
    get: Py<PyString>,
    post: Py<PyString>,
    scheme_http: Py<PyString>,
    scheme_https: Py<PyString>,
    empty: Py<PyBytes>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn names(py: Python<'_>) -> &Names {
    NAMES.get_or_init(py, || {
        let s = |text: &str| PyString::intern(py, text).unbind();
        Names {
            type_: s("type"),
            http: s("http"),
            asgi: s("asgi"),
            http_version: s("http_version"),
            method: s("method"),
            scheme: s("scheme"),
            path: s("path"),
            raw_path: s("raw_path"),
            query_string: s("query_string"),
            root_path: s("root_path"),
            headers: s("headers"),
            client: s("client"),
            server: s("server"),
            state: s("state"),
            v10: s("1.0"),
            v11: s("1.1"),
            v2: s("2"),
            get: s("GET"),
            post: s("POST"),
            scheme_http: s("http"),
            scheme_https: s("https"),
            empty: PyBytes::new(py, b"").unbind(),
        }
    })
}

pub fn build<'py>(
    py: Python<'py>,
    server: &Server,
    head: &Parts,
    peer: &Peer,
) -> PyResult<Bound<'py, PyDict>> {
    let n = names(py);
    let scope = PyDict::new(py);
    scope.set_item(n.type_.bind(py), n.http.bind(py))?;
    scope.set_item(n.asgi.bind(py), super::call::asgi_version(py)?)?;
    let version = match head.version {
        Version::HTTP_11 => n.v11.bind(py).clone(),
        Version::HTTP_10 => n.v10.bind(py).clone(),
        Version::HTTP_2 => n.v2.bind(py).clone(),
        Version::HTTP_3 => PyString::new(py, "3"),
        _ => PyString::new(py, "0.9"),
    };
    scope.set_item(n.http_version.bind(py), version)?;
    let method = match head.method {
        hyper::Method::GET => n.get.bind(py).clone(),
        hyper::Method::POST => n.post.bind(py).clone(),
        ref other => PyString::new(py, other.as_str()),
    };
    scope.set_item(n.method.bind(py), method)?;
    let scheme = if peer.scheme == "https" {
        &n.scheme_https
    } else {
        &n.scheme_http
    };
    scope.set_item(n.scheme.bind(py), scheme.bind(py))?;
    let root = server.script_name.bind(py);
    let root_text = root.to_cow()?;
    let raw = head.uri.path();
    let decoded = crate::wsgi::environ::percent_decode(raw.as_bytes());
    let decoded = String::from_utf8_lossy(&decoded);
    if root_text.is_empty() {
        scope.set_item(n.path.bind(py), PyString::new(py, &decoded))?;
        scope.set_item(n.raw_path.bind(py), PyBytes::new(py, raw.as_bytes()))?;
    } else {
        scope.set_item(n.path.bind(py), format!("{root_text}{decoded}"))?;
        let mut full = Vec::with_capacity(root_text.len() + raw.len());
        full.extend_from_slice(root_text.as_bytes());
        full.extend_from_slice(raw.as_bytes());
        scope.set_item(n.raw_path.bind(py), PyBytes::new(py, &full))?;
    }
    match head.uri.query() {
        Some(q) if !q.is_empty() => {
            scope.set_item(n.query_string.bind(py), PyBytes::new(py, q.as_bytes()))?
        }
        _ => scope.set_item(n.query_string.bind(py), n.empty.bind(py))?,
    }
    scope.set_item(n.root_path.bind(py), root)?;
    let headers = PyList::empty(py);
    for (name, value) in head.headers.iter() {
        let pair = PyTuple::new(
            py,
            [
                PyBytes::new(py, name.as_str().as_bytes()),
                PyBytes::new(py, value.as_bytes()),
            ],
        )?;
        headers.append(pair)?;
    }
    scope.set_item(n.headers.bind(py), headers)?;
    match peer.remote {
        Some(remote) => {
            scope.set_item(n.client.bind(py), (remote.ip().to_string(), remote.port()))?
        }
        None => scope.set_item(n.client.bind(py), py.None())?,
    }
    match peer.local {
        Some(local) => scope.set_item(
            n.server.bind(py),
            (
                local.ip().to_string(),
                peer.server_port.unwrap_or(local.port()),
            ),
        )?,
        None => scope.set_item(n.server.bind(py), py.None())?,
    }
    if let Some(state) = server.asgi_state.get() {
        scope.set_item(n.state.bind(py), state.bind(py).copy()?)?;
    }
    Ok(scope)
}
