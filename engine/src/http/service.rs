//! One request, on the tokio thread: the limits, the body (read ahead when small), the hand-off
//! to the app's threads (WSGI) or to the worker's asyncio loop (ASGI: asgi/call.rs), and the
//! response hyper writes.
//!
//! Invariants: every request gets a response (the app's, or 4xx/5xx from here: 414/431 for the
//! limits, 503 when no thread will take it, 500 when its handler vanished); during a drain every
//! HTTP/1.x response says `Connection: close` (hyper then closes the connection after it; an
//! HTTP/2 connection has no such header, it got GOAWAY from conn.rs instead, and the engine's
//! own `Connection: close` is dropped); nothing here blocks or takes the GIL.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::body::{Finish, Kind, ResponseBody};
use super::conn::ConnState;
use super::Peer;
use crate::shared::{Limits, Phase, Shared};
use crate::wsgi::{Job, RequestBody};

/// What the app's thread sends back: the response head and how its body comes, and the request
/// head it borrowed (for the access log).
pub struct Reply {
    pub status: StatusCode,
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub headers: HeaderMap,
    pub body: Kind,
    pub head: Option<Parts>,
}

impl Reply {
    /// A plain-text answer from the engine itself.
    pub fn plain(status: StatusCode, text: &'static str, close: bool) -> Reply {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        Reply {
            status,
            reason: None,
            headers,
            body: Kind::Full(Some(Bytes::from_static(text.as_bytes()))),
            head: None,
        }
    }
}

pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    peer: Peer,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let peer = shared.settings.trusted.apply(peer, request.headers());
    let mut finish = Finish::new(shared.clone(), conn, peer, Instant::now());
    let version = request.version();
    let (head, body) = request.into_parts();
    let mut reply = match over_limits(&shared.settings.limits, &head) {
        Some(status) => {
            drop(body);
            let mut reply = Reply::plain(
                status,
                status.canonical_reason().unwrap_or("bad request"),
                true,
            );
            reply.head = Some(head);
            reply
        }
        None => call_app(&shared, &finish.conn, head, body, peer).await,
    };
    if version >= hyper::Version::HTTP_2 {
        reply.headers.remove(CONNECTION); // connection-specific: not in HTTP/2 (RFC 9113, 8.2.2)
    } else if shared.phase() != Phase::Serving && reply.status != StatusCode::SWITCHING_PROTOCOLS {
        reply
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    finish.status = reply.status.as_u16();
    finish.head = reply.head.take();
    if let Some(access) = &shared.access {
        if access.wants_response_headers() {
            finish.response_headers = Some(reply.headers.clone());
        }
    }
    let mut response = Response::new(ResponseBody::new(reply.body, finish));
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    if let Some(reason) = reply.reason {
        response.extensions_mut().insert(reason);
    }
    Ok(response)
}

async fn call_app(
    shared: &Arc<Shared>,
    conn: &Arc<ConnState>,
    head: Parts,
    body: Incoming,
    peer: Peer,
) -> Reply {
    let body = match read_ahead(shared.settings.buffer_body, &head, body).await {
        Ok(body) => body,
        Err(()) => {
            let mut reply = Reply::plain(StatusCode::BAD_REQUEST, "bad request body\n", true);
            reply.head = Some(head);
            return reply;
        }
    };
    if shared.asgi.is_some() {
        if crate::asgi::ws::is_upgrade(&head) {
            drop(body);
            return crate::asgi::ws::call(shared, conn.counted.clone(), head, peer).await;
        }
        return crate::asgi::call::call(shared, head, body, peer).await;
    }
    let (tx, rx) = oneshot::channel();
    let job = Job {
        head,
        body,
        peer,
        reply: tx,
        runtime: tokio::runtime::Handle::current(),
    };
    shared.running.fetch_add(1, Ordering::AcqRel);
    if let Err(unsent) = shared.pool.push(Box::new(job)) {
        shared.running.fetch_sub(1, Ordering::AcqRel);
        let mut reply = Reply::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is stopping\n",
            true,
        );
        reply.head = Some(unsent.head);
        return reply;
    }
    match rx.await {
        Ok(reply) => reply,
        // The handler is gone without answering: only a bug in the engine gets here.
        Err(_) => Reply::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error\n",
            true,
        ),
    }
}

/// A small body with a known length is read here, so the app's thread never waits on the
/// client for it; anything else streams to `wsgi.input` as the app reads (and
/// `Expect: 100-continue` is answered only then, by hyper, when the app first reads).
async fn read_ahead(limit: usize, head: &Parts, body: Incoming) -> Result<RequestBody, ()> {
    let length = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(0) => Ok(RequestBody::Buffered(Bytes::new())),
        Some(n) if n as usize <= limit && !head.headers.contains_key(EXPECT) => {
            let collected = body.collect().await.map_err(|_| ())?;
            Ok(RequestBody::Buffered(collected.to_bytes()))
        }
        None if head.method == hyper::Method::GET || head.method == hyper::Method::HEAD => {
            if is_chunked(&head.headers) {
                Ok(RequestBody::Stream(body))
            } else {
                Ok(RequestBody::Buffered(Bytes::new()))
            }
        }
        _ => Ok(RequestBody::Stream(body)),
    }
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers.contains_key(hyper::header::TRANSFER_ENCODING)
}

/// gunicorn's request limits: the request line (method, target, version) and each header field.
fn over_limits(limits: &Limits, head: &Parts) -> Option<StatusCode> {
    if limits.request_line > 0 {
        let target = head.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if head.method.as_str().len() + target + 10 > limits.request_line {
            return Some(StatusCode::URI_TOO_LONG);
        }
    }
    if limits.request_fields > 0 && head.headers.len() > limits.request_fields {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    if limits.request_field_size > 0
        && head
            .headers
            .iter()
            .any(|(name, value)| name.as_str().len() + value.len() + 2 > limits.request_field_size)
    {
        return Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    None
}
