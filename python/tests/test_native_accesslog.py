"""The native engine's access log (engine/src/accesslog/) against the Python runtime's.

Formats: for the same request, the line the extension renders (`_engine.render_access_line`)
must equal, byte for byte, the line herdsman.runtime.accessformat renders from the ASGI scope
uvicorn would build for that request. The table covers every atom, request and response
headers, every CGI variable, the literal-text corners, the conversions, gunicorn's default
format and the JSON form, under several time zones with the clock pinned on both sides.
Writer: a real `AccessLog` written from several threads keeps every line whole, follows a
reopen, and counts what it cannot write.

The extension is loaded by path: $HERDSMAN_ENGINE_LIB (which must exist), else the newer of
target/{release,debug}/libherdsman_engine.so (built with `cargo build -p herdsman-engine`); the
path is printed. Without either the tests skip, except under CI=true, where they fail.
"""

import base64
import importlib.machinery
import importlib.util
import itertools
import os
import re
import threading
import time
import urllib.parse

import pytest

from herdsman.runtime import accessformat
from herdsman.runtime.accessformat import DEFAULT_FORMAT, ENVIRON, SIMPLE, compile_format

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY = "libherdsman_engine.so"
_loaded = {}


def _engine_path():
    explicit = os.environ.get("HERDSMAN_ENGINE_LIB")
    if explicit:
        return explicit, "HERDSMAN_ENGINE_LIB"
    built = [os.path.join(REPO, "target", kind, LIBRARY) for kind in ("release", "debug")]
    built = [p for p in built if os.path.exists(p)]
    return (max(built, key=os.path.getmtime), "newest build") if built else (None, None)


@pytest.fixture(scope="module")
def engine(request):
    path, source = _engine_path()
    if source == "HERDSMAN_ENGINE_LIB" and not os.path.exists(path):
        pytest.fail("HERDSMAN_ENGINE_LIB names %r, which does not exist" % path)
    if path is None:
        why = ("the native engine is not built: no target/{release,debug}/%s and no "
               "HERDSMAN_ENGINE_LIB; run `cargo build -p herdsman-engine`" % LIBRARY)
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    if path not in _loaded:
        loader = importlib.machinery.ExtensionFileLoader("_engine", path)
        spec = importlib.util.spec_from_file_location("_engine", path, loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _loaded[path] = module
    say = "native engine under test (%s): %s" % (source, path)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when output is captured
            print("\n" + say)
    else:
        print(say)
    return _loaded[path]


# -- the same request on both sides -------------------------------------------------------------

def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


BASE = {
    "remote": ("10.1.2.3", 5555),
    "local": ("127.0.0.1", 8000),
    "scheme": "http",
    "method": "GET",
    "path": "/caf%C3%A9",
    "query": "a=1&b=2",
    "version": "HTTP/1.1",
    "request_headers": [
        ("host", "example.test"),
        ("user-agent", "probe/1.0"),
        ("referer", "http://ref.test/"),
        ("x-request-id", "abc-123"),
        ("authorization", basic(b"alice:secret")),
    ],
    "status": 201,
    "response_headers": [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")],
    "body_bytes": 42,
    "duration_ns": 1_234_567_800,
}


def entry(**changes):
    fields = dict(BASE)
    fields.update(changes)
    return fields


ENTRIES = [
    entry(),
    entry(remote=None, local=("/run/herdsman/app.sock", None)),  # a unix socket
    entry(remote=("::1", 50000), local=("2001:db8::1", 8443), scheme="https", version="HTTP/1.0"),
    entry(local=None, request_headers=[], response_headers=None, query="", status=500, body_bytes=0,
          duration_ns=0, method="POST", path="/"),
    entry(path="/a%zz%4/%E2%82%ff%C3(%0A%22%5c%25", query="q=%20&x=\u00e9",  # bad escapes, newline
          request_headers=[("user-agent", 'probe "x" \\ y\tz'), ("user-agent", "caf\u00e9/2"),
                           ("referer", ""), ("x-request-id", "one"), ("x-request-id", "two")]),
    entry(path="/\u00e9/%C2%A0%E2%80%8B%F0%9F%98%80%C2%AD%7F%01'\"", body_bytes=10**15,
          request_headers=[("user-agent", "\u00a0\u00ad\u00ff\u0080\x9f'")]),
    entry(path="/it's", request_headers=[("user-agent", "it's \"quoted\"")], status=404),
    entry(path="/it%27s%22", duration_ns=59_999_999_999),
]
DURATIONS_NS = [0, 1, 499, 500, 999_999, 1_000_000, 1_062_500, 2_675_000, 1_000_000_000,
                1_500_000_001, 3_600_000_000_000, 86_400_000_000_123, 123_456_789_012_345]
AUTHORIZATIONS = [
    basic(b"alice:secret"), basic(b"bob"), basic(b":nopass"), basic(b""), basic(b"caf\xe9:x"),
    basic(b"a:b:c"), "basic " + base64.b64encode(b"lower:case").decode(), "BASIC  YWxpY2U6eA==  ",
    "Basic YWJj==", "Basic YQ", "Basic YQ=", "Basic YQ==", "Basic YWI", "Basic YWI=", "Basic YWI==",
    "Basic Y", "Basic YR==", "Basic =YWJj", "Basic YW=Jj", "Basic YWJj====", "Basic YW Jj",
    "Basic YWJj\t", "Basic !!!!", "Basic", "Basic ", "Bearer token", "", "Basic\tYWxpY2U6eA==",
    "Basic YWxpY2U6eA=", "Basic YWxpY2U6e===",
]

EVERY_ATOM = (
    " ".join("%%(%s)s" % atom for atom in SIMPLE)
    + " %({x-request-id}i)s %({X-Request-Id}i)s %({missing}i)s %({host}i)s"
    + " %({content-type}o)s %({Set-Cookie}o)s %({missing}o)s"
    + " " + " ".join("%%({%s}e)s" % name for name in ENVIRON)
    + " %({REMOTE_ADDR}e)s %({http_user_agent}e)s %({HTTP_X_REQUEST_ID}e)s %({http_missing}e)s"
    + " %({nothing}e)s %({}i)s %({}o)s %({}e)s %({http_}e)s %({a}b}i)s"
)
FORMATS = [
    DEFAULT_FORMAT,
    "json",
    EVERY_ATOM,
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(L)s %({x-request-id}i)s',
    "100%% %(s)5d|%(B)s",
    "%%(h)s %%%(h)s %%%%(h)s a % b %(h)s % %",
    "%(h) %(h)s %(h).s %(s)s %(h)5 %(h)-x %(h)s%",
    "\0%(h)s\0",
    "%(h)s%(l)s%(s)d%(B)i%(T)s",
    "caf\u00e9 \u2603 %(U)s %(U)r %(a)r %(f)r %(q)r",
]
CONVERSIONS = ["s", "r", "d", "i", "f", "5s", "-5s", ".2s", "10.3s", "-10r", ".4r", "05d", "+d", " d",
               "+ d", "-+8d", "08.5d", ".0d", ".7i", "-05d", "#d", ".2f", "+.0f", "#.0f", "012.3f",
               "-+12.1f", " f", "#s", "0s", "-0s", "3r", "+s", "00010d", "-#012.4f"]
CONVERTED = list(SIMPLE) + ["{user-agent}i", "{content-type}o", "{server_port}e", "{nothing}e"]
TIMES = [951_782_400, 1_700_000_000, 1_710_054_000, 1_730_613_600, 4_102_444_799]
ZONES = ["UTC0", "XST-05:45", "YST+03:30", "EST5EDT,M3.2.0,M11.1.0", "AEST-10AEDT,M10.1.0,M4.1.0/3"]


def scope_of(fields):
    """The ASGI scope uvicorn builds for the request (h11_impl: `path` is unquote(raw_path),
    `raw_path` the bytes received, header names lowercased)."""
    return {
        "type": "http",
        "http_version": fields["version"][len("HTTP/"):],
        "server": tuple(fields["local"]) if fields["local"] else None,
        "client": tuple(fields["remote"]) if fields["remote"] else None,
        "scheme": fields["scheme"],
        "method": fields["method"],
        "root_path": "",
        "path": urllib.parse.unquote(fields["path"]),
        "raw_path": fields["path"].encode("utf-8"),
        "query_string": fields["query"].encode("utf-8"),
        "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in fields["request_headers"]],
    }


def python_line(spec, fields) -> bytes:
    """The Python runtime's line, as its writer puts it in the file."""
    secs, nanos = divmod(fields["duration_ns"], 10**9)
    duration = secs + nanos / 1e9  # what Rust's Duration::as_secs_f64 computes
    rh = fields["response_headers"]
    rh = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in rh] if rh is not None else None
    line = compile_format(spec).render(scope_of(fields), fields["status"], fields["body_bytes"], rh, duration)
    return (line + "\n").encode("utf-8", "replace")


class PinnedTime:
    """accessformat's `time` module with the clock stopped at `now`."""

    def __init__(self, now: int) -> None:
        self.now = now

    def time(self):
        return float(self.now)

    def localtime(self, t=None):
        return time.localtime(self.now if t is None else t)

    def strftime(self, fmt, t=None):
        return time.strftime(fmt, time.localtime(self.now) if t is None else t)


@pytest.fixture
def pin(monkeypatch):
    """pin(now): stops accessformat's clock at `now` (the Rust side is given `now` too)."""
    def at(now):
        monkeypatch.setattr(accessformat, "time", PinnedTime(now))
        accessformat.CLOCK.second = None
        accessformat.CLOCK.refresh()
    yield at
    monkeypatch.undo()
    accessformat.CLOCK.second = None
    accessformat.CLOCK.refresh()


@pytest.fixture(params=ZONES)
def zone(request):
    saved = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()  # the C library's zone, which Rust's localtime_r reads too
    yield request.param
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def compare(engine, pin, cases):
    """Renders each (spec, fields, now) both ways; returns the differences."""
    differences = []
    for spec, fields, now in cases:
        pin(now)
        expected = python_line(spec, fields)
        got = engine.render_access_line(spec, dict(fields, now=now)).encode("utf-8")
        if got != expected:
            differences.append("spec %r, fields %r, now %d:\n  python %r\n  rust   %r"
                               % (spec, fields, now, expected, got))
    return differences


def test_every_format_and_entry_renders_as_python_does(engine, pin, zone):
    cases = [(spec, fields, now) for spec in FORMATS for fields in ENTRIES for now in TIMES]
    differences = compare(engine, pin, cases)
    assert not differences, "%d of %d lines differ (TZ=%s):\n%s" % (
        len(differences), len(cases), zone, "\n".join(differences[:10]))


def test_durations_render_as_python_does(engine, pin):
    spec = "%(T)s %(M)s %(D)s %(L)s %(T)5.1f %(M)08d %(D)r"
    cases = [(spec, entry(duration_ns=ns), TIMES[1]) for ns in DURATIONS_NS]
    cases += [("json", entry(duration_ns=ns), TIMES[1]) for ns in DURATIONS_NS]
    cases += [("json", entry(duration_ns=ns), TIMES[1]) for ns in range(0, 50_000_000, 123_457)]
    assert not compare(engine, pin, cases)


def test_the_basic_auth_user_is_decoded_as_python_decodes_it(engine, pin):
    cases = [("%(u)s|%(u)r|%(u)3.1s", entry(request_headers=[("authorization", value)]), TIMES[0])
             for value in AUTHORIZATIONS]
    cases.append(("%(u)s", entry(request_headers=[("authorization", basic(b"first:x")),
                                                  ("authorization", basic(b"last:x"))]), TIMES[0]))
    differences = compare(engine, pin, cases)
    assert not differences, "\n".join(differences)


def test_every_conversion_of_every_atom_is_python_s_or_refused(engine, pin):
    differences, refused = [], 0
    for name, conversion in itertools.product(CONVERTED, CONVERSIONS):
        spec = "<%%(%s)%s>" % (name, conversion)
        try:
            python_line(spec, entry())
        except TypeError:  # Python fails on every line of this format; Rust refuses to compile it
            with pytest.raises(ValueError, match="converts text as a number"):
                engine.render_access_line(spec, entry())
            refused += 1
            continue
        differences += compare(engine, pin, [(spec, fields, TIMES[2]) for fields in ENTRIES])
    assert not differences, "%d differ:\n%s" % (len(differences), "\n".join(differences[:10]))
    assert refused > 0


def test_unknown_atoms_are_refused_with_python_s_message(engine):
    for spec in ["%(h)s %(zz)s", "%(x%(h)s", "%({nope)s", "%(hh)s", "%({x}y)s", "%()s"]:
        with pytest.raises(accessformat.FormatError) as python:
            compile_format(spec)
        with pytest.raises(ValueError) as rust:
            engine.render_access_line(spec, entry())
        assert str(rust.value) == str(python.value)
    with pytest.raises(UnicodeEncodeError):  # a header name past latin-1
        compile_format("%({\u2603}i)s")
    with pytest.raises(ValueError, match="latin-1"):
        engine.render_access_line("%({\u2603}i)s", entry())


def test_the_default_format_is_gunicorn_s_as_in_python(engine):
    assert engine._DEFAULT_FORMAT == DEFAULT_FORMAT


def test_a_format_without_atoms_is_rendered_where_python_cannot_compile_it(engine):
    # accessformat.py builds `TEMPLATE % (,)` for it, a SyntaxError; the native engine writes
    # the text itself, one line per request.
    with pytest.raises(SyntaxError):
        compile_format("static 100%%")
    assert engine.render_access_line("static 100%%", entry()) == "static 100%\n"


def test_response_headers_are_wanted_exactly_when_python_wants_them(engine):
    for spec in FORMATS + ["%({x}o)s", "%({x}O)s", "%({x}i)s", "%(h)s"]:
        try:
            wanted = compile_format(spec).wants_response_headers
        except accessformat.FormatError:
            continue
        assert engine._wants_response_headers(spec) == wanted, spec


def test_the_clock_follows_the_real_time(engine):
    clf = "[%d/%b/%Y:%H:%M:%S %z]"  # accessformat's CLOCK
    before = time.strftime(clf)
    line = engine.render_access_line("%(t)s", entry())
    after = time.strftime(clf)
    assert line[:-1] in (before, after)


# -- the writer ---------------------------------------------------------------------------------

LINE = re.compile(r"/(\d+)/(\d+) 200 (q*)")


def wait_for(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.005)


def test_lines_from_many_threads_reach_the_file_whole(engine, tmp_path):
    path = tmp_path / "access.log"
    log = engine._AccessLog(str(path), "%(U)s %(s)s %(q)s")
    threads, per_thread, pad = 8, 2000, 40  # 1 MB: below QUEUE_LIMIT even if the writer lags
    log.record_from_threads(threads, per_thread, pad)
    log.close(10.0)
    data = path.read_bytes()
    assert data.endswith(b"\n")
    seen = set()
    for line in data.decode().split("\n")[:-1]:
        match = LINE.fullmatch(line)
        assert match and len(match.group(3)) == pad, "a line is not whole: %r" % line
        seen.add((int(match.group(1)), int(match.group(2))))
    assert seen == {(t, i) for t in range(threads) for i in range(per_thread)}
    assert len(data.split(b"\n")) - 1 == threads * per_thread
    assert log.dropped() == 0 and log.notices() == []
    log.record_from_threads(1, 3, 0)  # after close: dropped, not written
    assert log.dropped() == 3 and path.read_bytes() == data


def test_a_pipe_gets_whole_lines_longer_and_shorter_than_pipe_buf(engine, tmp_path):
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    log = engine._AccessLog(str(fifo), "%(U)s %(s)s %(q)s")
    log.record_from_threads(3, 200, 10)
    log.record_from_threads(2, 5, 10_000)  # longer than PIPE_BUF: each its own write
    log.close(10.0)  # the writer has ended and closed the pipe: the reader sees its end
    reader.join(10)
    lines = received[0].decode().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == 3 * 200 + 2 * 5
    assert all(LINE.fullmatch(line) for line in lines[:-1])


def test_a_reopen_follows_a_rename(engine, tmp_path):
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    log = engine._AccessLog(str(path), "%(U)s %(s)s %(q)s")
    log.record_from_threads(1, 10, 0)
    wait_for(lambda: path.exists() and path.read_text().count("\n") == 10, "the first lines")
    os.rename(path, rotated)
    log.reopen()
    log.record_from_threads(1, 5, 1)
    log.close(10.0)
    assert rotated.read_text() == "".join("/0/%d 200 \n" % i for i in range(10))
    assert path.read_text() == "".join("/0/%d 200 q\n" % i for i in range(5))
    assert log.dropped() == 0


def test_a_destination_that_cannot_be_opened_counts_drops_and_warns_once(engine, tmp_path):
    log = engine._AccessLog(str(tmp_path / "no-such-dir" / "access.log"), "%(U)s")
    assert not log.wants_response_headers()
    for _ in range(3):
        log.record_from_threads(1, 5, 0)
    log.close(10.0)
    assert log.dropped() == 15
    notices = log.notices()
    assert len(notices) == 1 and notices[0].startswith("warning: access log: lines dropped (cannot open")


def test_past_the_queue_limit_lines_are_dropped_counted_and_told_once(engine, tmp_path):
    fifo = tmp_path / "access.fifo"
    os.mkfifo(fifo)
    log = engine._AccessLog(str(fifo), "%(U)s %(s)s %(q)s")  # the writer waits for a reader
    lines, pad = 50_000, 100  # ~5.5 MB, more than QUEUE_LIMIT (4 MiB) can hold
    log.record_from_threads(1, lines, pad)
    dropped = log.dropped()
    assert 0 < dropped < lines
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    log.close(10.0)
    reader.join(10)
    written = received[0].decode().split("\n")[:-1]
    assert len(written) == lines - dropped and all(LINE.fullmatch(line) for line in written)
    assert log.notices() == [
        "warning: access log: lines dropped (the destination does not keep up); the count is in /metrics",
        "info: access log: writing again after the destination does not keep up; %d line(s) dropped so far"
        % dropped,
    ]
