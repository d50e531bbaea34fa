//! The two sides of one ASGI app call: `call` on the tokio thread (the request queued for the
//! loop, the body pumped, the reply awaited), and on the loop `take` (the batch of new requests
//! as `(scope, receive, send)`), the `receive` and `send` callables, and `Send.done`, which ends
//! the call: a 500 when the app sent no response, a cut connection when it stopped mid-response,
//! its traceback logged (as uvicorn's "Exception in ASGI application").

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{HeaderMap, StatusCode};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use tokio::sync::{mpsc, oneshot};

use super::exchange::{self, Exchange, Message, Outgoing};
use super::{Event, Job};
use crate::http::body::Kind;
use crate::http::service::Reply;
use crate::http::Peer;
use crate::server::Server;
use crate::shared::Shared;
use crate::wsgi::RequestBody;

/// What a quarantined request is answered (as the uvicorn engine's inflightfile.refuse).
const QUARANTINED: &str = "request quarantined: it kept killing workers\n";

/// The tokio side of one request: queued for the loop, answered with what the app sends.
pub async fn call(shared: &Arc<Shared>, head: Parts, body: RequestBody, peer: Peer) -> Reply {
    let Some(bridge) = &shared.asgi else {
        unreachable!("asgi::call without a bridge");
    };
    let Some(key) = shared.registry.begin(head.method.as_str(), head.uri.path()) else {
        let mut reply = Reply::plain(StatusCode::SERVICE_UNAVAILABLE, QUARANTINED, true);
        reply.head = Some(head);
        return reply;
    };
    let (tx, rx) = oneshot::channel();
    let (buffered, stream): (Option<Bytes>, Option<Incoming>) = match body {
        RequestBody::Buffered(data) => (Some(data), None),
        RequestBody::Stream(incoming) => (None, Some(incoming)),
    };
    let exchange = Arc::new(Exchange::new(shared.clone(), key, tx, buffered));
    shared.running.fetch_add(1, Ordering::AcqRel);
    let watch = exchange::Watch(exchange.clone());
    if let Some(incoming) = stream {
        tokio::spawn(exchange::pump(exchange.clone(), incoming));
    }
    bridge.push(Event::Request(Box::new(Job {
        head,
        peer,
        exchange: exchange.clone(),
    })));
    let reply = rx.await;
    drop(watch);
    match reply {
        Ok(reply) => reply,
        // The loop dropped the request without answering: the worker is going away.
        Err(_) => Reply::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping\n",
            true,
        ),
    }
}

struct Names {
    type_: Py<PyString>,
    version: Py<PyString>,
    spec_version: Py<PyString>,
    v3: Py<PyString>,
    spec: Py<PyString>,
    body: Py<PyString>,
    more_body: Py<PyString>,
    http_request: Py<PyString>,
    http_disconnect: Py<PyString>,
    status: Py<PyString>,
    headers: Py<PyString>,
    trailers: Py<PyString>,
    create_future: Py<PyString>,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn names(py: Python<'_>) -> &Names {
    NAMES.get_or_init(py, || {
        let s = |text: &str| PyString::intern(py, text).unbind();
        Names {
            type_: s("type"),
            version: s("version"),
            spec_version: s("spec_version"),
            v3: s("3.0"),
            spec: s("2.4"),
            body: s("body"),
            more_body: s("more_body"),
            http_request: s("http.request"),
            http_disconnect: s("http.disconnect"),
            status: s("status"),
            headers: s("headers"),
            trailers: s("trailers"),
            create_future: s("create_future"),
        }
    })
}

/// The scope's `asgi` item.
pub fn asgi_version<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let n = names(py);
    let d = PyDict::new(py);
    d.set_item(n.version.bind(py), n.v3.bind(py))?;
    d.set_item(n.spec_version.bind(py), n.spec.bind(py))?;
    Ok(d)
}

/// A `receive` message as the app gets it.
pub fn message(py: Python<'_>, message: Message) -> PyResult<Bound<'_, PyDict>> {
    let n = names(py);
    let d = PyDict::new(py);
    match message {
        Message::Body(data, more) => {
            d.set_item(n.type_.bind(py), n.http_request.bind(py))?;
            d.set_item(n.body.bind(py), PyBytes::new(py, &data))?;
            d.set_item(n.more_body.bind(py), more)?;
        }
        Message::Disconnect => {
            d.set_item(n.type_.bind(py), n.http_disconnect.bind(py))?;
        }
    }
    Ok(d)
}

/// The loop side: the wake-ups resolved, and the new requests as `(scope, receive, send)`.
pub fn take<'py>(py: Python<'py>, server: &Bound<'py, Server>) -> PyResult<Bound<'py, PyList>> {
    let this = server.get();
    let out = PyList::empty(py);
    let Some(bridge) = &this.shared.asgi else {
        return Ok(out);
    };
    let Some(lp) = this.asgi_loop.get() else {
        return Err(PyRuntimeError::new_err("asgi_start was not called"));
    };
    for event in bridge.take() {
        match event {
            Event::Wake(exchange) => exchange.resolve(py),
            Event::WsWake(exchange) => exchange.resolve(py),
            Event::WsRequest(job) => super::ws::start(py, server, *job, &out)?,
            Event::Request(job) => {
                let Job {
                    head,
                    peer,
                    exchange,
                } = *job;
                let scope = match super::scope::build(py, this, &head, &peer) {
                    Ok(scope) => scope,
                    Err(err) => {
                        exchange.state().head = Some(head);
                        let send = Send::new(exchange, server.clone().unbind());
                        send.end(py, Some(err));
                        continue;
                    }
                };
                exchange.state().head = Some(head);
                let receive = Receive {
                    exchange: exchange.clone(),
                    lp: lp.clone_ref(py),
                };
                let send = Send::new(exchange, server.clone().unbind());
                out.append((scope, receive, send))?;
            }
        }
    }
    Ok(out)
}

/// An awaitable that is done at once with its value (no future, no trip through the loop).
#[pyclass(module = "herdsman._engine", name = "Ready")]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let value = self.value.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }

    fn send(&mut self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }

    #[pyo3(signature = (*_args))]
    fn throw(&mut self, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
        Err(PyRuntimeError::new_err("throw() on a completed awaitable"))
    }

    fn close(&mut self) {}
}

pub fn ready(py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, Ready { value })?.into_any())
}

#[pyclass(frozen, module = "herdsman._engine", name = "Receive")]
pub struct Receive {
    exchange: Arc<Exchange>,
    lp: Py<PyAny>,
}

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let earlier = self.exchange.state().receive_waiter.take();
        if let Some(earlier) = earlier {
            // A receive() the app gave up on (a timeout cancelled it) may be replaced.
            let done = earlier
                .bind(py)
                .call_method0(pyo3::intern!(py, "done"))
                .and_then(|d| d.is_truthy())
                .unwrap_or(true);
            if !done {
                self.exchange.state().receive_waiter = Some(earlier);
                return Err(PyRuntimeError::new_err(
                    "receive() called again before the previous call completed",
                ));
            }
        }
        let mut state = self.exchange.state();
        if let Some(m) = self.exchange.next_message(&mut state) {
            drop(state);
            return ready(py, Some(message(py, m)?.into_any().unbind()));
        }
        drop(state);
        let future = self
            .lp
            .bind(py)
            .call_method0(names(py).create_future.bind(py))?;
        let mut state = self.exchange.state();
        // The tokio side may have made a message available meanwhile: look again.
        if let Some(m) = self.exchange.next_message(&mut state) {
            drop(state);
            return ready(py, Some(message(py, m)?.into_any().unbind()));
        }
        state.receive_waiter = Some(future.clone().unbind());
        Ok(future.unbind())
    }
}

#[pyclass(frozen, module = "herdsman._engine", name = "Send")]
pub struct Send {
    exchange: Arc<Exchange>,
    server: Py<Server>,
}

impl Send {
    fn new(exchange: Arc<Exchange>, server: Py<Server>) -> Send {
        Send { exchange, server }
    }

    /// The app call has ended, with the app's exception if it raised.
    fn end(&self, py: Python<'_>, error: Option<PyErr>) {
        let exchange = &self.exchange;
        let server = self.server.get();
        let shared = &exchange.shared;
        let mut state = exchange.state();
        if state.finished {
            return;
        }
        state.finished = true;
        let unanswered = state.reply.take();
        let head = state.head.take();
        let stream = state.stream.take();
        let complete = state.response_done;
        let gone = state.gone;
        state.receive_waiter = None;
        state.send_waiter = None;
        drop(state);
        exchange.finished();
        let (method, path) = match &head {
            Some(h) => (h.method.as_str().to_string(), h.uri.path().to_string()),
            None => shared.registry.describe(exchange.key),
        };
        let cancelled = error
            .as_ref()
            .is_some_and(|e| e.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>(py));
        match (&error, cancelled) {
            (Some(err), false) => server.log_app_error(py, err, "ASGI", &method, &path),
            (None, _) if unanswered.is_some() => server.log_line(
                py,
                "error",
                &format!("ASGI callable returned without starting response ({method} {path})"),
            ),
            (None, _) if !complete && !gone => server.log_line(
                py,
                "error",
                &format!("ASGI callable returned without completing response ({method} {path})"),
            ),
            _ => {}
        }
        if let Some(reply) = unanswered {
            let mut answer = Reply::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error\n",
                false,
            );
            answer.head = head;
            let _ = reply.send(answer);
        } else if let Some(stream) = stream {
            if !complete {
                exchange::abort(&stream);
            }
        }
        shared.registry.end(exchange.key);
        shared.app_call_done();
    }

    fn start(&self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        let n = names(py);
        let status = message
            .get_item(n.status.bind(py))?
            .ok_or_else(|| PyValueError::new_err("http.response.start without a status"))?
            .extract::<u16>()
            .map_err(|_| PyTypeError::new_err("http.response.start: status must be an int"))?;
        let status = StatusCode::from_u16(status).map_err(|_| {
            PyValueError::new_err(format!("http.response.start: bad status {status}"))
        })?;
        if let Some(trailers) = message.get_item(n.trailers.bind(py))? {
            if trailers.is_truthy()? {
                return Err(PyRuntimeError::new_err(
                    "http.response.start asks for trailers: the native engine does not send HTTP trailers (use engine = \"uvicorn\", or send them as headers)",
                ));
            }
        }
        let headers = match message.get_item(n.headers.bind(py))? {
            Some(headers) => parse_headers(&headers)?,
            None => HeaderMap::new(),
        };
        let mut state = self.exchange.state();
        if state.started.is_some() || state.reply.is_none() {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.start' sent, after response already started.",
            ));
        }
        state.started = Some((status, headers));
        Ok(())
    }

    /// `http.response.body`; true when `send` must wait for the client.
    fn body(&self, py: Python<'_>, message: &Bound<'_, PyDict>) -> PyResult<bool> {
        let n = names(py);
        let data = match message.get_item(n.body.bind(py))? {
            Some(body) => {
                let bytes = body
                    .cast::<PyBytes>()
                    .map_err(|_| PyTypeError::new_err("http.response.body: body must be bytes"))?;
                Bytes::copy_from_slice(bytes.as_bytes())
            }
            None => Bytes::new(),
        };
        let more = match message.get_item(n.more_body.bind(py))? {
            Some(more) => more.is_truthy()?,
            None => false,
        };
        let exchange = &self.exchange;
        let mut state = exchange.state();
        if state.response_done {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
            ));
        }
        if state.gone {
            return Ok(false); // the client left: the message goes nowhere, as under uvicorn
        }
        if let Some(reply) = state.reply.take() {
            let Some((status, headers)) = state.started.take() else {
                state.reply = Some(reply);
                return Err(PyRuntimeError::new_err(
                    "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
                ));
            };
            let head = state.head.take();
            let kind = if more {
                let (tx, rx) = mpsc::unbounded_channel();
                if !data.is_empty() {
                    exchange.queued(data.len());
                    let _ = tx.send(Ok(data));
                }
                state.stream = Some(tx);
                Kind::Asgi(Outgoing::new(rx, exchange.clone()))
            } else {
                state.response_done = true;
                Kind::Full(Some(data))
            };
            drop(state);
            let _ = reply.send(Reply {
                status,
                reason: None,
                headers,
                body: kind,
                head,
            });
        } else {
            let Some(stream) = &state.stream else {
                return Err(PyRuntimeError::new_err(
                    "Expected ASGI message 'http.response.start', but got 'http.response.body'.",
                ));
            };
            if !data.is_empty() {
                exchange.queued(data.len());
                let _ = stream.send(Ok(data));
            }
            if !more {
                state.stream = None; // the end of the body
                state.response_done = true;
            }
            drop(state);
        }
        if !more {
            exchange.wake_receive_now(py);
            return Ok(false);
        }
        Ok(exchange.send_must_wait())
    }
}

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("send() takes a dict (an ASGI message)"))?;
        let kind = message
            .get_item(names(py).type_.bind(py))?
            .ok_or_else(|| PyValueError::new_err("an ASGI message without a \"type\""))?;
        let kind = kind
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("an ASGI message's \"type\" must be a str"))?
            .to_cow()?;
        match &*kind {
            "http.response.start" => {
                self.start(message)?;
                ready(py, None)
            }
            "http.response.body" => {
                if !self.body(py, message)? {
                    return ready(py, None);
                }
                let server = self.server.get();
                let Some(lp) = server.asgi_loop.get() else {
                    return ready(py, None);
                };
                let future = lp.bind(py).call_method0(names(py).create_future.bind(py))?;
                let mut state = self.exchange.state();
                if state.gone || !self.exchange.send_must_wait() {
                    drop(state);
                    return ready(py, None);
                }
                state.send_waiter = Some(future.clone().unbind());
                drop(state);
                Ok(future.unbind())
            }
            "http.response.trailers" => Err(PyRuntimeError::new_err(
                "http.response.trailers: the native engine does not send HTTP trailers (use engine = \"uvicorn\")",
            )),
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message '{other}' sent for an http scope"
            ))),
        }
    }

    /// The runtime's task wrapper, once the app call has returned or raised.
    #[pyo3(signature = (error=None))]
    fn done(&self, py: Python<'_>, error: Option<Bound<'_, PyAny>>) {
        let error = error.filter(|e| !e.is_none()).map(PyErr::from_value);
        self.end(py, error);
    }
}

fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for item in headers.try_iter()? {
        let item = item?;
        let mut pair = item.try_iter()?;
        let (Some(name), Some(value), None) = (pair.next(), pair.next(), pair.next()) else {
            return Err(PyTypeError::new_err(
                "http.response.start: each header is a [name, value] pair of bytes",
            ));
        };
        let (name, value) = (name?, value?);
        let name = name
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("http.response.start: header names must be bytes"))?;
        let value = value.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err("http.response.start: header values must be bytes")
        })?;
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!(
                "http.response.start: bad header name {:?}",
                String::from_utf8_lossy(name.as_bytes())
            ))
        })?;
        let value = HeaderValue::from_bytes(value.as_bytes()).map_err(|_| {
            PyValueError::new_err(format!(
                "http.response.start: bad value for header {name}: control characters are not allowed"
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}
