"""Bounds on reading a request head under the uvicorn engine, as the native engine has them.

uvicorn's httptools protocol reads a request head with no limit on its size and no limit on the
time it takes: a 300 MB header line was read whole (the worker grew by 600 MB), and a client
that sends a head one byte at a time (slowloris) keeps its connection for good. gunicorn's
request limits (limits.py) are checked once the head is complete, which is too late for both.

This subclass of uvicorn's protocol class counts the bytes of the head being read and times it:
past `MAX_HEAD` bytes (counted in whole reads, after the read in which the head began) the
request is answered 431 and the connection closed; a head not complete
within `HEAD_TIMEOUT` seconds from its first byte (or from the connection's start) closes the
connection. The native engine's figures (engine/src/http/conn.rs: hyper's `max_buf_size` and
`header_read_timeout`). A connection idle between two requests is not reading a head: uvicorn's
keep-alive timeout applies there, as before.

uvicorn's h11 protocol (`UvicornH11Worker`) already refuses a head over 16 KiB (h11's
max_incomplete_event_size) and is left as it is.

uvicorn internals used (httptools protocol): `on_message_begin`, `on_headers_complete`, `loop`,
`transport`, `server_state.default_headers`.
"""

import functools

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT = 30.0
FIELDS_TOO_LARGE = b"Request Header Fields Too Large\n"


@functools.lru_cache(maxsize=None)
def bounded(protocol_class):
    """`protocol_class` with the head bounds, or itself if it is not uvicorn's httptools one."""
    if not (hasattr(protocol_class, "on_message_begin") and hasattr(protocol_class, "on_headers_complete")):
        return protocol_class

    class BoundedHead(protocol_class):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._head_bytes = 0
            self._head_began = False
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_expired)

        def connection_lost(self, exc):
            self._stop_head_timer()
            super().connection_lost(exc)

        def data_received(self, data):
            # Counted after the parser saw it, and only while a head is still unfinished: a
            # read that completes the head (its body and a pipelined request along) is not
            # the head's size. A head that began in this read counts from the next one, so a
            # head is refused at most one read (256 KiB) past MAX_HEAD.
            self._head_began = False
            super().data_received(data)
            if self._head_timer is None or self._head_began or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refuse_head()

        def on_message_begin(self):
            super().on_message_begin()
            self._head_bytes = 0
            self._head_began = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_expired)

        def on_headers_complete(self):
            self._stop_head_timer()
            super().on_headers_complete()

        def _stop_head_timer(self):
            timer, self._head_timer = getattr(self, "_head_timer", None), None
            if timer is not None:
                timer.cancel()

        def _head_expired(self):
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def _refuse_head(self):
            self._stop_head_timer()
            if self.transport.is_closing():
                return
            head = [b"HTTP/1.1 431 Request Header Fields Too Large\r\n"]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head += [b"content-type: text/plain; charset=utf-8\r\n",
                     b"content-length: %d\r\n" % len(FIELDS_TOO_LARGE), b"connection: close\r\n\r\n",
                     FIELDS_TOO_LARGE]
            self.transport.write(b"".join(head))
            self.transport.close()

    BoundedHead.__name__ = BoundedHead.__qualname__ = "BoundedHead" + protocol_class.__name__
    return BoundedHead
