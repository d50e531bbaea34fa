"""FastAPI app: /  /items/{item_id} (a pydantic response model)  /slow?s=F.

Also the benchmark's "fastapi" app (bench/run.py serves GET /items/7): keep these routes as cheap as
they are, or the benchmark's figures stop being comparable from one run to the next.
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
    return {"pid": os.getpid(), "app": "fastapi_app"}


@app.get("/items/{item_id}", response_model=Item)
async def item(item_id: int):
    return Item(item_id=item_id, name=f"item {item_id}", price=item_id * 1.5, tags=["a", "b"], pid=os.getpid())


@app.get("/slow")
async def slow(s: float = 1.0):
    await asyncio.sleep(s)
    return {"pid": os.getpid(), "app": "fastapi_app"}
