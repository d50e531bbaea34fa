//! In-place binary upgrade (SIGUSR2) with real processes: the master is started from a copy of
//! the binary in a scratch directory, which the tests replace, remove or break before sending
//! SIGUSR2. Checked from the outside (every request answered, the master's pid and process
//! unchanged, the workers replaced) and from the master's own log; and, for every way the new
//! binary can be unusable, that the running master keeps serving with the same workers, says
//! why, and upgrades fine once the binary is good again.

mod common;
#[path = "common/load.rs"]
mod load;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{http, message, Herdsman, Start, WAIT};
use load::Load;
use serde_json::Value;

/// Installs the binary cargo built at `dir/herdsman` (atomically: a running master may have the
/// old file open for exec), and returns that path.
fn install(dir: &Path) -> PathBuf {
    let temp = dir.join("herdsman.new");
    std::fs::copy(common::binary(), &temp).expect("copy the binary");
    replace(dir, &temp)
}

/// Puts `text` with `mode` at `dir/herdsman`.
fn install_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let temp = dir.join("herdsman.new");
    std::fs::write(&temp, text).expect("write");
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(mode)).expect("chmod");
    replace(dir, &temp)
}

fn replace(dir: &Path, temp: &Path) -> PathBuf {
    let path = dir.join("herdsman");
    std::fs::rename(temp, &path).expect("rename into place");
    path
}

/// A master started from `dir/herdsman`.
fn start(dir: &Path, args: &[&str]) -> Herdsman {
    let path = install(dir);
    Start::new(args).binary(path).spawn()
}

fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// When the process started (clock ticks since boot): a different process under the same pid
/// would have another.
fn start_time(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    after
        .split_whitespace()
        .nth(19)
        .and_then(|t| t.parse().ok())
        .expect("starttime")
}

fn sorted(mut pids: Vec<i32>) -> Vec<i32> {
    pids.sort_unstable();
    pids
}

/// Pids of the workers the master logged ready in `generation`.
fn ready_in(h: &Herdsman, generation: u64) -> Vec<i32> {
    common::records_with(&h.log.lines(), "worker ready")
        .iter()
        .filter(|r| r["generation"].as_u64() == Some(generation))
        .filter_map(|r| common::field_i64(r, "pid"))
        .map(|pid| pid as i32)
        .collect()
}

/// Waits until every worker the master retired has exited.
fn wait_retired_exits(h: &Herdsman) {
    h.log
        .wait_for("every retired worker's exit", WAIT, |lines| {
            let records: Vec<Value> = lines
                .iter()
                .filter_map(|l| common::parse_record(l))
                .collect();
            let exited = |pid: i64| {
                records
                    .iter()
                    .any(|r| r["pid"].as_i64() == Some(pid) && r.get("status").is_some())
            };
            records
                .iter()
                .filter(|r| message(r) == "retiring worker")
                .filter_map(|r| r["pid"].as_i64())
                .all(exited)
                .then_some(())
        });
}

/// The master still runs, with exactly the workers it had, and answers from one of them.
fn assert_serving_with(h: &mut Herdsman, workers: &[i32]) {
    assert!(!h.has_exited(), "the master exited:\n{}", h.log.text());
    assert_eq!(sorted(h.live_worker_pids()), sorted(workers.to_vec()));
    for &pid in workers {
        assert!(
            common::process_state(pid).is_some_and(|s| s != 'Z'),
            "worker {pid} is gone"
        );
    }
    let response = http::get(h.addr(), "/").expect("answered");
    assert_eq!(response.status, 200);
    assert!(
        workers.contains(&response.pid()),
        "served by a known worker"
    );
}

/// Sends SIGUSR2 and waits for the `n`th "upgrade complete"; returns that record.
fn upgrade(h: &Herdsman, n: usize) -> Value {
    h.signal(libc::SIGUSR2);
    let done = h.wait_records("upgrade complete", n);
    done[n - 1].clone()
}

#[test]
fn ten_upgrades_under_load_fail_no_request_and_keep_the_master_process() {
    const UPGRADES: usize = 10;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let h = start(
        scratch.path(),
        &["-w", "2", "--graceful-timeout", "10s", "asgi_app:app"],
    );
    let mut previous = h.wait_serving();
    let started = start_time(h.pid);
    let load = Load::start(h.addr(), 2, 2, &["/", "/slow?s=0.2", "/", "/env?k=HOME"]);
    load.wait_for_more(20, WAIT);
    let fds_before = fd_count(h.pid);
    for i in 1..=UPGRADES {
        let done = upgrade(&h, i);
        assert_eq!(done["pid"].as_i64(), Some(h.pid as i64), "{done}");
        let generation = done["generation"].as_u64().expect("generation");
        assert_eq!(generation, i as u64);
        let current = ready_in(&h, generation);
        assert_eq!(
            current.len(),
            2,
            "two new workers in generation {generation}"
        );
        assert!(
            current.iter().all(|pid| !previous.contains(pid)),
            "upgrade {i}: every worker replaced: {previous:?} -> {current:?}"
        );
        previous = current;
        load.wait_for_more(5, WAIT);
    }
    let stats = load.stop();
    wait_retired_exits(&h);
    let fds_after = fd_count(h.pid);
    eprintln!("upgrade load: {stats:?}; master fds {fds_before} -> {fds_after}");
    assert_eq!(
        stats.failed, 0,
        "failed requests across {UPGRADES} upgrades: {:?}",
        stats.errors
    );
    assert!(stats.ok > 0);
    // The same process all along: same pid, same start time, and each new image said so.
    assert_eq!(
        start_time(h.pid),
        started,
        "the master process was not replaced"
    );
    let images = h.wait_records("herdsman upgraded in place", UPGRADES);
    assert!(images
        .iter()
        .all(|r| r["pid"].as_i64() == Some(h.pid as i64)));
    assert_eq!(
        fds_after, fds_before,
        "master fd count changed over {UPGRADES} upgrades"
    );
    assert_eq!(sorted(h.live_worker_pids()), sorted(previous));
    assert!(h.finish().success());
}

/// Starts a master from `scratch/herdsman`, breaks the binary with `sabotage`, sends SIGUSR2
/// and waits for the error record starting with `error`; checks that nothing changed; then
/// installs the real binary again and checks that an upgrade now works.
fn refused_then_fine(
    sabotage: impl FnOnce(&Path),
    error: &str,
    said: &str,
) -> (Herdsman, tempfile::TempDir) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut h = start(scratch.path(), &["-w", "2", "asgi_app:app"]);
    let workers = h.wait_serving();
    sabotage(scratch.path());
    h.signal(libc::SIGUSR2);
    let record = h.wait_record(error, |_| true);
    assert!(message(&record).contains(said), "{record}");
    assert_eq!(record["level"].as_str(), Some("ERROR"), "{record}");
    assert_serving_with(&mut h, &workers);
    assert!(
        h.log
            .records()
            .iter()
            .all(|r| message(r)
                != "herdsman upgraded in place: adopting the listeners and the workers"),
        "no exec happened"
    );
    install(scratch.path());
    let done = upgrade(&h, 1);
    assert_eq!(done["pid"].as_i64(), Some(h.pid as i64));
    let current = ready_in(&h, 1);
    assert_eq!(current.len(), 2);
    assert!(current.iter().all(|pid| !workers.contains(pid)));
    (h, scratch)
}

#[test]
fn a_missing_binary_is_refused_and_the_master_keeps_serving() {
    let (h, _scratch) = refused_then_fine(
        |dir| std::fs::remove_file(dir.join("herdsman")).expect("remove"),
        "upgrade refused",
        "is missing",
    );
    assert!(h.finish().success());
}

#[test]
fn a_binary_that_is_not_executable_is_refused() {
    let (h, _scratch) = refused_then_fine(
        |dir| {
            install_file(dir, "\x7fELF not really\n", 0o644);
        },
        "upgrade refused",
        "is not executable",
    );
    assert!(h.finish().success());
}

#[test]
fn a_binary_whose_check_fails_is_refused_with_what_it_said() {
    let (h, _scratch) = refused_then_fine(
        |dir| {
            let script =
                "#!/bin/sh\necho \"no upgrade for you: $1 $HERDSMAN_UPGRADE_CHECK\" >&2\nexit 1\n";
            install_file(dir, script, 0o755);
        },
        "upgrade refused",
        "no upgrade for you: check 2",
    );
    assert!(h.finish().success());
}

/// A downgrade to a binary that does not read the handover format this one writes (an older
/// binary that reads only version 1, when this one writes 2) is refused at the check, with the
/// formats that binary reads in the log. The older binary is played by the real one, asked by
/// its wrapper whether it reads a format newer than any it knows: the same refusal a version 1
/// reader gives to version 2.
#[test]
fn a_binary_that_does_not_read_the_handover_format_is_refused() {
    let (h, _scratch) = refused_then_fine(
        |dir| {
            let real = dir.join("herdsman-older");
            std::fs::copy(common::binary(), &real).expect("copy the binary");
            let script = format!(
                "#!/bin/sh\nexport HERDSMAN_UPGRADE_CHECK=$((HERDSMAN_UPGRADE_CHECK + 1000))\nexec {} \"$@\"\n",
                real.display()
            );
            install_file(dir, &script, 0o755);
        },
        "upgrade refused",
        "this binary reads handover formats",
    );
    assert!(h.finish().success());
}

/// A new binary that passes its check but then cannot take over (here its handover fd is lost on
/// the way, by a wrapper around the real binary) executes the previous binary again, in the same
/// process, which takes the same handover and keeps the workers serving, and says why. Before,
/// the master exited and every worker with it.
#[test]
fn a_new_binary_that_cannot_take_over_goes_back_to_the_previous_one_with_the_workers() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let mut h = start(scratch.path(), &["-w", "2", "asgi_app:app"]);
    let workers = h.wait_serving();
    let started = start_time(h.pid);
    let real = scratch.path().join("herdsman-real");
    std::fs::copy(common::binary(), &real).expect("copy the binary");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = check ]; then exec {real} \"$@\"; fi\nexport HERDSMAN_UPGRADE_FD=999\nexec {real} \"$@\"\n",
        real = real.display()
    );
    install_file(scratch.path(), &script, 0o755);
    h.signal(libc::SIGUSR2);
    h.wait_record("upgrade: the new binary passed its check", |_| true);
    let failed = h.wait_record("upgrade failed: the new binary could not take over", |_| {
        true
    });
    assert_eq!(failed["level"].as_str(), Some("ERROR"), "{failed}");
    assert!(message(&failed).contains("fd 999 is not open"), "{failed}");
    assert_eq!(start_time(h.pid), started, "the same master process");
    assert_serving_with(&mut h, &workers);
    assert!(
        h.log
            .records()
            .iter()
            .all(|r| !message(r).starts_with("upgrade complete")),
        "no rollout after a rollback"
    );
    let load = Load::start(h.addr(), 2, 2, &["/"]);
    load.wait_for_more(20, WAIT);
    assert_eq!(load.stop().failed, 0);

    // Fixed: the next upgrade goes through.
    install(scratch.path());
    let done = upgrade(&h, 1);
    assert_eq!(done["pid"].as_i64(), Some(h.pid as i64));
    assert!(h.finish().success());
}

#[test]
fn new_workers_that_fail_to_boot_leave_the_adopted_ones_serving() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let marker = scratch.path().join("marker");
    let marker_env = format!("MARKER={}", marker.display());
    let mut h = start(
        scratch.path(),
        &["-w", "2", "-e", &marker_env, "fail_if_marker:app"],
    );
    let workers = h.wait_serving();
    common::write_file(scratch.path(), "marker", "");
    h.signal(libc::SIGUSR2);
    let failed = h.wait_record("upgrade failed", |_| true);
    assert!(
        message(&failed).contains("the previous workers keep serving"),
        "{failed}"
    );
    assert_eq!(
        failed["pid"].as_i64(),
        Some(h.pid as i64),
        "the new image said it"
    );
    h.wait_record("reload failed", |_| true);
    assert_serving_with(&mut h, &workers);
    std::fs::remove_file(&marker).expect("remove marker");
    let done = upgrade(&h, 1);
    let generation = done["generation"].as_u64().expect("generation");
    let current = ready_in(&h, generation);
    assert_eq!(current.len(), 2);
    assert!(current.iter().all(|pid| !workers.contains(pid)));
    assert!(h.finish().success());
}

#[test]
fn a_second_upgrade_while_one_is_under_way_is_refused() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let marker = scratch.path().join("slow");
    let marker_env = format!("SLOW_MARKER={}", marker.display());
    let h = start(
        scratch.path(),
        &["-w", "1", "-e", &marker_env, "slow_if_marker:app"],
    );
    h.wait_serving();
    common::write_file(scratch.path(), "slow", "");
    h.signal(libc::SIGUSR2);
    // The new image runs and its first new worker takes seconds to boot.
    h.wait_record("upgrade: replacing the workers", |_| true);
    h.signal(libc::SIGUSR2);
    let refused = h.wait_record("upgrade refused", |_| true);
    assert!(
        message(&refused).contains("still replacing the workers"),
        "{refused}"
    );
    h.wait_records("upgrade complete", 1);
    assert_eq!(
        h.log
            .records()
            .iter()
            .filter(|r| message(r).starts_with("herdsman upgraded in place"))
            .count(),
        1,
        "the refused request did not exec"
    );
    std::fs::remove_file(&marker).expect("remove marker");
    upgrade(&h, 2);
    assert!(h.finish().success());
}

#[test]
fn captured_output_of_adopted_workers_keeps_reaching_the_log() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let h = start(
        scratch.path(),
        &[
            "-w",
            "1",
            "--capture-output",
            "--log-level",
            "debug",
            "asgi_app:app",
        ],
    );
    let old = h.wait_serving()[0];
    upgrade(&h, 1);
    // The adopted worker is retired after the exec: its last words (debug records) come through
    // the pipe the new image took over, as records naming it.
    let last = |text: &'static str| {
        h.wait_record("", move |r| {
            r["pid"] == old && r["worker"] == 1 && message(r).starts_with(text)
        })
    };
    last("stopping (SIGTERM)");
    last("Finished server process");
    assert!(h.finish().success());
}

/// `ps`'s view of a process: its command line as /proc shows it (NULs as spaces, trimmed), and
/// its command name.
fn title(pid: i32) -> (String, String) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    (cmdline.trim().to_string(), comm.trim().to_string())
}

/// `-n/--name` (gunicorn's): the master, the zygote and every worker show `herdsman: ROLE
/// [NAME]` in `ps` and NAME as their command name; the title covers the command line the master
/// was started with, and an in-place upgrade still re-executes with that original command line
/// (the new image reads the same options, names itself again, and keeps serving).
#[test]
fn process_titles_name_every_process_and_survive_an_upgrade() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let name = "shop frontend";
    let mut h = start(
        scratch.path(),
        &["-w", "2", "--spawn", "zygote", "-n", name, "asgi_app:app"],
    );
    let workers = h.wait_serving();
    let master = h.pid;
    let master_title = format!("herdsman: master [{name}]");
    assert_eq!(title(master), (master_title.clone(), name.to_string()));
    for &pid in &workers {
        assert_eq!(
            title(pid),
            (format!("herdsman: worker [{name}]"), name.to_string())
        );
    }
    let zygotes: Vec<i32> = common::children_of(master)
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| title(*pid).0 == format!("herdsman: zygote [{name}]"))
        .collect();
    assert_eq!(zygotes.len(), 1, "one zygote titled as such");

    upgrade(&h, 1);
    wait_retired_exits(&h);
    assert_eq!(
        title(master),
        (master_title, name.to_string()),
        "titled again after the upgrade"
    );
    let workers = h.live_worker_pids();
    assert_eq!(workers.len(), 2);
    for &pid in &workers {
        assert_eq!(title(pid).0, format!("herdsman: worker [{name}]"));
    }
    assert_serving_with(&mut h, &workers);
    assert!(h.finish().success());
}

/// The zygote across upgrades (`--spawn zygote --preload`, SIGUSR2 twice under load): every
/// request answered; each upgrade starts a zygote of its own, the new workers are forked from
/// it (children of the master, which stays the same process), and the old zygotes are gone,
/// reaped, not left behind as zombies or orphans.
#[test]
fn upgrades_with_a_zygote_fork_the_new_workers_from_a_new_zygote_and_fail_no_request() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let h = start(
        scratch.path(),
        &["-w", "2", "--spawn", "zygote", "--preload", "asgi_app:app"],
    );
    h.wait_serving();
    let started = start_time(h.pid);
    let load = Load::start(h.addr(), 2, 2, &["/", "/slow?s=0.1"]);
    load.wait_for_more(20, WAIT);
    for i in 1..=2 {
        let done = upgrade(&h, i);
        assert_eq!(done["pid"].as_i64(), Some(h.pid as i64), "{done}");
        load.wait_for_more(10, WAIT);
    }
    let stats = load.stop();
    wait_retired_exits(&h);
    eprintln!("zygote upgrades under load: {stats:?}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}", stats.errors);
    assert_eq!(
        start_time(h.pid),
        started,
        "the master process was replaced"
    );
    let zygotes: Vec<i32> = common::records_with(&h.log.lines(), "zygote ready")
        .iter()
        .filter_map(|r| common::field_i64(r, "zygote_pid"))
        .map(|p| p as i32)
        .collect();
    assert!(zygotes.len() >= 3, "a zygote per generation: {zygotes:?}");
    let current = *zygotes.last().expect("a zygote");
    for &old in &zygotes[..zygotes.len() - 1] {
        if old == current {
            continue;
        }
        h.log
            .wait_for(&format!("old zygote {old} reaped"), WAIT, |_| {
                common::process_state(old).is_none().then_some(())
            });
    }
    assert_eq!(
        common::parent_pid(current),
        Some(h.pid),
        "the zygote is the master's child"
    );
    let workers = ready_in(&h, 2);
    assert_eq!(workers.len(), 2, "two workers in generation 2");
    for pid in workers {
        assert_eq!(
            common::parent_pid(pid),
            Some(h.pid),
            "worker {pid} is the master's child"
        );
    }
}

/// The counter samples of `/metrics` (per-worker series aside): name with labels, and value.
fn counters(admin: std::net::SocketAddr) -> std::collections::BTreeMap<String, f64> {
    let response = http::get(admin, "/metrics").expect("GET /metrics");
    assert_eq!(response.status, 200);
    let counter_families: Vec<String> = response
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            l.strip_suffix(" counter")
                .or_else(|| l.strip_suffix(" summary"))
        })
        .map(str::to_string)
        .collect();
    response
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.contains("worker=\""))
        .filter(|l| counter_families.iter().any(|f| l.starts_with(f.as_str())))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(name, value)| (name.to_string(), value.parse().expect("a number")))
        .collect()
}

/// The admin listener's address, as the `n`th image that bound it logged (port 0: each image
/// of the master binds its own).
fn admin_addr(h: &Herdsman, n: usize) -> std::net::SocketAddr {
    let records = h.wait_records("admin listener", n);
    let address = records[n - 1]["address"].as_str().expect("address field");
    address.parse().expect("a TCP address")
}

/// What operators see is carried through an upgrade: `/metrics` counters never go down, a
/// request quarantined before SIGUSR2 is still refused by the workers the new image starts,
/// and an adopted worker killed by a request is reported with that request (its in-flight file
/// was handed over). Before, the counters started again from zero, the quarantine was
/// forgotten (the new workers died on the deadly request again) and the death named nothing.
#[test]
fn an_upgrade_keeps_the_counters_the_quarantine_and_the_in_flight_files() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let marker = scratch.path().join("marker");
    let marker_env = format!("MARKER={}", marker.display());
    let args = [
        "-w",
        "2",
        "--admin-bind",
        "127.0.0.1:0",
        "-e",
        &marker_env,
        "deadly_if_marker:app",
    ];
    let mut h = start(scratch.path(), &args);
    h.wait_serving();
    for n in 1..=3 {
        assert!(http::get(h.addr(), "/die").is_err(), "the worker died");
        h.wait_records("worker died unexpectedly", n);
    }
    h.wait_record(
        "request GET /die keeps killing workers: quarantined",
        |_| true,
    );
    h.wait_records("worker ready", 5);
    let before = counters(admin_addr(&h, 1));
    let crashes = "herdsman_worker_restarts_total{reason=\"crash\"}";
    assert_eq!(before.get(crashes), Some(&3.0), "{before:?}");

    // An upgrade whose new workers cannot boot: the adopted ones keep serving.
    common::write_file(scratch.path(), "marker", "");
    h.signal(libc::SIGUSR2);
    h.wait_record("upgrade failed", |_| true);
    h.wait_record("reload failed", |_| true);
    let adopted = h.live_worker_pids();
    let deaths = common::records_with(&h.log.lines(), "worker died unexpectedly").len();
    let killed = http::request(
        http::connect(h.addr()).expect("connect"),
        "POST",
        "/die",
        b"",
    );
    assert!(killed.is_err(), "an adopted worker died: {killed:?}");
    let death = h.wait_records("worker died unexpectedly", deaths + 1)[deaths].clone();
    assert!(
        adopted.contains(&(death["pid"].as_i64().expect("pid") as i32)),
        "{death}"
    );
    assert!(
        message(&death).ends_with("it was serving: POST /die"),
        "the adopted worker's in-flight file names its request: {death}"
    );

    // A second upgrade, with new workers this time: they refuse the quarantined request.
    std::fs::remove_file(&marker).expect("remove marker");
    let done = upgrade(&h, 1);
    let generation = done["generation"].as_u64().expect("generation");
    assert_eq!(ready_in(&h, generation).len(), 2);
    wait_retired_exits(&h);
    let refused = http::get(h.addr(), "/die").expect("a quarantined request is answered");
    assert_eq!(refused.status, 503, "still quarantined after the upgrade");
    let after = counters(admin_addr(&h, 3));
    for (name, value) in &before {
        let now = after.get(name).copied().unwrap_or(0.0);
        assert!(
            now >= *value,
            "{name}: {value} before the upgrades, {now} after"
        );
    }
    assert_eq!(after.get(crashes), Some(&4.0), "{after:?}");
    assert!(!h.has_exited());
    assert!(h.finish().success());
}
