//! The command line and configuration as a user meets them: `herdsman check` layering a file, the
//! environment and flags key by key; every problem reported at once with its origin and a fix;
//! a bad configuration starting nothing; the engine (the native engine's library named by `check`,
//! its absence failing `check` and the start, `threads` with uvicorn warned about); `--version`
//! and `--help`; `workers = auto` following the CPU affinity mask; and the workers' environment
//! (configured variables in, herdsman's private ones out).

mod common;

use std::path::Path;
use std::process::Command;

use common::http::get;
use common::{
    children_of, field_i64, message, records_with, run_to_end, write_file, Herdsman, Start, WAIT,
};
use serde_json::Value;

const USAGE_EXIT: i32 = 2;
const PYTHON_ENV_EXIT: i32 = 6;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs `herdsman check --config-only ARGS` and parses the effective configuration it prints.
fn check_ok(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut argv = vec!["check", "--config-only"];
    argv.extend_from_slice(args);
    let (code, stdout, stderr) = run_to_end(&argv, env);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    stdout
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("check printed invalid TOML ({e}):\n{stdout}"))
}

/// Runs `herdsman ARGS`, expects exit code 2 and nothing on stdout; returns stderr.
fn usage_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, stdout, stderr) = run_to_end(args, env);
    assert_eq!(
        code,
        Some(USAGE_EXIT),
        "stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(stdout.is_empty(), "nothing printed on stdout: {stdout}");
    stderr
}

fn assert_has(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn check_layers_file_env_and_flags_key_by_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(
        dir.path(),
        "herdsman.toml",
        r#"app = "file_mod:app"
workers = 2
backlog = 100
timeout = "11s"
graceful_timeout = "12s"
log_level = "debug"
factory = true
access_log = false

[env]
A = "file"
B = "file"
C = "file"
"#,
    );
    let env = [
        ("HERDSMAN_APP", "env_mod:app"),
        ("HERDSMAN_WORKERS", "3"),
        ("HERDSMAN_BACKLOG", "200"),
        ("HERDSMAN_TIMEOUT", "21s"),
        ("HERDSMAN_ACCESS_LOG", "yes"),
        ("HERDSMAN_ENV", "B=env;C=env"),
    ];
    let cfg = check_ok(
        &[
            "-c",
            path_str(&file),
            "-w",
            "4",
            "--timeout",
            "31s",
            "-e",
            "C=cli",
        ],
        &env,
    );
    let get = |key: &str| {
        cfg.get(key)
            .unwrap_or_else(|| panic!("no {key} in {cfg:#?}"))
    };
    // file < env < CLI, key by key.
    assert_eq!(
        get("workers").as_integer(),
        Some(4),
        "CLI beats env and file"
    );
    assert_eq!(
        get("timeout").as_str(),
        Some("31s"),
        "CLI beats env and file"
    );
    assert_eq!(get("backlog").as_integer(), Some(200), "env beats file");
    assert_eq!(get("app").as_str(), Some("env_mod:app"), "env beats file");
    assert_eq!(get("access_log").as_bool(), Some(true), "env beats file");
    assert_eq!(get("graceful_timeout").as_str(), Some("12s"), "file alone");
    assert_eq!(get("log_level").as_str(), Some("debug"), "file alone");
    assert_eq!(
        get("factory").as_bool(),
        Some(true),
        "a switch absent from the command line leaves the file's value"
    );
    assert_eq!(get("startup_attempts").as_integer(), Some(3), "default");
    // env merges variable by variable.
    let workers_env = get("env").as_table().expect("env table");
    let vars: Vec<(&str, &str)> = workers_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("?")))
        .collect();
    assert_eq!(vars, vec![("A", "file"), ("B", "env"), ("C", "cli")]);
}

#[test]
fn check_accepts_the_shipped_example_and_its_output_is_a_valid_config() {
    let example = common::repo().join("config/herdsman.toml");
    let (code, stdout, stderr) =
        run_to_end(&["check", "--config-only", "-c", path_str(&example)], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let cfg: toml::Table = stdout.parse().expect("TOML output");
    assert_eq!(
        cfg.get("app").and_then(|v| v.as_str()),
        Some("myproject.asgi:application")
    );
    // The printed configuration is itself a config file that checks to the same result.
    let dir = tempfile::tempdir().expect("temp dir");
    let again = write_file(dir.path(), "effective.toml", &stdout);
    let (code, stdout2, stderr) =
        run_to_end(&["check", "--config-only", "-c", path_str(&again)], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let cfg2: toml::Table = stdout2.parse().expect("TOML output");
    assert_eq!(cfg, cfg2);
}

const BAD_FILE: &str = r#"app = "asgi_app:app"
workrs = 2
graceful_timeout = true
bind = ["127.0.0.1:8000", "8001"]
"#;

#[test]
fn check_reports_every_problem_at_once_with_origin_and_fix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "herdsman.toml", BAD_FILE);
    let at = |line: u32| format!("file {}, line {line}: ", file.display());
    let stderr = usage_error(
        &["check", "-c", path_str(&file), "--log-level", "verbos"],
        &[("HERDSMAN_WORKER", "2")],
    );
    assert_has(
        &stderr,
        &[
            &format!("{}unknown key `workrs`", at(2)),
            "fix: did you mean `workers`?",
            &format!("{}`graceful_timeout` must be a duration", at(3)),
            &format!("{}`bind` entry \"8001\" has no host", at(4)),
            "fix: write `bind = \"127.0.0.1:8001\"`",
            "environment variable HERDSMAN_WORKER is not a herdsman setting",
            "fix: did you mean HERDSMAN_WORKERS?",
            "command line --log-level",
            "fix: write `--log-level info`",
        ],
    );
}

#[test]
fn bad_flag_value_says_how_to_fix_it() {
    let stderr = usage_error(&["check", "-w", "abc", "asgi_app:app"], &[]);
    assert_has(
        &stderr,
        &[
            "`workers` must be a whole number or \"auto\", got a string \"abc\"",
            "fix: write `--workers 4` or `--workers auto`",
        ],
    );
}

#[test]
fn unknown_herdsman_variable_is_reported() {
    let stderr = usage_error(&["check", "asgi_app:app"], &[("HERDSMAN_BAKLOG", "10")]);
    assert_has(
        &stderr,
        &[
            "environment variable HERDSMAN_BAKLOG is not a herdsman setting",
            "did you mean HERDSMAN_BACKLOG?",
        ],
    );
}

#[test]
fn missing_app_says_how_to_give_it() {
    let stderr = usage_error(&["check"], &[]);
    assert_has(
        &stderr,
        &[
            "no application given",
            "herdsman myproject.asgi:app",
            "app = \"myproject.asgi:app\"",
            "HERDSMAN_APP",
        ],
    );
}

#[test]
fn starting_with_a_bad_config_exits_2_and_spawns_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write_file(dir.path(), "herdsman.toml", BAD_FILE);
    let mut h = Start::new(&["-c", path_str(&file)]).spawn();
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(USAGE_EXIT), "{}", h.log.text());
    // The master may exit before this process has read its output: wait for the last problem
    // (the file's bad bind is not checked: the harness's `-b` overrides it).
    h.wait_line("`graceful_timeout` must be a duration");
    let text = h.log.text();
    assert_has(
        &text,
        &["the configuration is invalid", "unknown key `workrs`"],
    );
    assert!(
        h.log.records().is_empty(),
        "nothing started, not even logging:\n{text}"
    );
    // The test process is the subreaper: a worker spawned and orphaned would be its child now.
    let orphans = children_of(std::process::id() as i32);
    assert!(orphans.is_empty(), "nothing spawned: {orphans:?}");
    assert_eq!(h.finish().code(), Some(USAGE_EXIT));
}

#[test]
fn check_names_the_native_engine_and_its_library() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lib = write_file(
        dir.path(),
        "libherdsman_engine.so",
        "not loaded by the master",
    );
    let env = [("HERDSMAN_ENGINE_LIB", path_str(&lib))];
    let args = [
        "check",
        "--config-only",
        "--engine",
        "native",
        "--threads",
        "8",
        "asgi_app:app",
    ];
    let (code, stdout, stderr) = run_to_end(&args, &env);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let cfg: toml::Table = stdout.parse().expect("TOML output");
    assert_eq!(cfg.get("engine").and_then(|v| v.as_str()), Some("native"));
    assert_eq!(cfg.get("threads").and_then(|v| v.as_integer()), Some(8));
    let line = format!(
        "# the native engine's library resolves to {} (from HERDSMAN_ENGINE_LIB)",
        lib.display()
    );
    assert!(
        stdout.lines().any(|l| l == line),
        "missing {line:?} in:\n{stdout}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_missing_engine_library_fails_check_and_start_with_exit_6() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.so");
    let env = [("HERDSMAN_ENGINE_LIB", path_str(&missing))];
    let expected = format!(
        "HERDSMAN_ENGINE_LIB names {}, which does not exist",
        missing.display()
    );
    let args = ["check", "--engine", "native", "asgi_app:app"];
    let (code, stdout, stderr) = run_to_end(&args, &env);
    assert_eq!(code, Some(PYTHON_ENV_EXIT), "stderr:\n{stderr}");
    assert!(stdout.is_empty(), "nothing printed on stdout: {stdout}");
    assert_has(&stderr, &[&expected, "or unset it"]);
    // uvicorn looks for no library: the same environment checks fine.
    check_ok(&["asgi_app:app"], &env);

    // Other tests of this binary run masters at the same time: a worker of this one, orphaned to
    // the test process, is told apart by a variable only this master's workers would inherit.
    let marker = format!("{}", std::process::id());
    let mut h = Start::new(&["--engine", "native", "asgi_app:app"])
        .env("HERDSMAN_ENGINE_LIB", path_str(&missing))
        .env("ENGINE_LIB_TEST_MARKER", &marker)
        .spawn();
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(PYTHON_ENV_EXIT), "{}", h.log.text());
    h.wait_line(&expected);
    let text = h.log.text();
    assert!(!text.contains("listening"), "nothing bound:\n{text}");
    let needle = format!("ENGINE_LIB_TEST_MARKER={marker}");
    let ours: Vec<_> = children_of(std::process::id() as i32)
        .into_iter()
        .filter(|(pid, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ
                .split(|&b| b == 0)
                .any(|var| var == needle.as_bytes())
        })
        .collect();
    assert!(ours.is_empty(), "nothing spawned: {ours:?}");
    assert_eq!(h.finish().code(), Some(PYTHON_ENV_EXIT));
}

#[test]
fn threads_out_of_range_says_how_to_fix_it() {
    // Both engines use it (the native engine's pool, a2wsgi's under uvicorn): no warning.
    let (code, _, stderr) = run_to_end(
        &["check", "--config-only", "--threads", "8", "asgi_app:app"],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("threads"), "{stderr}");
    let stderr = usage_error(&["check", "--threads", "0", "asgi_app:app"], &[]);
    assert_has(
        &stderr,
        &[
            "command line --threads: `threads` must be a whole number from 1 to 1024, got 0",
            "fix: write `--threads 4`",
        ],
    );
}

#[test]
fn version_and_help_exit_0() {
    let (code, stdout, stderr) = run_to_end(&["--version"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!("herdsman {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, stdout, stderr) = run_to_end(&["--help"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_has(
        &stdout,
        &[
            "Usage: herdsman [OPTIONS] [APP]",
            "--workers",
            "--bind",
            "check",
        ],
    );
}

/// CPUs in this test process's affinity mask.
fn affinity_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(rc, 0, "sched_getaffinity");
        libc::CPU_COUNT(&set) as usize
    }
}

/// Starts with `-w auto`; returns the auto-sizing record and the ready worker pids.
fn auto_sized(start: Start) -> (Herdsman, Value, Vec<i32>) {
    let h = start.spawn();
    let pids = h.wait_serving();
    let sizing = h.wait_record("auto sizing", |_| true);
    (h, sizing, pids)
}

#[test]
fn auto_workers_follow_the_affinity_mask() {
    let runs = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        return common::skip(
            "`taskset -c 0 true` does not run here, so the affinity cannot be set",
        );
    }
    let (h, sizing, pids) =
        auto_sized(Start::new(&["-w", "auto", "asgi_app:app"]).wrapped(&["taskset", "-c", "0"]));
    assert_eq!(pids.len(), 1, "one CPU, one worker: {pids:?}");
    assert_eq!(field_i64(&sizing, "workers"), Some(1), "{sizing}");
    let why = message(&sizing);
    assert!(
        why.contains("1 in this process's affinity mask"),
        "the record explains the count: {why}"
    );
    assert_eq!(
        records_with(&h.log.lines(), "worker ready").len(),
        1,
        "no other worker was started"
    );
    assert!(h.finish().success());
}

#[test]
fn auto_workers_default_to_the_usable_cpus() {
    let cpus = affinity_cpus();
    let (h, sizing, pids) = auto_sized(Start::new(&["-w", "auto", "asgi_app:app"]));
    let why = message(&sizing).to_string();
    assert!(
        why.contains(&format!("{cpus} in this process's affinity mask")),
        "{why}"
    );
    if why.contains("no cgroup CPU quota") {
        assert_eq!(pids.len(), cpus, "one worker per CPU of the mask ({why})");
    } else {
        eprintln!("a cgroup CPU quota applies here ({why}): only checking it is not exceeded");
        assert!(pids.len() <= cpus, "{why}");
    }
    assert_eq!(field_i64(&sizing, "workers"), Some(pids.len() as i64));
    assert!(h.finish().success());
}

#[test]
fn workers_get_configured_variables_but_not_herdsman_private_ones() {
    // LISTEN_PID and WATCHDOG_PID name another process, so a master that one day honours socket
    // activation or the watchdog would still ignore these for itself.
    let h = Start::new(&[
        "-w",
        "1",
        "-e",
        "FROM_CLI=cli-value",
        "-e",
        "OVERRIDDEN=cli",
        "asgi_app:app",
    ])
    .env("PLAIN_INHERITED", "kept")
    .env("OVERRIDDEN", "master")
    .env("HERDSMAN_LOG_LEVEL", "info")
    .env("NOTIFY_SOCKET", "/nonexistent")
    .env("LISTEN_FDS", "3")
    .env("LISTEN_PID", "1")
    .env("LISTEN_FDNAMES", "http")
    .env("WATCHDOG_USEC", "1000000")
    .env("WATCHDOG_PID", "1")
    .spawn();
    h.wait_serving();
    let addr = h.addr();
    let value = |key: &str| {
        let resp = get(addr, &format!("/env?k={key}")).expect("GET /env");
        assert_eq!(resp.status, 200, "{resp:?}");
        resp.json()["value"].clone()
    };
    assert_eq!(value("FROM_CLI"), "cli-value");
    assert_eq!(value("OVERRIDDEN"), "cli", "-e beats the inherited value");
    assert_eq!(value("PLAIN_INHERITED"), "kept", "the rest is inherited");
    for private in [
        "HERDSMAN_LOG_LEVEL",
        "NOTIFY_SOCKET",
        "LISTEN_FDS",
        "LISTEN_PID",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
    ] {
        assert_eq!(
            value(private),
            Value::Null,
            "{private} must not reach workers"
        );
    }
    assert!(h.finish().success());
}

/// Runs a full `herdsman check` (the interpreter, the app, the binds) with the test interpreter,
/// in the test apps' directory; the printed configuration must stay valid TOML whatever it finds.
fn full_check(args: &[&str], python: &Path) -> (Option<i32>, String, String) {
    let apps = common::apps_dir();
    let mut argv = vec![
        "check",
        "--python",
        path_str(python),
        "--chdir",
        path_str(&apps),
    ];
    argv.extend_from_slice(args);
    let (code, stdout, stderr) = run_to_end(&argv, &[]);
    if let Err(e) = stdout.parse::<toml::Table>() {
        panic!("check printed invalid TOML ({e}):\n{stdout}");
    }
    (code, stdout, stderr)
}

#[test]
fn check_imports_the_app_and_tries_the_binds_as_a_start_would() {
    let python = common::python();
    let (code, stdout, stderr) = full_check(&["-b", "127.0.0.1:0", "wsgi_app:app"], &python);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    let found = stdout
        .lines()
        .find(|l| l.starts_with("# found Python 3."))
        .unwrap_or_else(|| panic!("no interpreter line in:\n{stdout}"));
    assert_has(found, &[", uvicorn 0.", ", a2wsgi 1."]);
    assert_has(
        &stdout,
        &[
            "# the app \"wsgi_app:app\" imports (interface WSGI)",
            "# bind 127.0.0.1:0: free",
        ],
    );
    // The native engine: its library is loaded by the interpreter; it serves WSGI and ASGI.
    let (code, stdout, stderr) = full_check(&["--engine", "native", "wsgi_app:app"], &python);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert_has(&stdout, &[", the native engine 0."]);
    let (code, stdout, stderr) = full_check(&["--engine", "native", "asgi_app:app"], &python);
    assert_eq!(code, Some(0), "stderr:\n{stderr}\nstdout:\n{stdout}");
    assert_has(
        &stdout,
        &[
            ", the native engine 0.",
            "# the app \"asgi_app:app\" imports (interface ASGI)",
        ],
    );
}

#[test]
fn check_fails_as_the_start_would_with_the_apps_traceback() {
    let python = common::python();
    let (code, _, stderr) = full_check(&["-b", "127.0.0.1:0", "import_error:app"], &python);
    assert_eq!(code, Some(4), "{stderr}");
    assert_has(
        &stderr,
        &[
            "herdsman: check: cannot import app 'import_error:app': RuntimeError: boom at import",
            "Traceback (most recent call last):",
            "exit 4, APP_LOAD",
        ],
    );
    let (code, _, stderr) = full_check(&["asgi_app:nope"], &python);
    assert_eq!(code, Some(4), "{stderr}");
    assert_has(&stderr, &["module 'asgi_app' has no attribute 'nope'"]);
    // An import that never ends is killed at boot_timeout, as a worker would be.
    let (code, _, stderr) = full_check(&["--boot-timeout", "1s", "hang_boot:app"], &python);
    assert_eq!(code, Some(3), "{stderr}");
    assert_has(
        &stderr,
        &["longer than boot_timeout (1s)", "exit 3, WORKER_BOOT"],
    );
}

#[test]
fn check_names_an_address_in_use_and_an_interpreter_without_uvicorn() {
    let python = common::python();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let (code, _, stderr) = full_check(&["-b", &address, "asgi_app:app"], &python);
    assert_eq!(code, Some(5), "{stderr}");
    assert_has(&stderr, &[&address, "exit 5, BIND"]);
    drop(taken);

    // A venv of the same Python with nothing installed: uvicorn is missing there.
    let dir = tempfile::tempdir().expect("temp dir");
    let venv = dir.path().join("bare");
    let made = std::process::Command::new(&python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .expect("python -m venv");
    assert!(made.success(), "python -m venv --without-pip failed");
    let bare = venv.join("bin/python");
    let (code, _, stderr) = full_check(&["asgi_app:app"], &bare);
    assert_eq!(code, Some(6), "{stderr}");
    assert_has(
        &stderr,
        &[
            "uvicorn is not installed for",
            "-m pip install uvicorn",
            "exit 6, PYTHON_ENV",
        ],
    );
}

/// gunicorn flags that change nothing here are taken, each named in a warning with why, so an
/// unchanged unit file starts; `-D` is refused with the fix; `--check-config` is `herdsman check`
/// (a CI script running it must get the check's exit code, not a server that never exits).
#[test]
fn gunicorn_flags_with_no_meaning_here_are_warned_refused_or_mapped() {
    let args = [
        "--worker-tmp-dir",
        "/dev/shm",
        "--statsd-host",
        "localhost:8125",
        "--log-config",
        "logging.conf",
        "--no-sendfile",
        "asgi_app:app",
    ];
    let (code, _, stderr) = full_check(&args, &common::python());
    assert_eq!(code, Some(0), "{stderr}");
    for flag in [
        "--worker-tmp-dir",
        "--statsd-host",
        "--log-config",
        "--no-sendfile",
    ] {
        let line =
            format!("herdsman: warning: the command line: gunicorn's {flag} changes nothing here");
        assert_has(&stderr, &[&line]);
    }
    let stderr = usage_error(&["-D", "asgi_app:app"], &[]);
    assert_has(
        &stderr,
        &[
            "command line --daemon: `daemon` is refused",
            "fix: remove -D/--daemon",
        ],
    );
    // --check-config imports the app: one that does not import fails it, and nothing serves.
    let python = common::python();
    let apps = common::apps_dir();
    let argv = [
        "--check-config",
        "--python",
        path_str(&python),
        "--chdir",
        path_str(&apps),
        "import_error:app",
    ];
    let (code, stdout, stderr) = run_to_end(&argv, &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stdout.starts_with("# herdsman: effective configuration"),
        "{stdout}"
    );
    let (code, _, stderr) = run_to_end(&["--print-config", "m:a"], &[]);
    assert_eq!(
        code,
        Some(0),
        "--print-config validates the configuration only: {stderr}"
    );
}

/// A system Python that refuses pip (PEP 668) and lacks uvicorn, as Debian's /usr/bin/python3
/// is: the fix offered is a venv and --python, not a `pip install` pip would refuse.
#[test]
fn check_offers_a_venv_for_a_system_python_that_refuses_pip() {
    let system = Path::new("/usr/bin/python3");
    let probe = "import importlib.util, os, sys, sysconfig\n\
                 marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')\n\
                 ok = sys.prefix == sys.base_prefix and os.path.isfile(marker)\n\
                 sys.exit(0 if ok and importlib.util.find_spec('uvicorn') is None else 1)";
    let fits = std::process::Command::new(system)
        .args(["-c", probe])
        .status()
        .is_ok_and(|status| status.success());
    if !fits {
        return common::skip(
            "/usr/bin/python3 is missing, has uvicorn, or is not externally managed (PEP 668)",
        );
    }
    let (code, _, stderr) = full_check(&["asgi_app:app"], system);
    assert_eq!(code, Some(6), "{stderr}");
    let venv = "/srv/app/.venv";
    assert_has(
        &stderr,
        &[
            "uvicorn is not installed for /usr/bin/python3",
            "refuses pip installs (PEP 668, externally managed)",
            &format!("'/usr/bin/python3 -m venv {venv} && {venv}/bin/pip install uvicorn'"),
            &format!("--python {venv}/bin/python"),
        ],
    );
    assert!(!stderr.contains("-m pip install"), "{stderr}");
}

/// An uvicorn older than the supported range (a stand-in package on PYTHONPATH that reports
/// 0.30.0) is refused before anything uses its internals, by `herdsman check` and by the server
/// at its first boot alike: exit 6 (PYTHON_ENV) with the version, the range and the pin to install.
#[test]
fn an_uvicorn_older_than_the_supported_range_is_refused_with_the_pin_to_install() {
    let fake = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(fake.path().join("uvicorn")).expect("mkdir");
    std::fs::write(
        fake.path().join("uvicorn/__init__.py"),
        "__version__ = \"0.30.0\"\n",
    )
    .expect("write the stand-in uvicorn");
    let pythonpath = path_str(fake.path());
    let python = common::python();
    let apps = common::apps_dir();
    let want = [
        "uvicorn 0.30.0 for",
        "is older than herdsman supports (uvicorn 0.54 to 0.55",
        "pip install \"uvicorn>=0.54,<0.56\"",
    ];
    let check = [
        "check",
        "--python",
        path_str(&python),
        "--chdir",
        path_str(&apps),
        "asgi_app:app",
    ];
    let (code, _, stderr) = run_to_end(&check, &[("PYTHONPATH", pythonpath)]);
    assert_eq!(code, Some(6), "{stderr}");
    assert_has(&stderr, &want);
    let serve = [
        "-b",
        "127.0.0.1:0",
        "-w",
        "1",
        "--python",
        path_str(&python),
        "--chdir",
        path_str(&apps),
        "asgi_app:app",
    ];
    let (code, stdout, stderr) = run_to_end(&serve, &[("PYTHONPATH", pythonpath)]);
    assert_eq!(code, Some(6), "{stdout}\n{stderr}");
    assert_has(&format!("{stdout}{stderr}"), &want);
}
