"""ASGI WebSocket conformance (tests/clients/ws_checks.py drives it), for both engines:

- `/echo`    accepts with the first subprotocol the client offers and an `x-ws: yes` header,
             then echoes text as text and bytes as bytes until the client closes; the close
             code it hears is noted
- `/reject`  closes before accepting: the server answers 403
- `/bye`     accepts, then closes with 4002 "bye"
- `/scope`   accepts, sends the scope's type, scheme, path and subprotocols as JSON text
- GET `/noted` (http): the codes `/echo` heard, as JSON
"""

import json

import lifespans

NOTED = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespans.complete(receive, send)
    if scope["type"] == "http":
        body = json.dumps(NOTED).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    message = await receive()
    assert message["type"] == "websocket.connect", message
    path = scope["path"]
    if path == "/reject":
        await send({"type": "websocket.close", "code": 1008})
        return
    if path == "/bye":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4002, "reason": "bye"})
        return
    if path == "/scope":
        await send({"type": "websocket.accept"})
        view = {k: scope[k] for k in ("type", "scheme", "path", "subprotocols", "http_version")}
        await send({"type": "websocket.send", "text": json.dumps(view)})
        while (await receive())["type"] != "websocket.disconnect":
            pass
        return
    offered = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                "headers": [(b"x-ws", b"yes")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            NOTED.append(message.get("code"))
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
