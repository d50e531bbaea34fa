#!/usr/bin/env python3
"""WebSocket echo load: `wsload.py PORT CONNECTIONS SECONDS [WARMUP]`, prints one JSON object.

Each of CONNECTIONS WebSocket connections (to ws://127.0.0.1:PORT/ws) sends a small text
message and waits for its echo, then sends the next: the figure is echoes received per second
over SECONDS, after WARMUP seconds in which they are not counted, with the round trip's p50 and
p99. The client is the same for every server and as cheap as Python can be (asyncio protocols
on uvloop when installed, frames built once, the echo's header parsed and its payload skipped),
so that the servers, not the client, set the pace; it shares the machine's CPUs with them, as
wrk does in the HTTP rows.
"""

import asyncio
import base64
import json
import os
import sys
import time

HOST = "127.0.0.1"
MESSAGE = b"hello, echo"
MASK = b"\x11\x22\x33\x44"
# One masked text frame (RFC 6455 5.3: every client frame is masked), built once.
FRAME = bytes([0x81, 0x80 | len(MESSAGE)]) + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(MESSAGE))


class Echo(asyncio.Protocol):
    def __init__(self, run):
        self.run = run
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.sent_at = 0.0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())

    def data_received(self, data):
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[:end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(f"handshake refused: {head[:80]!r}"))
                return
            self.upgraded.set_result(None)
        while len(self.buf) >= 2:
            n = self.buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, start = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < start + n:
                return
            opcode = self.buf[0] & 0x0F
            del self.buf[:start + n]
            if opcode == 0x8:
                self.run.closed += 1
                self.transport.close()
                return
            if opcode in (0x1, 0x2):
                self.run.echoed(time.monotonic() - self.sent_at)
                self.send()

    def send(self):
        if self.run.stopping:
            return
        self.sent_at = time.monotonic()
        self.transport.write(FRAME)

    def connection_lost(self, exc):
        if not self.upgraded.done():
            self.upgraded.set_exception(RuntimeError(f"connection lost in the handshake: {exc}"))


class Run:
    def __init__(self):
        self.counting = False
        self.stopping = False
        self.count = 0
        self.closed = 0
        self.latencies = []

    def echoed(self, took):
        if self.counting:
            self.count += 1
            if self.count % 8 == 0:  # a sample is enough for the percentiles
                self.latencies.append(took)


async def main(port, connections, seconds, warmup):
    loop = asyncio.get_running_loop()
    run = Run()
    conns = []
    for _ in range(connections):
        _, proto = await loop.create_connection(lambda: Echo(run), HOST, port)
        conns.append(proto)
    await asyncio.wait_for(asyncio.gather(*(c.upgraded for c in conns)), 30)
    for c in conns:
        c.send()
    await asyncio.sleep(warmup)
    run.counting = True
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    run.counting = False
    took = time.monotonic() - t0
    run.stopping = True
    for c in conns:
        c.transport.close()
    lat = sorted(run.latencies)

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))] * 1000, 3) if lat else None

    return {"messages": run.count, "seconds": round(took, 3), "mps": round(run.count / took) if took else 0,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "closed_by_server": run.closed,
            "connections": connections}


if __name__ == "__main__":
    port, connections, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    warmup = float(sys.argv[4]) if len(sys.argv) > 4 else 0.5
    try:
        import uvloop
        result = uvloop.run(main(port, connections, seconds, warmup))
    except ImportError:
        result = asyncio.run(main(port, connections, seconds, warmup))
    print(json.dumps(result))
