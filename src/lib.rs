//! herdsman: a pre-fork process manager for Python WSGI and ASGI applications.
//!
//! One single-threaded master binds the listeners, spawns one worker per usable CPU (each the
//! user's Python interpreter running herdsman's worker runtime on top of uvicorn) and supervises
//! them. The parts:
//! - `cli`, `config`: command line, TOML file and `HERDSMAN_*` environment, merged and validated
//!   into one typed [`config::Config`].
//! - `sockets`: binding and adopting the listeners the master holds for its whole life.
//! - `sizing`: how many CPUs this process may really use (affinity, cgroup quota).
//! - `worker`: how a worker is spawned (the spawner seam), the channel protocol, the runtime.
//! - `master`: the pure supervision state machine and the poll loop that applies its actions.
//! - `ops`: the control socket (`herdsman ctl`) and the admin listener (metrics, health), served
//!   inside the master's poll loop.
//! - `systemd`: the notify protocol and socket activation.
//! - `sys`: thin wrappers over raw system calls (signals self-pipe, fork/exec, /proc).
//! - `upgrade`: the in-place binary upgrade (SIGUSR2): check, handover, exec.

pub mod addr;
pub mod cli;
pub mod config;
pub mod errors;
pub mod exit;
pub mod logging;
pub mod master;
pub mod ops;
pub mod sizing;
pub mod sockets;
pub mod sys;
pub mod systemd;
pub mod upgrade;
pub mod worker;
