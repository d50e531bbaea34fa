//! What a proxy in front of herdsman tells the app, on both engines alike: the `Forwarded`
//! header (RFC 7239) and `X-Forwarded-Port` from trusted peers only (`--forwarded-allow-ips`,
//! networks included), the PROXY protocol (v1 and v2, `--proxy-protocol`, `--proxy-allow-from`),
//! and `--worker-connections`, the cap beyond which connections wait in the listen queue rather
//! than being refused. The app is tests/apps/wsgi_conformance.py, which answers its environ.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{both_engines, Engine, Start};
use serde_json::Value;

fn serve(engine: Engine, extra: &[&str]) -> common::Herdsman {
    let mut args = vec!["-w", "1", "--no-access-log"];
    args.extend_from_slice(extra);
    args.push("wsgi_conformance:app");
    let h = Start::new(&args).engine(engine).spawn();
    h.wait_serving();
    h
}

/// The environ the app saw for `GET /` with `headers`, after `preamble` (a PROXY header).
fn environ(addr: SocketAddr, preamble: &[u8], headers: &[(&str, &str)]) -> Value {
    let mut stream = common::http::connect(addr).expect("connect");
    stream.write_all(preamble).expect("send the preamble");
    let resp = common::http::request_with(stream, "GET", "/", headers, b"").expect("a response");
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.json()
}

fn field(view: &Value, key: &str) -> String {
    view[key].as_str().unwrap_or("").to_string()
}

/// (REMOTE_ADDR, REMOTE_PORT, wsgi.url_scheme, SERVER_PORT)
fn client(view: &Value) -> (String, String, String, String) {
    (
        field(view, "REMOTE_ADDR"),
        field(view, "REMOTE_PORT"),
        field(view, "wsgi.url_scheme"),
        field(view, "SERVER_PORT"),
    )
}

fn strings(a: &str, b: &str, c: &str, d: &str) -> (String, String, String, String) {
    (a.into(), b.into(), c.into(), d.into())
}

/// `Forwarded` and `X-Forwarded-Port` from a trusted peer (loopback, given as networks) set the
/// client, its port, the scheme and the server port; from a peer outside the list (a network
/// that leaves loopback out) they change nothing.
fn forwarded_headers(engine: Engine) {
    let hops = [
        (
            "Forwarded",
            "for=\"[2001:db8:cafe::17]:4711\";proto=https, for=127.0.0.1;proto=http",
        ),
        ("X-Forwarded-Port", "8443"),
    ];
    let h = serve(engine, &["--forwarded-allow-ips", "127.0.0.0/8,::1/128"]);
    let addr = h.addr();
    assert_eq!(
        client(&environ(addr, b"", &hops)),
        strings("2001:db8:cafe::17", "4711", "https", "8443"),
        "{engine}: the right-most untrusted Forwarded element, from a trusted peer"
    );
    // An obfuscated identifier is no address: the peer stays, its element's proto applies.
    let view = environ(addr, b"", &[("Forwarded", "for=_hidden;proto=https")]);
    assert_eq!(field(&view, "REMOTE_ADDR"), "127.0.0.1", "{engine}: {view}");
    assert_eq!(field(&view, "wsgi.url_scheme"), "https", "{engine}: {view}");
    // X-Forwarded-For, when there is one, names the client (the header nginx appends to).
    let view = environ(
        addr,
        b"",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Forwarded", "for=198.51.100.1"),
        ],
    );
    assert_eq!(
        field(&view, "REMOTE_ADDR"),
        "203.0.113.9",
        "{engine}: {view}"
    );
    assert!(h.finish().success());

    let h = serve(engine, &["--forwarded-allow-ips", "10.0.0.0/8"]);
    let view = environ(h.addr(), b"", &hops);
    let (remote, _, scheme, port) = client(&view);
    assert_eq!(
        (remote.as_str(), scheme.as_str()),
        ("127.0.0.1", "http"),
        "{engine}: untrusted peer: {view}"
    );
    assert_ne!(port, "8443", "{engine}: untrusted X-Forwarded-Port: {view}");
    assert!(h.finish().success());
}

both_engines! {
    fn forwarded_and_x_forwarded_port_apply_from_trusted_peers_only(engine: Engine) {
        forwarded_headers(engine);
    }
}

/// A PROXY protocol v2 header: command, family, then the address block.
fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend_from_slice(&(block.len() as u16).to_be_bytes());
    header.extend_from_slice(block);
    header
}

fn v2_inet(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut block = source.to_vec();
    block.extend_from_slice(&[127, 0, 0, 1]);
    block.extend_from_slice(&port.to_be_bytes());
    block.extend_from_slice(&8000u16.to_be_bytes());
    v2(1, 0x11, &block)
}

/// Whatever the server sends before it closes, for bytes sent on a fresh connection.
fn answer_to(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = common::http::connect(addr).expect("connect");
    stream.write_all(bytes).expect("send");
    let mut seen = Vec::new();
    match stream.read_to_end(&mut seen) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server neither answered nor closed: {e}"),
    }
    seen
}

/// With `--proxy-protocol`, a connection from an allowed peer (loopback, the default) begins
/// with a v1 or v2 header whose source becomes the client; v2 LOCAL keeps the peer; proxy
/// headers apply on top, trusted by the proxy's own address; anything else closes the
/// connection (logged at debug). A peer not allowed is served as plain HTTP.
fn proxy_protocol(engine: Engine) {
    let h = serve(engine, &["--proxy-protocol", "--log-level", "debug"]);
    let addr = h.addr();
    let remote = |preamble: &[u8], headers: &[(&str, &str)]| {
        let view = environ(addr, preamble, headers);
        (field(&view, "REMOTE_ADDR"), field(&view, "REMOTE_PORT"))
    };
    let pair = |a: &str, p: &str| (a.to_string(), p.to_string());
    assert_eq!(
        remote(b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 8000\r\n", &[]),
        pair("198.51.100.7", "40001"),
        "{engine}: v1 TCP4"
    );
    assert_eq!(
        remote(b"PROXY TCP6 2001:db8::5 ::1 40002 8000\r\n", &[]),
        pair("2001:db8::5", "40002"),
        "{engine}: v1 TCP6"
    );
    assert_eq!(
        remote(&v2_inet([203, 0, 113, 5], 51000), &[]),
        pair("203.0.113.5", "51000"),
        "{engine}: v2 INET"
    );
    let (local, _) = remote(&v2(0, 0x00, &[]), &[]);
    assert_eq!(local, "127.0.0.1", "{engine}: v2 LOCAL keeps the peer");
    assert_eq!(
        remote(b"PROXY UNKNOWN\r\n", &[]).0,
        "127.0.0.1",
        "{engine}: v1 UNKNOWN keeps the peer"
    );
    // The proxy (loopback) is in forwarded_allow_ips too: its X-Forwarded-For applies on top.
    assert_eq!(
        remote(
            &v2_inet([203, 0, 113, 5], 51000),
            &[("X-Forwarded-For", "192.0.2.44")]
        )
        .0,
        "192.0.2.44",
        "{engine}: proxy headers over the PROXY header's client"
    );
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\x00\x00GET / HTTP/1.1\r\n\r\n",
    ] {
        let seen = answer_to(addr, garbage);
        assert!(
            seen.is_empty(),
            "{engine}: {:?} was answered: {}",
            String::from_utf8_lossy(garbage),
            String::from_utf8_lossy(&seen)
        );
    }
    h.wait_line("PROXY protocol: not a PROXY protocol header");
    assert!(h.finish().success());

    // A peer outside --proxy-allow-from sends no header: plain HTTP.
    let h = serve(
        engine,
        &["--proxy-protocol", "--proxy-allow-from", "10.0.0.0/8"],
    );
    assert_eq!(
        field(&environ(h.addr(), b"", &[]), "REMOTE_ADDR"),
        "127.0.0.1"
    );
    assert!(h.finish().success());
}

both_engines! {
    fn proxy_protocol_v1_and_v2_name_the_client_and_garbage_closes(engine: Engine) {
        proxy_protocol(engine);
    }
}

/// One keep-alive request on `stream`, its whole response read (Content-Length framed).
fn keep_alive_get(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a response line");
        assert!(!line.is_empty(), "closed before a response: {head}");
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().expect("a length");
            }
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("the body");
    head
}

/// `--worker-connections 2`, one worker: two open connections fill it; a third is accepted by
/// the kernel (no reset, no 503) and answered as soon as one of the two closes.
fn worker_connections(engine: Engine) {
    let h = serve(engine, &["--worker-connections", "2", "--keep-alive", "60"]);
    let addr = h.addr();
    let mut first = common::http::connect(addr).expect("connect");
    let mut second = common::http::connect(addr).expect("connect");
    for conn in [&mut first, &mut second] {
        let head = keep_alive_get(conn);
        assert!(head.starts_with("HTTP/1.1 200"), "{engine}: {head}");
    }
    let mut third = common::http::connect(addr).expect("the kernel accepts the third");
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send");
    // Not served while the worker holds two: this read must time out, not see a reset or EOF.
    third
        .set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match third.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("{engine}: the third connection was not held back: {other:?}"),
    }
    drop(first);
    third
        .set_read_timeout(Some(common::http::IO_TIMEOUT))
        .expect("timeout");
    let mut seen = Vec::new();
    third.read_to_end(&mut seen).expect("the answer");
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "{engine}: {seen}");
    // The second connection still works: it was never dropped to make room.
    assert!(keep_alive_get(&mut second).starts_with("HTTP/1.1 200"));
    drop(second);
    assert!(h.finish().success());
}

both_engines! {
    fn worker_connections_hold_the_next_connection_in_the_queue(engine: Engine) {
        worker_connections(engine);
    }
}
