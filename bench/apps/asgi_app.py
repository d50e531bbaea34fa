"""Plain ASGI 3 app (no framework), with lifespan: the benchmark's "asgi" app.

GET /         -> 200 {"pid": <worker pid>, "app": "asgi"}   (the pid tells which worker answered)
GET /slow?s=F -> the same after an asyncio.sleep(F)
"""

import asyncio
import json
import os
from urllib.parse import parse_qs

PID = os.getpid()


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
    if scope["path"] == "/slow":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
    body = json.dumps({"pid": os.getpid(), "app": "asgi"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
