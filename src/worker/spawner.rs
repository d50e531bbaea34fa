//! The spawner seam: how a worker process comes to exist. [`ExecSpawner`] forks and execs the
//! user's interpreter on the runtime; with `spawn = "zygote"` it also starts each generation's
//! zygote and has it fork the workers (`start_zygote`, `fork_from`; see `zygote`). Either way the master gets a pid that is its own child and the master's end of a
//! fresh channel, and the worker gets the same fds, arguments and environment (docs/protocol.md).
//!
//! A worker's stdout and stderr (fds 1 and 2) are, in order of preference: a pipe to the master
//! when `capture_output` is on (see `output`); the log file when `log_file` is set, which the
//! worker appends to directly; else the master's own stdout and stderr, inherited untouched.
//! Root masters also give the workers the configured identity (`user`, `group`) and `umask`,
//! applied between fork and exec from numbers resolved at configuration load.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::output::Captured;
use super::zygote::{Zygote, ZygoteError};
use crate::config::{Config, SpawnMode, User};
use crate::logging;
use crate::sys::exec::{self, ExecError, ExecPlan, Identity};

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
    #[error("could not create the pipe for the worker's output")]
    OutputPipe(#[source] nix::Error),
    #[error("could not create the worker's in-flight file")]
    InFlightFile(#[source] nix::Error),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Zygote(#[from] ZygoteError),
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
    /// Who the worker becomes (a root master with `user` or `group` set); `None`: the master's.
    pub identity: Option<Identity>,
    /// The worker's umask; `None`: the master's.
    pub umask: Option<u32>,
    /// Whether the worker's stdout and stderr are captured by the master.
    pub capture_output: bool,
    /// Exec'd, or forked from the generation's zygote.
    pub spawn: SpawnMode,
    /// With the zygote: the app is imported before the fork.
    pub preload: bool,
    /// The master's log format, for a zygote's own lines (it writes where the master does,
    /// never into a capture pipe, so they are not re-rendered).
    pub log_format: crate::config::LogFormat,
}

impl WorkerSpec {
    /// `python` is the already resolved interpreter; `env` is the master's environment.
    pub fn new(config: &Config, python: PathBuf, env: &[(String, String)]) -> WorkerSpec {
        let root = nix::unistd::geteuid().is_root();
        WorkerSpec {
            python,
            args: runtime_args(config),
            env: worker_env(env, &account_env(config.user.as_ref()), &config.env),
            identity: identity(config, root),
            umask: config.umask,
            capture_output: config.capture_output,
            log_format: config.log_format,
            spawn: config.spawn,
            preload: config.preload,
        }
    }
}

/// What a root master changes in its workers; a master that is not root changes nothing
/// (configuration load made sure it was not asked to).
fn identity(config: &Config, root: bool) -> Option<Identity> {
    if !root || (config.user.is_none() && config.group.is_none()) {
        return None;
    }
    let gid = crate::config::workers_gid(config.user.as_ref(), config.group.as_ref())
        .expect("configuration load gives a user without a primary group a `group`");
    let groups = match &config.user {
        Some(user) => user.groups.clone(),
        None => vec![gid],
    };
    Some(Identity {
        groups,
        gid,
        uid: config.user.as_ref().map(|user| user.uid),
    })
}

/// HOME, USER and LOGNAME of the workers' account, so libraries that look there (caches,
/// `~` expansion) find the worker's own home, not the master's.
fn account_env(user: Option<&User>) -> Vec<(String, String)> {
    let Some(user) = user else {
        return Vec::new();
    };
    let mut env = Vec::new();
    if let Some(home) = &user.home {
        env.push(("HOME".to_string(), home.display().to_string()));
    }
    if let Some(name) = &user.name {
        env.push(("USER".to_string(), name.clone()));
        env.push(("LOGNAME".to_string(), name.clone()));
    }
    env
}

/// How often an idle worker (nothing changed since its last heartbeat) still sends one: a few
/// per `timeout`, so a silent worker is still judged by it, and at most every 7.5 s, so that 16
/// idle workers wake the master about twice a second instead of 16 times.
pub fn idle_heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(heartbeat_interval(timeout), Duration::from_millis(7500))
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
        config.interface.as_str().to_string(),
        "--lifespan".to_string(),
        config.lifespan.as_str().to_string(),
        "--heartbeat-interval".to_string(),
        seconds(heartbeat_interval(config.timeout)),
        "--idle-heartbeat-interval".to_string(),
        seconds(idle_heartbeat_interval(config.timeout)),
        "--graceful-timeout".to_string(),
        seconds(config.graceful_timeout),
        "--log-level".to_string(),
        config.log_level.as_str().to_string(),
        // The worker's own log lines in the master's format; as JSON records when the master
        // captures them, which it then renders in its own format (`output`).
        "--log-format".to_string(),
        match config.capture_output {
            true => "json".to_string(),
            false => config.log_format.as_str().to_string(),
        },
        // uvicorn calls listen() again on every socket it serves; without this it would replace
        // the configured backlog with its own default.
        "--backlog".to_string(),
        config.backlog.to_string(),
    ];
    if app.factory {
        args.push("--factory".into());
    }
    if config.access_log {
        let file = config.access_log_file.as_ref();
        args.push("--access-log-file".into());
        args.push(file.map_or_else(|| "-".into(), |p| p.display().to_string()));
        args.push("--access-log-format".into());
        args.push(config.access_log_format.clone());
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

/// The master's environment without the private variables, then the account's variables, then
/// the configured entries.
fn worker_env(
    master: &[(String, String)],
    account: &[(String, String)],
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = master
        .iter()
        .filter(|(k, _)| !PRIVATE_ENV.contains(&k.as_str()) && !k.starts_with("HERDSMAN_"))
        .cloned()
        .collect();
    for (key, value) in account.iter().chain(extra) {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}

/// A worker that was started: its pid, the master's end of its channel (non-blocking,
/// close-on-exec) and its in-flight file (see `inflight`), read when it is reaped.
pub struct Spawned {
    pub pid: i32,
    pub channel: OwnedFd,
    pub inflight: OwnedFd,
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
    captured: Captured,
    /// Quarantined requests, written into each new worker's in-flight file.
    quarantine: Vec<String>,
}

impl ExecSpawner {
    /// `listeners` must stay open (and close-on-exec) for as long as this spawner is used.
    pub fn new(script: &Path, listeners: Vec<RawFd>, devnull: OwnedFd) -> ExecSpawner {
        ExecSpawner {
            script: script.to_path_buf(),
            listeners,
            devnull,
            captured: Captured::default(),
            quarantine: Vec::new(),
        }
    }

    /// The read ends of the workers' captured output (`capture_output`), for the loop to poll.
    pub fn output_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.captured.pollable()
    }

    /// Writes what the workers' captured output pipes hold now, line by line, to the log.
    pub fn drain_output(&mut self) {
        self.captured.drain();
    }

    /// The requests every worker started from now on refuses (see `master::state::quarantine`).
    pub fn set_quarantine(&mut self, requests: &[String]) {
        self.quarantine = requests.to_vec();
    }

    /// The worker runtime script the workers run.
    pub fn script(&self) -> &Path {
        &self.script
    }

    /// The captured output pipes as (worker id, worker pid, read end), for a handover.
    pub fn output_pipes(&self) -> Vec<(u64, i32, RawFd)> {
        self.captured.pipes()
    }

    /// Writes the partial lines of captured output held now (before a handover).
    pub fn flush_output(&mut self) {
        self.captured.flush_partial_lines();
    }

    /// Goes on capturing a worker's output from a pipe handed over by a previous image of
    /// this master (non-blocking read end).
    pub fn adopt_output(&mut self, worker_id: u64, pid: i32, read: OwnedFd) {
        self.captured.insert(worker_id, pid, read);
    }

    /// Replaces the listener set, e.g. once the master stops listening.
    pub fn set_listeners(&mut self, listeners: Vec<RawFd>) {
        self.listeners = listeners;
    }

    /// The plan of a worker (`zygote` false) or of a generation's zygote, whose control socket
    /// takes the channel's place and whose `worker_id` is its generation.
    fn plan(
        &self,
        worker_id: u64,
        zygote: bool,
        spec: &WorkerSpec,
        channel: RawFd,
        inflight: Option<RawFd>,
        output: Option<RawFd>,
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
        if inflight.is_some() {
            args.extend(["--inflight-fd".into(), (channel_target + 1).to_string()]);
        }
        args.extend(spec.args.iter().cloned());
        if zygote {
            // The last --log-format wins: the zygote writes where the master does.
            args.extend(["--log-format".into(), spec.log_format.as_str().into()]);
            args.push("--zygote".into());
            if spec.preload {
                args.push("--preload".into());
            }
        }
        let mut fds = vec![(self.devnull.as_raw_fd(), 0)];
        fds.extend(
            self.listeners
                .iter()
                .enumerate()
                .map(|(i, &fd)| (fd, first + i as RawFd)),
        );
        fds.push((channel, channel_target));
        fds.extend(inflight.map(|fd| (fd, channel_target + 1)));
        if let Some(output) = output {
            fds.extend([(output, 1), (output, 2)]);
        }
        let plan = ExecPlan::new(&spec.python.display().to_string(), &args, &spec.env, fds)?;
        Ok(plan
            .with_umask(spec.umask)
            .with_identity(spec.identity.clone()))
    }
}

/// The fds a new worker needs from the master: a fresh channel and, with `capture_output`, a
/// pipe for its stdout and stderr. Shared by exec'd and zygote-forked workers.
struct NewWorkerFds {
    ours: OwnedFd,
    theirs: OwnedFd,
    inflight: OwnedFd,
    pipe: Option<(OwnedFd, OwnedFd)>,
}

impl NewWorkerFds {
    fn new(capture: bool, quarantine: &[String]) -> Result<NewWorkerFds, SpawnError> {
        let flags = SockFlag::SOCK_CLOEXEC;
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, flags)
            .map_err(SpawnError::Channel)?;
        let pipe = match capture {
            true => Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::OutputPipe)?),
            false => None,
        };
        let inflight = super::inflight::create(quarantine).map_err(SpawnError::InFlightFile)?;
        Ok(NewWorkerFds {
            ours,
            theirs,
            inflight,
            pipe,
        })
    }

    /// The worker's stdout and stderr: the capture pipe, else the current log file (read now:
    /// a reopen applies to the workers started after it), else the master's own (`None`).
    fn output(&self) -> Option<RawFd> {
        match &self.pipe {
            Some((_, write)) => Some(write.as_raw_fd()),
            None => logging::file_fd(),
        }
    }

    /// Once worker `worker_id` runs as `pid`: closes the worker's ends, makes ours
    /// non-blocking, and registers the capture pipe.
    fn finish(
        self,
        captured: &mut Captured,
        worker_id: u64,
        pid: i32,
    ) -> Result<Spawned, SpawnError> {
        drop(self.theirs);
        set_nonblocking(&self.ours).map_err(SpawnError::Channel)?;
        if let Some((read, write)) = self.pipe {
            drop(write);
            set_nonblocking(&read).map_err(SpawnError::OutputPipe)?;
            captured.insert(worker_id, pid, read);
        }
        Ok(Spawned {
            pid,
            channel: self.ours,
            inflight: self.inflight,
        })
    }
}

impl Spawner for ExecSpawner {
    fn spawn(&mut self, worker_id: u64, spec: &WorkerSpec) -> Result<Spawned, SpawnError> {
        let fds = NewWorkerFds::new(spec.capture_output, &self.quarantine)?;
        let channel = fds.theirs.as_raw_fd();
        let inflight = Some(fds.inflight.as_raw_fd());
        let plan = self.plan(worker_id, false, spec, channel, inflight, fds.output())?;
        let pid = exec::spawn(&plan)?;
        fds.finish(&mut self.captured, worker_id, pid.as_raw())
    }
}

impl ExecSpawner {
    /// Starts generation `generation`'s zygote: fork and exec like a worker, with `--zygote`.
    /// It writes to the log file or the master's stdout and stderr (never a capture pipe: it
    /// only logs its start and import errors). `deadline`: killed if not ready by then.
    pub fn start_zygote(
        &self,
        generation: u64,
        spec: &WorkerSpec,
        deadline: std::time::Instant,
    ) -> Result<Zygote, SpawnError> {
        let flags = SockFlag::SOCK_CLOEXEC;
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::Stream, None, flags)
            .map_err(SpawnError::Channel)?;
        let plan = self.plan(
            generation,
            true,
            spec,
            theirs.as_raw_fd(),
            None,
            logging::file_fd(),
        )?;
        let pid = exec::spawn(&plan)?;
        drop(theirs);
        set_nonblocking(&ours).map_err(SpawnError::Channel)?;
        Ok(Zygote::new(generation, pid.as_raw(), ours, deadline))
    }

    /// Has `zygote` fork worker `worker_id`: a fresh channel and, as for an exec'd worker,
    /// the capture pipe or the log file as its stdout and stderr. Blocks for at most `timeout`.
    pub fn fork_from(
        &mut self,
        zygote: &mut Zygote,
        worker_id: u64,
        spec: &WorkerSpec,
        timeout: Duration,
    ) -> Result<Spawned, SpawnError> {
        // The current log file, not the one the zygote inherited: a reopen (SIGUSR1) since the
        // zygote started applies to the workers it forks from now on.
        let fds = NewWorkerFds::new(spec.capture_output, &self.quarantine)?;
        let channel = fds.theirs.as_raw_fd();
        let inflight = fds.inflight.as_raw_fd();
        let pid = zygote.fork(worker_id, channel, inflight, fds.output(), timeout)?;
        fds.finish(&mut self.captured, worker_id, pid)
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
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
        let got = worker_env(&master, &[], &env(&[("KEEP", "new"), ("ADDED", "1")]));
        assert_eq!(
            got,
            env(&[("PATH", "/bin"), ("KEEP", "new"), ("ADDED", "1")])
        );
    }

    #[test]
    fn the_account_sets_home_and_user_unless_configured() {
        let user = User {
            given: "nobody".into(),
            uid: 65534,
            name: Some("nobody".into()),
            gid: Some(65534),
            home: Some("/nonexistent".into()),
            groups: vec![65534],
        };
        let master = env(&[("HOME", "/root"), ("USER", "root"), ("PATH", "/bin")]);
        let got = worker_env(
            &master,
            &account_env(Some(&user)),
            &env(&[("HOME", "/srv/app")]),
        );
        assert_eq!(
            got,
            env(&[
                ("PATH", "/bin"),
                ("USER", "nobody"),
                ("LOGNAME", "nobody"),
                ("HOME", "/srv/app")
            ])
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

    #[test]
    fn idle_heartbeats_are_a_few_per_timeout_and_at_most_every_7_5_s() {
        let idle = |ms| idle_heartbeat_interval(Duration::from_millis(ms));
        assert_eq!(idle(30_000), Duration::from_millis(7500));
        assert_eq!(idle(120_000), Duration::from_millis(7500));
        assert_eq!(idle(2_000), Duration::from_millis(500));
        assert_eq!(idle(100), Duration::from_millis(50));
    }
}
