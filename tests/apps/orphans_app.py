"""Serves like asgi_app, plus `/orphans?n=N&s=F`: makes N orphans for the PID 1 tests. For each,
the worker forks a child that forks a grandchild and exits at once; the worker reaps the child,
so the grandchild is reparented to the nearest reaper (the master, when it is PID 1 of a pid
namespace) and exits F seconds later (default 0.2) without ever being waited for by its own
family. Answers {"pid": ..., "orphans": [their pids]} once every child is reaped."""

import os
import time

from asgi_app import _json, _query
from asgi_app import app as _base


def _make_orphans(n, linger):
    read_end, write_end = os.pipe()
    children = []
    for _ in range(n):
        child = os.fork()
        if child == 0:
            # The intermediate child: only fork, write and _exit here (the parent has threads).
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_end)
                time.sleep(linger)
                os._exit(0)
            os.write(write_end, b"%d\n" % grandchild)
            os._exit(0)
        children.append(child)
    for child in children:
        os.waitpid(child, 0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        return [int(line) for line in pipe.read().split()]


async def app(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/orphans":
        n = int(_query(scope, "n", "100"))
        orphans = _make_orphans(n, float(_query(scope, "s", "0.2")))
        await _json(send, {"pid": os.getpid(), "orphans": orphans})
        return
    await _base(scope, receive, send)
