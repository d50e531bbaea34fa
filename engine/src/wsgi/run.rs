//! The app's threads: each takes requests from the pool (waiting without the GIL), calls the app,
//! and sends what it returns.
//!
//! Invariants: every request taken gets exactly one reply (the app's, a 500, or a 503 when it is
//! quarantined), its in-flight entry is removed and it is counted as completed, whatever the app
//! does, a panic in the engine included (caught here: no panic crosses into Python); the
//! iterable's `close()` is always called; an app's exception is logged with its traceback.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use super::environ::{self, Context};
use super::file::{as_wrapper, send_file};
use super::input::Input;
use super::respond::StartResponse;
use super::Job;
use crate::server::Server;

/// What a quarantined request is answered (as the uvicorn engine's inflightfile.refuse).
const QUARANTINED: &str = "request quarantined: it kept killing workers\n";

pub fn serve_thread(py: Python<'_>, server: &Server) {
    let pool = &server.shared.pool;
    loop {
        // A request already queued is taken with the GIL held: releasing it only to take it back
        // at once would cost two hand-offs of the GIL per request under load. The thread parks,
        // without the GIL, only on an empty queue (pool.rs says when it is woken).
        match pool.try_take() {
            Some(job) => handle(py, server, *job),
            None => {
                if !py.detach(|| pool.park()) {
                    return;
                }
            }
        }
    }
}

/// The environment variable naming a request path whose handling panics, for the tests of the
/// invariant above (tests/hardening.rs): unset, nothing happens. It does not start with
/// `HERDSMAN_` because the master keeps those from the workers (and refuses unknown ones).
const PANIC_PATH_VAR: &str = "_HERDSMAN_ENGINE_TEST_PANIC_PATH";

/// Panics when the path is the one `PANIC_PATH_VAR` names (read once).
fn injected_panic(path: &str) {
    static PANIC_PATH: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = PANIC_PATH.get_or_init(|| std::env::var(PANIC_PATH_VAR).ok());
    if wanted.as_deref() == Some(path) {
        panic!("{PANIC_PATH_VAR} asked for a panic on {path}");
    }
}

fn handle(py: Python<'_>, server: &Server, job: Job) {
    let shared = &server.shared;
    let Job {
        head,
        body,
        peer,
        reply,
        runtime,
    } = job;
    let key = shared.registry.begin(head.method.as_str(), head.uri.path());
    let input = Input::new(body, runtime);
    let outcome = catch_unwind(AssertUnwindSafe(|| -> PyResult<()> {
        let Some(_) = key else {
            StartResponse::new(reply, head).refuse(QUARANTINED);
            return Ok(());
        };
        injected_panic(head.uri.path());
        let input = Bound::new(py, input)?.into_any();
        let cx = Context {
            peer: &peer,
            input,
            errors: server.errors.bind(py),
            file_wrapper: server.file_wrapper.bind(py),
            multithread: shared.settings.threads > 1,
            script_name: server.script_name.bind(py),
        };
        let environ = environ::build(py, &head, cx);
        let responder = Bound::new(py, StartResponse::new(reply, head))?;
        let environ = match environ {
            Ok(environ) => environ,
            Err(err) => {
                responder.get().fail();
                return Err(err);
            }
        };
        let result = server.app.bind(py).call1((environ, &responder));
        let sent = match result {
            Ok(iterable) => {
                let sent = respond(py, responder.get(), &iterable);
                let closed = close(&iterable);
                sent.and(closed)
            }
            Err(err) => Err(err),
        };
        if sent.is_err() {
            responder.get().fail();
        }
        sent
    }));
    if let Some(key) = key {
        // The method and path are copied again only for a log line (the registry has them).
        let describe = || shared.registry.describe(key);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                let (method, path) = describe();
                server.log_app_error(py, &err, "WSGI", &method, &path);
            }
            Err(_) => {
                let (method, path) = describe();
                let message =
                    format!("engine bug: a panic while handling {method} {path} (answered 500)");
                server.log_line(py, "error", &message);
            }
        }
        shared.registry.end(key);
    }
    shared.app_call_done();
}

/// Sends the app's iterable: at once when it is a list or tuple of bytes (or its first chunk
/// fills the Content-Length), else chunk by chunk as it yields.
fn respond(py: Python<'_>, responder: &StartResponse, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Some(whole) = whole_body(iterable)? {
        if !responder.sent() {
            return responder.send_full(whole);
        }
        if !whole.is_empty() {
            responder.send_chunk(py, whole)?;
        }
        return responder.finish();
    }
    if let Some(wrapper) = as_wrapper(iterable) {
        if send_file(py, wrapper.get(), responder)? {
            return responder.finish();
        }
    }
    for item in iterable.try_iter()? {
        let item = item?;
        let chunk = bytes_of(&item)?;
        if chunk.is_empty() {
            continue;
        }
        if !responder.sent() && responder.content_length() == Some(chunk.len() as u64) {
            responder.send_full(chunk)?;
            continue;
        }
        if !responder.send_chunk(py, chunk)? {
            break; // the client is gone: stop producing
        }
    }
    responder.finish()
}

/// The body of a list or tuple, joined; None for other iterables.
fn whole_body(iterable: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    let items: Vec<Bound<'_, PyAny>> = if let Ok(list) = iterable.cast::<PyList>() {
        list.iter().collect()
    } else if let Ok(tuple) = iterable.cast::<PyTuple>() {
        tuple.iter().collect()
    } else {
        return Ok(None);
    };
    match items.len() {
        0 => Ok(Some(Bytes::new())),
        1 => bytes_of(&items[0]).map(Some),
        _ => {
            let mut joined = Vec::new();
            for item in &items {
                let bytes = item.cast::<PyBytes>().map_err(|_| not_bytes(item))?;
                joined.extend_from_slice(bytes.as_bytes());
            }
            Ok(Some(Bytes::from(joined)))
        }
    }
}

fn bytes_of(item: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    let bytes = item.cast::<PyBytes>().map_err(|_| not_bytes(item))?;
    Ok(Bytes::copy_from_slice(bytes.as_bytes()))
}

fn not_bytes(item: &Bound<'_, PyAny>) -> PyErr {
    let kind = item
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    pyo3::exceptions::PyTypeError::new_err(format!(
        "the app's response iterable yielded a {kind}, not bytes (PEP 3333: the body is bytes; encode str first)"
    ))
}

/// PEP 3333: the iterable's `close()`, if it has one, is called once the response is done.
fn close(iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    if iterable.cast::<PyList>().is_ok() || iterable.cast::<PyTuple>().is_ok() {
        return Ok(());
    }
    match iterable.getattr(pyo3::intern!(iterable.py(), "close")) {
        Ok(close) => close.call0().map(|_| ()),
        Err(_) => Ok(()),
    }
}
