//! Thin wrappers over raw system calls: the signal self-pipe, fork/exec with a prepared plan,
//! reaping, the pidfile, /proc readings, finding the Python interpreter, and running a short-lived
//! child to completion (`capture`). Nothing here decides anything; the master decides.

pub mod capture;
pub mod environ;
pub mod exec;
pub mod pidfile;
pub mod proc;
pub mod proctitle;
pub mod python;
pub mod reap;
pub mod signals;
