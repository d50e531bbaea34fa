"""The uvicorn engine's accept loops: `worker_connections` and the PROXY protocol.

asyncio and uvloop have no public way to pause a server's accepting, and uvicorn's own cap
(limit_concurrency) answers 503. So the runtime accepts itself, with public loop APIs that both
loops implement (`sock_accept`, `connect_accepted_socket`): one Acceptor per listening socket,
which stops calling accept while the worker holds `worker_connections` connections, so the next
ones wait in the kernel's listen queue (or another worker takes them); none is refused.

What counts: uvicorn's `server_state.connections` (every HTTP and WebSocket protocol adds itself
in connection_made and discards itself in connection_lost, and a WebSocket upgrade swaps one for
the other within one call), plus connections accepted and not yet there (between accept and
connection_made, or reading their PROXY header). The set is swapped for a ConnectionSet whose
discard wakes the loops: one Python call per closed connection, none per request.

Each Acceptor object stands in uvicorn's `servers` list (uvicorn calls `close()` on it), so
uvicorn's shutdown and the keep-alive drain stop accepting as before; `wait_closed()` lets the
runtime close the listening socket only after the accept call has let go of it.
"""

import asyncio
import errno

from ..log import log
from ..proxyproto import HeaderProtocol

# Errors about one connection that went away before it was accepted.
TRANSIENT = {errno.ECONNABORTED, errno.EINTR, errno.EPROTO, errno.EPERM, errno.EAGAIN}
# How long accepting pauses after an error such as EMFILE.
BACKOFF = 0.05


class Slots:
    """How many connections the worker holds, against `cap`."""

    def __init__(self, cap: int, connections: "ConnectionSet") -> None:
        self.cap = max(1, cap)
        self.connections = connections
        connections.slots = self
        self.pending = 0  # accepted (or being accepted), not yet in `connections`
        self.freed = asyncio.Event()

    def full(self) -> bool:
        return len(self.connections) + self.pending >= self.cap

    def release_pending(self) -> None:
        self.pending -= 1
        self.freed.set()

    async def wait(self) -> None:
        while self.full():
            self.freed.clear()
            await self.freed.wait()


class ConnectionSet(set):
    """uvicorn's server_state.connections, waking the accept loops when one closes."""

    slots = None

    def discard(self, item) -> None:
        set.discard(self, item)
        slots = self.slots
        if slots is not None:
            slots.freed.set()

    def remove(self, item) -> None:
        self.discard(item)


class Acceptor:
    """Accepts on one listening socket while there is room."""

    def __init__(self, loop, sock, factory, slots: Slots, proxy_from=None) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.slots = slots
        self.proxy_from = proxy_from  # proxy.Trusted of the PROXY protocol's peers, or None
        sock.setblocking(False)
        self.task = loop.create_task(self._run())

    # -- what uvicorn and the runtime call on a server --

    def close(self) -> None:
        self.task.cancel()

    def is_serving(self) -> bool:
        return not self.task.done()

    async def wait_closed(self) -> None:
        await asyncio.wait([self.task])

    # -- the loop --

    async def _run(self) -> None:
        loop, sock, slots = self.loop, self.sock, self.slots
        while True:
            await slots.wait()
            slots.pending += 1
            try:
                conn, addr = await loop.sock_accept(sock)
            except asyncio.CancelledError:
                slots.release_pending()
                raise
            except OSError as exc:
                slots.release_pending()
                if exc.errno not in TRANSIENT:
                    log.warning("accept failed: %s (retrying)" % exc)
                    await asyncio.sleep(BACKOFF)
                continue
            try:
                await self._serve(conn, addr)
            except asyncio.CancelledError:
                conn.close()
                raise
            except OSError:
                conn.close()  # gone before it could be served
            finally:
                slots.release_pending()

    async def _serve(self, conn, addr) -> None:
        proxy_from = self.proxy_from
        if proxy_from is not None and proxy_from.trusts_peer(addr if isinstance(addr, tuple)
                                                             and addr else None):
            slots = self.slots
            slots.pending += 1  # the header protocol's own, until it hands over or closes
            header = HeaderProtocol(self.factory, self.loop, slots.release_pending)
            try:
                await self.loop.connect_accepted_socket(lambda: header, conn)
            except BaseException:
                if header.done is not None:
                    header.done = None
                    slots.release_pending()
                raise
            return
        await self.loop.connect_accepted_socket(self.factory, conn)


def start(loop, sockets, factory, server_state, cap: int, backlog: int, proxy_from=None):
    """Acceptors for `sockets`, with uvicorn's connection set replaced by a ConnectionSet."""
    connections = ConnectionSet(server_state.connections)
    server_state.connections = connections
    slots = Slots(cap, connections)
    acceptors = []
    for sock in sockets:
        # uvicorn's create_server would listen() again with the configured backlog.
        sock.listen(backlog)
        acceptors.append(Acceptor(loop, sock, factory, slots, proxy_from))
    return acceptors
