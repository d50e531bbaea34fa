"""ASGI 3 conformance (the http scope, streaming both ways, disconnects), for both engines:

- `/scope`        checks every key and type of the http scope the server built; answers
                  `{"ok": true}` or `{"ok": false, "problems": [...]}`, and the scope's values
- `/echo`         POST: reads the body with `receive` until `more_body` is false, counting the
                  messages, and streams it back in 4 KiB chunks with `more_body`; answers with the
                  body as received (and `x-messages` / `x-sha256` headers)
- `/stream?n=N`   N chunks of 1 KiB, each its own `http.response.body` with `more_body`
- `/after`        sends the whole response, then `receive()` must say `http.disconnect` (noted)
- `/hang`         sends nothing and waits in `receive()` until the client leaves (noted)
- `/drip?s=F`     a first chunk `{"pid": ...}`, then F seconds later (without blocking the loop)
                  `done`
- `/patient`      POST: a `receive()` given up on after 0.2 s (the client holds its body back),
                  then `receive()` again until the body is complete; answers the body
- `/noted`        what `/after` and `/hang` saw: `{"after": [...], "hang": [...]}`
- `/raise`        raises before the response started: the server answers 500
- `/late_raise`   starts a streamed response, sends one chunk, raises: the response is cut
- `/silent`       returns without sending anything: the server answers 500
"""

import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs

NOTED = {"after": [], "hang": []}


async def _json(send, payload, status=200, headers=()):
    body = (json.dumps(payload) + "\n").encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": body})


def _scope_problems(scope):
    problems = []

    def want(key, kind):
        if key not in scope:
            problems.append("missing %s" % key)
        elif not isinstance(scope[key], kind):
            problems.append("%s is %s, not %s" % (key, type(scope[key]).__name__, kind))

    want("type", str)
    want("asgi", dict)
    if isinstance(scope.get("asgi"), dict):
        if scope["asgi"].get("version") != "3.0":
            problems.append("asgi.version %r" % scope["asgi"].get("version"))
        if not isinstance(scope["asgi"].get("spec_version", "2.0"), str):
            problems.append("asgi.spec_version not a str")
    want("http_version", str)
    if scope.get("http_version") not in ("1.0", "1.1", "2"):
        problems.append("http_version %r" % scope.get("http_version"))
    want("method", str)
    if scope.get("method", "").upper() != scope.get("method"):
        problems.append("method not upper case")
    want("scheme", str)
    want("path", str)
    want("raw_path", bytes)
    want("query_string", bytes)
    want("root_path", str)
    want("headers", (list, tuple))
    for pair in scope.get("headers", ()):
        if len(pair) != 2 or not all(isinstance(x, bytes) for x in pair):
            problems.append("header %r is not a pair of bytes" % (pair,))
        elif pair[0] != pair[0].lower():
            problems.append("header name %r not lower case" % pair[0])
    client = scope.get("client")
    if client is not None and not (len(client) == 2 and isinstance(client[0], str) and isinstance(client[1], int)):
        problems.append("client %r" % (client,))
    server = scope.get("server")
    if server is not None and not (len(server) == 2 and isinstance(server[0], str)):
        problems.append("server %r" % (server,))
    if "state" in scope and not isinstance(scope["state"], dict):
        problems.append("state not a dict")
    return problems


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started_by"] = "lifespan"
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"][len(scope["root_path"]):] if scope["path"].startswith(scope["root_path"]) else scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    if path == "/scope" or path.startswith("/scope/"):
        problems = _scope_problems(scope)
        view = {k: v for k, v in scope.items() if k not in ("headers", "raw_path", "query_string", "state", "asgi")}
        view["raw_path"] = scope["raw_path"].decode("latin-1")
        view["query_string"] = scope["query_string"].decode("latin-1")
        view["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        view["state"] = dict(scope.get("state", {}))
        view["pid"] = os.getpid()
        await _json(send, {"ok": not problems, "problems": problems, "scope": view})
    elif path == "/echo":
        chunks, messages = [], 0
        while True:
            message = await receive()
            assert message["type"] == "http.request", message
            messages += 1
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"x-messages", str(messages).encode()),
            (b"x-sha256", hashlib.sha256(body).hexdigest().encode())]})
        for i in range(0, len(body), 4096):
            await send({"type": "http.response.body", "body": body[i:i + 4096], "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/stream":
        n = int(query.get("n", ["3"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            await send({"type": "http.response.body", "body": (b"%04d" % i) * 256, "more_body": True})
        await send({"type": "http.response.body"})
    elif path == "/after":
        await _json(send, {"pid": os.getpid()})
        message = await asyncio.wait_for(receive(), 10)
        NOTED["after"].append(message["type"])
    elif path == "/hang":
        message = await receive()  # the (empty) body
        NOTED["hang"].append("started")
        message = await asyncio.wait_for(receive(), 30)
        NOTED["hang"].append(message["type"])
    elif path == "/drip":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        first = json.dumps({"pid": os.getpid()}).encode()
        await send({"type": "http.response.body", "body": first, "more_body": True})
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        await send({"type": "http.response.body", "body": b"done\n"})
    elif path == "/patient":
        try:
            first = await asyncio.wait_for(receive(), 0.2)
            chunks = [first.get("body", b"")]
            more = first.get("more_body", False)
        except asyncio.TimeoutError:
            chunks, more = [], True
        NOTED["hang"].append("patient")
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        await _json(send, {"body": b"".join(chunks).decode()})
    elif path == "/noted":
        await _json(send, NOTED)
    elif path == "/raise":
        raise RuntimeError("asgi_conformance: raised before the response (on purpose)")
    elif path == "/late_raise":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first chunk\n", "more_body": True})
        raise RuntimeError("asgi_conformance: raised mid-response (on purpose)")
    elif path == "/silent":
        return
    else:
        await _json(send, {"pid": os.getpid(), "app": "asgi_conformance"}, status=404)
