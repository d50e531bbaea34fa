"""Raw ASGI 3 app (no framework) with lifespan support: the workhorse of the worker tests.

Routes: /  /slow?s=F  /block?s=F  /env?k=NAME  /fds  /echo (POST).  `create_app()` is a factory
returning the same app.

Also the benchmark's "asgi" app (bench/run.py serves GET / and /slow): `/` stays the first and
cheapest route, or the benchmark's figures stop being comparable from one run to the next.
"""

import asyncio
import json
import os
import time
from urllib.parse import parse_qs

NAME = "asgi_app"


def _query(scope, key, default=None):
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(key)
    return values[0] if values else default


async def _json(send, payload, status=200):
    body = (json.dumps(payload) + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    pid = os.getpid()

    if path == "/":
        await _json(send, {"pid": pid, "app": NAME})
    elif path == "/slow":
        await asyncio.sleep(float(_query(scope, "s", "1")))
        await _json(send, {"pid": pid, "app": NAME})
    elif path == "/block":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        first = (json.dumps({"pid": pid, "blocking": True}) + "\n").encode()
        await send({"type": "http.response.body", "body": first, "more_body": True})
        time.sleep(float(_query(scope, "s", "1")))  # blocks the event loop on purpose
        await send({"type": "http.response.body", "body": b"done\n"})
    elif path == "/scheme":
        await _json(send, {"pid": pid, "scheme": scope["scheme"]})
    elif path == "/env":
        await _json(send, {"pid": pid, "value": os.environ.get(_query(scope, "k", ""))})
    elif path == "/fds":
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        await _json(send, {"pid": pid, "fds": fds})
    elif path == "/echo":
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
    else:
        await _json(send, {"pid": pid, "error": "not found"}, status=404)


def create_app():
    """Factory form (run with --factory --app asgi_app:create_app)."""
    return app
