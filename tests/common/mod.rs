//! Test harness: starts the real `herdsman` binary with real Python workers (the venv built by
//! scripts/venv.sh) on loopback, collects its log lines as they come, and waits for events,
//! never for a fixed time. Every wait has a deadline; dropping a [`Herdsman`] SIGKILLs the
//! master and every worker it reported, by pid, and reaps them, and [`Herdsman::finish`]
//! asserts that nothing was left behind.
//!
//! The test process makes itself a child subreaper, so workers orphaned by a killed master are
//! reparented to it and can be checked and reaped here. Tests run one per process (nextest),
//! so this never touches another test's children. Every master is started with a variable of its
//! own, [`MARK_VAR`], that everything it starts inherits (workers, zygotes, hook interpreters,
//! config-evaluation and upgrade children): the leftover check looks for any live process that
//! carries it, not only for the pids the master logged.
//!
//! A test that cannot run on this machine calls [`skip`], never a bare `return`: the skip is
//! recorded where scripts/test.sh reads it, and CI fails on a skip not in tests/skips.allow.

#![allow(dead_code)]

pub mod engines;
pub mod http;
pub mod tls;

#[allow(unused_imports)]
pub(crate) use engines::both_engines;
pub use engines::Engine;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Default deadline for a single wait.
pub const WAIT: Duration = Duration::from_secs(30);

/// The variable that marks a master and everything it starts: its value is unique to one
/// [`Herdsman`]. Lowercase, so that it sorts after every usual (uppercase) name and sits at the
/// end of the environment block: a process title (the master's `proc_name`, the workers' titles)
/// may be written over the first environment strings, never as far as the last.
pub const MARK_VAR: &str = "zz_herdsman_test_master";

/// The variable scripts/test.sh sets to the file where skipped tests are recorded.
pub const SKIP_RECORD_VAR: &str = "TEST_SKIP_RECORD";

/// This test's name as the runner shows it, `binary::path::to::test` (the binary from the test
/// executable's name without cargo's hash, the test from libtest's name for its thread).
pub fn test_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.file_stem()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let binary = match exe.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => exe,
    };
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_string)
        .or_else(|| std::env::var("NEXTEST_TEST_NAME").ok())
        .unwrap_or_else(|| "?".into());
    format!("{binary}::{test}")
}

/// Skips the calling test: says so on stderr and records `SKIPPED <test>: <reason>` in the file
/// named by `TEST_SKIP_RECORD` (scripts/test.sh prints them after the run, since the runner hides
/// a passing test's output, and under CI fails on any not in tests/skips.allow). The caller
/// returns right after: `return common::skip("...")`. Under `CI=true` without a record file the
/// test fails instead: a skip there must be seen.
pub fn skip(reason: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {}: {}", test_name(), reason.replace('\n', " "));
    eprintln!("{line}");
    match std::env::var_os(SKIP_RECORD_VAR) {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| {
                    panic!("{SKIP_RECORD_VAR}={}: {e}", Path::new(&path).display())
                });
            // One write of one line to a file opened for appending: tests running in parallel
            // never interleave their lines.
            file.write_all(format!("{line}\n").as_bytes())
                .unwrap_or_else(|e| panic!("{SKIP_RECORD_VAR}: {e}"));
        }
        None => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{line}\nunder CI a skip must be recorded: run bash scripts/test.sh (it sets \
             {SKIP_RECORD_VAR}), and fix the machine or list the test in tests/skips.allow"
        ),
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn apps_dir() -> PathBuf {
    repo().join("tests/apps")
}

/// The test interpreter: `HERDSMAN_TEST_PYTHON`, else the repo's `.venv`.
pub fn python() -> PathBuf {
    let path = std::env::var_os("HERDSMAN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "test Python {} is missing: run `bash scripts/test.sh` (it builds the venv) or set HERDSMAN_TEST_PYTHON",
        path.display()
    );
    path
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_herdsman")
}

/// The binary copied to `dir/herdsman`, with the native engine's library beside it when cargo
/// built one (the master looks for it next to its executable): an upgrade re-executes the file
/// at that path, and a rebuild by cargo during the test must change neither.
pub fn installed(dir: &Path) -> PathBuf {
    let path = dir.join("herdsman");
    std::fs::copy(binary(), &path).expect("copy the binary");
    let lib = engines::built_lib();
    if lib.exists() {
        std::fs::copy(&lib, dir.join(engines::LIB_NAME)).expect("copy the engine's library");
    }
    path
}

/// Makes this test process the reaper of orphaned descendants (once).
fn become_subreaper() {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument and has no memory
    // safety requirements.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
}

/// Everything the master wrote on stderr, one entry per line, JSON lines parsed.
#[derive(Default)]
pub struct Log {
    /// The lines, whether both streams closed, and how many streams closed.
    lines: Mutex<(Vec<String>, bool, usize)>,
    grew: Condvar,
}

impl Log {
    fn push(&self, line: String) {
        let mut guard = self.lines.lock().expect("log lock");
        guard.0.push(line);
        self.grew.notify_all();
    }

    fn close(&self) {
        let mut guard = self.lines.lock().expect("log lock");
        guard.2 += 1;
        // Only when both stdout and stderr ended can no more lines come: the master's exit ends
        // both at once, and the stdout pump (usually with nothing to read) may get there while the
        // stderr pump is still pushing the master's last lines.
        guard.1 = guard.2 >= 2;
        self.grew.notify_all();
    }

    /// Waits until both the master's stdout and stderr reached end-of-file (the master and every
    /// worker closed them), so that every line written has been seen. Panics after `timeout`.
    pub fn wait_closed(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().expect("log lock");
        while guard.2 < 2 {
            let now = Instant::now();
            if now >= deadline {
                let so_far = guard.0.join("\n");
                drop(guard);
                panic!("the output did not end within {timeout:?}; so far:\n{so_far}");
            }
            guard = self
                .grew
                .wait_timeout(guard, deadline - now)
                .expect("log lock")
                .0;
        }
    }

    pub fn text(&self) -> String {
        self.lines.lock().expect("log lock").0.join("\n")
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").0.clone()
    }

    /// Master log records (the JSON lines), in order.
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| parse_record(l))
            .collect()
    }

    /// Waits until `pred` holds for the lines seen so far; returns its answer.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[String]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lines.lock().expect("log lock");
        loop {
            if let Some(found) = pred(&guard.0) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || guard.1 {
                let closed = if guard.1 {
                    " (the master's stderr closed)"
                } else {
                    ""
                };
                let so_far = guard.0.join("\n");
                // Unlock first: a panic holding the lock would poison it for Drop.
                drop(guard);
                panic!("timed out waiting for {what}{closed}; log so far:\n{so_far}");
            }
            guard = self
                .grew
                .wait_timeout(guard, deadline - now)
                .expect("log lock")
                .0;
        }
    }
}

pub fn parse_record(line: &str) -> Option<Value> {
    line.starts_with('{')
        .then(|| serde_json::from_str(line).ok())
        .flatten()
}

/// The `message` of a master log record.
pub fn message(record: &Value) -> &str {
    record.get("message").and_then(Value::as_str).unwrap_or("")
}

/// Records whose message starts with `prefix`.
pub fn records_with(lines: &[String], prefix: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| parse_record(l))
        .filter(|r| message(r).starts_with(prefix))
        .collect()
}

pub fn field_i64(record: &Value, key: &str) -> Option<i64> {
    record.get(key).and_then(Value::as_i64)
}

/// When the master wrote `record` (its RFC 3339 `timestamp`), on the wall clock.
pub fn record_time(record: &Value) -> std::time::SystemTime {
    let text = record
        .get("timestamp")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("record without a timestamp: {record}"));
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("bad timestamp {text:?}: {e}"))
}

/// A running master.
pub struct Herdsman {
    exited: std::sync::mpsc::Receiver<ExitStatus>,
    pub pid: i32,
    pub log: Arc<Log>,
    pub dir: tempfile::TempDir,
    status: Option<ExitStatus>,
    /// The value of [`MARK_VAR`] in this master's environment.
    mark: String,
}

/// How to start one.
pub struct Start {
    args: Vec<String>,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    default_bind: bool,
    prefix: Vec<String>,
    python: Option<PathBuf>,
    no_python: bool,
    binary: Option<PathBuf>,
    launcher: Vec<String>,
    current_dir: Option<PathBuf>,
}

impl Start {
    /// `herdsman --python VENV --chdir tests/apps --log-format json -b 127.0.0.1:0 ARGS...`
    pub fn new(args: &[&str]) -> Start {
        Start {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            default_bind: true,
            prefix: Vec::new(),
            python: None,
            no_python: false,
            binary: None,
            launcher: Vec::new(),
            current_dir: None,
        }
    }

    /// Start the master in `dir` instead of the test's working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Start {
        self.current_dir = Some(dir.into());
        self
    }

    /// Run the workers on `engine` (its arguments go before the test's own).
    pub fn engine(mut self, engine: Engine) -> Start {
        let mut args: Vec<String> = engine.args().iter().map(|s| s.to_string()).collect();
        args.append(&mut self.args);
        self.args = args;
        self
    }

    /// Pass `--python PATH` instead of the test interpreter.
    pub fn python(mut self, path: impl Into<PathBuf>) -> Start {
        self.python = Some(path.into());
        self
    }

    /// Pass no `--python` at all: herdsman chooses the interpreter itself.
    pub fn no_python(mut self) -> Start {
        self.no_python = true;
        self
    }

    /// Start the master through this command instead of executing it directly, e.g.
    /// `[python, -m, herdsman]` (which must exec the binary in its own process).
    pub fn launcher(mut self, argv: &[&str]) -> Start {
        self.launcher = argv.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Do not add the default `-b 127.0.0.1:0` (the test gives its own binds).
    pub fn no_default_bind(mut self) -> Start {
        self.default_bind = false;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Start {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A variable of the master's environment that need not be UTF-8.
    pub fn env_os(mut self, key: &str, value: std::ffi::OsString) -> Start {
        self.env.push((key.into(), value));
        self
    }

    /// Start the master from this file (a copy of the binary the test may replace or remove)
    /// instead of the one cargo built.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Start {
        self.binary = Some(path.into());
        self
    }

    /// Run the binary under a wrapper command (e.g. `taskset -c 0`).
    pub fn wrapped(mut self, prefix: &[&str]) -> Start {
        self.prefix = prefix.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn spawn(self) -> Herdsman {
        become_subreaper();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut argv: Vec<String> = self.prefix.clone();
        let program = self.binary.clone().unwrap_or_else(|| binary().into());
        if self.launcher.is_empty() {
            argv.push(program.display().to_string());
        } else {
            argv.extend(self.launcher.iter().cloned());
        }
        if !self.no_python {
            let python = self.python.clone().unwrap_or_else(python);
            argv.extend(["--python".into(), python.display().to_string()]);
        }
        argv.extend(["--chdir".into(), apps_dir().display().to_string()]);
        argv.extend(["--log-format".into(), "json".into()]);
        if self.default_bind {
            argv.extend(["-b".into(), "127.0.0.1:0".into()]);
        }
        argv.extend(self.args);
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("VIRTUAL_ENV")
            // The harness's own variable: herdsman rejects unknown HERDSMAN_* variables.
            .env_remove("HERDSMAN_TEST_PYTHON")
            .env("XDG_RUNTIME_DIR", dir.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mark = new_mark();
        cmd.env(MARK_VAR, &mark);
        if let Some(dir) = &self.current_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().expect("start herdsman");
        let log = Arc::new(Log::default());
        pump(child.stderr.take().expect("stderr"), Arc::clone(&log));
        pump(child.stdout.take().expect("stdout"), Arc::clone(&log));
        let pid = child.id() as i32;
        Herdsman {
            pid,
            exited: wait_in_thread(child),
            log,
            dir,
            status: None,
            mark,
        }
    }
}

fn wait_in_thread(mut child: Child) -> std::sync::mpsc::Receiver<ExitStatus> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            let _ = tx.send(status);
        }
    });
    rx
}

fn pump(stream: impl std::io::Read + Send + 'static, log: Arc<Log>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => log.push(line),
                Err(_) => break,
            }
        }
        log.close();
    });
}

impl Herdsman {
    pub fn start(args: &[&str]) -> Herdsman {
        Start::new(args).spawn()
    }

    /// Waits for a master record whose message starts with `prefix` and that satisfies `pred`.
    pub fn wait_record(&self, prefix: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_record_for(prefix, WAIT, pred)
    }

    pub fn wait_record_for(
        &self,
        prefix: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.log.wait_for(
            &format!("a log record starting {prefix:?}"),
            timeout,
            |lines| records_with(lines, prefix).into_iter().find(|r| pred(r)),
        )
    }

    /// Waits until `n` records starting with `prefix` were logged; returns them.
    pub fn wait_records(&self, prefix: &str, n: usize) -> Vec<Value> {
        self.log.wait_for(
            &format!("{n} log records starting {prefix:?}"),
            WAIT,
            |lines| {
                let found = records_with(lines, prefix);
                (found.len() >= n).then_some(found)
            },
        )
    }

    /// Waits for a raw (non-JSON, e.g. worker stderr) line containing `needle`.
    pub fn wait_line(&self, needle: &str) -> String {
        self.log
            .wait_for(&format!("a line containing {needle:?}"), WAIT, |lines| {
                lines.iter().find(|l| l.contains(needle)).cloned()
            })
    }

    /// The first listening address the master logged.
    pub fn addr(&self) -> SocketAddr {
        self.addrs(1)[0]
    }

    /// The first `n` TCP listening addresses the master logged.
    pub fn addrs(&self, n: usize) -> Vec<SocketAddr> {
        self.wait_records("listening", n)
            .iter()
            .filter_map(|r| {
                r.get("address")
                    .and_then(Value::as_str)
                    .and_then(|a| a.parse().ok())
            })
            .collect()
    }

    /// Waits until the master says all workers are ready; returns the pids of the ready workers
    /// that have not exited.
    pub fn wait_serving(&self) -> Vec<i32> {
        self.wait_record("serving: all workers ready", |_| true);
        self.live_worker_pids()
    }

    /// Pids the master logged as ready, minus those it logged as exited.
    pub fn live_worker_pids(&self) -> Vec<i32> {
        let lines = self.log.lines();
        let exited: Vec<i64> = lines
            .iter()
            .filter_map(|l| parse_record(l))
            .filter(|r| r.get("status").is_some())
            .filter_map(|r| field_i64(&r, "pid"))
            .collect();
        records_with(&lines, "worker ready")
            .iter()
            .filter_map(|r| field_i64(r, "pid"))
            .filter(|pid| !exited.contains(pid))
            .map(|pid| pid as i32)
            .collect()
    }

    /// Every worker pid the master ever mentioned.
    pub fn all_worker_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .log
            .records()
            .iter()
            .filter(|r| r.get("worker").is_some())
            .filter_map(|r| field_i64(r, "pid"))
            .map(|p| p as i32)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    pub fn signal(&self, sig: i32) {
        signal(self.pid, sig);
    }

    /// Waits for the master to exit; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        match self.exited.recv_timeout(timeout) {
            Ok(status) => {
                self.status = Some(status);
                status
            }
            Err(_) => panic!(
                "herdsman did not exit within {timeout:?}; log:\n{}",
                self.log.text()
            ),
        }
    }

    /// Whether the master has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.exited.try_recv().ok();
        }
        self.status.is_some()
    }

    /// Stops the master gracefully (if running), waits, and asserts that no process it started
    /// is left and no zombie remains. Returns the master's exit status.
    pub fn finish(mut self) -> ExitStatus {
        if self.status.is_none() {
            self.signal(libc::SIGTERM);
        }
        let status = self.wait_exit(WAIT);
        assert_gone(&self.all_worker_pids(), Duration::from_secs(5));
        self.assert_no_descendant(Duration::from_secs(5));
        status
    }

    /// Every live process this master started, directly or not, that is still there: the
    /// workers it logged, and every process carrying its [`MARK_VAR`] (zygotes, hook and
    /// config-evaluation interpreters, upgrade checks, the workers' own children). The master
    /// itself and zombies are not counted.
    pub fn descendants(&self) -> Vec<i32> {
        let mut pids = marked_processes(&self.mark);
        pids.extend(
            self.all_worker_pids()
                .into_iter()
                .filter(|&pid| is_our_descendant_alive(pid)),
        );
        pids.retain(|&pid| pid != self.pid);
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// After the master exited: waits up to `grace` for its descendants to exit (they may be on
    /// their way out), then SIGKILLs the remaining ones by pid, reaps them, and fails the test
    /// naming each (pid, command line).
    fn assert_no_descendant(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut left = self.descendants();
        while !left.is_empty() && Instant::now() < deadline {
            for &pid in &left {
                wait_pid_exit(pid, deadline);
                reap(pid);
            }
            left = self.descendants();
        }
        if left.is_empty() {
            return;
        }
        let named: Vec<String> = left
            .iter()
            .map(|&pid| format!("{pid} {:?}", cmdline(pid)))
            .collect();
        self.kill_descendants();
        panic!(
            "processes left behind by the master (pid, command line), killed now: {named:?}\nlog:\n{}",
            self.log.text()
        );
    }

    /// SIGKILLs every descendant by pid and reaps those reparented to this process, in rounds
    /// (a process killed while forking may leave a child born meanwhile).
    fn kill_descendants(&self) {
        for _ in 0..10 {
            let left = self.descendants();
            if left.is_empty() {
                return;
            }
            for &pid in &left {
                signal(pid, libc::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            for &pid in &left {
                wait_pid_exit(pid, deadline);
                reap(pid);
            }
        }
    }
}

impl Drop for Herdsman {
    fn drop(&mut self) {
        let exited_by_itself = self.has_exited();
        if !exited_by_itself {
            signal(self.pid, libc::SIGKILL);
            let _ = self.exited.recv_timeout(WAIT);
        }
        // A master that exited on its own (the test waited for it) owes a clean exit: whatever
        // it left running is a leftover, and fails a test that has not failed already. One the
        // harness killed here could not stop its children: they are killed without a word.
        if exited_by_itself && !std::thread::panicking() {
            self.assert_no_descendant(Duration::from_secs(5));
        }
        self.kill_descendants();
        for pid in self.all_worker_pids() {
            reap(pid);
        }
    }
}

/// A value for [`MARK_VAR`] no other master of any test shares: this process's pid, a count,
/// and the time.
fn new_mark() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

/// Live processes whose environment carries `MARK_VAR=mark`. Read from the environment block
/// each process was started with (/proc/PID/environ, what it got from execve, whatever it did
/// to its own variables since). Zombies have none to read, so they are never counted.
fn marked_processes(mark: &str) -> Vec<i32> {
    let needle = format!("{MARK_VAR}={mark}\0").into_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .filter(|&pid| is_our_descendant_alive(pid))
        .collect()
}

/// The command line of `pid`, as `ps` shows it.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .trim_end_matches('\0')
                .replace('\0', " ")
        })
        .unwrap_or_default()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory-safety requirements.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Reaps `pid` if it is an exited child of ours (orphans reparented to us as subreaper).
fn reap(pid: i32) {
    // SAFETY: waitpid with a null status pointer is allowed.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG);
    }
}

fn is_our_descendant_alive(pid: i32) -> bool {
    process_state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

/// The process state letter of `pid`, or None if it does not exist.
pub fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().next()?.chars().next()
}

/// The parent pid of `pid`.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Children of `pid` (from /proc), with their states.
pub fn children_of(pid: i32) -> Vec<(i32, char)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| parent_pid(p) == Some(pid))
        .filter_map(|p| Some((p, process_state(p)?)))
        .collect()
}

/// Asserts that every pid in `pids` is gone within `timeout`, reaping any that were
/// reparented to this (subreaper) process. Waits on each process's pidfd, so it wakes on the exit
/// itself.
pub fn assert_gone(pids: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for &pid in pids {
        wait_pid_exit(pid, deadline);
        reap(pid);
    }
    let left: Vec<(i32, char)> = pids
        .iter()
        .filter_map(|&p| process_state(p).map(|s| (p, s)))
        .collect();
    assert!(
        left.is_empty(),
        "processes left behind (pid, state): {left:?}"
    );
}

/// Blocks until `pid` has exited (or does not exist), or `deadline`.
pub fn wait_pid_exit(pid: i32, deadline: Instant) -> bool {
    // SAFETY: pidfd_open takes a pid and flags; the returned fd is owned and closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return true; // no such process
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd; fd is ours to close.
    let ready = unsafe {
        let n = libc::poll(&mut pfd, 1, wait);
        libc::close(fd);
        n
    };
    ready > 0
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// Runs `herdsman ARGS` to completion (for `check` and early failures), with a deadline.
pub fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    run_to_end_of(Path::new(binary()), args, env)
}

/// [`run_to_end`] of another herdsman binary (an installed one).
pub fn run_to_end_of(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("VIRTUAL_ENV")
        // The harness's own variable: herdsman rejects unknown HERDSMAN_* variables.
        .env_remove("HERDSMAN_TEST_PYTHON");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(out) => {
            let out = out.expect("output");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
        Err(_) => {
            signal(pid, libc::SIGKILL);
            panic!("herdsman {args:?} did not finish within {WAIT:?}");
        }
    }
}

/// A raw ASGI app answering every request with its pid and `version`.
pub fn versioned_app(version: u32) -> String {
    format!(
        r#"import json, os

VERSION = {version}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({{"type": "lifespan.startup.complete"}})
            elif message["type"] == "lifespan.shutdown":
                await send({{"type": "lifespan.shutdown.complete"}})
                return
    body = json.dumps({{"pid": os.getpid(), "version": VERSION}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})
"#
    )
}

/// What each fd of `pid` points to (`socket:[123]`, `pipe:[4]`, a path), by fd number.
pub fn fd_targets(pid: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd = e.file_name().to_str()?.parse().ok()?;
        Some((fd, std::fs::read_link(e.path()).ok()?.display().to_string()))
    })
    .collect()
}
