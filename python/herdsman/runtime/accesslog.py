"""The access log: one line per HTTP request, written by the worker runtime itself (not through
uvicorn's logger, which cost about half of a hello app's throughput).

Lines are formatted on the event loop (accessformat.py) into a list, and handed as one batch to a
writer thread at most every FLUSH_INTERVAL, or at once when BATCH_LINES are waiting, so the loop
never waits on the destination. The thread writes each batch with as few `write` calls as it can:
to a regular file opened with O_APPEND, one call per batch (the kernel appends it whole, so the
workers' lines never interleave); to a pipe, a terminal or a socket, calls of at most PIPE_BUF
bytes cut at line ends (the kernel keeps such writes whole). A destination that does not keep
up, or fails (a full disk, a closed stdout), never blocks or kills the worker: past QUEUE_LIMIT
bytes waiting, and on a write error, the batch is dropped and its lines counted in `dropped`,
which the heartbeat reports to the master (`/metrics`), and the worker says so in its log, once
per episode. `reopen()` (the master's `reopen_logs` message, on SIGUSR1) reopens the file at its
path before the next batch.
"""

import os
import stat
import threading

from .accessformat import CLOCK
from .log import log

FLUSH_INTERVAL = 0.1
BATCH_LINES = 256
QUEUE_LIMIT = 4 * 1024 * 1024
PIPE_BUF = 4096
# How long the worker's exit waits for the last batches to be written.
EXIT_FLUSH_WAIT = 1.0


class AccessLog:
    """The worker's access log to `path` ("-" for standard output), lines from `compiled`."""

    def __init__(self, path: str, compiled) -> None:
        self.path = path
        self.render = compiled.render
        self.wants_response_headers = compiled.wants_response_headers
        self.dropped = 0
        self._lines = []
        self._loop = None
        self._timer = None
        self._writer = _Writer(path, self)

    def start(self, loop) -> None:
        self._loop = loop
        self._writer.start()

    def record(self, scope, status: int, length: int, response_headers, duration: float) -> None:
        """Called on the event loop once a request is done."""
        if self._timer is None and self._loop is not None:  # a new batch begins
            CLOCK.refresh()
            self._timer = self._loop.call_later(FLUSH_INTERVAL, self.flush)
        lines = self._lines
        lines.append(self.render(scope, status, length, response_headers, duration))
        if len(lines) >= BATCH_LINES:
            self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            self._writer.put(lines)

    def reopen(self) -> None:
        self._writer.reopen_requested = True
        self._writer.wake()

    def close(self) -> None:
        """The worker is leaving: write what is left, bounded by EXIT_FLUSH_WAIT."""
        self.flush()
        self._writer.finish(EXIT_FLUSH_WAIT)


class _Writer(threading.Thread):
    def __init__(self, path: str, owner: AccessLog) -> None:
        super().__init__(name="herdsman-access-log", daemon=True)
        self.path = path
        self.owner = owner
        self.reopen_requested = False
        self._cond = threading.Condition()
        self._queue = []
        self._queued_bytes = 0
        self._closing = False
        self._fd = None
        self._whole = False  # a regular file: one write per batch stays whole
        self._failing = None  # the error of the episode of drops under way, if any

    def put(self, lines) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        with self._cond:
            if self._queued_bytes + len(data) > QUEUE_LIMIT:
                self._drop(len(lines), "the destination does not keep up")
                return
            self._queue.append((data, len(lines)))
            self._queued_bytes += len(data)
            self._cond.notify()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def finish(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing and not self.reopen_requested:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                self._queued_bytes = 0
                closing = self._closing
            if self.reopen_requested or self._fd is None:
                self.reopen_requested = False
                self._open()
            for data, count in batch:
                self._write(data, count)
            if closing:
                return

    def _open(self) -> None:
        if self.path == "-":
            self._fd, self._whole = 1, False
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._note_failure("cannot open %s: %s" % (self.path, exc.strerror))
            return
        if self._fd is not None and self._fd != 1:
            os.close(self._fd)
        self._fd = fd
        self._whole = stat.S_ISREG(os.fstat(fd).st_mode)

    def _write(self, data: bytes, count: int) -> None:
        if self._fd is None:
            self._drop(count, self._failing or "no destination")
            return
        try:
            if self._whole:
                _write_all(self._fd, data)
            else:
                for chunk in _whole_line_chunks(data, PIPE_BUF):
                    _write_all(self._fd, chunk)
        except OSError as exc:
            self._drop(count, exc.strerror or str(exc))
            return
        if self._failing is not None:
            log.info("access log: writing again after %s; %d line(s) dropped so far"
                     % (self._failing, self.owner.dropped))
            self._failing = None

    def _drop(self, count: int, why: str) -> None:
        self.owner.dropped += count
        self._note_failure(why)

    def _note_failure(self, why: str) -> None:
        if self._failing is None:
            self._failing = why
            log.warning("access log: lines dropped (%s); the count is in /metrics" % why)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _whole_line_chunks(data: bytes, limit: int):
    """Pieces of `data` of at most `limit` bytes, each ending at a line end (a longer line is
    its own piece)."""
    start = 0
    end = len(data)
    while start < end:
        if end - start <= limit:
            yield data[start:]
            return
        cut = data.rfind(b"\n", start, start + limit)
        if cut < 0:
            cut = data.find(b"\n", start + limit)
            if cut < 0:
                cut = end - 1
        yield data[start:cut + 1]
        start = cut + 1
