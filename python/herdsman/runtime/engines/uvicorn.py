"""The uvicorn engine: uvicorn.Server subclassed to keep the herdsman contract, with WSGI apps
served through a2wsgi's thread pool.

The subclass reaches into uvicorn's internals in a few places (`servers`, `server_state`,
a connection's `cycle`, `client` and `shutdown()`, `lifespan`, `http_protocol_class`), each named
where it is used. The runtime accepts connections itself (uvicorn_accept.py: worker_connections,
the PROXY protocol) and applies proxy headers itself (proxy.py, the native engine's rules).
"""

import asyncio
import functools
import logging
import ssl
import os
import sys
import time

from .. import lifecycle, readiness
from ..accessformat import compile_format
from ..accesslog import AccessLog
from ..appload import import_a2wsgi, shield_from_factory_guess
from ..channel import Channel
from ..consts import EXIT_OK, QUICK_EXIT_BUDGET, WSGI_THREADS
from ..drain import TICK, Drain
from ..errors import BootError, StopRequested
from .. import inflightfile
from ..inflight import Completed, StallWatchdog, track_in_flight
from ..lifecycle import exit_soon
from ..limits import limit_requests
from ..log import log, logging_config
from ..proxy import Trusted, proxy_headers
from . import uvicorn_accept, uvicorn_head
from .uvicorn_ws import GOING_AWAY, SERVICE_RESTART, close_websocket, is_websocket


def graceful_shutdown_timeout(graceful_timeout: float) -> float:
    """uvicorn's timeout_graceful_shutdown for the master's graceful timeout.

    After SIGTERM uvicorn sleeps 0.1 s, waits up to timeout_graceful_shutdown for requests, cancels
    the rest, runs lifespan shutdown, and the interpreter then tears down (~0.1-0.2 s measured with
    uvloop). All of that must fit before the master's SIGKILL, so keep a margin of ~10% of the
    graceful timeout, at least 0.5 s and at most 1 s, plus uvicorn's 0.1 s sleep."""
    margin = min(1.0, max(0.5, 0.1 * graceful_timeout)) + 0.1
    return max(0.1, graceful_timeout - margin)


def make_server_class(uvicorn):
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

    class HerdsmanServer(lifecycle.StopRequests, uvicorn.Server):
        """uvicorn.Server plus the herdsman contract: `ready` after startup, heartbeats from the
        event loop, `stopping`, SIGQUIT and channel end-of-file as quick stops, and no re-raise
        of the captured signal after serve() returns (uvicorn would kill the process with it)."""

        def __init__(self, config, channel: Channel, interface: str, heartbeat_interval: float,
                     graceful_timeout: float, app_spec: str, process_started: float,
                     in_flight: dict, completed: Completed, drain: Drain) -> None:
            super().__init__(config)
            self.drain = drain
            self.access = None  # the AccessLog, when there is one
            self.retiring = False  # the master said `retire` before its SIGTERM
            self.idle_heartbeat_interval = None  # set by serve(): --idle-heartbeat-interval
            self.quarantined = None  # the set inflightfile.recorder checks, when there is one
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
            self._init_stop()
            self.lifespan_failed = False
            self.ready_probe = None  # readiness.probe_asgi for the app, with ready_path
            self.ready_error = None  # the BootError of a failed probe
            self.ready_at = None
            self._heartbeat_task = None
            self._lifespan_shut_down = False
            self.worker_connections = 1000  # set by serve(): --worker-connections
            self.proxy_from = None  # set by serve(): proxy.Trusted with --proxy-protocol

        # -- stop requests (lifecycle.StopRequests; its handle_exit replaces uvicorn's, which
        # appends to _captured_signals, re-raised after serve to kill the process with that
        # signal, and treats a first SIGINT as graceful) --

        def request_stop(self, quick: bool, reason: str, signame=None) -> None:
            self.should_exit = True
            if self._note_stop(quick, reason, signame):
                # Makes uvicorn's shutdown stop waiting for connections and tasks at once (also
                # when a graceful shutdown is already under way: TERM then INT escalates).
                self.force_exit = True

        # -- uvicorn hooks --

        async def startup(self, sockets=None) -> None:
            loop = asyncio.get_running_loop()
            self.channel.attach(loop, on_gone=self._on_master_gone)
            self._guard_lifespan_shutdown()
            logging.getLogger("uvicorn.error").addFilter(QuietCancelFilter(self))
            try:
                # Lifespan startup only: no listeners (`sockets=[]`), the acceptors below serve
                # them, so that accepting can pause at worker_connections.
                await super().startup(sockets=[])
            except SystemExit:
                # uvicorn 0.54 leaves startup with sys.exit(3) when lifespan startup failed.
                if getattr(self.lifespan, "should_exit", False):
                    self.lifespan_failed = True
                raise
            if self.started and not self.should_exit and self.ready_probe is not None:
                try:
                    code = await self.ready_probe(state=self.lifespan.state)
                    log.debug("readiness probe answered %d" % code)
                except BootError as exc:
                    # Not ready: uvicorn's shutdown runs (lifespan shutdown included), then
                    # serve() reports the boot error.
                    self.ready_error = exc
                    self.should_exit = True
            if self.started and not self.should_exit:
                self.servers = uvicorn_accept.start(
                    loop, sockets or [], self._create_protocol, self.server_state,
                    self.worker_connections, self.config.backlog, self.proxy_from,
                    self.config.ssl if self.config.is_ssl else None)
                self.ready_at = time.monotonic()
                self.channel.send("ready", interface=self.interface)
                log.debug("ready: app %r (%s) served on %d listener(s), %.2fs after start"
                         % (self.config_app_spec, self.interface, len(sockets or ()),
                            self.ready_at - self.process_started))
                if self.access is not None:
                    self.access.start(loop)
                self._heartbeat_task = loop.create_task(self._heartbeat())
                self.watchdog.start()
            self._announce_stop()

        def _create_protocol(self, _loop=None):
            # What uvicorn's startup makes for create_server (uvicorn internal:
            # `config.http_protocol_class` and its keyword arguments).
            config = self.config
            # With the head bounds (uvicorn_head.py; the class is made once).
            protocol_class = uvicorn_head.bounded(config.http_protocol_class)
            return protocol_class(config=config, server_state=self.server_state,
                                              app_state=self.lifespan.state, _loop=_loop)

        async def _close_acceptors(self) -> None:
            # Before any listening socket is closed: the accept call must have let go of it.
            for server in self.servers:
                server.close()
            for server in self.servers:
                await server.wait_closed()

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
                await self._close_acceptors()
                if not self.quick:
                    await self._stop_accepting_then_drain(sockets)
                self._close_websockets()
                await super().shutdown(sockets=sockets)
            finally:
                if self.quick:
                    await asyncio.wait([quick_stop], timeout=QUICK_EXIT_BUDGET)
                if not quick_stop.done():
                    quick_stop.cancel()
            # uvicorn skips lifespan shutdown under force_exit; the contract runs it on every stop.
            await self.lifespan.shutdown()
            if self.quick:
                exit_soon(QUICK_EXIT_BUDGET)
            else:
                left = self.graceful_timeout - (time.monotonic() - (self.stop_requested_at or 0.0))
                exit_soon(max(0.5, left - 0.1))

        async def _stop_accepting_then_drain(self, sockets) -> None:
            # The keep-alive drain (drain.py). uvicorn's own shutdown would close every idle
            # connection at once, losing a request a client is writing on it: stop accepting,
            # then close each connection only after a response that said `Connection: close`, or
            # once it has been idle for the drain's window. uvicorn internals used: `servers`,
            # `server_state.connections`, an HTTP connection's `cycle` (None before its first
            # request; `response_started`, `response_complete`, `keep_alive`) and `shutdown()`.
            await self._close_acceptors()
            for sock in sockets or []:
                sock.close()
            drain = self.drain
            drain.active = True
            for connection in self._http_connections():
                cycle = connection.cycle
                if cycle is not None and not cycle.response_started:
                    cycle.keep_alive = False  # uvicorn adds `Connection: close` and closes after
            deadline = self._requests_deadline()
            while not self.quick:
                now = time.monotonic()
                connections = self._http_connections()
                if not connections or now >= deadline:
                    break
                for connection in connections:
                    cycle = connection.cycle
                    transport = getattr(connection, "transport", None)
                    if transport is not None and transport.is_closing():
                        # Closed by us. Over TLS, asyncio has sent close_notify and waits up to
                        # 30 s for the client's; a client that has not answered within the
                        # window is not reading: drop the connection.
                        if drain.idle_expired(connection, _CLOSING, now):
                            transport.abort()
                    elif cycle is not None and not cycle.response_complete:
                        drain.busy(connection)
                    elif drain.idle_expired(connection, cycle, now):
                        connection.shutdown()  # idle: uvicorn closes it now
                drain.keep_only(connections)
                await asyncio.sleep(TICK)
            # uvicorn's shutdown then waits for what is still running, within what is left.
            self.config.timeout_graceful_shutdown = max(0.1, deadline - time.monotonic())

        def _close_websockets(self) -> None:
            # Once the HTTP drain is over (so an exchange in progress had that long to finish):
            # 1012 (service restart) to a worker being replaced, 1001 (going away) on a stop.
            code = SERVICE_RESTART if self.retiring else GOING_AWAY
            for connection in list(self.server_state.connections):
                if is_websocket(connection):
                    close_websocket(connection, code)

        def _http_connections(self):
            return [c for c in self.server_state.connections if hasattr(c, "cycle")]

        def _requests_deadline(self) -> float:
            """When requests still running must be given up, so that lifespan shutdown and the
            exit fit before the master's SIGKILL."""
            started = self.stop_requested_at or time.monotonic()
            return started + graceful_shutdown_timeout(self.graceful_timeout)

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
            if self.access is None:
                self.channel.send("heartbeat", requests=self.completed.count, in_flight=len(self.in_flight))
            else:
                self.channel.send("heartbeat", requests=self.completed.count, in_flight=len(self.in_flight),
                                  access_log_dropped=self.access.dropped)

        def _on_master_message(self, message: dict) -> None:
            kind = message.get("type")
            if kind == "reopen_logs":
                if self.access is not None:
                    self.access.reopen()
            elif kind == "retire":
                self.retiring = True  # replaced, not the whole server stopping
            elif kind == "report_at":
                requests = message.get("requests")
                if isinstance(requests, int) and requests > 0:
                    self.completed.report_at = requests
                    if self.completed.count >= requests:
                        self._send_heartbeat()
            elif kind == "quarantine":
                requests = message.get("requests")
                if self.quarantined is not None and isinstance(requests, list):
                    self.quarantined.clear()
                    self.quarantined.update(r for r in requests if isinstance(r, str))
            else:
                log.debug("channel: ignoring message from master: %r" % (message,))

        async def _heartbeat(self) -> None:
            # The loop ticks the watchdog every interval (so a blocked loop is reported within
            # two), but tells the master only when its counts changed, or once per idle interval:
            # an idle worker wakes the master every few seconds, not every second.
            tick = self.watchdog.tick
            monotonic = time.monotonic
            idle = max(self.heartbeat_interval, self.idle_heartbeat_interval or 0.0)
            sent_at, sent = monotonic(), None
            try:
                while True:
                    await asyncio.sleep(self.heartbeat_interval)
                    tick()
                    now = monotonic()
                    counts = (self.completed.count, len(self.in_flight),
                              self.access.dropped if self.access is not None else 0)
                    if counts != sent or now - sent_at >= idle:
                        self._send_heartbeat()
                        sent_at, sent = now, counts
            finally:
                # Cancelled as the loop closes: from here on its silence is not a stall.
                self.watchdog.stop()

    return HerdsmanServer


# The drain's marker for a connection it has closed (idle_expired counts from its first sight).
_CLOSING = object()


def lifespan_mode(args, interface: str) -> str:
    """uvicorn's `lifespan` for this app: as configured for ASGI, off for WSGI (no lifespan). With
    `auto`, a startup that raises is logged with its traceback (see LifespanTraceback)."""
    if interface != "asgi":
        return "off"
    mode = getattr(args, "lifespan", "auto")
    if mode == "auto":
        LifespanTraceback.install()
    return mode


class LifespanTraceback(logging.Filter):
    """uvicorn (lifespan="auto") takes an exception from the app's lifespan to mean "unsupported",
    logs one info line and serves: the traceback of a startup that really failed was lost. This
    filter on uvicorn's error logger gives that line the exception it is logged under (uvicorn
    logs it inside its `except` block) and a warning level. No per-request cost."""

    UNSUPPORTED = "ASGI 'lifespan' protocol appears unsupported."

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())

    def filter(self, record) -> bool:
        if record.msg == self.UNSUPPORTED and record.exc_info is None:
            exc_info = sys.exc_info()
            if exc_info[0] is not None:
                record.exc_info = exc_info
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.msg = ("ASGI lifespan startup raised: serving without lifespan (lifespan = "
                              "\"auto\"; set lifespan = \"on\" to fail the boot instead)")
        return True


def tls_options(args) -> dict:
    """uvicorn's TLS settings from the worker argv (gunicorn's certfile, keyfile, ca_certs,
    cert_reqs, ciphers); none without --certfile. uvicorn wraps every socket it is handed with
    the context (loop.create_server(sock=..., ssl=...)), unix sockets too, and gives the scope
    scheme https / wss."""
    if not getattr(args, "certfile", None):
        return {}
    return {
        "ssl_certfile": args.certfile,
        "ssl_keyfile": args.keyfile,
        "ssl_ca_certs": args.ca_certs,
        "ssl_cert_reqs": args.cert_reqs,
        "ssl_ciphers": args.ciphers,  # None: Python's defaults, as gunicorn
    }


def load_tls(config, args) -> None:
    """Builds uvicorn's SSLContext now, before the worker says it serves, so a file this worker
    cannot read (or an OpenSSL cipher string OpenSSL refuses) fails the boot with its name, then
    applies the lowest version `ssl_version` asked for."""
    try:
        config.load()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise BootError(
            "tls",
            "cannot set TLS up from certfile %s, keyfile %s%s: %s: check that the workers' user can "
            "read them and that ciphers is a list OpenSSL accepts"
            % (args.certfile, args.keyfile, ", ca_certs %s" % args.ca_certs if args.ca_certs else "", exc),
        ) from None
    if args.tls_min_version == "1.3":
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_3
    elif config.ssl.minimum_version < ssl.TLSVersion.TLSv1_2:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2


def serve(args, uvicorn, app, interface: str, channel: Channel, listeners, started: float,
          probed=None) -> int:
    """Serves `app` until the worker stops; `probed` is the app before gunicorn's request hooks
    wrapped it, which the readiness probe calls (default: `app`)."""
    if interface == "wsgi":
        a2wsgi = import_a2wsgi()
        asgi_app = a2wsgi.WSGIMiddleware(app, workers=getattr(args, "threads", None) or WSGI_THREADS)
    else:
        asgi_app = shield_from_factory_guess(app)
    in_flight = {}
    record = inflightfile.recorder(getattr(args, "inflight_fd", None))
    completed = Completed()
    drain = Drain()
    access = None
    if args.access_log_file is not None:
        access = AccessLog(args.access_log_file, compile_format(args.access_log_format))
    asgi_app = limit_requests(asgi_app, args.limit_request_line, args.limit_request_fields,
                              args.limit_request_field_size)
    asgi_app = track_in_flight(asgi_app, in_flight, completed, drain, access, record)
    # Outermost, so the access log and the app see the forwarded client (uvicorn's own
    # ProxyHeadersMiddleware is off: proxy_headers=False).
    asgi_app = proxy_headers(asgi_app, os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"))

    config = uvicorn.Config(
        asgi_app,
        interface="asgi3",  # WSGI apps are wrapped by a2wsgi above
        lifespan=lifespan_mode(args, interface),
        log_level=args.log_level,
        log_config=logging_config(args.log_level),
        access_log=False,  # the runtime writes its own (accesslog.py)
        timeout_graceful_shutdown=graceful_shutdown_timeout(args.graceful_timeout),
        backlog=args.backlog,  # uvicorn re-listens on the inherited sockets with this
        timeout_keep_alive=args.keep_alive,
        root_path=args.root_path,
        **tls_options(args),
        proxy_headers=False,  # the runtime's (proxy.py), as the native engine applies them
    )
    if getattr(args, "certfile", None):
        load_tls(config, args)
    server_class = make_server_class(uvicorn)
    server = server_class(config, channel, interface, args.heartbeat_interval, args.graceful_timeout,
                          args.app, started, in_flight, completed, drain)
    server.access = access
    server.idle_heartbeat_interval = args.idle_heartbeat_interval
    server.worker_connections = args.worker_connections
    if args.proxy_protocol:
        server.proxy_from = Trusted(args.proxy_allow_from)
    server.quarantined = record[2] if record is not None else None

    with lifecycle.state.lock:
        if lifecycle.state.phase != "boot":  # a stop signal arrived since the last check
            raise StopRequested("master_gone" if lifecycle.state.master_gone else "signal", "signal")
        lifecycle.state.server = server
        lifecycle.state.phase = "serving"

    if args.ready_path and interface == "asgi":
        server.ready_probe = functools.partial(readiness.probe_asgi, probed or app, args.ready_path,
                                               args.root_path)

    try:
        server.run(sockets=listeners)
        if server.ready_error is not None:
            raise server.ready_error
    except SystemExit:
        if server.lifespan_failed:
            raise BootError(
                "lifespan",
                "lifespan startup of app %r failed (see the log above): fix the app's startup code"
                % args.app,
            ) from None
        raise
    finally:
        lifecycle.state.phase = "done"
        server.watchdog.stop()
        if access is not None:
            access.close()
        channel.detach()
        # The last count, so the master's "worker exited" record says how many it served.
        server._send_heartbeat()
    return EXIT_OK

