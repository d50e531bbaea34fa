"""Raw ASGI app that ignores SIGTERM: during lifespan startup (after uvicorn installed its signal
handlers) it sets SIGTERM to SIG_IGN, so only SIGKILL (or SIGINT/SIGQUIT) stops the worker."""

import json
import os
import signal


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = (json.dumps({"pid": os.getpid(), "app": "ignore_term"}) + "\n").encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
