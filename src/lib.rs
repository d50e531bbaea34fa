//! herdsman: a pre-fork process manager for Python WSGI and ASGI applications.
//!
//! One single-threaded master binds the listeners, spawns one worker per usable CPU (each the
//! user's Python interpreter running herdsman's worker runtime on top of uvicorn) and supervises
//! them. The modules, from the bottom layer up; a module only imports modules of a lower layer
//! (or of its own layer that do not import it back), and a type two layers share lives in the
//! lower one (docs/architecture.md, "Source layout"):
//!
//! 1. Leaves, importing nothing of the crate but each other:
//!    - `sys`: thin wrappers over raw system calls (signal self-pipe, fork/exec, reaping, the
//!      pidfile, /proc, the environment).
//!    - `addr`: [`addr::BindSpec`], the address of a listener, shared by `config` and `sockets`.
//!    - `errors`: [`errors::error_chain`], an error and its causes as one line.
//!    - `exit`: the documented exit codes.
//! 2. What the master is given to work with:
//!    - `config`: the command-line flags ([`config::RunArgs`]), TOML file and `HERDSMAN_*`
//!      environment, merged and validated into one typed [`config::Config`].
//!    - `sockets`: binding and adopting the listeners the master holds for its whole life.
//!    - `sizing`: how many CPUs this process may really use (affinity, cgroup quota), and
//!      whether the workers fit in the memory limit.
//!    - `logging`: the master's log (text or JSON, stderr or a file) and its sink for captured
//!      worker output.
//! 3. The parts the master drives, each speaking its own types:
//!    - `worker`: how a worker is spawned (the spawner seam), the channel protocol, the runtime.
//!    - `systemd`: the notify protocol (fed plain values by the loop) and socket activation.
//!    - `ops`: the control socket (`herdsman ctl`) and the admin listener (metrics, health),
//!      served inside the master's poll loop from a [`ops::Snapshot`], answering with
//!      [`ops::MasterRequest`]s.
//! 4. `upgrade`: the in-place binary upgrade (SIGUSR2): check, handover, exec.
//! 5. `master`: the pure supervision state machine and the poll loop that applies its actions.
//! 6. `cli`: the full command line (`run`, `check`, `ctl`), parsed by the `herdsman` binary.

pub mod addr;
pub mod check;
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
