//! `spawn = "zygote"` with real processes (issue #5, docs/zygote.md): workers forked from a warm
//! zygote are the master's own children, reaped and replaced by it; a worker killed under load
//! is replaced; HUP with preload serves the new code with no failed request, and new code that
//! does not import leaves the old workers serving; a killed zygote comes back without touching
//! the workers; preloaded workers share their memory (PSS well below RSS). It also measures, and
//! prints, how long a killed FastAPI worker takes to be replaced, exec against zygote.

mod common;
#[path = "common/load.rs"]
mod load;

use std::time::{Duration, SystemTime};

use common::http::get;
use common::{
    assert_gone, both_engines, field_i64, message, parent_pid, process_state, record_time,
    records_with, signal, write_file, Engine, Herdsman, Start, WAIT,
};
use load::Load;
use serde_json::Value;

const READY: &str = "worker ready";
const ZYGOTE_READY: &str = "zygote ready";
const RELOADED: &str = "reload complete";
const RELOAD_FAILED: &str = "reload failed";
const APP_MODULE: &str = "zygote_versioned_app";

fn zygote(args: &[&str]) -> Start {
    let mut all = vec!["--spawn", "zygote"];
    all.extend_from_slice(args);
    Start::new(&all)
}

fn sorted(mut pids: Vec<i32>) -> Vec<i32> {
    pids.sort_unstable();
    pids
}

/// The pids of the zygotes the master reported ready, in order.
fn zygote_pids(h: &Herdsman) -> Vec<i32> {
    records_with(&h.log.lines(), ZYGOTE_READY)
        .iter()
        .filter_map(|r| field_i64(r, "zygote_pid"))
        .map(|p| p as i32)
        .collect()
}

/// Waits for a `worker ready` record of a pid not in `known`; returns the record.
fn wait_new_worker(h: &Herdsman, known: &[i32]) -> Value {
    h.wait_record(READY, |r| {
        field_i64(r, "pid").is_some_and(|p| !known.contains(&(p as i32)))
    })
}

fn pid_of(record: &Value) -> i32 {
    field_i64(record, "pid").expect("a pid") as i32
}

/// Waits until the master has logged the exit of `pid` (it reaped it).
fn wait_reaped(h: &Herdsman, pid: i32) {
    h.wait_record("", |r| {
        field_i64(r, "pid") == Some(i64::from(pid)) && r.get("status").is_some()
    });
}

fn assert_masters_children(h: &Herdsman, pids: &[i32]) {
    for &pid in pids {
        assert_eq!(
            parent_pid(pid),
            Some(h.pid),
            "worker {pid} is not the master's child"
        );
    }
}

both_engines! {
    fn forked_workers_are_the_masters_children_and_are_reaped_by_it(engine: Engine) {
        let h = zygote(&["-w", "2", "--preload", "asgi_app:app"]).engine(engine).spawn();
        let pids = sorted(h.wait_serving());
        assert_eq!(pids.len(), 2);
        assert_masters_children(&h, &pids);
        let zygotes = zygote_pids(&h);
        assert_eq!(zygotes.len(), 1, "one zygote for generation 0");
        assert_eq!(parent_pid(zygotes[0]), Some(h.pid));
        for pid in &pids {
            let served = get(h.addr(), "/").expect("request");
            assert_eq!(served.status, 200);
            assert!(!zygotes.contains(pid));
        }

        signal(pids[0], libc::SIGKILL);
        let replacement = pid_of(&wait_new_worker(&h, &pids));
        wait_reaped(&h, pids[0]);
        assert_eq!(process_state(pids[0]), None, "reaped: no zombie left");
        assert_masters_children(&h, &[replacement, pids[1]]);
        assert_eq!(zygote_pids(&h), zygotes, "the same zygote forked it");
        // The worker holds what an exec'd one holds: not the zygote's control socket.
        let zygote_fds = socket_inodes(zygotes[0]);
        let worker_fds = socket_inodes(replacement);
        let control: Vec<_> = zygote_fds
            .iter()
            .filter(|inode| worker_fds.contains(inode))
            .collect();
        // The only sockets both hold are the listeners the master handed out.
        assert_eq!(control.len(), 1, "shared sockets: {control:?}");

        let status = h.finish();
        assert!(status.success(), "{status:?}");
        assert_gone(&zygotes, Duration::from_secs(5));
    }
}

/// The socket inodes a process holds.
fn socket_inodes(pid: i32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

#[test]
fn without_preload_each_worker_imports_the_app_and_captured_output_still_works() {
    let h = zygote(&[
        "-w",
        "2",
        "--capture-output",
        "--log-level",
        "debug",
        "asgi_app:app",
    ])
    .spawn();
    let pids = sorted(h.wait_serving());
    assert_masters_children(&h, &pids);
    let zygote_line = h.wait_record("ready: uvicorn", |r| r["zygote"] == 0);
    assert!(
        !message(&zygote_line).contains("preloaded"),
        "{zygote_line}"
    );
    // The worker's own output goes through the pipe the master passed with the fork request.
    let runtime_record = |pid: i32| {
        h.wait_record("ready: app", move |r| {
            r["pid"] == pid && r["worker"].is_u64()
        })
    };
    runtime_record(pids[0]);
    signal(pids[0], libc::SIGKILL);
    let replacement = pid_of(&wait_new_worker(&h, &pids));
    runtime_record(replacement);
    assert_eq!(get(h.addr(), "/").expect("request").status, 200);
    h.finish();
}

both_engines! {
    fn a_preloaded_wsgi_app_is_served(engine: Engine) {
        let h = zygote(&["-w", "1", "--preload", "flask_app:app"])
            .engine(engine)
            .spawn();
        let pids = h.wait_serving();
        let served = get(h.addr(), "/").expect("request");
        assert_eq!(served.status, 200);
        assert_eq!(served.pid(), pids[0]);
        h.finish();
    }
}

#[test]
fn a_worker_killed_under_load_is_replaced_and_the_others_lose_nothing() {
    let h = zygote(&["-w", "3", "--preload", "asgi_app:app"]).spawn();
    let pids = sorted(h.wait_serving());
    let load = Load::start(h.addr(), 2, 2, &["/"]);
    load.wait_for_more(50, WAIT);
    signal(pids[1], libc::SIGKILL);
    let replacement = pid_of(&wait_new_worker(&h, &pids));
    assert_masters_children(&h, &[replacement]);
    load.wait_for_more(100, WAIT);
    let stats = load.stop();
    println!("under load: {stats:?}");
    // At most the requests the victim had in flight (one per client) can fail; nothing else,
    // and never a refused connection (the master holds the listener).
    assert!(stats.failed <= 4, "{stats:?}");
    assert!(
        stats.errors.iter().all(|e| !e.contains("refused")),
        "{stats:?}"
    );
    h.finish();
}

fn served_versions(h: &Herdsman, n: usize) -> Vec<i64> {
    (0..n)
        .map(|_| {
            let resp = get(h.addr(), "/").expect("request");
            assert_eq!(resp.status, 200);
            resp.json()["version"].as_i64().expect("a version")
        })
        .collect()
}

/// The app module lives in the test's own directory, found through PYTHONPATH.
fn versioned(code: &tempfile::TempDir, args: &[&str]) -> Herdsman {
    write_file(
        code.path(),
        &format!("{APP_MODULE}.py"),
        &common::versioned_app(1),
    );
    let app = format!("{APP_MODULE}:app");
    let mut all = args.to_vec();
    all.push(&app);
    zygote(&all)
        .env("PYTHONPATH", code.path().to_str().expect("utf-8 path"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn()
}

#[test]
fn hup_with_preload_serves_the_new_code_without_a_failed_request() {
    let code = tempfile::tempdir().expect("temp dir");
    let h = versioned(&code, &["-w", "2", "--preload"]);
    let old = sorted(h.wait_serving());
    assert_eq!(served_versions(&h, 4), vec![1; 4]);
    let old_zygote = zygote_pids(&h);
    let load = Load::start(h.addr(), 2, 2, &["/"]);
    load.wait_for_more(30, WAIT);

    write_file(
        code.path(),
        &format!("{APP_MODULE}.py"),
        &common::versioned_app(2),
    );
    h.signal(libc::SIGHUP);
    let done = h.wait_record(RELOADED, |_| true);
    assert_eq!(done["generation"], 1, "{done}");
    load.wait_for_more(30, WAIT);
    let stats = load.stop();
    println!("during the reload: {stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    for &pid in &old {
        wait_reaped(&h, pid);
    }
    assert_eq!(served_versions(&h, 6), vec![2; 6]);
    let zygotes = zygote_pids(&h);
    assert_eq!(zygotes.len(), 2, "a new zygote for generation 1");
    // The reload's rollout began only once the new zygote was ready.
    let records = h.log.records();
    let ready_at = records
        .iter()
        .find(|r| message(r) == ZYGOTE_READY && r["generation"] == 1)
        .map(record_time)
        .expect("generation 1's zygote ready");
    let reloading_at = records
        .iter()
        .find(|r| message(r) == "reloading")
        .map(record_time)
        .expect("a reloading record");
    assert!(ready_at <= reloading_at);
    // The old generation's zygote goes once its last worker is gone.
    assert_gone(&old_zygote, Duration::from_secs(5));
    assert_masters_children(&h, &h.live_worker_pids());
    h.finish();
    assert_gone(&zygotes, Duration::from_secs(5));
}

#[test]
fn new_code_that_does_not_import_leaves_the_old_workers_serving() {
    let code = tempfile::tempdir().expect("temp dir");
    let h = versioned(&code, &["-w", "2", "--preload"]);
    let old = sorted(h.wait_serving());
    let load = Load::start(h.addr(), 1, 1, &["/"]);
    load.wait_for_more(20, WAIT);

    write_file(
        code.path(),
        &format!("{APP_MODULE}.py"),
        "raise RuntimeError('this deploy broke the import')\n",
    );
    h.signal(libc::SIGHUP);
    let failed = h.wait_record(RELOAD_FAILED, |_| true);
    assert!(
        message(&failed).contains("could not be imported"),
        "{failed}"
    );
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_eq!(
        sorted(h.live_worker_pids()),
        old,
        "the old workers serve on"
    );
    assert!(
        records_with(&h.log.lines(), "reloading").is_empty(),
        "no rollout began"
    );
    assert_eq!(served_versions(&h, 4), vec![1; 4]);
    assert!(h
        .log
        .lines()
        .iter()
        .any(|l| l.contains("RuntimeError: this deploy broke the import")));

    // A fixed deploy then applies.
    write_file(
        code.path(),
        &format!("{APP_MODULE}.py"),
        &common::versioned_app(3),
    );
    h.signal(libc::SIGHUP);
    h.wait_record(RELOADED, |_| true);
    for &pid in &old {
        wait_reaped(&h, pid);
    }
    assert_eq!(served_versions(&h, 4), vec![3; 4]);
    h.finish();
}

#[test]
fn a_killed_zygote_comes_back_and_so_does_a_worker_killed_after_it() {
    let h = zygote(&["-w", "2", "--preload", "asgi_app:app"]).spawn();
    let pids = sorted(h.wait_serving());
    let first = zygote_pids(&h)[0];
    signal(first, libc::SIGKILL);
    h.wait_record("zygote exited", |_| true);
    let second = h.wait_record(ZYGOTE_READY, |r| {
        field_i64(r, "zygote_pid").is_some_and(|p| p as i32 != first)
    });
    let second = field_i64(&second, "zygote_pid").expect("pid") as i32;
    assert_eq!(process_state(first), None, "the dead zygote was reaped");
    assert_eq!(
        sorted(h.live_worker_pids()),
        pids,
        "the workers were not touched"
    );
    assert!(pids.iter().all(|&p| process_state(p).is_some()));

    signal(pids[0], libc::SIGKILL);
    let replacement = pid_of(&wait_new_worker(&h, &pids));
    assert_masters_children(&h, &[replacement]);
    assert_eq!(get(h.addr(), "/").expect("request").status, 200);
    h.finish();
    assert_gone(&[second], Duration::from_secs(5));
}

#[test]
fn a_preloaded_app_that_fails_to_import_at_first_start_exits_4() {
    let mut h = zygote(&[
        "-w",
        "2",
        "--preload",
        "--startup-attempts",
        "2",
        "import_error:app",
    ])
    .spawn();
    let status = h.wait_exit(WAIT * 2);
    h.log.wait_closed(WAIT);
    let all = h.log.lines().join("\n");
    assert_eq!(status.code(), Some(4), "APP_LOAD; output:\n{all}");
    assert!(all.contains("RuntimeError: boom at import"), "{all}");
    h.finish();
}

// ---- memory and speed --------------------------------------------------------------------------

fn rollup_kb(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l[field.len()..].split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn preloaded_workers_share_their_memory() {
    let h = zygote(&["-w", "4", "--preload", "fastapi_app:app"]).spawn();
    let workers = h.wait_serving();
    for _ in 0..20 {
        assert_eq!(get(h.addr(), "/items/3").expect("request").status, 200);
    }
    let mut all = vec![h.pid];
    all.extend(zygote_pids(&h));
    all.extend(&workers);
    let pss: u64 = all.iter().map(|&p| rollup_kb(p, "Pss:")).sum();
    let rss: u64 = all.iter().map(|&p| rollup_kb(p, "Rss:")).sum();
    println!(
        "master + zygote + {} workers (FastAPI, preload): PSS {} KiB, RSS sum {} KiB ({:.0}%)",
        workers.len(),
        pss,
        rss,
        100.0 * pss as f64 / rss as f64
    );
    assert!(rss > 0);
    assert!(
        (pss as f64) < 0.8 * rss as f64,
        "PSS {pss} KiB, RSS {rss} KiB"
    );
    h.finish();
}

/// Kills a worker `rounds` times and returns how long each replacement took to report ready.
fn replacement_times(h: &Herdsman, rounds: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let live = h.live_worker_pids();
        let known: Vec<i32> = h.all_worker_pids();
        let victim = live[0];
        let killed = SystemTime::now();
        signal(victim, libc::SIGKILL);
        let ready = wait_new_worker(h, &known);
        let took = record_time(&ready)
            .duration_since(killed)
            .unwrap_or_default();
        times.push(took);
        wait_reaped(h, victim);
    }
    times
}

#[test]
fn replacement_time_exec_against_zygote_fastapi() {
    let rounds = 5;
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let exec = Herdsman::start(&["-w", "2", "fastapi_app:app"]);
    exec.wait_serving();
    let exec_times = replacement_times(&exec, rounds);
    exec.finish();
    let zyg = zygote(&["-w", "2", "--preload", "fastapi_app:app"]).spawn();
    zyg.wait_serving();
    let zygote_times = replacement_times(&zyg, rounds);
    zyg.finish();
    println!("SIGKILL to replacement ready, FastAPI, {rounds} rounds:");
    println!(
        "  exec:             {exec_times:?}, median {:?}",
        median(exec_times.clone())
    );
    println!(
        "  zygote + preload: {zygote_times:?}, median {:?}",
        median(zygote_times.clone())
    );
}

/// A hung zygote (SIGSTOP) that is asked for a worker: the fork request times out, the master
/// kills that zygote and starts another, which forks the replacement; the other worker serves
/// throughout, and the hung zygote is reaped.
#[test]
fn a_hung_zygote_is_killed_and_replaced_and_the_worker_it_owed_comes_from_the_next() {
    let h = zygote(&["-w", "2", "--preload", "asgi_app:app"]).spawn();
    let pids = sorted(h.wait_serving());
    let hung = *zygote_pids(&h).last().expect("a zygote");
    signal(hung, libc::SIGSTOP);
    signal(pids[0], libc::SIGKILL);
    let failed = h.wait_record("zygote failed a fork request: killing it", |_| true);
    assert_eq!(
        field_i64(&failed, "zygote_pid"),
        Some(i64::from(hung)),
        "{failed}"
    );
    // The other worker still serves while the master recovers.
    let served = common::http::get(h.addr(), "/").expect("served meanwhile");
    assert_eq!((served.status, served.pid()), (200, pids[1]));
    let replacement = pid_of(&wait_new_worker(&h, &pids));
    assert_masters_children(&h, &[replacement]);
    let next = h.wait_record(ZYGOTE_READY, |r| {
        field_i64(r, "zygote_pid").is_some_and(|p| p != i64::from(hung))
    });
    assert_ne!(field_i64(&next, "zygote_pid"), Some(i64::from(hung)));
    wait_reaped_zygote(&h, hung);
    assert!(h.finish().success());
}

/// Waits until the master has logged the exit of zygote `pid` and it is gone from /proc.
fn wait_reaped_zygote(h: &Herdsman, pid: i32) {
    h.log.wait_for(&format!("zygote {pid} reaped"), WAIT, |_| {
        common::process_state(pid).is_none().then_some(())
    });
}
