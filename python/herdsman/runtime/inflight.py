"""Requests in flight, the completed count, and the stall watchdog.

The heartbeat is sent from the event loop, so missing heartbeats alone cannot tell a blocked loop
(a sync call in an async handler) from a process that does not run at all (SIGSTOP, starved of CPU,
a C extension holding the GIL). A watchdog thread tells them apart: it keeps running when only the
loop is blocked, and reports `stalled` with the requests in flight, which a registry kept by a thin
ASGI wrapper around the app knows. docs/protocol.md describes both.
"""

import itertools
import sys
import threading
import time

from .consts import PATH_LIMIT, STALL_INTERVALS, STALL_LISTED
from .drain import Drain, closing_send
from .inflightfile import refuse
from .log import log


class Completed:
    """Requests whose app call has returned, and the master's `report_at` threshold: crossing it
    calls `on_threshold` once, at once, so max-requests recycling does not wait for the next
    heartbeat (at high rates that was hundreds of requests past the limit)."""

    __slots__ = ("count", "report_at", "on_threshold")

    def __init__(self) -> None:
        self.count = 0
        self.report_at = None
        self.on_threshold = None


def track_in_flight(app, registry: dict, completed: Completed, drain=None, access=None, record=None):
    """Wrap the ASGI app handed to uvicorn: while the app handles an `http` or `websocket` scope,
    `registry` holds `(method, path, started)` under a key of its own, and `completed` counts the
    calls that returned. Other scopes (lifespan) pass through untouched. While `drain` is active,
    an HTTP response says `Connection: close` (see drain.py). This is the hot path: one dict
    insert, one delete, one increment and one flag read per request, on the event loop thread only
    (other threads copy the values, tolerating changes). With `record` (inflightfile.recorder), each
    request is also noted in the in-flight file the master reads when the worker dies."""
    ids = itertools.count().__next__
    monotonic = time.monotonic
    if drain is None:
        drain = Drain()
    begin, end = record[:2] if record is not None else (None, None)
    if access is not None:
        return _tracked_and_logged(app, registry, completed, drain, access, ids, begin, end)

    async def tracked(scope, receive, send):
        kind = scope["type"]
        if kind != "http":
            if kind != "websocket":
                return await app(scope, receive, send)
        elif drain.active:
            send = closing_send(send)
        key = ids()
        method = scope.get("method") or "WEBSOCKET"
        path = scope.get("path", "")[:PATH_LIMIT]
        registry[key] = (method, path, monotonic())
        try:
            if begin is not None and begin(key, method, path):
                return await refuse(scope, receive, send)
            return await app(scope, receive, send)
        finally:
            del registry[key]
            if end is not None:
                end(key)
            completed.count += 1
            if completed.count == completed.report_at and completed.on_threshold is not None:
                completed.on_threshold()

    return tracked


def _tracked_and_logged(app, registry, completed, drain, access, ids, begin=None, end=None):
    """track_in_flight's wrapper with the access log: `send` is wrapped by a plain function (no
    extra coroutine) that notes the status, the body length and, if the format reads them, the
    response headers; the line is recorded when the app returns."""
    monotonic = time.monotonic
    clock = time.perf_counter
    keep_headers = access.wants_response_headers
    record = access.record

    async def tracked(scope, receive, send):
        kind = scope["type"]
        if kind != "http":
            if kind != "websocket":
                return await app(scope, receive, send)
            note = None
        else:
            if drain.active:
                send = closing_send(send)
            note = [0, 0, None]  # status, body bytes, response headers
            inner = send

            def send(message):
                if message["type"] == "http.response.body":
                    note[1] += len(message.get("body", b""))
                elif message["type"] == "http.response.start":
                    note[0] = message["status"]
                    if keep_headers:
                        note[2] = message.get("headers")
                return inner(message)

        key = ids()
        method = scope.get("method") or "WEBSOCKET"
        path = scope.get("path", "")[:PATH_LIMIT]
        registry[key] = (method, path, monotonic())
        started = clock()
        try:
            if begin is not None and begin(key, method, path):
                return await refuse(scope, receive, send)
            return await app(scope, receive, send)
        except BaseException:
            if note is not None and not note[0]:
                note[0] = 500  # what uvicorn answers when the app fails before responding
            raise
        finally:
            del registry[key]
            if end is not None:
                end(key)
            completed.count += 1
            if note is not None:
                record(scope, note[0], note[1], note[2], clock() - started)
            if completed.count == completed.report_at and completed.on_threshold is not None:
                completed.on_threshold()

    return tracked


def running_request_key(loop_thread: int, tracked_code):
    """The registry key of the request whose handler is running on the (blocked) event loop thread
    right now, or None: while a coroutine runs, the frames of the coroutines awaiting it are on the
    thread's stack, so the innermost `tracked` frame there is the one that holds the loop. Not
    found when the app runs the handler in a task of its own (e.g. Starlette's BaseHTTPMiddleware),
    or when the loop is blocked outside any request."""
    if tracked_code is None:
        return None
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

    def __init__(self, channel, interval: float, registry: dict, tracked_app) -> None:
        self.channel = channel
        self.interval = interval
        self.registry = registry
        # The frames to look for on the loop's stack; None (the native engine: requests run on
        # threads of their own, never on the loop) looks for none.
        self.tracked_code = tracked_app.__code__ if tracked_app is not None else None
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

