//! `herdsman check` beyond the configuration: what would fail at start on this machine. The
//! interpreter is resolved and run once on the runtime's probe (`python/herdsman_check.py`) with
//! the worker's argv and environment, which imports uvicorn (or loads the native engine), enters
//! the working directory, imports the app and tells its interface, as a worker's boot does; and
//! every bind is tried and released. Each problem carries the exit code serving would end with
//! (docs/exit-codes.md).
//!
//! This is not the master: it runs before any master exists (or beside one, for the binds), so it
//! uses `std::process::Command` and waits, which the master loop never does.

use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::Config;
use crate::errors::error_chain;
use crate::exit;
use crate::sockets;
use crate::sys::exec::Identity;
use crate::worker::engine_lib;
use crate::worker::{python, RuntimeDir, WorkerSpec};

/// The probe's launcher, beside the worker's in the runtime directory.
const PROBE: &str = "herdsman_check.py";
/// How often the wait for the probe looks at it.
const POLL: Duration = Duration::from_millis(20);

/// One thing that would fail at start.
#[derive(Debug)]
pub struct Problem {
    /// The exit code serving would end with.
    pub code: i32,
    pub message: String,
    /// The app's traceback, when the import failed with one.
    pub traceback: Option<String>,
}

impl Problem {
    fn new(code: i32, message: String) -> Problem {
        Problem {
            code,
            message,
            traceback: None,
        }
    }
}

/// What the probes found: comment lines for the report (after the configuration), and the
/// problems, in the order a start would meet them.
#[derive(Debug, Default)]
pub struct Findings {
    pub lines: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Findings {
    /// The exit code: the first problem's (what a start would stop at), else 0.
    pub fn exit_code(&self) -> i32 {
        self.problems.first().map_or(exit::OK, |p| p.code)
    }
}

/// The probe's report (python/herdsman/runtime/check.py).
#[derive(Debug, Deserialize)]
struct Report {
    python: String,
    executable: Option<String>,
    uvicorn: Option<String>,
    a2wsgi: Option<String>,
    native: Option<String>,
    interface: Option<String>,
    error: Option<ReportedError>,
}

#[derive(Debug, Deserialize)]
struct ReportedError {
    kind: String,
    message: String,
    traceback: Option<String>,
}

/// Runs every probe: the interpreter and the app, then the binds.
pub fn environment(config: &Config, env: &[(String, String)]) -> Findings {
    let mut findings = Findings::default();
    probe_app(config, env, &mut findings);
    probe_binds(config, &mut findings);
    findings
}

fn probe_app(config: &Config, env: &[(String, String)], findings: &mut Findings) {
    let python = match python::resolve(config.python.as_deref(), env) {
        Ok(python) => python,
        Err(e) => {
            findings
                .problems
                .push(Problem::new(exit::PYTHON_ENV, e.to_string()));
            return;
        }
    };
    let engine = match engine_lib::resolve(config.engine, env) {
        Ok(engine) => engine,
        Err(e) => {
            findings
                .problems
                .push(Problem::new(exit::PYTHON_ENV, e.to_string()));
            return;
        }
    };
    let runtime = match RuntimeDir::create() {
        Ok(runtime) => runtime,
        Err(e) => {
            findings
                .problems
                .push(Problem::new(exit::FAILURE, error_chain(&e)));
            return;
        }
    };
    let spec = WorkerSpec::new(
        config,
        python,
        &engine,
        &crate::sys::environ::env_snapshot_os(),
    );
    match run_probe(
        &spec,
        runtime.path(),
        config.boot_timeout,
        config.user.as_ref(),
    ) {
        Ok(report) => findings.absorb(config, report),
        Err(problem) => findings.problems.push(problem),
    }
}

impl Findings {
    fn absorb(&mut self, config: &Config, report: Report) {
        let mut versions = vec![format!("Python {}", report.python)];
        if let Some(path) = &report.executable {
            versions[0].push_str(&format!(" ({path})"));
        }
        for (name, version) in [
            ("uvicorn", &report.uvicorn),
            ("a2wsgi", &report.a2wsgi),
            ("the native engine", &report.native),
        ] {
            if let Some(version) = version {
                versions.push(format!("{name} {version}"));
            }
        }
        self.lines.push(format!("# found {}", versions.join(", ")));
        let app = format!("{}:{}", config.app.module, config.app.attr);
        if let Some(interface) = &report.interface {
            let interface = interface.to_uppercase();
            self.lines
                .push(format!("# the app {app:?} imports (interface {interface})"));
        }
        if let Some(error) = report.error {
            let code = match error.kind.as_str() {
                "import" | "interface" => exit::APP_LOAD,
                "dependency" => exit::PYTHON_ENV,
                _ => exit::WORKER_BOOT,
            };
            self.problems.push(Problem {
                code,
                message: error.message,
                traceback: error.traceback,
            });
        }
    }
}

fn as_uid(uid: Option<u32>) -> String {
    uid.map(|uid| format!(" as uid {uid}")).unwrap_or_default()
}

/// Runs the probe in the app's interpreter with the worker's environment and identity; its
/// output goes to our stderr (stdout is the rendered configuration). `user` is the configured
/// workers' user, for the message when the interpreter cannot be executed.
fn run_probe(
    spec: &WorkerSpec,
    runtime: &Path,
    timeout: Duration,
    user: Option<&crate::config::User>,
) -> Result<Report, Problem> {
    use std::os::unix::process::CommandExt;

    let report_path = runtime.join("check-report.json");
    let python = spec.python.display().to_string();
    let mut command = Command::new(&spec.python);
    command
        .arg(runtime.join(PROBE))
        .arg(&report_path)
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stderr_stdio());
    if let Some(identity) = &spec.identity {
        // The report file is written by that user: the runtime directory is root's.
        let _ = fs::File::create(&report_path)
            .and_then(|_| nix_chown(&report_path, identity.uid, identity.gid));
    }
    let identity = spec.identity.clone();
    let umask = spec.umask;
    // SAFETY: between fork and exec the closure calls only async-signal-safe functions
    // (setgroups, setgid, setuid, umask) on data prepared before the fork.
    unsafe {
        command.pre_exec(move || become_worker(identity.as_ref(), umask));
    }
    let uid = spec.identity.as_ref().and_then(|identity| identity.uid);
    let mut child = command.spawn().map_err(|e| {
        // The same message as a start's (`ExecError::exec_fix`).
        // Only what exec itself says: the pre-exec steps (setuid...) fail with other errnos.
        let exec_errno = e
            .raw_os_error()
            .filter(|&n| n == libc::EACCES || n == libc::ENOENT);
        let fix = exec_errno.and_then(|errno| {
            let failed = crate::sys::exec::ExecError::Exec {
                program: python.clone(),
                uid,
                source: nix::errno::Errno::from_raw(errno),
            };
            let who = user.map(crate::config::User::describe);
            failed.exec_fix(who.as_deref())
        });
        let message = match fix {
            Some(fix) => format!(
                "cannot run the interpreter {python}{}: {e}; {fix}",
                as_uid(uid)
            ),
            None => format!("cannot run the interpreter {python}: {e}"),
        };
        Problem::new(exit::PYTHON_ENV, message)
    })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Problem::new(
                    exit::WORKER_BOOT,
                    format!(
                        "importing the app took longer than boot_timeout ({}): a worker would be \
                         killed the same way; find what the import waits for, or raise boot_timeout",
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                return Err(Problem::new(
                    exit::FAILURE,
                    format!("cannot wait for the interpreter {python}: {e}"),
                ))
            }
        }
    };
    let text = match fs::read_to_string(&report_path) {
        Ok(text) if !text.is_empty() => text,
        _ => {
            return Err(Problem::new(
                exit::PYTHON_ENV,
                format!(
                    "the interpreter {python} could not run herdsman's probe ({status}); its output is \
                     above: check that it is a working Python >= 3.9"
                ),
            ))
        }
    };
    serde_json::from_str(&text).map_err(|e| {
        Problem::new(
            exit::FAILURE,
            format!("herdsman's probe wrote an unreadable report: {e}"),
        )
    })
}

/// In the probe's child: the worker's identity and umask, as the spawner gives a worker.
fn become_worker(identity: Option<&Identity>, umask: Option<u32>) -> io::Result<()> {
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    if let Some(identity) = identity {
        // SAFETY: plain system calls on values owned by the closure.
        unsafe {
            check(libc::setgroups(
                identity.groups.len(),
                identity.groups.as_ptr(),
            ))?;
            check(libc::setgid(identity.gid))?;
            if let Some(uid) = identity.uid {
                check(libc::setuid(uid))?;
            }
        }
    }
    if let Some(mask) = umask {
        // SAFETY: umask(2) cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

fn nix_chown(path: &Path, uid: Option<libc::uid_t>, gid: libc::gid_t) -> io::Result<()> {
    nix::unistd::chown(
        path,
        uid.map(nix::unistd::Uid::from_raw),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(io::Error::from)
}

/// Our stderr, for the child's stdout; null if it cannot be duplicated.
fn stderr_stdio() -> Stdio {
    use std::os::fd::AsFd;
    match io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

/// Binds every address as a start would (inherited `fd://` sockets aside: they are given, not
/// bound), then releases it at once.
fn probe_binds(config: &Config, findings: &mut Findings) {
    for spec in &config.binds {
        if matches!(spec, crate::addr::BindSpec::Fd(_)) {
            continue;
        }
        match sockets::bind_all(std::slice::from_ref(spec), config.backlog) {
            Ok(listeners) => {
                findings.lines.push(format!("# bind {spec}: free"));
                sockets::close_all(listeners);
            }
            Err(e) => findings
                .problems
                .push(Problem::new(exit::BIND, error_chain(&e))),
        }
    }
}
