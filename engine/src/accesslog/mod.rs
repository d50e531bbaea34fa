//! The native engine's access log: one line per finished HTTP request, in gunicorn's format or
//! as JSON lines, byte for byte what the Python runtime writes (python/herdsman/runtime/
//! accessformat.py). `Format` turns a finished request (`Entry`) into a line. This module only
//! declares and re-exports.

mod atoms;
mod clock;
mod entry;
mod format;
mod pytext;

pub mod py;

pub use entry::{Entry, Local};
pub use format::Format;
