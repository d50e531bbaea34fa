"""The native engine: herdsman's own HTTP/1.1 server (a Rust extension module, engine/ in the
repository) serving a WSGI app on a pool of Python threads, or an ASGI app on the main thread's
asyncio loop (native_asgi.py: lifespan, the loop, the request tasks). This adapter keeps the worker contract
in Python, as the uvicorn adapter does: `ready` once the engine serves, heartbeats from an asyncio
loop on the main thread with the engine's counters, the stall watchdog, `stopping`, the keep-alive
drain on a graceful stop (the engine closes each connection after its request, or once idle) within
the graceful timeout, quick stops, and the master's messages (`report_at`, `quarantine`,
`reopen_logs`, `retire`).

The request path is all in the engine: the GIL is taken only to call the app (for ASGI, to run
the loop's callbacks and the app's tasks). The engine's threads
(its tokio runtime) start in `Server.start`, after any fork from the zygote.
"""

import asyncio
import importlib.machinery
import importlib.util
import os
import signal
import sys
import threading
import time

from .. import lifecycle
from ..consts import EXIT_OK, QUICK_EXIT_BUDGET
from ..drain import IDLE_WINDOW
from ..errors import BootError, StopRequested
from ..inflight import StallWatchdog
from ..lifecycle import exit_soon
from ..log import log
from ..readiness import probe_asgi
from . import native_asgi
from .uvicorn import graceful_shutdown_timeout, lifespan_mode
from .uvicorn_ws import GOING_AWAY, SERVICE_RESTART

# How long the worker's exit waits for the access log's last lines and the engine thread.
CLOSE_WAIT = 1.0
# The engine thread counts as silent past this many heartbeat intervals without a tick; the
# heartbeat is then withheld, so the master judges the worker by its silence.
ENGINE_SILENT_INTERVALS = 2
# How long a quick stop lets open WebSockets send their close frames.
WEBSOCKET_CLOSE_WAIT = 0.25


def load_engine(path):
    """The extension module at `path` (the master found it: --engine-lib), or a BootError."""
    if not path:
        raise BootError("dependency", "the native engine's library was not given (--engine-lib): "
                        "the master passes it; run the worker through herdsman")
    try:
        loader = importlib.machinery.ExtensionFileLoader("_engine", path)
        spec = importlib.util.spec_from_file_location("_engine", path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
    except (ImportError, OSError) as exc:
        raise BootError("dependency", "cannot load the native engine %s: %s (rebuild herdsman with "
                        "`cargo build --release`, or reinstall the wheel)" % (path, exc)) from None
    return module


class _Registry:
    """The engine's in-flight list as the stall watchdog reads a registry: `items()` of
    `key -> (method, path, started)`."""

    def __init__(self, server) -> None:
        self.server = server

    def items(self):
        now = time.monotonic()
        return [(i, (method, path, now - age)) for i, (method, path, age) in enumerate(self.server.in_flight())]

    def __len__(self) -> int:
        return self.server.stats()[1]


def _log_from_engine(level, message, traceback=None) -> None:
    if traceback:
        log.write(level, message, traceback=traceback)
    else:
        log.write(level, message)


def tls_options(args) -> dict:
    """The engine's TLS arguments from the worker argv; none without --certfile."""
    if not getattr(args, "certfile", None):
        return {}
    return {"certfile": args.certfile, "keyfile": args.keyfile, "ca_certs": args.ca_certs,
            "cert_reqs": args.cert_reqs, "ciphers": args.ciphers,
            "tls_min_version": args.tls_min_version}


def http_options(args) -> dict:
    """The engine's HTTP version and HTTP/2 arguments from the worker argv; the engine's own
    defaults (the master's) for those an argv made by hand leaves out."""
    names = ("http", "http2_max_concurrent_streams", "http2_initial_stream_window_size",
             "http2_initial_connection_window_size", "http2_max_header_list_size",
             "http2_keep_alive_interval")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


class NativeServer(lifecycle.StopRequests):
    """The worker's side of one engine Server, on the main thread's asyncio loop."""

    def __init__(self, args, engine, app, channel, listeners, interface="wsgi", probed=None) -> None:
        if not getattr(args, "threads", None):
            args.threads = 1  # the master always says; by hand, one
        self.args = args
        self.channel = channel
        self.listeners = listeners
        self.interface = interface
        self.notify_r, notify_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        asgi_w = -1
        self.requests = self.lifespan = None
        if interface == "asgi":
            asgi_r, asgi_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self.lifespan = native_asgi.Lifespan(app, lifespan_mode(args, interface), args.app)
            self.probed = probed or app
        try:
            self.server = engine.Server(
                app, [sock.fileno() for sock in listeners],
                log=_log_from_engine, errors=sys.stderr, threads=args.threads,
                notify_fd=notify_w, inflight_fd=getattr(args, "inflight_fd", None),
                access_log=args.access_log_file, access_log_format=args.access_log_format,
                keep_alive=args.keep_alive, drain_idle=IDLE_WINDOW,
                limit_request_line=args.limit_request_line,
                limit_request_fields=args.limit_request_fields,
                limit_request_field_size=args.limit_request_field_size,
                root_path=args.root_path,
                **tls_options(args),
                # The uvicorn engine's proxy headers, from the same variable and default.
                forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
                worker_connections=args.worker_connections,
                proxy_allow_from=args.proxy_allow_from if args.proxy_protocol else None,
                interface=interface, asgi_fd=asgi_w,
                **http_options(args),
            )
        except engine.TlsError as exc:
            if asgi_w >= 0:
                os.close(asgi_r)
            raise BootError("tls", "cannot set TLS up: %s: check that the workers' user can read "
                            "the files and that they are the ones `herdsman check` accepted" % exc) from None
        finally:
            os.close(notify_w)
            if asgi_w >= 0:
                os.close(asgi_w)
        if interface == "asgi":
            self.requests = native_asgi.Requests(self.server, app, asgi_r)
        self.retiring = False
        self._init_stop()
        self.done = None  # an asyncio.Event once the loop runs
        self.wake = None  # set on a stop request, to end the wait in main()
        self.watchdog = StallWatchdog(channel, args.heartbeat_interval, _Registry(self.server), None)

    # -- stop requests (lifecycle.StopRequests: a signal handler, or the channel) --

    def request_stop(self, quick: bool, reason: str, signame=None) -> None:
        self._note_stop(quick, reason, signame)
        if self.wake is not None:
            self.wake.set()

    # -- the loop --

    def run(self) -> int:
        if self.interface == "asgi":
            with asyncio.Runner(loop_factory=native_asgi.new_event_loop) as runner:
                runner.run(self.main())
        else:
            asyncio.run(self.main())
        return EXIT_OK

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        self.done = asyncio.Event()
        self.wake = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        self.channel.attach(loop, on_gone=lambda: self.request_stop(True, "master_gone"))
        self.channel.on_message = self._on_master_message
        loop.add_reader(self.notify_r, self._on_notify)
        try:
            if self.requests is not None:
                await self._asgi_startup(loop)
            self.server.start()
            for sock in self.listeners:
                sock.close()  # the engine serves its own duplicates
            if self.requests is None:
                for i in range(self.args.threads):
                    threading.Thread(target=self.server.run_thread, name="herdsman-wsgi-%d" % i, daemon=True).start()
            if self.stop_reason is None:
                self.channel.send("ready", interface=self.interface)
                if self.requests is None:
                    log.debug("ready: app %r (wsgi, native engine, %d thread(s))" % (self.args.app, self.args.threads))
                else:
                    log.debug("ready: app %r (asgi, native engine, %s loop)" % (self.args.app, type(loop).__module__))
                self.watchdog.start()
                heartbeat = loop.create_task(self._heartbeat())
            else:
                heartbeat = None
            if self.stop_reason is None:
                await self.wake.wait()
            await self._stop()
            if heartbeat is not None:
                heartbeat.cancel()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
                loop.remove_signal_handler(sig)
            lifecycle.install_signal_handlers()
            loop.remove_reader(self.notify_r)
            if self.requests is not None:
                self.requests.detach()
            self.watchdog.stop()
            self._drain_engine_logs()

    async def _asgi_startup(self, loop) -> None:
        """Lifespan startup, the readiness probe, then the engine's bridge to this loop."""
        await self.lifespan.startup()
        if self.args.ready_path:
            try:
                code = await probe_asgi(self.probed, self.args.ready_path, self.args.root_path,
                                        state=self.lifespan.state)
                log.debug("readiness probe answered %d" % code)
            except BootError:
                await self.lifespan.shutdown()
                raise
        state = self.lifespan.state if self.lifespan.running or self.lifespan.state else None
        self.server.asgi_start(loop, state)
        self.requests.attach(loop)

    async def _stop(self) -> None:
        self._announce_stop()
        # No more accepting first: a WebSocket client told to go away reconnects at once, and
        # must reach another worker, not this one again.
        self.server.drain()
        if self.requests is not None:
            # As the uvicorn engine: 1012 (service restart) when the worker is replaced, 1001
            # (going away) when the server stops; on a quick stop the close frames get a moment.
            if self.server.close_websockets(SERVICE_RESTART if self.retiring else GOING_AWAY) and self.quick:
                deadline = time.monotonic() + WEBSOCKET_CLOSE_WAIT
                while self.server.stats()[1] and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
        if not self.quick:
            deadline = self.stop_requested_at + graceful_shutdown_timeout(self.args.graceful_timeout)
            while not self.done.is_set() and not self.quick:
                self.wake.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # The engine's done, or a new stop request (TERM then INT escalates).
                waits = [asyncio.ensure_future(self.done.wait()), asyncio.ensure_future(self.wake.wait())]
                _, pending = await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for waiting in pending:
                    waiting.cancel()
            if not self.done.is_set():
                in_flight = self.server.stats()[1]
                if in_flight and not self.quick:
                    log.info("graceful timeout: closing %d request(s) still in flight" % in_flight)
        self.server.abort()
        if self.requests is not None:
            self.requests.cancel_all()  # their connections are closed: nobody reads the answer
        try:
            await asyncio.wait_for(self.done.wait(), QUICK_EXIT_BUDGET)
        except asyncio.TimeoutError:
            pass
        if self.lifespan is not None:
            # As under uvicorn, lifespan shutdown runs on every stop, quick ones too.
            budget = QUICK_EXIT_BUDGET if self.quick else max(
                QUICK_EXIT_BUDGET, self.stop_requested_at + self.args.graceful_timeout - time.monotonic() - 0.1)
            try:
                await asyncio.wait_for(self.lifespan.shutdown(), budget)
            except asyncio.TimeoutError:
                log.warning("lifespan shutdown did not complete within %.1fs" % budget)
        exit_soon(QUICK_EXIT_BUDGET)

    def _on_notify(self) -> None:
        try:
            data = os.read(self.notify_r, 64)
        except (BlockingIOError, InterruptedError):
            return
        if b"r" in data:
            self._send_heartbeat()
        if b"d" in data:
            self.done.set()

    async def _heartbeat(self) -> None:
        # As the uvicorn adapter: tick the watchdog every interval, tell the master when the
        # counts changed or once per idle interval; withheld while the engine thread is silent.
        interval = self.args.heartbeat_interval
        idle = max(interval, self.args.idle_heartbeat_interval or 0.0)
        sent_at, sent = time.monotonic(), None
        while True:
            await asyncio.sleep(interval)
            self.watchdog.tick()
            self._drain_engine_logs()
            completed, in_flight, _connections, dropped, silent = self.server.stats()
            if silent > ENGINE_SILENT_INTERVALS * interval + 0.2:
                continue
            now = time.monotonic()
            counts = (completed, in_flight, dropped)
            if counts != sent or now - sent_at >= idle:
                self._send_heartbeat()
                sent_at, sent = now, counts

    def _send_heartbeat(self) -> None:
        completed, in_flight, _connections, dropped, _silent = self.server.stats()
        if self.args.access_log_file is None:
            self.channel.send("heartbeat", requests=completed, in_flight=in_flight)
        else:
            self.channel.send("heartbeat", requests=completed, in_flight=in_flight, access_log_dropped=dropped)

    def _drain_engine_logs(self) -> None:
        for level, message in self.server.take_logs():
            log.write(level, message)

    def _on_master_message(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "reopen_logs":
            self.server.reopen_logs()
        elif kind == "retire":
            self.retiring = True
        elif kind == "report_at":
            requests = message.get("requests")
            if isinstance(requests, int) and requests > 0:
                self.server.set_report_at(requests)
        elif kind == "quarantine":
            requests = message.get("requests")
            if isinstance(requests, list):
                self.server.set_quarantined([r for r in requests if isinstance(r, str)])
        else:
            log.debug("channel: ignoring message from master: %r" % (message,))

    def close(self) -> None:
        self.server.close(CLOSE_WAIT)
        os.close(self.notify_r)
        if self.requests is not None:
            os.close(self.requests.pipe_r)


def serve(args, engine, app, interface: str, channel, listeners, started: float, probed=None) -> int:
    native = NativeServer(args, engine, app, channel, listeners, interface, probed)
    with lifecycle.state.lock:
        if lifecycle.state.phase != "boot":  # a stop signal arrived since the last check
            native.close()
            raise StopRequested("master_gone" if lifecycle.state.master_gone else "signal", "signal")
        lifecycle.state.server = native
        lifecycle.state.phase = "serving"
    try:
        return native.run()
    finally:
        lifecycle.state.phase = "done"
        native.close()
        channel.detach()
        native._send_heartbeat()  # the last count, for the master's "worker exited" record
