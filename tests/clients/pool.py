"""A keep-alive client pool built on http.client, the way urllib3's HTTPConnectionPool works: a
LIFO queue of persistent HTTPConnection objects, taken by client threads for one request each
and put back. Run by tests/pool.rs with the test venv's Python; standard library only.

    python pool.py --port PORT [--host H] [--connections 8] [--threads 4] [--path /] [--no-check]
                   [--deadline 170]

It sends GET requests until its stdin reaches end of file (or the deadline), printing
`{"progress": OK}` lines on stdout as successes grow, then one `{"summary": {...}}` line:

- ok: 2xx responses read in full;
- failed: every other outcome (a connection error at any point, a short body, another status).
  Nothing is retried, so each lost request is counted here;
- failed_reused_before_response: the part of `failed` that happened on a reused connection
  before a single response byte arrived: the case RFC 9112 9.3.1 lets a client retry
  (urllib3 does, with its default Retry) and the one a server's keep-alive close races with;
- stale_on_checkout: pooled connections found closed by the server when taken from the pool
  (urllib3's is_connection_dropped check: readable with nothing to read) and replaced before
  any request was sent on them. Not a failure: no request was written. `--no-check` turns the
  check off (a bare http.client user: the request is sent on whatever socket is there);
- server_closed: responses that carried `Connection: close` (http.client then closes the
  connection, and the next request on that pool slot opens a new one);
- errors: the first few failures, described.
"""

import argparse
import http.client
import json
import queue
import select
import sys
import threading
import time


class _CountingReader:
    """Wraps the response's socket file and counts the bytes read from it."""

    def __init__(self, raw):
        self._raw = raw
        self.count = 0

    def _add(self, data):
        self.count += len(data)
        return data

    def readline(self, *args):
        return self._add(self._raw.readline(*args))

    def read(self, *args):
        return self._add(self._raw.read(*args))

    def read1(self, *args):
        return self._add(self._raw.read1(*args))

    def readinto(self, buffer):
        n = self._raw.readinto(buffer)
        self.count += n or 0
        return n

    def __getattr__(self, name):
        return getattr(self._raw, name)


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection that counts the requests sent on its current socket and the bytes of
    the response it is reading (http.client drops the response object when `begin()` fails)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests = 0
        self.reader = None
        self.response_class = self._response

    def _response(self, sock, *args, **kwargs):
        response = http.client.HTTPResponse(sock, *args, **kwargs)
        self.reader = response.fp = _CountingReader(response.fp)
        return response

    def connect(self):
        super().connect()
        self.requests = 0

    def response_bytes(self):
        return self.reader.count if self.reader is not None else 0


def _dropped(conn):
    """urllib3's check: an open socket that is readable now has been closed (or reset) by the
    server, since no response is pending on an idle pooled connection."""
    if conn.sock is None:
        return False
    readable, _, _ = select.select([conn.sock], [], [], 0)
    return bool(readable)


class Pool:
    def __init__(self, host, port, size, check):
        self.check = check
        self.connections = queue.LifoQueue()
        for _ in range(size):
            self.connections.put(_Connection(host, port, timeout=30))
        self.lock = threading.Lock()
        self.counts = {
            "ok": 0,
            "failed": 0,
            "failed_reused_before_response": 0,
            "stale_on_checkout": 0,
            "server_closed": 0,
        }
        self.errors = []

    def _count(self, key, error=None):
        with self.lock:
            self.counts[key] += 1
            if error is not None and len(self.errors) < 20:
                self.errors.append(error)

    def request(self, path):
        conn = self.connections.get()
        try:
            if self.check and _dropped(conn):
                conn.close()
                self._count("stale_on_checkout")
            self._request(conn, path)
        finally:
            self.connections.put(conn)

    def _request(self, conn, path):
        reused = conn.sock is not None and conn.requests > 0
        conn.reader = None
        try:
            conn.request("GET", path)
            conn.requests += 1
            response = conn.getresponse()
            body = response.read()
            closes = response.will_close
        except (OSError, http.client.HTTPException) as e:
            got_bytes = conn.response_bytes() > 0
            conn.close()
            what = f"{type(e).__name__}: {e} (reused={reused}, response bytes={got_bytes})"
            self._count("failed", what)
            if reused and not got_bytes:
                self._count("failed_reused_before_response")
            return
        if closes:
            self._count("server_closed")
        if 200 <= response.status < 300:
            self._count("ok")
        else:
            self._count("failed", f"status {response.status}: {body[:100]!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--path", action="append", default=None)
    parser.add_argument("--no-check", dest="check", action="store_false")
    parser.add_argument("--deadline", type=float, default=170.0)
    args = parser.parse_args()
    paths = args.path or ["/"]

    pool = Pool(args.host, args.port, args.connections, args.check)
    stop = threading.Event()
    end = time.monotonic() + args.deadline

    def client(index):
        n = index
        while not stop.is_set() and time.monotonic() < end:
            pool.request(paths[n % len(paths)])
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.threads)]
    for t in threads:
        t.start()
    # Until stdin ends: report progress as it grows.
    reported = -1
    while time.monotonic() < end:
        readable, _, _ = select.select([sys.stdin], [], [], 0.05)
        if readable and not sys.stdin.buffer.read1(4096):
            break
        ok = pool.counts["ok"]
        if ok != reported:
            print(json.dumps({"progress": ok}), flush=True)
            reported = ok
    stop.set()
    for t in threads:
        t.join(timeout=60)
    print(json.dumps({"summary": dict(pool.counts, errors=pool.errors)}), flush=True)


if __name__ == "__main__":
    main()
