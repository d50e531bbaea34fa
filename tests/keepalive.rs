//! The keep-alive drain (python/herdsman/runtime/drain.py): a worker that leaves while the server
//! keeps running closes its keep-alive connections without losing a request a client is sending.
//! The load's keep-alive clients here count a request that died on a reused connection as
//! `retried` (the retry most HTTP clients make); wrk and many others do not retry, so every test
//! asserts that nothing failed *and* nothing had to be retried.

mod common;
#[path = "common/load.rs"]
mod load;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{both_engines, field_i64, http, message, Engine, Herdsman, Start, WAIT};
use load::{Load, Stats};

const RETIRING: &str = "retiring worker";

fn assert_lossless(stats: &Stats, what: &str) {
    eprintln!("{what}: {stats:?}");
    assert!(stats.ok > 0, "{what}: no request succeeded");
    assert_eq!(stats.failed, 0, "{what}: failed: {:?}", stats.errors);
    assert_eq!(
        stats.retried, 0,
        "{what}: {} request(s) died on a reused keep-alive connection (a client that does not \
         retry, like wrk, counts them as failed)",
        stats.retried
    );
}

/// 10 reloads, 3 binary upgrades, a scale-down and a scale-up, under keep-alive load (and one
/// fresh-connection client beside it), `app` on `engine`.
fn replacements_under_keepalive_load(engine: Engine, app: &str) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let h = Start::new(&["-w", "2", "--graceful-timeout", "10s", app])
        .engine(engine)
        .binary(common::installed(scratch.path()))
        .spawn();
    h.wait_serving();
    let load = Load::start(h.addr(), 1, 6, &["/", "/slow?s=0.01"]);
    load.wait_for_more(50, WAIT);
    load::replacements(&h, &load);
    let stats = load.stop();
    assert_lossless(
        &stats,
        &format!("{app} on {engine}: 10 HUP, 3 USR2, TTOU, TTIN"),
    );
    assert!(h.finish().success());
}

both_engines! {
    fn asgi_keepalive_clients_lose_nothing_across_reloads_upgrades_and_scaling(engine: Engine) {
        replacements_under_keepalive_load(engine, "asgi_app:app");
    }
}

both_engines! {
    fn wsgi_keepalive_clients_lose_nothing_across_reloads_upgrades_and_scaling(engine: Engine) {
        replacements_under_keepalive_load(engine, "wsgi_app:app");
    }
}

/// max-requests recycling at full keep-alive load for 30 s (and at least 12 recyclings), `app`
/// on `engine`.
fn recycling_under_keepalive_load(engine: Engine, app: &str) {
    let h = Start::new(&[
        "-w",
        "2",
        "--max-requests",
        "400",
        "--max-requests-jitter",
        "100",
        app,
    ])
    .engine(engine)
    .spawn();
    h.wait_serving();
    let load = Load::start(h.addr(), 0, 8, &["/"]);
    // At full load for at least 30 s and at least 12 recyclings, waiting on each recycling.
    let started = Instant::now();
    let mut seen = 0;
    while seen < 12 || started.elapsed() < Duration::from_secs(30) {
        seen += 1;
        h.wait_records("recycling worker", seen);
    }
    let stats = load.stop();
    let what = format!(
        "{app} on {engine}: {seen} max-requests recyclings in {:?}",
        started.elapsed()
    );
    assert_lossless(&stats, &what);
    assert!(h.finish().success());
}

both_engines! {
    fn asgi_keepalive_clients_lose_nothing_while_max_requests_recycles(engine: Engine) {
        recycling_under_keepalive_load(engine, "asgi_app:app");
    }
}

both_engines! {
    fn wsgi_keepalive_clients_lose_nothing_while_max_requests_recycles(engine: Engine) {
        recycling_under_keepalive_load(engine, "wsgi_app:app");
    }
}

/// One request on a kept connection: the status, the `Connection` header (lowercased, empty if
/// none) and the answering worker's pid.
fn exchange(reader: &mut BufReader<TcpStream>) -> (u16, String, i32) {
    reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let (mut length, mut connection) = (0, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse().expect("length");
        }
        if let Some(v) = line.strip_prefix("connection:") {
            connection = v.trim().to_string();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let value: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    (
        code.unwrap_or(0),
        connection,
        value["pid"].as_i64().expect("pid") as i32,
    )
}

fn kept_connection(h: &Herdsman) -> BufReader<TcpStream> {
    BufReader::new(http::connect(h.addr()).expect("connect"))
}

/// A busy keep-alive client of a retiring worker is told `Connection: close` on a response and
/// the connection then ends cleanly; an idle one is closed (FIN, not reset) only after the idle
/// window, and the worker exits after that.
#[test]
fn a_retiring_worker_closes_busy_connections_after_a_response_and_idle_ones_after_a_window() {
    let h = Herdsman::start(&["-w", "1", "--graceful-timeout", "20s", "asgi_app:app"]);
    let old = h.wait_serving()[0];
    let mut busy = kept_connection(&h);
    let mut idle = kept_connection(&h);
    assert_eq!(exchange(&mut busy), (200, String::new(), old));
    assert_eq!(exchange(&mut idle), (200, String::new(), old));

    h.signal(libc::SIGHUP);
    // The busy client keeps sending on its connection until a response says close.
    let deadline = Instant::now() + WAIT;
    let last = loop {
        let (status, connection, pid) = exchange(&mut busy);
        assert_eq!(status, 200);
        if connection == "close" {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no `Connection: close` in {WAIT:?}"
        );
    };
    assert_eq!(last, old, "the close came from the retiring worker");
    let retiring = h.wait_record(RETIRING, |r| r["pid"].as_i64() == Some(old as i64));
    let mut rest = Vec::new();
    let read = busy
        .read_to_end(&mut rest)
        .expect("clean end of the busy connection");
    assert_eq!((read, rest.len()), (0, 0));

    // The idle connection: open for the idle window, then a clean end of file.
    let drain_started = Instant::now();
    idle.get_mut()
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let read = idle
        .read(&mut [0; 16])
        .expect("clean end of the idle connection");
    let waited = drain_started.elapsed();
    assert_eq!(
        read, 0,
        "the idle connection got bytes instead of an end of file"
    );
    eprintln!("idle connection closed {waited:?} after the retirement was seen");
    let exit = h.wait_record("", |r| {
        r["pid"].as_i64() == Some(old as i64) && r.get("status").is_some()
    });
    eprintln!("retiring: {retiring}\nexit: {exit}");
    assert!(
        message(&exit).contains("exited"),
        "the retired worker's exit: {exit}"
    );
    assert!(h.finish().success());
}

/// A WebSocket client just good enough to see how the server closes: the handshake, one masked
/// text frame, and the server's frames read until its close frame.
struct WebSocket {
    stream: TcpStream,
}

impl WebSocket {
    fn connect(h: &Herdsman) -> WebSocket {
        let mut stream = http::connect(h.addr()).expect("connect");
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .expect("handshake");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("handshake response");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        WebSocket { stream }
    }

    fn send_text(&mut self, text: &str) {
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | text.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("send frame");
    }

    /// The next frame: (opcode, payload).
    fn frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).expect("frame header");
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).expect("length");
                u16::from_be_bytes(ext) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).expect("payload");
        (head[0] & 0x0f, payload)
    }

    /// Reads frames until the close frame; its code.
    fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.frame();
            if opcode == 0x8 {
                assert!(payload.len() >= 2, "a close frame without a code");
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }
}

both_engines! {
    /// WebSocket clients get a close frame, never a dropped socket: 1012 (service restart) from a
    /// worker replaced by a reload, 1001 (going away) when the whole server stops.
    fn websockets_get_1012_when_their_worker_is_replaced_and_1001_on_a_stop(engine: Engine) {
        let mut h = Start::new(&["-w", "1", "ws_app:app"]).engine(engine).spawn();
        let old = h.wait_serving()[0];
        let mut ws = WebSocket::connect(&h);
        ws.send_text("hi");
        let (opcode, echo) = ws.frame();
        assert_eq!((opcode, echo), (0x1, format!("{old}:hi").into_bytes()));
        h.signal(libc::SIGHUP);
        assert_eq!(ws.close_code(), 1012, "close code from a replaced worker");
        h.wait_records("reload complete", 1);

        // The client reconnects at once: it must reach the new worker, not the retiring one.
        let new = h.wait_record("worker ready", |r| field_i64(r, "generation") == Some(1));
        let new = field_i64(&new, "pid").expect("the new worker's pid");
        let mut ws = WebSocket::connect(&h);
        ws.send_text("again");
        assert_eq!(ws.frame(), (0x1, format!("{new}:again").into_bytes()));
        h.signal(libc::SIGTERM);
        assert_eq!(ws.close_code(), 1001, "close code on a stop");
        assert!(h.wait_exit(WAIT).success());
    }

    /// An open WebSocket holds its `--worker-connections` slot for as long as it lives (hyper
    /// hands the connection over after the 101; the slot goes with it): with one slot, an HTTP
    /// request waits in the listen queue until the WebSocket closes, and is answered then.
    fn a_websocket_holds_its_worker_connections_slot(engine: Engine) {
        let h = Start::new(&["-w", "1", "--worker-connections", "1", "ws_app:app"])
            .engine(engine)
            .spawn();
        let pid = h.wait_serving()[0];
        let mut ws = WebSocket::connect(&h);
        ws.send_text("hi");
        assert_eq!(ws.frame(), (0x1, format!("{pid}:hi").into_bytes()));
        let mut next = http::connect(h.addr()).expect("the kernel accepts the next connection");
        next.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("send");
        // Not served while the WebSocket holds the slot: the read times out (no reset, no EOF).
        next.set_read_timeout(Some(Duration::from_millis(700))).expect("timeout");
        let mut byte = [0u8; 1];
        match next.read(&mut byte) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            other => panic!("{engine}: the next connection was not held back: {other:?}"),
        }
        drop(ws);
        next.set_read_timeout(Some(http::IO_TIMEOUT)).expect("timeout");
        let mut seen = Vec::new();
        next.read_to_end(&mut seen).expect("the answer");
        let seen = String::from_utf8_lossy(&seen);
        assert!(seen.starts_with("HTTP/1.1 200"), "{engine}: {seen}");
        assert!(h.finish().success());
    }

    /// A quick stop (SIGINT) still sends open WebSockets their close frame (1001).
    fn websockets_get_1001_on_a_quick_stop(engine: Engine) {
        let mut h = Start::new(&["-w", "1", "ws_app:app"]).engine(engine).spawn();
        let pid = h.wait_serving()[0];
        let mut sockets: Vec<WebSocket> = (0..3).map(|_| WebSocket::connect(&h)).collect();
        for ws in &mut sockets {
            ws.send_text("hi");
            assert_eq!(ws.frame(), (0x1, format!("{pid}:hi").into_bytes()));
        }
        h.signal(libc::SIGINT);
        for ws in &mut sockets {
            assert_eq!(ws.close_code(), 1001, "close code on a quick stop");
        }
        assert!(h.wait_exit(WAIT).success(), "a quick stop exits 0");
    }
}
