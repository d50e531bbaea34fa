"""Django Channels checks against tests/apps/channels_site: `python channels_room.py HOST PORT`.
Prints `ok` and exits 0, or raises with what failed. Uses the `websockets` client (sync API).

Three members join room `lobby` and one joins `other`; a message sent to the lobby reaches every
lobby member (the consumer's group broadcast through the channel layer) and not the other room;
Django answers HTTP on the same port."""

import json
import sys
import urllib.request

from websockets.sync.client import connect

host, port = sys.argv[1], int(sys.argv[2])
base = "ws://%s:%d/ws/room/" % (host, port)

with urllib.request.urlopen("http://%s:%d/" % (host, port), timeout=10) as resp:
    served = json.loads(resp.read())
assert served["app"] == "channels_site", served
pid = served["pid"]

lobby = [connect(base + "lobby/", open_timeout=10) for _ in range(3)]
other = connect(base + "other/", open_timeout=10)
try:
    lobby[1].send("hello room")
    for member in lobby:
        got = member.recv(timeout=10)
        assert got == "%d:hello room" % pid, got
    # The other room hears its own message first: the lobby's never reached it.
    other.send("elsewhere")
    got = other.recv(timeout=10)
    assert got == "%d:elsewhere" % pid, got
    # A member that leaves is discarded from the group; the others still hear.
    lobby[0].close()
    lobby[2].send("after a leave")
    for member in lobby[1:]:
        got = member.recv(timeout=10)
        assert got == "%d:after a leave" % pid, got
finally:
    for ws in lobby + [other]:
        ws.close()
print("ok")
