//! The new image's start after an in-place upgrade (SIGUSR2): the counterpart of `start` for a
//! master that is already running. Nothing is bound, no pidfile is written and no worker is
//! started here: the listeners, the workers and the pidfile are adopted from the handover.
//!
//! The configuration is read again exactly as on a reload. The new binary's check passed on it
//! moments ago; should it fail now anyway (the file changed in between), or should no
//! interpreter (or native engine library) be found, the previous configuration (rendered into the handover) is used and the
//! adopted workers are kept as they are: the binary is upgraded, the workers are not. Otherwise
//! the workers roll over to a new generation built from it, exactly like a reload: new ones
//! first, each adopted one retired only once a replacement is ready, and the adopted ones kept
//! if the new ones fail to boot. What a reload cannot change (the listeners, the pidfile) an
//! upgrade cannot either.
//!
//! From the handover on, the only failures that stop the new image are those that would stop any
//! start (no runtime directory, no /dev/null, no configuration that loads); it then executes
//! the previous binary again (`upgrade::roll_back`), which takes the same handover and keeps the
//! workers, without a rollout, saying why. Only if that fails too do the workers exit with the
//! master.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::event::Event;
use super::launch::{jitter_seed, remove_pidfile, worker_target};
use super::policy::Policy;
use super::run::{run_from, workers_setting, Supervisor};
use super::state::{Adopted, AdoptedPhase, Master};
use super::workers::Reason;
use crate::config::{self, Config, ConfigErrors, RunArgs};
use crate::errors::error_chain;
use crate::ops::Ops;
use crate::sockets::Listener;
use crate::sys::environ::{env_snapshot, env_snapshot_os};
use crate::sys::pidfile::Pidfile;
use crate::sys::signals::Signals;
use crate::upgrade::{roll_back, HandedPhase, HandedWorker, Handover, Previous};
use crate::worker::{engine_lib, python, ExecSpawner, RuntimeDir, RuntimeError, WorkerSpec};
use crate::{exit, logging};

/// Why the new image could not take over; it exits, and the workers exit with it.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// No private directory for the worker runtime.
    #[error(transparent)]
    CreateRuntimeDir(RuntimeError),
    /// No /dev/null for the workers' stdin.
    #[error("could not open /dev/null")]
    OpenDevNull(#[source] io::Error),
    /// Neither the configuration nor the previous one (from the handover) loads.
    #[error(
        "the configuration is invalid:\n{errors}\nand the previous one could not be read back"
    )]
    LoadConfig {
        errors: ConfigErrors,
        #[source]
        previous: PreviousConfigError,
    },
}

/// Why the previous configuration, rendered into the handover, could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum PreviousConfigError {
    /// Writing it to a file in the runtime directory failed.
    #[error(transparent)]
    Write(io::Error),
    /// It does not load (any more).
    #[error(transparent)]
    Load(ConfigErrors),
}

/// Takes over from the previous image and runs until the master exits; returns the exit code.
/// `previous` is the way back to the previous binary until this image has taken over;
/// `rolled_back`, why this image is the previous binary again.
pub fn resume(
    args: RunArgs,
    signals: Signals,
    handover: Handover,
    previous: Option<Previous>,
    rolled_back: Option<String>,
) -> i32 {
    let mut previous = previous;
    let mut fatal = |e: ResumeError| give_up(&e, previous.take(), &handover);
    let runtime = match RuntimeDir::create() {
        Ok(runtime) => runtime,
        Err(e) => return fatal(ResumeError::CreateRuntimeDir(e)),
    };
    let devnull = match File::open("/dev/null") {
        Ok(file) => OwnedFd::from(file),
        Err(e) => return fatal(ResumeError::OpenDevNull(e)),
    };
    let env = env_snapshot();
    let (config, problems) = match load_config(&args, &env, &handover, runtime.path()) {
        Ok(loaded) => loaded,
        Err(e) => return fatal(e),
    };
    // Taken over: no way back any more (the previous binary's file and the memfd are let go).
    drop(previous);
    start_logging(&config);
    super::launch::report_reclaimed(&runtime, handover.runtime_dir.as_deref());
    crate::sys::proctitle::name_master(config.proc_name.as_deref());
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        workers = handover.workers.len(),
        "herdsman upgraded in place: adopting the listeners and the workers"
    );
    if let Some(errors) = &problems {
        error!("upgrade: the configuration is no longer valid, so the previous one stays and so do the running workers; fix it, then send SIGHUP:\n{errors}");
    }
    if let Some(reason) = &rolled_back {
        error!("upgrade failed: the new binary could not take over ({reason}); the previous binary runs again and keeps the workers; fix the new binary, then send SIGUSR2 again");
    }
    let next = (problems.is_none() && rolled_back.is_none())
        .then(|| next_spec(&config, &env))
        .flatten();
    let config = keep_what_cannot_change(config, &handover);
    let listeners = adopt_listeners(&handover);
    let pidfile = handover.pidfile.as_deref().map(Pidfile::adopt);
    let ops = bind_ops(&config);
    let fds = listeners.iter().map(|l| l.fd().as_raw_fd()).collect();
    let spawner = ExecSpawner::new(runtime.script(), fds, devnull);
    let parts = Parts {
        signals,
        listeners,
        ops,
        spawner,
    };
    let code = adopt_and_run(args, parts, config, &handover, next, rolled_back.as_deref());
    remove_pidfile(pidfile);
    drop(runtime);
    code
}

/// The new image cannot take over because of `e`: executes the previous binary again with the
/// handover (`previous`), which keeps the workers; returns only if that is impossible, with the
/// exit code (the workers exit with the master).
fn give_up(e: &ResumeError, previous: Option<Previous>, handover: &Handover) -> i32 {
    let reason = error_chain(e);
    if let Some(previous) = previous {
        eprintln!("herdsman: in-place upgrade failed: {reason}; executing the previous binary again, which keeps the workers");
        let errno = roll_back(previous, &handover.fds(), &reason);
        eprintln!("herdsman: could not execute the previous binary again: {errno}");
    }
    eprintln!(
        "herdsman: in-place upgrade failed: {reason}; exiting (the workers exit with the master)"
    );
    exit::FAILURE
}

/// What the loop is built from, besides the configuration.
struct Parts {
    signals: Signals,
    listeners: Vec<Listener>,
    ops: Ops,
    spawner: ExecSpawner,
}

/// Builds the loop and the state machine around the adopted workers, starts the rollout (if
/// there is a new spec) and runs.
fn adopt_and_run(
    args: RunArgs,
    parts: Parts,
    config: Config,
    handover: &Handover,
    next: Option<WorkerSpec>,
    rolled_back: Option<&str>,
) -> i32 {
    let changed = workers_setting(config.workers) != handover.config_workers;
    let target = match changed && next.is_some() {
        true => worker_target(config.workers),
        false => handover.target,
    };
    let seed = jitter_seed();
    let policy = Policy::from_config(&config, target, seed);
    let now = Instant::now();
    let old = handover.spec.clone().into();
    let Parts {
        signals,
        listeners,
        ops,
        spawner,
    } = parts;
    // Kept across the exec; set again in case the old image predates zygotes.
    let _ = crate::sys::reap::become_child_subreaper();
    let mut sup = Supervisor::new(signals, listeners, ops, spawner, old, config, args, seed);
    let rollout = sup.adopt(handover, next, rolled_back, now);
    let uptime = Duration::from_millis(handover.uptime_ms);
    let workers = handover.workers.iter().map(adopted).collect();
    let (generation, next_id) = (handover.generation, handover.next_worker_id);
    let mut master = Master::adopt(policy.clone(), generation, next_id, uptime, workers, now);
    master.restore_records(&handover.counters, &handover.quarantine, now);
    remove_old_runtime(handover);
    let mut queue = VecDeque::new();
    match rollout {
        Some(generation) => {
            info!(
                generation,
                workers = target,
                "upgrade: replacing the workers"
            );
            let policy = Box::new(policy);
            let workers_changed = true; // the target was decided above
            queue.push_back(Event::Reload {
                generation,
                policy,
                workers_changed,
            });
        }
        None if rolled_back.is_some() => {}
        None => info!("upgrade complete: the new binary serves with the previous workers"),
    }
    queue.push_back(Event::Tick);
    match run_from(sup, master, queue) {
        Ok(code) => code,
        Err(e) => {
            error!("{}", error_chain(&e));
            exit::FAILURE
        }
    }
}

/// The configuration as it is now; if it no longer loads, the previous one, with the problems.
fn load_config(
    args: &RunArgs,
    env: &[(String, String)],
    handover: &Handover,
    dir: &Path,
) -> Result<(Config, Option<ConfigErrors>), ResumeError> {
    match config::load(args, env) {
        Ok(config) => Ok((config, None)),
        Err(errors) => match previous_config(handover, dir) {
            Ok(config) => Ok((config, Some(errors))),
            Err(previous) => Err(ResumeError::LoadConfig { errors, previous }),
        },
    }
}

/// The previous configuration, read back from its rendering in the handover (through a file
/// in the private runtime directory; no `HERDSMAN_*` variable applies on top of it).
fn previous_config(handover: &Handover, dir: &Path) -> Result<Config, PreviousConfigError> {
    let path = dir.join("previous-config.toml");
    fs::write(&path, &handover.config).map_err(PreviousConfigError::Write)?;
    let args = RunArgs {
        config: Some(path.clone()),
        ..RunArgs::default()
    };
    let env: Vec<(String, String)> = env_snapshot()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("HERDSMAN_"))
        .collect();
    let loaded = config::load(&args, &env).map_err(PreviousConfigError::Load);
    let _ = fs::remove_file(&path);
    loaded
}

/// The control socket and the admin listener, bound again (the previous image's closed at the
/// exec); without them if that fails now: the master goes on serving.
fn bind_ops(config: &Config) -> Ops {
    match Ops::bind(config) {
        Ok(ops) => ops,
        Err(e) => {
            error!(
                "{}; going on without the control socket and the admin listener",
                error_chain(&e)
            );
            Ops::without_sockets(config.ready_min)
        }
    }
}

/// Logs to the configured destination, else (it cannot be opened) to stderr.
fn start_logging(config: &Config) {
    let (level, format) = (config.log_level, config.log_format);
    if let Err(e) = logging::init(level, format, config.log_file.as_deref()) {
        let _ = logging::init(level, format, None);
        error!("{}; logging to stderr", error_chain(&e));
    }
}

/// The spec of the generation to roll over to, or `None` (logged) without an interpreter or
/// without the native engine's library.
fn next_spec(config: &Config, env: &[(String, String)]) -> Option<WorkerSpec> {
    let kept = |e: &dyn std::fmt::Display| error!("upgrade: {e}; the running workers are kept");
    let python = python::resolve(config.python.as_deref(), env)
        .inspect_err(|e| kept(e))
        .ok()?;
    let engine = engine_lib::resolve(config.engine, env)
        .inspect_err(|e| kept(e))
        .ok()?;
    Some(WorkerSpec::new(config, python, &engine, &env_snapshot_os()))
}

/// Warns about what an upgrade cannot change, as a reload does; the pidfile stays the one the
/// master wrote at its first start.
fn keep_what_cannot_change(mut config: Config, handover: &Handover) -> Config {
    let binds: Vec<_> = handover.binds.iter().cloned().map(Into::into).collect();
    if config.binds != binds || config.backlog != handover.backlog {
        warn!("the listeners (bind, backlog) cannot change on an upgrade: restart herdsman to apply that change; keeping the current listeners");
    }
    if config.pidfile != handover.pidfile {
        warn!("the pidfile cannot change on an upgrade: restart herdsman to apply that change; keeping the current one");
        config.pidfile = handover.pidfile.clone();
    }
    config
}

fn adopt_listeners(handover: &Handover) -> Vec<Listener> {
    let listeners: Vec<Listener> = handover
        .listeners
        .iter()
        .map(|l| {
            // SAFETY: intake checked that the fd is open and named once in the handover; this
            // listener is its only owner in this image.
            let fd = unsafe { OwnedFd::from_raw_fd(l.fd) };
            let file = l
                .socket_file
                .as_ref()
                .map(|f| (f.path.clone(), f.dev, f.ino));
            Listener::handed_over(l.bind.clone().into(), fd, l.address.to_bound(l.fd), file)
        })
        .collect();
    for listener in &listeners {
        info!(address = %listener.local(), "adopted listener");
    }
    listeners
}

fn adopted(w: &HandedWorker) -> Adopted {
    let ms = Duration::from_millis;
    let phase = match &w.phase {
        HandedPhase::Booting => AdoptedPhase::Booting,
        HandedPhase::Ready => AdoptedPhase::Ready,
        HandedPhase::Stopping { reason, kill_in_ms } => AdoptedPhase::Stopping {
            reason: Reason::ALL
                .into_iter()
                .find(|r| r.as_str() == reason)
                .unwrap_or(Reason::Shutdown),
            kill_in: ms(*kill_in_ms),
        },
    };
    Adopted {
        id: w.id,
        pid: w.pid,
        generation: w.generation,
        phase,
        age: ms(w.age_ms),
        ready_for: w.ready_ms.map(ms),
        requests: w.requests,
        timeout: ms(w.timeout_ms),
    }
}

/// Removes the previous image's runtime directory: its workers have read their script long
/// ago, and no worker is started from it any more. Only a herdsman runtime directory is removed.
/// Creating this image's may have removed it already (its lock went with the exec).
fn remove_old_runtime(handover: &Handover) {
    let Some(dir) = &handover.runtime_dir else {
        return;
    };
    let ours = dir
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("herdsman-"));
    if !ours {
        return;
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(path = %dir.display(), error = %e, "could not remove the previous runtime directory")
        }
    }
}
