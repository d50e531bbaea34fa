"""The in-flight file as the master reads it (src/worker/inflight.rs): a slot per request while it
runs, cleared when it returns, a later request in the same slot not cleared by an earlier one; and
track_in_flight noting each request in it."""

import asyncio
import os

from herdsman.runtime.inflight import Completed, track_in_flight
from herdsman.runtime.inflightfile import SLOT_SIZE, SLOTS, recorder


def _memfd():
    fd = os.memfd_create("test-inflight")
    os.ftruncate(fd, 2 * SLOTS * SLOT_SIZE)
    return fd, os.dup(fd)


def _listed(fd):
    data = os.pread(fd, SLOTS * SLOT_SIZE, 0)
    slots = [data[i : i + SLOT_SIZE] for i in range(0, len(data), SLOT_SIZE)]
    return [s.split(b"\0", 1)[0].decode() for s in slots if s[0] != 0]


def test_requests_are_listed_while_in_flight_and_cleared_after():
    fd, reader = _memfd()
    begin, end, _ = recorder(fd)
    begin(0, "GET", "/die")
    begin(1, "POST", "/x")
    assert _listed(reader) == ["GET /die", "POST /x"]
    end(0)
    assert _listed(reader) == ["POST /x"]
    # Key 9 takes key 1's slot; key 1 ending must not clear it.
    begin(9, "GET", "/later")
    end(1)
    assert _listed(reader) == ["GET /later"]
    begin(2, "GET", "/" + "a" * 1000)
    assert max(len(line) for line in _listed(reader)) == SLOT_SIZE - 1
    os.close(reader)


def test_track_in_flight_notes_the_running_request():
    fd, reader = _memfd()
    seen = []

    async def app(scope, receive, send):
        seen.append(_listed(reader))

    wrapped = track_in_flight(app, {}, Completed(), record=recorder(fd))
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/die"}, None, None))
    assert seen == [["GET /die"]]
    assert _listed(reader) == []
    os.close(reader)


def test_without_a_file_there_is_no_recorder():
    assert recorder(None) is None


def test_quarantined_requests_are_refused_without_calling_the_app():
    fd, reader = _memfd()
    os.pwrite(reader, b"GET /die\n", SLOTS * SLOT_SIZE)
    record = recorder(fd)
    assert record[2] == {"GET /die"}
    called, sent = [], []

    async def app(scope, receive, send):
        called.append(scope["path"])

    async def send(message):
        sent.append(message)

    wrapped = track_in_flight(app, {}, Completed(), record=record)
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/die"}, None, send))
    assert called == [] and sent[0]["status"] == 503
    record[2].clear()  # the master lifted it
    asyncio.run(wrapped({"type": "http", "method": "GET", "path": "/die"}, None, send))
    assert called == ["/die"]
    os.close(reader)
