"""A gunicorn.conf.py with every hook herdsman runs (tests/gunicorn_conf.rs): each hook appends a
JSON line to HOOK_DIR/<hook>.<pid> with what it saw."""

import json
import os
import time

workers = 2
timeout = 20


def _mark(name, **seen):
    with open(os.path.join(os.environ["HOOK_DIR"], "%s.%d" % (name, os.getpid())), "a") as f:
        f.write(json.dumps(seen) + "\n")


def on_starting(server):
    _mark("on_starting", master=server.pid, t=time.time())


def when_ready(server):
    _mark("when_ready", master=server.pid, workers=server.cfg.workers)


def post_fork(server, worker):
    _mark("post_fork", pid=worker.pid, age=worker.age, master=server.pid, timeout=worker.cfg.timeout,
          t=time.time())


def post_worker_init(worker):
    _mark("post_worker_init", pid=worker.pid)


def pre_request(worker, req):
    _mark("pre_request", pid=worker.pid, method=req.method, path=req.path, uri=req.uri,
          headers=dict(req.headers))


def post_request(worker, req, environ, resp):
    _mark("post_request", pid=worker.pid, path=req.path, status=resp.status_code,
          length=resp.response_length)


def worker_exit(server, worker):
    _mark("worker_exit", pid=worker.pid)


def child_exit(server, worker):
    _mark("child_exit", pid=worker.pid, age=worker.age, master=server.pid)
