//! ASGI 3 conformance on both engines (tests/apps/asgi_conformance.py): the http scope's keys and
//! types, request bodies streamed in (sized, chunked, `Expect: 100-continue`) and responses
//! streamed out with `more_body`, `http.disconnect` after the response and when the client
//! leaves, 500 for an app that fails (or says nothing) before its response, a cut connection for
//! one that fails after starting it, and the lifespan's state in every request's scope.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use common::http::{connect, get, read_response, request, request_with};
use common::{both_engines, Engine, Start};

const APP: &str = "asgi_conformance:app";

fn header<'a>(resp: &'a common::http::Response, name: &str) -> &'a str {
    resp.headers
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Polls `/noted` until `key` lists `want`, within 20 s.
fn wait_noted(addr: std::net::SocketAddr, key: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let noted = get(addr, "/noted").expect("GET /noted").json();
        let seen: Vec<String> = noted[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if seen.iter().any(|s| s == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{key}: never saw {want}: {noted}"
        );
        std::thread::sleep(Duration::from_millis(20)); // polling an answer, not waiting out time
    }
}

/// Runs tests/clients/`script` against the serving `h` (`script HOST PORT`): it must print `ok`
/// and exit 0; then `h` stops cleanly.
fn client_passes(h: common::Herdsman, script: &str, engine: Engine) {
    h.wait_serving();
    let port = h.addr().port().to_string();
    let out = std::process::Command::new(common::python())
        .arg(common::repo().join("tests/clients").join(script))
        .args(["127.0.0.1", &port])
        .output()
        .unwrap_or_else(|e| panic!("run tests/clients/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("ok"),
        "{script} on {engine}:\n{stdout}\n{stderr}\nworker log:\n{}",
        h.log.text()
    );
    assert!(h.finish().success());
}

both_engines! {
    fn the_http_scope_has_every_key_with_its_type(engine: Engine) {
        let h = Start::new(&["-w", "1", "--root-path", "/mount", APP]).engine(engine).spawn();
        h.wait_serving();
        let resp = request_with(
            connect(h.addr()).expect("connect"),
            "GET",
            "/scope/caf%C3%A9?x=1&y=%20",
            &[("X-Custom", "Value"), ("x-custom", "second")],
            b"",
        )
        .expect("GET /scope");
        assert_eq!(resp.status, 200, "{resp:?}");
        let view = resp.json();
        assert_eq!(view["ok"], true, "{engine}: {view}");
        let scope = &view["scope"];
        assert_eq!(scope["type"], "http");
        assert_eq!(scope["http_version"], "1.1");
        assert_eq!(scope["method"], "GET");
        assert_eq!(scope["scheme"], "http");
        assert_eq!(scope["root_path"], "/mount");
        // As uvicorn: path and raw_path carry the root_path; path is percent-decoded UTF-8.
        assert_eq!(scope["path"], "/mount/scope/café", "{engine}: {scope}");
        assert_eq!(scope["raw_path"], "/mount/scope/caf%C3%A9", "{engine}: {scope}");
        assert_eq!(scope["query_string"], "x=1&y=%20");
        assert_eq!(scope["client"][0], "127.0.0.1");
        assert_eq!(scope["server"][0], "127.0.0.1");
        assert_eq!(scope["server"][1], h.addr().port());
        assert_eq!(scope["state"]["started_by"], "lifespan", "{engine}: {scope}");
        let customs: Vec<&str> = scope["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter(|p| p[0] == "x-custom")
            .filter_map(|p| p[1].as_str())
            .collect();
        assert_eq!(customs, ["Value", "second"], "{engine}: {scope}");
        assert!(h.finish().success());
    }

    fn request_and_response_bodies_stream_both_ways(engine: Engine) {
        let h = Start::new(&["-w", "1", APP]).engine(engine).spawn();
        h.wait_serving();
        // Sized, small (read ahead by the native engine: one message).
        let body: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let resp = request(connect(h.addr()).expect("connect"), "POST", "/echo", &body).expect("POST");
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.body.as_bytes(), &body[..], "{engine}");
        assert!(
            header(&resp, "transfer-encoding").contains("chunked"),
            "{engine}: streamed out: {:?}",
            resp.headers
        );
        // Chunked, 3 MiB in 64 KiB chunks: several `http.request` messages with more_body.
        let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| b'A' + (i % 23) as u8).collect();
        let mut stream = connect(h.addr()).expect("connect");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("head");
        let writer = {
            let mut stream = stream.try_clone().expect("clone");
            let big = big.clone();
            std::thread::spawn(move || {
                for chunk in big.chunks(64 * 1024) {
                    write!(stream, "{:x}\r\n", chunk.len()).expect("size");
                    stream.write_all(chunk).expect("chunk");
                    stream.write_all(b"\r\n").expect("crlf");
                }
                stream.write_all(b"0\r\n\r\n").expect("end");
            })
        };
        let resp = read_response(&mut BufReader::new(stream)).expect("echo");
        writer.join().expect("writer");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), big.len(), "{engine}");
        assert!(resp.body.as_bytes() == &big[..], "{engine}: the body came back changed");
        let messages: u32 = header(&resp, "x-messages").parse().unwrap_or(0);
        assert!(messages > 1, "{engine}: one message for 3 MiB chunked: {messages}");
        // Expect: 100-continue: the interim answer, then the echo.
        let mut stream = connect(h.addr()).expect("connect");
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .expect("head");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("interim");
        assert!(line.starts_with("HTTP/1.1 100"), "{engine}: {line:?}");
        reader.read_line(&mut line).expect("blank");
        stream.write_all(b"hello").expect("body");
        let resp = read_response(&mut reader).expect("echo");
        assert_eq!(resp.body, "hello", "{engine}");
        // A response in many `more_body` messages.
        let resp = get(h.addr(), "/stream?n=50").expect("GET /stream");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body.len(), 50 * 1024, "{engine}");
        assert!(resp.body.starts_with("0000") && resp.body.ends_with("0049"), "{engine}");
        assert!(h.finish().success());
    }

    fn receive_says_disconnect_after_the_response_and_when_the_client_leaves(engine: Engine) {
        let h = Start::new(&["-w", "1", APP]).engine(engine).spawn();
        h.wait_serving();
        let resp = get(h.addr(), "/after").expect("GET /after");
        assert_eq!(resp.status, 200);
        wait_noted(h.addr(), "after", "http.disconnect");
        // The client sends a request and leaves before any answer.
        let mut stream = connect(h.addr()).expect("connect");
        stream
            .write_all(b"GET /hang HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("request");
        // The app has the request; then the client leaves.
        wait_noted(h.addr(), "hang", "started");
        drop(stream);
        wait_noted(h.addr(), "hang", "http.disconnect");
        assert!(h.finish().success());
    }

    fn an_app_that_fails_gets_500_before_its_response_and_a_cut_after(engine: Engine) {
        let h = Start::new(&["-w", "1", APP]).engine(engine).spawn();
        h.wait_serving();
        let resp = get(h.addr(), "/raise").expect("GET /raise");
        assert_eq!(resp.status, 500, "{engine}: {resp:?}");
        h.wait_line("raised before the response (on purpose)");
        let resp = get(h.addr(), "/silent").expect("GET /silent");
        assert_eq!(resp.status, 500, "{engine}: {resp:?}");
        // Mid-response: the head and the first chunk, then the connection ends without the last
        // chunk, so the client cannot take the response for complete.
        let mut stream = connect(h.addr()).expect("connect");
        stream
            .write_all(b"GET /late_raise HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .expect("request");
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw);
        let raw = String::from_utf8_lossy(&raw);
        assert!(raw.starts_with("HTTP/1.1 200"), "{engine}: {raw:?}");
        assert!(raw.contains("first chunk"), "{engine}: {raw:?}");
        assert!(!raw.ends_with("0\r\n\r\n"), "{engine}: the response looks complete: {raw:?}");
        h.wait_line("raised mid-response (on purpose)");
        // The worker still serves.
        assert_eq!(get(h.addr(), "/scope").expect("GET /scope").status, 200);
        assert!(h.finish().success());
    }

    /// Proxy headers from a trusted peer (loopback, the default) reach the scope's `client`,
    /// `scheme` and `server` port, as they reach the WSGI environ.
    fn proxy_headers_reach_the_scope(engine: Engine) {
        let h = Start::new(&["-w", "1", APP]).engine(engine).spawn();
        h.wait_serving();
        let resp = request_with(
            connect(h.addr()).expect("connect"),
            "GET",
            "/scope",
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Port", "8443"),
            ],
            b"",
        )
        .expect("GET /scope");
        let scope = &resp.json()["scope"];
        assert_eq!(scope["client"][0], "203.0.113.7", "{engine}: {scope}");
        assert_eq!(scope["scheme"], "https", "{engine}: {scope}");
        assert_eq!(scope["server"][1], 8443, "{engine}: {scope}");
        assert!(h.finish().success());
    }

    /// A `receive()` the app gave up on (its timeout cancelled it) does not stop the next one.
    fn receive_again_after_a_timeout(engine: Engine) {
        let h = Start::new(&["-w", "1", APP]).engine(engine).spawn();
        h.wait_serving();
        let mut stream = connect(h.addr()).expect("connect");
        stream
            .write_all(b"POST /patient HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
            .expect("head");
        // The app has timed out on its first receive(); now the body comes.
        wait_noted(h.addr(), "hang", "patient");
        stream.write_all(b"5\r\nlater\r\n0\r\n\r\n").expect("body");
        let resp = read_response(&mut BufReader::new(stream)).expect("answer");
        assert_eq!(resp.status, 200, "{engine}: {resp:?}");
        assert_eq!(resp.json()["body"], "later", "{engine}");
        assert!(h.finish().success());
    }

    /// WebSockets (tests/clients/ws_checks.py against tests/apps/ws_conformance.py): accept with
    /// a subprotocol and headers, text, bytes, a fragmented message, ping, close codes both
    /// ways, 403 for a refusal before accept, the scope, and 1009 past 16 MiB.
    fn websockets_conform(engine: Engine) {
        let h = Start::new(&["-w", "1", "ws_conformance:app"]).engine(engine).spawn();
        client_passes(h, "ws_checks.py", engine);
    }

    /// Django Channels (tests/apps/channels_site, channels 4): a room consumer's group broadcast
    /// through the channel layer reaches every member of the room and no other, and Django
    /// answers HTTP on the same port (tests/clients/channels_room.py).
    fn a_channels_broadcast_reaches_every_member_of_the_room(engine: Engine) {
        let site = common::repo().join("tests/apps/channels_site");
        let h = Start::new(&["-w", "1", "channels_site.asgi:application"])
            .engine(engine)
            .env("PYTHONPATH", site.to_str().expect("utf-8 path"))
            .spawn();
        client_passes(h, "channels_room.py", engine);
    }
}
