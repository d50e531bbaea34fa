"""Starlette app (no FastAPI): a lifespan that puts a value in the state, `/` reading it back
through `request.state`, `/stream` a StreamingResponse of 3 chunks, `/echo` (POST) the body
through `await request.body()`."""

import contextlib
import os

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan"}


async def root(request):
    return JSONResponse({"pid": os.getpid(), "app": "starlette_app", "greeting": request.state.greeting})


async def stream(request):
    async def chunks():
        for i in range(3):
            yield b"chunk %d\n" % i

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(request):
    return Response(await request.body(), media_type="application/octet-stream")


app = Starlette(routes=[Route("/", root), Route("/stream", stream), Route("/echo", echo, methods=["POST"])],
                lifespan=lifespan)
