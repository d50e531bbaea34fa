"""The worker-side gunicorn hooks (herdsman.runtime.hooks): gunicorn's Request and Response as hooks
see them, from a WSGI environ and from an ASGI scope; which functions a file gives; the request
wrapper around WSGI and ASGI apps (pre_request before, post_request after the body, also when the
app raises; a raising hook logged and the request going on); boot hooks that fail the boot."""

import asyncio
import json
import textwrap

import pytest

from herdsman.runtime import hooks
from herdsman.runtime.errors import BootError

CFG = json.dumps({"cfg": {"timeout": 30.0, "workers": 2}, "server": {"pid": 1, "num_workers": 2}})


def write(tmp_path, text, name="gunicorn.conf.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_request_from_a_wsgi_environ():
    environ = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/api", "PATH_INFO": "/items", "QUERY_STRING": "a=1",
        "SERVER_PROTOCOL": "HTTP/1.0", "HTTP_HOST": "example.com", "HTTP_X_REQUEST_ID": "abc",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2", "wsgi.url_scheme": "https",
        "REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "5555",
    }
    req = hooks.Request.from_environ(environ)
    assert (req.method, req.path, req.query, req.uri) == ("POST", "/api/items", "a=1", "/api/items?a=1")
    assert req.version == (1, 0)
    assert sorted(req.headers) == [("CONTENT-LENGTH", "2"), ("CONTENT-TYPE", "application/json"),
                                   ("HOST", "example.com"), ("X-REQUEST-ID", "abc")]
    assert req.scheme == "https"
    assert req.remote_addr == req.peer_addr == ("10.0.0.1", 5555)


def test_request_uri_is_the_raw_one_when_the_server_gives_it():
    req = hooks.Request.from_environ({"PATH_INFO": "/a b", "RAW_URI": "/a%20b?x", "QUERY_STRING": "x"})
    assert (req.uri, req.path, req.version, req.scheme) == ("/a%20b?x", "/a b", (1, 1), "http")


def test_request_from_an_asgi_scope():
    scope = {
        "type": "http", "method": "GET", "root_path": "/api", "path": "/items", "raw_path": b"/api/it%65ms",
        "query_string": b"q=%C3%A9", "http_version": "2", "scheme": "https",
        "headers": [(b"host", b"example.com"), (b"x-id", b"7")], "client": ["127.0.0.1", 4000],
    }
    req = hooks.Request.from_scope(scope)
    assert (req.method, req.path, req.query) == ("GET", "/api/items", "q=%C3%A9")
    assert req.uri == "/api/it%65ms?q=%C3%A9"
    assert req.version == (2, 0)
    assert req.headers == [("HOST", "example.com"), ("X-ID", "7")]
    assert req.remote_addr == ("127.0.0.1", 4000)
    bare = hooks.Request.from_scope({"type": "http", "path": "/"})
    assert (bare.uri, bare.headers, bare.remote_addr, bare.version) == ("/", [], None, (1, 1))


def test_only_worker_hooks_are_taken(tmp_path):
    path = write(tmp_path, """\
        def on_starting(server): pass
        def post_fork(server, worker): pass
        def pre_request(worker, req): pass
        def child_exit(server, worker): pass
        """)
    found = hooks.Hooks(path, CFG, "3")
    assert sorted(found.functions) == ["post_fork", "pre_request"]
    assert found.worker.age == 3 and found.worker.cfg.timeout == 30.0
    assert found.server.pid == 1 and found.server.num_workers == 2


def test_a_file_that_raises_in_the_worker_is_a_boot_error_with_its_own_frames(tmp_path):
    path = write(tmp_path, "def post_fork(server, worker): pass\nraise OSError('gone')\n")
    with pytest.raises(BootError) as raised:
        hooks.Hooks(path, CFG, "1")
    assert raised.value.kind == "import"
    assert path in raised.value.message
    assert raised.value.traceback.startswith('Traceback (most recent call last):\n  File "%s", line 2' % path)
    assert "gunicornconf.py" not in raised.value.traceback


def test_a_raising_boot_hook_fails_the_boot(tmp_path):
    path = write(tmp_path, "def post_fork(server, worker):\n    raise RuntimeError('no')\n")
    with pytest.raises(BootError, match="the post_fork hook of .* raised") as raised:
        hooks.Hooks(path, CFG, "1").post_fork()
    assert "RuntimeError: no" in raised.value.traceback


def recording_hooks(tmp_path, pre_raises=False):
    """Hooks whose pre/post_request append what they saw to `seen`."""
    path = write(tmp_path, """\
        seen = []
        def pre_request(worker, req):
            seen.append(("pre", req.method, req.path))
            if %r:
                raise ValueError("pre failed")
        def post_request(worker, req, environ, resp):
            seen.append(("post", req.path, resp.status_code, resp.response_length, type(environ).__name__))
        """ % pre_raises)
    found = hooks.Hooks(path, CFG, "1")
    return found, found.functions["pre_request"].__globals__["seen"]


def wsgi_app(environ, start_response):
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"hello", b" world"]


def test_without_request_hooks_the_app_is_not_wrapped(tmp_path):
    path = write(tmp_path, "def post_fork(server, worker): pass\n")
    assert hooks.Hooks(path, CFG, "1").wrap(wsgi_app, "wsgi") is wsgi_app


def test_wsgi_wrapper_runs_pre_then_post_after_the_body(tmp_path):
    found, seen = recording_hooks(tmp_path)
    app = found.wrap(wsgi_app, "wsgi")
    started = []
    body = app({"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda s, h, e=None: started.append(s))
    assert started == ["201 Created"]
    assert seen == [("pre", "GET", "/x")]
    assert b"".join(body) == b"hello world"
    assert len(seen) == 1, "post_request waits for close()"
    body.close()
    body.close()
    assert seen == [("pre", "GET", "/x"), ("post", "/x", 201, 11, "dict")]


def test_wsgi_wrapper_runs_post_when_the_app_raises(tmp_path):
    found, seen = recording_hooks(tmp_path)

    def broken(environ, start_response):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        found.wrap(broken, "wsgi")({"PATH_INFO": "/b"}, lambda s, h, e=None: None)
    assert seen[-1] == ("post", "/b", None, 0, "dict")


def test_a_raising_request_hook_is_logged_and_the_request_goes_on(tmp_path, capsys):
    found, seen = recording_hooks(tmp_path, pre_raises=True)
    body = found.wrap(wsgi_app, "wsgi")({"PATH_INFO": "/p"}, lambda s, h, e=None: None)
    assert b"".join(body) == b"hello world"
    body.close()
    assert [s[0] for s in seen] == ["pre", "post"]
    err = capsys.readouterr().err
    assert "the pre_request hook raised (the worker goes on)" in err and "ValueError: pre failed" in err


def test_asgi_wrapper_records_the_response(tmp_path):
    found, seen = recording_hooks(tmp_path)

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 404, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"nope", "more_body": True})
        await send({"type": "http.response.body", "body": b"!"})

    sent = []

    async def send(message):
        sent.append(message["type"])

    async def receive():
        return {"type": "http.request"}

    wrapped = found.wrap(app, "asgi")
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/a"}, receive, send))
    assert sent == ["http.response.start", "http.response.body", "http.response.body"]
    assert seen == [("pre", "GET", "/a"), ("post", "/a", 404, 5, "dict")]
    # Lifespan (and websockets) pass straight through.
    asyncio.run(wrapped({"type": "lifespan"}, receive, send))
    assert len(seen) == 2
