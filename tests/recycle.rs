//! Replacing workers while they serve (RELIABILITY.md F10, F12): a SIGHUP with a broken config
//! or an app that no longer imports keeps the running generation, and a later good one applies;
//! TTIN/TTOU change the target one step at a time, clamp at one worker and survive a storm;
//! max-requests, memory and lifetime recycling replace healthy workers through the
//! readiness-gated path; a slot whose app crash-loops backs off while the others serve.
//!
//! Every claim is checked from the outside (real requests under load: none may fail) and from
//! the master's own log, replayed: ready workers never drop below the target.

mod common;
#[path = "common/load.rs"]
mod load;

use std::time::{Duration, Instant};

use common::http::get;
use common::{
    both_engines, children_of, message, parse_record, process_state, record_time, records_with,
    signal, write_file, Engine, Herdsman, Start, WAIT,
};
use load::{Load, Stats};
use serde_json::Value;

const READY: &str = "worker ready";
const RETIRING: &str = "retiring worker";
const RECYCLING: &str = "recycling worker";
const SCALED: &str = "target worker count changed";
const RELOADING: &str = "reloading";
const RELOADED: &str = "reload complete";
const RELOAD_FAILED: &str = "reload failed";
const REFUSED: &str = "reload refused";
const BOOT_FAILED: &str = "worker failed to boot";
const DIED_AFTER_READY: &str = "worker died right after becoming ready";
const GIVING_UP: &str = "giving up";
/// What the master logs for SIGUSR1: the tests use it as a barrier (see [`settle`]).
const USR1: &str = "SIGUSR1";

// ---- log replay ------------------------------------------------------------------------------

fn pid_of(record: &Value) -> Option<i64> {
    record.get("pid").and_then(Value::as_i64)
}

fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A record of the master reaping a worker: it carries the exit status, or it is a failed boot
/// (which is only decided once the process is gone), including a worker that died right after
/// becoming ready.
fn is_exit(record: &Value) -> bool {
    let m = message(record);
    pid_of(record).is_some()
        && (record.get("status").is_some()
            || m.starts_with(BOOT_FAILED)
            || m.starts_with(DIED_AFTER_READY))
}

fn sorted(mut pids: Vec<i32>) -> Vec<i32> {
    pids.sort_unstable();
    pids
}

/// Replays the master log: the lowest number of ready workers after the first time all were
/// ready. A worker counts from its `worker ready` record until it is retired or exits.
fn min_ready_after_serving(records: &[Value]) -> usize {
    let mut ready: Vec<i64> = Vec::new();
    let mut serving = false;
    let mut min = usize::MAX;
    for r in records {
        match (message(r), pid_of(r)) {
            (READY, Some(pid)) => ready.push(pid),
            (RETIRING, Some(pid)) => ready.retain(|p| *p != pid),
            (_, Some(pid)) if is_exit(r) => ready.retain(|p| *p != pid),
            ("serving: all workers ready", _) => serving = true,
            _ => continue,
        }
        if serving {
            min = min.min(ready.len());
        }
    }
    min
}

/// Ready workers, per the log, that are neither retiring nor gone.
fn serving_pids(records: &[Value]) -> Vec<i32> {
    let mut serving: Vec<i32> = Vec::new();
    for r in records {
        let Some(pid) = pid_of(r).map(|p| p as i32) else {
            continue;
        };
        match message(r) {
            READY => serving.push(pid),
            RETIRING => serving.retain(|p| *p != pid),
            _ if is_exit(r) => serving.retain(|p| *p != pid),
            _ => {}
        }
    }
    sorted(serving)
}

/// The master's children that are not zombies.
fn live_children(master: i32) -> Vec<i32> {
    sorted(
        children_of(master)
            .into_iter()
            .filter(|(_, state)| *state != 'Z')
            .map(|(pid, _)| pid)
            .collect(),
    )
}

/// Workers the log mentions (ready or retiring) whose exit it has not logged yet.
fn unreaped_pids(records: &[Value]) -> Vec<i32> {
    let mut pids: Vec<i32> = Vec::new();
    for r in records {
        let Some(pid) = pid_of(r).map(|p| p as i32) else {
            continue;
        };
        if is_exit(r) {
            pids.retain(|p| *p != pid);
        } else if matches!(message(r), READY | RETIRING) && !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    sorted(pids)
}

/// Waits until the master has exactly `target` ready workers and nothing else: no other child
/// (booting), no retired worker whose exit is not logged yet; returns their pids. Re-checked on
/// every new log line: every step towards that state (a worker ready, a worker reaped) is logged.
fn wait_converged(h: &Herdsman, target: usize, timeout: Duration) -> Vec<i32> {
    h.log.wait_for(
        &format!("exactly {target} ready workers and no other child of the master"),
        timeout,
        |lines| {
            let records: Vec<Value> = lines.iter().filter_map(|l| parse_record(l)).collect();
            let serving = serving_pids(&records);
            let settled = serving.len() == target
                && unreaped_pids(&records) == serving
                && live_children(h.pid) == serving;
            settled.then_some(serving)
        },
    )
}

/// Waits for the master's record that it reaped `pid`.
fn wait_reaped(h: &Herdsman, pid: i32) -> Value {
    h.wait_record("", |r| is_exit(r) && pid_of(r) == Some(pid as i64))
}

fn count(h: &Herdsman, prefix: &str) -> usize {
    records_with(&h.log.lines(), prefix).len()
}

/// Sends SIGUSR1 and waits for the master's record of it.
fn barrier(h: &Herdsman) {
    let seen = count(h, USR1);
    h.signal(libc::SIGUSR1);
    h.wait_records(USR1, seen + 1);
}

/// Returns once every signal sent to the master before the call has been acted on and logged.
/// A USR1 record proves that the signals sent before that USR1 have been counted, in its batch
/// or the next one at the latest (the counters are swapped one by one); the batch's events are
/// handled after the USR1 record is written, and before the next batch is read. So: the first
/// barrier's signals are counted by the second barrier's batch, and handled by the third's.
fn settle(h: &Herdsman) {
    for _ in 0..3 {
        barrier(h);
    }
}

fn seconds_between(a: &Value, b: &Value) -> f64 {
    record_time(b)
        .duration_since(record_time(a))
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn assert_no_failures(stats: &Stats, what: &str) {
    assert_eq!(stats.failed, 0, "requests failed {what}: {stats:?}");
    assert!(stats.ok > 0, "no request succeeded {what}");
}

/// GETs `path` `n` times; returns the JSON bodies (every one must be a 200).
fn get_json(h: &Herdsman, path: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|_| {
            let resp = get(h.addr(), path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
            assert_eq!(resp.status, 200, "GET {path}: {resp:?}");
            resp.json()
        })
        .collect()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---- F12: a reload that cannot apply keeps what serves -----------------------------------------

fn config_text(version: u32) -> String {
    format!("app = \"asgi_app:app\"\nworkers = 2\nenv = {{ VERSION = \"{version}\" }}\n")
}

#[test]
fn hup_with_a_broken_config_is_refused_and_a_later_good_one_applies() {
    let conf = tempfile::tempdir().expect("temp dir");
    let path = write_file(conf.path(), "herdsman.toml", &config_text(1));
    let h = Herdsman::start(&["-c", path.to_str().expect("utf-8 path")]);
    let old = sorted(h.wait_serving());
    assert_eq!(old.len(), 2);
    let load = Load::start(h.addr(), 2, 2, &["/", "/env?k=VERSION", "/slow?s=0.2"]);
    load.wait_for_more(20, WAIT);

    // An unknown key and a bad value: both must be named, with the file.
    let broken = format!(
        "{}wrokers = 3\ngraceful_timeout = \"soon\"\n",
        config_text(2)
    );
    write_file(conf.path(), "herdsman.toml", &broken);
    h.signal(libc::SIGHUP);
    let refused = h.wait_record(REFUSED, |_| true);
    let why = message(&refused);
    assert_eq!(text(&refused, "level"), "ERROR", "{refused}");
    for needle in [
        "wrokers",
        "did you mean `workers`",
        "graceful_timeout",
        &path.display().to_string(),
    ] {
        assert!(
            why.contains(needle),
            "the refusal does not name {needle:?}: {why}"
        );
    }
    load.wait_for_more(20, WAIT);
    assert_eq!(
        count(&h, RELOADING),
        0,
        "a refused config started a rollout"
    );
    assert_eq!(sorted(h.live_worker_pids()), old, "workers changed");
    for value in get_json(&h, "/env?k=VERSION", 6) {
        assert_eq!(value["value"], "1", "the refused config reached a worker");
    }

    write_file(conf.path(), "herdsman.toml", &config_text(2));
    h.signal(libc::SIGHUP);
    let done = h.wait_record(RELOADED, |_| true);
    for &pid in &old {
        wait_reaped(&h, pid);
    }
    let new = sorted(h.live_worker_pids());
    assert_eq!(new.len(), 2, "after the good reload: {new:?}");
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    for value in get_json(&h, "/env?k=VERSION", 6) {
        assert_eq!(value["value"], "2", "the good config did not apply");
    }
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    eprintln!(
        "broken-config reload: refused, then good reload in {}; load {stats:?}",
        text(&done, "duration")
    );
    assert_no_failures(&stats, "across a refused and a good reload");
    assert!(min_ready_after_serving(&h.log.records()) >= 2);
    assert!(h.finish().success());
}

const APP_MODULE: &str = "recycle_versioned";

fn assert_version(h: &Herdsman, version: u32) {
    for value in get_json(h, "/", 6) {
        assert_eq!(value["version"], version, "served {value}");
    }
}

#[test]
fn hup_after_the_app_breaks_at_import_rolls_back_and_a_fixed_app_applies() {
    // The module lives in this test's own directory, found through PYTHONPATH (the harness
    // already passes --chdir, which can be given once).
    let code = tempfile::tempdir().expect("temp dir");
    let module = format!("{APP_MODULE}.py");
    write_file(code.path(), &module, &common::versioned_app(1));
    let app = format!("{APP_MODULE}:app");
    let h = Start::new(&["-w", "2", "--startup-attempts", "2", &app])
        .env("PYTHONPATH", code.path().to_str().expect("utf-8 path"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .spawn();
    let old = sorted(h.wait_serving());
    assert_version(&h, 1);
    let load = Load::start(h.addr(), 2, 2, &["/", "/"]);
    load.wait_for_more(20, WAIT);

    write_file(
        code.path(),
        &module,
        "raise RuntimeError('this deploy broke the import')\n",
    );
    h.signal(libc::SIGHUP);
    let failed = h.wait_record(RELOAD_FAILED, |_| true);
    let records = h.log.records();
    let reloading = records
        .iter()
        .find(|r| message(r) == RELOADING)
        .expect("a reloading record");
    let failures: Vec<&Value> = records
        .iter()
        .filter(|r| message(r).starts_with(BOOT_FAILED))
        .collect();
    assert_eq!(failures.len(), 2, "--startup-attempts 2: {failures:?}");
    assert!(failures.iter().all(|r| message(r).contains("import error")));
    assert_eq!(text(failures[0], "retry_in"), "1s", "{}", failures[0]);
    assert!(
        message(&failed).contains("could not be imported"),
        "{failed}"
    );
    assert_eq!(
        failed["kept_generation"], 0,
        "rolled back to generation 0: {failed}"
    );
    assert_eq!(count(&h, GIVING_UP), 0);
    load.wait_for_more(20, WAIT);
    assert_eq!(
        sorted(h.live_worker_pids()),
        old,
        "the old workers were replaced"
    );
    assert!(old.iter().all(|&p| process_state(p).is_some()));
    assert_version(&h, 1);

    write_file(code.path(), &module, &common::versioned_app(3));
    h.signal(libc::SIGHUP);
    let done = h.wait_record(RELOADED, |_| true);
    assert_eq!(done["generation"], 2, "{done}");
    for &pid in &old {
        wait_reaped(&h, pid);
    }
    assert_version(&h, 3);
    let new = sorted(h.live_worker_pids());
    assert!(new.len() == 2 && new.iter().all(|p| !old.contains(p)));
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    eprintln!(
        "broken-import reload: failed {:.1}s after it began; fixed reload took {}; load {stats:?}",
        seconds_between(reloading, &failed),
        text(&done, "duration")
    );
    assert_no_failures(&stats, "across a rolled-back and a good reload");
    assert!(min_ready_after_serving(&h.log.records()) >= 2);
    assert!(h.finish().success());
}

// ---- F10: scaling ----------------------------------------------------------------------------

/// The `to` of every "target worker count changed" record.
fn targets(h: &Herdsman) -> Vec<i64> {
    records_with(&h.log.lines(), SCALED)
        .iter()
        .map(|r| r["to"].as_i64().expect("to"))
        .collect()
}

/// Sends `sig` and waits for the target change it causes; returns the new target.
fn scale(h: &Herdsman, sig: i32) -> i64 {
    let seen = count(h, SCALED);
    h.signal(sig);
    let found = h.wait_records(SCALED, seen + 1);
    found[seen]["to"].as_i64().expect("to")
}

fn threads(pid: i32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// 200 signals alternating TTIN/TTOU as fast as they can be sent, then one TTIN on its own once
/// the storm has been acted on. Returns the target changes the storm caused and the final target.
fn storm(h: &Herdsman) -> (Vec<i64>, i64) {
    let before = count(h, SCALED);
    for i in 0..200 {
        signal(
            h.pid,
            if i % 2 == 0 {
                libc::SIGTTIN
            } else {
                libc::SIGTTOU
            },
        );
    }
    settle(h);
    let stormed = targets(h)[before..].to_vec();
    let last = targets(h).last().copied().expect("a target");
    let target = scale(h, libc::SIGTTIN);
    assert_eq!(target, last + 1, "the TTIN after the storm moved one step");
    assert!(
        targets(h).iter().all(|&t| t >= 1),
        "a target below one: {:?}",
        targets(h)
    );
    (stormed, target)
}

#[test]
fn ttin_ttou_step_clamp_at_one_and_converge_after_a_storm() {
    // A short graceful timeout bounds the cost of a worker that is retired but never told.
    let h = Herdsman::start(&[
        "-w",
        "2",
        "--graceful-timeout",
        "5s",
        "--no-access-log",
        "asgi_app:app",
    ]);
    h.wait_serving();
    for expected in 3..=5 {
        assert_eq!(scale(&h, libc::SIGTTIN), expected);
    }
    wait_converged(&h, 5, WAIT);
    assert_eq!(h.live_worker_pids().len(), 5);

    for expected in (1..=4).rev() {
        assert_eq!(scale(&h, libc::SIGTTOU), expected);
    }
    for _ in 0..6 {
        h.signal(libc::SIGTTOU);
    }
    settle(&h);
    assert_eq!(
        targets(&h),
        vec![3, 4, 5, 4, 3, 2, 1],
        "TTOU below one worker"
    );
    wait_converged(&h, 1, WAIT);
    assert_eq!(h.live_worker_pids().len(), 1);
    let (fds_before, threads_before) = (fd_count(h.pid), threads(h.pid));

    let started = Instant::now();
    let (stormed, target) = storm(&h);
    let serving = wait_converged(&h, target as usize, 2 * WAIT);
    let converged_in = started.elapsed();
    // A TTIN and a TTOU taken in one wakeup retire the worker the TTIN spawned, possibly before
    // its pid is recorded: it must still get SIGTERM, not run on until SIGKILL at the deadline.
    let killed = records_with(&h.log.lines(), "worker did not stop in time");
    assert!(
        killed.is_empty(),
        "workers retired by a scale-down were SIGKILLed at the graceful timeout: {killed:?}"
    );
    assert!(
        process_state(h.pid).is_some_and(|s| s != 'Z'),
        "the master died"
    );
    assert_eq!(serving.len() as i64, target);

    // Back to one worker, one step at a time, to compare the master's fds like for like.
    for expected in (1..target).rev() {
        assert_eq!(scale(&h, libc::SIGTTOU), expected);
    }
    wait_converged(&h, 1, WAIT);
    let (fds_after, threads_after) = (fd_count(h.pid), threads(h.pid));
    eprintln!(
        "storm: target changes {stormed:?} for 200 signals; final target {target}, converged \
         {converged_in:.1?} after the storm began; master fds {fds_before} -> {fds_after}, \
         threads {threads_before} -> {threads_after}"
    );
    assert_eq!(
        fds_after, fds_before,
        "master fd count changed over the storm"
    );
    assert_eq!(threads_after, threads_before, "master thread count changed");
    assert!(h.finish().success());
}

// ---- recycling -------------------------------------------------------------------------------

/// The recycle records with `reason`, once `n` of those workers have been reaped.
fn wait_recycled(h: &Herdsman, reason: &str, n: usize) -> Vec<Value> {
    h.log.wait_for(
        &format!("{n} workers recycled for {reason} and reaped"),
        2 * WAIT,
        |lines| {
            let records: Vec<Value> = lines.iter().filter_map(|l| parse_record(l)).collect();
            let recycled: Vec<Value> = records
                .iter()
                .filter(|r| message(r).starts_with(RECYCLING) && text(r, "reason") == reason)
                .cloned()
                .collect();
            let reaped = recycled
                .iter()
                .filter(|r| records.iter().any(|e| is_exit(e) && pid_of(e) == pid_of(r)))
                .count();
            (reaped >= n).then_some(recycled)
        },
    )
}

/// For each recycled worker: a replacement became ready after it was marked and before it was
/// retired, it was retired for `reason`, and it exited on its own (not killed at its deadline).
fn assert_replaced_before_retired(records: &[Value], recycled: &[Value], reason: &str) {
    let at = |pred: &dyn Fn(&Value) -> bool| records.iter().position(pred);
    for r in recycled {
        let pid = pid_of(r);
        let marked = at(&|x| message(x).starts_with(RECYCLING) && pid_of(x) == pid)
            .expect("the recycle record");
        let Some(retired) = at(&|x| message(x) == RETIRING && pid_of(x) == pid) else {
            continue; // still serving until its replacement is ready
        };
        assert_eq!(
            text(&records[retired], "reason"),
            reason,
            "{}",
            records[retired]
        );
        assert!(
            records[marked..retired]
                .iter()
                .any(|x| message(x) == READY && pid_of(x) != pid),
            "worker {pid:?} was retired before a replacement was ready"
        );
        if let Some(exit) = records.iter().find(|x| is_exit(x) && pid_of(x) == pid) {
            assert_eq!(message(exit), "worker exited", "{exit}");
            assert_eq!(text(exit, "status"), "exit code 0", "{exit}");
        }
    }
}

/// Runs `args` under load until `n` workers were recycled for `reason` and reaped; checks that no
/// request failed and that ready workers never dropped below two. Returns the recycle records
/// and the whole log.
fn recycles_under_load(args: &[&str], reason: &str, n: usize) -> (Vec<Value>, Vec<Value>) {
    let h = Herdsman::start(args);
    h.wait_serving();
    let load = Load::start(h.addr(), 2, 2, &["/", "/slow?s=0.05", "/"]);
    let recycled = wait_recycled(&h, reason, n);
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    let records = h.log.records();
    let retired = records
        .iter()
        .filter(|r| message(r) == RETIRING && text(r, "reason") == reason)
        .count();
    eprintln!(
        "{reason}: {} recycled, {retired} retired; load {stats:?}",
        recycled.len()
    );
    assert_no_failures(&stats, &format!("while recycling for {reason}"));
    assert!(recycled.len() >= n);
    assert_replaced_before_retired(&records, &recycled, reason);
    assert!(
        min_ready_after_serving(&records) >= 2,
        "ready workers dropped below 2 while recycling for {reason}"
    );
    assert!(h.finish().success());
    (recycled, records)
}

#[test]
fn max_requests_recycles_workers_under_load_without_losing_capacity() {
    let (recycled, _) = recycles_under_load(
        &[
            "-w",
            "2",
            "--max-requests",
            "40",
            "--max-requests-jitter",
            "10",
            "--no-access-log",
            "asgi_app:app",
        ],
        "max-requests",
        2,
    );
    let counts: Vec<i64> = recycled
        .iter()
        .filter_map(|r| r["requests"].as_i64())
        .collect();
    eprintln!("requests served when marked: {counts:?}");
    assert_eq!(counts.len(), recycled.len());
    assert!(
        counts.iter().all(|&n| n >= 40),
        "recycled too early: {counts:?}"
    );
    // The worker reports the moment it reaches its limit (40 + jitter up to 10), not at its next
    // heartbeat; a little slack covers requests served before the `report_at` message arrived.
    assert!(
        counts.iter().all(|&n| n <= 55),
        "recycled late, past max_requests + jitter: {counts:?}"
    );
}

#[test]
fn memory_limit_recycles_workers_under_load_without_losing_capacity() {
    const LIMIT: i64 = 5 << 20;
    let (recycled, records) = recycles_under_load(
        &[
            "-w",
            "2",
            "--max-worker-memory",
            "5MiB",
            "--memory-check-interval",
            "200ms",
            "--no-access-log",
            "asgi_app:app",
        ],
        "memory",
        2,
    );
    let pss: Vec<i64> = recycled.iter().filter_map(|r| r["pss"].as_i64()).collect();
    let after_ready: Vec<f64> = recycled
        .iter()
        .filter_map(|r| {
            let ready = records
                .iter()
                .find(|x| message(x) == READY && pid_of(x) == pid_of(r))?;
            Some(seconds_between(ready, r))
        })
        .collect();
    eprintln!("PSS when marked: {pss:?} bytes; seconds from ready to marked: {after_ready:.2?}");
    assert_eq!(
        pss.len(),
        recycled.len(),
        "every memory recycle says its PSS"
    );
    assert!(
        pss.iter().all(|&b| b > LIMIT),
        "recycled under the limit: {pss:?}"
    );
}

#[test]
fn lifetime_recycles_workers_under_load_without_losing_capacity() {
    let (recycled, records) = recycles_under_load(
        &[
            "-w",
            "2",
            "--max-worker-lifetime",
            "2s",
            "--max-worker-lifetime-jitter",
            "1s",
            "--no-access-log",
            "asgi_app:app",
        ],
        "lifetime",
        2,
    );
    let ages: Vec<f64> = recycled
        .iter()
        .map(|r| {
            let ready = records
                .iter()
                .find(|x| message(x) == READY && pid_of(x) == pid_of(r))
                .expect("a recycled worker was ready first");
            seconds_between(ready, r)
        })
        .collect();
    eprintln!("seconds from ready to marked for lifetime: {ages:.2?}");
    // Timestamps have microsecond resolution and both come from the master's clock.
    assert!(
        ages.iter().all(|&s| s >= 2.0 - 0.001),
        "recycled before its lifetime: {ages:?}"
    );
}

/// Three samples at the configured interval (the documented rule) take well under a second at
/// 100ms; 1.2 s leaves room for a loaded machine. A master that samples only when something else
/// wakes it (a heartbeat, once a second) takes about two seconds.
#[test]
fn memory_is_sampled_at_the_configured_interval() {
    let h = Herdsman::start(&[
        "-w",
        "1",
        "--max-worker-memory",
        "5MiB",
        "--memory-check-interval",
        "100ms",
        "--no-access-log",
        "asgi_app:app",
    ]);
    let pid = h.wait_serving()[0] as i64;
    let ready = h.wait_record(READY, |r| pid_of(r) == Some(pid));
    let marked = h.wait_record(RECYCLING, |r| pid_of(r) == Some(pid));
    let after = seconds_between(&ready, &marked);
    eprintln!("3 samples at 100ms: marked {after:.2}s after ready");
    assert_eq!(text(&marked, "reason"), "memory");
    assert!(
        after < 1.2,
        "3 samples 100ms apart took {after:.2}s: memory is not sampled at the configured interval"
    );
    assert!(h.finish().success());
}

// ---- a crash-looping slot ---------------------------------------------------------------------

/// Failed boots the master will retry (they say when), in order.
fn retried_failures(h: &Herdsman) -> Vec<Value> {
    h.log
        .records()
        .into_iter()
        .filter(|r| r.get("retry_in").is_some())
        .collect()
}

/// Two workers serve `fail_if_marker`; with the marker present one is SIGKILLed, so its slot fails
/// at every attempt, backing off, while the survivor serves under load; the master must not give
/// up. Then the marker goes and the slot heals.
#[test]
fn crash_looping_slot_backs_off_while_the_other_worker_serves() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let marker = scratch.path().join("marker");
    let marker_env = format!("MARKER={}", marker.display());
    let h = Herdsman::start(&["-w", "2", "-e", &marker_env, "fail_if_marker:app"]);
    let pids = sorted(h.wait_serving());
    assert_eq!(pids.len(), 2);
    write_file(scratch.path(), "marker", "");
    let (victim, survivor) = (pids[0], pids[1]);
    signal(victim, libc::SIGKILL);
    // A crash, or (right after becoming ready) a failed boot: either way an error naming it.
    h.wait_record("", |r| {
        pid_of(r) == Some(victim as i64) && text(r, "level") == "ERROR"
    });
    let load = Load::start(h.addr(), 2, 2, &["/", "/slow?s=0.05"]);

    h.wait_records(BOOT_FAILED, 3);
    let imports = records_with(&h.log.lines(), BOOT_FAILED);
    assert!(
        imports.iter().all(|r| message(r).contains("import error")),
        "{imports:?}"
    );
    let failed = retried_failures(&h);
    let retry: Vec<&str> = failed.iter().map(|r| text(r, "retry_in")).collect();
    assert_eq!(
        retry[..3],
        ["1s", "2s", "4s"],
        "backoff does not double: {failed:?}"
    );
    load.wait_for_more(20, WAIT);
    assert!(
        process_state(h.pid).is_some_and(|s| s != 'Z'),
        "the master died"
    );
    assert_eq!(
        count(&h, GIVING_UP),
        0,
        "the master gave up on a serving pool"
    );
    for value in get_json(&h, "/", 4) {
        assert_eq!(value["pid"], survivor, "only the survivor can answer");
    }

    std::fs::remove_file(&marker).expect("remove marker");
    let healed = h.wait_record(READY, |r| {
        pid_of(r).is_some_and(|p| !pids.contains(&(p as i32)))
    });
    let live = serving_pids(&h.log.records());
    assert_eq!(live.len(), 2, "{live:?}");
    assert!(live.contains(&survivor));
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    let all = retried_failures(&h);
    eprintln!(
        "crash loop: retry_in {:?}; healed {:.1}s after the last failure; load {stats:?}",
        all.iter().map(|r| text(r, "retry_in")).collect::<Vec<_>>(),
        seconds_between(all.last().expect("a failure"), &healed)
    );
    assert_no_failures(&stats, "while one slot crash-looped");
    assert!(h.finish().success());
}

/// `--reload` (development): saving a .py file under the watched directory reloads through the
/// readiness-gated path: the new code serves once its workers are ready; an edit that breaks the
/// import leaves the workers of the last good code serving, and the log says why.
#[test]
fn reload_flag_picks_up_an_edit_and_keeps_serving_through_a_broken_one() {
    let code = tempfile::tempdir().expect("temp dir");
    let module = format!("{APP_MODULE}.py");
    write_file(code.path(), &module, &common::versioned_app(1));
    let dir = code.path().to_str().expect("utf-8 path");
    let app = format!("{APP_MODULE}:app");
    let h = Start::new(&[
        "-w",
        "1",
        "--startup-attempts",
        "1",
        "--reload",
        "--reload-dir",
        dir,
        "--reload-include",
        "*.html",
        &app,
    ])
    .env("PYTHONPATH", dir)
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .spawn();
    let old = h.wait_serving();
    h.wait_record("reload: watching the source for changes", |_| true);
    assert_version(&h, 1);

    write_file(code.path(), &module, &common::versioned_app(2));
    let changed = h.wait_record("reload: the source changed", |_| true);
    assert!(
        text(&changed, "path").ends_with(&module),
        "the changed file is named: {changed}"
    );
    h.wait_records(RELOADED, 1);
    for &pid in &old {
        wait_reaped(&h, pid);
    }
    assert_version(&h, 2);

    // A template matched by --reload-include (uvicorn's): the same reload, naming the file.
    write_file(code.path(), "index.html", "<p>v2</p>\n");
    h.wait_records(RELOADED, 2);
    let changed = h.wait_records("reload: the source changed", 2);
    assert!(
        text(&changed[1], "path").ends_with("index.html"),
        "the template is named: {}",
        changed[1]
    );

    write_file(
        code.path(),
        &module,
        "raise RuntimeError('this edit broke the import')\n",
    );
    let failed = h.wait_record(RELOAD_FAILED, |_| true);
    assert!(
        message(&failed).contains("could not be imported"),
        "{failed}"
    );
    assert_version(&h, 2);
    assert!(h.finish().success());
}

// ---- the readiness probe (ready_path) with a real Django project ------------------------------

/// A project made by Django's own `startproject`, with a `/healthz` view in its URLconf; returns
/// the directory that holds `manage.py` (what goes on sys.path).
fn start_django_project(root: &std::path::Path) -> std::path::PathBuf {
    let dir = root.join("site");
    std::fs::create_dir(&dir).expect("project dir");
    let made = std::process::Command::new(common::python())
        .args(["-m", "django", "startproject", "readyproj"])
        .arg(&dir)
        .output()
        .expect("python -m django startproject");
    assert!(made.status.success(), "startproject: {made:?}");
    let package = dir.join("readyproj");
    // As deployed: no debug pages (with DEBUG, Django's 500 page itself fails on a broken URLconf).
    let settings = package.join("settings.py");
    let mut text = std::fs::read_to_string(&settings).expect("settings.py");
    text.push_str("\nDEBUG = False\nALLOWED_HOSTS = ['localhost', '127.0.0.1']\n");
    std::fs::write(&settings, text).expect("write settings.py");
    write_file(
        &package,
        "views.py",
        "from django.http import HttpResponse\n\n\ndef healthz(request):\n    return HttpResponse('ok')\n",
    );
    write_urls(&package, "views");
    dir
}

/// The project's URLconf, routing `/healthz` to `healthz` in module `views`. Django imports the
/// URLconf, and through it the views, on the first request: never at the app's import.
fn write_urls(package: &std::path::Path, views: &str) {
    let urls = format!(
        "from django.urls import path\n\nfrom . import {views}\n\nurlpatterns = [path('healthz', {views}.healthz)]\n"
    );
    write_file(package, "urls.py", &urls);
}

/// Django loads its views on the first request, so a deploy whose view module no longer imports
/// passes the app's import and would be taken as ready. With `--ready-path` the new worker calls
/// its own app first: the probe's 500 fails the boot (kind `readiness`) and the reload rolls back,
/// the old worker serving throughout. Without the probe the same broken project becomes ready
/// and answers 500: the probe is what catches it.
fn django_readiness(engine: Engine, app: &str) {
    let root = tempfile::tempdir().expect("temp dir");
    let project = start_django_project(root.path());
    let pythonpath = project.to_str().expect("utf-8 path");
    let args = [
        "-w",
        "1",
        "--startup-attempts",
        "1",
        "--ready-path",
        "/healthz",
        "--no-access-log",
        app,
    ];
    let serve = |args: &[&str]| {
        Start::new(args)
            .engine(engine)
            .env("PYTHONPATH", pythonpath)
            .env("DJANGO_SETTINGS_MODULE", "readyproj.settings")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .spawn()
    };
    let h = serve(&args);
    let old = h.wait_serving();
    let resp = get(h.addr(), "/healthz").expect("GET /healthz");
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "{resp:?}");

    let package = project.join("readyproj");
    write_file(
        &package,
        "broken.py",
        "raise RuntimeError('this deploy broke a view')\n",
    );
    write_urls(&package, "broken");
    h.signal(libc::SIGHUP);
    let failed = h.wait_record(RELOAD_FAILED, |_| true);
    let boot = h.wait_record(BOOT_FAILED, |_| true);
    // Django's own 500 handling resolves the URLconf again, so the exception reaches the server
    // (which would answer 500 to a client): the probe reports it with its traceback.
    let said = message(&boot);
    let first = said.lines().next().unwrap_or_default();
    assert!(
        first.contains("(readiness probe failed)")
            && first.contains("GET /healthz raised RuntimeError: this deploy broke a view"),
        "{first}"
    );
    assert!(said.contains("broken.py"), "the traceback names the module");
    assert_eq!(failed["kept_generation"], 0, "{failed}");
    assert_eq!(h.live_worker_pids(), old, "the old worker keeps serving");
    let resp = get(h.addr(), "/healthz").expect("GET /healthz");
    assert_eq!(resp.status, 200, "the old worker answers: {resp:?}");
    assert!(h.finish().success());

    // The same broken project without the probe: ready, and every request fails.
    let h = serve(&["-w", "1", "--no-access-log", app]);
    h.wait_serving();
    let resp = get(h.addr(), "/healthz").expect("GET /healthz");
    assert_eq!(resp.status, 500, "{resp:?}");
    assert!(h.finish().success());
}

both_engines! {
    fn a_django_view_that_breaks_fails_the_readiness_probe_and_the_reload_rolls_back(engine: Engine) {
        django_readiness(engine, "readyproj.wsgi:application");
    }
}

#[test]
fn an_asgi_django_app_is_probed_after_lifespan_startup() {
    django_readiness(Engine::Uvicorn, "readyproj.asgi:application");
}

/// F4 during a reload: the new generation's workers hang at import (slow_if_marker with the
/// marker made before SIGHUP) past `--boot-timeout`: each is dumped and killed as a boot failure,
/// retried `--startup-attempts` times, then the reload fails back to the old generation, whose
/// workers served every request under load throughout.
#[test]
fn f4_new_workers_that_never_get_ready_roll_the_reload_back_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("slow");
    let marker_env = format!("SLOW_MARKER={}", marker.display());
    let h = Herdsman::start(&[
        "-w",
        "2",
        "--boot-timeout",
        "2s",
        "--startup-attempts",
        "2",
        "-e",
        &marker_env,
        "-e",
        "SLOW_SECONDS=120",
        "slow_if_marker:app",
    ]);
    let old = sorted(h.wait_serving());
    let load = Load::start(h.addr(), 2, 2, &["/"]);
    load.wait_for_more(20, WAIT);
    std::fs::write(&marker, b"").expect("marker");
    h.signal(libc::SIGHUP);
    let failed = h.wait_record(RELOAD_FAILED, |_| true);
    assert_eq!(failed["kept_generation"], 0, "rolled back: {failed}");
    let timeouts = h
        .log
        .records()
        .iter()
        .filter(|r| message(r).starts_with("worker did not become ready within the boot timeout"))
        .count();
    assert!(
        timeouts >= 2,
        "each hung boot killed at the boot timeout ({timeouts})"
    );
    assert!(count(&h, BOOT_FAILED) >= 2, "counted as boot failures");
    load.wait_for_more(20, WAIT);
    let stats = load.stop();
    eprintln!("F4 during a reload, under load: {stats:?}");
    assert_eq!(stats.failed, 0, "{:?}", stats.errors);
    assert_eq!(
        sorted(h.live_worker_pids()),
        old,
        "the old workers still serve"
    );
    assert_eq!(count(&h, GIVING_UP), 0);
    assert!(h.finish().success());
}
