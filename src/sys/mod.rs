//! Thin wrappers over raw system calls: the signal self-pipe, fork/exec with a prepared plan,
//! reaping, the pidfile, and /proc readings. Nothing here decides anything; the master decides.

pub mod environ;
pub mod exec;
pub mod pidfile;
pub mod proc;
pub mod proctitle;
pub mod reap;
pub mod signals;
