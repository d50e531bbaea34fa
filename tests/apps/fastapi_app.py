"""FastAPI app: /  and  /items/{item_id}."""

import os

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root():
    return {"pid": os.getpid(), "app": "fastapi_app"}


@app.get("/items/{item_id}")
async def item(item_id: int):
    return {"pid": os.getpid(), "item_id": item_id}
