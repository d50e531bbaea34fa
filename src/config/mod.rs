//! Configuration: a file (TOML, or gunicorn's Python `gunicorn.conf.py`) < `HERDSMAN_*`
//! environment < `GUNICORN_CMD_ARGS` < command line, each read into an
//! all-optional `Layer` of raw values tagged with their origin, merged key by key, then
//! validated into one typed [`Config`], reporting every problem at once.
//!
//! Public surface:
//! - [`load`] builds the `Config` (called at start and again on every reload).
//! - [`render`] prints a `Config` as TOML that `load` reads back (`herdsman check`).
//! - [`file_warnings`] lists non-fatal concerns (a root-run master reading a group- or
//!   world-writable file, a jitter without its limit) for the master to log after a successful
//!   `load`.
//! - [`check_tls_files`] loads the TLS files of a `Config` as the engine will (`load` runs it;
//!   `herdsman check` reports what it finds).
//! - [`ConfigErrors`] / [`ConfigError`]: every problem, with origin, key and fix.

mod access_format;
mod account;
mod app;
mod args;
mod bind;
mod cmdargs;
mod compat;
mod env;
mod error;
mod file;
mod flags;
mod gunicorn;
mod keys;
mod layer;
mod load;
mod pyfile;
mod render;
mod size;
mod tls;
mod types;
mod validate;
mod values;
mod warnings;

#[cfg(test)]
mod tests;

pub use account::workers_gid;
pub use error::{ConfigError, ConfigErrors, Fix};
pub use flags::RunArgs;
pub use gunicorn::{MASTER_HOOKS, WORKER_HOOKS};
pub use keys::{Key, ENGINE_LIB_ENV_VAR};
pub use layer::Origin;
pub use load::load;
pub use render::render;
pub use tls::{check_files as check_tls_files, TlsProblem};
pub use types::*;
pub use warnings::file_warnings;
