"""Plain WSGI function app: /,  /slow?s=F (time.sleep in the WSGI thread), and /together?n=N
(answers 200 once N calls are in the app at the same time, 504 if that does not happen within
10 s: proof that the server runs N blocking calls at once), /scheme (wsgi.url_scheme), and /hold (streams a first line with
the pid, then holds the GIL for good: a regular expression that backtracks for ever, in C code that
never lets the GIL go, as a stuck C extension would).

Also the benchmark's "wsgi" app (bench/run.py serves GET / and /slow): keep `/` as cheap as it is,
or the benchmark's figures stop being comparable from one run to the next.
"""

import json
import os
import re
import threading
import time
from urllib.parse import parse_qs

NAME = "wsgi_app"
_barriers = {}
_barriers_lock = threading.Lock()


def _wait_together(n):
    """Blocks (releasing the GIL) until n calls are inside at once; False after 10 s."""
    with _barriers_lock:
        barrier = _barriers.setdefault(n, threading.Barrier(n))
    try:
        barrier.wait(timeout=10)
        return True
    except threading.BrokenBarrierError:
        with _barriers_lock:
            if _barriers.get(n) is barrier:
                del _barriers[n]  # the next calls get a whole barrier
        return False


def _hold():
    yield (json.dumps({"pid": os.getpid(), "holding": True}) + "\n").encode()
    re.match(r"(a+)+b", "a" * 64)  # holds the GIL: 2**64 steps of backtracking
    yield b"never\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/hold":
        start_response("200 OK", [("Content-Type", "application/json")])
        return _hold()
    if path == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["1"])[0])
        time.sleep(seconds)
    elif path == "/together":
        n = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["2"])[0])
        if not _wait_together(n):
            body = b"not together\n"
            start_response("504 Gateway Timeout", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
    elif path == "/scheme":
        body = (json.dumps({"pid": os.getpid(), "scheme": environ["wsgi.url_scheme"]}) + "\n").encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    elif path != "/":
        body = (json.dumps({"pid": os.getpid(), "error": "not found"}) + "\n").encode()
        start_response("404 Not Found", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    body = (json.dumps({"pid": os.getpid(), "app": NAME}) + "\n").encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
