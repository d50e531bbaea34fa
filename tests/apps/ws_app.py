"""Raw ASGI 3 app with a WebSocket echo: `GET /` as every test app; a WebSocket at any path is
accepted and echoes each text message as `<pid>:<text>` until the client or the server closes."""

import json
import os

import lifespans


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespans.complete(receive, send)
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "%d:%s" % (os.getpid(), message.get("text"))})
    if scope["type"] == "http":
        body = json.dumps({"pid": os.getpid(), "app": "ws_app"}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
