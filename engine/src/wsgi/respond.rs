//! `start_response` and the `write` callable it returns (PEP 3333), and the sending of the
//! response: whole when the app's body is known at once, else as a stream.
//!
//! Invariants: the head goes out once, with the first non-empty body bytes (or when the body
//! ends); `start_response` again without `exc_info` is an error, and with `exc_info` after the
//! head went out re-raises it; once the head is out, a failure can only cut the stream (the client
//! sees an incomplete response, never a complete-looking wrong one). The state's lock is never
//! held while waiting for the client.

use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use tokio::sync::{mpsc, oneshot};

use crate::http::body::{Aborted, Chunk, Kind};
use crate::http::service::Reply;

/// Chunks a streamed response may have waiting for the client before the app's thread waits.
const STREAM_DEPTH: usize = 16;

struct State {
    status: Option<(StatusCode, Option<hyper::ext::ReasonPhrase>)>,
    headers: HeaderMap,
    content_length: Option<u64>,
    reply: Option<oneshot::Sender<Reply>>,
    stream: Option<mpsc::Sender<Chunk>>,
    head: Option<Parts>,
}

#[pyclass(frozen, module = "herdsman._engine", name = "StartResponse")]
pub struct StartResponse {
    state: Mutex<State>,
}

#[pyclass(frozen, module = "herdsman._engine", name = "Write")]
pub struct Write {
    responder: Py<StartResponse>,
}

impl StartResponse {
    pub fn new(reply: oneshot::Sender<Reply>, head: Parts) -> StartResponse {
        StartResponse {
            state: Mutex::new(State {
                status: None,
                headers: HeaderMap::new(),
                content_length: None,
                reply: Some(reply),
                stream: None,
                head: Some(head),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The head has gone out.
    pub fn sent(&self) -> bool {
        self.state().reply.is_none()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.state().content_length
    }

    pub fn has_header(&self, name: &HeaderName) -> bool {
        self.state().headers.contains_key(name)
    }

    pub fn set_content_length(&self, length: u64) {
        self.state()
            .headers
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }

    fn reply(state: &mut State, body: Kind) -> PyResult<()> {
        let Some((status, reason)) = state.status.take() else {
            return Err(PyRuntimeError::new_err(
                "the app sent a body without calling start_response first",
            ));
        };
        if let Some(reply) = state.reply.take() {
            let _ = reply.send(Reply {
                status,
                reason,
                headers: std::mem::take(&mut state.headers),
                body,
                head: state.head.take(),
            });
        }
        Ok(())
    }

    /// The whole body at once (the head must not have gone out yet).
    pub fn send_full(&self, body: Bytes) -> PyResult<()> {
        let mut state = self.state();
        Self::reply(&mut state, Kind::Full(Some(body)))
    }

    /// One chunk of a streamed body; false when the client is gone (stop producing).
    pub fn send_chunk(&self, py: Python<'_>, data: Bytes) -> PyResult<bool> {
        let tx = {
            let mut state = self.state();
            if state.stream.is_none() && state.reply.is_some() {
                let (tx, rx) = mpsc::channel(STREAM_DEPTH);
                Self::reply(&mut state, Kind::Stream(rx))?;
                state.stream = Some(tx);
            }
            match &state.stream {
                Some(tx) => tx.clone(),
                None => return Ok(false),
            }
        };
        match tx.try_send(Ok(data)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                Ok(py.detach(|| tx.blocking_send(chunk)).is_ok())
            }
        }
    }

    /// The body is complete.
    pub fn finish(&self) -> PyResult<()> {
        let mut state = self.state();
        if state.reply.is_some() {
            return Self::reply(&mut state, Kind::Full(None));
        }
        state.stream = None; // ends the stream
        Ok(())
    }

    /// The app failed: a 500 if nothing went out yet, else the stream is cut.
    pub fn fail(&self) {
        let mut state = self.state();
        if let Some(reply) = state.reply.take() {
            let mut answer = Reply::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n",
                false,
            );
            answer.head = state.head.take();
            let _ = reply.send(answer);
        } else if let Some(tx) = state.stream.take() {
            let _ = tx.try_send(Err(Aborted));
        }
    }

    /// A 503 without calling the app (a quarantined request).
    pub fn refuse(&self, text: &'static str) {
        let mut state = self.state();
        if let Some(reply) = state.reply.take() {
            let mut answer = Reply::plain(StatusCode::SERVICE_UNAVAILABLE, text, true);
            answer.head = state.head.take();
            let _ = reply.send(answer);
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let state = this.state();
            if let Some(exc_info) = exc_info {
                if state.reply.is_none() {
                    // PEP 3333: too late to change the head; re-raise the app's exception.
                    let value = exc_info.get_item(1)?;
                    return Err(PyErr::from_value(value));
                }
            } else if state.status.is_some() {
                return Err(PyRuntimeError::new_err(
                    "start_response called a second time without exc_info (PEP 3333 allows that only to replace the head after an error)",
                ));
            } else if state.reply.is_none() {
                return Err(PyRuntimeError::new_err(
                    "start_response called after the response was sent",
                ));
            }
        }
        let parsed = parse_status(status)?;
        let (headers, content_length) = parse_headers(headers)?;
        let mut state = this.state();
        state.status = Some(parsed);
        state.headers = headers;
        state.content_length = content_length;
        drop(state);
        Ok(Write {
            responder: slf.clone().unbind(),
        })
    }
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() takes bytes"))?;
        if bytes.as_bytes().is_empty() {
            return Ok(());
        }
        let responder = self.responder.get();
        let data = Bytes::copy_from_slice(bytes.as_bytes());
        responder.send_chunk(py, data)?;
        Ok(())
    }
}

fn parse_status(
    status: &Bound<'_, PyAny>,
) -> PyResult<(StatusCode, Option<hyper::ext::ReasonPhrase>)> {
    let text = status
        .cast::<PyString>()
        .map_err(|_| {
            PyTypeError::new_err("start_response: status must be a str such as \"200 OK\"")
        })?
        .to_cow()?;
    let bad = || {
        PyValueError::new_err(format!(
            "start_response: bad status {text:?}: expected \"NNN Reason\""
        ))
    };
    let code = text
        .get(..3)
        .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(bad)?;
    let code = StatusCode::from_bytes(code.as_bytes()).map_err(|_| bad())?;
    let rest = &text[3..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(bad());
    }
    let reason = rest.trim_start_matches(' ');
    let custom = if reason.is_empty() || Some(reason) == code.canonical_reason() {
        None
    } else {
        Some(hyper::ext::ReasonPhrase::try_from(reason.as_bytes().to_vec()).map_err(|_| bad())?)
    };
    Ok((code, custom))
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(HeaderMap, Option<u64>)> {
    let mut map = HeaderMap::new();
    let mut content_length = None;
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "start_response: header {item} is not a (name, value) tuple"
                ))
            })?;
        let name = native(&pair.get_item(0)?, "header name")?;
        let value = native(&pair.get_item(1)?, "header value")?;
        let name = HeaderName::from_bytes(&name).map_err(|_| {
            PyValueError::new_err(format!(
                "start_response: bad header name {:?}",
                String::from_utf8_lossy(&name)
            ))
        })?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| {
            PyValueError::new_err(format!(
                "start_response: bad value for header {name}: control characters are not allowed"
            ))
        })?;
        if name == CONTENT_LENGTH {
            content_length = value.to_str().ok().and_then(|v| v.trim().parse().ok());
        }
        map.append(name, value);
    }
    Ok((map, content_length))
}

/// A PEP 3333 native string as its latin-1 bytes.
fn native(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let text = value
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("start_response: {what} {value} is not a str")))?
        .to_cow()?;
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c)).map_err(|_| {
                PyValueError::new_err(format!(
                    "start_response: {what} {text:?} has characters outside latin-1"
                ))
            })
        })
        .collect()
}
