"""Large bodies through a WSGI app, in constant memory: `POST /upload` reads wsgi.input in 64 KiB
blocks and answers the byte count and sha256; `GET /download?size=N` streams N bytes (a repeating
pattern, 64 KiB per chunk) from a generator; `GET /rss` answers the worker's resident set (VmRSS)
and its peak (VmHWM) in KiB, from /proc/self/status."""

import hashlib
import json
import os
from urllib.parse import parse_qs

NAME = "stream_app"
BLOCK = 65536
PATTERN = bytes(range(256)) * (BLOCK // 256)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/upload":
        digest, size = hashlib.sha256(), 0
        stream = environ["wsgi.input"]
        while True:
            data = stream.read(BLOCK)
            if not data:
                break
            digest.update(data)
            size += len(data)
        body = json.dumps({"size": size, "sha256": digest.hexdigest()}).encode()
    elif path == "/download":
        size = int(parse_qs(environ.get("QUERY_STRING", "")).get("size", ["0"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])

        def chunks():
            left = size
            while left > 0:
                n = min(left, BLOCK)
                yield PATTERN[:n]
                left -= n

        return chunks()
    elif path == "/rss":
        body = json.dumps({"rss_kib": _status_kib("VmRSS"), "hwm_kib": _status_kib("VmHWM"), "pid": os.getpid()}).encode()
    else:
        body = json.dumps({"pid": os.getpid(), "app": NAME}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
