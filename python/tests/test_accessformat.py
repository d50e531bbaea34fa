"""gunicorn's access log format (herdsman.runtime.accessformat)."""

import base64
import json
import os

import pytest

from herdsman.runtime.accessformat import CLOCK, DEFAULT_FORMAT, FormatError, compile_format


def scope(**changes):
    base = {
        "type": "http",
        "method": "GET",
        "path": "/caf\u00e9",
        "raw_path": b"/caf%C3%A9",
        "query_string": b"a=1&b=2",
        "http_version": "1.1",
        "scheme": "http",
        "root_path": "",
        "client": ("10.1.2.3", 5555),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"example.test"),
            (b"user-agent", b"probe/1.0"),
            (b"referer", b"http://ref.test/"),
            (b"x-request-id", b"abc-123"),
            (b"authorization", b"Basic " + base64.b64encode(b"alice:secret")),
        ],
    }
    base.update(changes)
    return base


def render(fmt, s=None, status=201, length=42, response_headers=None, duration=1.2345678):
    compiled = compile_format(fmt)
    return compiled.render(s or scope(), status, length, response_headers, duration)


def test_gunicorns_default_format():
    CLOCK.refresh()
    line = render(DEFAULT_FORMAT)
    assert line == '10.1.2.3 - alice %s "GET /caf%%C3%%A9?a=1&b=2 HTTP/1.1" 201 42 "http://ref.test/" "probe/1.0"' % CLOCK.text


@pytest.mark.parametrize(
    "atom, expected",
    [
        ("h", "10.1.2.3"), ("l", "-"), ("u", "alice"), ("m", "GET"), ("U", "/caf\u00e9"), ("q", "a=1&b=2"),
        ("H", "HTTP/1.1"), ("s", "201"), ("B", "42"), ("b", "42"), ("f", "http://ref.test/"),
        ("a", "probe/1.0"), ("T", "1"), ("M", "1234"), ("D", "1234567"), ("L", "1.234568"),
        ("p", "<%d>" % os.getpid()), ("r", "GET /caf%C3%A9?a=1&b=2 HTTP/1.1"),
        ("{x-request-id}i", "abc-123"), ("{X-Request-Id}i", "abc-123"), ("{missing}i", "-"),
        ("{content-type}o", "text/plain"), ("{remote_addr}e", "10.1.2.3"), ("{server_port}e", "8000"),
        ("{http_user_agent}e", "probe/1.0"), ("{nothing}e", "-"),
    ],
)
def test_each_atom(atom, expected):
    headers = [(b"Content-Type", b"text/plain")]
    assert render("%%(%s)s" % atom, response_headers=headers) == expected


def test_literal_percent_signs_and_conversions_are_kept():
    assert render("100%% %(s)5d|%(B)s") == "100%   201|42"


def test_missing_peer_and_user_are_dashes():
    s = scope(client=None, headers=[])
    assert render("%(h)s %(u)s %(a)s %(f)s", s) == "- - - -"
    s = scope(headers=[(b"authorization", b"Bearer token")])
    assert render("%(u)s", s) == "-"


def test_unknown_atoms_are_refused_with_the_list():
    with pytest.raises(FormatError) as info:
        compile_format("%(h)s %(zz)s")
    assert "%(zz)s" in str(info.value) and "gunicorn" in str(info.value)


def test_json_lines():
    record = json.loads(render("json"))
    assert record["method"] == "GET" and record["status"] == 201 and record["bytes"] == 42
    assert record["remote_addr"] == "10.1.2.3" and record["user_agent"] == "probe/1.0"
    assert record["duration_ms"] == pytest.approx(1234.568)
