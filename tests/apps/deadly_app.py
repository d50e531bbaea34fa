"""A query of death: `GET /die` ends the worker at once with `os._exit(0)` (no response, no
cleanup, no last word on the channel); every other path answers 200 like asgi_app. `app` is raw
ASGI; `wsgi` the same as a WSGI app, which both engines serve."""

import json
import os

import lifespans


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespans.complete(receive, send)
    if scope["type"] != "http":
        return
    if scope["path"] == "/die":
        os._exit(0)
    body = (json.dumps({"pid": os.getpid(), "app": "deadly_app"}) + "\n").encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi(environ, start_response):
    if environ.get("PATH_INFO") == "/die":
        os._exit(0)
    body = (json.dumps({"pid": os.getpid(), "app": "deadly_app"}) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
