"""The readiness probe (herdsman.runtime.readiness): one GET made by calling the app itself."""

import asyncio

import pytest

from herdsman.runtime.errors import BootError
from herdsman.runtime.readiness import probe_asgi, probe_wsgi


def wsgi_answering(status, body=b"ok", seen=None):
    def app(environ, start_response):
        if seen is not None:
            seen.update(environ)
        start_response(status, [("Content-Type", "text/plain")])
        return [body]
    return app


def asgi_answering(status, body=b"ok", seen=None):
    async def app(scope, receive, send):
        if seen is not None:
            seen.update(scope)
        assert (await receive())["type"] == "http.request"
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize("status", ["200 OK", "204 No Content", "302 Found"])
def test_wsgi_2xx_and_3xx_are_ready(status):
    seen = {}
    code = probe_wsgi(wsgi_answering(status, seen=seen), "/healthz?deep=1", "/api")
    assert code == int(status.split()[0])
    assert (seen["PATH_INFO"], seen["QUERY_STRING"], seen["SCRIPT_NAME"]) == ("/healthz", "deep=1", "/api")
    assert seen["HTTP_HOST"] == "localhost" and seen["REQUEST_METHOD"] == "GET"


def test_wsgi_failure_quotes_the_status_and_body():
    with pytest.raises(BootError) as err:
        probe_wsgi(wsgi_answering("503 Service Unavailable", b"database down"), "/healthz")
    assert err.value.kind == "readiness"
    assert "GET /healthz answered 503 Service Unavailable: 'database down'" in err.value.message


def test_wsgi_exception_carries_the_traceback():
    def app(environ, start_response):
        raise KeyError("settings")
    with pytest.raises(BootError) as err:
        probe_wsgi(app, "/healthz")
    assert "raised KeyError" in err.value.message
    assert "Traceback" in err.value.traceback


def test_asgi_ready_with_the_lifespan_state_and_root_path():
    seen = {}
    code = asyncio.run(probe_asgi(asgi_answering(200, seen=seen), "/healthz", "/api", state={"db": 1}))
    assert code == 200
    assert (seen["path"], seen["root_path"], seen["state"]) == ("/api/healthz", "/api", {"db": 1})


def test_asgi_failure_and_no_response():
    with pytest.raises(BootError) as err:
        asyncio.run(probe_asgi(asgi_answering(500, b"boom"), "/healthz"))
    assert "answered 500: 'boom'" in err.value.message

    async def silent(scope, receive, send):
        return None
    with pytest.raises(BootError) as err:
        asyncio.run(probe_asgi(silent, "/healthz"))
    assert "answered no response" in err.value.message
