//! The WSGI environ of one request (PEP 3333): CGI variables, `HTTP_*` headers, the `wsgi.*`
//! keys. Keys and constant values are interned once per process; a request's strings are made
//! from its head with no intermediate copies where the bytes are ASCII.
//!
//! Conventions (as gunicorn): PATH_INFO is the percent-decoded path as "bytes as latin-1"
//! (PEP 3333 native strings), RAW_URI the target as received; repeated headers are joined with
//! "," (cookies with "; "); header names with an underscore are dropped, so `X_Forwarded_For`
//! cannot pose as `X-Forwarded-For` (gunicorn's default, header_map = "drop");
//! SERVER_NAME/SERVER_PORT come from Host when there is one, else from the socket.

use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Version};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::http::Peer;

pub struct Names {
    pub request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    raw_uri: Py<PyString>,
    server_protocol: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    server_software: Py<PyString>,
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    content_type: Py<PyString>,
    content_length: Py<PyString>,
    wsgi_version: Py<PyString>,
    wsgi_url_scheme: Py<PyString>,
    wsgi_input: Py<PyString>,
    wsgi_errors: Py<PyString>,
    wsgi_multithread: Py<PyString>,
    wsgi_multiprocess: Py<PyString>,
    wsgi_run_once: Py<PyString>,
    wsgi_file_wrapper: Py<PyString>,
    wsgi_input_terminated: Py<PyString>,
    empty: Py<PyString>,
    software: Py<PyString>,
    version: Py<PyTuple>,
    http11: Py<PyString>,
    http10: Py<PyString>,
    get: Py<PyString>,
    post: Py<PyString>,
    http: Py<PyString>,
    https: Py<PyString>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

pub fn names(py: Python<'_>) -> &Names {
    NAMES.get_or_init(py, || {
        let s = |text: &str| PyString::intern(py, text).unbind();
        Names {
            request_method: s("REQUEST_METHOD"),
            script_name: s("SCRIPT_NAME"),
            path_info: s("PATH_INFO"),
            query_string: s("QUERY_STRING"),
            raw_uri: s("RAW_URI"),
            server_protocol: s("SERVER_PROTOCOL"),
            server_name: s("SERVER_NAME"),
            server_port: s("SERVER_PORT"),
            server_software: s("SERVER_SOFTWARE"),
            remote_addr: s("REMOTE_ADDR"),
            remote_port: s("REMOTE_PORT"),
            content_type: s("CONTENT_TYPE"),
            content_length: s("CONTENT_LENGTH"),
            wsgi_version: s("wsgi.version"),
            wsgi_url_scheme: s("wsgi.url_scheme"),
            wsgi_input: s("wsgi.input"),
            wsgi_errors: s("wsgi.errors"),
            wsgi_multithread: s("wsgi.multithread"),
            wsgi_multiprocess: s("wsgi.multiprocess"),
            wsgi_run_once: s("wsgi.run_once"),
            wsgi_file_wrapper: s("wsgi.file_wrapper"),
            wsgi_input_terminated: s("wsgi.input_terminated"),
            empty: s(""),
            software: s(concat!("herdsman/", env!("CARGO_PKG_VERSION"))),
            version: PyTuple::new(py, [1, 0])
                .expect("a tuple of two ints")
                .unbind(),
            http11: s("HTTP/1.1"),
            http10: s("HTTP/1.0"),
            get: s("GET"),
            post: s("POST"),
            http: s("http"),
            https: s("https"),
        }
    })
}

/// What the environ needs besides the request head.
pub struct Context<'a, 'py> {
    pub peer: &'a Peer,
    pub input: Bound<'py, PyAny>,
    pub errors: &'a Bound<'py, PyAny>,
    pub file_wrapper: &'a Bound<'py, PyAny>,
    pub multithread: bool,
    /// `SCRIPT_NAME` (the `root_path` a proxy stripped; `PATH_INFO` is the path as received,
    /// as the uvicorn engine gives it).
    pub script_name: &'a Bound<'py, PyString>,
}

pub fn build<'py>(
    py: Python<'py>,
    head: &Parts,
    cx: Context<'_, 'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let n = names(py);
    let env = PyDict::new(py);
    let method = match head.method {
        Method::GET => n.get.bind(py).clone(),
        Method::POST => n.post.bind(py).clone(),
        ref other => PyString::new(py, other.as_str()),
    };
    env.set_item(n.request_method.bind(py), method)?;
    env.set_item(n.script_name.bind(py), cx.script_name)?;
    env.set_item(
        n.path_info.bind(py),
        latin1(py, &percent_decode(head.uri.path().as_bytes())),
    )?;
    let query = head.uri.query().unwrap_or("");
    env.set_item(
        n.query_string.bind(py),
        if query.is_empty() {
            n.empty.bind(py).clone()
        } else {
            PyString::new(py, query)
        },
    )?;
    let target = head.uri.path_and_query().map_or("/", |pq| pq.as_str());
    env.set_item(n.raw_uri.bind(py), PyString::new(py, target))?;
    let protocol = match head.version {
        Version::HTTP_10 => n.http10.bind(py).clone(),
        Version::HTTP_11 => n.http11.bind(py).clone(),
        other => PyString::new(py, crate::http::body::version_str(other)),
    };
    env.set_item(n.server_protocol.bind(py), protocol)?;
    let (server_name, mut server_port) = server_name_port(&head.headers, cx.peer);
    if let Some(port) = cx.peer.server_port {
        server_port = port.to_string(); // X-Forwarded-Port from a trusted proxy
    }
    env.set_item(n.server_name.bind(py), server_name)?;
    env.set_item(n.server_port.bind(py), server_port)?;
    env.set_item(n.server_software.bind(py), n.software.bind(py))?;
    if let Some(remote) = cx.peer.remote {
        env.set_item(n.remote_addr.bind(py), remote.ip().to_string())?;
        env.set_item(n.remote_port.bind(py), remote.port().to_string())?;
    }
    headers(py, n, &env, &head.headers)?;
    env.set_item(n.wsgi_version.bind(py), n.version.bind(py))?;
    let scheme = if cx.peer.scheme == "https" {
        &n.https
    } else {
        &n.http
    };
    env.set_item(n.wsgi_url_scheme.bind(py), scheme.bind(py))?;
    env.set_item(n.wsgi_input.bind(py), cx.input)?;
    env.set_item(n.wsgi_errors.bind(py), cx.errors)?;
    env.set_item(n.wsgi_multithread.bind(py), cx.multithread)?;
    env.set_item(n.wsgi_multiprocess.bind(py), true)?;
    env.set_item(n.wsgi_run_once.bind(py), false)?;
    env.set_item(n.wsgi_file_wrapper.bind(py), cx.file_wrapper)?;
    env.set_item(n.wsgi_input_terminated.bind(py), true)?;
    Ok(env)
}

fn headers<'py>(
    py: Python<'py>,
    n: &Names,
    env: &Bound<'py, PyDict>,
    headers: &HeaderMap,
) -> PyResult<()> {
    let mut key = String::with_capacity(64);
    for name in headers.keys() {
        let name = name.as_str();
        if name.contains('_') {
            continue;
        }
        let mut values = headers.get_all(name).iter();
        let Some(first) = values.next() else { continue };
        let mut joined: Option<Vec<u8>> = None;
        for more in values {
            let buf = joined.get_or_insert_with(|| first.as_bytes().to_vec());
            buf.extend_from_slice(if name == "cookie" { b"; " } else { b"," });
            buf.extend_from_slice(more.as_bytes());
        }
        let value = latin1(py, joined.as_deref().unwrap_or(first.as_bytes()));
        match name {
            "content-type" => env.set_item(n.content_type.bind(py), value)?,
            "content-length" => env.set_item(n.content_length.bind(py), value)?,
            _ => {
                key.clear();
                key.push_str("HTTP_");
                key.extend(name.chars().map(|c| {
                    if c == '-' {
                        '_'
                    } else {
                        c.to_ascii_uppercase()
                    }
                }));
                env.set_item(PyString::new(py, &key), value)?;
            }
        }
    }
    Ok(())
}

/// Bytes as a native string, one code point per byte (PEP 3333).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        return PyString::new(py, std::str::from_utf8(bytes).unwrap_or_default());
    }
    let text: String = bytes.iter().map(|&b| b as char).collect();
    PyString::new(py, &text)
}

pub fn percent_decode(path: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !path.contains(&b'%') {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex(path[i + 1]), hex(path[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(path[i]);
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn server_name_port(headers: &HeaderMap, peer: &Peer) -> (String, String) {
    if let Some(host) = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
    {
        let host = host.trim();
        let (name, port) = match host.rfind(':') {
            Some(colon) if !host[colon..].contains(']') => (&host[..colon], &host[colon + 1..]),
            _ => (host, ""),
        };
        if !name.is_empty() {
            // No port in Host: the scheme's default, as gunicorn says.
            let port = if port.is_empty() {
                "80".to_string()
            } else {
                port.to_string()
            };
            return (name.to_string(), port);
        }
    }
    match peer.local {
        Some(local) => (local.ip().to_string(), local.port().to_string()),
        None => ("localhost".to_string(), "80".to_string()),
    }
}
