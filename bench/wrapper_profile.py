"""Cost of herdsman's per-request accounting in its worker runtime, measured in isolation.

herdsman's worker runtime wraps the ASGI app handed to uvicorn (`track_in_flight` in
python/herdsman/runtime/inflight.py): per request a dict insert and delete, a clock read and a
counter, plus one more coroutine frame. This times the bench's plain ASGI app called directly
on an event loop, with and without that wrapper, and prints JSON: microseconds per call of each
and the difference. Run with the peers venv's Python (uvloop, like the workers):

    bench/.venv-peers/bin/python bench/wrapper_profile.py [--calls N]
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/apps"))
sys.path.insert(0, str(ROOT / "python"))


def load_runtime():
    from herdsman.runtime import inflight

    return inflight


async def run(app, calls):
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    for _ in range(2000):  # warm-up
        await app(scope, receive, send)
    t0 = time.perf_counter()
    for _ in range(calls):
        await app(scope, receive, send)
    return (time.perf_counter() - t0) / calls * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    runtime = load_runtime()
    import asgi_app  # tests/apps (the benchmark's apps too)

    plain = asgi_app.app
    wrapped = runtime.track_in_flight(plain, {}, runtime.Completed())
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    bare, tracked = [], []
    for _ in range(args.repeats):  # interleaved, best of: the machine's noise only adds
        bare.append(loop.run_until_complete(run(plain, args.calls)))
        tracked.append(loop.run_until_complete(run(wrapped, args.calls)))
    loop.close()
    out = {"calls": args.calls, "app_us": round(min(bare), 3), "app_with_wrapper_us": round(min(tracked), 3)}
    out["wrapper_us"] = round(out["app_with_wrapper_us"] - out["app_us"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
