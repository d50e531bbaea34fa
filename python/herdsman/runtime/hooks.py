"""gunicorn's worker-side server hooks from a `gunicorn.conf.py` (docs/gunicorn-config.md), run in
the worker at gunicorn's moments:

  post_fork(server, worker)        the worker has started, before the app is imported
  post_worker_init(worker)         the app is loaded, before the worker reports `ready`
  pre_request(worker, req)         before each request (only then is the app wrapped at all)
  post_request(worker, req, environ, resp)   after each response was sent (or failed)
  worker_int(worker)               SIGINT / SIGQUIT: herdsman's quick stop
  worker_abort(worker)             SIGUSR2: the master found the worker hung (after the traceback
                                   dump, before the SIGKILL the master sends after its dump grace)
  worker_exit(server, worker)      the worker is about to exit

The master passes `--gunicorn-config PATH` (only when the file defines one of these) and
`--gunicorn-cfg JSON` (the effective settings by gunicorn name, the master's pid, and for
`python:module` the directory the master imported it from); the file is
executed again here, after chdir and pythonpath, to get the functions. A hook that raises is
logged with its traceback and the worker goes on, except post_fork and post_worker_init: as in
gunicorn the worker then does not start (a boot error naming the hook).
"""

import json
import os
import signal
import sys
import traceback

from . import gunicornconf
from .errors import BootError
from .log import log

WORKER_HOOKS = ("post_fork", "post_worker_init", "pre_request", "post_request", "worker_int",
                "worker_abort", "worker_exit")


class Worker:
    """gunicorn's `worker` as hooks use it: pid, ppid, age (herdsman's worker id: the spawn
    order), cfg, log, alive, booted."""

    def __init__(self, worker_id, cfg, logger) -> None:
        self.pid = os.getpid()
        self.ppid = os.getppid()
        try:
            self.age = int(worker_id)
        except ValueError:
            self.age = worker_id
        self.cfg = cfg
        self.log = logger
        self.alive = True
        self.booted = False
        self.tmp = None
        self.app = None


class Request:
    """gunicorn's Request attributes hooks read: method, uri, path, query, version, headers (a list
    of (NAME, value), names upper-cased), scheme, remote_addr / peer_addr. `headers` is built on
    first read: most hooks (gunicorn's default pre_request logs method and path) never read it,
    and building it is most of the wrapper's per-request cost."""

    def __init__(self, method, uri, path, query, version, headers, scheme, peer) -> None:
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        self._headers = headers  # a list, or a function making it
        self.scheme = scheme
        self.remote_addr = peer
        self.peer_addr = peer

    @property
    def headers(self):
        if callable(self._headers):
            self._headers = self._headers()
        return self._headers

    @headers.setter
    def headers(self, value) -> None:
        self._headers = value

    @classmethod
    def from_environ(cls, environ):
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        uri = environ.get("RAW_URI") or (path + ("?" + query if query else ""))
        peer = (environ.get("REMOTE_ADDR"), _port(environ.get("REMOTE_PORT")))
        return cls(environ.get("REQUEST_METHOD", ""), uri, path, query,
                   _version(environ.get("SERVER_PROTOCOL", "HTTP/1.1")), lambda: _environ_headers(environ),
                   environ.get("wsgi.url_scheme", "http"), peer)

    @classmethod
    def from_scope(cls, scope):
        path = scope.get("root_path", "") + scope.get("path", "")
        query = scope.get("query_string", b"").decode("latin-1")
        raw = scope.get("raw_path")
        uri = (raw.decode("latin-1") if raw else path) + ("?" + query if query else "")
        client = scope.get("client")
        return cls(scope.get("method", ""), uri, path, query,
                   _version("HTTP/" + scope.get("http_version", "1.1")), lambda: _scope_headers(scope),
                   scope.get("scheme", "http"), tuple(client) if client else None)


def _environ_headers(environ):
    headers = [(k[5:].replace("_", "-"), v) for k, v in environ.items() if k.startswith("HTTP_")]
    for name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(name):
            headers.append((name.replace("_", "-"), environ[name]))
    return headers


def _scope_headers(scope):
    return [(k.decode("latin-1").upper(), v.decode("latin-1")) for k, v in scope.get("headers", ())]


class Response:
    """What post_request sees of the response: status ("200 OK" for WSGI), status_code, headers
    (a list of (name, value)), response_length (body bytes sent)."""

    def __init__(self) -> None:
        self.status = None
        self.status_code = None
        self.headers = []
        self.response_length = 0
        self.sent = 0


def _port(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return text


_VERSIONS = {"HTTP/1.1": (1, 1), "HTTP/1.0": (1, 0), "HTTP/2": (2, 0)}


def _version(protocol: str):
    known = _VERSIONS.get(protocol)
    if known is not None:
        return known
    try:
        major, _, minor = protocol.split("/", 1)[1].partition(".")
        return int(major), int(minor or 0)
    except (IndexError, ValueError):
        return 1, 1


class Hooks:
    """The worker-side hooks of one config file, and the `server` and `worker` they get."""

    def __init__(self, path: str, cfg_json: str, worker_id) -> None:
        context = json.loads(cfg_json) if cfg_json else {}
        try:
            settings = gunicornconf.load(path, context.get("import_root"))
            self.functions = {name: f for name, f in gunicornconf.hook_functions(settings).items()
                              if name in WORKER_HOOKS}
        except Exception as exc:
            raise BootError("import", "the config file %s raised when the worker executed it: fix the "
                            "file (see the traceback)" % path,
                            gunicornconf.user_traceback(exc, path)) from None
        values = {k: v for k, v in settings.items() if k not in gunicornconf.HOOKS}
        values.update(context.get("cfg") or {})
        self.cfg = gunicornconf.Config(values)
        self.log = gunicornconf.hook_logger("herdsman.hooks")
        self.path = path
        self.server = gunicornconf.Server(context.get("server") or {}, self.cfg, self.log)
        self.worker = Worker(worker_id, self.cfg, self.log)

    def has(self, name: str) -> bool:
        return name in self.functions

    def call(self, name: str, *args) -> None:
        """Runs hook `name` if defined; a failure is logged with its traceback."""
        failed = self._run(name, args)
        if failed is not None:
            log.write("error", "the %s hook raised (the worker goes on)" % name, traceback=failed)

    def boot(self, name: str, *args) -> None:
        """Runs a boot hook (post_fork, post_worker_init): a failure means the worker cannot start."""
        failed = self._run(name, args)
        if failed is not None:
            raise BootError("import", "the %s hook of %s raised: the worker cannot start (fix the hook; "
                            "see the traceback)" % (name, self.path), failed)

    def _run(self, name: str, args):
        """Runs hook `name` if defined: the traceback if it raised, else None."""
        function = self.functions.get(name)
        if function is None:
            return None
        try:
            function(*args)
        except Exception:
            return traceback.format_exc()
        return None

    # -- moments --

    def post_fork(self) -> None:
        self.boot("post_fork", self.server, self.worker)

    def post_worker_init(self, app) -> None:
        self.worker.app = app
        self.boot("post_worker_init", self.worker)
        self.worker.booted = True

    def worker_exit(self) -> None:
        self.worker.alive = False
        self.call("worker_exit", self.server, self.worker)

    def on_signal(self, signum) -> None:
        """worker_int for SIGINT / SIGQUIT (the quick stop)."""
        if signum in (signal.SIGINT, signal.SIGQUIT):
            self.worker.alive = False
            self.call("worker_int", self.worker)

    def install_abort(self) -> None:
        """SIGUSR2 (the hung-worker dump): the traceback dump first, then worker_abort, when the
        main thread next runs Python (a thread stuck in C code never gets there: the master's
        SIGKILL comes after the dump grace either way)."""
        if not self.has("worker_abort"):
            return
        import faulthandler

        def abort(signum, frame) -> None:
            self.worker.alive = False
            self.call("worker_abort", self.worker)

        signal.signal(signal.SIGUSR2, abort)
        faulthandler.register(signal.SIGUSR2, all_threads=True, chain=True)

    # -- requests --

    def wrap(self, app, interface: str):
        """The app, wrapped to run pre_request / post_request; unchanged without those hooks."""
        if not (self.has("pre_request") or self.has("post_request")):
            return app
        if interface == "wsgi":
            return self._wrap_wsgi(app)
        return self._wrap_asgi(app)

    def _wrap_wsgi(self, app):
        hooks = self

        def hooked(environ, start_response):
            req = Request.from_environ(environ)
            resp = Response()
            hooks.call("pre_request", hooks.worker, req)

            def recording_start_response(status, headers, exc_info=None):
                resp.status = status
                resp.status_code = _port(status.split(" ", 1)[0])
                resp.headers = list(headers)
                if exc_info is None:
                    return start_response(status, headers)
                return start_response(status, headers, exc_info)

            try:
                body = app(environ, recording_start_response)
            except BaseException:
                hooks.call("post_request", hooks.worker, req, environ, resp)
                raise
            return _Body(body, lambda: hooks.call("post_request", hooks.worker, req, environ, resp), resp)

        return hooked

    def _wrap_asgi(self, app):
        hooks = self

        async def hooked(scope, receive, send):
            if scope.get("type") != "http":
                return await app(scope, receive, send)
            req = Request.from_scope(scope)
            resp = Response()
            hooks.call("pre_request", hooks.worker, req)

            async def recording_send(message):
                kind = message.get("type")
                if kind == "http.response.start":
                    resp.status_code = message.get("status")
                    resp.status = str(resp.status_code)
                    resp.headers = [(k.decode("latin-1"), v.decode("latin-1"))
                                    for k, v in message.get("headers", ())]
                elif kind == "http.response.body":
                    resp.response_length += len(message.get("body", b""))
                    resp.sent = resp.response_length
                await send(message)

            try:
                await app(scope, receive, recording_send)
            finally:
                hooks.call("post_request", hooks.worker, req, scope, resp)

        return hooked


class _Body:
    """A WSGI response body that counts the bytes it yields and runs `done` once, on close()."""

    def __init__(self, body, done, resp) -> None:
        self.body = body
        self.done = done
        self.resp = resp
        self.closed = False

    def __iter__(self):
        for chunk in self.body:
            self.resp.response_length += len(chunk)
            self.resp.sent = self.resp.response_length
            yield chunk

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.done()


def load(args):
    """The worker's hooks from its argv, or None without --gunicorn-config."""
    path = getattr(args, "gunicorn_config", None)
    if not path:
        return None
    return Hooks(path, getattr(args, "gunicorn_cfg", None), args.worker_id)


# Set by worker_main once the hooks are loaded: the signal handlers read it.
current = None


def on_signal(signum) -> None:
    if current is not None:
        current.on_signal(signum)


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
