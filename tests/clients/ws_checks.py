"""WebSocket checks against tests/apps/ws_conformance.py: `python ws_checks.py HOST PORT`.
Prints `ok` and exits 0, or raises with what failed. Uses the `websockets` client (sync API)."""

import json
import sys
import time
import urllib.request

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

host, port = sys.argv[1], int(sys.argv[2])
base = "ws://%s:%d" % (host, port)

# Subprotocol and headers of the accept; text, bytes, fragments, ping; the client's close code.
with connect(base + "/echo", subprotocols=["second", "first"], max_size=None) as ws:
    assert ws.subprotocol == "second", ws.subprotocol
    assert ws.response.headers.get("x-ws") == "yes", ws.response.headers
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.send(b"\x00\x01binary")
    assert ws.recv() == b"\x00\x01binary"
    ws.send(["frag", "mented ", "text"])  # one message in three frames
    assert ws.recv() == "fragmented text"
    big = "x" * (3 * 1024 * 1024)
    ws.send(big)
    assert ws.recv() == big
    ws.ping().wait(10)  # the engine answers pings
    ws.close(code=4001, reason="client done")

deadline = time.monotonic() + 20
while True:
    noted = json.loads(urllib.request.urlopen("http://%s:%d/noted" % (host, port), timeout=10).read())
    if 4001 in noted:
        break
    assert time.monotonic() < deadline, "the app never heard close code 4001: %r" % noted
    time.sleep(0.02)

# Refused before accept: 403.
try:
    connect(base + "/reject").close()
    raise AssertionError("a rejected WebSocket was accepted")
except InvalidStatus as exc:
    assert exc.response.status_code == 403, exc.response.status_code

# The app's close code and reason reach the client.
with connect(base + "/bye") as ws:
    try:
        ws.recv()
        raise AssertionError("no close from /bye")
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 4002 and exc.rcvd.reason == "bye", exc

# The scope.
with connect(base + "/scope", subprotocols=["a", "b"]) as ws:
    view = json.loads(ws.recv())
    assert view == {"type": "websocket", "scheme": "ws", "path": "/scope", "subprotocols": ["a", "b"],
                    "http_version": "1.1"}, view

# A message over 16 MiB closes the connection with 1009 (uvicorn's ws_max_size default).
with connect(base + "/echo", max_size=None) as ws:
    try:
        ws.send("y" * (16 * 1024 * 1024 + 1))  # the server may close while it is being sent
        ws.recv(timeout=20)
        raise AssertionError("a message over 16 MiB was echoed")
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 1009, exc

print("ok")
