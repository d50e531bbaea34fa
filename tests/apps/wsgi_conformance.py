"""WSGI conformance (PEP 3333), each route wrapped in wsgiref.validate's validator (which raises
on any breach by the server or the app, answered 500 with the breach in the log):

- `/`                 the environ's CGI and wsgi.* keys as JSON (str values only, plus wsgi.version)
- `/echo`             POST: the body read with read(); `?how=readline|readlines|iter|chunks|sized`
                      reads it another way; answers its length and sha256. Not validated: read()
                      with no size is beyond PEP 3333 (which the validator holds apps to), but apps
                      call it and gunicorn and uvicorn support it
- `/vecho`            the same, validated, for the ways PEP 3333 allows (readline, iter, chunks, sized)
- `/write`            the body sent through start_response's write() callable, then an iterable
- `/stream?n=N`       a generator of N chunks (chunked transfer encoding)
- `/file?size=N`      wsgi.file_wrapper over a real temporary file of N bytes (the fast path)
- `/filelike?size=N`  wsgi.file_wrapper over a BytesIO (no fileno: the iterating path)
- `/exc_info`         start_response, then an error: start_response again with exc_info -> 500 body
- `/twice`            start_response twice without exc_info: the server must refuse (500)
- `/late_error`       the head and a first chunk go out, then the iterable raises: cut short
- `/not_bytes`        yields a str: the server refuses it (500)
- `/closed`           answers how many times close() was called on earlier responses' iterables
- `/headers`          echoes every HTTP_* key
Not validated (the validator would reject the app's own misuse first): `/twice`, `/not_bytes`, `/echo`.
"""

import hashlib
import io
import json
import os
import tempfile
import threading
from urllib.parse import parse_qs
from wsgiref.util import FileWrapper
from wsgiref.validate import validator

NAME = "wsgi_conformance"
CLOSED = {"count": 0}
LOCK = threading.Lock()


class Closing:
    """An iterable with close(), counted in CLOSED."""

    def __init__(self, chunks) -> None:
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)

    def close(self) -> None:
        with LOCK:
            CLOSED["count"] += 1


def _json(start_response, value, status="200 OK"):
    body = (json.dumps(value, sort_keys=True) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Closing([body])


def _query(environ, key, default):
    return parse_qs(environ.get("QUERY_STRING", "")).get(key, [default])[0]


def environ_view(environ, start_response):
    view = {k: v for k, v in environ.items() if isinstance(v, str)}
    view["wsgi.version"] = list(environ["wsgi.version"])
    view["wsgi.multithread"] = environ["wsgi.multithread"]
    view["wsgi.multiprocess"] = environ["wsgi.multiprocess"]
    view["wsgi.run_once"] = environ["wsgi.run_once"]
    view["pid"] = os.getpid()
    view["app"] = NAME
    return _json(start_response, view)


def echo(environ, start_response):
    stream = environ["wsgi.input"]
    how = _query(environ, "how", "read")
    digest, size = hashlib.sha256(), 0
    if how == "read":
        data = stream.read()
        digest.update(data)
        size = len(data)
    elif how == "readline":
        while True:
            line = stream.readline()
            if not line:
                break
            digest.update(line)
            size += len(line)
    elif how == "readlines":
        for line in stream.readlines():
            digest.update(line)
            size += len(line)
    elif how == "iter":
        for line in stream:
            digest.update(line)
            size += len(line)
    elif how in ("chunks", "sized"):
        block = 65536 if how == "chunks" else 1000
        while True:
            data = stream.read(block)
            if not data:
                break
            digest.update(data)
            size += len(data)
    return _json(start_response, {"size": size, "sha256": digest.hexdigest()})


def write_then_iterable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return Closing([b"then ", b"iterated\n"])


def stream(environ, start_response):
    n = int(_query(environ, "n", "5"))
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for i in range(n):
            yield b"chunk %d\n" % i

    return chunks()


def _file_wrapper(environ):
    """The server's wsgi.file_wrapper, or wsgiref's where it has none (it is optional: a2wsgi,
    under the uvicorn engine, has none)."""
    return environ.get("wsgi.file_wrapper", FileWrapper)


def file_response(environ, start_response):
    size = int(_query(environ, "size", "100000"))
    handle = tempfile.TemporaryFile()
    handle.write(bytes(range(256)) * (size // 256) + bytes(range(size % 256)))
    handle.seek(0)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _file_wrapper(environ)(handle, 8192)


def filelike_response(environ, start_response):
    size = int(_query(environ, "size", "100000"))
    data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))])
    return _file_wrapper(environ)(io.BytesIO(data), 4096)


def exc_info_route(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise RuntimeError("app failure before the body")
    except RuntimeError:
        import sys

        start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return Closing([b"replaced by the error page\n"])


def twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never\n"]


def late_error(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        yield b"first chunk\n"
        raise RuntimeError("failure after the head went out")

    return chunks()


def not_bytes(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["a str, not bytes\n"]


def closed(environ, start_response):
    with LOCK:
        count = CLOSED["count"]
    return _json(start_response, {"closed": count})


def headers(environ, start_response):
    return _json(start_response, {k: v for k, v in environ.items() if k.startswith("HTTP_")})


VALIDATED = {
    "/": environ_view,
    "/vecho": echo,
    "/write": write_then_iterable,
    "/stream": stream,
    "/file": file_response,
    "/filelike": filelike_response,
    "/exc_info": exc_info_route,
    "/late_error": late_error,
    "/closed": closed,
    "/headers": headers,
}
RAW = {"/twice": twice, "/not_bytes": not_bytes, "/echo": echo}
ROUTES = {path: validator(route) for path, route in VALIDATED.items()}
ROUTES.update(RAW)


def app(environ, start_response):
    route = ROUTES.get(environ.get("PATH_INFO", "/"))
    if route is None:
        return _json(start_response, {"error": "not found"}, "404 Not Found")
    return route(environ, start_response)
