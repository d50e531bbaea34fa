"""The uvicorn engine's proxy headers (proxy.py), PROXY protocol (proxyproto.py) and accept loop
(uvicorn_accept.py). The rules are the native engine's (engine/src/http/proxy.rs,
proxyproto.rs), checked on both engines by tests/proxy.rs; here the edge cases, and the accept
loop and the header hand-over on both event loops (asyncio and uvloop), over real loopback
sockets with uvicorn's own HTTP protocol."""

import asyncio
import socket
import struct

import pytest

from herdsman.runtime import proxyproto
from herdsman.runtime.engines import uvicorn_accept
from herdsman.runtime.proxy import ProxiedClient, Trusted, apply, parse_forwarded


def scope_for(headers, client=("127.0.0.1", 5000), kind="http"):
    return {
        "type": kind,
        "client": client,
        "server": ("127.0.0.1", 8000),
        "scheme": "http" if kind == "http" else "ws",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def applied(spec, headers, **kw):
    trusted = Trusted(spec)
    scope = scope_for(headers, **kw)
    if trusted.trusts_peer(scope["client"]):
        apply(trusted, scope)
    return scope["client"], scope["scheme"], scope["server"][1]


@pytest.mark.parametrize("value, expected", [
    ('for=192.0.2.60;proto=http;by=203.0.113.43', [["192.0.2.60", "http"]]),
    ('for="[2001:db8:cafe::17]:4711"', [["[2001:db8:cafe::17]:4711", None]]),
    ('For="_gazonk", for=198.51.100.17', [["_gazonk", None], ["198.51.100.17", None]]),
    ('proto=https', [[None, "https"]]),
    ('for="a;b,c";proto=https', [["a;b,c", "https"]]),
    ('for="esc\\"aped"', [['esc"aped', None]]),
    (' , ;, for=1.2.3.4,', [["1.2.3.4", None]]),
    ('', []),
])
def test_forwarded_elements(value, expected):
    elements = []
    parse_forwarded(value, elements)
    assert elements == expected


def test_forwarded_right_most_untrusted_and_obfuscated():
    fwd = [("Forwarded", 'for="[2001:db8::17]:4711";proto=https, for=127.0.0.1;proto=http')]
    assert applied("127.0.0.0/8", fwd + [("X-Forwarded-Port", "8443")]) == \
        (("2001:db8::17", 4711), "https", 8443)
    # every hop trusted: the left-most
    assert applied("*", [("Forwarded", "for=10.0.0.1, for=10.0.0.2")])[0] == ("10.0.0.1", 0)
    assert applied("127.0.0.1,10.0.0.0/8", [("Forwarded", "for=10.0.0.1, for=10.0.0.2")])[0] == \
        ("10.0.0.1", 0)
    # obfuscated or absent for=: the peer stays; the element's proto applies
    assert applied("127.0.0.1", [("Forwarded", "for=_hidden;proto=https")]) == \
        (("127.0.0.1", 5000), "https", 8000)
    assert applied("127.0.0.1", [("Forwarded", "for=unknown")])[0] == ("127.0.0.1", 5000)
    # X-Forwarded-For names the client when present; X-Forwarded-Proto the scheme
    assert applied("127.0.0.1", [("X-Forwarded-For", "203.0.113.9"),
                                 ("Forwarded", "for=198.51.100.1;proto=https")]) == \
        (("203.0.113.9", 0), "https", 8000)
    # websocket scopes get ws/wss
    assert applied("127.0.0.1", [("X-Forwarded-Proto", "https")], kind="websocket")[1] == "wss"
    # not a single port number: ignored
    assert applied("127.0.0.1", [("X-Forwarded-Port", "443, 80")])[2] == 8000


def test_untrusted_peers_and_unix_sockets_change_nothing():
    headers = [("X-Forwarded-For", "203.0.113.9"), ("Forwarded", "for=1.2.3.4;proto=https"),
               ("X-Forwarded-Port", "1")]
    assert applied("10.0.0.0/8", headers) == (("127.0.0.1", 5000), "http", 8000)
    assert applied("127.0.0.1", headers, client=None)[0] is None
    assert applied("*", headers, client=None)[0] == ("203.0.113.9", 0)
    # IPv4-mapped peers match their IPv4 entries, as in proxy.rs
    assert applied("127.0.0.1", headers, client=("::ffff:127.0.0.1", 1))[0] == ("203.0.113.9", 0)


def test_a_proxied_client_is_trusted_by_its_proxy():
    client = ProxiedClient(("198.51.100.7", 40001))
    client.via = "127.0.0.1"
    assert applied("127.0.0.1", [("X-Forwarded-For", "192.0.2.1")], client=client)[0] == \
        ("192.0.2.1", 0)
    client.via = "10.9.9.9"
    assert applied("127.0.0.1", [("X-Forwarded-For", "192.0.2.1")], client=client)[0] == client


def v2(command, family, block):
    return proxyproto.V2_SIGNATURE + bytes([0x20 | command, family]) + \
        struct.pack("!H", len(block)) + block


@pytest.mark.parametrize("data, expected", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET", (("1.2.3.4", 1), 32)),
    (b"PROXY TCP6 ::1 ::2 65535 2\r\n", (("::1", 65535), 28)),
    (b"PROXY UNKNOWN\r\n", (None, 15)),
    (b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n", (None, 31)),
    (v2(1, 0x11, bytes([9, 8, 7, 6, 1, 1, 1, 1]) + struct.pack("!HH", 4242, 80)),
     (("9.8.7.6", 4242), 28)),
    (v2(1, 0x21, bytes(15) + b"\x01" + bytes(16) + struct.pack("!HH", 7, 80) + b"tlv"),
     (("::1", 7), 55)),
    (v2(0, 0x00, b""), (None, 16)),
    (v2(1, 0x31, bytes(216)), (None, 232)),
])
def test_headers(data, expected):
    assert proxyproto.parse(data) == expected


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", b"PROXY TCP4 ::1 ::1 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
    b"PROXY TCP4 " + b"1" * 120, v2(2, 0x11, b""), v2(1, 0x11, b"short"),
    proxyproto.V2_SIGNATURE[:12] + b"\x11\x11\x00\x00",
])
def test_bad_headers(data):
    with pytest.raises(proxyproto.HeaderError):
        proxyproto.parse(data)


@pytest.mark.parametrize("data", [b"", b"PRO", b"PROXY TCP4 1.2", proxyproto.V2_SIGNATURE[:5],
                                  v2(1, 0x11, bytes(12))[:20]])
def test_incomplete_headers(data):
    assert proxyproto.parse(data) is None


# -- the accept loop and the hand-over, on both loops --

def loops():
    found = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop
    except ImportError:
        return found
    return found + [pytest.param(uvloop.new_event_loop, id="uvloop")]


async def _exchange(port, preamble=b"", close=True):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(preamble + b"GET / HTTP/1.1\r\nHost: x\r\n" +
                 (b"Connection: close\r\n" if close else b"") + b"\r\n")
    await writer.drain()
    return reader, writer


async def _body(reader):
    data = await asyncio.wait_for(reader.read(65536), 10)
    while b"\r\n\r\n" not in data:
        more = await asyncio.wait_for(reader.read(65536), 10)
        if not more:
            break
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += await asyncio.wait_for(reader.read(65536), 10)
    return body.decode()


async def _serve_and_check():
    import uvicorn
    from uvicorn.server import ServerState

    async def app(scope, receive, send):
        body = repr(scope["client"]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    config = uvicorn.Config(app, proxy_headers=False, lifespan="off", log_level="warning",
                            log_config=None)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()

    def factory():
        return config.http_protocol_class(config=config, server_state=state, app_state={})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    acceptors = uvicorn_accept.start(loop, [sock], factory, state, 1, 16, Trusted("127.0.0.1"))
    try:
        # the PROXY header names the client; the connection is uvicorn's, in its set
        reader, writer = await _exchange(port, b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 80\r\n",
                                         close=False)
        assert await _body(reader) == "('198.51.100.7', 4000)"
        assert len(state.connections) == 1
        assert all(hasattr(c, "cycle") for c in state.connections)
        # at the cap (1): the next connection waits in the listen queue
        reader2, writer2 = await _exchange(port, proxyproto.V2_SIGNATURE + b"\x20\x00\x00\x00")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader2.read(1), 0.3)
        writer.close()
        body = await _body(reader2)
        assert body.startswith("('127.0.0.1', "), body  # v2 LOCAL keeps the peer
        # garbage closes the connection without an answer
        reader3, writer3 = await _exchange(port, b"NOT A HEADER\r\n")
        assert await asyncio.wait_for(reader3.read(), 10) == b""
        writer3.close()
        writer2.close()
    finally:
        for acceptor in acceptors:
            acceptor.close()
        for acceptor in acceptors:
            await acceptor.wait_closed()
        sock.close()


@pytest.mark.parametrize("new_loop", loops())
def test_accept_loop_caps_and_hands_over_on_both_loops(new_loop):
    loop = new_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(_serve_and_check(), 30))
    finally:
        loop.close()
