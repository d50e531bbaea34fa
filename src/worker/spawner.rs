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
use super::spec::WorkerSpec;
use super::zygote::{Zygote, ZygoteError};
use crate::logging;
use crate::sys::exec::{self, ExecError, ExecPlan};

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
            .with_identity(spec.identity.clone())
            .with_no_new_privs(spec.no_new_privs))
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
