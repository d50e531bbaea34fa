//! Starting the master, in the order the invariants need: (signal handlers are already
//! installed by the caller) size the worker pool, resolve the interpreter and the engine (the
//! native engine's library), write the runtime, bind every listener, create the control socket
//! and the admin listener, then hand over to the loop, which forks. Each failure here maps to its documented exit code with one clear message;
//! nothing has been forked yet.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};

use tracing::{error, info, warn};

use super::launch::{jitter_seed, remove_pidfile, worker_target};
use super::policy::Policy;
use super::run::{run, Supervisor};
use crate::config::{Config, RunArgs};
use crate::errors::error_chain;
use crate::exit;
use crate::ops::Ops;
use crate::sizing;
use crate::sockets;
use crate::sys::environ::{env_snapshot, env_snapshot_os};
use crate::sys::pidfile::Pidfile;
use crate::sys::signals::Signals;
use crate::worker::engine_lib::{self, WorkerEngine};
use crate::worker::{python, ExecSpawner, RuntimeDir, WorkerSpec};

/// Starts everything and runs until the master exits; returns the process exit code.
pub fn start(args: RunArgs, config: Config, signals: Signals) -> i32 {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        "herdsman starting"
    );
    for warning in crate::config::file_warnings(&config) {
        warn!("{warning}");
    }
    crate::sys::proctitle::name_master(config.proc_name.as_deref());
    let target = worker_target(config.workers);
    sizing::log_memory_limit();
    let env = env_snapshot();
    let python = match python::resolve(config.python.as_deref(), &env) {
        Ok(python) => python,
        Err(e) => {
            error!("{e}");
            return exit::PYTHON_ENV;
        }
    };
    let engine = match engine_lib::resolve(config.engine, &env) {
        Ok(engine) => engine,
        Err(e) => {
            error!("{e}");
            return exit::PYTHON_ENV;
        }
    };
    if let WorkerEngine::Native { lib } = &engine {
        let threads = config.threads.unwrap_or(crate::config::defaults::THREADS);
        info!(lib = %lib.display(), threads, "workers run the native engine");
    }
    let runtime = match RuntimeDir::create() {
        Ok(runtime) => runtime,
        Err(e) => {
            error!("{}", error_chain(&e));
            return exit::FAILURE;
        }
    };
    super::launch::report_reclaimed(&runtime, None);
    let devnull = match File::open("/dev/null") {
        Ok(file) => OwnedFd::from(file),
        Err(e) => {
            error!("could not open /dev/null for the workers' stdin: {e}");
            return exit::FAILURE;
        }
    };
    // The sockets systemd passed (LISTEN_FDS) if any, else the configured binds.
    let listeners = match crate::systemd::listeners(&config, !args.bind.is_empty()) {
        Ok(listeners) => listeners,
        Err(e) => {
            error!("{}", error_chain(&e));
            return exit::BIND;
        }
    };
    for listener in &listeners {
        info!(address = %listener.local(), "listening");
    }
    // Never inherited by workers: close-on-exec, and not in the spawner's fd plan.
    let ops = match Ops::bind(&config) {
        Ok(ops) => ops,
        Err(e) => {
            error!("{}", error_chain(&e));
            sockets::close_all(listeners);
            return exit::BIND;
        }
    };
    // After binding (a second instance has failed on the address by now), before any fork.
    let pidfile = match config.pidfile.as_deref().map(Pidfile::create).transpose() {
        Ok(pidfile) => pidfile,
        Err(e) => {
            error!("{}", error_chain(&e));
            sockets::close_all(listeners);
            return exit::USAGE;
        }
    };
    if let Err(errno) = crate::sys::reap::become_child_subreaper() {
        // Only the zygote needs it (its workers would be reparented to init, out of reach).
        warn!(error = %errno, "could not become a child subreaper: spawn = \"zygote\" will not work");
    }
    let fds = listeners.iter().map(|l| l.fd().as_raw_fd()).collect();
    let spawner = ExecSpawner::new(runtime.script(), fds, devnull);
    let spec = WorkerSpec::new(&config, python, &engine, &env_snapshot_os());
    let seed = jitter_seed();
    let policy = Policy::from_config(&config, target, seed);
    info!(workers = target, python = %spec.python.display(), app = %format!("{}:{}", config.app.module, config.app.attr), "starting workers");
    let supervisor = Supervisor::new(signals, listeners, ops, spawner, spec, config, args, seed);
    // gunicorn's on_starting, waited for: before the first worker (docs/gunicorn-config.md).
    supervisor.hooks().run_now("on_starting");
    let code = match run(supervisor, policy) {
        Ok(code) => code,
        Err(e) => {
            error!("{}", error_chain(&e));
            exit::FAILURE
        }
    };
    remove_pidfile(pidfile);
    drop(runtime);
    code
}
