"""herdsman worker runtime.

The herdsman master (Rust) embeds this file, writes it to its private runtime directory and runs it
once per worker with the user's Python interpreter:

    PYTHON RUNTIME_DIR/herdsman_worker.py --app MODULE:ATTR [--factory] --interface auto|asgi|wsgi
        --listen-fd 3 [--listen-fd 4 ...] --channel-fd N --worker-id ID --heartbeat-interval S
        --graceful-timeout S --log-level LEVEL [--no-access-log] [--chdir DIR] [--backlog N]

It imports the app and serves the inherited listening sockets with uvicorn. docs/protocol.md is the
contract with the master (argv, channel messages, signals, exit codes); this file implements it.

Only the standard library is imported at module level: uvicorn (and a2wsgi, for WSGI apps) are
imported once the channel is open, so that their absence is reported to the master as a
`boot_error` of kind `dependency` instead of a traceback. Keep it compatible with Python 3.9 syntax
for the same reason (uvicorn itself needs >= 3.10).
"""

from __future__ import annotations

import argparse
import faulthandler
import functools
import gc
import inspect
import itertools
import json
import os
import select
import signal
import socket
import sys
import threading
import time

# Exit codes, docs/protocol.md "boot_error kinds" and "Worker exit codes".
EXIT_OK = 0
EXIT_IMPORT = 10
EXIT_DEPENDENCY = 11
EXIT_LIFESPAN = 12
EXIT_INTERFACE = 13

EXIT_CODES = {
    "import": EXIT_IMPORT,
    "dependency": EXIT_DEPENDENCY,
    "lifespan": EXIT_LIFESPAN,
    "interface": EXIT_INTERFACE,
}

# Threads a2wsgi runs WSGI requests in (one pool per worker; a2wsgi.WSGIMiddleware(app, workers=10,
# send_queue_size=10) in 1.10.10). The worker is one process per CPU, so these threads only overlap
# the time requests spend waiting (database, upstream HTTP): the GIL serialises the Python work.
# 10 (a2wsgi's own default) lets a worker wait on 10 slow calls at once; more threads mostly add
# memory and GIL contention, and a request beyond 10 queues inside the worker (counted in_flight).
WSGI_THREADS = 10

# Before the event loop runs, channel writes are blocking with this timeout: the master always
# reads, so a write that cannot complete means it is stopped or gone.
BOOT_SEND_TIMEOUT = 5.0
# Bytes of unsent channel output kept while the master does not read (it is SIGSTOPped, say).
# Beyond this, heartbeats and stall reports are dropped rather than buffered: they are only useful
# when fresh.
CHANNEL_BUFFER_LIMIT = 64 * 1024
# `stalled` reports: the event loop counts as stalled after this many heartbeat intervals without a
# tick; a report lists at most this many requests, and paths are cut to this many characters.
STALL_INTERVALS = 2
STALL_LISTED = 5
PATH_LIMIT = 200
# The messages dropped (not buffered) beyond that limit.
DROPPABLE = ("heartbeat", "stalled")
# After a quick stop (SIGINT, SIGQUIT, master gone), how long lifespan shutdown and interpreter
# teardown (joining a2wsgi threads stuck in a request, atexit hooks) may take before the process
# leaves with os._exit(0). The master's SIGKILL is the last resort behind this.
QUICK_EXIT_BUDGET = 1.0
# How long a graceful stop waits, after it stopped accepting, for connections just accepted to
# deliver their request (see HerdsmanServer._stop_accepting_then_linger).
FRESH_CONNECTION_LINGER = 0.25

LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
_LEVEL_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}

RUNTIME_DIR = os.path.dirname(os.path.realpath(os.path.abspath(__file__)))


class _Log:
    """The runtime's own log lines: stderr, prefixed with `[herdsman worker ID pid PID]`."""

    def __init__(self) -> None:
        self.prefix = "[herdsman worker ? pid %d]" % os.getpid()
        self.rank = _LEVEL_RANK["info"]

    def configure(self, worker_id: str, level: str, role: str = "worker") -> None:
        self.prefix = "[herdsman %s %s pid %d]" % (role, worker_id, os.getpid())
        self.rank = _LEVEL_RANK[level]

    def write(self, level: str, message: str) -> None:
        if _LEVEL_RANK[level] < self.rank:
            return
        try:
            sys.stderr.write("%s %s\n" % (self.prefix, message))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def debug(self, message: str) -> None:
        self.write("debug", message)

    def info(self, message: str) -> None:
        self.write("info", message)

    def warning(self, message: str) -> None:
        self.write("warning", message)

    def error(self, message: str) -> None:
        self.write("error", message)


log = _Log()


class BootError(Exception):
    """The worker cannot become ready: reported once as `boot_error`, then exit with its code."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = " ".join(message.split())  # one line, as the contract requires


class StopRequested(BaseException):
    """Raised from the signal handler while booting (before the event loop runs)."""

    def __init__(self, reason: str, signame: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signame = signame


# --------------------------------------------------------------------------------------------------
# The channel to the master


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


# --------------------------------------------------------------------------------------------------
# Signals and phases
#
# One handler serves SIGTERM, SIGINT and SIGQUIT for the whole life of the process:
#   boot     (before the event loop runs): raise StopRequested, main() exits 0 at once;
#   serving  (the uvicorn server exists): ask it to stop, graceful (TERM) or quick (INT, QUIT);
#   done     (uvicorn returned): ignore; the process is on its way out with code 0.
# uvicorn installs its own handler (Server.handle_exit, overridden below) for INT and TERM while
# it serves and restores ours afterwards; it does not know SIGQUIT, which stays with ours.


class _State:
    def __init__(self) -> None:
        self.phase = "boot"
        self.lock = threading.Lock()
        self.server = None
        self.master_gone = False


_state = _State()


def _signal_handler(signum, frame) -> None:
    phase = _state.phase
    if phase == "serving" and _state.server is not None:
        _state.server.handle_exit(signum, frame)
    elif phase == "boot":
        # No lock here: the handler runs in the main thread, which may hold it already.
        _state.phase = "done"
        reason = "master_gone" if _state.master_gone else "signal"
        raise StopRequested(reason, signal.Signals(signum).name)


def _install_signal_handlers() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, _signal_handler)


def _watch_channel_while_booting(fd: int) -> None:
    """Until the event loop watches the channel, a thread does: if the master goes away while
    the app imports (maybe forever), interrupt the import with SIGQUIT to the main thread."""
    main_ident = threading.main_thread().ident
    rdhup = getattr(select, "POLLRDHUP", 0)

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, rdhup)  # POLLHUP and POLLERR are always reported
        while _state.phase == "boot":
            try:
                events = poller.poll(250)
            except InterruptedError:
                continue
            except OSError:
                return
            if any(ev & (rdhup | select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in events):
                with _state.lock:
                    if _state.phase == "boot":
                        _state.master_gone = True
                        signal.pthread_kill(main_ident, signal.SIGQUIT)
                return

    threading.Thread(target=watch, name="herdsman-boot-channel-watch", daemon=True).start()


def _exit_soon(seconds: float) -> None:
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


# --------------------------------------------------------------------------------------------------
# Loading the app


def _python_description() -> str:
    return "%s (Python %s)" % (sys.executable or "python", "%d.%d.%d" % sys.version_info[:3])


def import_uvicorn():
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        if exc.name == "uvicorn":
            return None, BootError(
                "dependency",
                "uvicorn is not installed for %s: run '%s -m pip install uvicorn'"
                % (_python_description(), sys.executable),
            )
        return None, BootError(
            "dependency",
            "uvicorn is installed for %s but cannot be imported (%s: %s): run '%s -m pip install "
            "--force-reinstall uvicorn'" % (_python_description(), type(exc).__name__, exc, sys.executable),
        )
    except Exception as exc:
        return None, BootError(
            "dependency",
            "uvicorn cannot be imported for %s (%s: %s): run '%s -m pip install --force-reinstall uvicorn'"
            % (_python_description(), type(exc).__name__, exc, sys.executable),
        )
    return uvicorn, None


def import_a2wsgi():
    try:
        import a2wsgi
    except ModuleNotFoundError as exc:
        if exc.name == "a2wsgi":
            raise BootError(
                "dependency",
                "a2wsgi (needed to serve WSGI apps) is not installed for %s: run '%s -m pip install a2wsgi'"
                % (_python_description(), sys.executable),
            ) from None
        raise BootError(
            "dependency",
            "a2wsgi cannot be imported for %s (%s: %s): run '%s -m pip install --force-reinstall a2wsgi'"
            % (_python_description(), type(exc).__name__, exc, sys.executable),
        ) from None
    return a2wsgi


def load_app(spec: str, factory: bool):
    """Import MODULE:ATTR (ATTR may be dotted), and call it if it is a factory."""
    import importlib

    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise BootError("import", "app %r must be given as MODULE:ATTR, e.g. 'main:app'" % spec)

    def failed(what: str) -> BootError:
        exc = sys.exc_info()[1]
        # The traceback first, on stderr, under one line that says what failed.
        log.error("failed to %s app %r (cwd %s):" % (what, spec, os.getcwd()))
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        return BootError(
            "import",
            "cannot %s app %r: %s: %s (traceback above)" % (what, spec, type(exc).__name__, exc),
        )

    try:
        module = importlib.import_module(module_name)
    except StopRequested:
        raise
    except BaseException as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            log.error("failed to import app %r: no module %r in %s (sys.path[0]) or on sys.path"
                      % (spec, module_name, os.getcwd()))
            raise BootError(
                "import",
                "cannot import app %r: no module named %r (working directory %s): check the app name "
                "and the working directory (chdir)" % (spec, module_name, os.getcwd()),
            ) from None
        raise failed("import") from None

    obj = module
    walked = []
    for part in attr_path.split("."):
        walked.append(part)
        try:
            obj = getattr(obj, part)
        except AttributeError:
            message = "module %r has no attribute %r" % (module_name, ".".join(walked))
            log.error("failed to import app %r: %s" % (spec, message))
            raise BootError("import", "cannot load app %r: %s" % (spec, message)) from None
        except StopRequested:
            raise
        except BaseException:  # a module __getattr__ or a property that raises
            raise failed("load") from None

    if factory:
        if not callable(obj):
            raise BootError("import", "app factory %r is not callable (it is %s)" % (spec, _describe(obj)))
        try:
            obj = obj()
        except StopRequested:
            raise
        except BaseException:
            raise failed("call the factory of") from None
    return obj


def _describe(obj) -> str:
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return "%s %s" % (type(obj).__name__, text)


def _is_coroutine_function(func) -> bool:
    if func is None:
        return False
    if inspect.iscoroutinefunction(func):
        return True
    if sys.version_info < (3, 14):
        # Also recognises callables marked with asyncio's `_is_coroutine` flag (asgiref's
        # markcoroutinefunction before 3.12), as uvicorn does on these versions.
        import asyncio

        return asyncio.iscoroutinefunction(func)
    return False


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*([None] * n))
    except TypeError:
        return False
    return True


def detect_interface(obj):
    """'asgi', 'wsgi' or None (cannot tell).

    ASGI: the object, or its __call__, is a coroutine function (FastAPI, Starlette, Django's
    ASGIHandler, raw `async def app(scope, receive, send)`). WSGI: a plain callable that accepts
    exactly two positional arguments (environ, start_response): Flask, Django's WSGIHandler, plain
    functions. ASGI2 (class-style) apps are not detected.
    """
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    if _is_coroutine_function(target) or (
        not inspect.isfunction(target) and _is_coroutine_function(getattr(target, "__call__", None))
    ):
        return "asgi"
    if not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if _binds(sig, 2) and not _binds(sig, 3):
        return "wsgi"
    return None


def resolve_interface(obj, requested: str, spec: str) -> str:
    if not callable(obj):
        raise BootError(
            "interface",
            "app %r is %s, not an ASGI or WSGI application: point the app at the application object "
            "(or use --factory if the attribute is a function that returns it)" % (spec, _describe(obj)),
        )
    if requested in ("asgi", "wsgi"):
        return requested
    detected = detect_interface(obj)
    if detected is None:
        raise BootError(
            "interface",
            "cannot tell whether app %r (%s) is ASGI or WSGI: pass --interface asgi|wsgi, or --factory "
            "if it is a function that returns the app" % (spec, _describe(obj)),
        )
    return detected


def _shield_from_factory_guess(app):
    """uvicorn's Config.load() calls the app with no arguments to guess whether it is a factory.
    A real app called like that raises TypeError at once, but one whose parameters all have
    defaults would run (or return a coroutine that is never awaited); hide such an app behind a
    plain three-argument coroutine function."""
    try:
        sig = inspect.signature(app)
    except (TypeError, ValueError):
        return app
    if not _binds(sig, 0):
        return app

    async def asgi_app(scope, receive, send):
        return await app(scope, receive, send)

    return asgi_app


# --------------------------------------------------------------------------------------------------
# In-flight requests and the stall watchdog
#
# The heartbeat is sent from the event loop, so missing heartbeats alone cannot tell a blocked loop
# (a sync call in an async handler) from a process that does not run at all (SIGSTOP, starved of CPU,
# a C extension holding the GIL). A watchdog thread tells them apart: it keeps running when only the
# loop is blocked, and reports `stalled` with the requests in flight, which a registry kept by a thin
# ASGI wrapper around the app knows. docs/protocol.md describes both.


class Completed:
    """Requests whose app call has returned, and the master's `report_at` threshold: crossing it
    calls `on_threshold` once, at once, so max-requests recycling does not wait for the next
    heartbeat (at high rates that was hundreds of requests past the limit)."""

    __slots__ = ("count", "report_at", "on_threshold")

    def __init__(self) -> None:
        self.count = 0
        self.report_at = None
        self.on_threshold = None


def track_in_flight(app, registry: dict, completed: Completed):
    """Wrap the ASGI app handed to uvicorn: while the app handles an `http` or `websocket` scope,
    `registry` holds `(method, path, started)` under a key of its own, and `completed` counts the
    calls that returned. Other scopes (lifespan) pass through untouched. This is the hot path: one
    dict insert, one delete and one increment per request, on the event loop thread only (other
    threads copy the values, tolerating changes)."""
    ids = itertools.count().__next__
    monotonic = time.monotonic

    async def tracked(scope, receive, send):
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            return await app(scope, receive, send)
        key = ids()
        registry[key] = (
            scope.get("method") or "WEBSOCKET",
            scope.get("path", "")[:PATH_LIMIT],
            monotonic(),
        )
        try:
            return await app(scope, receive, send)
        finally:
            del registry[key]
            completed.count += 1
            if completed.count == completed.report_at and completed.on_threshold is not None:
                completed.on_threshold()

    return tracked


def running_request_key(loop_thread: int, tracked_code):
    """The registry key of the request whose handler is running on the (blocked) event loop thread
    right now, or None: while a coroutine runs, the frames of the coroutines awaiting it are on the
    thread's stack, so the innermost `tracked` frame there is the one that holds the loop. Not
    found when the app runs the handler in a task of its own (e.g. Starlette's BaseHTTPMiddleware),
    or when the loop is blocked outside any request."""
    frame = sys._current_frames().get(loop_thread)
    depth = 0
    while frame is not None and depth < 1000:
        if frame.f_code is tracked_code:
            return frame.f_locals.get("key")
        frame = frame.f_back
        depth += 1
    return None


def in_flight_snapshot(registry: dict, now: float, running=None, limit: int = STALL_LISTED):
    """The requests in `registry` as `stalled` lists them, and how many there are: the one under
    key `running` first (marked `"blocking": true`), then HTTP requests oldest first, then WebSocket
    connections (long-lived by nature, they would hide the request that blocks), at most `limit`."""
    items = []
    for _ in range(5):  # the loop thread may change the dict while it is copied
        try:
            items = list(registry.items())
            break
        except RuntimeError:
            continue
    items.sort(key=lambda kv: (kv[0] != running, kv[1][0] == "WEBSOCKET", kv[1][2]))
    listed = []
    for key, (method, path, started) in items[:limit]:
        entry = {"method": method, "path": path, "age": round(max(0.0, now - started), 1)}
        if key == running:
            entry["blocking"] = True
        listed.append(entry)
    return listed, len(items)


class StallWatchdog:
    """A daemon thread that reports `stalled` while the event loop does not tick.

    The heartbeat task calls `tick` every interval. Every interval the thread looks at the time since
    the last tick; beyond STALL_INTERVALS intervals it sends one `stalled`. If its own wait overran
    by more than half an interval, the whole process was not running (stopped, starved, the GIL
    held): the loop's silence is not the loop's doing, so that round reports nothing, and the loop
    gets an interval to tick after the process runs again."""

    def __init__(self, channel: Channel, interval: float, registry: dict, tracked_app) -> None:
        self.channel = channel
        self.interval = interval
        self.registry = registry
        self.tracked_code = tracked_app.__code__  # the frames to look for on the loop's stack
        self.loop_thread = None
        self.last_tick = time.monotonic()
        self._stop = threading.Event()
        self._thread = None

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def start(self) -> None:
        """Called from the event loop thread."""
        if self._thread is None:
            self.loop_thread = threading.get_ident()
            self.last_tick = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="herdsman-stall-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.interval
        limit = STALL_INTERVALS * interval
        monotonic = time.monotonic
        try:
            while True:
                before = monotonic()
                if self._stop.wait(interval):
                    return
                now = monotonic()
                if now - before > 1.5 * interval:
                    continue  # the process itself did not run: not the loop's silence
                silent = now - self.last_tick
                if silent <= limit:
                    continue
                running = running_request_key(self.loop_thread, self.tracked_code)
                listed, total = in_flight_snapshot(self.registry, now, running)
                if not self.channel.send_from_thread(
                    "stalled", silent=round(silent, 1), in_flight=listed, in_flight_total=total
                ):
                    return  # the master is gone, or the loop has finished
        except Exception as exc:  # never take the worker down; the heartbeats still tell the truth
            log.warning("stall watchdog stopped: %s: %s" % (type(exc).__name__, exc))


# --------------------------------------------------------------------------------------------------
# Serving


def graceful_shutdown_timeout(graceful_timeout: float) -> float:
    """uvicorn's timeout_graceful_shutdown for the master's graceful timeout.

    After SIGTERM uvicorn sleeps 0.1 s, waits up to timeout_graceful_shutdown for requests, cancels
    the rest, runs lifespan shutdown, and the interpreter then tears down (~0.1-0.2 s measured with
    uvloop). All of that must fit before the master's SIGKILL, so keep a margin of ~10% of the
    graceful timeout, at least 0.5 s and at most 1 s, plus uvicorn's 0.1 s sleep."""
    margin = min(1.0, max(0.5, 0.1 * graceful_timeout)) + 0.1
    return max(0.1, graceful_timeout - margin)


def make_server_class(uvicorn):
    import asyncio
    import logging

    class QuietCancelFilter(logging.Filter):
        """While the worker stops, a request cancelled on purpose (quick stop, graceful timeout)
        makes uvicorn log "Exception in ASGI application" with a CancelledError traceback per
        request. Drop those; the runtime logs one line with the count instead."""

        def __init__(self, server) -> None:
            super().__init__()
            self.server = server

        def filter(self, record) -> bool:
            exc = record.exc_info[0] if record.exc_info else None
            return not (
                self.server.should_exit
                and exc is not None
                and issubclass(exc, asyncio.CancelledError)
                and str(record.msg).startswith("Exception in ASGI application")
            )

    class HerdsmanServer(uvicorn.Server):
        """uvicorn.Server plus the herdsman contract: `ready` after startup, heartbeats from the
        event loop, `stopping`, SIGQUIT and channel end-of-file as quick stops, and no re-raise
        of the captured signal after serve() returns (uvicorn would kill the process with it)."""

        def __init__(self, config, channel: Channel, interface: str, heartbeat_interval: float,
                     graceful_timeout: float, app_spec: str, process_started: float,
                     in_flight: dict, completed: Completed) -> None:
            super().__init__(config)
            self.in_flight = in_flight  # filled by track_in_flight around the app
            self.completed = completed
            completed.on_threshold = self._send_heartbeat
            channel.on_message = self._on_master_message
            self.watchdog = StallWatchdog(channel, heartbeat_interval, in_flight, config.app)
            self.config_app_spec = app_spec
            self.process_started = process_started
            self.channel = channel
            self.interface = interface
            self.heartbeat_interval = heartbeat_interval
            self.graceful_timeout = graceful_timeout
            self.quick = False
            self.stop_reason = None
            self.stop_signame = None
            self.stop_requested_at = None
            self.stopping_sent = False
            self.lifespan_failed = False
            self.ready_at = None
            self._heartbeat_task = None
            self._lifespan_shut_down = False

        # -- stop requests (signal handler context: set flags only, the loop does the rest) --

        def handle_exit(self, sig, frame) -> None:
            # Replaces uvicorn's handler: it appends to _captured_signals (re-raised after serve,
            # which would kill the process with that signal) and treats a first SIGINT as graceful.
            name = signal.Signals(sig).name
            self.request_stop(quick=(sig != signal.SIGTERM), reason="signal", signame=name)

        def request_stop(self, quick: bool, reason: str, signame=None) -> None:
            if self.stop_reason is None:
                self.stop_reason = reason
                self.stop_signame = signame
                self.stop_requested_at = time.monotonic()
            self.should_exit = True
            if quick and not self.quick:
                self.quick = True
                # Makes uvicorn's shutdown stop waiting for connections and tasks at once (also
                # when a graceful shutdown is already under way: TERM then INT escalates).
                self.force_exit = True

        def _announce_stop(self) -> None:
            if self.stopping_sent or self.stop_reason is None:
                return
            self.stopping_sent = True
            what = self.stop_signame or self.stop_reason
            log.info("stopping (%s): %s" % (what, "quick" if self.quick else "graceful"))
            # After end-of-file the channel is marked gone and this sends nothing.
            self.channel.send("stopping", reason=self.stop_reason)

        # -- uvicorn hooks --

        async def startup(self, sockets=None) -> None:
            loop = asyncio.get_running_loop()
            self.channel.attach(loop, on_gone=self._on_master_gone)
            self._guard_lifespan_shutdown()
            logging.getLogger("uvicorn.error").addFilter(QuietCancelFilter(self))
            try:
                await super().startup(sockets=sockets)
            except SystemExit:
                # uvicorn 0.54 leaves startup with sys.exit(3) when lifespan startup failed.
                if getattr(self.lifespan, "should_exit", False):
                    self.lifespan_failed = True
                raise
            if self.started and not self.should_exit:
                self.ready_at = time.monotonic()
                self.channel.send("ready", interface=self.interface)
                log.info("ready: app %r (%s) served on %d listener(s), %.2fs after start"
                         % (self.config_app_spec, self.interface, len(sockets or ()),
                            self.ready_at - self.process_started))
                self._heartbeat_task = loop.create_task(self._heartbeat())
                self.watchdog.start()
            self._announce_stop()

        async def on_tick(self, counter: int) -> bool:
            self._announce_stop()
            return await super().on_tick(counter)

        async def shutdown(self, sockets=None) -> None:
            self._announce_stop()
            # uvicorn's shutdown: close the listeners, close idle connections, wait (up to
            # timeout_graceful_shutdown, or until force_exit) for requests, cancel what is left,
            # and run lifespan shutdown unless force_exit. A quick stop, requested now or in the
            # middle of a graceful one (TERM then INT), runs beside it: force_exit stops uvicorn's
            # waiting, and the quick-stop task cancels the requests and closes their connections
            # (on Python >= 3.12 with the asyncio loop, uvicorn's final server.wait_closed() waits
            # for every connection to close, so without this a quick stop would still drain).
            quick_stop = asyncio.ensure_future(self._quick_stop_when_requested())
            try:
                if not self.quick:
                    await self._stop_accepting_then_linger(sockets)
                await super().shutdown(sockets=sockets)
            finally:
                if self.quick:
                    await asyncio.wait([quick_stop], timeout=QUICK_EXIT_BUDGET)
                if not quick_stop.done():
                    quick_stop.cancel()
            # uvicorn skips lifespan shutdown under force_exit; the contract runs it on every stop.
            await self.lifespan.shutdown()
            if self.quick:
                _exit_soon(QUICK_EXIT_BUDGET)
            else:
                left = self.graceful_timeout - (time.monotonic() - (self.stop_requested_at or 0.0))
                _exit_soon(max(0.5, left - 0.1))

        async def _stop_accepting_then_linger(self, sockets) -> None:
            # uvicorn's shutdown closes the listeners and, in the same loop iteration, every
            # connection with no request cycle yet. A connection this worker has just accepted
            # but whose request bytes the loop has not read yet would be closed unanswered, and
            # its client (which never reused it, so cannot retry) sees a failed request. Stop
            # accepting first, then give such fresh connections a brief moment to deliver their
            # request: once read, it is in flight and uvicorn completes it. Bounded, and skipped
            # when no connection is waiting.
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            deadline = time.monotonic() + FRESH_CONNECTION_LINGER
            while time.monotonic() < deadline and not self.quick:
                fresh = [c for c in self.server_state.connections if getattr(c, "cycle", 0) is None]
                if not fresh:
                    return
                await asyncio.sleep(0.01)

        async def _quick_stop_when_requested(self) -> None:
            while not self.quick:
                await asyncio.sleep(0.05)
            # Let uvicorn's shutdown close the listeners and idle connections first (when the
            # quick stop was requested before shutdown began, it has not run yet).
            await asyncio.sleep(0)
            for connection in list(self.server_state.connections):
                connection.shutdown()  # idle: closed now; busy: no keep-alive after this response
            pending = self._cancel_requests()
            if pending:
                await asyncio.wait(pending, timeout=0.5)
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and not transport.is_closing():
                    transport.abort()

        # -- helpers --

        def _guard_lifespan_shutdown(self) -> None:
            original = self.lifespan.shutdown

            async def shutdown_once() -> None:
                if self._lifespan_shut_down:
                    return
                self._lifespan_shut_down = True
                await original()

            self.lifespan.shutdown = shutdown_once

        def _cancel_requests(self):
            pending = [t for t in self.server_state.tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                log.info("cancelled %d request(s) in flight" % len(pending))
            return pending

        def _on_master_gone(self) -> None:
            self.request_stop(quick=True, reason="master_gone")

        def _send_heartbeat(self) -> None:
            self.channel.send("heartbeat", requests=self.completed.count, in_flight=len(self.in_flight))

        def _on_master_message(self, message: dict) -> None:
            if message.get("type") == "report_at":
                requests = message.get("requests")
                if isinstance(requests, int) and requests > 0:
                    self.completed.report_at = requests
                    if self.completed.count >= requests:
                        self._send_heartbeat()
            else:
                log.debug("channel: ignoring message from master: %r" % (message,))

        async def _heartbeat(self) -> None:
            tick = self.watchdog.tick
            try:
                while True:
                    await asyncio.sleep(self.heartbeat_interval)
                    tick()
                    self._send_heartbeat()
            finally:
                # Cancelled as the loop closes: from here on its silence is not a stall.
                self.watchdog.stop()

    return HerdsmanServer


def serve(args, uvicorn, app, interface: str, channel: Channel, listeners, started: float) -> int:
    if interface == "wsgi":
        a2wsgi = import_a2wsgi()
        asgi_app = a2wsgi.WSGIMiddleware(app, workers=WSGI_THREADS)
    else:
        asgi_app = _shield_from_factory_guess(app)
    in_flight = {}
    completed = Completed()
    asgi_app = track_in_flight(asgi_app, in_flight, completed)

    config = uvicorn.Config(
        asgi_app,
        interface="asgi3",  # WSGI apps are wrapped by a2wsgi above
        lifespan="auto" if interface == "asgi" else "off",
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=graceful_shutdown_timeout(args.graceful_timeout),
        backlog=args.backlog,  # uvicorn re-listens on the inherited sockets with this
    )
    server_class = make_server_class(uvicorn)
    server = server_class(config, channel, interface, args.heartbeat_interval, args.graceful_timeout,
                          args.app, started, in_flight, completed)

    with _state.lock:
        if _state.phase != "boot":  # a stop signal arrived since the last check
            raise StopRequested("master_gone" if _state.master_gone else "signal", "signal")
        _state.server = server
        _state.phase = "serving"

    try:
        server.run(sockets=listeners)
    except SystemExit:
        if server.lifespan_failed:
            raise BootError(
                "lifespan",
                "lifespan startup of app %r failed (see the log above): fix the app's startup code"
                % args.app,
            ) from None
        raise
    finally:
        _state.phase = "done"
        server.watchdog.stop()
        channel.detach()
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# Entry point


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="herdsman_worker.py",
        description="herdsman worker runtime (started by the herdsman master; see docs/protocol.md)",
    )
    parser.add_argument("--app", required=True, help="MODULE:ATTR")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--interface", choices=("auto", "asgi", "wsgi"), default="auto")
    parser.add_argument("--listen-fd", type=int, action="append", required=True, dest="listen_fds")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--heartbeat-interval", type=positive_float, required=True)
    parser.add_argument("--graceful-timeout", type=non_negative_float, required=True)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--chdir")
    # uvicorn calls listen() again on every socket it serves, with its own backlog (2048 unless
    # told): without this the last worker to start would decide the backlog, not the master.
    parser.add_argument("--backlog", type=int, default=2048)
    # The zygote (spawn = "zygote"): --channel-fd is its control socket, --worker-id its generation.
    parser.add_argument("--zygote", action="store_true")
    parser.add_argument("--preload", action="store_true")
    return parser.parse_args(argv)


def _fix_sys_path() -> None:
    """The working directory first (as under gunicorn/uvicorn), and not the runtime's directory."""
    kept = []
    for entry in sys.path:
        try:
            resolved = os.path.realpath(entry or os.curdir)
        except (OSError, ValueError):
            resolved = entry
        if resolved == RUNTIME_DIR:
            continue
        kept.append(entry)
    sys.path[:] = [os.getcwd()] + [e for e in kept if e != os.getcwd()]


class Warm:
    """What a worker forked from the zygote finds already done: uvicorn imported, the working
    directory and sys.path set, and with --preload the app imported and its interface known."""

    def __init__(self, uvicorn, app=None, interface=None) -> None:
        self.uvicorn = uvicorn
        self.app = app
        self.interface = interface


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.zygote:
        return zygote_main(args)
    return worker_main(args, time.monotonic(), None)


def worker_main(args, started: float, warm) -> int:
    """A worker's whole life: an exec'd one (`warm` is None) or one forked from the zygote."""
    log.configure(args.worker_id, args.log_level)

    _install_signal_handlers()
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR2, all_threads=True, chain=False)

    channel = Channel(args.channel_fd)
    listeners = []
    try:
        for fd in args.listen_fds:
            os.set_inheritable(fd, False)  # the app's subprocesses must not hold the listeners
            listeners.append(socket.socket(fileno=fd))

        if warm is None:
            uvicorn, dependency_error = import_uvicorn()
        else:
            uvicorn, dependency_error = warm.uvicorn, None
        channel.send(
            "hello",
            pid=os.getpid(),
            python="%d.%d.%d" % sys.version_info[:3],
            engine=("uvicorn %s" % uvicorn.__version__) if uvicorn is not None else None,
        )
        if channel.gone:
            log.info("master gone before the app was imported: exiting")
            return EXIT_OK
        if dependency_error is not None:
            raise dependency_error
        _watch_channel_while_booting(args.channel_fd)

        if warm is None:
            _enter_directory(args.chdir)

        if warm is not None and warm.app is not None:
            app, interface = warm.app, warm.interface
        else:
            app = load_app(args.app, args.factory)
            interface = resolve_interface(app, args.interface, args.app)
        log.debug("app %r loaded in %.3fs, interface %s" % (args.app, time.monotonic() - started, interface))
        return serve(args, uvicorn, app, interface, channel, listeners, started)

    except BootError as exc:
        _state.phase = "done"
        channel.send("boot_error", kind=exc.kind, message=exc.message)
        # A missing dependency is the same for every worker: the master says it once. Say it
        # here only if the master did not get the message.
        if exc.kind != "dependency" or channel.gone:
            log.error("cannot start: %s" % exc.message)
        return EXIT_CODES[exc.kind]

    except StopRequested as stop:
        _state.phase = "done"
        log.info("stopping (%s) before the app was ready" % (stop.signame if stop.reason == "signal" else stop.reason))
        if stop.reason != "master_gone":
            channel.send("stopping", reason=stop.reason)
        return EXIT_OK


def _enter_directory(chdir) -> None:
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise BootError("import", "cannot change to directory %r: %s" % (chdir, exc.strerror))
    _fix_sys_path()


# --------------------------------------------------------------------------------------------------
# The zygote (spawn = "zygote", docs/zygote.md)
#
# One per generation, started by the master like a worker but with --zygote, the listeners at 3..
# and a control socket where a worker's channel would be. It imports uvicorn (and with --preload
# the app), freezes the garbage collector so the pages stay shared, then says `zygote_ready` and
# forks a worker for every `fork` request. It starts no thread and no event loop: a fork copies
# only the calling thread.
#
# A fork request carries the new worker's channel (and, when the master wants the worker's output
# elsewhere than the zygote's, the fd for its stdout and stderr) by SCM_RIGHTS. The zygote forks
# an intermediate child that forks the worker and exits at once; the zygote reaps the
# intermediate. The worker, orphaned, is reparented to the master (a child subreaper): it is the
# master's child, reaped and signalled by it like an exec'd worker. The worker waits for that
# (bounded), sets PR_SET_PDEATHSIG, puts its fds in place and continues into worker_main.

ZYGOTE_MAX_FDS = 4
# How long a forked worker waits to be reparented to the master before giving up (the
# intermediate exits right after the fork, so this is normally well under a millisecond).
REPARENT_WAIT = 2.0
EXIT_ORPHANED = 1
PR_SET_PDEATHSIG = 1


class BecomeWorker(BaseException):
    """Raised in a freshly forked worker: unwinds the zygote's stack up to zygote_main, which
    then runs the worker's life. Never caught by the zygote's own code."""

    def __init__(self, worker_args, started: float) -> None:
        super().__init__("become worker %s" % worker_args.worker_id)
        self.worker_args = worker_args
        self.started = started


def zygote_main(args) -> int:
    log.configure(args.worker_id, args.log_level, role="zygote")
    control = socket.socket(fileno=args.channel_fd)
    control.settimeout(BOOT_SEND_TIMEOUT)
    master_pid = os.getppid()
    try:
        warm = _zygote_warm_up(args)
    except BootError as exc:
        _zygote_send(control, "boot_error", kind=exc.kind, message=exc.message)
        log.error("cannot start: %s" % exc.message)
        return EXIT_CODES[exc.kind]
    try:
        return _zygote_serve(args, control, master_pid, warm)
    except BecomeWorker as become:
        return worker_main(become.worker_args, become.started, warm)


def _zygote_warm_up(args) -> Warm:
    started = time.monotonic()
    uvicorn, dependency_error = import_uvicorn()
    if dependency_error is not None:
        raise dependency_error
    _warm_engine()
    _enter_directory(args.chdir)
    warm = Warm(uvicorn)
    if args.preload:
        warm.app = load_app(args.app, args.factory)
        warm.interface = resolve_interface(warm.app, args.interface, args.app)
        if warm.interface == "wsgi":
            import_a2wsgi()
    import ctypes  # for prctl in the forked workers

    ctypes.CDLL(None, use_errno=True)
    # Everything imported so far is shared copy-on-write with the workers; a collection in a
    # worker would write to every object's header and unshare the pages. Frozen objects are never
    # collected.
    gc.collect()
    gc.freeze()
    log.info("ready: uvicorn %s imported%s in %.2fs; %d objects frozen"
             % (uvicorn.__version__, ", app %r preloaded" % args.app if args.preload else "",
                time.monotonic() - started, gc.get_freeze_count()))
    return warm


def _warm_engine() -> None:
    """Import what uvicorn would import lazily in every worker (protocol implementations, the
    lifespan handler, the event loop): best effort, each is optional."""
    import asyncio  # noqa: F401
    import importlib

    # Not the WebSocket implementations: which one uvicorn picks depends on its version and what is
    # installed, and importing a deprecated one warns.
    for name in ("uvicorn.lifespan.on", "uvicorn.protocols.http.h11_impl",
                 "uvicorn.protocols.http.httptools_impl", "uvicorn.loops.uvloop", "uvloop"):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _zygote_send(control, type_: str, **fields) -> None:
    message = {"type": type_}
    message.update(fields)
    try:
        control.sendall((json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8"))
    except OSError as exc:
        log.debug("control: send failed: %s" % (exc,))


def _zygote_serve(args, control, master_pid: int, warm: Warm) -> int:
    _zygote_send(control, "zygote_ready", pid=os.getpid(), preloaded=bool(args.preload))
    control.settimeout(None)
    buffered = b""
    fds = []
    while True:
        try:
            data, received, _flags, _addr = socket.recv_fds(control, 65536, ZYGOTE_MAX_FDS)
        except InterruptedError:
            continue
        except OSError as exc:
            log.debug("control: receive failed: %s" % (exc,))
            return EXIT_OK
        fds.extend(received)
        if not data:
            log.debug("control: master gone, exiting")
            return EXIT_OK
        buffered += data
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict) or message.get("type") != "fork":
                log.debug("control: ignoring %r" % (line[:200],))
                continue
            wanted = 2 if message.get("output") else 1
            taken, fds = fds[:wanted], fds[wanted:]
            _zygote_fork(args, control, master_pid, message.get("worker_id"), taken)


def _zygote_fork(args, control, master_pid: int, worker_id, fds) -> None:
    if not isinstance(worker_id, int) or not fds:
        for fd in fds:
            os.close(fd)
        _zygote_send(control, "fork_failed", worker_id=worker_id, error="malformed fork request")
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the worker would write the zygote's buffered output again
        except Exception:
            pass
    try:
        pid = _double_fork(args, control, master_pid, worker_id, fds)
    except OSError as exc:
        _zygote_send(control, "fork_failed", worker_id=worker_id, error=str(exc))
        return
    finally:
        for fd in fds:
            os.close(fd)
    if pid is None:
        _zygote_send(control, "fork_failed", worker_id=worker_id, error="the intermediate process failed")
    else:
        _zygote_send(control, "forked", worker_id=worker_id, pid=pid)


def _double_fork(args, control, master_pid: int, worker_id: int, fds):
    """Returns the worker's pid (None if the intermediate failed); in the worker, raises
    BecomeWorker."""
    read_end, write_end = os.pipe()
    try:
        intermediate = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if intermediate == 0:
        try:
            os.close(read_end)
            worker = os.fork()
        except BaseException:
            os._exit(1)
        if worker == 0:
            os.close(write_end)
            started = time.monotonic()
            _become_worker(args, control, master_pid, fds)
            worker_args = argparse.Namespace(**vars(args))
            worker_args.zygote = False
            worker_args.worker_id = str(worker_id)
            raise BecomeWorker(worker_args, started)
        try:
            os.write(write_end, worker.to_bytes(4, "little"))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = b""
        while len(data) < 4:
            chunk = os.read(read_end, 4 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(intermediate, 0)
    return int.from_bytes(data, "little") if len(data) == 4 else None


def _become_worker(args, control, master_pid: int, fds) -> None:
    """In the forked worker, before anything else: become the master's child, die with it, and
    hold exactly the fds of an exec'd worker. Exits at once if the master is gone."""
    deadline = time.monotonic() + REPARENT_WAIT
    while os.getppid() != master_pid:
        if time.monotonic() >= deadline:
            os._exit(EXIT_ORPHANED)
        time.sleep(0.0001)
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:  # the master died before prctl
        os._exit(EXIT_ORPHANED)
    os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    channel_fd, output_fd = fds[0], (fds[1] if len(fds) > 1 else None)
    control.detach()  # its fd number becomes the worker's channel below
    if output_fd is not None:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
    os.dup2(channel_fd, args.channel_fd)
    os.close(channel_fd)
    del fds[:]  # closed here; the zygote closes its own copies
    if "random" in sys.modules:
        sys.modules["random"].seed()  # also done by Python's own at-fork hook; cheap to be sure


if __name__ == "__main__":
    sys.exit(main())
