"""Raw ASGI 3 app for the process-hygiene tests: output, files, identity.

Routes:
  /                     {"pid", "app"}
  /say?text=T           prints "T-out" on stdout and "T-err" on stderr (flushed), then answers
  /spew?n=N&marker=M    writes N bytes ("x" lines of 1 KiB) to stderr in one write, then "M" on
                        stderr, then answers: the request only completes once the master read it
  /touch?path=P         creates the file P (open(P, "w")) and answers with its mode
"""

import json
import os
import sys
from urllib.parse import parse_qs

NAME = "output_app"


def _query(scope, key, default=None):
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(key)
    return values[0] if values else default


async def _json(send, payload, status=200):
    body = (json.dumps(payload) + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    pid = os.getpid()
    if path == "/":
        await _json(send, {"pid": pid, "app": NAME})
    elif path == "/say":
        text = _query(scope, "text", "hello")
        print("%s-out" % text, flush=True)
        print("%s-err" % text, file=sys.stderr, flush=True)
        await _json(send, {"pid": pid})
    elif path == "/spew":
        n = int(_query(scope, "n", "1048576"))
        line = "x" * 1023 + "\n"
        blob = (line * (n // len(line) + 1))[:n]
        sys.stderr.write(blob)
        sys.stderr.write("%s\n" % _query(scope, "marker", "spew-done"))
        sys.stderr.flush()
        await _json(send, {"pid": pid, "written": n})
    elif path == "/touch":
        target = _query(scope, "path")
        with open(target, "w") as f:
            f.write("made by %d\n" % pid)
        mode = os.stat(target).st_mode & 0o777
        await _json(send, {"pid": pid, "mode": mode})
    else:
        await _json(send, {"error": "not found"}, status=404)
