"""Checks of a WSGI server over loopback, run by tests/wsgi.rs against a herdsman serving one of
the test apps (standard library only). Each check prints what it verified and exits 1 on the
first failure with what was expected and what came back.

    python wsgi_checks.py CHECK --port PORT [--deadline 120]

CHECK (the app herdsman must serve):
  conformance   wsgi_conformance:app   PEP 3333 environ, wsgi.input every way, write(), streaming,
                                       file_wrapper, exc_info, start_response misuse, close()
  http          wsgi_conformance:app   keep-alive, pipelining, chunked requests, Expect:
                                       100-continue, HEAD, HTTP/1.0, bad requests (400/414/431)
  fuzz          wsgi_conformance:app   seeded random mutations of valid requests: each gets a
                                       response or a close, the worker still serves after
  django        django_site.wsgi:application   a real startproject site
  flask         flask_app:app
  large         stream_app:app         1 GiB up and 1 GiB down, the worker's RSS stays flat
"""

import argparse
import errno
import hashlib
import http.client
import json
import random
import socket
import sys
import time

HOST = "127.0.0.1"
TIMEOUT = 30


def fail(message):
    print("FAIL: " + message, flush=True)
    sys.exit(1)


def ok(message):
    print("ok: " + message, flush=True)


def conn(port):
    return http.client.HTTPConnection(HOST, port, timeout=TIMEOUT)


def fetch(port, method, path, body=None, headers=None):
    c = conn(port)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def expect(cond, message):
    if not cond:
        fail(message)


def raw_exchange(port, data, read_until_close=True, timeout=10):
    """Sends raw bytes, returns everything read until the server closes (or the timeout)."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)
    finally:
        s.close()


# -- conformance --------------------------------------------------------------------------------

REQUIRED = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
            "SERVER_PROTOCOL", "wsgi.url_scheme"]


def check_conformance(port):
    status, _, body = fetch(port, "GET", "/?x=1&y=%20z", headers={"X-Custom": "v1", "Cookie": "a=1"})
    expect(status == 200, "GET / answered %d: %r" % (status, body[:300]))
    env = json.loads(body)
    for key in REQUIRED:
        expect(key in env, "environ lacks %s: %r" % (key, sorted(env)))
    expect(env["wsgi.version"] == [1, 0], "wsgi.version %r" % env["wsgi.version"])
    expect(env["QUERY_STRING"] == "x=1&y=%20z", "QUERY_STRING %r" % env["QUERY_STRING"])
    expect(env["SERVER_PROTOCOL"] == "HTTP/1.1", "SERVER_PROTOCOL %r" % env["SERVER_PROTOCOL"])
    expect(env["HTTP_X_CUSTOM"] == "v1", "HTTP_X_CUSTOM %r" % env.get("HTTP_X_CUSTOM"))
    expect(env["wsgi.multiprocess"] is True and env["wsgi.run_once"] is False, "multiprocess/run_once")
    ok("environ has every required key, the query string as sent, headers as HTTP_*")

    status, _, body = fetch(port, "GET", "/caf%C3%A9/x%2Fy")
    expect(status == 404, "unknown path answered %d" % status)
    payload = bytes(range(256)) * 400 + b"\nlast line without newline"
    want = {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    for how in ("read", "readline", "readlines", "iter", "chunks", "sized"):
        status, _, body = fetch(port, "POST", "/echo?how=" + how, body=payload)
        expect(status == 200, "echo %s answered %d: %r" % (how, status, body[:300]))
        expect(json.loads(body) == want, "echo %s: %r, want %r" % (how, body, want))

        def gen():
            for i in range(0, len(payload), 7000):
                yield payload[i:i + 7000]

        # A generator body with no length: http.client sends it chunked.
        status, _, body = fetch(port, "POST", "/echo?how=" + how, body=gen())
        expect(status == 200 and json.loads(body) == want, "chunked echo %s: %d %r" % (how, status, body[:200]))
        if how in ("readline", "iter", "chunks", "sized"):
            status, _, body = fetch(port, "POST", "/vecho?how=" + how, body=payload)
            expect(status == 200 and json.loads(body) == want, "validated echo %s: %d %r" % (how, status, body[:200]))
    ok("wsgi.input: read, readline, readlines, iteration, sized reads; Content-Length and chunked")

    status, _, body = fetch(port, "GET", "/write")
    expect((status, body) == (200, b"written then iterated\n"), "write(): %d %r" % (status, body))
    status, headers, body = fetch(port, "GET", "/stream?n=50")
    expect(status == 200 and body == b"".join(b"chunk %d\n" % i for i in range(50)), "stream: %d %r" % (status, body[:100]))
    ok("write() then the iterable; a generator streamed")

    for size in (0, 1, 100000, 3 * 1024 * 1024 + 17):
        want = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        for route in ("/file", "/filelike"):
            status, headers, body = fetch(port, "GET", "%s?size=%d" % (route, size))
            expect(status == 200 and body == want, "%s size %d: %d, %d bytes" % (route, size, status, len(body)))
    ok("wsgi.file_wrapper over a real file and over a BytesIO, 0 B to 3 MiB")

    status, _, body = fetch(port, "GET", "/exc_info")
    expect(status == 500, "start_response with exc_info before the body: %d %r" % (status, body))
    for route in ("/twice", "/not_bytes"):
        status, _, body = fetch(port, "GET", route)
        expect(status == 500, "%s must be refused with 500, got %d %r" % (route, status, body))
    ok("exc_info replaces the head; start_response twice and a str body answered 500")

    c = conn(port)
    c.request("GET", "/late_error")
    r = c.getresponse()
    try:
        data = r.read()
        fail("a response whose iterable raised after the head must be cut short, got %r" % data)
    except http.client.IncompleteRead:
        pass
    c.close()
    ok("an error after the head went out cuts the response short")

    _, _, body = fetch(port, "GET", "/closed")
    before = json.loads(body)["closed"]
    for _ in range(5):
        fetch(port, "GET", "/write")
    _, _, body = fetch(port, "GET", "/closed")
    after = json.loads(body)["closed"]
    expect(after - before >= 6, "close() called %d times over 6 responses" % (after - before))
    ok("the iterable's close() is called for every response")


# -- http -----------------------------------------------------------------------------------------

def status_of(raw):
    line = raw.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def read_until_closed(s):
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_sized_response(s):
    """One whole response with a Content-Length, read from socket `s`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def check_http(port):
    c = conn(port)
    pids = set()
    for i in range(100):
        c.request("GET", "/?n=%d" % i)
        r = c.getresponse()
        body = r.read()
        expect(r.status == 200, "keep-alive request %d: %d" % (i, r.status))
        pids.add(json.loads(body)["pid"])
        expect(not r.will_close, "the server closed a keep-alive connection after request %d" % i)
    c.close()
    ok("100 requests on one keep-alive connection")

    pipelined = b"".join(b"GET /headers HTTP/1.1\r\nHost: x\r\nX-N: %d\r\n\r\n" % i for i in range(3))
    raw = raw_exchange(port, pipelined + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = raw.count(b"HTTP/1.1 200")
    expect(answers == 4, "4 pipelined requests, %d answers: %r" % (answers, raw[:500]))
    positions = [raw.find(b'"HTTP_X_N": "%d"' % i) for i in range(3)]
    expect(all(p >= 0 for p in positions) and positions == sorted(positions), "pipelined answers out of order: %r" % positions)
    ok("pipelined requests answered in order")

    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = s.recv(4096)
    expect(interim.startswith(b"HTTP/1.1 100"), "Expect: 100-continue got %r before the body" % interim)
    s.sendall(b"hello")
    data = b""
    while b"sha256" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    expect(hashlib.sha256(b"hello").hexdigest().encode() in data, "100-continue body: %r" % data)
    ok("Expect: 100-continue answered 100, then the body read")

    raw = raw_exchange(port, b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, rest = raw.partition(b"\r\n\r\n")
    expect(status_of(raw) == 200 and rest == b"", "HEAD: %r" % raw[:300])
    ok("HEAD answered with no body")

    raw = raw_exchange(port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    expect(status_of(raw) == 200 and raw.startswith(b"HTTP/1."), "HTTP/1.0: %r" % raw[:200])
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    first = read_sized_response(s)
    # RFC 9112 9.3: an HTTP/1.0 client's keep-alive is a request; the server may honour it or
    # close after the response. Either way the second request must be answered.
    reused = True
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        second = read_until_closed(s)
    except OSError:
        second = b""
    s.close()
    if not second:
        reused = False
        second = raw_exchange(port, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    expect(status_of(first) == 200 and status_of(second) == 200, "HTTP/1.0 keep-alive: %r / %r" % (first[:100], second[:100]))
    ok("HTTP/1.0 keep-alive %s" % ("honoured: two requests on one connection" if reused else "declined: closed after the first response"))
    ok("HTTP/1.0 with and without keep-alive")

    bad = {
        "garbage request line": (b"THIS IS NOT HTTP\r\n\r\n", (400,)),
        "bad header line": (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", (400,)),
        "bad Content-Length": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", (400,)),
        "a 10 KB URI": (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", (414,)),
        "200 header fields": (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n", (431,)),
        "a 10 KB header field": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10000 + b"\r\n\r\n", (431,)),
        "a 100 KB head": (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 1000) for i in range(100)) + b"\r\n", (431,)),
    }
    for name, (data, statuses) in bad.items():
        raw = raw_exchange(port, data)
        expect(status_of(raw) in statuses, "%s: want %s, got %r" % (name, statuses, raw[:200]))
    ok("bad requests answered 400, 414, 431")
    status, _, body = fetch(port, "GET", "/")
    expect(status == 200 and json.loads(body)["pid"] in pids, "the worker after bad requests: %d %r" % (status, body[:200]))
    ok("the same worker still serves")


# -- fuzz -----------------------------------------------------------------------------------------

SEEDS = [
    b"GET /?a=b HTTP/1.1\r\nHost: x\r\nUser-Agent: fuzz\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
    b"POST /echo?how=iter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /headers HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\nCookie: b=2\r\nX_Under: 1\r\n\r\n",
    b"HEAD /stream?n=3 HTTP/1.0\r\n\r\n",
]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.3 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op < 0.5:
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op < 0.7 and data:
            del data[pos:pos + rng.randint(1, 8)]
        elif op < 0.85:
            data[pos:pos] = rng.choice([b"\r\n", b"\n", b":", b" ", b"%", b"\x00", b"chunked", b"-1", b"99999999999999999999"])
        else:
            data = data[:pos]
    return bytes(data)


def check_fuzz(port, count=1500, seed=15):
    _, _, body = fetch(port, "GET", "/")
    pid = json.loads(body)["pid"]
    rng = random.Random(seed)
    answered = closed = 0
    for i in range(count):
        data = mutate(rng, rng.choice(SEEDS))
        s = socket.create_connection((HOST, port), timeout=5)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except socket.timeout:
            fail("mutation %d got no answer and no close within 5 s: %r" % (i, data))
        except ConnectionResetError:
            reply = b""
        except OSError as exc:
            # The server closed a malformed request with our bytes unread: the reset arrived
            # before our shutdown (ENOTCONN), the same outcome as a reset while reading.
            if exc.errno != errno.ENOTCONN:
                raise
            reply = b""
        finally:
            s.close()
        if reply:
            expect(reply.startswith(b"HTTP/1."), "mutation %d answered with no status line: %r -> %r" % (i, data, reply[:200]))
            answered += 1
        else:
            closed += 1
    status, _, body = fetch(port, "GET", "/")
    expect(status == 200 and json.loads(body)["pid"] == pid, "after the fuzz the worker changed or fails: %d %r" % (status, body[:200]))
    ok("%d mutated requests (seed %d): %d answered, %d closed; the same worker serves" % (count, seed, answered, closed))


# -- frameworks -----------------------------------------------------------------------------------

def check_django(port):
    status, _, body = fetch(port, "GET", "/")
    expect(status == 200 and json.loads(body)["app"] == "django_site", "django /: %d %r" % (status, body[:200]))
    status, _, body = fetch(port, "GET", "/items/7")
    expect(status == 200 and json.loads(body)["item_id"] == 7, "django /items/7: %d %r" % (status, body[:200]))
    status, headers, body = fetch(port, "GET", "/admin/login/")
    expect(status == 200 and b"Django administration" in body and "csrftoken" in headers.get("set-cookie", ""),
           "django admin login page: %d %r" % (status, body[:200]))
    payload = b"x" * 300000
    status, _, body = fetch(port, "POST", "/echo", body=payload)
    expect(status == 200 and json.loads(body)["sha256"] == hashlib.sha256(payload).hexdigest(), "django echo: %d %r" % (status, body[:200]))
    status, _, body = fetch(port, "GET", "/stream?n=4")
    expect(status == 200 and body == b"".join(b"django chunk %d\n" % i for i in range(4)), "django stream: %r" % body)
    status, _, body = fetch(port, "GET", "/no/such/page")
    expect(status == 404, "django 404: %d" % status)
    status, _, body = fetch(port, "POST", "/admin/login/", body=b"username=a&password=b",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    expect(status == 403, "django CSRF check (POST without a token) must answer 403, got %d" % status)
    ok("django: JSON views, the admin login page with its CSRF cookie, a 300 KB POST, streaming, 404, 403")


def check_flask(port):
    status, _, body = fetch(port, "GET", "/items/7")
    expect(status == 200 and json.loads(body)["item_id"] == 7, "flask /items/7: %d %r" % (status, body[:200]))
    status, _, body = fetch(port, "GET", "/")
    expect(status == 200 and json.loads(body)["app"] == "flask_app", "flask /: %d %r" % (status, body[:200]))
    status, _, _ = fetch(port, "GET", "/nope")
    expect(status == 404, "flask 404: %d" % status)
    ok("flask: a JSON route, /, 404")


# -- large bodies ---------------------------------------------------------------------------------

GIB = 1024 * 1024 * 1024
BLOCK = 65536
PATTERN = bytes(range(256)) * (BLOCK // 256)


def rss(port):
    _, _, body = fetch(port, "GET", "/rss")
    return json.loads(body)


def check_large(port):
    before = rss(port)

    def upload():
        for _ in range(GIB // BLOCK):
            yield PATTERN

    want = hashlib.sha256()
    for _ in range(GIB // BLOCK):
        want.update(PATTERN)
    status, _, body = fetch(port, "POST", "/upload", body=upload())  # chunked: no length given
    expect(status == 200, "upload: %d %r" % (status, body[:200]))
    got = json.loads(body)
    expect(got == {"size": GIB, "sha256": want.hexdigest()}, "upload: %r" % got)
    ok("1 GiB uploaded (chunked), read in 64 KiB blocks, hash matches")

    c = conn(port)
    c.request("GET", "/download?size=%d" % GIB)
    r = c.getresponse()
    expect(r.status == 200, "download: %d" % r.status)
    digest, size = hashlib.sha256(), 0
    while True:
        data = r.read(1 << 20)
        if not data:
            break
        digest.update(data)
        size += len(data)
    c.close()
    expect(size == GIB and digest.hexdigest() == want.hexdigest(), "download: %d bytes" % size)
    ok("1 GiB downloaded from a generator, hash matches")

    after = rss(port)
    expect(after["pid"] == before["pid"], "another worker answered: %r %r" % (before, after))
    growth = after["hwm_kib"] - before["rss_kib"]
    expect(growth < 64 * 1024, "the worker's peak RSS grew by %d KiB moving 2 GiB (want < 64 MiB): %r %r" % (growth, before, after))
    ok("the worker's peak RSS grew by %d KiB (%r -> %r)" % (growth, before, after))


CHECKS = {"conformance": check_conformance, "http": check_http, "fuzz": check_fuzz, "django": check_django,
          "flask": check_flask, "large": check_large}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("check", choices=sorted(CHECKS))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    started = time.monotonic()
    CHECKS[args.check](args.port)
    print("done: %s in %.1fs" % (args.check, time.monotonic() - started), flush=True)


if __name__ == "__main__":
    main()
