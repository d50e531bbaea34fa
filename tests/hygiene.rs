//! Logs and process hygiene with real processes: the log file and its reopen on SIGUSR1
//! (logrotate), a log on a full disk (F17), captured worker output that never blocks a worker,
//! the pidfile's rules, and what a worker inherits: an empty signal mask, default dispositions,
//! an explicit environment, and the configured user, group and umask.
//!
//! When the master logs to a file, its stderr is silent: these tests follow the file with
//! inotify (no sleeps) and find the workers through /proc.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http;
use common::{Herdsman, Start, WAIT};
use serde_json::Value;

const SIGUSR1: i32 = libc::SIGUSR1;

/// Waits until `pred` holds for the text of `path` (missing = empty), waking on inotify events
/// of its directory. Panics after `timeout`, showing the text.
fn wait_file<T>(path: &Path, what: &str, timeout: Duration, pred: impl Fn(&str) -> Option<T>) -> T {
    let dir = path.parent().expect("a file in a directory");
    let watch = Inotify::new(dir);
    let deadline = Instant::now() + timeout;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if let Some(found) = pred(&text) {
            return found;
        }
        let now = Instant::now();
        assert!(
            now < deadline,
            "timed out waiting for {what} in {}; it holds:\n{text}",
            path.display()
        );
        watch.wait(deadline - now);
    }
}

/// Master records (JSON lines) of a log file's text.
fn records(text: &str) -> Vec<Value> {
    text.lines().filter_map(common::parse_record).collect()
}

/// Waits for a record whose message starts with `prefix` in the log file `path`.
fn wait_record(path: &Path, prefix: &str) -> Value {
    wait_file(path, &format!("a record {prefix:?}"), WAIT, |text| {
        records(text)
            .into_iter()
            .find(|r| common::message(r).starts_with(prefix))
    })
}

/// An inotify watch on a directory: wakes on anything created, written or moved in it.
struct Inotify(i32);

impl Inotify {
    fn new(dir: &Path) -> Inotify {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).expect("no NUL");
        // SAFETY: plain system calls on a fd we own and a NUL-terminated path.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK);
            assert!(fd >= 0, "inotify_init1 failed");
            let mask = libc::IN_MODIFY
                | libc::IN_CREATE
                | libc::IN_MOVED_TO
                | libc::IN_CLOSE_WRITE
                | libc::IN_DELETE
                | libc::IN_ATTRIB;
            assert!(libc::inotify_add_watch(fd, path.as_ptr(), mask) >= 0);
            Inotify(fd)
        }
    }

    /// Blocks until an event or `timeout`, then discards the pending events.
    fn wait(&self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.0,
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut buf = [0u8; 4096];
        // SAFETY: one valid pollfd; reading into a buffer we own.
        unsafe {
            libc::poll(&mut pfd, 1, ms);
            while libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) > 0 {}
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: closing the fd we own.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// The master's children (its workers), from /proc.
fn workers_of(master: i32) -> Vec<i32> {
    let mut pids: Vec<i32> = common::children_of(master)
        .into_iter()
        .filter(|&(_, state)| state != 'Z')
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// `Name:` line of /proc/PID/status, split in fields.
fn status_field(pid: i32, name: &str) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"));
    line[name.len() + 1..]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn status_mask(pid: i32, name: &str) -> u64 {
    u64::from_str_radix(&status_field(pid, name)[0], 16).expect("hex mask")
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Stops the master and checks that the given workers are gone too (the harness only knows
/// the workers the master logged on stderr).
fn finish_with(h: Herdsman, workers: &[i32]) -> std::process::ExitStatus {
    let status = h.finish();
    common::assert_gone(workers, Duration::from_secs(5));
    status
}

#[test]
fn log_file_is_reopened_on_usr1_without_touching_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("master.log");
    let log_arg = log.to_str().unwrap();
    let h = Herdsman::start(&["--log-file", log_arg, "-w", "2", "asgi_app:app"]);
    wait_record(&log, "serving: all workers ready");
    let text = fs::read_to_string(&log).unwrap();
    let addr: std::net::SocketAddr = records(&text)
        .iter()
        .find(|r| common::message(r) == "listening")
        .and_then(|r| r["address"].as_str()?.parse().ok())
        .expect("the listening address is in the log file");
    let workers = workers_of(h.pid);
    assert_eq!(workers.len(), 2, "{text}");
    assert!(
        h.log.lines().is_empty(),
        "stderr stays silent: {:?}",
        h.log.lines()
    );

    // logrotate: move the file away, then signal.
    let rotated = dir.path().join("master.log.1");
    fs::rename(&log, &rotated).unwrap();
    h.signal(SIGUSR1);
    let reopened = wait_record(&log, "log file reopened");
    assert_eq!(reopened["path"], log_arg);
    let old = fs::read_to_string(&rotated).unwrap();
    assert!(!old.contains("log file reopened"), "{old}");

    for _ in 0..4 {
        let pid = http::get(addr, "/")
            .expect("serving after the reopen")
            .pid();
        assert!(workers.contains(&pid), "{pid} is not one of {workers:?}");
    }
    assert_eq!(workers_of(h.pid), workers, "the workers were not restarted");
    let all = format!("{old}\n{}", fs::read_to_string(&log).unwrap());
    assert!(!all.contains("worker exited"), "{all}");
    // The old workers keep appending to the file they were started with.
    wait_file(&rotated, "the workers' access log", WAIT, |text| {
        text.contains("\"GET / HTTP/1.1\" 200").then_some(())
    });

    let status = finish_with(h, &workers);
    assert_eq!(status.code(), Some(0));
    wait_record(&log, "all workers stopped");
}

/// F17: the log on a full disk. The master keeps serving; SIGUSR1 to a good file resumes
/// logging, starting with how many records were lost.
#[test]
fn a_log_on_a_full_disk_does_not_stop_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("master.log");
    symlink("/dev/full", &log).unwrap();
    let socket = dir.path().join("app.sock");
    let bind = format!("unix:{}", socket.display());
    let h = Start::new(&[
        "--log-file",
        log.to_str().unwrap(),
        "-b",
        &bind,
        "-w",
        "1",
        "--capture-output",
        "asgi_app:app",
    ])
    .no_default_bind()
    .spawn();
    wait_file(&socket, "the unix socket", WAIT, |_| {
        socket.exists().then_some(())
    });
    for _ in 0..3 {
        let response = http::get_unix(&socket, "/").expect("served with the log on /dev/full");
        assert_eq!(response.status, 200);
    }
    assert_eq!(common::process_state(h.pid).map(|s| s != 'Z'), Some(true));
    let workers = workers_of(h.pid);

    // Space again: point the path at a real file and reopen.
    let good = dir.path().join("good.log");
    let link = dir.path().join("master.log.new");
    symlink(&good, &link).unwrap();
    fs::rename(&link, &log).unwrap();
    h.signal(SIGUSR1);
    let reopened = wait_record(&good, "log file reopened");
    let text = fs::read_to_string(&good).unwrap();
    let report = records(&text)
        .into_iter()
        .find(|r| common::message(r).starts_with("log records were dropped"))
        .unwrap_or_else(|| panic!("no drop report before the reopen record:\n{text}"));
    // At least "herdsman starting", "listening", "starting workers", "worker ready", ... and
    // the captured worker lines.
    assert!(report["dropped"].as_u64().unwrap() >= 4, "{text}");
    assert_eq!(reopened["level"], "INFO");
    let status = finish_with(h, &workers);
    assert_eq!(status.code(), Some(0));
}

/// Captured output becomes records of the master's log (JSON here, as the harness asks), each
/// naming the worker: a plain print as an `output` record, the runtime's own lines (the access
/// log here) as well.
#[test]
fn captured_output_is_prefixed_with_the_worker() {
    let h = Herdsman::start(&["--capture-output", "-w", "1", "output_app:app"]);
    let pid = h.wait_serving()[0];
    let addr = h.addr();
    http::get(addr, "/say?text=hello-capture").expect("served");
    for text in ["hello-capture-out", "hello-capture-err"] {
        let record = h.wait_record(text, |r| common::message(r) == text);
        assert_eq!(record["worker"], 1, "{record}");
        assert_eq!(record["pid"], pid, "{record}");
        assert_eq!(record["stream"], "output", "{record}");
        assert_eq!(record["level"], "INFO", "{record}");
    }
    let access = h.wait_record("", |r| {
        common::message(r).contains("GET /say?text=hello-capture")
    });
    assert_eq!(access["worker"], 1, "{access}");
    finish_with(h, &[pid]);
}

/// A worker writing 1 MiB at once is not blocked: the master drains its pipe while it writes
/// (here into a log file, so nothing is dropped and every byte can be counted).
#[test]
fn a_worker_writing_a_lot_is_never_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("master.log");
    let h = Herdsman::start(&[
        "--log-file",
        log.to_str().unwrap(),
        "--capture-output",
        "-w",
        "1",
        "output_app:app",
    ]);
    let listening = wait_record(&log, "listening");
    let addr: std::net::SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();
    wait_record(&log, "serving: all workers ready");
    let pid = workers_of(h.pid)[0];
    let started = Instant::now();
    let response = http::get(addr, "/spew?n=1048576&marker=spew-marker").expect("completes");
    assert_eq!(response.json()["written"], 1_048_576);
    assert!(started.elapsed() < WAIT);
    let text = wait_file(&log, "the marker", WAIT, |text| {
        text.contains("\"message\":\"spew-marker\"")
            .then(|| text.to_string())
    });
    // Each captured line is one record of the worker's: its message is the line.
    let spewed: Vec<String> = text
        .lines()
        .filter_map(common::parse_record)
        .filter(|r| r["pid"] == pid && r["stream"] == "output")
        .map(|r| common::message(&r).to_string())
        .filter(|m| m.starts_with('x'))
        .collect();
    let bytes: usize = spewed.iter().map(|m| m.len() + 1).sum();
    assert_eq!(bytes, 1_048_576, "every byte arrived, one record per line");
    assert!(!text.contains("dropped"), "a file never drops");
    assert_eq!(http::get(addr, "/").expect("still serving").pid(), pid);
    finish_with(h, &[pid]);
}

fn pidfile_args(pidfile: &Path) -> Vec<String> {
    vec![
        "--pid".into(),
        pidfile.display().to_string(),
        "-w".into(),
        "1".into(),
        "asgi_app:app".into(),
    ]
}

fn start_with(args: &[String]) -> Herdsman {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Herdsman::start(&args)
}

#[test]
fn pidfile_holds_our_pid_and_is_removed_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("herdsman.pid");
    let h = start_with(&pidfile_args(&pidfile));
    let workers = h.wait_serving();
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", h.pid)
    );
    let mode = fs::symlink_metadata(&pidfile).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    assert_eq!(finish_with(h, &workers).code(), Some(0));
    assert!(!pidfile.exists(), "removed at exit");
}

/// Starts herdsman with `pidfile` and expects it to refuse it: exit 2, nothing started.
fn refused(pidfile: &Path, why: &str, extra: &[&str]) -> String {
    let mut args = pidfile_args(pidfile);
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut h = start_with(&args);
    let status = h.wait_exit(WAIT);
    assert_eq!(status.code(), Some(2), "{}", h.log.text());
    let record = h.wait_record("refusing the pidfile", |_| true);
    let message = common::message(&record).to_string();
    assert!(message.contains(why), "{message}");
    assert!(h.log.text().contains("listening"), "refused after binding");
    assert!(
        !h.log.text().contains("worker spawned"),
        "nothing was forked"
    );
    h.finish();
    message
}

#[test]
fn a_symlink_at_the_pidfile_path_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    fs::write(&target, "keep me\n").unwrap();
    let pidfile = dir.path().join("herdsman.pid");
    symlink(&target, &pidfile).unwrap();
    let socket = dir.path().join("app.sock");
    let bind = format!("unix:{}", socket.display());
    refused(&pidfile, "symlink", &["-b", &bind]);
    assert!(
        !socket.exists(),
        "the listener bound before the refusal is closed and removed"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
    assert!(fs::symlink_metadata(&pidfile)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_pidfile_naming_a_live_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("herdsman.pid");
    let mut other = Command::new("sleep").arg("60").spawn().unwrap();
    fs::write(&pidfile, format!("{}\n", other.id())).unwrap();
    let message = refused(
        &pidfile,
        &format!("names pid {} (sleep), which is running", other.id()),
        &[],
    );
    assert!(message.contains("another herdsman?"), "{message}");
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", other.id())
    );
    other.kill().unwrap();
    other.wait().unwrap();
}

#[test]
fn a_stale_pidfile_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("herdsman.pid");
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    fs::write(&pidfile, format!("{dead}\n")).unwrap();
    let h = start_with(&pidfile_args(&pidfile));
    let workers = h.wait_serving();
    assert_eq!(
        fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", h.pid)
    );
    finish_with(h, &workers);
    assert!(!pidfile.exists());
}

#[test]
fn a_pidfile_taken_over_before_exit_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("herdsman.pid");
    let h = start_with(&pidfile_args(&pidfile));
    let workers = h.wait_serving();
    fs::write(&pidfile, "4194303\n").unwrap();
    let status = finish_with(h, &workers);
    assert_eq!(status.code(), Some(0));
    assert_eq!(fs::read_to_string(&pidfile).unwrap(), "4194303\n");
}

/// The master runs with SIGALRM and SIGTSTP ignored and SIGALRM blocked, and with variables a
/// worker must not see; the worker has none of it.
#[test]
fn workers_get_an_empty_mask_default_dispositions_and_an_explicit_environment() {
    let wrapper = "import os, signal, sys\n\
                   signal.signal(signal.SIGALRM, signal.SIG_IGN)\n\
                   signal.signal(signal.SIGTSTP, signal.SIG_IGN)\n\
                   signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n\
                   os.execv(sys.argv[1], sys.argv[1:])";
    let python = common::python();
    let python = python.to_str().unwrap();
    let h = Start::new(&["-w", "1", "asgi_app:app"])
        .wrapped(&[python, "-c", wrapper])
        .env("NOTIFY_SOCKET", "/run/nothing/notify")
        .env("LISTEN_PID", "1")
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "a:b")
        .env("WATCHDOG_USEC", "1000000")
        .env("HERDSMAN_BACKLOG", "128")
        .env("KEEP_ME", "yes")
        .spawn();
    let worker = h.wait_serving()[0];
    let master_ignored = status_mask(h.pid, "SigIgn");
    assert_eq!(
        master_ignored & (bit(libc::SIGALRM) | bit(libc::SIGTSTP)),
        bit(libc::SIGALRM) | bit(libc::SIGTSTP),
        "the wrapper worked"
    );
    assert_ne!(status_mask(h.pid, "SigBlk") & bit(libc::SIGALRM), 0);
    assert_eq!(status_mask(worker, "SigBlk"), 0, "empty signal mask");
    let ignored = status_mask(worker, "SigIgn");
    assert_eq!(
        ignored & (bit(libc::SIGALRM) | bit(libc::SIGTSTP)),
        0,
        "dispositions the master had ignored are back to default (SigIgn {ignored:x}; \
         Python itself ignores SIGPIPE and SIGXFSZ)"
    );
    let environ = fs::read(format!("/proc/{worker}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry.split_once('=').map(|(name, _)| name.to_string())
        })
        .collect();
    for private in [
        "NOTIFY_SOCKET",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        "WATCHDOG_USEC",
    ] {
        assert!(
            !names.iter().any(|n| n == private),
            "{private} leaked: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.starts_with("HERDSMAN_")),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "KEEP_ME"), "{names:?}");
    finish_with(h, &[worker]);
}

#[test]
fn umask_applies_to_files_the_workers_create() {
    let dir = tempfile::tempdir().unwrap();
    let h = Herdsman::start(&["--umask", "077", "-w", "1", "output_app:app"]);
    let worker = h.wait_serving()[0];
    let target = dir.path().join("made-by-worker");
    let path = format!("/touch?path={}", target.display());
    let response = http::get(h.addr(), &path).expect("served");
    assert_eq!(response.json()["mode"], 0o600);
    assert_eq!(
        fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(status_field(worker, "Umask"), ["0077"]);
    finish_with(h, &[worker]);
}

/// An interpreter that `nobody` can run with uvicorn importable, and the PYTHONPATH it needs:
/// the test venv may live where `nobody` cannot reach (under /root), so a system python3 with
/// the venv's site-packages is tried too. The probe drops to nobody the way the master does
/// (setgroups, setgid, setuid, then exec without capabilities); `setpriv` would keep its
/// capabilities until the exec and pass where the worker would fail.
fn python_for_nobody() -> Option<(PathBuf, Option<String>)> {
    let venv = common::python();
    let site = Command::new(&venv)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())?;
    let apps = common::apps_dir();
    let probe = format!(
        "import os, uvicorn; os.listdir({:?})",
        apps.display().to_string()
    );
    let candidates = [
        (venv.clone(), None),
        (PathBuf::from("/usr/bin/python3"), Some(site)),
    ];
    let drop_then_exec = "import os, sys\n\
                          os.setgroups([]); os.setgid(65534); os.setuid(65534)\n\
                          os.execv(sys.argv[1], sys.argv[1:])";
    candidates.into_iter().find(|(python, pythonpath)| {
        let mut cmd = Command::new(&venv);
        cmd.args(["-c", drop_then_exec])
            .arg(python)
            .args(["-c", &probe])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(path) = pythonpath {
            cmd.env("PYTHONPATH", path);
        }
        cmd.status().is_ok_and(|s| s.success())
    })
}

#[test]
fn workers_run_as_the_configured_user_and_group() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip(&format!(
            "switching the workers' user needs a root master, and this runs as uid {}",
            nix::unistd::geteuid()
        ));
    }
    let Some((python, pythonpath)) = python_for_nobody() else {
        return common::skip("no interpreter with uvicorn that user nobody (uid 65534) can run (the test venv is out of its reach, and no system python3 can import the venv's packages)");
    };
    let shared = tempfile::tempdir().unwrap();
    fs::set_permissions(shared.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    let pythonpath_env = pythonpath.map(|p| format!("PYTHONPATH={p}"));
    let mut args = vec!["-u", "nobody", "-g", "4242", "--umask", "027", "-w", "1"];
    if let Some(env) = &pythonpath_env {
        args.extend(["-e", env.as_str()]);
    }
    args.push("output_app:app");
    let h = Start::new(&args).python(&python).spawn();
    let worker = h.wait_serving()[0];
    assert_eq!(status_field(worker, "Uid"), ["65534"; 4]);
    assert_eq!(status_field(worker, "Gid"), ["4242"; 4]);
    assert_eq!(
        status_field(worker, "Groups"),
        ["4242"],
        "supplementary groups replaced"
    );
    assert_eq!(
        status_field(h.pid, "Uid"),
        ["0"; 4],
        "the master stays root"
    );
    let environ = String::from_utf8_lossy(&fs::read(format!("/proc/{worker}/environ")).unwrap())
        .replace('\0', "\n");
    assert!(environ.lines().any(|l| l == "USER=nobody"), "{environ}");
    let target = shared.path().join("made-by-nobody");
    let response = http::get(h.addr(), &format!("/touch?path={}", target.display()))
        .expect("the app serves as nobody");
    assert_eq!(response.pid(), worker);
    assert_eq!(response.json()["mode"], 0o640);
    let meta = fs::metadata(&target).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (65534, 4242));
    finish_with(h, &[worker]);
}

/// An interpreter the workers' user cannot execute (here: behind a directory only root may
/// enter, as a venv under /root is) is reported as that, with the path, the user and the fix,
/// by a start and by `herdsman check`; not as a missing uvicorn.
#[test]
fn an_interpreter_the_workers_user_cannot_execute_is_named() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip(&format!(
            "switching the workers' user needs a root master, and this runs as uid {}",
            nix::unistd::geteuid()
        ));
    }
    let private = tempfile::tempdir().unwrap();
    fs::set_permissions(private.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let python = private.path().join("python");
    std::os::unix::fs::symlink(common::python(), &python).unwrap();
    let python = python.to_str().expect("UTF-8 path");
    let args = ["-u", "nobody", "--python", python, "-b", "127.0.0.1:0"];
    let expected = [
        python,
        "user nobody (uid 65534)",
        "give that user read and execute permission on the interpreter and its directories, or create a venv it can read",
    ];
    let (code, _, err) = common::run_to_end(&[&args[..], &["asgi_app:app"]].concat(), &[]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains("EACCES"), "{err}");
    for part in expected {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    assert!(!err.contains("uvicorn installed"), "{err}");
    let (code, _, err) =
        common::run_to_end(&[&["check"], &args[..], &["asgi_app:app"]].concat(), &[]);
    assert_eq!(code, Some(6), "{err}");
    for part in expected {
        assert!(err.contains(part), "check: {part:?} in {err}");
    }
}

/// A variable whose value is not UTF-8 (a Latin-1 file name, say) reaches the workers byte for
/// byte, exec'd or forked from the zygote (whose own environment the forks inherit).
#[test]
fn a_variable_that_is_not_utf8_reaches_the_workers() {
    use std::os::unix::ffi::OsStringExt;
    let value = b"caf\xe9 \xff".to_vec();
    let entry = [b"LATIN1_NAME=".as_slice(), &value].concat();
    for spawn in ["exec", "zygote"] {
        let h = Start::new(&["-w", "1", "--spawn", spawn, "asgi_app:app"])
            .env_os("LATIN1_NAME", std::ffi::OsString::from_vec(value.clone()))
            .spawn();
        let worker = h.wait_serving()[0];
        let environ = fs::read(format!("/proc/{worker}/environ")).unwrap();
        assert!(
            environ.split(|&b| b == 0).any(|e| e == entry.as_slice()),
            "{spawn}: {:?}",
            String::from_utf8_lossy(&environ)
        );
        finish_with(h, &[worker]);
    }
}

/// A master that is not root cannot give its workers another user: a configuration error.
#[test]
fn a_master_that_is_not_root_cannot_switch_users() {
    if !nix::unistd::geteuid().is_root() {
        let (code, _, err) = common::run_to_end(&["check", "-u", "root", "m:a"], &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("only root can switch users"), "{err}");
        return;
    }
    // As root: run the check as nobody.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::binary())
        .args(["check", "-u", "root", "m:a"])
        .env_remove("HERDSMAN_TEST_PYTHON")
        .output();
    let Ok(out) = out else {
        return common::skip("setpriv is not available");
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && out.status.code() != Some(2) {
        return common::skip(&format!("nobody cannot execute the test binary: {err}"));
    }
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("command line --user: `user` is uid 0, but herdsman runs as uid 65534: only root can switch users"),
        "{err}"
    );
}

/// `--spawn zygote --preload` with `--user nobody`: the zygote runs as nobody (it is exec'd with
/// the workers' credentials), so the workers it forks do too, with the group and its
/// supplementary groups replaced; the root master reaps and replaces them as usual.
#[test]
fn a_zygote_and_the_workers_it_forks_run_as_the_configured_user() {
    if !nix::unistd::geteuid().is_root() {
        return common::skip(&format!(
            "switching the workers' user needs a root master, and this runs as uid {}",
            nix::unistd::geteuid()
        ));
    }
    let Some((python, pythonpath)) = python_for_nobody() else {
        return common::skip("no interpreter with uvicorn that user nobody (uid 65534) can run (the test venv is out of its reach, and no system python3 can import the venv's packages)");
    };
    let pythonpath_env = pythonpath.map(|p| format!("PYTHONPATH={p}"));
    let mut args = vec![
        "-u",
        "nobody",
        "-g",
        "4242",
        "-w",
        "2",
        "--spawn",
        "zygote",
        "--preload",
    ];
    if let Some(env) = &pythonpath_env {
        args.extend(["-e", env.as_str()]);
    }
    args.push("asgi_app:app");
    let h = Start::new(&args).python(&python).spawn();
    let workers = h.wait_serving();
    let zygote = common::records_with(&h.log.lines(), "zygote ready")
        .iter()
        .rev()
        .find_map(|r| common::field_i64(r, "zygote_pid"))
        .expect("a zygote") as i32;
    for pid in workers.iter().copied().chain([zygote]) {
        assert_eq!(status_field(pid, "Uid"), ["65534"; 4], "pid {pid}");
        assert_eq!(status_field(pid, "Gid"), ["4242"; 4], "pid {pid}");
        assert_eq!(status_field(pid, "Groups"), ["4242"], "pid {pid}");
    }
    assert_eq!(
        status_field(h.pid, "Uid"),
        ["0"; 4],
        "the master stays root"
    );
    common::signal(workers[0], libc::SIGKILL);
    let next = h.wait_record("worker ready", |r| {
        common::field_i64(r, "pid").is_some_and(|p| !workers.contains(&(p as i32)))
    });
    let next = common::field_i64(&next, "pid").expect("pid") as i32;
    assert_eq!(status_field(next, "Uid"), ["65534"; 4], "the replacement");
    assert_eq!(common::parent_pid(next), Some(h.pid), "the master's child");
    let response = http::get(h.addr(), "/").expect("served as nobody");
    assert_eq!(response.status, 200);
    assert!(h.finish().success());
}

/// The runtime directories (`herdsman-XXXXXX`, holding the worker runtime) in `dir`.
fn runtime_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read the runtime parent")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("herdsman_worker.py").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// A master killed with SIGKILL cannot remove its runtime directory; the next master to start
/// does (its lock died with the killed master's process), and leaves alone a live master's, the
/// per-user control directory, and a directory from another program. Before, every SIGKILL left
/// one more `herdsman-XXXXXX` behind for good.
#[test]
fn a_killed_masters_runtime_directory_is_reclaimed_by_the_next_start() {
    let parent = tempfile::tempdir().expect("temp dir");
    // Searchable by all: where a root master puts it too (the runtime must be readable by `user`).
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let xdg = parent.path().to_str().expect("utf-8 temp path");
    let start = || {
        let h = Start::new(&["-w", "1", "wsgi_app:app"])
            .env("XDG_RUNTIME_DIR", xdg)
            .spawn();
        h.wait_serving();
        h
    };
    let foreign = parent.path().join("herdsman-notours");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("herdsman_worker.py"), "").expect("write");

    let mut killed = start();
    let dead = runtime_dirs(parent.path());
    let dead: Vec<PathBuf> = dead.into_iter().filter(|d| *d != foreign).collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let live = start();
    killed.signal(libc::SIGKILL);
    killed.wait_exit(WAIT);
    common::assert_gone(&killed.all_worker_pids(), WAIT);
    assert!(dead[0].exists(), "the killed master could not remove it");
    let controls: Vec<PathBuf> = fs::read_dir(parent.path())
        .expect("read")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join(format!("{}.sock", live.pid)).exists())
        .collect();
    assert_eq!(
        controls.len(),
        1,
        "the live master's control directory is here too"
    );

    let next = start();
    assert!(!dead[0].exists(), "{} is still there", dead[0].display());
    let reclaimed = next.wait_record(
        "removed the runtime directory of a master that is gone",
        |_| true,
    );
    assert_eq!(reclaimed["path"].as_str(), dead[0].to_str(), "{reclaimed}");
    let left = runtime_dirs(parent.path());
    assert_eq!(
        left.len(),
        3,
        "the live master's, the new one's and the foreign one: {left:?}"
    );
    assert!(left.contains(&foreign));
    assert!(controls[0].join(format!("{}.sock", live.pid)).exists());
    assert_eq!(
        http::get(live.addr(), "/").expect("still serving").status,
        200
    );
    assert!(live.finish().success());
    assert!(next.finish().success());
    assert_eq!(
        runtime_dirs(parent.path()),
        vec![foreign],
        "each removed its own at exit"
    );
    let _ = killed.finish();
}
