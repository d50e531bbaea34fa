#![allow(dead_code)]
//! Steady load from client threads over loopback, for "0 failed requests" assertions while the
//! master reloads, recycles or scales. Two kinds of client:
//! - `fresh`: a new connection per request (`Connection: close`);
//! - `keepalive`: one connection reused for many requests.
//!
//! A request counts as failed unless it got a 2xx response. The one exception is the race every
//! HTTP client handles: a server may close an idle keep-alive connection just as the client
//! reuses it; if the connection dies before a single byte of the response arrives, the request
//! is retried once on a new connection (RFC 9112 section 9.3.1 allows this for idempotent
//! requests) and counted in `retried`, not `failed`. A fresh connection is never retried.
//!
//! Every client stops on `stop()` or after a hard deadline, whichever comes first.
//!
//! Include it next to `mod common;` with `#[path = "common/load.rs"] mod load;`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::common::http::{connect, request};
use crate::common::{Herdsman, WAIT};

/// Longest a load may run if the test forgets to stop it.
const HARD_DEADLINE: Duration = Duration::from_secs(170);

#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub ok: u64,
    pub failed: u64,
    pub retried: u64,
    /// The first few failures, described.
    pub errors: Vec<String>,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 20 {
            errors.push(what);
        }
    }
}

pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `fresh` new-connection clients and `keepalive` keep-alive clients, each cycling
    /// through `paths`.
    pub fn start(addr: SocketAddr, fresh: usize, keepalive: usize, paths: &[&str]) -> Load {
        let shared = Arc::new(Shared::default());
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let mut threads = Vec::new();
        for i in 0..fresh + keepalive {
            let shared = Arc::clone(&shared);
            let paths = paths.clone();
            let keep = i >= fresh;
            threads.push(std::thread::spawn(move || {
                client(addr, &shared, &paths, i, keep)
            }));
        }
        Load { shared, threads }
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.shared.ok.load(Ordering::Relaxed)
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Blocks until at least `n` more requests succeeded than when called (or panics at the
    /// deadline): proof that load is flowing.
    pub fn wait_for_more(&self, n: u64, timeout: Duration) {
        let target = self.ok() + n;
        let deadline = Instant::now() + timeout;
        while self.ok() < target {
            assert!(
                Instant::now() < deadline,
                "load did not make progress: {:?}",
                self.snapshot()
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
    }

    pub fn snapshot(&self) -> Stats {
        Stats {
            ok: self.ok(),
            failed: self.failed(),
            retried: self.shared.retried.load(Ordering::Relaxed),
            errors: self.shared.errors.lock().expect("errors lock").clone(),
        }
    }

    /// Stops every client and returns the totals.
    pub fn stop(self) -> Stats {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        let shared = Arc::try_unwrap(self.shared)
            .unwrap_or_else(|_| panic!("clients still hold the load state"));
        Stats {
            ok: shared.ok.into_inner(),
            failed: shared.failed.into_inner(),
            retried: shared.retried.into_inner(),
            errors: shared.errors.into_inner().expect("errors lock"),
        }
    }
}

fn client(addr: SocketAddr, shared: &Shared, paths: &[String], index: usize, keep: bool) {
    let started = Instant::now();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut n = index;
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < HARD_DEADLINE {
        let path = &paths[n % paths.len()];
        n += 1;
        let outcome = if keep {
            keepalive_request(addr, &mut conn, path, shared)
        } else {
            fresh_request(addr, path)
        };
        match outcome {
            Ok(()) => {
                shared.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(what) => shared.fail(format!("{path}: {what}")),
        }
    }
}

fn fresh_request(addr: SocketAddr, path: &str) -> Result<(), String> {
    let stream = connect(addr).map_err(|e| format!("connect: {e}"))?;
    let resp = request(stream, "GET", path, b"").map_err(|e| e.to_string())?;
    if (200..300).contains(&resp.status) {
        Ok(())
    } else {
        Err(format!("status {}", resp.status))
    }
}

/// One request on the kept connection, reconnecting (and retrying once) only when a reused
/// connection died before any response byte.
fn keepalive_request(
    addr: SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
    path: &str,
    shared: &Shared,
) -> Result<(), String> {
    let reused = conn.is_some();
    match exchange(addr, conn, path) {
        Ok(()) => Ok(()),
        Err(Exchange::NothingReceived(_)) if reused => {
            shared.retried.fetch_add(1, Ordering::Relaxed);
            *conn = None;
            exchange(addr, conn, path).map_err(|e| e.describe())
        }
        Err(e) => {
            *conn = None;
            Err(e.describe())
        }
    }
}

enum Exchange {
    /// The connection failed before any byte of the response.
    NothingReceived(String),
    /// The response was cut short or was not a success.
    Broken(String),
}

impl Exchange {
    fn describe(&self) -> String {
        match self {
            Exchange::NothingReceived(e) => format!("no response: {e}"),
            Exchange::Broken(e) => e.clone(),
        }
    }
}

fn exchange(
    addr: SocketAddr,
    conn: &mut Option<BufReader<TcpStream>>,
    path: &str,
) -> Result<(), Exchange> {
    if conn.is_none() {
        let stream = connect(addr).map_err(|e| Exchange::Broken(format!("connect: {e}")))?;
        *conn = Some(BufReader::new(stream));
    }
    let reader = conn.as_mut().expect("connected above");
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    reader
        .get_mut()
        .write_all(head.as_bytes())
        .map_err(|e| Exchange::NothingReceived(e.to_string()))?;
    let mut status_line = String::new();
    match reader.read_line(&mut status_line) {
        Ok(0) => return Err(Exchange::NothingReceived("closed".into())),
        Err(e) => return Err(Exchange::NothingReceived(e.to_string())),
        Ok(_) => {}
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (length, close) = read_headers(reader).map_err(Exchange::Broken)?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .map_err(|e| Exchange::Broken(format!("body: {e}")))?;
    if close {
        *conn = None;
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Exchange::Broken(format!("status {status}")))
    }
}

/// Reads headers; returns the content length and whether the server will close.
fn read_headers(reader: &mut BufReader<TcpStream>) -> Result<(usize, bool), String> {
    let mut length = 0;
    let mut close = false;
    loop {
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(|e| format!("headers: {e}"))?;
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            return Ok((length, close));
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {v:?}"))?;
        }
        if line.starts_with("connection:") && line.contains("close") {
            close = true;
        }
    }
}

/// The replacements a keep-alive test puts a 2-worker master through while `load` runs: 10
/// reloads, 3 binary upgrades (the master must run from a copy of the binary), a scale-down and
/// a scale-up, each awaited by its log record, with more successful requests after each.
pub fn replacements(h: &Herdsman, load: &Load) {
    for i in 1..=10 {
        h.signal(libc::SIGHUP);
        h.wait_records("reload complete", i);
        load.wait_for_more(20, WAIT);
    }
    for i in 1..=3 {
        h.signal(libc::SIGUSR2);
        h.wait_records("upgrade complete", i);
        load.wait_for_more(20, WAIT);
    }
    for (n, sig) in [(1, libc::SIGTTOU), (2, libc::SIGTTIN)] {
        h.signal(sig);
        h.wait_records("target worker count changed", n);
        load.wait_for_more(20, WAIT);
    }
    h.wait_records("worker ready", 2 + 10 * 2 + 3 * 2 + 1);
    load.wait_for_more(20, WAIT);
}
