//! The access log the worker runtime writes (python/herdsman/runtime/accesslog.py, and the native
//! engine's own in Rust, engine/src/accesslog, in the same format): gunicorn's `--access-logfile`
//! and `--access-logformat`, every atom checked in a real line of both engines, the default (on, to
//! standard output), `--no-access-log`, JSON lines and SIGUSR1 reopening the file on both engines,
//! and a bad format refused before anything starts.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{both_engines, http, run_to_end, Engine, Herdsman, Start, WAIT};

/// Waits until `path` holds at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(String::from).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{path:?} has {lines:?}, wanted {n} lines"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One request with the headers the atoms read; returns the status.
fn probe(h: &Herdsman, target: &str) -> u16 {
    let mut stream = http::connect(h.addr()).expect("connect");
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: probe/1.0\r\nReferer: http://ref.test/\r\n\
         X-Request-Id: abc-123\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

/// Serves `app` (whose `/slow` answers JSON) on `engine`, sends one request and checks the value
/// of every gunicorn atom in its line.
fn every_gunicorn_atom(engine: Engine, app: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("access.log");
    let format = "h=%(h)s|l=%(l)s|u=%(u)s|t=%(t)s|r=%(r)s|m=%(m)s|U=%(U)s|q=%(q)s|H=%(H)s|s=%(s)s|\
                  B=%(B)s|b=%(b)s|f=%(f)s|a=%(a)s|T=%(T)s|M=%(M)s|D=%(D)s|L=%(L)s|p=%(p)s|\
                  i=%({x-request-id}i)s|o=%({content-type}o)s|e=%({remote_addr}e)s";
    let h = Start::new(&[
        "-w",
        "1",
        "--access-logfile",
        file.to_str().expect("utf-8"),
        "--access-logformat",
        format,
        app,
    ])
    .engine(engine)
    .spawn();
    let pid = h.wait_serving()[0];
    assert_eq!(probe(&h, "/slow?s=0.05"), 200);
    let line = wait_lines(&file, 1).remove(0);
    let atoms: std::collections::HashMap<&str, &str> = line
        .split('|')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    eprintln!("{engine}: {line}");
    let expect = [
        ("h", "127.0.0.1"),
        ("l", "-"),
        ("u", "alice"),
        ("r", "GET /slow?s=0.05 HTTP/1.1"),
        ("m", "GET"),
        ("U", "/slow"),
        ("q", "s=0.05"),
        ("H", "HTTP/1.1"),
        ("s", "200"),
        ("f", "http://ref.test/"),
        ("a", "probe/1.0"),
        ("T", "0"),
        ("i", "abc-123"),
        ("o", "application/json"),
        ("e", "127.0.0.1"),
    ];
    for (atom, value) in expect {
        assert_eq!(
            atoms.get(atom),
            Some(&value),
            "{engine}: atom {atom} in {line}"
        );
    }
    assert_eq!(atoms["p"], format!("<{pid}>"));
    let body: usize = atoms["B"].parse().expect("B is a number");
    assert!(body > 10 && atoms["b"] == atoms["B"], "{line}");
    let (ms, us): (u64, u64) = (
        atoms["M"].parse().expect("M"),
        atoms["D"].parse().expect("D"),
    );
    assert!((50..5000).contains(&ms) && us / 1000 == ms, "{line}");
    assert!(
        atoms["L"].starts_with("0.") && atoms["L"].len() == 8,
        "{line}"
    );
    let t = atoms["t"];
    assert!(
        t.starts_with('[') && t.ends_with(']') && t.contains('/'),
        "{line}"
    );
    assert!(h.finish().success());
}

both_engines! {
    fn every_gunicorn_atom_of_an_asgi_request_is_written_to_the_access_logfile(engine: Engine) {
        every_gunicorn_atom(engine, "asgi_app:app");
    }
}

both_engines! {
    fn every_gunicorn_atom_of_a_wsgi_request_is_written_to_the_access_logfile(engine: Engine) {
        every_gunicorn_atom(engine, "wsgi_app:app");
    }
}

#[test]
fn the_default_access_log_is_gunicorns_format_on_stdout_and_no_access_log_turns_it_off() {
    let h = Herdsman::start(&["-w", "1", "asgi_app:app"]);
    h.wait_serving();
    assert_eq!(probe(&h, "/?x=1"), 200);
    let line = h.wait_line("\"GET /?x=1 HTTP/1.1\" 200");
    assert!(
        line.starts_with("127.0.0.1 - alice [")
            && line.ends_with("\"http://ref.test/\" \"probe/1.0\""),
        "{line}"
    );
    let log = std::sync::Arc::clone(&h.log);
    assert!(h.finish().success());
    // The worker's last heartbeat, sent on its way out, carries its final count.
    let exit = log
        .records()
        .into_iter()
        .find(|r| common::message(r) == "worker exited")
        .expect("the worker's exit record");
    assert_eq!(exit["requests"], 1, "{exit}");

    let h = Herdsman::start(&["-w", "1", "--no-access-log", "asgi_app:app"]);
    h.wait_serving();
    assert_eq!(probe(&h, "/?quiet=1"), 200);
    // The request is answered (above), and the worker's exit comes after any line it would
    // have written: nothing about it in the whole output.
    let mut h = h;
    h.signal(libc::SIGTERM);
    h.wait_exit(WAIT);
    assert!(!h.log.text().contains("quiet=1"), "{}", h.log.text());
}

both_engines! {
    fn json_lines_and_sigusr1_reopens_the_access_logfile(engine: Engine) {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("access.log");
        let h = Start::new(&[
            "-w",
            "2",
            "--access-logfile",
            file.to_str().expect("utf-8"),
            "--access-logformat",
            "json",
            "wsgi_app:app",
        ])
        .engine(engine)
        .spawn();
        h.wait_serving();
        assert_eq!(probe(&h, "/?n=1"), 200);
        let first = wait_lines(&file, 1);
        let record: serde_json::Value = serde_json::from_str(&first[0]).expect("a JSON line");
        assert_eq!(record["status"], 200);
        assert_eq!(record["query"], "n=1");
        assert_eq!(record["user_agent"], "probe/1.0");

        let rotated = dir.path().join("access.log.1");
        std::fs::rename(&file, &rotated).expect("rotate");
        h.signal(libc::SIGUSR1);
        // Each worker reopens when it reads the master's message; a request after that lands in the
        // new file whichever worker serves it.
        let deadline = Instant::now() + WAIT;
        let mut n = 1;
        while !std::fs::read_to_string(&file).is_ok_and(|t| !t.is_empty()) {
            n += 1;
            assert_eq!(probe(&h, &format!("/?n={n}")), 200);
            assert!(Instant::now() < deadline, "no line in the reopened file");
            std::thread::sleep(Duration::from_millis(20));
        }
        let after = wait_lines(&file, 1);
        assert!(after[0].contains("\"n="), "{after:?}");
        let old = std::fs::read_to_string(&rotated).expect("rotated file");
        assert!(old.contains("\"n=1\""), "{old}");
        assert!(h.finish().success());
    }
}

#[test]
fn an_unknown_atom_is_refused_before_anything_starts() {
    let (code, _out, err) = run_to_end(
        &[
            "check",
            "--access-logformat",
            "%(h)s %(zz)s",
            "asgi_app:app",
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("access_log_format") && err.contains("%(zz)s"),
        "{err}"
    );
}

/// A destination that fails (here `/dev/full`: every write is ENOSPC) costs the worker nothing:
/// requests keep being served, the lines are dropped and counted, the worker says so once, the
/// master warns and `/metrics` counts them.
#[test]
fn a_failing_access_log_drops_and_counts_lines_and_never_stops_the_worker() {
    let h = Herdsman::start(&[
        "-w",
        "1",
        "--access-logfile",
        "/dev/full",
        "--admin-bind",
        "127.0.0.1:0",
        "asgi_app:app",
    ]);
    let admin: std::net::SocketAddr = h.wait_record("admin listener", |_| true)["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("a TCP address");
    h.wait_serving();
    for i in 0..20 {
        assert_eq!(probe(&h, &format!("/?i={i}")), 200);
    }
    let said = h.wait_record("access log: lines dropped", |_| true);
    assert!(
        common::message(&said).contains("No space left on device"),
        "{said}"
    );
    h.wait_record("the worker dropped access log lines", |_| true);
    let deadline = Instant::now() + WAIT;
    let dropped = loop {
        let body = http::get(admin, "/metrics").expect("metrics").body;
        let value = body
            .lines()
            .find_map(|l| l.strip_prefix("herdsman_access_log_lines_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .expect("the dropped-lines counter");
        if value >= 20.0 || Instant::now() > deadline {
            break value;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(dropped, 20.0, "every line was counted");
    assert!(h.finish().success());
}
