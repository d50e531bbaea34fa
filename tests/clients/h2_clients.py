"""HTTP/2 clients that do what RFC 9113 asks of a client when a server shuts a connection down
gracefully, built on the `h2` package (tests/http2.rs runs it with the test venv's Python): each
client thread keeps one h2c connection (prior knowledge) with up to --streams requests in flight
on it; on GOAWAY it opens no new stream there, waits for the streams the server said it will
finish, and sends again, on a new connection, the requests the GOAWAY says were never processed
(stream ids above its last-stream-id, RFC 9113 6.8 and 8.7: safe to retry, as browsers, curl and
httpx do). h2load does not: it counts those as errors.

python-h2 itself closes the whole connection on the first GOAWAY (any later frame, such as the
PING of a two-step graceful shutdown, is then a ProtocolError, and the streams the server is
finishing are lost); RFC 9113 6.8 keeps them open until they end, so `_StateMachine` keeps the
connection open after a GOAWAY, and the client opens no stream on it (its own rule).

    python h2_clients.py --port PORT [--host H] [--connections 4] [--streams 10] [--path /]
                         [--deadline 170]
    python h2_clients.py --port PORT --once [--path /] [--headers N --header-size BYTES]

With --once it sends one request (with N extra headers of BYTES bytes each) and prints
`{"status": CODE}`, or `{"status": null, "outcome": "..."}` when no response came: what curl
cannot show for a request head larger than the server takes (it sees the reset after the 431).

It sends GET requests until its stdin reaches end of file (or the deadline), printing
`{"progress": OK}` lines on stdout as successes grow, then one `{"summary": {...}}` line:

- ok: 2xx responses received in full;
- failed: every other outcome: another status, a stream reset, a connection that closed (or
  failed) with requests on it that no GOAWAY released, a response cut short;
- retried: requests a GOAWAY (or a REFUSED_STREAM reset) said were not processed, sent again;
- goaways: GOAWAY frames received; connections: connections opened;
- errors: the first few failures, described.
"""

import argparse
import json
import select
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


class _StateMachine(h2.connection.H2ConnectionStateMachine):
    """python-h2's connection state machine, but a GOAWAY received leaves the connection open for
    the streams it lets finish."""

    _transitions = dict(h2.connection.H2ConnectionStateMachine._transitions)
    _transitions[(h2.connection.ConnectionState.CLIENT_OPEN,
                  h2.connection.ConnectionInputs.RECV_GOAWAY)] = (
        None, h2.connection.ConnectionState.CLIENT_OPEN)


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.values = {"ok": 0, "failed": 0, "retried": 0, "goaways": 0, "connections": 0}
        self.errors = []

    def add(self, key, n=1, error=None):
        with self.lock:
            self.values[key] += n
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)


class Client:
    """One connection at a time, `streams` requests in flight on it."""

    def __init__(self, args, index, counts, stop, end):
        self.args, self.counts, self.stop, self.end = args, counts, stop, end
        self.paths = args.path or ["/"]
        self.n = index
        self.retry = []  # paths of unprocessed requests, sent first on the next connection

    def run(self):
        while not self.stop.is_set() and time.monotonic() < self.end:
            self.connection()

    def connection(self):
        try:
            sock = socket.create_connection((self.args.host, self.args.port), timeout=30)
        except OSError as e:
            self.counts.add("failed", error="connect: %s" % e)
            time.sleep(0.05)
            return
        self.counts.add("connections")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.state_machine = _StateMachine()
        conn.initiate_connection()
        inflight = {}  # stream id -> [path, status]
        last_stream_id = None  # from GOAWAY
        try:
            sock.sendall(conn.data_to_send())
            while True:
                sending = last_stream_id is None and not self.stop.is_set() \
                    and time.monotonic() < self.end
                while sending and len(inflight) < self.args.streams:
                    path = self.retry.pop() if self.retry else self.next_path()
                    stream = conn.get_next_available_stream_id()
                    conn.send_headers(stream, [
                        (":method", "GET"), (":scheme", "http"),
                        (":authority", "%s:%d" % (self.args.host, self.args.port)),
                        (":path", path)], end_stream=True)
                    inflight[stream] = [path, None]
                sock.sendall(conn.data_to_send())
                if not inflight:
                    return  # stopping, or GOAWAY with nothing left: next connection
                data = sock.recv(65536)
                if not data:
                    self.lost(inflight, "connection closed by the server")
                    return
                for event in conn.receive_data(data):
                    last_stream_id = self.on_event(conn, event, inflight, last_stream_id)
                sock.sendall(conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError) as e:
            self.lost(inflight, "%s: %s" % (type(e).__name__, e))
        finally:
            sock.close()

    def next_path(self):
        self.n += 1
        return self.paths[self.n % len(self.paths)]

    def on_event(self, conn, event, inflight, last_stream_id):
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id in inflight:
            inflight[event.stream_id][1] = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in inflight:
            path, status = inflight.pop(event.stream_id)
            if status is not None and 200 <= status < 300:
                self.counts.add("ok")
            else:
                self.counts.add("failed", error="%s: status %s" % (path, status))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id in inflight:
            path, _ = inflight.pop(event.stream_id)
            if event.error_code == h2.errors.ErrorCodes.REFUSED_STREAM:
                self.retry.append(path)
                self.counts.add("retried")
            else:
                self.counts.add("failed", error="%s: reset %s" % (path, event.error_code))
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.counts.add("goaways")
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for stream in [s for s in inflight if s > last]:
                self.retry.append(inflight.pop(stream)[0])
                self.counts.add("retried")
            return last
        return last_stream_id

    def lost(self, inflight, why):
        for path, _ in inflight.values():
            self.counts.add("failed", error="%s: %s" % (path, why))
        inflight.clear()


def once(args):
    """One request on a new connection: its status, or what happened instead."""
    sock = socket.create_connection((args.host, args.port), timeout=30)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    headers = [(":method", "GET"), (":scheme", "http"),
               (":authority", "%s:%d" % (args.host, args.port)), (":path", (args.path or ["/"])[0])]
    headers += [("x-filler-%d" % i, "a" * args.header_size) for i in range(args.headers)]
    conn.send_headers(1, headers, end_stream=True)
    sock.sendall(conn.data_to_send())
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return {"status": None, "outcome": "connection closed"}
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return {"status": int(dict(event.headers)[b":status"])}
                if isinstance(event, h2.events.StreamReset):
                    return {"status": None, "outcome": "reset %s" % event.error_code}
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--path", action="append", default=None)
    parser.add_argument("--deadline", type=float, default=170.0)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--headers", type=int, default=0)
    parser.add_argument("--header-size", type=int, default=0)
    args = parser.parse_args()
    if args.once:
        print(json.dumps(once(args)), flush=True)
        return

    counts = Counts()
    stop = threading.Event()
    end = time.monotonic() + args.deadline
    clients = [Client(args, i, counts, stop, end) for i in range(args.connections)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    reported = -1
    while time.monotonic() < end:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        if readable and not sys.stdin.buffer.read1(4096):
            break
        ok = counts.values["ok"]
        if ok != reported:
            print(json.dumps({"progress": ok}), flush=True)
            reported = ok
    stop.set()
    for t in threads:
        t.join(timeout=60)
    print(json.dumps({"summary": dict(counts.values, errors=counts.errors)}), flush=True)


if __name__ == "__main__":
    main()
