"""Raw ASGI app whose lifespan startup fails: boot_error kind `lifespan` (exit 12).

It sends `lifespan.startup.failed`. (Raising from the lifespan instead would NOT fail the boot under
uvicorn's lifespan="auto": uvicorn takes an exception there to mean "lifespan unsupported" and
serves anyway. Starlette/FastAPI turn a raising startup into `lifespan.startup.failed`.)
"""

import json
import os


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": "lifespan_fail: database unreachable (on purpose)"})
        return
    if scope["type"] == "http":
        body = (json.dumps({"pid": os.getpid(), "app": "lifespan_fail"}) + "\n").encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
