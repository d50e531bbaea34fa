"""The access log's writer (herdsman.runtime.accesslog): whole lines, batches, drops counted."""

import os
import time

from herdsman.runtime.accesslog import AccessLog, _whole_line_chunks
from herdsman.runtime.accessformat import compile_format


def test_chunks_end_at_line_ends_and_stay_under_the_limit():
    data = b"".join(b"%05d-line\n" % i for i in range(100))
    chunks = list(_whole_line_chunks(data, 64))
    assert b"".join(chunks) == data
    assert all(len(c) <= 64 and c.endswith(b"\n") for c in chunks)
    long_line = b"x" * 100 + b"\n"
    assert list(_whole_line_chunks(b"a\n" + long_line + b"b\n", 64)) == [b"a\n", long_line, b"b\n"]


def scope(path):
    return {"type": "http", "method": "GET", "path": path, "query_string": b"", "http_version": "1.1",
            "client": ("127.0.0.1", 1), "headers": []}


def test_lines_reach_the_file_in_order_and_a_reopen_follows_a_rename(tmp_path):
    path = tmp_path / "access.log"
    log = AccessLog(str(path), compile_format("%(U)s %(s)s"))
    log._writer.start()
    for i in range(300):  # more than one batch
        log.record(scope("/%d" % i), 200, 0, None, 0.0)
    log.flush()
    rotated = tmp_path / "access.log.1"
    log.close()
    os.rename(path, rotated)
    assert rotated.read_text().splitlines() == ["/%d 200" % i for i in range(300)]

    log = AccessLog(str(path), compile_format("%(U)s"))
    log._writer.start()
    log.record(scope("/a"), 200, 0, None, 0.0)
    log.flush()
    deadline = time.monotonic() + 10
    while not (path.exists() and path.read_text() == "/a\n"):  # written by the thread
        assert time.monotonic() < deadline, "the writer never wrote the line"
        time.sleep(0.001)
    os.rename(path, rotated)
    log.reopen()
    log.record(scope("/b"), 200, 0, None, 0.0)
    log.close()
    assert rotated.read_text() == "/a\n"
    assert path.read_text() == "/b\n"
    assert log.dropped == 0


def test_a_failing_destination_counts_dropped_lines_and_never_raises(tmp_path):
    log = AccessLog(str(tmp_path / "no-such-dir" / "access.log"), compile_format("%(U)s"))
    log._writer.start()
    for i in range(5):
        log.record(scope("/x"), 200, 0, None, 0.0)
    log.close()
    assert log.dropped == 5
