"""The PROXY protocol (HAProxy's v1 text and v2 binary headers) for the uvicorn engine, with the
native engine's rules (engine/src/http/proxyproto.rs; the two must agree): a connection from a
proxy_allow_from peer must begin with a header, told apart by its first bytes; its source
address becomes the client (v2 LOCAL, v1 UNKNOWN, the unspecified and unix families keep the
socket's peer). A malformed header, end of file, or no header within HEADER_TIMEOUT closes the
connection with a debug line.

HeaderProtocol buffers until the header is whole, then hands the transport to uvicorn's own
protocol (`transport.set_protocol`, then its `connection_made`, then the bytes read past the
header), sets that protocol's `client` (uvicorn's H11Protocol and HttpToolsProtocol read it into
every scope) and steps out of the path: no cost per request afterwards. Until then the
connection is not in uvicorn's `server_state.connections` (uvicorn's protocol adds itself in
connection_made), so the keep-alive drain only ever sees uvicorn's own protocols.
"""

import ipaddress
import struct

from .log import log
from .proxy import ProxiedClient

HEADER_TIMEOUT = 5.0
V1_MAX = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


class HeaderError(ValueError):
    pass


def parse(buf: bytes):
    """None while incomplete; else (source (host, port) or None, header length)."""
    n = len(buf)
    if n >= 12 and buf[:12] == V2_SIGNATURE:
        return _parse_v2(buf)
    if n and buf[:6] == b"PROXY "[:min(n, 6)]:
        end = buf.find(b"\r\n", 0, V1_MAX)
        if end >= 0:
            return _parse_v1(buf[:end]), end + 2
        if n >= V1_MAX:
            raise HeaderError("a v1 header longer than 107 bytes")
        return None
    if buf[:12] == V2_SIGNATURE[:min(n, 12)]:
        return None
    raise HeaderError("not a PROXY protocol header")


def _parse_v1(line: bytes):
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise HeaderError("a v1 header that is not ASCII") from None
    bad = HeaderError("a malformed v1 header %r" % text)
    fields = text.split(" ")
    kind = fields[1] if len(fields) > 1 else None
    if kind == "UNKNOWN":
        return None
    if kind not in ("TCP4", "TCP6") or len(fields) != 6:
        raise bad
    try:
        source = ipaddress.ip_address(fields[2])
        dest = ipaddress.ip_address(fields[3])
    except ValueError:
        raise bad from None
    version = 6 if kind == "TCP6" else 4
    if source.version != version or dest.version != version:
        raise bad
    ports = []
    for port in fields[4:6]:
        if not port.isdigit() or not port.isascii() or (len(port) > 1 and port[0] == "0") \
                or int(port) > 65535:
            raise bad
        ports.append(int(port))
    return str(source), ports[0]


def _parse_v2(buf: bytes):
    if len(buf) < 16:
        return None
    length = struct.unpack_from("!H", buf, 14)[0]
    if len(buf) < 16 + length:
        return None
    version, command = buf[12] >> 4, buf[12] & 0x0F
    if version != 2:
        raise HeaderError("a v2 header of version %d" % version)
    used = 16 + length
    if command == 0:
        return None, used  # LOCAL: the proxy's own connection (a health check)
    if command != 1:
        raise HeaderError("a v2 header with command %d" % command)
    family = buf[13] >> 4
    body = buf[16:used]
    if family == 1:
        if len(body) < 12:
            raise HeaderError("a v2 header too short for its addresses")
        return (str(ipaddress.IPv4Address(body[:4])), struct.unpack_from("!H", body, 8)[0]), used
    if family == 2:
        if len(body) < 36:
            raise HeaderError("a v2 header too short for its addresses")
        return (str(ipaddress.IPv6Address(body[:16])), struct.unpack_from("!H", body, 32)[0]), used
    if family in (0, 3):
        return None, used  # unspecified, unix: keep the socket's peer
    raise HeaderError("a v2 header with address family %d" % family)


class HeaderProtocol:
    """The first protocol of a connection from an allowed proxy: reads the PROXY header, then
    gives the transport to `inner` (uvicorn's protocol, made by `factory`). `done` is called
    once, when the header phase ends either way (the accept loop's connection count)."""

    __slots__ = ("factory", "loop", "done", "transport", "buf", "timer", "peer")

    def __init__(self, factory, loop, done) -> None:
        self.factory = factory
        self.loop = loop
        self.done = done
        self.transport = None
        self.buf = b""
        self.timer = None
        self.peer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.timer = self.loop.call_later(HEADER_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.buf += data
        try:
            parsed = parse(self.buf)
        except HeaderError as exc:
            self._close("%s" % exc)
            return
        if parsed is None:
            return
        source, used = parsed
        transport, rest = self.transport, self.buf[used:]
        self._end()
        inner = self.factory()
        transport.set_protocol(inner)
        inner.connection_made(transport)
        if source is not None and hasattr(inner, "client"):
            client = ProxiedClient(source)
            client.via = self.peer[0] if isinstance(self.peer, tuple) else None
            inner.client = client
        if rest:
            inner.data_received(rest)

    def eof_received(self):
        self._close("the connection closed before its header ended")
        return False

    def connection_lost(self, exc) -> None:
        if self.transport is not None:
            self._end()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _timed_out(self) -> None:
        self._close("no header within %gs" % HEADER_TIMEOUT)

    def _close(self, why: str) -> None:
        if self.transport is None:
            return
        transport = self.transport
        log.debug("PROXY protocol: %s (from %s): connection closed"
                  % (why, _show(self.peer)))
        self._end()
        transport.close()

    def _end(self) -> None:
        self.transport = None
        self.buf = b""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        done, self.done = self.done, None
        if done is not None:
            done()


def _show(peer) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return "%s:%s" % (peer[0], peer[1])
    return str(peer or "?")
