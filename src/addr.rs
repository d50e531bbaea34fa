//! The address of a listener, as configured: `HOST:PORT`, `[V6]:PORT`, `unix:PATH` or `fd://N`
//! ([`BindSpec`]), and the longest unix socket path the kernel accepts. A leaf shared by
//! `config` (which parses and validates specs) and `sockets` (which binds them), so neither
//! imports the other. Pure data: parsing, with its errors and fixes, stays in `config`; binding
//! stays in `sockets`.

use std::fmt;
use std::path::PathBuf;

/// One listener to bind (or adopt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    /// `HOST:PORT` or `[V6]:PORT`; `host` without brackets. Resolved at bind time.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `fd://N`: an already listening socket inherited from whoever started us.
    Fd(i32),
}

/// The spec as written in configuration: `HOST:PORT`, `[V6]:PORT`, `unix:PATH`, `fd://N`.
impl fmt::Display for BindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindSpec::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            BindSpec::Unix(path) => write!(f, "unix:{}", path.display()),
            BindSpec::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

/// The longest path a unix socket address holds (sun_path, less the terminating NUL).
pub fn max_unix_path_len() -> usize {
    // SAFETY: sockaddr_un is plain old data (integers and a byte array): all-zero is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}
