"""The worker's end of the socket pair to the master (docs/protocol.md, "Channel")."""

import json
import os
import socket
import threading

from .consts import BOOT_SEND_TIMEOUT, CHANNEL_BUFFER_LIMIT, DROPPABLE
from .log import log


class Channel:
    """The worker's end of the socketpair: newline-delimited JSON objects.

    Before the event loop runs, writes are blocking (with a timeout). Once `attach` hands it an
    event loop, writes are non-blocking: what the kernel does not take is kept in a small buffer and
    flushed when the socket becomes writable, so the event loop never waits on the master. The
    loop also watches the socket for end-of-file, which means the master is gone.

    Two threads write: the event loop (`send`) and the stall watchdog (`send_from_thread`). Both
    append to the same buffer and push it with non-blocking `send` calls under `_lock`, so the bytes
    of two messages never interleave; the lock is held only for those calls, never while waiting.
    Only the loop thread registers and removes the loop's reader and writer.
    """

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        os.set_inheritable(fd, False)  # the app's subprocesses must not keep the channel open
        self.sock.settimeout(BOOT_SEND_TIMEOUT)
        self.fd = fd
        self.loop = None
        self.on_gone = None
        self.gone = False
        self._lock = threading.Lock()
        self._out = bytearray()
        self._writing = False
        self._inbuf = b""
        self.on_message = None

    @staticmethod
    def _encode(type_: str, fields) -> bytes:
        message = {"type": type_}
        message.update(fields)
        return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")

    def send(self, type_: str, **fields) -> None:
        """Send from the main thread: blocking while booting, from the event loop once attached."""
        if self.gone:
            return
        data = self._encode(type_, fields)
        if self.loop is None:
            try:
                self.sock.sendall(data)
            except OSError as exc:  # includes socket.timeout
                self._lost("send failed: %s" % (exc,))
            return
        with self._lock:
            if len(self._out) + len(data) > CHANNEL_BUFFER_LIMIT and type_ in DROPPABLE:
                log.debug("channel: master not reading, %s dropped" % type_)
                return
            self._out += data
        if not self._writing:
            self._flush()

    def send_from_thread(self, type_: str, **fields) -> bool:
        """Send from a thread other than the event loop's, never waiting on the master: what the
        socket does not take now stays buffered for the loop to flush (the message is dropped if
        the buffer is full). False once the master is gone or the loop has finished: stop sending."""
        data = self._encode(type_, fields)
        with self._lock:
            if self.gone or self.loop is None:
                return False
            if len(self._out) + len(data) > CHANNEL_BUFFER_LIMIT:
                return True
            self._out += data
            error = self._send_buffered()
        # On an error the loop finds out itself (end-of-file or its own failed send).
        return error is None

    def attach(self, loop, on_gone) -> None:
        """Switch to non-blocking writes from `loop` and watch for end-of-file."""
        with self._lock:
            self.sock.setblocking(False)
            self.loop = loop
        self.on_gone = on_gone
        if not self.gone:
            loop.add_reader(self.fd, self._on_readable)

    def detach(self) -> None:
        """The loop is about to close: go back to blocking writes (with a timeout)."""
        with self._lock:
            loop, self.loop = self.loop, None
            self.sock.settimeout(BOOT_SEND_TIMEOUT)
            out = bytes(self._out)
            self._out.clear()
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self.fd)
                if self._writing:
                    loop.remove_writer(self.fd)
            except Exception:
                pass
        self._writing = False
        try:
            if out and not self.gone:
                self.sock.sendall(out)
        except OSError as exc:
            self._lost("send failed: %s" % (exc,))

    def _send_buffered(self):
        """One non-blocking send of the buffer, with `_lock` held. Returns the OSError, if any."""
        if not self._out:
            return None
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            return exc
        del self._out[:sent]
        return None

    def _flush(self) -> None:
        """Event loop thread only (also the loop's writer callback)."""
        with self._lock:
            error = self._send_buffered()
            pending = bool(self._out)
        if error is not None:
            self._lost("send failed: %s" % (error,))
            return
        if pending and not self._writing:
            self.loop.add_writer(self.fd, self._flush)
            self._writing = True
        elif not pending and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost("receive failed: %s" % (exc,))
            return
        if not data:
            self._lost("end of file")
            return
        # Master-to-worker messages (docs/protocol.md): handed to `on_message`; unknown or
        # malformed ones are logged at debug and ignored, so the master can be newer.
        self._inbuf += data
        *lines, self._inbuf = self._inbuf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if isinstance(message, dict) and self.on_message is not None:
                self.on_message(message)
            else:
                log.debug("channel: ignoring message from master: %r" % (line[:200],))

    def _lost(self, why: str) -> None:
        if self.gone:
            return
        with self._lock:
            self.gone = True
            self._out.clear()
        log.debug("channel: master gone (%s)" % why)
        if self.loop is not None:
            try:
                self.loop.remove_reader(self.fd)
                if self._writing:
                    self.loop.remove_writer(self.fd)
            except Exception:
                pass
            self._writing = False
        if self.on_gone is not None:
            self.on_gone()

