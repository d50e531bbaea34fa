//! The loop's side of a reload (`Action::LoadConfig`): load the configuration again, resolve the
//! interpreter and the engine (the native engine's library), register the new generation's
//! worker spec, and answer the state machine with `Event::Reload`, or refuse the reload (the
//! current workers keep serving) and tell the waiting `ctl` clients why. What cannot change without a restart (listeners, log
//! file, pidfile, control socket, admin listener) is kept, with a warning.

use tracing::{error, warn};

use super::Supervisor;
use crate::config::{self, ConfigErrors};
use crate::master::event::Event;
use crate::master::launch::worker_target;
use crate::master::policy::Policy;
use crate::ops::ReloadOutcome;
use crate::sys::environ::{env_snapshot, env_snapshot_os};
use crate::worker::engine_lib::{self, EngineLibError};
use crate::worker::python::{self, PythonError};
use crate::worker::WorkerSpec;

/// Why a reload was refused; nothing changed and the current workers keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The configuration no longer loads.
    #[error("reload refused, the configuration is invalid")]
    LoadConfig(#[source] ConfigErrors),
    /// The configured interpreter cannot be found.
    #[error("reload refused")]
    ResolvePython(#[source] PythonError),
    /// `engine = "native"`, and its library cannot be found.
    #[error("reload refused")]
    ResolveEngineLib(#[source] EngineLibError),
    /// `workers` is over `max_workers`.
    #[error("reload refused, {0}")]
    Bounds(String),
}

impl ReloadError {
    /// What the log and the waiting `ctl reload` clients are told: the refusal, its cause, and
    /// that nothing changed.
    pub fn reason(&self) -> String {
        match self {
            Self::LoadConfig(errors) => {
                format!("{self}; the current workers keep serving:\n{errors}")
            }
            Self::ResolvePython(e) => format!("{self}: {e}; the current workers keep serving"),
            Self::ResolveEngineLib(e) => format!("{self}: {e}; the current workers keep serving"),
            Self::Bounds(_) => format!("{self}; the current workers keep serving"),
        }
    }
}

impl Supervisor {
    /// Starts a reload for the state machine; a refused one is answered to `ctl` clients here,
    /// with the reason, since the state machine only hears that it was aborted.
    pub(super) fn load_config(&mut self) -> Event {
        self.ops.reload_started();
        match self.reload() {
            Ok(event) => event,
            Err(e) => {
                let reason = e.reason();
                error!("{reason}");
                self.ops.reload_finished(&ReloadOutcome::Refused { reason });
                Event::ReloadAborted
            }
        }
    }

    /// Loads the configuration again; on success registers the new generation's spec. `Err` is
    /// why the reload was refused.
    pub(super) fn reload(&mut self) -> Result<Event, ReloadError> {
        let env = env_snapshot();
        let config = config::load(&self.args, &env).map_err(ReloadError::LoadConfig)?;
        let python =
            python::resolve(config.python.as_deref(), &env).map_err(ReloadError::ResolvePython)?;
        let engine =
            engine_lib::resolve(config.engine, &env).map_err(ReloadError::ResolveEngineLib)?;
        if config.binds != self.config.binds || config.backlog != self.config.backlog {
            warn!("the listeners (bind, backlog) cannot change on reload: restart herdsman to apply that change; keeping the current listeners");
        }
        if config.log_file != self.config.log_file || config.pidfile != self.config.pidfile {
            warn!("log_file and pidfile cannot change on reload: restart herdsman to apply that change; keeping the current ones");
        }
        if config.control_socket != self.config.control_socket
            || config.admin_bind != self.config.admin_bind
        {
            warn!("control_socket and admin_bind cannot change on reload: restart herdsman to apply that change; keeping the current ones");
        }
        crate::master::launch::check_bounds(&config).map_err(ReloadError::Bounds)?;
        self.ops.set_ready_min(config.ready_min);
        let workers_changed = config.workers != self.config.workers;
        let target = if workers_changed {
            worker_target(config.workers)
        } else {
            1
        };
        let policy = Box::new(Policy::from_config(&config, target, self.seed));
        let generation = self.next_generation;
        self.next_generation += 1;
        let spec = WorkerSpec::new(&config, python, &engine, &env_snapshot_os());
        self.hooks
            .set_interpreter(spec.python.clone(), spec.env.clone());
        self.hooks.update(&config, Some(self.hooks_target));
        self.hooks.fire("on_reload", None, Vec::new());
        self.specs.insert(generation, spec);
        if config.proc_name != self.config.proc_name {
            crate::sys::proctitle::name_master(config.proc_name.as_deref());
        }
        self.config = config;
        Ok(Event::Reload {
            generation,
            policy,
            workers_changed,
        })
    }
}
