//! The signal self-pipe. Handlers do two async-signal-safe things only: bump a per-signal atomic
//! counter and write one byte to a non-blocking socket that the master loop polls. The loop drains
//! the socket, then swaps the counters to zero: signals that arrived several times between two
//! wakeups coalesce into one count, and none is lost between the drain and the swap (a signal that
//! arrives after the swap leaves a byte for the next wakeup).
//!
//! Install this before binding sockets or forking anything, so that a signal is handled from the
//! first instant (PID 1 in a container included).

use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::signal::*;

/// The signals the master acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sig {
    Term,
    Int,
    Quit,
    Hup,
    Ttin,
    Ttou,
    Usr1,
    Usr2,
    Chld,
}

impl Sig {
    pub const ALL: [Sig; 9] = [
        Sig::Term,
        Sig::Int,
        Sig::Quit,
        Sig::Hup,
        Sig::Ttin,
        Sig::Ttou,
        Sig::Usr1,
        Sig::Usr2,
        Sig::Chld,
    ];

    pub fn number(self) -> i32 {
        match self {
            Sig::Term => SIGTERM,
            Sig::Int => SIGINT,
            Sig::Quit => SIGQUIT,
            Sig::Hup => SIGHUP,
            Sig::Ttin => SIGTTIN,
            Sig::Ttou => SIGTTOU,
            Sig::Usr1 => SIGUSR1,
            Sig::Usr2 => SIGUSR2,
            Sig::Chld => SIGCHLD,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sig::Term => "SIGTERM",
            Sig::Int => "SIGINT",
            Sig::Quit => "SIGQUIT",
            Sig::Hup => "SIGHUP",
            Sig::Ttin => "SIGTTIN",
            Sig::Ttou => "SIGTTOU",
            Sig::Usr1 => "SIGUSR1",
            Sig::Usr2 => "SIGUSR2",
            Sig::Chld => "SIGCHLD",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("could not create the signal self-pipe")]
    Pipe(#[source] io::Error),
    #[error("could not install the {signal} handler")]
    Register {
        signal: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The installed handlers and both ends of the self-pipe. The write end is shared by every
/// handler by its raw number, so it must live (here) as long as the handlers are installed: for
/// the master's whole life.
pub struct Signals {
    read: UnixStream,
    _write: UnixStream,
    counters: Vec<(Sig, Arc<AtomicUsize>)>,
}

impl Signals {
    /// Installs a handler for every signal in [`Sig::ALL`].
    pub fn install() -> Result<Signals, SignalError> {
        let (read, write) = UnixStream::pair().map_err(SignalError::Pipe)?;
        read.set_nonblocking(true).map_err(SignalError::Pipe)?;
        write.set_nonblocking(true).map_err(SignalError::Pipe)?;
        let mut counters = Vec::with_capacity(Sig::ALL.len());
        for sig in Sig::ALL {
            let counter = Arc::new(AtomicUsize::new(0));
            register_counter(sig, Arc::clone(&counter))?;
            signal_hook::low_level::pipe::register_raw(sig.number(), write.as_raw_fd()).map_err(
                |source| SignalError::Register {
                    signal: sig.name(),
                    source,
                },
            )?;
            counters.push((sig, counter));
        }
        Ok(Signals {
            read,
            _write: write,
            counters,
        })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Whether a signal arrived that [`Signals::take`] has not returned yet (nothing is taken).
    pub fn pending(&self) -> bool {
        self.counters
            .iter()
            .any(|(_, counter)| counter.load(Ordering::Acquire) > 0)
    }

    /// Drains the pipe, then returns each signal that arrived since the last call with how many
    /// times it was counted (at least once).
    pub fn take(&mut self) -> Vec<(Sig, usize)> {
        let mut buf = [0u8; 256];
        loop {
            match self.read.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        self.counters
            .iter()
            .filter_map(|(sig, counter)| match counter.swap(0, Ordering::AcqRel) {
                0 => None,
                n => Some((*sig, n)),
            })
            .collect()
    }
}

fn register_counter(sig: Sig, counter: Arc<AtomicUsize>) -> Result<(), SignalError> {
    let action = move || {
        counter.fetch_add(1, Ordering::AcqRel);
    };
    // SAFETY: the action only performs an atomic add, which is async-signal-safe: it does not
    // allocate, lock or touch errno.
    unsafe { signal_hook::low_level::register(sig.number(), action) }
        .map(|_| ())
        .map_err(|source| SignalError::Register {
            signal: sig.name(),
            source,
        })
}
