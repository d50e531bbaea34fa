//! Hardening (issue 13) with real processes: the fd fallback when close_range is missing, the
//! crash policy that keeps capacity under a query of death and operator kills, the worker-count
//! bounds, `--lifespan`, and workers started with no_new_privs.

mod common;
#[path = "common/load.rs"]
mod load;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::http::{get, send_only};
use common::{apps_dir, both_engines, field_i64, message, python, Engine, Herdsman, Start, WAIT};
use serde_json::Value;

const READY: &str = "worker ready";
const DIED: &str = "worker died unexpectedly";
const KILLED: &str = "worker was killed by SIGKILL";

/// A `Duration` as `{:?}` prints it: "392.5ms", "1.15s", "800µs".
fn debug_duration(text: &str) -> Duration {
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_alphabetic() || c == 'µ')
            .expect("a unit"),
    );
    let n: f64 = number.parse().expect("a number");
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        "ns" => n / 1e9,
        other => panic!("unit {other}"),
    };
    Duration::from_secs_f64(secs)
}

/// Ready workers now, from the master's log: ready minus died (by pid).
fn capacity(h: &Herdsman) -> usize {
    let mut ready = BTreeSet::new();
    for r in h.log.records() {
        let pid = field_i64(&r, "pid");
        let text = message(&r);
        if text.starts_with(READY) {
            ready.extend(pid);
        } else if text.starts_with(DIED)
            || text.starts_with(KILLED)
            || text.starts_with("worker exited")
        {
            if let Some(pid) = pid {
                ready.remove(&pid);
            }
        }
    }
    ready.len()
}

fn deaths(h: &Herdsman) -> Vec<Value> {
    h.log
        .records()
        .into_iter()
        .filter(|r| message(r).starts_with(DIED) || message(r).starts_with(KILLED))
        .collect()
}

#[test]
fn without_close_range_no_inherited_fd_reaches_a_worker() {
    // The wrapper denies close_range (ENOSYS, as kernels before 5.9) and leaves a pipe at fd
    // 1000, above the soft fd limit it lowers to 512.
    let wrapper = apps_dir().join("no_close_range.py");
    let python = python().display().to_string();
    let h = Start::new(&["-w", "2", "asgi_app:app"])
        .wrapped(&[&python, &wrapper.display().to_string()])
        .spawn();
    let pids = h.wait_serving();
    let master = common::fd_targets(h.pid);
    let leaked = master
        .iter()
        .find(|(fd, _)| *fd == 1000)
        .map(|(_, t)| t.clone())
        .expect("the master inherited the wrapper's fd 1000");
    assert!(leaked.starts_with("pipe:"), "{leaked}");
    for pid in pids {
        let fds = common::fd_targets(pid);
        assert!(
            !fds.iter().any(|(_, t)| *t == leaked),
            "worker {pid} got the master's inherited {leaked}: {fds:?}"
        );
        // stdin/out/err, one listener, the channel: nothing else of the master's.
        let shared: Vec<_> = fds
            .iter()
            .filter(|(fd, t)| *fd > 2 && (t.starts_with("socket:") || t.starts_with("pipe:")))
            .filter(|(_, t)| master.iter().any(|(_, m)| m == t))
            .collect();
        assert_eq!(shared.len(), 1, "only the listener is shared: {shared:?}");
    }
    assert!(h.finish().success());
}

both_engines! {
    /// The query of death, served by each engine: the native engine serves the WSGI form
    /// of deadly_app (its in-flight file and quarantine are checked too), uvicorn the ASGI form.
    /// Not the WSGI form under uvicorn: a2wsgi's thread pool runs `/die` beside other requests,
    /// so a death rarely lists `/die` alone and the quarantine (which counts deaths that were
    /// serving only one request) seldom triggers: a known gap, in issue 13's notes.
    fn a_query_of_death_keeps_capacity_and_is_named_in_the_log(engine: Engine) {
        let app = match engine {
            Engine::Native => "deadly_app:wsgi",
            Engine::Uvicorn => "deadly_app:app",
        };
        query_of_death(engine, app);
    }
}

/// The ASGI form on the native engine too (uvicorn runs it above): its requests go through the
/// same in-flight file and quarantine as the WSGI ones.
#[test]
fn native_an_asgi_query_of_death_keeps_capacity_and_is_named_in_the_log() {
    query_of_death(Engine::Native, "deadly_app:app");
}

/// The query of death: `GET /die` (the worker calls `os._exit(0)`) at 10/s for 10 s
/// while keep-alive clients send normal requests. Before: the crash back-off (1, 2, 4 .. 60 s)
/// emptied the server for over a minute. Now every death is replaced at once.
fn query_of_death(engine: Engine, app: &str) {
    // HARDEN_BINARY: measure another build (e.g. the one before this change) the same way.
    let mut start = Start::new(&["-w", "2", app]).engine(engine);
    if let Some(binary) = std::env::var_os("HARDEN_BINARY") {
        start = start.binary(binary);
    }
    let h = start.spawn();
    h.wait_serving();
    let addr = h.addr();
    let normal = load::Load::start(addr, 0, 4, &["/"]);
    normal.wait_for_more(50, WAIT);
    let stop = Arc::new(AtomicBool::new(false));
    let bad = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sent = 0;
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(10) {
                // Sent and left: the worker that takes it dies without an answer.
                if let Ok(raw) = send_only(addr, "/die") {
                    std::mem::forget(raw);
                }
                sent += 1;
                let next = start + Duration::from_millis(100 * sent);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            sent
        })
    };
    let started = Instant::now();
    let mut timeline = Vec::new();
    while !bad.is_finished() {
        timeline.push((started.elapsed().as_secs_f64(), capacity(&h)));
        std::thread::sleep(Duration::from_millis(250));
    }
    let sent = bad.join().expect("bad traffic thread");
    let stopped = Instant::now();
    // Measured up to 90 s (to say how long it took before this fix), asserted below: 2 s.
    while capacity(&h) < 2 && stopped.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let back = stopped.elapsed();
    if std::env::var_os("QOD_DEBUG").is_some() {
        for line in h.log.lines().iter().filter(|l| !l.contains("GET / HTTP")) {
            eprintln!("LOG {line}");
        }
    }
    let stats = normal.stop();
    let total = stats.ok + stats.failed;
    let rate = stats.failed as f64 / total.max(1) as f64;
    let died = deaths(&h);
    let min = timeline.iter().map(|(_, c)| *c).min().unwrap_or(0);
    println!(
        "query of death: {sent} sent, {} workers died; normal traffic {} ok, {} failed ({:.2}%), {} retried; \
         capacity min {min}/2 while it ran, back to 2/2 {:.2}s after it stopped; timeline (s, ready): {timeline:?}",
        died.len(),
        stats.ok,
        stats.failed,
        100.0 * rate,
        stats.retried,
        back.as_secs_f64()
    );
    assert!(
        back < Duration::from_secs(2),
        "full capacity back {back:?} after the bad traffic stopped"
    );
    assert!(
        died.len() >= 3,
        "the deadly requests killed workers: {}",
        died.len()
    );
    assert!(
        died.iter().any(|r| message(r).contains("GET /die")),
        "the master names the deadly request: {died:?}"
    );
    assert!(stats.ok > 100, "normal requests kept succeeding: {stats:?}");
    assert!(rate < 0.2, "normal traffic mostly served: {stats:?}");
    assert!(
        !h.log.text().contains("backing off"),
        "no back-off for workers that served"
    );
    assert!(
        h.log
            .text()
            .contains("request GET /die keeps killing workers: quarantined"),
        "the deadly request is quarantined"
    );
    let refused = get(addr, "/die").expect("a quarantined request is answered");
    assert_eq!(refused.status, 503, "refused, not deadly");
    drop(get(addr, "/").expect("still serving"));
    assert!(h.finish().success());
}

/// Three operator `kill -9` a second apart: each replaced at once (the third used to wait 1 s).
/// A panic in the native engine while it handles a request (injected: the engine panics on the
/// path `_HERDSMAN_ENGINE_TEST_PANIC_PATH` names) is caught before it reaches Python: that
/// request is answered 500 and logged, and the same worker goes on serving.
#[test]
fn native_a_panic_in_a_request_answers_500_and_the_worker_keeps_serving() {
    let h = Start::new(&["-w", "1", "wsgi_app:app"])
        .engine(Engine::Native)
        .env("_HERDSMAN_ENGINE_TEST_PANIC_PATH", "/panic")
        .spawn();
    let pids = h.wait_serving();
    let resp = common::http::get(h.addr(), "/panic").expect("GET /panic");
    assert_eq!(resp.status, 500, "{resp:?}");
    h.log.wait_for("the panic logged", WAIT, |lines| {
        lines
            .iter()
            .find(|l| l.contains("engine bug: a panic while handling GET /panic (answered 500)"))
            .cloned()
    });
    for _ in 0..3 {
        let ok = common::http::get(h.addr(), "/").expect("GET /");
        assert_eq!(ok.status, 200, "{ok:?}");
        assert_eq!(
            vec![ok.pid()],
            pids,
            "another worker answered: the first one died"
        );
    }
    assert!(h.finish().success());
}

#[test]
fn three_kills_a_second_apart_are_each_replaced_at_once() {
    let h = Start::new(&["-w", "2", "asgi_app:app"]).spawn();
    let mut pids = h.wait_serving();
    for round in 1..=3 {
        let victim = pids[0];
        let killed = SystemTime::now();
        common::signal(victim, libc::SIGKILL);
        let readies = h.wait_records(READY, 2 + round);
        let replacement = readies.last().expect("a replacement");
        // When the replacement was spawned: its ready time minus its boot time (a loaded machine
        // makes the boot itself slow; the policy is about when it starts).
        let boot = replacement["boot"]
            .as_str()
            .map(debug_duration)
            .expect("boot");
        let spawned = common::record_time(replacement) - boot;
        let delay = spawned.duration_since(killed).unwrap_or_default();
        assert!(
            delay < Duration::from_millis(500),
            "kill {round}: replacement spawned {delay:?} after the kill: {replacement}"
        );
        pids = h.live_worker_pids();
        assert_eq!(pids.len(), 2, "{replacement:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(!h.log.text().contains("backing off"));
    assert!(h.finish().success());
}

/// `-w 100000` used to be accepted (`check` said 0) and the master forked until the OOM killer
/// ended it. Now `check` and the start refuse it with the bound and the override; the override
/// is accepted.
#[test]
fn a_worker_count_past_the_machine_bound_is_refused_with_the_override_named() {
    let (code, _, err) = common::run_to_end(&["check", "-w", "100000", "asgi_app:app"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("workers: 100000 is more than the"), "{err}");
    assert!(err.contains("max_workers = 100000"), "{err}");
    let (code, out, err) = common::run_to_end(
        &[
            "check",
            "--config-only",
            "-w",
            "100000",
            "--max-workers",
            "100000",
            "asgi_app:app",
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("max_workers = 100000"), "{out}");
    let (code, _, err) = common::run_to_end(
        &["check", "-w", "9", "asgi_app:app"],
        &[("HERDSMAN_MAX_WORKERS", "8")],
    );
    assert_eq!(code, Some(2), "{err}");
    // The start refuses it too, before binding or forking anything.
    let mut h = Start::new(&["-w", "100000", "asgi_app:app"]).spawn();
    let status = h.wait_exit(WAIT);
    h.log.wait_closed(WAIT);
    assert_eq!(status.code(), Some(2), "{}", h.log.text());
    assert!(h.log.text().contains("max_workers"));
}

/// TTIN (and `ctl scale`, the same event) never takes the target past `max_workers`.
#[test]
fn scaling_up_stops_at_max_workers() {
    let h = Start::new(&["-w", "2", "--max-workers", "3", "asgi_app:app"]).spawn();
    h.wait_serving();
    // Signals of one kind may coalesce: one at a time, each waited for.
    h.signal(libc::SIGTTIN);
    h.wait_record("target worker count changed", |_| true);
    h.signal(libc::SIGTTIN);
    h.wait_record("target worker count capped at max_workers", |_| true);
    h.wait_records(READY, 3);
    let changes: Vec<Value> = h
        .log
        .records()
        .into_iter()
        .filter(|r| message(r).starts_with("target worker count changed"))
        .collect();
    assert!(
        changes.iter().all(|r| field_i64(r, "to") <= Some(3)),
        "{changes:?}"
    );
    assert!(h.finish().success());
}

both_engines! {
    /// `lifespan = "auto"` (the default): a raising startup is served, as uvicorn does, but its
    /// traceback is in the log (it used to be one "appears unsupported" line).
    fn lifespan_auto_logs_the_startup_traceback(engine: Engine) {
        let h = Start::new(&["-w", "1", "lifespan_raise:app"]).engine(engine).spawn();
        h.wait_serving();
        let text = h.log.text();
        assert!(text.contains("ASGI lifespan startup raised"), "{engine}: {text}");
        assert!(
            text.contains("RuntimeError: lifespan_raise: database down (on purpose)"),
            "{engine}: {text}"
        );
        assert_eq!(get(h.addr(), "/").expect("served").status, 200);
        assert!(h.finish().success());
    }
}

both_engines! {
    /// `--lifespan on` (and HERDSMAN_LIFESPAN): the same app fails to boot, WORKER_BOOT (3).
    fn lifespan_on_makes_a_raising_startup_fail_the_boot(engine: Engine) {
        for (args, env) in [
            (
                vec!["-w", "1", "--startup-attempts", "1", "--lifespan", "on"],
                None,
            ),
            (vec!["-w", "1", "--startup-attempts", "1"], Some("on")),
        ] {
            let mut start =
                Start::new(&[args.as_slice(), &["lifespan_raise:app"]].concat()).engine(engine);
            if let Some(mode) = env {
                start = start.env("HERDSMAN_LIFESPAN", mode);
            }
            let mut h = start.spawn();
            let status = h.wait_exit(WAIT * 2);
            let text = h.log.text();
            assert_eq!(status.code(), Some(3), "{engine}: {text}");
            assert!(text.contains("lifespan_raise: database down"), "{engine}: {text}");
            h.finish();
        }
    }
}

/// Reads what the server sends until it closes the connection (or `limit` passes).
fn read_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> (String, Duration) {
    use std::io::Read;
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection past {limit:?}: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

both_engines! {
    /// A request head is bounded while it is read, not only once it is complete: a 1 MiB header
    /// line is answered 431 long before it ends (uvicorn read 300 MB whole), and the worker
    /// serves the next request.
    fn a_huge_request_head_is_refused_while_it_is_read(engine: Engine) {
        use std::io::Write;
        let h = Start::new(&["-w", "1", "asgi_app:app"]).engine(engine).spawn();
        h.wait_serving();
        let mut stream = common::http::connect(h.addr()).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            .expect("send");
        // 1 MiB in 64 KiB pieces; the server may close before the end (then writes fail).
        let piece = vec![b'a'; 64 * 1024];
        for _ in 0..16 {
            if stream.write_all(&piece).is_err() {
                break;
            }
        }
        let (seen, _) = read_until_closed(&mut stream, Duration::from_secs(20));
        assert!(seen.starts_with("HTTP/1.1 431"), "{engine}: {seen:?}");
        assert_eq!(get(h.addr(), "/").expect("the next request").status, 200, "{engine}: the worker still serves");
        assert!(h.finish().success());
    }

    /// A head that never completes (slowloris) is closed 30 s after it began, as the native
    /// engine's header read timeout; uvicorn kept such connections for good.
    fn a_request_head_that_never_ends_is_closed_after_30_s(engine: Engine) {
        use std::io::Write;
        let h = Start::new(&["-w", "1", "asgi_app:app"]).engine(engine).spawn();
        h.wait_serving();
        let mut stream = common::http::connect(h.addr()).expect("connect");
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: a")
            .expect("send");
        let (_, took) = read_until_closed(&mut stream, Duration::from_secs(45));
        assert!(
            took >= Duration::from_secs(25),
            "{engine}: closed after {took:?}, before the timeout"
        );
        assert_eq!(get(h.addr(), "/").expect("the next request").status, 200, "{engine}: the worker still serves");
        assert!(h.finish().success());
    }
}

/// `NoNewPrivs:` of `/proc/<pid>/status`: 1 when the process can no longer gain privileges.
fn no_new_privs(pid: i32) -> Option<u8> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NoNewPrivs:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Workers start with the kernel's no_new_privs flag (so a setuid or file-capability program
/// they exec gains nothing), exec'd or forked from a zygote (which has it too), and
/// `--allow-new-privs` turns it off for apps that need such a helper. The master keeps its own
/// flags. Before, no worker had it.
#[test]
fn workers_cannot_gain_privileges_unless_allowed() {
    for spawn in ["exec", "zygote"] {
        for (extra, expected) in [(None, 1), (Some("--allow-new-privs"), 0)] {
            let mut args = vec!["-w", "2", "--spawn", spawn];
            args.extend(extra);
            args.push("asgi_app:app");
            let h = Start::new(&args).spawn();
            let workers = h.wait_serving();
            let mut pids = workers.clone();
            let zygotes: Vec<i32> = common::records_with(&h.log.lines(), "zygote ready")
                .iter()
                .filter_map(|r| field_i64(r, "zygote_pid"))
                .map(|p| p as i32)
                .collect();
            assert_eq!(zygotes.len(), usize::from(spawn == "zygote"), "{zygotes:?}");
            pids.extend(&zygotes);
            for pid in pids {
                assert_eq!(
                    no_new_privs(pid),
                    Some(expected),
                    "--spawn {spawn} {extra:?}: process {pid} (workers {workers:?}, zygotes {zygotes:?})"
                );
            }
            assert_eq!(no_new_privs(h.pid), Some(0), "the master is left alone");
            assert_eq!(get(h.addr(), "/").expect("served").status, 200);
            assert!(h.finish().success());
        }
    }
}
