"""Raw ASGI 3 app that says which interpreter serves it: `GET /` answers the worker's pid and
`sys.executable`, `sys.prefix` and `sys.base_prefix` (a venv's prefix differs from its base).
For the test of the installed wheel (tests/wheel.rs)."""

import json
import os
import sys

import lifespans


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespans.complete(receive, send)
    payload = {
        "pid": os.getpid(),
        "app": "whoami_app",
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
    }
    body = (json.dumps(payload) + "\n").encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
