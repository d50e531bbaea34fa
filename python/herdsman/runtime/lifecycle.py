"""Signals and phases of a worker process.

One handler serves SIGTERM, SIGINT and SIGQUIT for the whole life of the process:
  boot     (before the event loop runs): raise StopRequested, main() exits 0 at once;
  serving  (the engine's server exists): ask it to stop, graceful (TERM) or quick (INT, QUIT);
  done     (the engine returned): ignore; the process is on its way out with code 0.
uvicorn installs its own handler (Server.handle_exit, overridden by the engine adapter) for INT and
TERM while it serves and restores ours afterwards; it does not know SIGQUIT, which stays with ours.
"""

import os
import select
import signal
import sys
import threading
import time

from . import hooks as _hooks
from .consts import EXIT_OK
from .errors import StopRequested
from .log import log


class _State:
    def __init__(self) -> None:
        self.phase = "boot"
        self.lock = threading.Lock()
        self.server = None
        self.master_gone = False


state = _State()


def signal_handler(signum, frame) -> None:
    _hooks.on_signal(signum)
    phase = state.phase
    if phase == "serving" and state.server is not None:
        state.server.handle_exit(signum, frame)
    elif phase == "boot":
        # No lock here: the handler runs in the main thread, which may hold it already.
        state.phase = "done"
        reason = "master_gone" if state.master_gone else "signal"
        raise StopRequested(reason, signal.Signals(signum).name)


def install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal_handler)


def watch_channel_while_booting(fd: int) -> None:
    """Until the event loop watches the channel, a thread does: if the master goes away while
    the app imports (maybe forever), interrupt the import with SIGQUIT to the main thread."""
    main_ident = threading.main_thread().ident
    rdhup = getattr(select, "POLLRDHUP", 0)

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, rdhup)  # POLLHUP and POLLERR are always reported
        while state.phase == "boot":
            try:
                events = poller.poll(250)
            except InterruptedError:
                continue
            except OSError:
                return
            if any(ev & (rdhup | select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
                with state.lock:
                    if state.phase == "boot":
                        state.master_gone = True
                        signal.pthread_kill(main_ident, signal.SIGQUIT)
                return

    threading.Thread(target=watch, name="herdsman-boot-channel-watch", daemon=True).start()


def exit_soon(seconds: float) -> None:
    """Leave with code 0 after `seconds` even if interpreter teardown hangs (worker threads that are
    joined at exit, atexit hooks): a daemon thread keeps running while the main thread finalises."""

    def force() -> None:
        time.sleep(seconds)
        log.warning("exit took longer than %.1fs (threads still running?): forcing it" % seconds)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(EXIT_OK)

    threading.Thread(target=force, name="herdsman-exit-deadline", daemon=True).start()


class StopRequests:
    """A stop request as both engine adapters keep it: the first reason, the signal's name and
    when it came, whether it is quick (INT, QUIT, the master gone; TERM is graceful, and a quick
    request after a graceful one escalates it), and the one `stopping` message to the master.
    The adapter sets `channel` and calls `_init_stop()`; `request_stop` is its own (it tells its
    server), built on `_note_stop`. Signal handler context: flags only."""

    def _init_stop(self) -> None:
        self.quick = False
        self.stop_reason = None
        self.stop_signame = None
        self.stop_requested_at = None
        self.stopping_sent = False

    def handle_exit(self, sig, frame) -> None:
        _hooks.on_signal(sig)  # gunicorn's worker_int, for INT and QUIT
        name = signal.Signals(sig).name
        self.request_stop(quick=(sig != signal.SIGTERM), reason="signal", signame=name)

    def _note_stop(self, quick: bool, reason: str, signame=None) -> bool:
        """Records the request; True when it made the stop quick just now."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop_signame = signame
            self.stop_requested_at = time.monotonic()
        if quick and not self.quick:
            self.quick = True
            return True
        return False

    def _announce_stop(self) -> None:
        if self.stopping_sent or self.stop_reason is None:
            return
        self.stopping_sent = True
        what = self.stop_signame or self.stop_reason
        log.debug("stopping (%s): %s" % (what, "quick" if self.quick else "graceful"))
        # After end-of-file the channel is marked gone and this sends nothing.
        self.channel.send("stopping", reason=self.stop_reason)
