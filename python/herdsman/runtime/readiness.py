"""The readiness probe (config `ready_path`): before a worker says `ready`, it makes one GET to that
path by calling the app itself (not over the network: the listening socket is shared with the
other workers, so a connection might reach another one), and becomes ready only if the answer is
2xx or 3xx. Django loads its URLconf and views on the first request, not at import, so a broken
view passes the import; a probe of a path that goes through the URLconf catches it, and a reload
with such a bug leaves the old workers serving.

WSGI apps are probed in the worker before serving starts (both engines); ASGI apps right after
lifespan startup, with the lifespan state in the scope, as a request would see it.
"""

import io
import sys
import traceback

from .errors import BootError

# The probe's Host header: Django's ALLOWED_HOSTS must allow it (DEBUG allows localhost).
HOST = "localhost"
USER_AGENT = "herdsman-ready-probe"
# How much of a failing answer's body the boot error quotes.
BODY_QUOTED = 300


def _split(path: str):
    path, _, query = path.partition("?")
    return path, query


def _failed(path: str, status, body: bytes) -> BootError:
    text = body[:BODY_QUOTED].decode("utf-8", "replace").strip()
    quoted = (": %r" % text) if text else ""
    return BootError("readiness", "the readiness probe GET %s answered %s%s; the worker is not ready "
                     "(fix the app, or point ready_path at a path that answers 2xx once it can serve)"
                     % (path, status, quoted))


def _raised(path: str, exc: BaseException) -> BootError:
    return BootError("readiness", "the readiness probe GET %s raised %s: %s; the worker is not ready"
                     % (path, type(exc).__name__, exc),
                     traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _ok(status_code: int) -> bool:
    return 200 <= status_code < 400


def probe_wsgi(app, path: str, root_path: str = "") -> int:
    """Calls the WSGI app once with a GET of `path`; returns the status code or raises BootError."""
    path_info, query = _split(path)
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": root_path,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": HOST,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "0",
        "HTTP_HOST": HOST,
        "HTTP_USER_AGENT": USER_AGENT,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = status
        return lambda data: body.append(data)

    body = []
    try:
        result = app(environ, start_response)
        try:
            for chunk in result:
                if chunk:
                    body.append(chunk)
                if sum(map(len, body)) >= BODY_QUOTED:
                    break
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception as exc:
        raise _raised(path, exc) from None
    status = answer.get("status", "")
    try:
        code = int(status.split(None, 1)[0])
    except (ValueError, IndexError):
        raise _failed(path, "no valid status (%r)" % status, b"") from None
    if not _ok(code):
        raise _failed(path, status, b"".join(body))
    return code


async def probe_asgi(app, path: str, root_path: str = "", state=None) -> int:
    """Calls the ASGI app once with a GET of `path`; returns the status code or raises BootError."""
    import asyncio

    raw_path, query = _split(path)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": root_path + raw_path,
        "raw_path": (root_path + raw_path).encode("utf-8"),
        "query_string": query.encode("utf-8"),
        "root_path": root_path,
        "headers": [(b"host", HOST.encode()), (b"user-agent", USER_AGENT.encode())],
        "client": ("127.0.0.1", 0),
        "server": (HOST, 80),
    }
    if state is not None:
        scope["state"] = dict(state)
    answer = {"status": None, "body": [], "done": asyncio.Event()}
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answer["done"].wait()
        return {"type": "http.disconnect"}

    async def send(message):
        kind = message.get("type")
        if kind == "http.response.start":
            answer["status"] = message.get("status")
        elif kind == "http.response.body":
            answer["body"].append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answer["done"].set()

    try:
        await app(scope, receive, send)
    except Exception as exc:
        raise _raised(path, exc) from None
    finally:
        answer["done"].set()
    code = answer["status"]
    if not isinstance(code, int):
        raise _failed(path, "no response", b"")
    if not _ok(code):
        raise _failed(path, code, b"".join(answer["body"]))
    return code
