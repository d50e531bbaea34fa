"""Cost of recording each request in the in-flight file (python/herdsman/runtime/inflightfile.py),
the way the master names the request that killed a worker. Times `track_in_flight` around the
bench's plain ASGI app without and with the recorder (a memfd), and prints
JSON: microseconds per request of each and the difference. Like wrapper_profile.py:

    bench/.venv-peers/bin/python bench/inflight_file.py [--calls N]
"""

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))

from herdsman.runtime import inflightfile  # noqa: E402
from herdsman.runtime.inflight import Completed, track_in_flight  # noqa: E402


async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def run(wrapped, calls):
    scope = {"type": "http", "method": "GET", "path": "/items/42", "query_string": b"", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    for _ in range(2000):
        await wrapped(scope, receive, send)
    start = time.perf_counter()
    for _ in range(calls):
        await wrapped(scope, receive, send)
    return (time.perf_counter() - start) / calls * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    calls = parser.parse_args().calls
    rounds = parser.parse_args().rounds
    fd = os.memfd_create("bench-inflight")
    os.ftruncate(fd, inflightfile.SLOTS * inflightfile.SLOT_SIZE)
    plain = track_in_flight(app, {}, Completed())
    recorded = track_in_flight(app, {}, Completed(), record=inflightfile.recorder(fd))
    best = {"dict_us": [], "recorded_us": []}
    for _ in range(rounds):  # interleaved, best of each: the machine is shared
        best["dict_us"].append(asyncio.run(run(plain, calls)))
        best["recorded_us"].append(asyncio.run(run(recorded, calls)))
    out = {k: round(min(v), 3) for k, v in best.items()}
    out["cost_us"] = round(out["recorded_us"] - out["dict_us"], 3)
    out["python"] = sys.version.split()[0]
    print(json.dumps(out))


main()
