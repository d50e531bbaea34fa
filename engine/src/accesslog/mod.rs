//! The native engine's access log: one line per finished HTTP request, in gunicorn's format or
//! as JSON lines, byte for byte what the Python runtime writes (python/herdsman/runtime/
//! accessformat.py and accesslog.py). `Format` turns a finished request (`Entry`) into a line;
//! `AccessLog` batches lines from any number of tasks and writes them on its own thread, so a
//! slow or failing destination never blocks a request. This module only declares and re-exports.

mod atoms;
mod clock;
mod dest;
mod entry;
mod format;
mod pytext;
mod writer;

pub mod py;

pub use dest::{Notice, Severity};
pub use entry::{Entry, Local};
pub use format::{Format, DEFAULT_FORMAT};
pub use writer::AccessLog;
