"""Cost of gunicorn's pre_request / post_request hooks in herdsman's worker runtime, measured in
isolation (docs/gunicorn-config.md quotes the figures).

With either hook in the gunicorn.conf.py the runtime wraps the app (`Hooks.wrap` in
python/herdsman/runtime/hooks.py): per request a Request and a Response object, two hook calls,
a recording start_response (WSGI) or send (ASGI) and, for WSGI, a body wrapper that counts bytes
and calls post_request on close(). This calls a tiny WSGI app (and an ASGI one on an event loop)
in a tight loop, bare and wrapped with no-op hooks (and with a pre_request that reads
`req.headers`), and prints the CPU time added per request (process time, so other processes on
a busy machine do not count; median of 7 runs of 50,000 calls):

    /work/main/.venv/bin/python bench/hooks_overhead.py
"""

import asyncio
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))
from herdsman.runtime import hooks  # noqa: E402

def make(body):
    d = tempfile.mkdtemp(); path = os.path.join(d, "g.py")
    open(path, "w").write(textwrap.dedent(body))
    return hooks.Hooks(path, json.dumps({"cfg": {}, "server": {}}), "1")

NOOP = "def pre_request(worker, req):\n    pass\ndef post_request(worker, req, environ, resp):\n    pass\n"
HEADERS = "def pre_request(worker, req):\n    dict(req.headers)\ndef post_request(worker, req, environ, resp):\n    pass\n"

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "a=1", "SERVER_PROTOCOL": "HTTP/1.1",
           "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5000",
           "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "bench", "HTTP_ACCEPT": "*/*"}
sr = lambda status, headers, exc_info=None: None

def wsgi(a, n):
    t = time.process_time()
    for _ in range(n):
        body = a(environ, sr)
        for chunk in body: pass
        close = getattr(body, "close", None)
        if close: close()
    return (time.process_time() - t) / n * 1e6

async def asgi_app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"a=1", "http_version": "1.1",
         "headers": [(b"host", b"localhost"), (b"user-agent", b"bench")], "client": ("127.0.0.1", 5000)}
async def _recv(): return {"type": "http.request"}
async def _send(m): pass
def asgi(a, n):
    async def loop():
        t = time.process_time()
        for _ in range(n):
            await a(scope, _recv, _send)
        return (time.process_time() - t) / n * 1e6
    return asyncio.run(loop())

def median(f, a, n=50000, k=7):
    f(a, 5000)
    return statistics.median(f(a, n) for _ in range(k))

print("python", sys.version.split()[0])
bare = median(wsgi, app)
for name, body in (("no-op hooks", NOOP), ("pre_request reads req.headers", HEADERS)):
    print("WSGI %-32s +%.2f us/request" % (name, median(wsgi, make(body).wrap(app, "wsgi")) - bare))
abare = median(asgi, asgi_app)
print("ASGI %-32s +%.2f us/request" % ("no-op hooks", median(asgi, make(NOOP).wrap(asgi_app, "asgi")) - abare))
