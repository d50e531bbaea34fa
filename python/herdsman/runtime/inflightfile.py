"""The in-flight file: the requests a worker is serving, kept where the master can read them after
the worker died (an `os._exit` in a handler, a segfault, SIGKILL), so that it can name the request
that killed it.

The master hands each worker a small memfd (src/worker/inflight.rs has the layout: 8 slots of 256
bytes, a slot free when its first byte is 0). `recorder` returns the two functions
`track_in_flight` calls: `begin(key, method, path)` writes `METHOD PATH\\0` into slot `key % 8`,
`end(key)` clears the slot's first byte if the slot is still that key's. The file's second half
holds the requests the master quarantined (src/master/state/quarantine.rs), refused with 503. Stores into shared memory
only, no system call: bench/inflight_file.py measures the cost per request. Plain closures, not a
dict subclass: a Python-level `__setitem__` made every registry operation ~10 times slower.
"""

import mmap
import os

SLOTS = 8
SLOT_SIZE = 256
QUARANTINE_OFFSET = SLOTS * SLOT_SIZE  # then the quarantined requests, "METHOD PATH\n" each
FILE_SIZE = 2 * QUARANTINE_OFFSET
MASK = SLOTS - 1
SHIFT = 8  # log2(SLOT_SIZE)


def recorder(fd):
    """`(begin, end, quarantined)` for the in-flight file `fd` (mapped, then closed), or None when
    the master passed none (an older master, a test). `begin` answers True for a quarantined
    request (the wrapper then refuses it with 503 instead of calling the app); `quarantined` is the
    set of "METHOD PATH" it checks, read from the file now and replaced by the master's
    `quarantine` message."""
    if fd is None:
        return None
    try:
        view = mmap.mmap(fd, FILE_SIZE)
    finally:
        os.close(fd)  # the mapping keeps the file
    owners = [None] * SLOTS
    limit = SLOT_SIZE - 1
    listed = view[QUARANTINE_OFFSET:].split(b"\0", 1)[0].decode("utf-8", "replace")
    quarantined = set(line for line in listed.split("\n") if line)

    def begin(key, method, path):
        slot = key & MASK
        owners[slot] = key
        if quarantined and (method + " " + path) in quarantined:
            return True
        line = (method + " " + path).encode("utf-8", "replace")[:limit] + b"\0"
        start = slot << SHIFT
        view[start : start + len(line)] = line
        return False

    def end(key):
        slot = key & MASK
        if owners[slot] == key:
            owners[slot] = None
            view[slot << SHIFT] = 0

    return begin, end, quarantined


async def refuse(scope, receive, send):
    """What a quarantined request gets instead of the app."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013})
        return
    body = b"request quarantined: it kept killing workers\n"
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
