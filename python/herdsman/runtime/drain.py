"""The keep-alive drain: how a worker that leaves (reload, recycling, scale-down, upgrade, the
graceful part of a stop) closes its open connections without losing a request a client is sending.

Closing an idle keep-alive connection at once, as uvicorn's own shutdown does, races with the
client: a request it is writing at that moment arrives at a closed socket, and the client (wrk, a
`requests` pool, nginx without a retry) reports a failure. So once the worker has stopped accepting:

- a request already read whose response has not started gets `Connection: close` on its response
  (the engine closes the connection after it);
- every request that starts during the drain gets `Connection: close` too (`closing_send`), so a
  busy keep-alive client is told to go elsewhere on its very next request;
- a connection whose response is under way is left alone until it completes, then treated as idle;
- a connection idle for `IDLE_WINDOW` seconds in a row is closed: a client that has sent nothing
  for that long is a pool's spare connection, and such clients check a pooled connection before
  reusing it (urllib3) or retry a request on a reused one that the server closed (nginx, RFC 9112
  9.3.1). A client with requests to send reuses its connection well within the window and gets its
  `Connection: close`.

The drain ends when no HTTP connection is left, or at its deadline (inside the graceful timeout);
what is left then goes through the engine's ordinary shutdown.
"""

# How long a connection must stay idle, during a drain, before it is closed. Much longer than
# any busy client's gap between two requests on one connection (microseconds to milliseconds),
# well under uvicorn's own keep-alive timeout (5 s, which closes idle connections anyway), and
# short enough that a retiring worker with idle pooled connections leaves within a second or so.
IDLE_WINDOW = 1.0
# How often the drain looks at the open connections.
TICK = 0.01


class Drain:
    """The drain's state, shared by the engine (which ticks it) and the request wrapper (which
    reads `active` once per request)."""

    __slots__ = ("active", "_idle")

    def __init__(self) -> None:
        self.active = False
        self._idle = {}  # connection -> (marker, idle since)

    def idle_expired(self, connection, marker, now: float, window: float = IDLE_WINDOW) -> bool:
        """Whether `connection`, idle now, has been idle with the same `marker` (the engine's
        last request object, or None) since at least `window` ago. A new marker (a request came
        and went between two ticks) starts the count again."""
        seen = self._idle.get(connection)
        if seen is None or seen[0] is not marker:
            self._idle[connection] = (marker, now)
            return False
        return now - seen[1] >= window

    def busy(self, connection) -> None:
        self._idle.pop(connection, None)

    def keep_only(self, connections) -> None:
        """Forget the connections that are gone (bounded memory over a long drain)."""
        live = set(connections)
        for connection in [c for c in self._idle if c not in live]:
            del self._idle[connection]


def closing_send(send):
    """`send` for a request served during a drain: its response says `Connection: close` (any
    other Connection header of the app's is replaced), and the engine closes the connection after
    it. Both of uvicorn's HTTP implementations honour an app's `Connection: close`."""

    async def send_closing(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            headers.append((b"connection", b"close"))
            message = dict(message)
            message["headers"] = headers
        await send(message)

    return send_closing
