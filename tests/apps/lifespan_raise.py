"""Raw ASGI app whose lifespan startup raises `RuntimeError("lifespan_raise: database down")`: under
`lifespan = "auto"` uvicorn serves it anyway (herdsman logs the traceback), under `"on"` the boot
fails (boot_error `lifespan`, exit 12). `GET /` answers 200."""

import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            raise RuntimeError("lifespan_raise: database down (on purpose)")
        return
    body = (json.dumps({"pid": os.getpid(), "app": "lifespan_raise"}) + "\n").encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
