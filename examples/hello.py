"""herdsman's demo app (FastAPI).

    herdsman examples.hello:app            # from the repository root, or:
    herdsman --chdir examples hello:app

Then `curl localhost:8000/` a few times: the pid changes as requests land on different workers.
"""

import os

from fastapi import FastAPI

app = FastAPI(title="herdsman hello")


@app.get("/")
async def root():
    return {"message": "Hello from herdsman", "pid": os.getpid()}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q, "pid": os.getpid()}
