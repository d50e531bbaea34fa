//! The spawner seam: how a worker process comes to exist. [`ExecSpawner`] forks and execs the
//! user's interpreter on the runtime; a zygote spawner will fork from a warm Python process
//! instead. Either way the master gets a pid that is its own child and the master's end of a
//! fresh channel, and the worker gets the same fds, arguments and environment (docs/protocol.md).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::config::{Config, Interface, LogLevel};
use crate::sys::exec::{self, ExecError, ExecPlan};

/// Environment variables a worker must never inherit: socket activation, the systemd notify and
/// watchdog contract belong to the master, and herdsman's own settings are the master's.
const PRIVATE_ENV: &[&str] = &[
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
];

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("could not create the worker channel")]
    Channel(#[source] nix::Error),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// What every worker of one generation runs: built once from the config, reused per spawn.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The interpreter, as resolved (absolute, or as given by the user).
    pub python: PathBuf,
    /// Runtime arguments common to every worker of the generation.
    pub args: Vec<String>,
    /// The complete environment of a worker.
    pub env: Vec<(String, String)>,
}

impl WorkerSpec {
    /// `python` is the already resolved interpreter; `env` is the master's environment.
    pub fn new(config: &Config, python: PathBuf, env: &[(String, String)]) -> WorkerSpec {
        WorkerSpec {
            python,
            args: runtime_args(config),
            env: worker_env(env, &config.env),
        }
    }
}

/// The heartbeat period: often enough that a few can be missed before `timeout`, at most 1 s.
pub fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

fn runtime_args(config: &Config) -> Vec<String> {
    let app = &config.app;
    let mut args = vec![
        "--app".to_string(),
        format!("{}:{}", app.module, app.attr),
        "--interface".to_string(),
        interface_name(config.interface).to_string(),
        "--heartbeat-interval".to_string(),
        seconds(heartbeat_interval(config.timeout)),
        "--graceful-timeout".to_string(),
        seconds(config.graceful_timeout),
        "--log-level".to_string(),
        level_name(config.log_level).to_string(),
        // uvicorn calls listen() again on every socket it serves; without this it would replace
        // the configured backlog with its own default.
        "--backlog".to_string(),
        config.backlog.to_string(),
    ];
    if app.factory {
        args.push("--factory".into());
    }
    if !config.access_log {
        args.push("--no-access-log".into());
    }
    if let Some(dir) = &config.chdir {
        args.push("--chdir".into());
        args.push(dir.display().to_string());
    }
    args
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn interface_name(interface: Interface) -> &'static str {
    match interface {
        Interface::Auto => "auto",
        Interface::Asgi => "asgi",
        Interface::Wsgi => "wsgi",
    }
}

pub(crate) fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warning",
        LogLevel::Error => "error",
        LogLevel::Critical => "critical",
    }
}

/// The master's environment without the private variables, then the configured entries.
fn worker_env(master: &[(String, String)], extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = master
        .iter()
        .filter(|(k, _)| !PRIVATE_ENV.contains(&k.as_str()) && !k.starts_with("HERDSMAN_"))
        .cloned()
        .collect();
    for (key, value) in extra {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}

/// A worker that was started: its pid and the master's end of its channel (non-blocking,
/// close-on-exec).
pub struct Spawned {
    pub pid: i32,
    pub channel: OwnedFd,
}

/// Starts workers.
pub trait Spawner {
    fn spawn(&mut self, worker_id: u64, spec: &WorkerSpec) -> Result<Spawned, SpawnError>;
}

/// Forks and execs `spec.python RUNTIME ...` with the listeners and a channel.
pub struct ExecSpawner {
    script: PathBuf,
    listeners: Vec<RawFd>,
    devnull: OwnedFd,
}

impl ExecSpawner {
    /// `listeners` must stay open (and close-on-exec) for as long as this spawner is used.
    pub fn new(script: &Path, listeners: Vec<RawFd>, devnull: OwnedFd) -> ExecSpawner {
        ExecSpawner {
            script: script.to_path_buf(),
            listeners,
            devnull,
        }
    }

    /// Replaces the listener set, e.g. once the master stops listening.
    pub fn set_listeners(&mut self, listeners: Vec<RawFd>) {
        self.listeners = listeners;
    }

    fn plan(
        &self,
        worker_id: u64,
        spec: &WorkerSpec,
        channel: RawFd,
    ) -> Result<ExecPlan, ExecError> {
        let first = 3;
        let channel_target = first + self.listeners.len() as RawFd;
        let mut args = vec![self.script.display().to_string()];
        for i in 0..self.listeners.len() {
            args.push("--listen-fd".into());
            args.push((first + i as RawFd).to_string());
        }
        args.extend(["--channel-fd".into(), channel_target.to_string()]);
        args.extend(["--worker-id".into(), worker_id.to_string()]);
        args.extend(spec.args.iter().cloned());
        let mut fds = vec![(self.devnull.as_raw_fd(), 0)];
        fds.extend(
            self.listeners
                .iter()
                .enumerate()
                .map(|(i, &fd)| (fd, first + i as RawFd)),
        );
        fds.push((channel, channel_target));
        ExecPlan::new(&spec.python.display().to_string(), &args, &spec.env, fds)
    }
}

impl Spawner for ExecSpawner {
    fn spawn(&mut self, worker_id: u64, spec: &WorkerSpec) -> Result<Spawned, SpawnError> {
        let flags = SockFlag::SOCK_CLOEXEC;
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, flags)
            .map_err(SpawnError::Channel)?;
        let plan = self.plan(worker_id, spec, theirs.as_raw_fd())?;
        let pid = exec::spawn(&plan)?;
        drop(theirs);
        set_nonblocking(&ours).map_err(SpawnError::Channel)?;
        Ok(Spawned {
            pid: pid.as_raw(),
            channel: ours,
        })
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn worker_env_drops_private_variables_and_applies_overrides() {
        let master = env(&[
            ("PATH", "/bin"),
            ("LISTEN_FDS", "2"),
            ("NOTIFY_SOCKET", "/run/x"),
            ("HERDSMAN_WORKERS", "4"),
            ("KEEP", "old"),
        ]);
        let got = worker_env(&master, &env(&[("KEEP", "new"), ("ADDED", "1")]));
        assert_eq!(
            got,
            env(&[("PATH", "/bin"), ("KEEP", "new"), ("ADDED", "1")])
        );
    }

    #[test]
    fn heartbeat_interval_is_bounded() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_secs(2)),
            Duration::from_millis(500)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_millis(100)),
            Duration::from_millis(50)
        );
    }
}
