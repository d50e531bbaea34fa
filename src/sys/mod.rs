//! Thin wrappers over raw system calls: the signal self-pipe, fork/exec with a prepared plan,
//! reaping, and /proc readings. Nothing here decides anything; the master decides.

pub mod exec;
pub mod proc;
pub mod reap;
pub mod signals;
