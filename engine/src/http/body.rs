//! The response body hyper writes: whole (the common case: a list of one bytes object), or a
//! stream fed chunk by chunk by the app's thread through a bounded channel (a slow client makes
//! the thread wait without the GIL, never the other requests). `Finish` rides along and, when
//! hyper is done with the body (written, or dropped because the client left), ends the request
//! on the connection and writes its access-log line, off the GIL.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::http::request::Parts;
use hyper::HeaderMap;
use tokio::sync::mpsc;

use super::conn::ConnState;
use super::Peer;
use crate::shared::Shared;

/// An app that failed after its response had started: the connection is closed, not ended
/// cleanly, so the client sees a truncated response rather than a complete-looking one.
#[derive(Debug)]
pub struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the app failed while sending its response")
    }
}

impl std::error::Error for Aborted {}

pub type Chunk = Result<Bytes, Aborted>;

pub enum Kind {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>),
    /// An ASGI response sent with `more_body`.
    Asgi(crate::asgi::exchange::Outgoing),
}

pub struct ResponseBody {
    kind: Kind,
    finish: Finish,
    /// The app failed mid-stream: the error is held back for one poll, so hyper writes out what
    /// it has (the head, earlier chunks) before it aborts the connection; without that pause the
    /// client could see no response at all instead of a truncated one.
    failed: bool,
}

impl ResponseBody {
    pub fn new(kind: Kind, finish: Finish) -> ResponseBody {
        ResponseBody {
            kind,
            finish,
            failed: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(Some(Err(Aborted)));
        }
        let next = match &mut this.kind {
            Kind::Full(data) => data.take().map(Ok),
            Kind::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
            Kind::Asgi(out) => match out.poll_chunk(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
        };
        match &next {
            Some(Ok(data)) => this.finish.bytes += data.len() as u64,
            Some(Err(_)) => {
                this.failed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            None => {}
        }
        Poll::Ready(next.map(|chunk| chunk.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Stream(_) | Kind::Asgi(_) => SizeHint::default(),
        }
    }
}

/// The end of one request on its connection; see the module doc.
pub struct Finish {
    shared: Arc<Shared>,
    pub conn: Arc<ConnState>,
    started: Instant,
    pub peer: Peer,
    pub head: Option<Parts>,
    pub status: u16,
    pub response_headers: Option<HeaderMap>,
    pub bytes: u64,
}

impl Finish {
    pub fn new(shared: Arc<Shared>, conn: Arc<ConnState>, peer: Peer, started: Instant) -> Finish {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Finish {
            shared,
            conn,
            started,
            peer,
            head: None,
            status: 0,
            response_headers: None,
            bytes: 0,
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let (Some(access), Some(head)) = (&self.shared.access, &self.head) {
            let entry = crate::accesslog::Entry {
                remote: self.peer.remote,
                local: crate::accesslog::Local::from(self.peer.local),
                scheme: self.peer.scheme,
                method: head.method.as_str(),
                path: head.uri.path(),
                query: head.uri.query().unwrap_or(""),
                version: log_version(head.version),
                request_headers: &head.headers,
                status: self.status,
                response_headers: self.response_headers.as_ref(),
                body_bytes: self.bytes,
                duration: self.started.elapsed(),
            };
            access.record(&entry);
        }
        self.conn
            .last_done_ms
            .store(self.shared.now_ms(), Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
        self.conn.wake.notify_one();
    }
}

/// The protocol as the access log writes it (`%(H)s`): HTTP/2 as `HTTP/2.0`, as nginx logs it.
fn log_version(version: hyper::Version) -> &'static str {
    match version {
        hyper::Version::HTTP_2 => "HTTP/2.0",
        other => version_str(other),
    }
}

pub fn version_str(version: hyper::Version) -> &'static str {
    match version {
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_2 => "HTTP/2",
        hyper::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}
