//! The installed wheel, end to end: `herdsman` as `pip install` put it into a fresh venv's `bin/`
//! serves with that venv's Python without being told (no `--python`, no `VIRTUAL_ENV`, and a
//! `PATH` that holds no python of the venv), reloads on SIGHUP, stops on SIGTERM and leaves no
//! process behind; `python -m herdsman` runs the same binary in its own process; `herdsman check`
//! names the interpreter it resolved.
//!
//! The binary under test is `TEST_INSTALLED_HERDSMAN` (`VENV/bin/herdsman`), which scripts/test.sh
//! always sets after building and installing the wheel. Without it these tests cannot run: they
//! say so loudly, and fail under CI (`CI=true`) instead of passing silently.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{http, Start};
use serde_json::Value;

/// A `PATH` without the venv: `python3` there, if any, is the system's.
const PATH_WITHOUT_VENV: &str = "/usr/local/bin:/usr/bin:/bin";

/// The installed binary and its venv, or `None` (with a loud note) when not given.
fn installed() -> Option<(PathBuf, PathBuf)> {
    let Some(bin) = std::env::var_os("TEST_INSTALLED_HERDSMAN").map(PathBuf::from) else {
        let why = "TEST_INSTALLED_HERDSMAN is not set: the installed-wheel test did NOT run \
                   (bash scripts/test.sh builds the wheel, installs it and sets it)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("SKIPPED: {why}");
        return None;
    };
    assert!(
        bin.is_file(),
        "TEST_INSTALLED_HERDSMAN={} is missing",
        bin.display()
    );
    let venv = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary is VENV/bin/herdsman")
        .to_path_buf();
    assert!(
        venv.join("pyvenv.cfg").is_file(),
        "{} is not in a venv's bin/",
        bin.display()
    );
    assert!(
        !PATH_WITHOUT_VENV
            .split(':')
            .any(|d| Path::new(d) == venv.join("bin")),
        "the test PATH must not hold the venv"
    );
    Some((bin, venv))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that `GET /` of whoami_app was answered by the venv's own interpreter.
fn assert_served_by(venv: &Path, body: &Value) {
    let prefix = Path::new(body["prefix"].as_str().expect("prefix"));
    assert_eq!(canonical(prefix), canonical(venv), "sys.prefix: {body}");
    assert_ne!(body["prefix"], body["base_prefix"], "not a venv: {body}");
    assert_eq!(
        Path::new(body["executable"].as_str().expect("executable")),
        venv.join("bin/python"),
        "sys.executable: {body}"
    );
}

fn get_json(h: &common::Herdsman) -> Value {
    http::get(h.addr(), "/").expect("GET /").json()
}

#[test]
fn installed_binary_serves_with_its_venv_python_reloads_and_stops() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let h = Start::new(&["-w", "2", "whoami_app:app"])
        .binary(&bin)
        .no_python()
        .env("PATH", PATH_WITHOUT_VENV)
        .spawn();
    let first = h.wait_serving();
    assert_eq!(first.len(), 2, "{}", h.log.text());
    let body = get_json(&h);
    assert_served_by(&venv, &body);
    assert!(first.contains(&(body["pid"].as_i64().expect("pid") as i32)));

    h.signal(libc::SIGHUP);
    h.wait_records("reload complete", 1);
    // The retired workers may still be draining (and accepting) until they exit.
    h.log
        .wait_for("the first workers' exits", common::WAIT, |lines| {
            let exited: Vec<i64> = lines
                .iter()
                .filter_map(|l| common::parse_record(l))
                .filter(|r| r.get("status").is_some())
                .filter_map(|r| common::field_i64(&r, "pid"))
                .collect();
            first
                .iter()
                .all(|pid| exited.contains(&i64::from(*pid)))
                .then_some(())
        });
    let body = get_json(&h);
    assert_served_by(&venv, &body);
    let pid = body["pid"].as_i64().expect("pid") as i32;
    assert!(
        !first.contains(&pid),
        "served by an old worker after the reload"
    );

    let status = h.finish();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
}

#[test]
fn python_dash_m_herdsman_execs_the_installed_binary_in_its_own_process() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let python = venv.join("bin/python");
    let h = Start::new(&["-w", "1", "whoami_app:app"])
        .launcher(&[python.to_str().expect("utf-8 path"), "-m", "herdsman"])
        .no_python()
        .env("PATH", PATH_WITHOUT_VENV)
        .spawn();
    h.wait_serving();
    // Same pid: the process started as `python -m herdsman` now runs the binary itself.
    let exe = std::fs::read_link(format!("/proc/{}/exe", h.pid)).expect("/proc/PID/exe");
    assert_eq!(exe, canonical(&bin));
    assert_served_by(&venv, &get_json(&h));
    assert_eq!(h.finish().code(), Some(0));

    // The exit code is the binary's: a usage error is 2.
    let out = Command::new(&python)
        .args(["-m", "herdsman", "check", "-w", "abc", "whoami_app:app"])
        .env_remove("VIRTUAL_ENV")
        .env("PATH", PATH_WITHOUT_VENV)
        .output()
        .expect("python -m herdsman check");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn check_prints_the_interpreter_of_the_venv_it_is_installed_in() {
    let Some((bin, venv)) = installed() else {
        return;
    };
    let out = Command::new(&bin)
        .args(["check", "whoami_app:app"])
        .env_remove("VIRTUAL_ENV")
        .env_remove("HERDSMAN_TEST_PYTHON")
        .env_remove("TEST_INSTALLED_HERDSMAN")
        .env("PATH", PATH_WITHOUT_VENV)
        .output()
        .expect("herdsman check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let want = format!(
        "# python resolves to {} (the Python environment herdsman is installed in)",
        venv.join("bin/python").display()
    );
    assert!(
        stdout.lines().any(|l| l == want),
        "{want:?} not in:\n{stdout}"
    );
}
