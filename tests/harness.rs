//! The harness checks itself: the leftover check finds a process the master never logged (a
//! worker's grandchild reparented past the master) and is not fooled by zombies; a skip is
//! recorded where scripts/test.sh reads it.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::http::get;
use common::{process_state, Herdsman, SKIP_RECORD_VAR};

/// Asks an `orphans_app` worker for `n` orphans that live `linger` seconds; returns their pids.
fn orphans(h: &Herdsman, n: usize, linger: f64) -> Vec<i32> {
    let resp = get(h.addr(), &format!("/orphans?n={n}&s={linger}")).expect("GET /orphans");
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()["orphans"]
        .as_array()
        .expect("orphans")
        .iter()
        .map(|p| p.as_i64().expect("pid") as i32)
        .collect()
}

#[test]
fn a_process_the_master_never_logged_is_a_leftover_named_and_killed() {
    let h = Herdsman::start(&["-w", "1", "orphans_app:app"]);
    h.wait_serving();
    let lingering = orphans(&h, 1, 300.0)[0];
    assert!(process_state(lingering).is_some_and(|s| s != 'Z'));
    assert!(
        !h.all_worker_pids().contains(&lingering),
        "the master logged the orphan as a worker: this test proves nothing"
    );
    let failed = catch_unwind(AssertUnwindSafe(|| h.finish()))
        .expect_err("finish() passed with a live orphan of the master's worker");
    let text = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("processes left behind by the master")
            && text.contains(&lingering.to_string()),
        "{text}"
    );
    assert!(text.contains("python"), "the command line is named: {text}");
    // Killed by pid and reaped (it was reparented to this subreaper test process).
    assert!(
        common::wait_pid_exit(lingering, std::time::Instant::now() + common::WAIT),
        "the leftover was not killed"
    );
    assert_eq!(
        process_state(lingering),
        None,
        "the leftover was not reaped"
    );
}

#[test]
fn orphans_that_already_exited_are_not_leftovers() {
    let h = Herdsman::start(&["-w", "1", "orphans_app:app"]);
    h.wait_serving();
    // Twenty orphans that exit at once: by the time the master stops, some are zombies nobody
    // reaped yet (the master's or this process's), none is alive.
    let pids = orphans(&h, 20, 0.0);
    assert_eq!(pids.len(), 20);
    assert!(h.finish().success());
}

/// Run only by `a_skip_is_recorded_for_the_runner`, as a child test process.
#[test]
#[ignore = "run by a_skip_is_recorded_for_the_runner"]
fn skipping_test() {
    common::skip("the reason, told");
}

#[test]
fn a_skip_is_recorded_for_the_runner() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("skips");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "skipping_test", "--ignored", "--nocapture"])
        .env(SKIP_RECORD_VAR, &record)
        .env_remove("CI")
        .output()
        .expect("run the test binary");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&record).expect("the skip record");
    assert_eq!(text, "SKIPPED harness::skipping_test: the reason, told\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains(text.trim()));

    // Under CI, a skip nobody records fails the test.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "skipping_test", "--ignored"])
        .env_remove(SKIP_RECORD_VAR)
        .env("CI", "true")
        .output()
        .expect("run the test binary");
    assert!(!out.status.success(), "{out:?}");
}
