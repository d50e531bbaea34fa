//! gunicorn's master-side server hooks from a `gunicorn.conf.py` (docs/gunicorn-config.md). The
//! master never runs Python itself: each call is a short-lived process of the app's interpreter
//! running the runtime's `gunicornconf.py hook NAME FILE CONTEXT`, where CONTEXT carries the
//! `server` (master pid, settings by gunicorn name, worker count, addresses) and, for `pre_fork`
//! and `child_exit`, the `worker` (pid, age).
//!
//! - `on_starting` and `on_exit` are waited for (bounded by [`HOOK_TIMEOUT`]), before the first
//!   worker is started and after the last one exited, with their output logged line by line:
//!   nothing else runs at those moments, and users rely on the order (clearing a Prometheus
//!   multiprocess directory before any worker writes to it).
//! - Every other hook is fired and not waited for: fork/exec'd like a worker, its stdout and
//!   stderr where the workers' go (the log file, else the master's own), reaped by the loop like
//!   any child ([`MasterHooks::reaped`]), killed past its deadline ([`MasterHooks::expire`]); a
//!   failure is a warning naming the hook. The loop never blocks on them.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::{Config, GunicornFile};
use crate::logging;
use crate::sys::capture;
use crate::sys::exec::{self, ExecPlan};
use crate::sys::reap::ExitStatus;
use crate::worker::gunicorn_cfg;

/// The runtime module that runs a hook.
const RUNNER: &str = include_str!("../../python/herdsman/runtime/gunicornconf.py");
/// Longest a hook may run.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The hooks of the current configuration, and the hook processes still running.
pub struct MasterHooks {
    file: Option<GunicornFile>,
    python: PathBuf,
    env: Vec<crate::sys::environ::OsVar>,
    /// The settings and server the hooks see, refreshed on reload.
    cfg: Value,
    server: Value,
    chdir: Option<String>,
    pythonpath: Vec<String>,
    /// `python:module.name`'s import directory (`GunicornFile::import_root`).
    import_root: Option<PathBuf>,
    devnull: Option<OwnedFd>,
    /// Running hook processes: pid -> (hook name, kill deadline).
    running: BTreeMap<i32, (String, Instant)>,
}

impl MasterHooks {
    /// The hooks `config` defines, run with `python` and the workers' environment `env`.
    pub fn new(
        config: &Config,
        python: PathBuf,
        env: Vec<crate::sys::environ::OsVar>,
    ) -> MasterHooks {
        let devnull = std::fs::File::open("/dev/null").ok().map(OwnedFd::from);
        let mut hooks = MasterHooks {
            file: None,
            python,
            env,
            cfg: Value::Null,
            server: Value::Null,
            chdir: None,
            pythonpath: Vec::new(),
            import_root: None,
            devnull,
            running: BTreeMap::new(),
        };
        hooks.update(config, None);
        hooks
    }

    /// A reloaded configuration (its file may define other hooks now); `target`: the worker count.
    pub fn update(&mut self, config: &Config, target: Option<u32>) {
        self.file = config.gunicorn.clone();
        self.cfg = gunicorn_cfg::settings(config);
        self.server = gunicorn_cfg::server(config, target);
        self.chdir = config.chdir.as_ref().map(|p| p.display().to_string());
        self.pythonpath = config.pythonpath.clone();
        self.import_root = config.gunicorn.as_ref().and_then(|f| f.import_root.clone());
    }

    /// A new interpreter or environment (a reload).
    pub fn set_interpreter(&mut self, python: PathBuf, env: Vec<crate::sys::environ::OsVar>) {
        self.python = python;
        self.env = env;
    }

    pub fn set_num_workers(&mut self, target: u32) {
        self.server["num_workers"] = json!(target);
    }

    fn has(&self, name: &str) -> bool {
        self.file.as_ref().is_some_and(|file| file.has(name))
    }

    fn argv(&self, name: &str, worker: Option<Value>, args: Vec<Value>) -> Vec<String> {
        let mut context = json!({
            "server": self.server,
            "cfg": self.cfg,
            "chdir": self.chdir,
            "pythonpath": self.pythonpath,
            "import_root": self.import_root,
            "args": args,
        });
        if let Some(worker) = worker {
            context["worker"] = worker;
        }
        let path = self.file.as_ref().map(|f| f.path.display().to_string());
        vec![
            "-c".into(),
            RUNNER.into(),
            "hook".into(),
            name.into(),
            path.unwrap_or_default(),
            context.to_string(),
        ]
    }

    /// Runs `name` and waits for it (at most [`HOOK_TIMEOUT`]): `on_starting`, `on_exit`.
    pub fn run_now(&self, name: &str) {
        if !self.has(name) {
            return;
        }
        let args = self.argv(name, None, Vec::new());
        let program = self.python.display().to_string();
        match capture::run(&program, &args, &self.env, HOOK_TIMEOUT) {
            Ok(done) => {
                for line in String::from_utf8_lossy(&done.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&done.stderr).lines())
                {
                    info!(hook = name, "{line}");
                }
                if done.timed_out {
                    warn!(
                        hook = name,
                        "hook still running after {}s: killed",
                        HOOK_TIMEOUT.as_secs()
                    );
                } else if done.code != Some(0) {
                    warn!(hook = name, status = ?done.code, "hook failed (see its traceback above)");
                }
            }
            Err(e) => {
                warn!(hook = name, error = %crate::errors::error_chain(&e), "could not run the hook")
            }
        }
    }

    /// Starts `name` without waiting for it; `worker`: gunicorn's `worker` argument, if any.
    pub fn fire(&mut self, name: &str, worker: Option<Value>, args: Vec<Value>) {
        if !self.has(name) {
            return;
        }
        let argv = self.argv(name, worker, args);
        let output = logging::file_fd();
        let mut fds = Vec::new();
        if let Some(devnull) = &self.devnull {
            fds.push((devnull.as_raw_fd(), 0));
        }
        fds.extend([(output.unwrap_or(1), 1), (output.unwrap_or(2), 2)]);
        let program = self.python.display().to_string();
        let spawned =
            ExecPlan::new(&program, &argv, &self.env, fds).and_then(|plan| exec::spawn(&plan));
        match spawned {
            Ok(pid) => {
                self.running.insert(
                    pid.as_raw(),
                    (name.to_string(), Instant::now() + HOOK_TIMEOUT),
                );
            }
            Err(e) => {
                warn!(hook = name, error = %crate::errors::error_chain(&e), "could not run the hook")
            }
        }
    }

    /// `child_exit` and `pre_fork`'s `worker`.
    pub fn worker(id: u64, pid: Option<i32>, exitcode: Option<i32>) -> Value {
        json!({ "age": id, "pid": pid, "ppid": std::process::id(), "exitcode": exitcode })
    }

    /// Whether `pid` was a hook process (then its end is logged here).
    pub fn reaped(&mut self, pid: i32, status: ExitStatus) -> bool {
        let Some((name, _)) = self.running.remove(&pid) else {
            return false;
        };
        if status != ExitStatus::Code(0) {
            warn!(hook = %name, pid, %status, "hook failed (see its traceback above)");
        }
        true
    }

    /// Kills the hook processes past their deadline (reaped on a later wakeup).
    pub fn expire(&mut self, now: Instant) {
        for (pid, (name, deadline)) in &mut self.running {
            if now >= *deadline {
                warn!(hook = %name, pid, "hook still running after {}s: killing it", HOOK_TIMEOUT.as_secs());
                // Not reaped yet, so the pid is still ours.
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
                *deadline = now + HOOK_TIMEOUT;
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.running.values().map(|(_, deadline)| *deadline).min()
    }
}
