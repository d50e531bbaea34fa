//! Supervision with real processes (RELIABILITY.md F1–F4, F6–F9): workers that die or are killed
//! are reaped, reported and replaced; apps that cannot boot make the master give up with the
//! documented exit code and the app's own error; a blocked event loop is dumped, killed and
//! replaced while a busy-but-alive one is left alone; a killed master takes its workers with it
//! and a stopped one does not kill or double-spawn anything when it resumes.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::http::{get, start_block, start_streaming};
use common::{
    apps_dir, both_engines, children_of, field_i64, message, process_state, record_time,
    records_with, signal, wait_pid_exit, write_file, Engine, Herdsman, Start, WAIT,
};
use serde_json::Value;

const READY: &str = "worker ready";
const OOM_KILLED: &str = "worker was killed by SIGKILL";
const DIED: &str = "worker died unexpectedly";
/// A live process whose event loop sent no heartbeat for `--timeout` (its watchdog thread
/// still reports).
const BLOCKED: &str = "worker event loop blocked";
/// The watchdog thread reporting a stall, before the timeout.
const STALLED: &str = "worker event loop stalled";
/// No heartbeat and no watchdog report either.
const UNRESPONSIVE: &str = "worker unresponsive";
const LIVENESS_KILLED: &str = "worker killed after its liveness timeout";
const GIVING_UP: &str = "giving up";
const BOOT_TIMEOUT: &str = "worker did not become ready within the boot timeout";

fn pid_of(record: &Value) -> Option<i32> {
    field_i64(record, "pid").map(|p| p as i32)
}

fn sorted(mut pids: Vec<i32>) -> Vec<i32> {
    pids.sort_unstable();
    pids
}

/// The master's children as `ps` sees them: asserts that none is a zombie; returns their pids.
fn live_children(master: i32) -> Vec<i32> {
    let children = children_of(master);
    let zombies: Vec<_> = children.iter().filter(|(_, s)| *s == 'Z').collect();
    assert!(
        zombies.is_empty(),
        "the master left zombie children: {zombies:?}"
    );
    sorted(children.into_iter().map(|(p, _)| p).collect())
}

/// Proves that `n` distinct workers serve: blocks the event loop of one worker at a time for
/// `secs` (a blocked worker cannot accept), so each next request goes to a worker not blocked
/// yet; a repeat only means an earlier block already ended, and the next try goes on. Returns
/// the pids that answered, sorted. Keep `secs` well under the liveness timeout.
fn pids_serving(addr: SocketAddr, n: usize, secs: f64) -> Vec<i32> {
    let mut blocked = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let (inflight, pid) = start_block(addr, secs).expect("start /block");
        blocked.push(inflight);
        if !seen.contains(&pid) {
            seen.push(pid);
        }
        if seen.len() == n {
            break;
        }
    }
    for inflight in blocked {
        assert_eq!(inflight.finish().expect("/block body"), "done\n");
    }
    sorted(seen)
}

/// Every record saying a worker's liveness was in doubt, or that it was killed for it.
fn liveness_records(lines: &[String]) -> Vec<Value> {
    [BLOCKED, STALLED, UNRESPONSIVE, LIVENESS_KILLED]
        .iter()
        .flat_map(|prefix| records_with(lines, prefix))
        .collect()
}

fn ok_from(addr: SocketAddr) -> i32 {
    let resp = get(addr, "/").expect("GET /");
    assert_eq!(resp.status, 200, "{resp:?}");
    resp.pid()
}

fn ms_between(from: SystemTime, to: SystemTime) -> i128 {
    match to.duration_since(from) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

/// The 1-based line of `needle` in a test app, for matching its frame in a traceback.
fn line_of(app_file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(apps_dir().join(app_file)).expect("read test app");
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {app_file}"))
        + 1
}

// ---- F1, F2: workers killed -----------------------------------------------------------------

/// F1: a ready worker SIGKILLed (as by the OOM killer) while a client keeps sending requests.
#[test]
fn a_sigkilled_worker_is_reported_as_oom_and_replaced() {
    let h = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = h.addr();

    // One client, one request at a time: at most the one request in flight on the victim may
    // fail, and never with "connection refused" (the listener belongs to the master).
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut refused, mut failed) = (0u32, 0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match get(addr, "/") {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status)),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, refused, failed)
        })
    };

    let victim = pids[0];
    let killed_at = SystemTime::now();
    signal(victim, libc::SIGKILL);

    let reported = h.wait_record(OOM_KILLED, |r| pid_of(r) == Some(victim));
    let text = message(&reported);
    assert!(text.contains("out-of-memory killer"), "{reported}");
    assert_eq!(reported["level"], "ERROR", "{reported}");
    assert_eq!(reported["reason"], "crash", "{reported}");
    let ready = h.wait_record(READY, |r| pid_of(r).is_some_and(|p| !pids.contains(&p)));
    let replacement = pid_of(&ready).expect("pid");

    stop.store(true, Ordering::Relaxed);
    let (ok, refused, failed) = client.join().expect("client thread");

    let reaped_ms = ms_between(killed_at, record_time(&reported));
    let ready_ms = ms_between(killed_at, record_time(&ready));
    eprintln!("F1: SIGKILL -> reported {reaped_ms} ms, -> replacement ready {ready_ms} ms");
    assert!(
        reaped_ms < 1000,
        "the kill was reported {reaped_ms} ms after it happened (at most 1 s)"
    );

    assert_eq!(
        refused, 0,
        "connections were refused during the replacement"
    );
    assert!(
        failed.len() <= 1,
        "more than the victim's one in-flight request failed: {failed:?}"
    );
    assert!(ok > 0, "the client got no answer at all");

    let mut expected = vec![pids[1], replacement];
    expected.sort_unstable();
    assert_eq!(sorted(h.live_worker_pids()), expected);
    assert_eq!(
        live_children(h.pid),
        expected,
        "exactly N live children, no zombie"
    );
    assert_eq!(process_state(victim), None, "the victim was reaped");
    assert_eq!(pids_serving(addr, 2, 3.0), expected, "both workers serve");
    assert!(h.finish().success());
}

/// F2: every worker SIGKILLed in one go; the SIGCHLDs coalesce, every exit is still reaped.
#[test]
fn all_workers_sigkilled_at_once_are_all_replaced() {
    let h = Herdsman::start(&["-w", "3", "asgi_app:app"]);
    let old = sorted(h.wait_serving());
    assert_eq!(old.len(), 3, "{old:?}");
    let addr = h.addr();

    for &pid in &old {
        signal(pid, libc::SIGKILL);
    }

    let reported: Vec<i32> = h
        .wait_records(OOM_KILLED, 3)
        .iter()
        .filter_map(pid_of)
        .collect();
    assert_eq!(sorted(reported), old, "each killed worker reported once");
    let new = h.log.wait_for("3 replacements ready", WAIT, |lines| {
        let fresh: Vec<i32> = records_with(lines, READY)
            .iter()
            .filter_map(pid_of)
            .filter(|p| !old.contains(p))
            .collect();
        (fresh.len() >= 3).then_some(sorted(fresh))
    });
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|p| !old.contains(p)));
    assert_eq!(sorted(h.live_worker_pids()), new);
    assert_eq!(
        live_children(h.pid),
        new,
        "exactly N live children, no zombie"
    );
    for &pid in &old {
        assert_eq!(process_state(pid), None, "{pid} reaped");
    }
    assert_eq!(
        pids_serving(addr, 3, 3.0),
        new,
        "all three replacements serve"
    );
    assert!(h.finish().success());
}

/// A worker that leaves on its own (here: SIGTERM sent to it directly, so it stops gracefully
/// and exits 0) was not asked to stop by the master: that is a crash, and it is replaced.
#[test]
fn a_worker_that_exits_by_itself_is_replaced() {
    let h = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let victim = pids[1];

    signal(victim, libc::SIGTERM);

    let reported = h.wait_record(DIED, |r| pid_of(r) == Some(victim));
    assert_eq!(reported["reason"], "crash", "{reported}");
    assert_eq!(reported["status"], "exit code 0", "{reported}");
    let ready = h.wait_record(READY, |r| pid_of(r).is_some_and(|p| !pids.contains(&p)));
    let replacement = pid_of(&ready).expect("pid");

    let mut expected = vec![pids[0], replacement];
    expected.sort_unstable();
    assert_eq!(sorted(h.live_worker_pids()), expected);
    assert_eq!(live_children(h.pid), expected);
    assert_eq!(pids_serving(h.addr(), 2, 3.0), expected);
    assert!(h.finish().success());
}

// ---- F3, F4: boot failures at first start ----------------------------------------------------

/// Starts a master that must give up; returns its exit code, every output line (all of it: the
/// output has ended) and the master's records. Checks that nothing it started is left.
fn gives_up(start: Start) -> (i32, Vec<String>, Vec<Value>) {
    let mut h = start.spawn();
    let status = h.wait_exit(WAIT * 2);
    h.log.wait_closed(WAIT);
    let lines = h.log.lines();
    let records = h.log.records();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {status:?}"));
    h.finish();
    (code, lines, records)
}

fn the_record<'a>(records: &'a [Value], prefix: &str, lines: &[String]) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| message(r).starts_with(prefix))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {prefix:?} record; output:\n{}",
        lines.join("\n")
    );
    found[0]
}

#[test]
fn an_app_that_fails_to_import_exits_4_with_its_traceback() {
    let (code, lines, records) = gives_up(Start::new(&[
        "-w",
        "1",
        "--startup-attempts",
        "2",
        "import_error:app",
    ]));
    let all = lines.join("\n");
    assert_eq!(code, 4, "APP_LOAD; output:\n{all}");
    // The traceback is said once, inside the first failed-boot record, from the app's frame on.
    let attempts = records_with(&lines, "worker failed to boot (import error)");
    let first = message(&attempts[0]);
    assert!(
        first.contains("\n    Traceback (most recent call last):")
            && first.contains("import_error.py\", line 3, in <module>")
            && first.ends_with("\n    RuntimeError: boom at import"),
        "the app's traceback: {all}"
    );
    assert!(
        !first.contains("herdsman/runtime"),
        "runtime frames shown: {first}"
    );
    assert!(
        message(&attempts[1]).ends_with("(the same traceback as the previous failure)"),
        "{all}"
    );
    let give_up = the_record(&records, GIVING_UP, &lines);
    assert_eq!(field_i64(give_up, "exit_code"), Some(4), "{give_up}");
    assert_eq!(field_i64(give_up, "attempts"), Some(2), "{give_up}");
    assert!(
        message(give_up).contains("could not be imported"),
        "{give_up}"
    );
    let attempts = records_with(&lines, "worker failed to boot (import error)");
    assert_eq!(attempts.len(), 2, "two attempts: {all}");
    assert!(message(&attempts[0]).contains("RuntimeError: boom at import"));
}

both_engines! {
    fn a_failing_lifespan_startup_exits_3(engine: Engine) {
        let (code, lines, records) = gives_up(
            Start::new(&["-w", "1", "--startup-attempts", "2", "lifespan_fail:app"]).engine(engine),
        );
        let all = lines.join("\n");
        assert_eq!(code, 3, "WORKER_BOOT; output:\n{all}");
        // The app's own failure message, as uvicorn logs it.
        assert!(all.contains("database unreachable (on purpose)"), "{engine}: {all}");
        let give_up = the_record(&records, GIVING_UP, &lines);
        assert_eq!(field_i64(give_up, "exit_code"), Some(3), "{give_up}");
        assert!(
            message(give_up).contains("lifespan startup failed"),
            "{give_up}"
        );
        assert_eq!(
            records_with(&lines, "worker failed to boot (lifespan startup failed)").len(),
            2,
            "{engine}: {all}"
        );
    }
}

/// F4 at first start: a worker that never becomes ready is dumped (SIGUSR2: its traceback shows
/// where it hangs), killed, retried, and the master gives up with WORKER_BOOT.
#[test]
fn an_app_that_hangs_at_import_hits_the_boot_timeout_and_exits_3() {
    // 3 s rather than 1 s: the interpreter and uvicorn must have been imported (and the hang
    // reached) before the dump for the traceback to show the hanging frame, and this machine is
    // shared.
    let (code, lines, records) = gives_up(Start::new(&[
        "-w",
        "1",
        "--startup-attempts",
        "2",
        "--boot-timeout",
        "3s",
        "hang_boot:app",
    ]));
    let all = lines.join("\n");
    assert_eq!(code, 3, "WORKER_BOOT; output:\n{all}");
    let timeouts = records_with(&lines, BOOT_TIMEOUT);
    assert_eq!(timeouts.len(), 2, "one per attempt: {all}");
    assert_eq!(timeouts[0]["boot_timeout"], "3s", "{}", timeouts[0]);
    let frame = format!(
        "hang_boot.py\", line {} in <module>",
        line_of("hang_boot.py", "time.sleep(")
    );
    assert!(
        lines.iter().any(|l| l.contains(&frame)),
        "faulthandler traceback with {frame:?}: {all}"
    );
    // The dump comes after the boot-timeout record (SIGUSR2 first, SIGKILL after the grace).
    let first_timeout = lines
        .iter()
        .position(|l| l.contains(BOOT_TIMEOUT))
        .expect("boot timeout line");
    assert!(lines[first_timeout..].iter().any(|l| l.contains(&frame)));
    let give_up = the_record(&records, GIVING_UP, &lines);
    assert_eq!(field_i64(give_up, "exit_code"), Some(3), "{give_up}");
    assert!(message(give_up).contains("boot timeout"), "{give_up}");
}

#[test]
fn an_object_that_is_not_an_app_exits_4() {
    let (code, lines, records) = gives_up(Start::new(&[
        "-w",
        "1",
        "--startup-attempts",
        "2",
        "not_an_app:app",
    ]));
    let all = lines.join("\n");
    assert_eq!(code, 4, "APP_LOAD; output:\n{all}");
    let give_up = the_record(&records, GIVING_UP, &lines);
    assert_eq!(field_i64(give_up, "exit_code"), Some(4), "{give_up}");
    assert!(
        message(give_up).contains("not an ASGI or WSGI application"),
        "{give_up}"
    );
    assert!(message(give_up).contains("is int 42"), "{give_up}");
}

/// An interpreter without uvicorn: one clear line saying what to install, no traceback, and
/// PYTHON_ENV at once (retrying cannot help), even with two workers failing at the same time.
#[test]
fn a_python_without_uvicorn_exits_6_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = write_file(
        dir.path(),
        "python",
        &format!(
            "#!/bin/sh\n# No site-packages: no uvicorn.\nexec {} -S \"$@\"\n",
            common::python().display()
        ),
    );
    make_executable(&wrapper);
    let (code, lines, records) =
        gives_up(Start::new(&["-w", "2", "asgi_app:app"]).python(&wrapper));
    let all = lines.join("\n");
    assert_eq!(code, 6, "PYTHON_ENV; output:\n{all}");
    let give_up = the_record(&records, GIVING_UP, &lines);
    assert_eq!(field_i64(give_up, "exit_code"), Some(6), "{give_up}");
    assert_eq!(
        field_i64(give_up, "attempts"),
        Some(1),
        "no retry: {give_up}"
    );
    assert!(!all.contains("Traceback"), "no Python traceback: {all}");
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("uvicorn is not installed"))
        .collect();
    assert_eq!(
        said.len(),
        1,
        "the missing uvicorn is said exactly once, not once per worker or per log record: {said:#?}"
    );
    assert!(said[0].contains("pip install uvicorn"), "{}", said[0]);
}

/// A `--python` that does not exist. The configuration rejects an absolute path that does not
/// exist (docs/configuration.md, `python`), so this is a USAGE error naming the path and nothing
/// is started.
#[test]
fn a_python_that_does_not_exist_is_named_in_a_usage_error() {
    let (code, lines, records) =
        gives_up(Start::new(&["-w", "2", "asgi_app:app"]).python("/nonexistent/python"));
    let all = lines.join("\n");
    assert_eq!(code, 2, "USAGE; output:\n{all}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("/nonexistent/python") && l.contains("does not exist")),
        "{all}"
    );
    assert!(
        records.iter().all(|r| message(r) != "starting workers"),
        "nothing was started: {all}"
    );
}

/// An interpreter that exists but cannot be run (not executable): PYTHON_ENV, naming the path.
#[test]
fn a_python_that_is_not_executable_exits_6_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(dir.path(), "python", "#!/bin/sh\n");
    let (code, lines, records) = gives_up(Start::new(&["-w", "2", "asgi_app:app"]).python(&path));
    let all = lines.join("\n");
    assert_eq!(code, 6, "PYTHON_ENV; output:\n{all}");
    let named = records
        .iter()
        .find(|r| message(r).contains(&path.display().to_string()))
        .unwrap_or_else(|| panic!("no record names {}: {all}", path.display()));
    assert_eq!(named["level"], "ERROR", "{named}");
    assert!(message(named).contains("not executable"), "{named}");
    assert!(
        records.iter().all(|r| message(r) != "starting workers"),
        "nothing was started: {all}"
    );
}

/// An interpreter the kernel cannot execute (its `#!` names a missing program): the exec fails
/// in the forked child, and the master gives up at once with PYTHON_ENV.
#[test]
fn a_python_that_cannot_be_executed_exits_6() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(dir.path(), "python", "#!/nonexistent/interpreter\n");
    make_executable(&path);
    let (code, lines, records) = gives_up(Start::new(&["-w", "2", "asgi_app:app"]).python(&path));
    let all = lines.join("\n");
    assert_eq!(code, 6, "PYTHON_ENV; output:\n{all}");
    let give_up = the_record(&records, GIVING_UP, &lines);
    assert_eq!(field_i64(give_up, "exit_code"), Some(6), "{give_up}");
    assert!(
        message(give_up).contains(&path.display().to_string()),
        "{give_up}"
    );
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

// ---- F6, F7: liveness -------------------------------------------------------------------------

/// After `victim`'s liveness failure was reported: it is killed, a worker that is not one of
/// `pids` replaces it, the log after the report holds its traceback with `frame`, and `other` and
/// the replacement are the workers. Returns those two, sorted.
fn killed_dumped_and_replaced(
    h: &Herdsman,
    pids: &[i32],
    victim: i32,
    other: i32,
    frame: &str,
) -> Vec<i32> {
    h.wait_record(LIVENESS_KILLED, |r| pid_of(r) == Some(victim));
    // The victim is reaped: its pid may be gone or (briefly) reused by nobody of ours.
    let ready = h.wait_record(READY, |r| pid_of(r).is_some_and(|p| !pids.contains(&p)));
    let replacement = pid_of(&ready).expect("pid");
    let lines = h.log.lines();
    let at = lines
        .iter()
        .position(|l| l.contains("no heartbeat for"))
        .expect("liveness line");
    assert!(
        lines[at..].iter().any(|l| l.contains(frame)),
        "the worker's traceback with {frame:?}:\n{}",
        lines[at..].join("\n")
    );
    let expected = sorted(vec![other, replacement]);
    assert_eq!(sorted(h.live_worker_pids()), expected);
    expected
}

/// F6: a worker whose event loop is blocked stops heartbeating; the others keep serving; after
/// the liveness timeout the master dumps its traceback, kills it and replaces it.
fn blocked_event_loop(engine: Engine) {
    let timeout = Duration::from_secs(2);
    let h = Start::new(&["-w", "2", "--timeout", "2s", "asgi_app:app"])
        .engine(engine)
        .spawn();
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = h.addr();

    let (_blocked, victim) = start_block(addr, 30.0).expect("start /block");
    let blocked_at = Instant::now();
    assert!(pids.contains(&victim), "{victim} not in {pids:?}");
    let other = *pids.iter().find(|&&p| p != victim).expect("other worker");

    // The other worker serves meanwhile (under uvicorn the blocked one cannot accept; the native
    // engine's thread still accepts for it, and a request landing there waits for the loop, as
    // in the GIL test below, so only the uvicorn worker is held to it).
    if engine == Engine::Uvicorn {
        for _ in 0..5 {
            assert_eq!(ok_from(addr), other);
        }
    }

    let slack = Duration::from_secs(10);
    let liveness = h.wait_record_for(BLOCKED, timeout + slack, |r| pid_of(r) == Some(victim));
    let waited = blocked_at.elapsed();
    assert!(waited < timeout + slack, "liveness after {waited:?}");
    let text = message(&liveness);
    assert!(text.contains("no heartbeat for"), "{liveness}");
    let silent = liveness["silent"].as_str().expect("silent field");
    let silent_s: f64 = silent
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("silent {silent:?} is not in seconds"));
    assert!(
        silent_s >= timeout.as_secs_f64(),
        "killed after only {silent} of silence: {liveness}"
    );
    assert_eq!(liveness["timeout"], "2s", "{liveness}");
    // The watchdog thread's report names the request that blocks the loop.
    assert!(
        liveness["in_flight"]
            .as_str()
            .is_some_and(|s| s.contains("/block")),
        "{liveness}"
    );

    // The dump (SIGUSR2, faulthandler) shows the blocking call in the app.
    let frame = format!(
        "asgi_app.py\", line {} in app",
        line_of("asgi_app.py", "time.sleep(")
    );
    let expected = killed_dumped_and_replaced(&h, &pids, victim, other, &frame);
    assert_eq!(live_children(h.pid), expected);
    assert!(!live_children(h.pid).contains(&victim));
    // Blocks short enough not to trip the 2 s liveness timeout themselves.
    assert_eq!(pids_serving(addr, 2, 0.5), expected);
    assert!(h.finish().success());
}

both_engines! {
    fn a_blocked_event_loop_is_dumped_killed_and_replaced(engine: Engine) {
        blocked_event_loop(engine);
    }
}

/// F6 on the native engine: an app thread that holds the GIL for good (a C call that never
/// releases it) starves the runtime's heartbeats and its watchdog alike; the other worker keeps
/// serving; after the liveness timeout the master says so, dumps the traceback (faulthandler
/// needs no GIL), kills the worker and replaces it.
#[test]
fn native_an_app_thread_holding_the_gil_is_dumped_killed_and_replaced() {
    let h = Start::new(&["-w", "2", "--timeout", "2s", "wsgi_app:app"])
        .engine(common::Engine::Native)
        .spawn();
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = h.addr();
    let (_held, victim) = start_streaming(addr, "/hold").expect("start /hold");
    assert!(pids.contains(&victim), "{victim} not in {pids:?}");
    let other = *pids.iter().find(|&&p| p != victim).expect("other worker");
    // The victim's engine thread still accepts (it needs no GIL), so a request may land on
    // it and wait; the other worker answers the rest.
    let answered = (0..10).filter_map(|_| get(addr, "/").ok()).count();
    assert!(
        answered > 0,
        "no request answered while one worker holds the GIL"
    );

    let record = h.wait_record_for(
        "worker",
        Duration::from_secs(2) + Duration::from_secs(10),
        |r| {
            pid_of(r) == Some(victim)
                && [UNRESPONSIVE, BLOCKED]
                    .iter()
                    .any(|m| message(r).starts_with(m))
        },
    );
    assert!(message(&record).contains("no heartbeat for"), "{record}");
    // The dump shows the app's frame that holds the GIL.
    let frame = format!(
        "wsgi_app.py\", line {} in _hold",
        line_of("wsgi_app.py", "re.match(")
    );
    killed_dumped_and_replaced(&h, &pids, victim, other, &frame);
    assert!(!live_children(h.pid).contains(&victim));
    assert!(h.finish().success());
}

/// F6 with SIGSTOP: a stopped worker neither heartbeats nor runs its watchdog; the other worker
/// serves every request meanwhile; after the liveness timeout the master says the worker is
/// unresponsive, kills it (SIGKILL ends a stopped process too), reaps it and replaces it.
#[test]
fn f6_a_sigstopped_worker_is_killed_and_replaced_while_the_other_serves() {
    let h = Herdsman::start(&["-w", "2", "--timeout", "2s", "asgi_app:app"]);
    let pids = h.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = h.addr();
    let (victim, other) = (pids[0], pids[1]);
    signal(victim, libc::SIGSTOP);
    assert!(
        wait_state(victim, 'T'),
        "worker {victim} did not stop: {:?}",
        process_state(victim)
    );
    // A stopped worker cannot accept: every request goes to the other one.
    for _ in 0..5 {
        assert_eq!(ok_from(addr), other);
    }
    let record = h.wait_record_for("worker", Duration::from_secs(2) + WAIT, |r| {
        pid_of(r) == Some(victim) && message(r).starts_with(UNRESPONSIVE)
    });
    assert!(message(&record).contains("no heartbeat for"), "{record}");
    h.wait_record(LIVENESS_KILLED, |r| pid_of(r) == Some(victim));
    let ready = h.wait_record(READY, |r| pid_of(r).is_some_and(|p| !pids.contains(&p)));
    let replacement = pid_of(&ready).expect("pid");
    assert_eq!(live_children(h.pid), sorted(vec![other, replacement]));
    assert_eq!(pids_serving(addr, 2, 0.5), sorted(vec![other, replacement]));
    assert!(h.finish().success());
}

/// Waits (up to WAIT) until `pid` is in scheduler state `state` (`ps`'s letter).
fn wait_state(pid: i32, state: char) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if process_state(pid) == Some(state) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The time all of `pid`'s threads spent runnable but waiting for a CPU (schedstat's second
/// field, nanoseconds, summed over /proc/PID/task).
fn runqueue_wait(pid: i32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let ns: u64 = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

/// Busy loops on every CPU, ended (by pid) when dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    fn on_every_cpu() -> Hogs {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hogs(
            (0..cpus)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// F7: a worker starved of CPU but alive is not killed. Every thread of the worker runs under SCHED_IDLE
/// (it gets a CPU only when nothing else wants one) while busy loops hold every CPU for three liveness
/// timeouts: its heartbeats come late or in bursts, and the master must not take that for a hang.
/// Afterwards the same worker answers and no liveness record was written.
#[test]
fn f7_a_worker_starved_of_cpu_is_not_killed() {
    let h = Herdsman::start(&["-w", "1", "--timeout", "2s", "asgi_app:app"]);
    let pids = h.wait_serving();
    let worker = pids[0];
    let param = libc::sched_param { sched_priority: 0 };
    for task in std::fs::read_dir(format!("/proc/{worker}/task")).expect("tasks") {
        let tid: i32 = task
            .expect("task")
            .file_name()
            .to_string_lossy()
            .parse()
            .expect("tid");
        // SAFETY: sched_setscheduler on a thread of our worker with an initialised sched_param.
        let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) };
        assert_eq!(
            rc,
            0,
            "sched_setscheduler: {}",
            std::io::Error::last_os_error()
        );
    }
    let waited_before = runqueue_wait(worker);
    let starved_from = Instant::now();
    {
        let _hogs = Hogs::on_every_cpu();
        while starved_from.elapsed() < Duration::from_secs(6) {
            assert!(
                liveness_records(&h.log.lines()).is_empty(),
                "a starved worker was judged hung:\n{}",
                h.log.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // It was starved indeed: its threads waited for a CPU (the kernel's schedstat counts it).
    let waited = runqueue_wait(worker) - waited_before;
    eprintln!("the worker waited {waited:?} for a CPU in 6 s");
    assert!(
        waited >= Duration::from_millis(500),
        "the worker waited only {waited:?} for a CPU: not starved"
    );
    assert_eq!(ok_from(h.addr()), worker, "the starved worker still serves");
    let lines = h.log.lines();
    let judged: Vec<_> = liveness_records(&lines)
        .into_iter()
        .filter(|r| !message(r).starts_with(STALLED))
        .collect();
    assert!(judged.is_empty(), "{}", lines.join("\n"));
    assert_eq!(records_with(&lines, READY).len(), 1, "no replacement");
    assert!(h.finish().success());
}

both_engines! {
    /// `--timeout 0`, as gunicorn's: no liveness timeout. A worker whose event loop is blocked for
    /// 3 s (longer than a `--timeout 2s` allows, which the F6 test shows killed) answers, and is not
    /// killed or replaced; the watchdog's stall warning still says what happened.
    fn timeout_zero_never_kills_a_blocked_worker(engine: Engine) {
        let h = Start::new(&["-w", "1", "--timeout", "0", "asgi_app:app"]).engine(engine).spawn();
        let pids = h.wait_serving();
        let (blocked, pid) = start_block(h.addr(), 3.0).expect("start /block");
        assert_eq!(vec![pid], pids);
        assert_eq!(blocked.finish().expect("/block body"), "done\n");
        assert_eq!(ok_from(h.addr()), pid, "the same worker serves on");
        // The stall is still reported (a warning), never acted on.
        let lines = h.log.lines();
        for prefix in [BLOCKED, UNRESPONSIVE, LIVENESS_KILLED] {
            assert!(
                records_with(&lines, prefix).is_empty(),
                "{prefix}:\n{}",
                h.log.text()
            );
        }
        assert!(h.finish().success());
    }
}

both_engines! {
    /// A request that takes longer than `--timeout` without blocking the event loop is not a
    /// liveness failure: the worker keeps heartbeating and its request completes.
    fn a_long_non_blocking_request_is_not_a_liveness_failure(engine: Engine) {
        let h = Start::new(&["-w", "1", "--timeout", "2s", "asgi_app:app"]).engine(engine).spawn();
        let pids = h.wait_serving();
        let addr = h.addr();
        let started = Instant::now();
        let resp = get(addr, "/slow?s=4").expect("GET /slow");
        assert!(started.elapsed() >= Duration::from_secs(4));
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(vec![resp.pid()], pids, "answered by the same worker");
        assert_eq!(ok_from(addr), pids[0], "and it still serves");
        let lines = h.log.lines();
        assert!(liveness_records(&lines).is_empty(), "{}", lines.join("\n"));
        assert_eq!(records_with(&lines, READY).len(), 1, "no replacement");
        assert!(h.finish().success());
    }
}

// ---- F8, F9: the master itself killed or stopped ---------------------------------------------

/// F8: the master SIGKILLed: every worker follows within 2 s (PR_SET_PDEATHSIG), and a new
/// master can bind the same address at once.
#[test]
fn a_killed_master_takes_its_workers_and_the_address_is_free_again() {
    let mut first = Herdsman::start(&["-w", "2", "asgi_app:app"]);
    let pids = first.wait_serving();
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = first.addr();
    ok_from(addr);

    first.signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(2);
    for &pid in &pids {
        assert!(
            wait_pid_exit(pid, deadline),
            "worker {pid} still alive 2 s after the master was killed"
        );
    }
    assert!(!first.wait_exit(WAIT).success());
    first.finish();

    let bind = addr.to_string();
    let second = Start::new(&["-w", "2", "-b", &bind, "asgi_app:app"])
        .no_default_bind()
        .spawn();
    let new = second.wait_serving();
    assert_eq!(second.addr(), addr);
    let pid = ok_from(addr);
    assert!(new.contains(&pid), "{pid} not in {new:?}");
    assert!(second.finish().success());
}

/// Waits (up to WAIT) until `pid`, a child of this process, is stopped by a signal.
fn wait_stopped(pid: i32) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: waitid with WNOWAIT only observes the state change and leaves it waitable; the
        // siginfo is written into a zeroed local.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WSTOPPED | libc::WNOWAIT,
            )
        };
        let _ = tx.send(rc);
    });
    let rc = rx.recv_timeout(WAIT).expect("the master did not stop");
    assert_eq!(rc, 0, "waitid failed");
    assert_eq!(process_state(pid), Some('T'), "the master is stopped");
}

/// F9, shortened: the master SIGSTOPped for longer than `--timeout`, then continued. Workers
/// serve throughout; once it runs again it reads the heartbeats that piled up before judging
/// deadlines, so no worker is killed for liveness and none is spawned.
#[test]
fn a_stopped_master_kills_and_spawns_nothing_when_continued() {
    let timeout = Duration::from_secs(2);
    let h = Herdsman::start(&["-w", "2", "--timeout", "2s", "asgi_app:app"]);
    let pids = sorted(h.wait_serving());
    assert_eq!(pids.len(), 2, "{pids:?}");
    let addr = h.addr();

    h.signal(libc::SIGSTOP);
    let stopped_at = Instant::now();
    wait_stopped(h.pid);
    assert!(
        pids.contains(&ok_from(addr)),
        "served while the master is stopped"
    );

    // The pause is the fault being injected: keep the master stopped for longer than the
    // liveness timeout. Waiting for the stopped master to exit cannot succeed before the
    // deadline, so this returns at the deadline.
    let pause_until = stopped_at + timeout + Duration::from_secs(1);
    assert!(!wait_pid_exit(h.pid, pause_until), "the master exited");
    assert_eq!(process_state(h.pid), Some('T'), "still stopped");
    assert!(pids.contains(&ok_from(addr)), "still served");
    signal(h.pid, libc::SIGCONT);

    // Two SIGUSR1 round trips: the second record is logged on a loop iteration after the one
    // that resumed (and ticked), so any liveness kill would have been logged before it.
    for n in 1..=2 {
        h.signal(libc::SIGUSR1);
        h.wait_records("SIGUSR1", n);
    }
    let lines = h.log.lines();
    assert!(
        liveness_records(&lines).is_empty(),
        "a worker was suspected or killed for liveness:\n{}",
        lines.join("\n")
    );
    assert_eq!(records_with(&lines, READY).len(), 2, "no extra worker");
    assert_eq!(sorted(h.live_worker_pids()), pids);
    assert_eq!(live_children(h.pid), pids);
    assert_eq!(pids_serving(addr, 2, 0.5), pids);
    // (The short blocks above may draw a stall warning; no worker may have been killed.)
    let lines = h.log.lines();
    let kills: Vec<Value> = [BLOCKED, UNRESPONSIVE, LIVENESS_KILLED]
        .iter()
        .flat_map(|prefix| records_with(&lines, prefix))
        .collect();
    assert!(kills.is_empty(), "{}", lines.join("\n"));
    assert_eq!(records_with(&lines, READY).len(), 2, "{}", lines.join("\n"));
    assert!(h.finish().success());
}

/// The master's soft limit on open files (RLIMIT_NOFILE), set on the running master.
fn set_nofile(pid: i32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit with a null new limit reads the current one into `old`.
    let got = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(got, 0, "prlimit read: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit; the test started this master.
    let set = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(set, 0, "prlimit set: {}", std::io::Error::last_os_error());
}

fn open_fds(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .expect("fds")
}

/// CPU time (user + system) of `pid` so far, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// F16: the master out of file descriptors (its soft limit lowered to what it holds) while a
/// worker must be replaced: the failed spawns are logged, retried with a back-off (no spin),
/// the other worker serves throughout, and once the limit is raised the replacement starts.
#[test]
fn f16_a_master_out_of_file_descriptors_logs_backs_off_and_recovers() {
    let h = Start::new(&["-w", "2", "asgi_app:app"]).spawn();
    let pids = h.wait_serving();
    let held = open_fds(h.pid);
    set_nofile(h.pid, held);
    common::signal(pids[0], libc::SIGKILL);
    let first = h.wait_record("", |r| {
        r.to_string().contains("Too many open files") || r.to_string().contains("EMFILE")
    });
    let ticks_at_first = cpu_ticks(h.pid);
    eprintln!("first failure: {first}");
    let failures = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("Too many open files") || l.contains("EMFILE"))
            .count()
    };
    h.log
        .wait_for("a second failed spawn (the retry)", WAIT, |lines| {
            (failures(lines) >= 2).then_some(())
        });
    let spent = cpu_ticks(h.pid) - ticks_at_first;
    // No spin: between two retries the master sleeps (a tick is 10 ms; a spinning master
    // burns every tick of the back-off).
    assert!(
        spent <= 20,
        "the master spent {spent} ticks between two retries:\n{}",
        h.log.text()
    );
    let served = common::http::get(h.addr(), "/").expect("the other worker serves");
    assert_eq!((served.status, served.pid()), (200, pids[1]));
    set_nofile(h.pid, 4096);
    let replacement = h.wait_record("worker ready", |r| {
        common::field_i64(r, "pid").is_some_and(|p| !pids.contains(&(p as i32)))
    });
    eprintln!("recovered: {replacement}");
    assert!(h.finish().success());
}

/// F9: the master SIGSTOPped for 30 s (as long as the default `--timeout`), then continued. The
/// workers serve throughout; a worker killed during the stop is reaped after it and replaced
/// exactly once; the workers that kept serving are not judged hung (their heartbeats waited in
/// the channel), so afterwards the same workers plus one replacement serve.
#[test]
fn f9_a_master_stopped_for_30_s_loses_no_worker_and_spawns_no_double() {
    let h = Start::new(&["-w", "2", "asgi_app:app"]).spawn();
    let pids = h.wait_serving();
    common::signal(h.pid, libc::SIGSTOP);
    let stopped = Instant::now();
    common::signal(pids[0], libc::SIGKILL);
    let mut served = 0;
    while stopped.elapsed() < Duration::from_secs(30) {
        let response = get(h.addr(), "/").expect("served while the master is stopped");
        assert_eq!((response.status, response.pid()), (200, pids[1]));
        served += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    common::signal(h.pid, libc::SIGCONT);
    let replacement = h.wait_record("worker ready", |r| {
        field_i64(r, "pid").is_some_and(|p| !pids.contains(&(p as i32)))
    });
    let replacement = field_i64(&replacement, "pid").expect("pid") as i32;
    // Let a few heartbeat intervals pass as events: requests answered by both live workers.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        seen.insert(get(h.addr(), "/").expect("served").pid());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        std::collections::BTreeSet::from([pids[1], replacement]),
        "the workers after the stop"
    );
    let log = h.log.text();
    assert_eq!(
        log.matches("\"worker ready\"").count(),
        3,
        "one replacement, no double spawn:\n{log}"
    );
    assert!(
        !log.contains("no heartbeat for"),
        "a worker judged hung:\n{log}"
    );
    eprintln!("served {served} requests while the master was stopped");
    assert!(h.finish().success());
}

/// libfaketime, which the test set-up installs (scripts/deps.sh): a preloaded library that
/// offsets the wall clock of the processes it is loaded into, read from a file at every call.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// F19: the wall clock jumps two hours ahead, then four hours back, in the master and its
/// workers (libfaketime, the monotonic clock left alone) while they serve: no timeout fires (no
/// worker judged hung or killed, no boot timeout on a reload), a reload completes, requests are
/// answered; the master's own log timestamps show the jumps took effect.
#[test]
fn f19_wall_clock_jumps_fire_no_timeout() {
    if !Path::new(FAKETIME).exists() {
        return common::skip(&format!(
            "{FAKETIME} is missing: scripts/deps.sh installs Debian's libfaketime"
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let offset = dir.path().join("offset");
    write_file(dir.path(), "offset", "+0\n");
    let h = Start::new(&["-w", "2", "--timeout", "5s", "asgi_app:app"])
        .env("LD_PRELOAD", FAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", offset.to_str().expect("utf-8"))
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .spawn();
    let pids = h.wait_serving();
    let year_of = |record: &Value| -> SystemTime {
        humantime::parse_rfc3339(record["timestamp"].as_str().expect("timestamp")).expect("time")
    };
    let before = year_of(&h.wait_record("serving: all workers ready", |_| true));
    for (jump, reloads) in [("+2h", 1), ("-2h", 2)] {
        write_file(dir.path(), "offset", &format!("{jump}\n"));
        h.signal(libc::SIGHUP);
        let done = h.wait_records("reload complete", reloads);
        let at = year_of(&done[reloads - 1]);
        let shift = if jump == "+2h" {
            at.duration_since(before).map(|d| d.as_secs()).unwrap_or(0)
        } else {
            before.duration_since(at).map(|d| d.as_secs()).unwrap_or(0)
        };
        assert!(
            shift >= 3600,
            "the master's clock did not jump {jump}: {before:?} -> {at:?}"
        );
        // Past the worker timeout on the monotonic clock, in requests: every one answered.
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            let response = get(h.addr(), "/").expect("served across the jump");
            assert_eq!(response.status, 200);
        }
    }
    let log = h.log.text();
    for bad in ["no heartbeat for", "boot timeout", "liveness timeout"] {
        assert!(!log.contains(bad), "a timeout fired ({bad}):\n{log}");
    }
    assert_eq!(
        records_with(&h.log.lines(), "worker ready").len(),
        pids.len() * 3
    );
    assert!(h.finish().success());
}
