//! Stopping the master with real signals (RELIABILITY.md F5, F13, F14): a graceful stop lets
//! in-flight requests finish while new connections are refused at once; a quick stop (INT, QUIT)
//! cancels them; TERM then INT escalates; a worker that ignores TERM is killed at the graceful
//! deadline; a stop while workers are still booting is prompt; the unix socket file is removed.
//!
//! "In flight" is proven, not assumed: these tests run with `--log-level trace`, under which
//! uvicorn logs `ASGI [n] Started scope=...` when it calls the app, and each slow request carries
//! a `tag` in its query string to find that line. A request still waiting in the accept backlog
//! would prove nothing about draining.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use common::http::{get, get_unix, send_only, start_streaming, InFlightRaw};
use common::{
    both_engines, children_of, message, records_with, wait_pid_exit, Engine, Herdsman, Start, WAIT,
};
use serde_json::Value;

const STOPPING: &str = "stopping";
const ESCALATING: &str = "second stop request: escalating to a quick stop";
const NOT_IN_TIME: &str = "worker did not stop in time";
const WORKER_EXITED: &str = "worker exited";
const ALL_STOPPED: &str = "all workers stopped";

/// Sends `GET /slow?s=SECS&tag=TAG` and returns once a worker has called the app with it.
fn slow_request_in_flight(h: &Herdsman, secs: u32, tag: &str) -> InFlightRaw {
    let inflight = send_only(h.addr(), &format!("/slow?s={secs}&tag={tag}")).expect("send /slow");
    let needle = format!("tag={tag}'");
    h.log.wait_for(
        &format!("the app to start request {tag:?} (uvicorn trace log)"),
        WAIT,
        |lines| {
            lines
                .iter()
                .any(|l| {
                    l.contains("ASGI [") && l.contains("Started scope=") && l.contains(&needle)
                })
                .then_some(())
        },
    );
    inflight
}

/// Sends `sig` to the master and waits (on its pidfd) for it to exit; returns its status and the
/// time from the signal to the exit.
fn signal_and_wait_exit(h: &mut Herdsman, sig: i32) -> (ExitStatus, Duration) {
    let sent = Instant::now();
    h.signal(sig);
    let exited = exit_time(h, sent);
    (h.wait_exit(WAIT), exited)
}

/// Time from `since` until the master exits (waits on its pidfd, at most [`WAIT`]).
fn exit_time(h: &mut Herdsman, since: Instant) -> Duration {
    assert!(
        wait_pid_exit(h.pid, since + WAIT),
        "the master did not exit within {WAIT:?}; log:\n{}",
        h.log.text()
    );
    since.elapsed()
}

/// The message and `status` of every record about a worker's exit, once the master has logged
/// its last record (the master may exit before this process has read all of its output).
fn worker_exit_statuses(h: &Herdsman) -> Vec<(String, String)> {
    h.wait_record(ALL_STOPPED, |_| true);
    h.log
        .records()
        .iter()
        .filter_map(|r| {
            let status = r.get("status")?.as_str()?.to_string();
            Some((message(r).to_string(), status))
        })
        .collect()
}

/// Asserts that every worker stopped on its own (exit code 0), none was killed at a deadline.
fn assert_workers_exited_cleanly(h: &Herdsman, workers: usize) {
    let statuses = worker_exit_statuses(h);
    assert_eq!(
        statuses.len(),
        workers,
        "one exit record per worker: {statuses:?}"
    );
    for (msg, status) in &statuses {
        assert_eq!(
            (msg.as_str(), status.as_str()),
            (WORKER_EXITED, "exit code 0"),
            "every worker stopped by itself; log:\n{}",
            h.log.text()
        );
    }
}

/// Tries a new connection and a request, with a 5 s limit on each step. Returns `None` if
/// connect(2) was refused; `Some(how)` if it connected (the listener was closing at that very
/// instant) and was then closed without a response. Panics if the request is served or hangs.
fn new_connection_attempt(addr: SocketAddr) -> Option<String> {
    let limit = Duration::from_secs(5);
    let mut stream = match TcpStream::connect_timeout(&addr, limit) {
        Ok(stream) => stream,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return None,
        Err(e) => panic!("a new connection during the drain failed oddly: {e}"),
    };
    stream.set_read_timeout(Some(limit)).expect("read timeout");
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => Some("connected, then closed".into()),
        Ok(n) => panic!(
            "a new connection was served during the drain: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            panic!("a new connection during the drain was left hanging for {limit:?}")
        }
        Err(e) => Some(format!("connected, then {e}")),
    }
}

/// A request that was in flight at a quick stop must not have completed.
fn assert_failed(result: io::Result<common::http::Response>) {
    match result {
        Err(e) => eprintln!("the in-flight request failed as expected: {e}"),
        Ok(resp) => {
            assert!(
                resp.status >= 500,
                "a request cancelled by a quick stop answered {resp:?}"
            );
            eprintln!("the in-flight request failed as expected: {}", resp.status);
        }
    }
}

fn stop_mode(record: &Value) -> &str {
    record.get("mode").and_then(Value::as_str).unwrap_or("")
}

/// F13: TERM drains in-flight requests, refuses new connections at once, exits 0.
#[test]
fn graceful_stop_finishes_in_flight_requests_and_refuses_new_connections() {
    let mut h = Herdsman::start(&[
        "-w",
        "2",
        "--graceful-timeout",
        "10s",
        "--log-level",
        "trace",
        "asgi_app:app",
    ]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2);
    let addr = h.addr();
    assert_eq!(get(addr, "/").expect("GET /").status, 200);
    let slow = slow_request_in_flight(&h, 3, "f13");

    let sent = Instant::now();
    h.signal(libc::SIGTERM);
    h.wait_record(STOPPING, |r| stop_mode(r) == "Graceful");
    // uvicorn logs "Shutting down" and closes its listener in the same step; once both workers
    // said it, nothing holds the listening socket any more (the master closed its copy first).
    h.log
        .wait_for("both workers to begin shutting down", WAIT, |lines| {
            (lines.iter().filter(|l| l.contains("Shutting down")).count() >= 2).then_some(())
        });
    // The line is written just before the close, so the first attempt may land in the instant
    // between them and be reset; it must never be served or left hanging, and connections must be
    // refused outright right after.
    let refusing = Instant::now();
    let mut closed = Vec::new();
    while let Some(how) = new_connection_attempt(addr) {
        closed.push(how);
        assert!(
            closed.len() < 10 && refusing.elapsed() <= Duration::from_secs(2),
            "new connections are still not refused {:?} into the drain: {closed:?}",
            refusing.elapsed()
        );
    }
    let took = refusing.elapsed();
    assert!(
        took <= Duration::from_secs(2),
        "a new connection during the drain took {took:?} to be refused"
    );
    assert!(
        !h.has_exited(),
        "the refusal must be observed during the drain, while the master still runs"
    );
    eprintln!("new connections refused during the drain after {took:?} (closed first: {closed:?})");

    let resp = slow.response().expect("the in-flight request completes");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(pids.contains(&resp.pid()), "answered by a worker of ours");

    let to_exit = exit_time(&mut h, sent);
    eprintln!("F13: SIGTERM to master exit: {to_exit:?} (with a 3 s request in flight)");
    assert!(
        to_exit < Duration::from_secs(10),
        "drained before the graceful timeout: {to_exit:?}"
    );
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log.text());
    assert_workers_exited_cleanly(&h, 2);
    assert!(h.finish().success());
}

/// An ASGI request in flight on both engines: TERM lets it finish (the loop keeps running it
/// through the drain), INT cuts it at once; the worker exits 0 either way.
fn asgi_in_flight_on_stop(engine: Engine, sig: i32) {
    let mut h = Start::new(&[
        "-w",
        "1",
        "--graceful-timeout",
        "20s",
        "asgi_conformance:app",
    ])
    .engine(engine)
    .spawn();
    let pids = h.wait_serving();
    let secs = if sig == libc::SIGTERM { 2 } else { 30 };
    let (inflight, pid) =
        start_streaming(h.addr(), &format!("/drip?s={secs}")).expect("start /drip");
    assert_eq!(vec![pid], pids);
    let (status, took) = signal_and_wait_exit(&mut h, sig);
    assert_eq!(status.code(), Some(0), "{engine}: log:\n{}", h.log.text());
    let rest = inflight.finish();
    if sig == libc::SIGTERM {
        assert_eq!(rest.expect("the drained response"), "done\n", "{engine}");
        assert!(
            took >= Duration::from_secs(1),
            "{engine}: exited after {took:?}"
        );
    } else {
        assert!(
            rest.is_err(),
            "{engine}: a quick stop completed the response: {rest:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "{engine}: quick stop took {took:?}"
        );
    }
    assert!(h.finish().success());
}

both_engines! {
    fn asgi_requests_in_flight_finish_on_term_and_are_cut_on_int(engine: Engine) {
        asgi_in_flight_on_stop(engine, libc::SIGTERM);
        asgi_in_flight_on_stop(engine, libc::SIGINT);
    }
}

/// SIGINT and SIGQUIT: quick stop, in-flight requests cancelled, exit 0 long before they end.
fn quick_stop(sig: i32, tag: &str) {
    let mut h = Herdsman::start(&["-w", "2", "--log-level", "trace", "asgi_app:app"]);
    h.wait_serving();
    let slow = slow_request_in_flight(&h, 30, tag);
    let (status, took) = signal_and_wait_exit(&mut h, sig);
    eprintln!("quick stop ({tag}): signal to master exit: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "quick stop took {took:?} with a 30 s request in flight"
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log.text());
    h.wait_record(STOPPING, |r| stop_mode(r) == "Quick");
    assert_failed(slow.response());
    assert_workers_exited_cleanly(&h, 2);
    assert!(h.finish().success());
}

#[test]
fn sigint_is_a_quick_stop() {
    quick_stop(libc::SIGINT, "int");
}

#[test]
fn sigquit_is_a_quick_stop() {
    quick_stop(libc::SIGQUIT, "quit");
}

/// F14: TERM then INT escalates to a quick stop at once, long before the graceful timeout.
#[test]
fn term_then_int_escalates_at_once() {
    let mut h = Herdsman::start(&[
        "-w",
        "2",
        "--graceful-timeout",
        "60s",
        "--log-level",
        "trace",
        "asgi_app:app",
    ]);
    h.wait_serving();
    let slow = slow_request_in_flight(&h, 30, "f14");
    let sent = Instant::now();
    h.signal(libc::SIGTERM);
    h.wait_record(STOPPING, |r| stop_mode(r) == "Graceful");
    assert!(
        !h.has_exited(),
        "a 30 s request keeps the graceful stop going"
    );
    h.signal(libc::SIGINT);
    let took = exit_time(&mut h, sent);
    eprintln!("F14: SIGTERM, then SIGINT, to master exit: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "TERM then INT took {took:?} (graceful timeout 60 s, request 30 s)"
    );
    assert_eq!(h.wait_exit(WAIT).code(), Some(0));
    h.wait_record(ESCALATING, |_| true);
    assert_failed(slow.response());
    assert!(h.finish().success());
}

/// F5: a worker that ignores TERM is killed at the graceful deadline, and the master exits
/// within the graceful timeout + 1 s.
///
/// The requirement is 3 s here (2 s + 1 s). The bound asserted is 3.5 s: the extra 0.5 s covers
/// only this test's own measuring on a shared 2-core machine (the signal is sent and the clock
/// started in this process, the exit is seen through a pidfd poll here), never a second deadline
/// in herdsman; a master that waited for anything after the SIGKILL (a quick-stop deadline, a
/// second graceful period) would take 5 s or more and fail.
#[test]
fn worker_ignoring_term_is_killed_at_the_graceful_deadline() {
    let mut h = Herdsman::start(&["-w", "2", "--graceful-timeout", "2s", "ignore_term:app"]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2);
    let (status, took) = signal_and_wait_exit(&mut h, libc::SIGTERM);
    eprintln!("F5: SIGTERM to master exit with workers ignoring TERM: {took:?}");
    assert!(
        took <= Duration::from_millis(3500),
        "graceful timeout 2 s: the master must exit within 3 s (+0.5 s measuring slack), took {took:?}"
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log.text());
    h.wait_record(ALL_STOPPED, |_| true);
    let lines = h.log.lines();
    let late = records_with(&lines, NOT_IN_TIME);
    assert_eq!(
        late.len(),
        2,
        "both workers reported late; log:\n{}",
        h.log.text()
    );
    let statuses = worker_exit_statuses(&h);
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for (_, status) in &statuses {
        assert!(
            status.contains("SIGKILL") || status.contains("signal 9"),
            "killed at the deadline: {statuses:?}"
        );
    }
    assert!(h.finish().success());
}

/// A stop while every worker is still importing the app stops them at once (they obey TERM
/// during boot), exit 0, nothing left.
#[test]
fn stop_while_workers_boot_is_prompt() {
    let mut h = Herdsman::start(&[
        "-w",
        "2",
        "--graceful-timeout",
        "30s",
        "--log-level",
        "debug",
        "hang_boot:app",
    ]);
    // The worker says hello after installing its signal handlers and before importing the app
    // (which never finishes for hang_boot).
    h.wait_records("worker runtime started", 2);
    assert!(
        h.live_worker_pids().is_empty(),
        "hang_boot never becomes ready"
    );
    let booting: Vec<i32> = children_of(h.pid).iter().map(|(p, _)| *p).collect();
    assert_eq!(booting.len(), 2, "two booting workers: {booting:?}");
    let (status, took) = signal_and_wait_exit(&mut h, libc::SIGTERM);
    eprintln!("stop during boot: SIGTERM to master exit: {took:?}");
    assert!(
        took < Duration::from_secs(10),
        "booting workers must stop on TERM, not at the 30 s deadline: took {took:?}"
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log.text());
    assert_workers_exited_cleanly(&h, 2);
    let mut all = h.all_worker_pids();
    all.sort_unstable();
    let mut booting = booting;
    booting.sort_unstable();
    assert_eq!(all, booting);
    assert!(h.finish().success());
}

/// A stop as soon as the master has started (workers being forked, or not yet) is handled.
#[test]
fn stop_right_after_start_is_prompt() {
    let mut h = Start::new(&[
        "-w",
        "2",
        "--graceful-timeout",
        "30s",
        "--log-level",
        "debug",
        "hang_boot:app",
    ])
    .spawn();
    h.wait_record("herdsman starting", |_| true);
    let (status, took) = signal_and_wait_exit(&mut h, libc::SIGTERM);
    eprintln!("stop right after start: SIGTERM to master exit: {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(status.code(), Some(0), "log:\n{}", h.log.text());
    assert!(h.finish().success());
    let ours = children_of(std::process::id() as i32);
    assert!(ours.is_empty(), "nothing left behind: {ours:?}");
}

/// The unix socket file is removed when the master exits (quick stop here).
#[test]
fn unix_socket_file_is_removed_on_exit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.sock");
    let bind = format!("unix:{}", path.display());
    let mut h = Herdsman::start(&["-w", "1", "-b", &bind, "asgi_app:app"]);
    h.wait_serving();
    assert!(std::fs::symlink_metadata(&path)
        .expect("socket file exists while serving")
        .file_type()
        .is_socket());
    assert_eq!(get_unix(&path, "/").expect("GET / over unix").status, 200);
    let (status, _) = signal_and_wait_exit(&mut h, libc::SIGINT);
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::symlink_metadata(&path).is_err(),
        "the socket file is removed on exit"
    );
    assert!(h.finish().success());
}
