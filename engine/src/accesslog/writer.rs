//! The access log of one worker: `record` renders a line on the calling task's thread and
//! appends it to the pending batch under a mutex held only for that copy; one writer thread
//! takes the batch when BATCH_LINES lines wait or FLUSH_INTERVAL after its first line, and
//! writes it (dest.rs). A request never waits for the destination: past QUEUE_LIMIT bytes
//! pending, lines are dropped and counted in `dropped` (the heartbeat reports it), and the
//! writer says so in the worker's log, once per episode. `reopen` (the master's `reopen_logs`)
//! reopens the path before the next batch; `close` writes what is pending, waiting a bounded
//! time. These are accesslog.py's numbers and rules; only who batches differs (there the event
//! loop, here the writer thread, since lines come from many tasks at once).

use std::cell::RefCell;
use std::io;
use std::mem;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::dest::{Destination, Notice};
use super::entry::Entry;
use super::format::Format;

pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
pub const BATCH_LINES: u64 = 256;
pub const QUEUE_LIMIT: usize = 4 * 1024 * 1024;
/// A thread's render buffer is given back past this size, so one huge line does not stay.
const KEEP_BUFFER: usize = 64 * 1024;

/// The worker's access log (Send + Sync: shared by every connection task).
pub struct AccessLog {
    format: Format,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits on it for lines, a reopen or the close.
    wake: Condvar,
    /// `close` waits on it for the writer's end.
    finished: Condvar,
    dropped: Arc<AtomicU64>,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    lines: u64,
    /// Lines were dropped for want of room since the writer last looked.
    overflowed: bool,
    reopen: bool,
    closing: bool,
    finished: bool,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl AccessLog {
    /// The access log to `path` ("-" for standard output), its writer thread started. A path
    /// that cannot be opened is not an error here: as in Python, lines are dropped and counted,
    /// `notice` says why, and every batch tries the path again. Errs only if no thread starts.
    pub fn open(path: &str, format: Format, notice: Notice) -> io::Result<AccessLog> {
        let dropped = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            finished: Condvar::new(),
            dropped: Arc::clone(&dropped),
        });
        let dest = Destination::new(path, dropped, notice);
        let for_thread = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("herdsman-access-log".into())
            .spawn(move || run(&for_thread, dest))?;
        Ok(AccessLog {
            format,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether `record` needs `Entry::response_headers` (the format reads one).
    pub fn wants_response_headers(&self) -> bool {
        self.format.wants_response_headers()
    }

    /// Logs one finished request. Never blocks on I/O.
    pub fn record(&self, entry: &Entry) {
        let reused = LINE.try_with(|cell| {
            let Ok(mut line) = cell.try_borrow_mut() else {
                return false;
            };
            line.clear();
            self.format.render(entry, &mut line);
            self.shared.append(&line);
            if line.capacity() > KEEP_BUFFER {
                *line = Vec::new();
            }
            true
        });
        if reused != Ok(true) {
            // the thread's buffer is in use (re-entered) or gone (the thread is ending)
            let mut line = Vec::new();
            self.format.render(entry, &mut line);
            self.shared.append(&line);
        }
    }

    /// Lines dropped so far (destination too slow or failing, or recorded after `close`).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Reopens the path before the next batch (after the file was rotated).
    pub fn reopen(&self) {
        self.shared.lock().reopen = true;
        self.shared.wake.notify_one();
    }

    /// Writes what is pending and stops the writer, waiting at most `wait` for it. Lines
    /// recorded afterwards are dropped. If the writer is stuck (a destination that does not
    /// drain), it is left behind; the process exit ends it.
    pub fn close(&self, wait: Duration) {
        let deadline = Instant::now().checked_add(wait); // None: wait as long as it takes
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.wake.notify_one();
        while !state.finished {
            let left = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return,
                },
                None => Duration::from_secs(3600),
            };
            state = self
                .shared
                .finished
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(state);
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join(); // it has finished: this does not wait
        }
    }
}

impl Drop for AccessLog {
    /// Lets the writer write what is pending and end, without waiting for it.
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    /// The state, also after a panic elsewhere (it holds only counters and bytes).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        if state.closing {
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if state.pending.len() + line.len() > QUEUE_LIMIT {
            state.overflowed = true;
            drop(state);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.pending.extend_from_slice(line);
        state.lines += 1;
        let wake = state.lines == 1 || state.lines == BATCH_LINES; // a batch begins, or is full
        drop(state);
        if wake {
            self.wake.notify_one();
        }
    }

    /// Waits for work, then hands the pending batch over by swapping it with `batch` (empty).
    fn next_batch(&self, batch: &mut Vec<u8>) -> Work {
        let mut state = self.lock();
        let mut due: Option<Instant> = None;
        while !(state.closing || state.reopen || state.lines >= BATCH_LINES) {
            if state.lines == 0 {
                state = self
                    .wake
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let now = Instant::now();
            let due = *due.get_or_insert(now + FLUSH_INTERVAL);
            if now >= due {
                break;
            }
            state = self
                .wake
                .wait_timeout(state, due - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        mem::swap(batch, &mut state.pending);
        Work {
            lines: mem::take(&mut state.lines),
            overflowed: mem::take(&mut state.overflowed),
            reopen: mem::take(&mut state.reopen),
            last: state.closing,
        }
    }
}

/// What the writer has to do this round.
struct Work {
    lines: u64,
    overflowed: bool,
    reopen: bool,
    /// The log is closing: nothing comes after this batch.
    last: bool,
}

/// The writer thread: marks itself finished however it ends, after the destination is closed.
fn run(shared: &Shared, dest: Destination) {
    struct Finished<'a>(&'a Shared);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.lock().finished = true;
            self.0.finished.notify_all();
        }
    }
    let _finished = Finished(shared);
    write_until_closed(shared, dest);
}

fn write_until_closed(shared: &Shared, mut dest: Destination) {
    dest.open();
    let mut batch = Vec::new();
    loop {
        let work = shared.next_batch(&mut batch);
        if work.reopen || !dest.is_open() {
            dest.open();
        }
        if work.overflowed {
            dest.note_failure("the destination does not keep up");
        }
        if work.lines > 0 {
            dest.write(&batch, work.lines);
        }
        if work.last {
            return;
        }
        batch.clear();
        if batch.capacity() > QUEUE_LIMIT / 4 {
            batch = Vec::new(); // a burst is over: do not keep its memory
        }
    }
}
