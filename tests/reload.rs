//! Zero-downtime replacement under real load: SIGHUP reloads with fresh and keep-alive clients
//! and slow requests in flight, checked from the outside (every request answered) and from the
//! master's own log (ready workers never below the target, old workers gone in time).

mod common;
#[path = "common/load.rs"]
mod load;

use common::{message, Herdsman};
use load::Load;
use serde_json::Value;

/// Replays the master log: the lowest number of ready workers after the first time all were
/// ready. A worker counts from its `worker ready` record until it is retired or exits.
fn min_ready_after_serving(records: &[Value]) -> usize {
    let mut ready: Vec<i64> = Vec::new();
    let mut serving = false;
    let mut min = usize::MAX;
    for r in records {
        let pid = r.get("pid").and_then(Value::as_i64);
        match (message(r), pid) {
            ("worker ready", Some(pid)) => ready.push(pid),
            ("retiring worker", Some(pid)) => ready.retain(|p| *p != pid),
            (m, Some(pid)) if r.get("status").is_some() || m.starts_with("worker event loop") => {
                ready.retain(|p| *p != pid)
            }
            ("serving: all workers ready", _) => serving = true,
            _ => continue,
        }
        if serving {
            min = min.min(ready.len());
        }
    }
    min
}

/// Seconds between a record's timestamp and another's.
fn seconds_between(a: &Value, b: &Value) -> f64 {
    let t = |r: &Value| {
        let text = r["timestamp"].as_str().expect("timestamp");
        humantime::parse_rfc3339(text).expect("rfc3339 timestamp")
    };
    t(b).duration_since(t(a))
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn fifty_reloads_under_load_fail_no_request_and_keep_capacity() {
    const WORKERS: usize = 2;
    const RELOADS: usize = 50;
    let h = Herdsman::start(&["-w", "2", "--graceful-timeout", "10s", "asgi_app:app"]);
    h.wait_serving();
    let load = Load::start(h.addr(), 2, 2, &["/", "/slow?s=0.2", "/", "/env?k=HOME"]);
    load.wait_for_more(20, common::WAIT);
    let fds_before = fd_count(h.pid);
    let rss_before = rss_kib(h.pid);
    for i in 1..=RELOADS {
        h.signal(libc::SIGHUP);
        h.wait_records("reload complete", i);
        load.wait_for_more(5, common::WAIT);
    }
    let stats = load.stop();
    // The last retired workers may still be draining: wait for every retirement's exit.
    let records = h
        .log
        .wait_for("every retired worker's exit", common::WAIT, |lines| {
            let records: Vec<Value> = lines
                .iter()
                .filter_map(|l| common::parse_record(l))
                .collect();
            let retired: Vec<i64> = records
                .iter()
                .filter(|r| message(r) == "retiring worker")
                .filter_map(|r| r["pid"].as_i64())
                .collect();
            let exited = |pid: &i64| {
                records
                    .iter()
                    .any(|r| r["pid"].as_i64() == Some(*pid) && r.get("status").is_some())
            };
            retired.iter().all(exited).then_some(records)
        });
    let fds_after = fd_count(h.pid);
    let rss_after = rss_kib(h.pid);
    eprintln!(
        "reload load: {stats:?}; master fds {fds_before} -> {fds_after}, rss {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(
        stats.failed, 0,
        "failed requests across {RELOADS} reloads: {:?}",
        stats.errors
    );
    assert!(stats.ok > 0);
    assert!(
        min_ready_after_serving(&records) >= WORKERS,
        "ready workers dipped below {WORKERS}"
    );
    // Every retired worker exited within the graceful timeout of being retired.
    for retire in records.iter().filter(|r| message(r) == "retiring worker") {
        let pid = retire["pid"].as_i64();
        let exit = records
            .iter()
            .find(|r| r["pid"].as_i64() == pid && r.get("status").is_some())
            .unwrap_or_else(|| panic!("retired worker {pid:?} never exited"));
        assert!(
            seconds_between(retire, exit) <= 10.0,
            "worker {pid:?} outlived the graceful timeout"
        );
    }
    assert_eq!(
        fds_after, fds_before,
        "master fd count changed over {RELOADS} reloads"
    );
    assert!(
        rss_after <= rss_before + 512,
        "master RSS grew from {rss_before} to {rss_after} KiB over {RELOADS} reloads"
    );
    assert_eq!(h.live_worker_pids().len(), WORKERS);
    assert!(h.finish().success());
}

#[test]
fn after_reloads_workers_share_only_the_listeners_with_the_master() {
    // The master's own stdout/stderr are pipes to this test; everything else it holds (signal
    // pipe, /dev/null, other workers' channels, fds it inherited) must not reach a worker. Give
    // it an inherited fd without close-on-exec, as a careless parent process would.
    let mut leak = [0; 2];
    // SAFETY: pipe writes two fds into the array; they are closed at the end of the test.
    assert_eq!(unsafe { libc::pipe(leak.as_mut_ptr()) }, 0);
    let h = Herdsman::start(&["-w", "2", "-b", "127.0.0.1:0", "asgi_app:app"]);
    h.wait_serving();
    for i in 1..=3 {
        h.signal(libc::SIGHUP);
        h.wait_records("reload complete", i);
    }
    let master = common::fd_targets(h.pid);
    let held_by_master = |target: &String| master.iter().any(|(_, m)| m == target);
    // Workers of the last generation: the retired ones may still be draining.
    let current: Vec<i32> = h
        .wait_records("worker ready", 2 * 4)
        .iter()
        .filter(|r| r["generation"].as_i64() == Some(3))
        .filter_map(|r| r["pid"].as_i64())
        .map(|p| p as i32)
        .collect();
    assert_eq!(current.len(), 2, "two workers of generation 3");
    for pid in current {
        let worker = common::fd_targets(pid);
        let at = |fd: i32| {
            worker
                .iter()
                .find(|(n, _)| *n == fd)
                .map(|(_, t)| t.clone())
        };
        assert_eq!(at(0).as_deref(), Some("/dev/null"), "worker {pid} stdin");
        // Per docs/protocol.md: listeners at 3 and 4, the channel right after.
        let listeners = [at(3), at(4)].map(|t| t.expect("listener fd"));
        assert!(
            listeners.iter().all(held_by_master),
            "listeners are the master's sockets"
        );
        let channel = at(5).expect("channel fd");
        assert!(
            channel.starts_with("socket:") && !held_by_master(&channel),
            "channel is the worker's own end"
        );
        let shared: Vec<&(i32, String)> = worker
            .iter()
            .filter(|(fd, target)| {
                *fd > 2 && (target.starts_with("socket:") || target.starts_with("pipe:"))
            })
            .filter(|(_, target)| held_by_master(target))
            .collect();
        assert_eq!(
            shared.iter().map(|(fd, _)| *fd).collect::<Vec<_>>(),
            vec![3, 4],
            "worker {pid} shares only the listeners with the master: {shared:?}; master holds {master:?}"
        );
    }
    let inherited = format!(
        "pipe:[{}]",
        std::fs::metadata(format!("/proc/self/fd/{}", leak[0]))
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0)
    );
    assert!(
        held_by_master(&inherited),
        "the master did inherit the careless fd {inherited}"
    );
    // SAFETY: closing the two fds this test created.
    unsafe {
        libc::close(leak[0]);
        libc::close(leak[1]);
    }
    assert!(h.finish().success());
}
