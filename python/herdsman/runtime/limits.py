"""gunicorn's request limits for the uvicorn engine (the native engine checks them in Rust, with
the same arithmetic: engine/src/http/service.rs): a request line longer than
`limit_request_line` bytes is answered 414, more header fields than `limit_request_fields` or one
field (name, colon, space and value) longer than `limit_request_field_size` bytes 431, with
`Connection: close`, before the app is called; 0 turns a limit off.

uvicorn's parser has read the head by then (it has no such limits of its own), so this bounds
what reaches the app; what the worker reads is bounded by uvicorn_head.py (64 KiB, 30 s), and the
native engine refuses at parse time.
"""

REQUEST_LINE_EXTRA = len(" ") + len(" HTTP/1.1")  # the request line around method and target
URI_TOO_LONG = (414, "URI Too Long")
FIELDS_TOO_LARGE = (431, "Request Header Fields Too Large")


def _refusal(status, reason):
    body = reason.encode() + b"\n"
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    }
    return start, {"type": "http.response.body", "body": body}


def over_limits(scope, line, fields, field_size):
    """The (status, reason) a request over a limit gets, or None. On every request: plain
    indexing and one loop (uvicorn's HTTP scopes always carry these keys)."""
    if line:
        query = scope["query_string"]
        length = len(scope["method"]) + len(scope["raw_path"]) + REQUEST_LINE_EXTRA
        if query:
            length += 1 + len(query)
        if length > line:
            return URI_TOO_LONG
    headers = scope["headers"]
    if fields and len(headers) > fields:
        return FIELDS_TOO_LARGE
    if field_size:
        most = field_size - 2  # the field's ": " is not in the name or the value
        for name, value in headers:
            if len(name) + len(value) > most:
                return FIELDS_TOO_LARGE
    return None


def limit_requests(app, line, fields, field_size):
    """`app` behind the limits (HTTP scopes only); `app` itself when every limit is off."""
    if not (line or fields or field_size):
        return app

    async def limited(scope, receive, send):
        if scope["type"] == "http":
            refused = over_limits(scope, line, fields, field_size)
            if refused is not None:
                start, body = _refusal(*refused)
                await send(start)
                await send(body)
                return
        return await app(scope, receive, send)

    return limited
