//! The TLS handshake of one accepted connection, in that connection's task, then HTTP on the
//! decrypted stream (`conn::serve`). A handshake that fails or outlasts `HANDSHAKE_TIMEOUT`
//! closes that connection and is logged at debug level: scanners and clients that do not trust
//! the certificate are routine, and never cost the worker. A quick stop drops a connection
//! still in its handshake; a drain lets the handshake finish (it is bounded by the timeout) and
//! the connection then closes as any idle one does. Closing an established connection, hyper
//! shuts the stream down, which sends TLS close_notify first.

use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::http::conn::{self, Counted};
use crate::http::Peer;
use crate::shared::Phase;

/// Longest a client may take from connecting to the end of its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn serve<IO>(counted: Counted, config: Arc<ServerConfig>, io: IO, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = counted.shared().clone();
    let mut phase = shared.phase.subscribe();
    let accept = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(io));
    let outcome = tokio::select! {
        outcome = accept => outcome,
        _ = aborted(&mut phase) => return,
    };
    let who = match peer.remote {
        Some(addr) => addr.to_string(),
        None => "a unix socket client".to_string(),
    };
    match outcome {
        Ok(Ok(stream)) => conn::serve(counted, stream, peer).await,
        Ok(Err(err)) => shared.log("debug", format!("TLS handshake with {who} failed: {err}")),
        Err(_) => shared.log(
            "debug",
            format!("TLS handshake with {who} timed out after {HANDSHAKE_TIMEOUT:?}"),
        ),
    }
}

async fn aborted(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    loop {
        if *phase.borrow_and_update() == Phase::Aborted {
            return;
        }
        if phase.changed().await.is_err() {
            return;
        }
    }
}
