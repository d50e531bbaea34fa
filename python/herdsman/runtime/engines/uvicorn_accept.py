"""The uvicorn engine's accept loops: `worker_connections` and the PROXY protocol.

asyncio and uvloop have no public way to pause a server's accepting, and uvicorn's own cap
(limit_concurrency) answers 503. So the runtime accepts itself, with public loop APIs that both
loops implement: a reader on each listening socket (`add_reader`), which accepts what is ready
without blocking and hands each connection to `connect_accepted_socket`. At
`worker_connections` the reader is removed (`remove_reader`), so the next connections wait in
the kernel's listen queue (or another worker takes them); none is refused. It is added back as
soon as a connection closes.

What counts: uvicorn's `server_state.connections` (every HTTP and WebSocket protocol adds itself
in connection_made and discards itself in connection_lost, and a WebSocket upgrade swaps one for
the other within one call), plus connections accepted and not yet there (being handed over, or
reading their PROXY header). The set is swapped for a ConnectionSet whose discard resumes the
paused readers: one Python call per closed connection, none per request.

Invariants: a connection accepted is always served (closing an Acceptor removes its reader, it
never cancels a hand-over, so no accepted connection is dropped on a stop); the listening socket
is closed by the runtime only after `wait_closed()`, once no reader is registered on it. Each
Acceptor stands in uvicorn's `servers` list (uvicorn calls `close()` on it), so uvicorn's
shutdown and the keep-alive drain stop accepting as before.
"""

import asyncio
import errno

from ..log import log
from ..proxyproto import HeaderProtocol

# Errors about one connection that went away before it was accepted.
TRANSIENT = {errno.ECONNABORTED, errno.EINTR, errno.EPROTO, errno.EPERM, errno.EAGAIN}
# How long accepting pauses after an error such as EMFILE.
BACKOFF = 0.05
# How long a client may take over its TLS handshake (the native engine's figure).
TLS_HANDSHAKE_TIMEOUT = 10.0


class Slots:
    """How many connections the worker holds, against `cap`; the readers paused at the cap."""

    def __init__(self, cap: int, connections: "ConnectionSet") -> None:
        self.cap = max(1, cap)
        self.connections = connections
        connections.slots = self
        self.pending = 0  # accepted, not yet in `connections`
        self.paused = []  # Acceptors whose reader is off until a connection closes

    def full(self) -> bool:
        return len(self.connections) + self.pending >= self.cap

    def release_pending(self) -> None:
        self.pending -= 1
        self.freed()

    def freed(self) -> None:
        if self.paused and not self.full():
            paused, self.paused = self.paused, []
            for acceptor in paused:
                acceptor.resume()


class ConnectionSet(set):
    """uvicorn's server_state.connections, resuming the accept readers when one closes."""

    slots = None

    def discard(self, item) -> None:
        set.discard(self, item)
        slots = self.slots
        if slots is not None and slots.paused:
            slots.freed()

    def remove(self, item) -> None:
        self.discard(item)


class Acceptor:
    """Accepts on one listening socket while there is room."""

    def __init__(self, loop, sock, factory, slots: Slots, proxy_from=None, ssl=None) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.factory = factory
        self.slots = slots
        self.proxy_from = proxy_from  # proxy.Trusted of the PROXY protocol's peers, or None
        # uvicorn's SSLContext (TLS on): the handshake runs in the loop's own SSL transport, and
        # uvicorn's protocols see it (scope scheme https / wss). Not with the PROXY protocol:
        # the configuration refuses both together under this engine.
        self.tls = {"ssl": ssl, "ssl_handshake_timeout": TLS_HANDSHAKE_TIMEOUT} if ssl is not None else {}
        self.handing = set()  # hand-over tasks in progress
        self.reading = False
        self.closed = False
        self.retry = None  # the timer after an error such as EMFILE
        sock.setblocking(False)
        self.resume()

    # -- what uvicorn and the runtime call on a server --

    def close(self) -> None:
        self.closed = True
        self._pause()
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None

    def is_serving(self) -> bool:
        return not self.closed

    async def wait_closed(self) -> None:
        while self.handing:
            await asyncio.wait(list(self.handing))

    # -- accepting --

    def resume(self) -> None:
        if not self.closed and not self.reading:
            self.reading = True
            self.loop.add_reader(self.fd, self._ready)

    def _pause(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _ready(self) -> None:
        slots = self.slots
        while not self.closed:
            if slots.full():
                self._pause()
                slots.paused.append(self)
                return
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in TRANSIENT:
                    continue
                log.warning("accept failed: %s (retrying)" % exc)
                self._pause()
                self.retry = self.loop.call_later(BACKOFF, self._after_backoff)
                return
            conn.setblocking(False)
            slots.pending += 1
            task = self.loop.create_task(self._serve(conn, addr))
            self.handing.add(task)
            task.add_done_callback(self.handing.discard)

    def _after_backoff(self) -> None:
        self.retry = None
        self.resume()

    async def _serve(self, conn, addr) -> None:
        slots = self.slots
        try:
            proxy_from = self.proxy_from
            if proxy_from is not None and proxy_from.trusts_peer(
                    addr if isinstance(addr, tuple) and addr else None):
                slots.pending += 1  # the header protocol's own, until it hands over or closes
                header = HeaderProtocol(self.factory, self.loop, slots.release_pending)
                try:
                    await self.loop.connect_accepted_socket(lambda: header, conn)
                except BaseException:
                    if header.done is not None:
                        header.done = None
                        slots.release_pending()
                    raise
            else:
                await self.loop.connect_accepted_socket(self.factory, conn, **self.tls)
        except OSError:
            conn.close()  # gone before it could be served
        finally:
            slots.release_pending()


def start(loop, sockets, factory, server_state, cap: int, backlog: int, proxy_from=None, ssl=None):
    """Acceptors for `sockets`, with uvicorn's connection set replaced by a ConnectionSet."""
    connections = ConnectionSet(server_state.connections)
    server_state.connections = connections
    slots = Slots(cap, connections)
    acceptors = []
    for sock in sockets:
        # uvicorn's create_server would listen() again with the configured backlog.
        sock.listen(backlog)
        acceptors.append(Acceptor(loop, sock, factory, slots, proxy_from, ssl))
    return acceptors
