"""The ASGI side of the native engine, on the worker's asyncio loop: the lifespan protocol (run
here in Python, as uvicorn's `lifespan` = auto/on/off), the event loop (uvloop when installed, as
uvicorn's loop = "auto"), and the task each request runs in.

The request path itself is in the engine (engine/src/asgi/): it builds the scope, and its
`receive` and `send` are Rust objects. The engine queues new requests and wake-ups and writes one
byte to a pipe; `on_readable` takes the whole batch at once (`Server.asgi_take`) and starts one
task per request. The task wrapper always ends the call with `send.done(error)`, which answers 500
when the app sent no response, cuts the connection when it stopped mid-response, logs the app's
traceback, ends its in-flight entry and counts it.
"""

import asyncio
import os

from ..errors import BootError
from ..log import log

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}


def new_event_loop():
    """uvloop's loop when uvloop is installed, else asyncio's (uvicorn's loop = "auto")."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Requests:
    """Starts the app's task for each request the engine hands over."""

    def __init__(self, server, app, pipe_r: int) -> None:
        self.server = server
        self.app = app
        self.pipe_r = pipe_r
        self.loop = None
        self.tasks = set()

    def attach(self, loop) -> None:
        self.loop = loop
        loop.add_reader(self.pipe_r, self.on_readable)

    def detach(self) -> None:
        if self.loop is not None:
            self.loop.remove_reader(self.pipe_r)

    def on_readable(self) -> None:
        try:
            os.read(self.pipe_r, 4096)  # before the batch is taken: see asgi/mod.rs
        except (BlockingIOError, InterruptedError):
            pass
        create_task = self.loop.create_task
        tasks = self.tasks
        for scope, receive, send in self.server.asgi_take():
            task = create_task(self.call(scope, receive, send))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def call(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError as exc:
            send.done(exc)
            raise
        except BaseException as exc:  # noqa: B902 - every app failure ends the call
            send.done(exc)
        else:
            send.done()

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()


class Lifespan:
    """The ASGI lifespan protocol for one app, as uvicorn's LifespanOn runs it: `startup` before
    the worker serves (failures are boot errors of kind `lifespan`, as under uvicorn), `shutdown`
    on every stop. With mode "auto", an app that raises before completing startup is taken not to
    support lifespan (as uvicorn does), with its traceback logged as a warning."""

    def __init__(self, app, mode: str, spec: str) -> None:
        self.app = app
        self.mode = mode
        self.spec = spec
        self.state = {}
        self.queue = None
        self.task = None
        self.started = None
        self.stopped = None
        self.failed = None  # the app's lifespan.*.failed message
        self.error = None
        self.complete = False  # lifespan.startup.complete was sent
        self.running = False

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self.queue = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._main())
        await self.queue.put({"type": "lifespan.startup"})
        await self._until(self.started)
        if self.error is not None and not self.complete:
            if self.mode == "on":
                raise BootError("lifespan", "lifespan startup of app %r raised (see the log above): fix "
                                "the app's startup code" % self.spec)
            return  # "auto": unsupported, served without lifespan (logged in _main)
        if self.failed is not None:
            log.write("error", self.failed)
            raise BootError("lifespan", "lifespan startup of app %r failed (see the log above): fix the "
                            "app's startup code" % self.spec)
        self.running = self.complete and not self.task.done()

    async def _until(self, event) -> None:
        waiter = asyncio.ensure_future(event.wait())
        await asyncio.wait([waiter, self.task], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()

    async def shutdown(self) -> None:
        if not self.running:
            return
        self.running = False
        await self.queue.put({"type": "lifespan.shutdown"})
        await self._until(self.stopped)
        if self.failed is not None:
            log.write("error", self.failed)
        if not self.task.done():
            self.task.cancel()

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": dict(ASGI_VERSION), "state": self.state}
        try:
            await self.app(scope, self.queue.get, self._send)
        except BaseException as exc:  # noqa: B902 - reported as the mode says
            self.error = exc
            if self.complete:
                log.write("error", "Exception in 'lifespan' protocol", traceback=_traceback(exc))
            elif self.mode == "on":
                log.write("error", "Exception in 'lifespan' protocol", traceback=_traceback(exc))
            else:
                log.write("warning", "ASGI lifespan startup raised: serving without lifespan (lifespan = "
                          "\"auto\"; set lifespan = \"on\" to fail the boot instead)", traceback=_traceback(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.started.set()
            self.stopped.set()

    async def _send(self, message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.complete = True
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.failed = message.get("message") or "lifespan startup failed"
            self.started.set()
        elif kind == "lifespan.shutdown.complete":
            self.stopped.set()
        elif kind == "lifespan.shutdown.failed":
            self.failed = message.get("message") or "lifespan shutdown failed"
            self.stopped.set()
        else:
            raise RuntimeError("Unexpected ASGI message %r sent for a lifespan scope" % (kind,))


def _traceback(exc) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

