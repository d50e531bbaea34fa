//! The access log seen from Python, for the tests only (the engine crate cannot build a Rust
//! test binary): `render_access_line` renders one entry described by a dict, so a test can
//! compare it with the Python runtime's line for the same request (`_wants_response_headers`
//! the same for that flag). Every bad input is a Python exception, never a panic.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{Entry, Format, Local};

/// Adds the hooks to the `_engine` module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(render_access_line, m)?)?;
    m.add_function(wrap_pyfunction!(_wants_response_headers, m)?)?;
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
            Some(addr) => Local::Tcp(socket_addr(addr)?),
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
