//! The systemd and container contract, with real processes: a fake `NOTIFY_SOCKET` receiving
//! the notify protocol through boot, reloads (good, rolled back, refused), an in-place upgrade
//! and stop, and the watchdog; socket activation through real inherited fds (a bash launcher that keeps the
//! contract, and `systemd-socket-activate` when installed), including a `LISTEN_PID` meant for
//! someone else; the master as PID 1 of a new pid namespace reaping 100 orphans and passing its
//! exit code on; and `drain_before_stop`.
//!
//! Every wait has a deadline; absence is checked only where the protocol makes it certain
//! (no `WATCHDOG=1` before `READY=1` when the watchdog is not ours) or over a bounded window
//! (a stopped master sends nothing).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use common::http::get;
use common::{message, parse_record, records_with, Herdsman, Start, WAIT};
use serde_json::Value;

// ---- a fake systemd notify socket -------------------------------------------------------------

/// The receiving end of `NOTIFY_SOCKET`: every datagram, in order, with its arrival time.
struct FakeSystemd {
    _dir: tempfile::TempDir,
    path: PathBuf,
    socket: UnixDatagram,
    got: Vec<(Instant, String)>,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        FakeSystemd {
            _dir: dir,
            path,
            socket,
            got: Vec::new(),
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }

    /// Receives one datagram before `deadline`, if one comes.
    fn recv_until(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        self.socket
            .set_read_timeout(Some(left))
            .expect("read timeout");
        let mut buf = vec![0u8; 4096];
        let n = self.socket.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        self.got.push((Instant::now(), text.clone()));
        Some(text)
    }

    /// Waits for a datagram that satisfies `pred`; returns it. Panics after `timeout`.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(text) = self.recv_until(deadline) {
            if pred(&text) {
                return text;
            }
        }
        panic!(
            "no {what} within {timeout:?}; received: {:#?}",
            self.texts()
        );
    }

    /// Waits for the next datagram whose first line is `first`.
    fn wait_line(&mut self, first: &str) -> String {
        self.wait_for(first, WAIT, |t| t.lines().next() == Some(first))
    }

    fn texts(&self) -> Vec<&str> {
        self.got.iter().map(|(_, t)| t.as_str()).collect()
    }

    /// The state changes received, in order: READY=1, RELOADING=1, STOPPING=1.
    fn lifecycle(&self) -> Vec<&str> {
        self.texts()
            .into_iter()
            .filter_map(|t| t.lines().next())
            .filter(|l| matches!(*l, "READY=1" | "RELOADING=1" | "STOPPING=1"))
            .collect()
    }
}

/// `KEY=value` of one datagram.
fn field<'a>(datagram: &'a str, key: &str) -> Option<&'a str> {
    datagram
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

/// CLOCK_MONOTONIC in microseconds, as systemd reads `MONOTONIC_USEC`.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) },
        0
    );
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

fn env_value(addr: SocketAddr, name: &str) -> Value {
    let answer = get(addr, &format!("/env?k={name}")).expect("GET /env");
    answer.json()["value"].clone()
}

#[test]
fn notify_sequence_through_boot_reloads_and_stop() {
    let mut systemd = FakeSystemd::new();
    let files = tempfile::tempdir().expect("temp dir");
    let marker = files.path().join("broken");
    let config = common::write_file(
        files.path(),
        "herdsman.toml",
        "app = \"fail_if_marker:app\"\nworkers = 1\n",
    );
    let mut h = Start::new(&[
        "-c",
        config.to_str().unwrap(),
        "--startup-attempts",
        "1",
        "--boot-timeout",
        "20s",
    ])
    .env("NOTIFY_SOCKET", systemd.path())
    .env("MARKER", marker.to_str().unwrap())
    .spawn();

    // Boot: more time first (boot_timeout 20 s + 10 s), then READY=1 with the status.
    let ready = systemd.wait_line("READY=1");
    let first = systemd.texts()[0].to_string();
    assert_eq!(
        field(&first, "EXTEND_TIMEOUT_USEC"),
        Some("30000000"),
        "{first}"
    );
    assert!(
        field(&first, "STATUS").is_some_and(|s| s.starts_with("starting")),
        "{first}"
    );
    assert_eq!(
        field(&ready, "STATUS"),
        Some("serving: 1/1 workers ready, generation 0")
    );
    h.wait_serving();
    let addr = h.addr();
    for private in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"] {
        assert_eq!(
            env_value(addr, private),
            Value::Null,
            "{private} reached a worker"
        );
    }

    // A good reload: RELOADING=1 with the monotonic clock in the same datagram, then READY=1.
    let before = monotonic_usec();
    h.signal(libc::SIGHUP);
    let reloading = systemd.wait_line("RELOADING=1");
    let after = monotonic_usec();
    let stamp: u64 = field(&reloading, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(
        (before..=after).contains(&stamp),
        "{before} <= {stamp} <= {after}"
    );
    let ready = systemd.wait_line("READY=1");
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("reloaded to generation 1")),
        "{ready}"
    );

    // The new generation cannot import: rolled back, and READY=1 all the same.
    std::fs::write(&marker, "").expect("create the marker");
    h.signal(libc::SIGHUP);
    systemd.wait_line("RELOADING=1");
    let ready = systemd.wait_line("READY=1");
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("reload failed")),
        "{ready}"
    );
    h.wait_record("reload failed", |_| true);
    std::fs::remove_file(&marker).expect("remove the marker");

    // An invalid configuration: refused, nothing changes, READY=1 so `systemctl reload` returns.
    std::fs::write(
        &config,
        "app = \"fail_if_marker:app\"\nworkers = \"lots\"\n",
    )
    .unwrap();
    h.signal(libc::SIGHUP);
    systemd.wait_line("RELOADING=1");
    let ready = systemd.wait_line("READY=1");
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("reload refused")),
        "{ready}"
    );
    assert_eq!(get(addr, "/").expect("still serving").status, 200);

    h.signal(libc::SIGTERM);
    let stopping = systemd.wait_line("STOPPING=1");
    assert!(field(&stopping, "STATUS").is_some(), "{stopping}");
    assert!(h.wait_exit(WAIT).success());
    assert_eq!(
        systemd.lifecycle(),
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ],
        "{:#?}",
        systemd.texts()
    );
    assert!(
        !systemd.texts().iter().any(|t| t.contains("WATCHDOG")),
        "no WATCHDOG_USEC, no pings"
    );
    assert!(h.finish().success());
}

/// An in-place upgrade (SIGUSR2) is one reload to systemd (`Type=notify-reload`): the old binary
/// sends `RELOADING=1` with the monotonic clock right before its exec, and the new one `READY=1`
/// once its workers serve, from the same pid. Before, nothing was sent, and systemd never knew the
/// master was reloading.
#[test]
fn notify_sequence_through_an_upgrade() {
    let mut systemd = FakeSystemd::new();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let binary = common::installed(scratch.path());
    let mut h = Start::new(&["-w", "1", "asgi_app:app"])
        .binary(binary)
        .env("NOTIFY_SOCKET", systemd.path())
        .spawn();
    systemd.wait_line("READY=1");
    let first = h.wait_serving();

    let before = monotonic_usec();
    h.signal(libc::SIGUSR2);
    let reloading = systemd.wait_line("RELOADING=1");
    let after = monotonic_usec();
    let stamp: u64 = field(&reloading, "MONOTONIC_USEC")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(
        (before..=after).contains(&stamp),
        "{before} <= {stamp} <= {after}"
    );
    assert!(
        field(&reloading, "STATUS").is_some_and(|s| s.starts_with("upgrading")),
        "{reloading}"
    );
    let ready = systemd.wait_line("READY=1");
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.starts_with("upgraded in place to generation 1")),
        "{ready}"
    );
    let done = h.wait_record("upgrade complete", |_| true);
    assert_eq!(done["pid"].as_i64(), Some(h.pid as i64), "{done}");
    let fresh = h.wait_record("worker ready", |r| r["generation"].as_u64() == Some(1));
    let pid = fresh["pid"].as_i64().expect("pid") as i32;
    assert!(!first.contains(&pid), "a new worker: {first:?} -> {pid}");
    assert_eq!(get(h.addr(), "/").expect("served").status, 200);

    h.signal(libc::SIGTERM);
    systemd.wait_line("STOPPING=1");
    assert!(h.wait_exit(WAIT).success());
    assert_eq!(
        systemd.lifecycle(),
        ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"],
        "{:#?}",
        systemd.texts()
    );
    assert!(h.finish().success());
}

#[test]
fn watchdog_pings_come_from_the_loop_and_stop_while_it_is_stopped() {
    let mut systemd = FakeSystemd::new();
    let started = Instant::now();
    let h = Start::new(&["-w", "1", "asgi_app:app"])
        .env("NOTIFY_SOCKET", systemd.path())
        .env("WATCHDOG_USEC", "200000")
        .spawn();
    systemd.wait_line("READY=1");
    let start = systemd.got.len();
    for _ in 0..5 {
        systemd.wait_line("WATCHDOG=1");
    }
    let pings: Vec<Instant> = systemd.got[start..]
        .iter()
        .filter(|(_, t)| t == "WATCHDOG=1")
        .map(|(at, _)| *at)
        .collect();
    for pair in pings.windows(2) {
        // Every half period (100 ms); generous for two shared cores.
        let gap = pair[1] - pair[0];
        assert!(gap <= Duration::from_secs(2), "gap {gap:?} between pings");
    }
    // Never more often than every 100 ms (counted from the start: reading late bunches them).
    let all = systemd
        .texts()
        .iter()
        .filter(|t| **t == "WATCHDOG=1")
        .count();
    let most = started.elapsed().as_millis() / 100 + 2;
    assert!(all as u128 <= most, "{all} pings, at most {most} expected");

    // A stopped loop feeds nothing: systemd's watchdog would fire, which is the point.
    h.signal(libc::SIGSTOP);
    while systemd
        .recv_until(Instant::now() + Duration::from_millis(300))
        .is_some()
    {} // what was already in flight
    let silent_until = Instant::now() + Duration::from_millis(600);
    let during = systemd.recv_until(silent_until);
    h.signal(libc::SIGCONT);
    assert_eq!(during, None, "a stopped master sent something");
    systemd.wait_for("a ping after SIGCONT", Duration::from_secs(10), |t| {
        t == "WATCHDOG=1"
    });
    assert!(h.finish().success());
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() {
    let mut systemd = FakeSystemd::new();
    let h = Start::new(&["-w", "1", "asgi_app:app"])
        .env("NOTIFY_SOCKET", systemd.path())
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1")
        .spawn();
    // The first ping would be due at the master's first wakeup, long before READY=1.
    systemd.wait_line("READY=1");
    assert!(
        !systemd.texts().iter().any(|t| t.contains("WATCHDOG=1")),
        "{:#?}",
        systemd.texts()
    );
    assert!(h.finish().success());
}

// ---- socket activation --------------------------------------------------------------------

/// A launcher keeping systemd's contract: the listener (`HM_LISTENER_FD`, or /dev/null when
/// unset) at fd 3, then `LISTEN_PID` (its own pid, which `exec` keeps, unless `HM_LISTEN_PID`
/// says otherwise), `LISTEN_FDS` and `LISTEN_FDNAMES`, then exec herdsman.
const LAUNCHER: &str = r#"
if [ -n "$HM_LISTENER_FD" ]; then exec 3<&"$HM_LISTENER_FD" && exec {HM_LISTENER_FD}<&-; else exec 3</dev/null; fi
export LISTEN_PID="${HM_LISTEN_PID:-$$}" LISTEN_FDS="${HM_LISTEN_FDS:-1}" LISTEN_FDNAMES="${HM_LISTEN_FDNAMES:-web}"
unset HM_LISTENER_FD HM_LISTEN_PID HM_LISTEN_FDS HM_LISTEN_FDNAMES
exec "$@"
"#;

fn launcher() -> [&'static str; 4] {
    ["bash", "-c", LAUNCHER, "launcher"]
}

/// A listening socket on loopback, plus an inheritable duplicate of it above fd 20.
struct Passed {
    listener: TcpListener,
    addr: SocketAddr,
    inheritable: i32,
}

impl Passed {
    fn new() -> Passed {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("local addr");
        // SAFETY: F_DUPFD on an fd this test owns; the duplicate has no FD_CLOEXEC, so the
        // launcher inherits it, and it is closed in Drop.
        let inheritable = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD, 20) };
        assert!(inheritable >= 20, "F_DUPFD failed");
        Passed {
            listener,
            addr,
            inheritable,
        }
    }

    fn inode(&self) -> u64 {
        socket_inode(std::process::id() as i32, self.listener.as_raw_fd()).expect("inode")
    }
}

impl Drop for Passed {
    fn drop(&mut self) {
        // SAFETY: the duplicate made in `new`, owned by nothing else.
        unsafe { libc::close(self.inheritable) };
    }
}

fn socket_inode(pid: i32, fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Inodes of every listening TCP socket on the host.
fn listening_tcp_inodes() -> Vec<u64> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 10 && cols[3] == "0A" {
                found.extend(cols[9].parse::<u64>().ok());
            }
        }
    }
    found
}

/// The listening TCP sockets `pid` holds.
fn listening_sockets_of(pid: i32) -> Vec<u64> {
    let listening = listening_tcp_inodes();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd");
    let mut inodes: Vec<u64> = fds
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| socket_inode(pid, fd))
        .filter(|inode| listening.contains(inode))
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    inodes
}

#[test]
fn activated_sockets_are_served_instead_of_binding() {
    let passed = Passed::new();
    // The harness adds `-b 127.0.0.1:0` on the command line: it is overridden, with a warning.
    let h = Start::new(&["-w", "2", "asgi_app:app"])
        .wrapped(&launcher())
        .env("HM_LISTENER_FD", &passed.inheritable.to_string())
        .spawn();
    let workers = h.wait_serving();
    let adopted = h.wait_record("socket from systemd", |_| true);
    assert_eq!(adopted["fd"], 3);
    assert_eq!(adopted["name"], "web");
    let listening: Vec<Value> = records_with(&h.log.lines(), "listening")
        .into_iter()
        .map(|r| r["address"].clone())
        .collect();
    assert_eq!(listening, [format!("fd://3 ({})", passed.addr)]);
    h.wait_record(
        "socket activation: serving the sockets systemd passed",
        |r| r["level"] == "WARN",
    );

    let answer = get(passed.addr, "/").expect("GET / on the activated socket");
    assert!(workers.contains(&answer.pid()), "answered by a worker");
    assert_eq!(
        listening_sockets_of(h.pid),
        [passed.inode()],
        "the master listens on the passed socket only"
    );
    for &pid in &workers {
        assert_eq!(
            socket_inode(pid, 3),
            Some(passed.inode()),
            "worker {pid} fd 3"
        );
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        assert_eq!(
            env_value(passed.addr, name),
            Value::Null,
            "{name} reached a worker"
        );
    }
    assert!(h.finish().success());
}

#[test]
fn sockets_meant_for_another_pid_are_left_alone() {
    let passed = Passed::new();
    let h = Start::new(&["-w", "1", "asgi_app:app"])
        .wrapped(&launcher())
        .env("HM_LISTENER_FD", &passed.inheritable.to_string())
        .env("HM_LISTEN_PID", "1")
        .spawn();
    let workers = h.wait_serving();
    h.wait_record("socket activation variables ignored", |r| {
        message(r).contains("LISTEN_PID=1")
    });
    let bound = h.addr();
    assert_ne!(bound, passed.addr);
    assert_eq!(
        get(bound, "/").expect("GET / on the bound address").status,
        200
    );
    assert!(
        !h.log.text().contains("socket from systemd"),
        "nothing adopted"
    );
    // fd 3 stays what it was (open, not owned, not served); the master bound its own socket.
    let ours = listening_sockets_of(h.pid);
    assert_eq!(ours.len(), 2, "fd 3 and the configured bind: {ours:?}");
    assert!(ours.contains(&passed.inode()));
    assert_eq!(
        listening_sockets_of(workers[0]),
        [*ours.iter().find(|&&i| i != passed.inode()).unwrap()],
        "the worker serves the bound socket only"
    );
    assert!(h.finish().success());
}

#[test]
fn malformed_activation_is_a_bind_error() {
    // A LISTEN_FDS that is not a number.
    let mut h = Start::new(&["-w", "1", "asgi_app:app"])
        .wrapped(&launcher())
        .env("HM_LISTEN_FDS", "two")
        .spawn();
    assert_eq!(h.wait_exit(WAIT).code(), Some(5));
    let said = |needle: &str| h.log.records().iter().any(|r| message(r).contains(needle));
    assert!(
        said("LISTEN_FDS=\"two\" is not a valid number"),
        "{}",
        h.log.text()
    );
    assert!(h.finish().code() == Some(5));

    // fd 3 is /dev/null, not a listening socket.
    let mut h = Start::new(&["-w", "1", "asgi_app:app"])
        .wrapped(&launcher())
        .spawn();
    assert_eq!(h.wait_exit(WAIT).code(), Some(5));
    let said = |needle: &str| h.log.records().iter().any(|r| message(r).contains(needle));
    assert!(
        said("a socket passed in LISTEN_FDS cannot be used"),
        "{}",
        h.log.text()
    );
    assert!(h.finish().code() == Some(5));

    // LISTEN_FDNAMES naming more sockets than LISTEN_FDS passes.
    let passed = Passed::new();
    let mut h = Start::new(&["-w", "1", "asgi_app:app"])
        .wrapped(&launcher())
        .env("HM_LISTENER_FD", &passed.inheritable.to_string())
        .env("HM_LISTEN_FDNAMES", "web:admin")
        .spawn();
    assert_eq!(h.wait_exit(WAIT).code(), Some(5));
    let said = |needle: &str| h.log.records().iter().any(|r| message(r).contains(needle));
    assert!(said("LISTEN_FDNAMES names 2 sockets"), "{}", h.log.text());
    assert!(h.finish().code() == Some(5));
}

#[test]
fn systemd_socket_activate_starts_herdsman_on_the_first_connection() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return common::skip("systemd-socket-activate is not installed (apt-get install systemd)");
    }
    // A free port: systemd-socket-activate binds it itself.
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let listen = addr.to_string();
    let h = Start::new(&["-w", "1", "asgi_app:app"])
        .no_default_bind()
        .wrapped(&[
            "systemd-socket-activate",
            "-l",
            &listen,
            "--fdname=web",
            "-E",
            "XDG_RUNTIME_DIR",
        ])
        .spawn();
    // It binds, then execs herdsman (same pid) at the first connection, which waits in the
    // backlog until a worker accepts it.
    h.wait_line(&format!("Listening on {listen}"));
    let answer = get(addr, "/env?k=LISTEN_FDS").expect("GET through systemd-socket-activate");
    assert_eq!(
        answer.json()["value"],
        Value::Null,
        "LISTEN_FDS reached a worker"
    );
    let adopted = h.wait_record("socket from systemd", |_| true);
    assert_eq!(
        (adopted["fd"].clone(), adopted["name"].clone()),
        (3.into(), "web".into())
    );
    assert!(h.finish().success());
}

// ---- PID 1 ----------------------------------------------------------------------------------

/// Whether this process may create a pid namespace (root, or a user namespace allowing it).
fn can_unshare_pid() -> Result<(), String> {
    let status = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!(
            "`unshare --pid --fork --mount-proc` failed ({s}): not root?"
        )),
        Err(e) => Err(format!("unshare cannot be run: {e}")),
    }
}

/// A master running as PID 1 of a new pid namespace, under `unshare --fork --kill-child`. Its
/// log names pids as the namespace sees them, so the harness's pid checks do not apply: the
/// namespace itself is the no-leftover check (it is empty once its PID 1 is gone).
/// The log lines so far and how many of the two streams ended, with a wakeup on change.
type Lines = Arc<(Mutex<(Vec<String>, usize)>, Condvar)>;

struct Pid1 {
    unshare: i32,
    lines: Lines,
    exited: std::sync::mpsc::Receiver<ExitStatus>,
    status: Option<ExitStatus>,
    _dir: tempfile::TempDir,
}

impl Pid1 {
    fn start(args: &[&str]) -> Pid1 {
        let dir = tempfile::tempdir().expect("temp dir");
        let python = common::python();
        let apps = common::apps_dir();
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(common::binary())
            .args(["--python", python.to_str().unwrap()])
            .args(["--chdir", apps.to_str().unwrap()])
            .args(["--log-format", "json", "-b", "127.0.0.1:0"])
            .args(args)
            .env_remove("VIRTUAL_ENV")
            .env_remove("HERDSMAN_TEST_PYTHON")
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unshare");
        let lines = Arc::new((Mutex::new((Vec::new(), 0)), Condvar::new()));
        pump(child.stdout.take().unwrap(), Arc::clone(&lines));
        pump(child.stderr.take().unwrap(), Arc::clone(&lines));
        let unshare = child.id() as i32;
        let (tx, exited) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        Pid1 {
            unshare,
            lines,
            exited,
            status: None,
            _dir: dir,
        }
    }

    /// Waits until `pred` holds for the log so far.
    fn wait<T>(&self, what: &str, pred: impl Fn(&[String]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let (lock, grew) = &*self.lines;
        let mut guard = lock.lock().expect("log lock");
        loop {
            if let Some(found) = pred(&guard.0) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || guard.1 >= 2 {
                let text = guard.0.join("\n");
                drop(guard);
                panic!("timed out waiting for {what}; log:\n{text}");
            }
            guard = grew
                .wait_timeout(guard, deadline - now)
                .expect("log lock")
                .0;
        }
    }

    fn record(&self, prefix: &str) -> Value {
        self.wait(prefix, |lines| {
            records_with(lines, prefix).into_iter().next()
        })
    }

    fn records(&self) -> Vec<Value> {
        let guard = self.lines.0.lock().expect("log lock");
        guard.0.iter().filter_map(|l| parse_record(l)).collect()
    }

    /// The master's pid as this (the parent) namespace sees it: unshare's only child.
    fn master_pid(&self) -> i32 {
        let children = common::children_of(self.unshare);
        assert_eq!(children.len(), 1, "unshare's children: {children:?}");
        children[0].0
    }

    fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = self
            .exited
            .recv_timeout(WAIT)
            .expect("the master did not exit");
        self.status = Some(status);
        status
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.status.is_none() && self.exited.try_recv().is_err() {
            // --kill-child: the master, and with it the whole namespace, dies with unshare.
            common::signal(self.unshare, libc::SIGKILL);
            let _ = self.exited.recv_timeout(WAIT);
        }
    }
}

fn pump(stream: impl std::io::Read + Send + 'static, lines: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            lines.0.lock().expect("log lock").0.push(line);
            lines.1.notify_all();
        }
        lines.0.lock().expect("log lock").1 += 1;
        lines.1.notify_all();
    });
}

/// The pid namespace of `pid`, as the /proc link names it.
fn pid_namespace(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()
}

/// Every process in namespace `ns`, with its state letter.
fn processes_in(ns: &Path) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid_namespace(pid).as_deref() == Some(ns))
        .filter_map(|pid| Some((pid, common::process_state(pid)?)))
        .collect()
}

#[test]
fn as_pid_1_it_reaps_a_hundred_orphans_quietly_and_stops_on_term() {
    if let Err(why) = can_unshare_pid() {
        return common::skip(&format!("cannot create a pid namespace: {why}"));
    }
    let mut ns = Pid1::start(&["--log-level", "debug", "-w", "2", "orphans_app:app"]);
    let starting = ns.record("herdsman starting");
    assert_eq!(starting["pid"], 1, "the master is PID 1 of its namespace");
    ns.record("serving: all workers ready");
    let master = ns.master_pid();
    let namespace = pid_namespace(master).expect("the master's pid namespace");
    assert_ne!(
        Some(&namespace),
        pid_namespace(std::process::id() as i32).as_ref()
    );
    let addr: SocketAddr = ns.wait("the listening address", |lines| {
        records_with(lines, "listening")
            .iter()
            .find_map(|r| r["address"].as_str()?.parse().ok())
    });

    let answer = get(addr, "/orphans?n=100").expect("GET /orphans");
    let orphans: Vec<i64> = answer.json()["orphans"]
        .as_array()
        .expect("orphan pids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(orphans.len(), 100);
    // Each one is reparented to the master and reaped by it, as a child that is not a worker.
    let reaped = ns.wait("the 100 orphans reaped", |lines| {
        let pids: Vec<i64> = records_with(lines, "reaped a child that is not a worker")
            .iter()
            .filter_map(|r| r["pid"].as_i64())
            .collect();
        orphans.iter().all(|p| pids.contains(p)).then_some(pids)
    });
    assert_eq!(
        reaped.len(),
        100,
        "each orphan once, nothing else: {reaped:?}"
    );
    let zombies: Vec<(i32, char)> = processes_in(&namespace)
        .into_iter()
        .filter(|(_, state)| *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies in the namespace: {zombies:?}");
    assert_eq!(get(addr, "/").expect("still serving").status, 200);

    // SIGTERM from outside the namespace reaches PID 1 (it has a handler): a clean stop.
    common::signal(master, libc::SIGTERM);
    let status = ns.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "the master's exit code, through unshare"
    );
    let alarming: Vec<Value> = ns
        .records()
        .into_iter()
        .filter(|r| matches!(r["level"].as_str(), Some("WARN" | "ERROR")))
        .collect();
    assert!(alarming.is_empty(), "{alarming:#?}");
    let left = processes_in(&namespace);
    assert!(left.is_empty(), "left in the namespace: {left:?}");
}

#[test]
fn as_pid_1_its_exit_code_is_the_containers() {
    if let Err(why) = can_unshare_pid() {
        return common::skip(&format!("cannot create a pid namespace: {why}"));
    }
    let mut ns = Pid1::start(&["-w", "1", "--startup-attempts", "1", "import_error:app"]);
    let status = ns.wait_exit();
    assert_eq!(
        status.code(),
        Some(4),
        "the application failed to load: exit 4, passed on"
    );
    ns.record("giving up");
}

// ---- drain before stop --------------------------------------------------------------------

/// Where the admin listener listens, if this build has one (`/readyz`).
fn admin_addr(h: &Herdsman) -> Option<SocketAddr> {
    common::records_with(&h.log.lines(), "admin listener")
        .first()
        .and_then(|r| r["address"].as_str()?.parse().ok())
}

#[test]
fn drain_before_stop_keeps_serving_then_stops_gracefully() {
    let mut systemd = FakeSystemd::new();
    let mut h = Start::new(&[
        "-w",
        "1",
        "--drain-before-stop",
        "2s",
        "--admin-bind",
        "127.0.0.1:0",
        "asgi_app:app",
    ])
    .env("NOTIFY_SOCKET", systemd.path())
    .spawn();
    h.wait_serving();
    systemd.wait_line("READY=1");
    let addr = h.addr();
    h.signal(libc::SIGTERM);
    let draining = h.wait_record("draining before the graceful stop", |_| true);
    let stopping = systemd.wait_line("STOPPING=1");
    assert!(
        field(&stopping, "STATUS").is_some_and(|s| s.starts_with("draining")),
        "{stopping}"
    );
    let admin = admin_addr(&h);
    if admin.is_none() {
        eprintln!("note: no admin listener in this build: /readyz not checked");
    }
    // Requests keep succeeding through the whole drain. A failure is only allowed once the drain
    // is over (the stop closes the listeners): the master logs that before it closes them, so
    // the line must come (our copy of the log may lag a little).
    let over = || !records_with(&h.log.lines(), "drain over").is_empty();
    let explained = |what: &str, e: std::io::Error| {
        eprintln!("{what} failed ({e}): only right after the drain ended");
        h.wait_record_for("drain over", Duration::from_secs(5), |_| true);
    };
    let mut served = 0;
    while !over() {
        match get(addr, "/") {
            Ok(answer) => assert_eq!(answer.status, 200),
            Err(e) => explained("GET /", e),
        }
        served += 1;
        match admin.map(|admin| get(admin, "/readyz")) {
            Some(Ok(ready)) => assert_eq!(ready.status, 503, "/readyz during the drain"),
            Some(Err(e)) => explained("GET /readyz", e),
            None => {}
        }
    }
    assert!(served > 1, "requests were served during the drain");
    let stop = h.wait_record("stopping", |_| true);
    let drained = common::record_time(&stop)
        .duration_since(common::record_time(&draining))
        .expect("the stop comes after the drain began");
    assert!(
        drained >= Duration::from_millis(1_990),
        "stopped after {drained:?}"
    );
    assert!(h.wait_exit(WAIT).success());
    assert!(h.finish().success());
}

#[test]
fn a_second_term_ends_the_drain_at_once() {
    let mut h = Herdsman::start(&["-w", "1", "--drain-before-stop", "1h", "asgi_app:app"]);
    h.wait_serving();
    h.signal(libc::SIGTERM);
    h.wait_record("draining before the graceful stop", |_| true);
    let second = Instant::now();
    h.signal(libc::SIGTERM);
    h.wait_record("second stop request: ending the drain", |_| true);
    assert!(h.wait_exit(WAIT).success());
    assert!(second.elapsed() < WAIT, "well before the hour");
    assert!(h.finish().success());
}
