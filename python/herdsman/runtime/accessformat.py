"""gunicorn's access log format, compiled once into one function per format.

A format is gunicorn's `access_log_format`: Python %-style with named atoms, e.g. the default
`%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`. The atoms (gunicorn's meaning):

    h remote address     l '-'                  u user name (HTTP Basic auth)   t date of the request
    r request line       m request method       U URL path                      q query string
    H protocol           s status               B response length               b response length or '-'
    f referer            a user agent           T request time (s)              M request time (ms)
    D request time (us)  L request time (decimal seconds)                       p process id as <pid>
    {header}i request header   {header}o response header   {variable}e CGI/WSGI environ variable

`json` instead of a format writes one JSON object per line with the same facts under stable names.

The format is turned into one `%` operation over a tuple whose items are computed by fixed
expressions chosen per atom (never text from the format itself), so a line costs one tuple, one
`%` and only the work its atoms need: request headers are turned into a dict only when an atom
reads one, response headers are kept only when an `o` atom asks for them.
"""

import base64
import binascii
import json
import os
import re
import time

DEFAULT_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
JSON = "json"

ATOM = re.compile(r"%\(([^)]*)\)([-#0 +]*\d*(?:\.\d+)?[sdifr])")
SIMPLE = "hlutrmUqHsBbfaTMDLp"
# The expression each simple atom stands for; names are the render function's arguments and the
# helpers below. `hd` is the request headers as a dict (bytes -> bytes), built only when needed.
EXPRESSIONS = {
    "h": "(scope['client'] or _NO_PEER)[0]",
    "l": "'-'",
    "u": "(_user(hd) if b'authorization' in hd else '-')",
    "t": "CLOCK.text",
    "r": "_request_line(scope)",
    "m": "scope['method']",
    "U": "scope['path']",
    "q": "scope['query_string'].decode('latin-1')",
    "H": "'HTTP/' + scope['http_version']",
    "s": "status",
    "B": "length",
    "b": "length",
    "f": "hd.get(b'referer', b'-').decode('latin-1')",
    "a": "hd.get(b'user-agent', b'-').decode('latin-1')",
    "T": "int(duration)",
    "M": "int(duration * 1000)",
    "D": "int(duration * 1000000)",
    "L": "'%.6f' % duration",
    "p": "_pid",
}
NEEDS_HEADERS = set("ufa")
# CGI names a {variable}e atom may read, from the ASGI scope.
ENVIRON = {
    "remote_addr": "_client(scope)",
    "request_method": "scope['method']",
    "path_info": "scope['path']",
    "query_string": "scope['query_string'].decode('latin-1')",
    "server_protocol": "'HTTP/' + scope['http_version']",
    "script_name": "scope.get('root_path', '')",
    "server_name": "_server(scope, 0)",
    "server_port": "_server(scope, 1)",
    "wsgi.url_scheme": "scope.get('scheme', 'http')",
}


class FormatError(ValueError):
    """The access log format has an atom gunicorn does not know."""


class Compiled:
    """A compiled format: `render(scope, status, length, response_headers, duration)` -> line
    (without the newline), and whether response headers must be kept for it."""

    def __init__(self, render, wants_response_headers: bool) -> None:
        self.render = render
        self.wants_response_headers = wants_response_headers


def compile_format(fmt: str) -> Compiled:
    if fmt == JSON:
        return Compiled(_render_json, False)
    parts, expressions = [], []
    needs_headers = wants_response = False
    position = 0
    for match in ATOM.finditer(fmt):
        parts.append(fmt[position:match.start()].replace("%%", "\0").replace("%", "%%").replace("\0", "%%"))
        name, conversion = match.group(1), match.group(2)
        expression, reads_headers, reads_response = _expression(name)
        needs_headers |= reads_headers
        wants_response |= reads_response
        expressions.append(expression)
        parts.append("%" + conversion)
        position = match.end()
    parts.append(fmt[position:].replace("%%", "\0").replace("%", "%%").replace("\0", "%%"))
    template = "".join(parts)
    headers = "    hd = dict(scope['headers'])\n" if needs_headers else ""
    source = (
        "def render(scope, status, length, rh, duration):\n"
        + headers
        + "    return TEMPLATE %% (%s,)\n" % ", ".join(expressions)
    )
    namespace = dict(_HELPERS, TEMPLATE=template, _pid="<%d>" % os.getpid())
    exec(compile(source, "<access log format>", "exec"), namespace)
    return Compiled(namespace["render"], wants_response)


def _expression(name: str):
    """(expression, reads request headers, reads response headers) for one atom."""
    if name in EXPRESSIONS:
        return EXPRESSIONS[name], name in NEEDS_HEADERS, False
    if name.startswith("{") and "}" in name and name.endswith(("}i", "}o", "}e")):
        key, kind = name[1:-2].lower(), name[-1]
        if kind == "i":
            return "hd.get(%r, b'-').decode('latin-1')" % key.encode("latin-1"), True, False
        if kind == "o":
            return "_header(_response(rh), %r)" % key.encode("latin-1"), False, True
        if key in ENVIRON:
            return ENVIRON[key], False, False
        if key.startswith("http_"):
            header = key[5:].replace("_", "-").encode("latin-1")
            return "_header(hd, %r)" % header, True, False
        return "'-'", False, False
    raise FormatError(
        "unknown access log atom %%(%s)s: use gunicorn's atoms (%s, {header}i, {header}o, "
        "{variable}e)" % (name, " ".join(SIMPLE))
    )


_NO_PEER = ("-",)


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "-"


def _server(scope, index: int) -> str:
    server = scope.get("server")
    return str(server[index]) if server and server[index] is not None else "-"


def _header(headers, name: bytes) -> str:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else "-"


def _response(headers):
    return {k.lower(): v for k, v in headers or ()}


def _user(headers) -> str:
    value = headers.get(b"authorization")
    if not value or not value[:6].lower() == b"basic ":
        return "-"
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return "-"
    return decoded.partition(":")[0] or "-"


def _request_line(scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope["query_string"]
    if query:
        path = path + b"?" + query
    return scope["method"] + " " + path.decode("latin-1") + " HTTP/" + scope["http_version"]


class Clock:
    """`[10/Oct/2000:13:55:36 -0700]`, formatted once per second. Reading the clock costs more
    than the rest of a line, so the access log refreshes it once per batch (accesslog.py): lines
    of one batch, at most FLUSH_INTERVAL apart, share the second the batch began in."""

    def __init__(self) -> None:
        self.second = None
        self.text = ""
        self.refresh()

    def refresh(self) -> None:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.text = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(now))


CLOCK = Clock()


_HELPERS = {
    "_client": _client,
    "_NO_PEER": _NO_PEER,
    "_server": _server,
    "_header": _header,
    "_response": _response,
    "_user": _user,
    "_request_line": _request_line,
    "CLOCK": CLOCK,
}


def _render_json(scope, status, length, rh, duration) -> str:
    headers = dict(scope["headers"])
    return json.dumps(
        {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "remote_addr": _client(scope),
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode("latin-1"),
            "protocol": "HTTP/" + scope["http_version"],
            "status": status,
            "bytes": length,
            "duration_ms": round(duration * 1000, 3),
            "referer": _header(headers, b"referer"),
            "user_agent": _header(headers, b"user-agent"),
            "pid": os.getpid(),
        },
        separators=(",", ":"),
    )
