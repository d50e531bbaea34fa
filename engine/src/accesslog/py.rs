//! The access log seen from Python, for the tests only (the engine crate cannot build a Rust
//! test binary): `render_access_line` renders one entry described by a dict, so a test can
//! compare it with the Python runtime's line for the same request (`_wants_response_headers`
//! the same for that flag), and `_AccessLog` drives a real writer from many threads. Every bad
//! input is a Python exception, never a panic; the GIL is released while threads record.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{AccessLog, Entry, Format, Local, Notice, Severity, DEFAULT_FORMAT};

/// Adds the hooks to the `_engine` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(render_access_line, m)?)?;
    m.add_function(wrap_pyfunction!(_wants_response_headers, m)?)?;
    m.add_class::<TestAccessLog>()?;
    m.add("_DEFAULT_FORMAT", DEFAULT_FORMAT)?;
    Ok(())
}

/// The line (with its `\n`) `spec` gives for the request in `fields`: `remote` and `local`
/// (`None`, `(host, port)`, or for `local` a unix socket's `(path, None)`), `scheme`, `method`,
/// `path` (as received), `query`, `version`, `request_headers` and `response_headers` (lists of
/// `(name, value)` str pairs, values encoded as latin-1; `response_headers` may be None),
/// `status`, `body_bytes`, `duration_ns`, and `now` (seconds since the epoch, to pin `t`).
#[pyfunction]
fn render_access_line(spec: &str, fields: &Bound<'_, PyDict>) -> PyResult<String> {
    let format = Format::compile(spec).map_err(PyValueError::new_err)?;
    let get = |key: &str| fields.get_item(key);
    let text = |key: &str, default: &str| -> PyResult<String> {
        get(key)?.map_or(Ok(default.to_string()), |v| v.extract())
    };
    let request_headers = headers(get("request_headers")?)?.unwrap_or_default();
    let response_headers = headers(get("response_headers")?)?;
    let (local_path, local) = match get("local")? {
        Some(v) if !v.is_none() => match v.extract::<(String, Option<u16>)>()? {
            (host, Some(port)) => (String::new(), Some((host, port))),
            (path, None) => (path, None),
        },
        _ => (String::new(), None),
    };
    let (scheme, method, path) = (
        text("scheme", "http")?,
        text("method", "GET")?,
        text("path", "/")?,
    );
    let (query, version) = (text("query", "")?, text("version", "HTTP/1.1")?);
    let entry = Entry {
        remote: match get("remote")? {
            Some(v) if !v.is_none() => Some(socket_addr(v.extract()?)?),
            _ => None,
        },
        local: match local {
            Some(addr) => Local::from(Some(socket_addr(addr)?)),
            None if !local_path.is_empty() => Local::Unix(&local_path),
            None => Local::Unknown,
        },
        scheme: &scheme,
        method: &method,
        path: &path,
        query: &query,
        version: &version,
        request_headers: &request_headers,
        status: get("status")?.map_or(Ok(200), |v| v.extract())?,
        response_headers: response_headers.as_ref(),
        body_bytes: get("body_bytes")?.map_or(Ok(0), |v| v.extract())?,
        duration: Duration::from_nanos(get("duration_ns")?.map_or(Ok(0), |v| v.extract())?),
    };
    let mut out = Vec::new();
    match get("now")? {
        Some(now) => format.render_at(&entry, now.extract()?, &mut out),
        None => format.render(&entry, &mut out),
    }
    String::from_utf8(out).map_err(|e| PyValueError::new_err(format!("line is not UTF-8: {e}")))
}

/// `Format::wants_response_headers` of `spec`.
#[pyfunction]
fn _wants_response_headers(spec: &str) -> PyResult<bool> {
    Ok(Format::compile(spec)
        .map_err(PyValueError::new_err)?
        .wants_response_headers())
}

fn socket_addr((host, port): (String, u16)) -> PyResult<SocketAddr> {
    let ip: IpAddr = host
        .parse()
        .map_err(|_| PyValueError::new_err(format!("not an IP: {host}")))?;
    Ok(SocketAddr::new(ip, port))
}

fn headers(list: Option<Bound<'_, PyAny>>) -> PyResult<Option<HeaderMap>> {
    let Some(list) = list.filter(|l| !l.is_none()) else {
        return Ok(None);
    };
    let mut map = HeaderMap::new();
    for (name, value) in list.extract::<Vec<(String, String)>>()? {
        let bad = |what: &str| PyValueError::new_err(format!("bad header {what}: {name:?}"));
        let latin1: Option<Vec<u8>> = value.chars().map(|c| u8::try_from(c).ok()).collect();
        let value = HeaderValue::from_bytes(&latin1.ok_or_else(|| bad("value (not latin-1)"))?)
            .map_err(|_| bad("value"))?;
        map.append(
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("name"))?,
            value,
        );
    }
    Ok(Some(map))
}

/// A real access log for the writer's tests: lines from several threads, reopen, close.
#[pyclass(name = "_AccessLog", module = "_engine")]
struct TestAccessLog {
    log: AccessLog,
    notices: Arc<Mutex<Vec<String>>>,
}

#[pymethods]
impl TestAccessLog {
    #[new]
    fn new(path: &str, spec: &str) -> PyResult<Self> {
        let format = Format::compile(spec).map_err(PyValueError::new_err)?;
        let notices = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&notices);
        let notice: Notice = Box::new(move |severity: Severity, text: &str| {
            let mut list = sink.lock().unwrap_or_else(PoisonError::into_inner);
            list.push(format!("{}: {text}", severity.level()));
        });
        let log =
            AccessLog::open(path, format, notice).map_err(|e| PyOSError::new_err(e.to_string()))?;
        Ok(TestAccessLog { log, notices })
    }

    /// `threads` threads each record `lines` requests for `/<thread>/<line>`, with a query of
    /// `pad` bytes (to make long lines).
    fn record_from_threads(
        &self,
        py: Python<'_>,
        threads: usize,
        lines: usize,
        pad: usize,
    ) -> PyResult<()> {
        let log = &self.log;
        let query = "q".repeat(pad);
        let started = py.detach(|| {
            std::thread::scope(|scope| {
                for t in 0..threads {
                    let query = &query;
                    std::thread::Builder::new().spawn_scoped(scope, move || {
                        let headers = HeaderMap::new();
                        for i in 0..lines {
                            let path = format!("/{t}/{i}");
                            log.record(&entry(&path, query, &headers));
                        }
                    })?;
                }
                Ok::<(), std::io::Error>(())
            })
        });
        started.map_err(|e| PyOSError::new_err(format!("cannot start a thread: {e}")))
    }

    fn reopen(&self) {
        self.log.reopen();
    }

    fn wants_response_headers(&self) -> bool {
        self.log.wants_response_headers()
    }

    fn close(&self, py: Python<'_>, wait: f64) {
        let log = &self.log;
        let wait = Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or(Duration::MAX);
        py.detach(|| log.close(wait));
    }

    fn dropped(&self) -> u64 {
        self.log.dropped()
    }

    fn notices(&self) -> Vec<String> {
        self.notices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn entry<'a>(path: &'a str, query: &'a str, headers: &'a HeaderMap) -> Entry<'a> {
    Entry {
        remote: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
        local: Local::from(None),
        scheme: "http",
        method: "GET",
        path,
        query,
        version: "HTTP/1.1",
        request_headers: headers,
        status: 200,
        response_headers: None,
        body_bytes: 0,
        duration: Duration::ZERO,
    }
}
