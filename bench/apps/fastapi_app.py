"""FastAPI app: the benchmark's "fastapi" app (a JSON endpoint with a pydantic response model).

GET /         -> 200 {"pid": <worker pid>, "app": "fastapi"}
GET /items/7  -> 200 a small JSON document validated by a response model
GET /slow?s=F -> the same as / after an asyncio.sleep(F)
"""

import asyncio
import os

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    item_id: int
    name: str
    price: float
    tags: list[str]
    pid: int


@app.get("/")
async def root():
    return {"pid": os.getpid(), "app": "fastapi"}


@app.get("/items/{item_id}", response_model=Item)
async def item(item_id: int):
    return Item(item_id=item_id, name=f"item {item_id}", price=item_id * 1.5, tags=["a", "b"], pid=os.getpid())


@app.get("/slow")
async def slow(s: float = 1.0):
    await asyncio.sleep(s)
    return {"pid": os.getpid(), "app": "fastapi"}
