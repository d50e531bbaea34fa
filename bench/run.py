#!/usr/bin/env python3
"""herdsman's benchmark driver: herdsman against its peers, measured the same way in the same run.

Run it through `bash bench/run.sh [--smoke]`, which installs wrk, builds the peers venv
(bench/.venv-peers, pinned in bench/requirements.txt) and the herdsman binary first. This file
needs only the standard library, plus matplotlib for the plots (it runs under the peers venv).

Every server (herdsman and each peer) runs the same app from tests/apps with the same Python,
the same uvicorn and the same worker count, on 127.0.0.1 only. Every process the driver starts is
started in a session of its own and ended by pid (the session's members, found in /proc), with a
hard timeout, so nothing is left running, also when the driver is interrupted.

What is measured, and exactly how, is written into the report (docs/benchmarks.md): see
`METHOD` below, which is the text of that section.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS_DIR = ROOT / "tests" / "apps"  # the test apps are the benchmark's apps (tests/apps/README.md)
VENV = Path(os.environ.get("HERDSMAN_BENCH_VENV", BENCH / ".venv-peers"))
VENV_BIN = VENV / "bin"
PY = VENV_BIN / "python"
HOST = "127.0.0.1"

# app name -> (module:attr, interface, path for the throughput run)
APPS = {
    "asgi": ("asgi_app:app", "asgi", "/"),
    "fastapi": ("fastapi_app:app", "asgi", "/items/7"),
    "wsgi": ("wsgi_app:app", "wsgi", "/"),
    "flask": ("flask_app:app", "wsgi", "/items/7"),
    # The WebSocket echo phase's app (not a throughput app): `/ws` echoes each text message.
    "ws": ("ws_app:app", "asgi", "/"),
}
APP_TITLES = {
    "asgi": "plain ASGI",
    "fastapi": "FastAPI JSON",
    "wsgi": "plain WSGI",
    "flask": "Flask JSON",
    "ws": "WebSocket echo",
}
# herdsman-zygote: herdsman with `--spawn zygote --preload` (workers forked from a warm Python
# process that imported the app once); not in the throughput runs (its workers serve like the others).
# herdsman-native: herdsman with `--engine native` (its Rust engine): WSGI, and ASGI http/lifespan.
SERVERS = ["herdsman", "herdsman-native", "herdsman-zygote", "gunicorn", "uvicorn", "granian", "hypercorn"]
WSGI_ONLY = set()  # servers that serve WSGI apps only (none since the native engine serves ASGI)
REFERENCE = "gunicorn"  # every ratio is against this row
# Access-log variants, in the throughput runs of the apps in `accesslog_apps` only: herdsman with its
# default access log (on, to standard output) and gunicorn with `--access-logfile -`. The harness
# sends every server's stdout to a file (its log in the results), so both write to stdout
# redirected to a file. The plain "herdsman" and "gunicorn" rows are the same servers without it.
ACCESSLOG_VARIANTS = {"herdsman-accesslog": "herdsman", "herdsman-native-accesslog": "herdsman-native",
                      "gunicorn-accesslog": "gunicorn"}


def base_server(server):
    return ACCESSLOG_VARIANTS.get(server, server)


def serves(server, app):
    """Whether the server can serve the app at all."""
    return APPS[app][1] == "wsgi" or base_server(server) not in WSGI_ONLY


def life_app(cfg, server):
    """The app of the boot, lifecycle, memory and idle phases for this server: the run's
    lifecycle app, or its WSGI stand-in for a server that serves WSGI only (the tables say which)."""
    app = cfg["lifecycle_app"]
    return app if serves(server, app) else cfg["wsgi_lifecycle_app"]


def life_label(cfg, server):
    """The server's row label in those phases, naming the app when it is the stand-in."""
    app = life_app(cfg, server)
    text = server_label(server, app)
    return text if app == cfg["lifecycle_app"] else f"{text} ({APP_TITLES[app]} app)"


# The replacement phase: how each server replaces a worker while it keeps serving, and what it
# cannot do. kind -> how; a kind missing from a server's entry is in UNSUPPORTED with the reason.
REPLACEMENT_KINDS = ["reload", "recycle", "upgrade", "scale"]
REPLACEMENT_TITLES = {
    "control": "no event (control)",
    "reload": "reload",
    "recycle": "max-requests recycling",
    "upgrade": "binary upgrade",
    "scale": "scale-down and up",
}
SUPPORTED = {
    "herdsman": {"reload": "SIGHUP", "recycle": "--max-requests N --max-requests-jitter J",
                 "upgrade": "SIGUSR2 (re-executes the same binary in place)", "scale": "SIGTTOU, then SIGTTIN"},
    "gunicorn": {"reload": "SIGHUP", "recycle": "--max-requests N --max-requests-jitter J",
                 "upgrade": "SIGUSR2 (a new master with new workers), then SIGTERM to the old master",
                 "scale": "SIGTTOU, then SIGTTIN"},
    "uvicorn": {"reload": "SIGHUP", "recycle": "--limit-max-requests N --limit-max-requests-jitter J",
                "scale": "SIGTTOU, then SIGTTIN"},
    "granian": {"reload": "SIGHUP"},
    "hypercorn": {"reload": "SIGHUP (stops every worker, then starts new ones)",
                  "recycle": "--max-requests N --max-requests-jitter J"},
}
SUPPORTED["herdsman-zygote"] = SUPPORTED["herdsman"]
SUPPORTED["herdsman-native"] = SUPPORTED["herdsman"]
UNSUPPORTED = {
    "uvicorn": {"upgrade": "no binary upgrade (no SIGUSR2 handling)"},
    "granian": {"recycle": "no request-count limit; `--workers-lifetime` (an age, at least 60 s) is the "
                           "nearest, too long for the window",
                "upgrade": "no binary upgrade", "scale": "no SIGTTIN/SIGTTOU"},
    "hypercorn": {"upgrade": "no binary upgrade", "scale": "no SIGTTIN/SIGTTOU"},
}
MODES = ["keepalive", "fresh"]
MODE_TITLES = {"keepalive": "keep-alive connections", "fresh": "fresh connections (`Connection: close`)"}

FULL = dict(
    servers=["herdsman", "herdsman-native", "herdsman-zygote", "gunicorn", "uvicorn", "granian", "hypercorn"],
    throughput_servers=["herdsman", "herdsman-native", "gunicorn", "uvicorn", "granian"],
    apps=["asgi", "fastapi", "wsgi", "flask"],
    lifecycle_app="fastapi",
    wsgi_lifecycle_app="flask",  # for the WSGI-only servers (herdsman-native)
    workers=2,
    connections=64,
    tp_warmup=1.0,
    tp_slot=1.0,
    tp_rounds=8,
    boot_reps=3,
    import_reps=5,
    kill_reps=3,
    kill_load_reps=2,
    reloads=10,
    slow_requests=8,
    slow_seconds=2.0,
    load_threads=4,
    mem_counts=[1, 2, 4, 8, 16],
    mem_window=3.0,
    idle_seconds=60.0,
    idle_counts=[2, 16],
    profile_seconds=10.0,
    engine_profile_seconds=8.0,
    # Throughput with the access log on (herdsman's default, gunicorn --access-logfile -).
    accesslog_apps=["asgi", "wsgi"],
    accesslog_servers=["herdsman-accesslog", "herdsman-native-accesslog", "gunicorn-accesslog"],
    # WebSocket echo (bench/wsload.py): every server up at once, slots in turn as for throughput.
    ws_servers=["herdsman", "herdsman-native", "gunicorn", "uvicorn", "granian"],
    ws_connections=32,
    ws_rounds=5,
    ws_slot=2.0,
    ws_warmup=0.5,
    # Replacement under load: [app, servers] pairs; every event with fresh and keep-alive clients.
    repl_matrix=[["asgi", ["herdsman", "herdsman-zygote", "gunicorn", "uvicorn", "granian", "hypercorn"]],
                 ["wsgi", ["herdsman", "herdsman-native", "gunicorn", "granian"]]],
    repl_workers=2,
    repl_connections=32,
    repl_control_s=2.0,     # a window with no event: the failures of the load alone
    repl_reloads=5,
    repl_upgrades=2,
    repl_scales=1,
    repl_recycle_s=8.0,     # one window of max-requests recycling
    repl_recycle_every_s=2.0,  # N = the control's req/s per worker times this: a worker recycles every ~2 s
                               # (the new worker pids seen in the window and 1.5 s after it are the events)
    repl_recycle_min=200,
    repl_lead_s=0.5,        # load before the event
    repl_tail_s=0.3,        # load after it settled
    repl_gap_s=0.2,         # no load between two events
    repl_kind_budget_s=15.0,  # no new event of a kind once its events took this long (at least 2 run)
    repl_settle_timeout_s=60.0,
    # HTTP/2 (h2c with prior knowledge) under h2load: the servers that serve it, slots as throughput's.
    http2_servers=["herdsman-native", "granian", "hypercorn"],
    http2_apps=["wsgi", "asgi"],
    http2_clients=32,
    http2_streams=10,
    http2_slot=3.0,
    http2_rounds=4,
)
SMOKE = dict(
    servers=["herdsman", "herdsman-native", "gunicorn"],
    throughput_servers=["herdsman", "herdsman-native", "gunicorn"],
    apps=["asgi", "wsgi"],
    lifecycle_app="asgi",
    wsgi_lifecycle_app="wsgi",
    workers=1,
    connections=16,
    tp_warmup=0.5,
    tp_slot=2.0,
    tp_rounds=1,
    boot_reps=1,
    import_reps=2,
    kill_reps=1,
    kill_load_reps=1,
    reloads=2,
    slow_requests=4,
    slow_seconds=1.0,
    load_threads=2,
    mem_counts=[1],
    mem_window=1.0,
    idle_seconds=2.0,
    idle_counts=[1],
    profile_seconds=1.0,
    engine_profile_seconds=1.0,
    min_victim_age=0.0,
    accesslog_apps=["asgi"],
    accesslog_servers=["herdsman-accesslog", "gunicorn-accesslog"],
    ws_servers=["herdsman", "herdsman-native"],
    ws_connections=8,
    ws_rounds=1,
    ws_slot=1.0,
    ws_warmup=0.3,
    repl_matrix=[["asgi", ["herdsman", "gunicorn"]], ["wsgi", ["herdsman-native"]]],
    repl_workers=2,
    repl_connections=8,
    repl_control_s=1.0,
    repl_reloads=1,
    repl_upgrades=1,
    repl_scales=1,
    repl_recycle_s=1.5,
    repl_recycle_every_s=0.5,
    repl_recycle_min=50,
    repl_lead_s=0.3,
    repl_tail_s=0.2,
    repl_gap_s=0.1,
    repl_kind_budget_s=10.0,
    repl_settle_timeout_s=60.0,
    http2_servers=["herdsman-native"],
    http2_apps=["wsgi"],
    http2_clients=8,
    http2_streams=10,
    http2_slot=1.0,
    http2_rounds=1,
)
PHASES = ["imports", "profile", "throughput", "websocket", "http2", "engine_profile", "boot", "lifecycle",
          "replacements", "memory", "idle"]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# /proc helpers

def read_stat(pid):
    """(state, ppid, session, utime+stime ticks) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("latin-1")
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    # rest[0] = state (field 3), rest[1] = ppid, rest[3] = session, rest[11], rest[12] = utime, stime
    return rest[0], int(rest[1]), int(rest[3]), int(rest[11]) + int(rest[12])


def proc_age(pid):
    """Seconds since pid started (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("latin-1")
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except OSError:
        return 0.0
    start = int(data[data.rindex(")") + 2:].split()[19])
    return uptime - start / TICK


# No worker is killed within this many seconds of its start: granian stops the whole server when
# a worker slot dies again within 5.5 s of its respawn (its crash-loop guard), which is a policy
# worth knowing but not what the replacement figure measures.
MIN_VICTIM_AGE = 6.0


def oldest_worker(s):
    """The longest-running worker, once it is at least the run's min_victim_age old (waits for
    that: MIN_VICTIM_AGE in a full run, none in a smoke run, which has no granian)."""
    pids = s.worker_pids()
    if not pids:
        return None
    victim = max(pids, key=proc_age)
    age = proc_age(victim)
    min_age = s.ctx.cfg.get("min_victim_age", MIN_VICTIM_AGE)
    if age < min_age:
        time.sleep(min_age - age)
    return victim


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def session_pids(sid):
    """Every live (non-zombie) process of session sid: the server and all it started."""
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if st and st[2] == sid and st[0] != "Z":
            out.append(pid)
    return out


def wakeups(pid):
    """Context switches of every live thread of pid (voluntary + not): how often it ran."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def worker_pids(master, exclude=()):
    """The master's live children, less multiprocessing's resource tracker (uvicorn, hypercorn)
    and the pids in exclude (herdsman's zygotes, whose forked workers share their command line)."""
    out = []
    for pid in all_pids():
        st = read_stat(pid)
        if st and st[1] == master and st[0] != "Z" and pid not in exclude:
            if "resource_tracker" not in cmdline(pid):
                out.append(pid)
    return sorted(out)


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ns(pid):
    """CPU time of every live thread of pid, in ns (schedstat: finer than the 10 ms ticks)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def machine_busy_seconds():
    """CPU seconds spent by the whole machine (all CPUs, not idle or iowait) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICK


def own_cpu_seconds():
    """CPU seconds of this driver and every child it reaped (servers, their workers, wrk)."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


# --------------------------------------------------------------------------------------------
# HTTP

def http_get(port, path="/", timeout=5.0):
    """One request on a fresh connection: (status, body). Raises on any transport error."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def body_pid(body):
    try:
        return int(json.loads(body)["pid"])
    except (ValueError, KeyError, TypeError):
        return None


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class SteadyLoad:
    """Client threads sending GET / on fresh connections in a loop; counts answers and failures
    (anything but a 200: refused, reset, timeout, 5xx) and remembers which pids answered."""

    def __init__(self, port, threads, path="/", pause=0.002, timeout=10.0):
        self.port, self.nthreads, self.path, self.pause, self.timeout = port, threads, path, pause, timeout
        self.ok = 0
        self.failed = 0
        self.errors = {}
        self.first_seen = {}  # pid -> monotonic time it first answered
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def _run(self):
        while not self.stopping.is_set():
            try:
                status, body = http_get(self.port, self.path, self.timeout)
                err = None if status == 200 else f"HTTP {status}"
            except Exception as e:  # noqa: BLE001 - every failure counts
                err, body = type(e).__name__, b""
            now = time.monotonic()
            with self.lock:
                if err is None:
                    self.ok += 1
                    pid = body_pid(body)
                    if pid is not None and pid not in self.first_seen:
                        self.first_seen[pid] = now
                else:
                    self.failed += 1
                    self.errors[err] = self.errors.get(err, 0) + 1
            if err is not None:
                time.sleep(0.01)  # a refused connection must not become a busy loop
            elif self.pause:
                time.sleep(self.pause)

    def start(self):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def seen_since(self, pids):
        with self.lock:
            return [p for p in self.first_seen if p not in pids]

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 5)
        return {"ok": self.ok, "failed": self.failed, "errors": dict(self.errors)}


# --------------------------------------------------------------------------------------------
# Servers

class ServerDied(Exception):
    pass


def server_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HERDSMAN_", "GUNICORN_", "GRANIAN_", "UVICORN_", "HYPERCORN_"))
           and k not in ("WEB_CONCURRENCY", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def server_label(server, app):
    kind = APPS[app][1]
    if server == "herdsman-accesslog":
        return "herdsman, access log on (its default)"
    if server == "herdsman-native-accesslog":
        return "herdsman --engine native, access log on (its default)"
    if server == "gunicorn-accesslog":
        return server_label("gunicorn", app) + " --access-logfile -"
    if server == "herdsman":
        return "herdsman"
    if server == "herdsman-native":
        return "herdsman --engine native"
    if server == "herdsman-zygote":
        return "herdsman --spawn zygote --preload"
    if server == "gunicorn":
        return "gunicorn + UvicornWorker" if kind == "asgi" else "gunicorn gthread"
    if server == "uvicorn":
        return "uvicorn --workers"
    if server == "granian":
        return "granian"
    return "hypercorn"


def recycle_args(server, recycle):
    """The flags that recycle a worker after N requests (jitter J), for the servers that can."""
    if recycle is None:
        return []
    n, jitter = (str(x) for x in recycle)
    base = base_server(server)
    if base in ("herdsman", "herdsman-zygote", "herdsman-native", "gunicorn", "hypercorn"):
        return ["--max-requests", n, "--max-requests-jitter", jitter]
    if base == "uvicorn":
        return ["--limit-max-requests", n, "--limit-max-requests-jitter", jitter]
    raise ValueError(f"{server} cannot recycle workers after N requests")


def server_argv(server, app, workers, port, herdsman_bin, recycle=None):
    module, kind, _ = APPS[app]
    n = str(workers)
    base = base_server(server)
    extra = recycle_args(server, recycle)
    if base in ("herdsman", "herdsman-zygote", "herdsman-native"):
        zygote = ["--spawn", "zygote", "--preload"] if server == "herdsman-zygote" else []
        engine = ["--engine", "native"] if base == "herdsman-native" else []
        # herdsman's access log is on by default (to stdout): the access-log variant just leaves it on.
        log = [] if server in ACCESSLOG_VARIANTS else ["--no-access-log"]
        return [str(herdsman_bin), "--python", str(PY), "--chdir", str(APPS_DIR), "-w", n,
                "-b", f"{HOST}:{port}", "--interface", kind, *engine, *log, *zygote, *extra, module]
    if base == "gunicorn":
        worker = ["-k", "uvicorn_worker.UvicornWorker"] if kind == "asgi" else ["-k", "gthread", "--threads", "10"]
        log = ["--access-logfile", "-"] if server == "gunicorn-accesslog" else []
        return [str(VENV_BIN / "gunicorn"), *worker, "-w", n, "-b", f"{HOST}:{port}", "--no-control-socket",
                *log, *extra, module]
    if server == "uvicorn":
        return [str(VENV_BIN / "uvicorn"), "--workers", n, "--host", HOST, "--port", str(port),
                "--interface", "asgi3" if kind == "asgi" else "wsgi", "--no-access-log", *extra, module]
    if server == "granian":
        return [str(VENV_BIN / "granian"), "--interface", kind, "--workers", n, "--host", HOST,
                "--port", str(port), "--no-access-log", "--respawn-failed-workers", *extra, module]
    if server == "hypercorn":
        return [str(VENV_BIN / "hypercorn"), "-k", "uvloop", "-w", n, "-b", f"{HOST}:{port}", *extra, module]
    raise ValueError(server)


class Server:
    live = set()

    def __init__(self, ctx, server, app, workers, tag, recycle=None):
        self.ctx, self.server, self.app, self.workers, self.tag = ctx, server, app, workers, tag
        self.recycle = recycle
        self.proc = None
        self.port = None
        self.master = None  # the master's pid: the started process, until an upgrade makes a new one

    def start(self):
        self.port = free_port()
        self.argv = server_argv(self.server, self.app, self.workers, self.port, self.ctx.herdsman, self.recycle)
        self.log_path = self.ctx.logs / f"{self.tag}.log"
        self.logf = open(self.log_path, "wb")  # tags are unique within a run
        self.logf.write(("$ " + " ".join(self.argv) + "\n").encode())
        self.logf.flush()
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.argv, cwd=APPS_DIR, env=self.ctx.env, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.master = self.proc.pid
        Server.live.add(self)
        return self

    @property
    def pid(self):
        """The current master (gunicorn's SIGUSR2 upgrade hands over to a new master process)."""
        return self.master

    @property
    def sid(self):
        """The session of everything the server started: the pid of the process the harness started."""
        return self.proc.pid

    def alive(self):
        if self.master == self.proc.pid:
            return self.proc.poll() is None
        self.proc.poll()  # reap the old master if it is ours
        st = read_stat(self.master)
        return bool(st) and st[0] != "Z"

    def check_alive(self):
        if not self.alive():
            raise ServerDied(f"{self.tag} exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, n=6):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def wait_first_response(self, timeout=60.0):
        """Seconds from the start of the process to its first 200."""
        deadline = self.t_start + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, _ = http_get(self.port, "/", timeout=2.0)
                if status == 200:
                    return time.monotonic() - self.t_start
            except OSError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"{self.tag}: no answer within {timeout}s: {self.log_tail()}")

    def tree_cpu_ns(self):
        return sum(cpu_ns(p) for p in session_pids(self.sid))

    def wait_ready(self, timeout=90.0):
        """Until it answers, has its N workers, and the whole tree is idle (booting workers burn
        CPU): the same readiness test for every server, since the peers do not all tell."""
        first = self.wait_first_response(timeout)
        deadline = self.t_start + timeout
        quiet = 0
        last = self.tree_cpu_ns()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            self.check_alive()
            now = self.tree_cpu_ns()
            busy = now - last
            last = now
            nworkers = len(self.worker_pids())
            if (nworkers >= self.workers or self.single_process()) and busy < 12_000_000:
                quiet += 1
                if quiet >= 2:
                    return first
            else:
                quiet = 0
        raise TimeoutError(f"{self.tag}: not idle with {self.workers} workers within {timeout}s")

    def worker_pids(self):
        zygotes = set()
        if self.server == "herdsman-zygote":
            try:
                zygotes = {int(x) for x in re.findall(r"zygote_pid=(\d+)", self.log_path.read_text(errors="replace"))}
            except OSError:
                pass
        return worker_pids(self.pid, zygotes)

    def single_process(self):
        # uvicorn --workers 1 serves in its only process; so does hypercorn -w 1? (checked live)
        return self.workers == 1 and not self.worker_pids()

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Signal the master, wait for it, then SIGKILL whatever is left of the session.
        Returns seconds until the master exited (None if it had to be killed)."""
        t0 = time.monotonic()
        took = None
        if self.alive():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.master == self.proc.pid:
                try:
                    self.proc.wait(timeout)
                    took = time.monotonic() - t0
                except subprocess.TimeoutExpired:
                    pass
            else:  # a master that is not the harness's child (after an upgrade): poll it
                while self.alive() and time.monotonic() - t0 < timeout:
                    time.sleep(0.02)
                if not self.alive():
                    took = time.monotonic() - t0
            if took is None:
                log(f"{self.tag}: still running {timeout}s after {signal.Signals(sig).name}: killing it")
        self.kill()
        return took

    def kill(self):
        """SIGKILL every process of the session, by pid, until none is left (bounded)."""
        if self.proc is None:
            return
        for _ in range(50):
            pids = session_pids(self.sid)
            if self.proc.poll() is None and self.sid not in pids:
                pids.append(self.sid)
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
            self.proc.poll()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        Server.live.discard(self)
        if not self.logf.closed:
            self.logf.close()


def kill_everything():
    for load in list(BackgroundWrk.live):
        load.kill()
    for s in list(Server.live):
        try:
            s.kill()
        except Exception as e:  # noqa: BLE001
            log(f"cleanup of {s.tag}: {e}")


# --------------------------------------------------------------------------------------------
# Load generation for throughput

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else None


def parse_wrk(out):
    res = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else None
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    if m:
        res["socket_error_kinds"] = {k: int(v) for k, v in zip(("connect", "read", "write", "timeout"), m.groups())
                                     if int(v)}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(port, path, seconds, connections):
    """wrk's own figures for one run; integer seconds (wrk's unit)."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            f"http://{HOST}:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    res = parse_wrk(out)
    if res["rps"] is None:
        raise RuntimeError(f"wrk printed no result: {out[-400:]}")
    return res


def run_pyload(port, path, seconds, connections):
    """The fallback load generator: keep-alive connections from Python threads. Much weaker than
    wrk (one GIL), so its figures are bounded by the client: used only when wrk is missing."""
    conns = min(connections, 16)
    lat = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def worker():
        local = []
        conn = None
        while time.monotonic() < end:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=10)
                t0 = time.perf_counter()
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                local.append((time.perf_counter() - t0) * 1000)
                if resp.status != 200:
                    with lock:
                        errors[0] += 1
            except Exception:  # noqa: BLE001
                with lock:
                    errors[0] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with lock:
            lat.extend(local)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    took = time.monotonic() - t0
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p / 100))] if lat else None

    return {"rps": len(lat) / took if took else None, "p50_ms": pct(50), "p75_ms": pct(75), "p90_ms": pct(90),
            "p99_ms": pct(99), "requests": len(lat), "socket_errors": errors[0], "non_2xx": 0}


class BackgroundWrk:
    """wrk at full load in the background until stop(): wrk stops on SIGINT and prints its figures.
    Keep-alive connections by default (what wrk does); with fresh=True every request carries
    `Connection: close`, so each one is sent on a new connection. A failed request is one of wrk's
    socket errors (connect, read, write, timeout: 10 s) or a response that is not 2xx/3xx."""

    live = set()

    def __init__(self, port, path, connections, fresh):
        self.argv = ["wrk", "-t1", f"-c{connections}", "-d3600s", "--timeout", "10s"]
        if fresh:
            self.argv += ["-H", "Connection: close"]
        self.argv.append(f"http://{HOST}:{port}{path}")
        self.proc = None

    def start(self):
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        BackgroundWrk.live.add(self)
        return self

    def stop(self):
        took = time.monotonic() - self.t0
        try:
            self.proc.send_signal(signal.SIGINT)
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
            out = ""
        BackgroundWrk.live.discard(self)
        res = parse_wrk(out or "")
        if res["requests"] is None:
            raise RuntimeError(f"wrk printed no result: {(out or '')[-300:]}")
        failed = res["socket_errors"] + res["non_2xx"]
        errors = dict(res.get("socket_error_kinds", {}))
        if res["non_2xx"]:
            errors["non-2xx"] = res["non_2xx"]
        return {"ok": res["requests"] - res["non_2xx"], "failed": failed, "errors": errors,
                "seconds": round(took, 2), "rps": round(res["rps"] or 0)}

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        BackgroundWrk.live.discard(self)


class BackgroundPyLoad:
    """The fallback when wrk is missing: Python threads at full load (no pause), one connection
    each, kept alive across requests, or a fresh one per request (fresh=True). Same counting."""

    def __init__(self, port, path, connections, fresh):
        self.port, self.path, self.fresh = port, path, fresh
        self.n = min(connections, 16)
        self.ok = self.failed = 0
        self.errors = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def _run(self):
        conn = None
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
                conn.request("GET", self.path, headers={"Connection": "close"} if self.fresh else {})
                resp = conn.getresponse()
                resp.read()
                err = None if 200 <= resp.status < 400 else "non-2xx"
                if self.fresh or resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 - every failure counts
                err = type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                if err is None:
                    self.ok += 1
                else:
                    self.failed += 1
                    self.errors[err] = self.errors.get(err, 0) + 1
            if err is not None:
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    def start(self):
        self.t0 = time.monotonic()
        for _ in range(self.n):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        took = time.monotonic() - self.t0
        self.stopping.set()
        for t in self.threads:
            t.join(15)
        return {"ok": self.ok, "failed": self.failed, "errors": dict(self.errors), "seconds": round(took, 2),
                "rps": round(self.ok / took) if took else 0}


# --------------------------------------------------------------------------------------------
# Context

class Ctx:
    def __init__(self, args, cfg):
        self.args, self.cfg = args, cfg
        self.out = Path(args.out)
        self.logs = self.out / "logs"
        if self.logs.is_dir():  # a previous run's logs would mix with this run's
            shutil.rmtree(self.logs)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.herdsman = Path(args.herdsman)
        self.env = server_env()
        self.loadgen = args.loadgen
        if self.loadgen == "auto":
            self.loadgen = "wrk" if shutil.which("wrk") else "python"
        self.results = {}
        self._seq = 0

    def tag(self, *parts):
        self._seq += 1
        return f"{self._seq:03d}-" + "-".join(str(p) for p in parts)

    def load(self, port, path, seconds):
        if self.loadgen == "wrk":
            return run_wrk(port, path, seconds, self.cfg["connections"])
        return run_pyload(port, path, seconds, self.cfg["connections"])

    def background_load(self, port, path, fresh):
        cls = BackgroundWrk if self.loadgen == "wrk" else BackgroundPyLoad
        return cls(port, path, self.cfg["repl_connections"], fresh)


def guarded(fn):
    """Runs one measurement; an error is recorded (with the server's log tail), not raised:
    a peer that cannot do something is a result, not a harness failure."""
    def wrap(*a, **kw):
        try:
            return fn(*a, **kw)
        except Exception as e:  # noqa: BLE001
            log(f"  error: {type(e).__name__}: {e}")
            return {"error": f"{type(e).__name__}: {e}"[:600]}
    return wrap


# --------------------------------------------------------------------------------------------
# Phases

def phase_imports(ctx):
    """The floor for a worker (re)start: a fresh interpreter, and one that imports the app
    (and uvicorn, which every uvicorn-based worker needs too). Median of several runs."""
    cfg = ctx.cfg
    app_module = APPS[cfg["lifecycle_app"]][0].split(":")[0]
    cases = {
        "python_start": "pass",
        "python_import_app": f"import {app_module}",
        "python_import_uvicorn_app": f"import uvicorn, uvicorn.main, {app_module}",
    }
    out = {"app": cfg["lifecycle_app"]}
    subprocess.run([str(PY), "-c", cases["python_import_uvicorn_app"]], cwd=APPS_DIR, env=ctx.env, check=True)
    for name, code in cases.items():
        times = []
        for _ in range(cfg["import_reps"]):
            t0 = time.monotonic()
            subprocess.run([str(PY), "-c", code], cwd=APPS_DIR, env=ctx.env, check=True)
            times.append(time.monotonic() - t0)
        out[name + "_ms"] = round(statistics.median(times) * 1000, 1)
        out[name + "_all_ms"] = [round(t * 1000, 1) for t in times]
    log(f"imports: {out['python_start_ms']} ms python, {out['python_import_app_ms']} ms + app, "
        f"{out['python_import_uvicorn_app_ms']} ms + uvicorn + app")
    return out


@guarded
def phase_profile(ctx):
    """The cost of herdsman's per-request accounting in its worker runtime, alone (bench/wrapper_profile.py)."""
    calls = "20000" if ctx.args.smoke else "200000"
    out = subprocess.run([str(PY), str(BENCH / "wrapper_profile.py"), "--calls", calls], capture_output=True,
                         text=True, timeout=120, env=ctx.env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    res = json.loads(out.stdout)
    log(f"profile: herdsman's per-request wrapper costs {res['wrapper_us']} µs a call "
        f"(the plain ASGI app alone: {res['app_us']} µs)")
    return res


def throughput_app(ctx, app):
    """One app: every server up at once (idle but for the one under load), then short wrk slots
    taken in turn, the order rotating each round. A burst of load from another user of the
    machine then hits one slot of each server alike instead of one whole server's figure."""
    cfg = ctx.cfg
    path = APPS[app][2]
    names = [srv for srv in cfg["throughput_servers"] if serves(srv, app)]
    if app in cfg.get("accesslog_apps", []):
        names += [v for v in cfg["accesslog_servers"] if base_server(v) in names]
    servers, slots, logs = {}, {srv: [] for srv in names}, {}
    try:
        for srv in names:
            s = Server(ctx, srv, app, cfg["workers"], ctx.tag("tp", app, srv)).start()
            try:
                s.wait_ready()
                servers[srv] = s
            except Exception as e:  # noqa: BLE001
                log(f"  error: {srv} did not start for {app}: {e}")
                slots[srv].append({"error": f"{type(e).__name__}: {e}"[:600]})
                s.stop(timeout=5)
        names = list(servers)
        for srv in names:
            if cfg["tp_warmup"] > 0:
                guarded(ctx.load)(servers[srv].port, path, cfg["tp_warmup"])
        for rnd in range(cfg["tp_rounds"]):
            k = rnd % max(1, len(names))
            for srv in names[k:] + names[:k]:
                s = servers[srv]
                if not s.alive():
                    slots[srv].append({"error": f"the server exited: {s.log_tail(3)}"})
                    continue
                c0 = s.tree_cpu_ns()
                res = guarded(ctx.load)(s.port, path, cfg["tp_slot"])
                c1 = s.tree_cpu_ns()
                if res.get("requests"):
                    # CPU the whole server (master + workers) spent per request, whoever shared the CPUs.
                    res["server_cpu_us_per_request"] = round((c1 - c0) / 1000 / res["requests"], 2)
                slots[srv].append(res)
    finally:
        for srv, s in servers.items():
            s.stop(timeout=10)
            if srv in ACCESSLOG_VARIANTS:
                logs[srv] = shrink_access_log(s.log_path)
    return slots, logs


def run_wsload(port, seconds, connections, warmup):
    """bench/wsload.py's figures for one slot (echoes per second over `seconds`)."""
    argv = [str(PY), str(BENCH / "wsload.py"), str(port), str(connections), str(seconds), str(warmup)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-400:] or f"wsload.py exited {out.returncode}")
    return json.loads(out.stdout)


def phase_websocket(ctx):
    """WebSocket echo: each server serves tests/apps/ws_app.py; bench/wsload.py keeps
    `ws_connections` WebSockets each sending a message and waiting for its echo. Every server is up
    at once and the slots are taken in turn, the order rotating each round, as for throughput."""
    cfg = ctx.cfg
    names = [srv for srv in cfg["ws_servers"] if srv in SERVERS]
    servers, slots = {}, {srv: [] for srv in names}
    try:
        for srv in names:
            s = Server(ctx, srv, "ws", cfg["workers"], ctx.tag("ws", srv)).start()
            try:
                s.wait_ready()
                servers[srv] = s
            except Exception as e:  # noqa: BLE001
                log(f"  error: {srv} did not start for the WebSocket echo: {e}")
                slots[srv].append({"error": f"{type(e).__name__}: {e}"[:600]})
                s.stop(timeout=5)
        order = list(servers)
        for rnd in range(cfg["ws_rounds"]):
            k = rnd % max(1, len(order))
            for srv in order[k:] + order[:k]:
                s = servers[srv]
                if not s.alive():
                    slots[srv].append({"error": f"the server exited: {s.log_tail(3)}"})
                    continue
                c0 = s.tree_cpu_ns()
                res = guarded(run_wsload)(s.port, cfg["ws_slot"], cfg["ws_connections"], cfg["ws_warmup"])
                c1 = s.tree_cpu_ns()
                if res.get("messages"):
                    res["server_cpu_us_per_message"] = round((c1 - c0) / 1000 / res["messages"], 2)
                slots[srv].append(res)
    finally:
        for s in servers.values():
            s.stop(timeout=10)
    out = {}
    for srv, rs in slots.items():
        good = [r for r in rs if r.get("mps")]
        entry = {"label": server_label(srv, "ws"), "slots": rs}
        if good:
            for key in ("mps", "p50_ms", "p99_ms", "server_cpu_us_per_message"):
                vals = [r[key] for r in good if r.get(key) is not None]
                entry[key] = round(statistics.median(vals), 3) if vals else None
                if len(vals) > 1:
                    entry[key + "_cv"] = round(statistics.stdev(vals) / statistics.mean(vals), 4)
            entry["closed_by_server"] = sum(r.get("closed_by_server", 0) for r in good)
        else:
            entry["error"] = rs[-1].get("error") if rs else "not run"
        out[srv] = entry
        log(f"websocket {srv}: " + (f"{entry['mps']:.0f} messages/s p99 {entry['p99_ms']} ms over {len(good)} slots"
                                    if "mps" in entry else str(entry["error"])))
    return out


def parse_h2load(out):
    """h2load's figures: req/s, request time (mean, sd, max) and the requests that failed."""
    res = {}
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    res["rps"] = float(m.group(1)) if m else None
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out, re.M)
    if m:
        res["max_ms"], res["mean_ms"], res["sd_ms"] = (_ms(m.group(i)) for i in (2, 3, 4))
    m = re.search(r"^requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", out, re.M)
    res["requests"], res["failed"] = (int(m.group(2)), int(m.group(3))) if m else (None, None)
    m = re.search(r"^status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    res["non_2xx"] = sum(int(x) for x in m.groups()) if m else None
    return res


def run_h2load(port, path, seconds, clients, streams):
    """One h2load slot: `clients` h2c connections (prior knowledge), `streams` requests in flight
    on each, for `seconds` (whole seconds, h2load's unit for -D)."""
    argv = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{max(1, round(seconds))}",
            f"http://{HOST}:{port}{path}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    res = parse_h2load(out)
    if res["rps"] is None:
        raise RuntimeError(f"h2load printed no result: {out[-400:]}")
    return res


def phase_http2(ctx):
    """HTTP/2 with prior knowledge (h2c) from h2load, for the servers that serve it: every server
    up at once, slots taken in turn with the order rotating each round (as the throughput phase);
    the figures are the median slot's. herdsman's native engine and granian run with their default
    `http` (auto: HTTP/1.1 and HTTP/2 on the same port), hypercorn as in the other phases."""
    cfg = ctx.cfg
    if not shutil.which("h2load"):
        return {"error": "h2load is not installed (Debian's nghttp2-client; bench/run.sh installs it)"}
    out = {}
    for app in cfg["http2_apps"]:
        path = APPS[app][2]
        names = [srv for srv in cfg["http2_servers"] if srv in cfg["servers"]]
        servers, slots = {}, {srv: [] for srv in names}
        load = guarded(lambda port: run_h2load(port, path, cfg["http2_slot"], cfg["http2_clients"],
                                               cfg["http2_streams"]))
        try:
            for srv in names:
                s = Server(ctx, srv, app, cfg["workers"], ctx.tag("h2", app, srv)).start()
                try:
                    s.wait_ready()
                    servers[srv] = s
                except Exception as e:  # noqa: BLE001
                    log(f"  error: {srv} did not start for {app}: {e}")
                    slots[srv].append({"error": f"{type(e).__name__}: {e}"[:600]})
                    s.stop(timeout=5)
            started = list(servers)
            for srv in started:
                load(servers[srv].port)  # warm-up
            for rnd in range(cfg["http2_rounds"]):
                k = rnd % max(1, len(started))
                for srv in started[k:] + started[:k]:
                    slots[srv].append(load(servers[srv].port))
        finally:
            for s in servers.values():
                s.stop(timeout=10)
        out[app] = {}
        for srv, rs in slots.items():
            good = [r for r in rs if r.get("rps")]
            entry = {"label": server_label(srv, app), "slots": rs}
            if good:
                for key in ("rps", "mean_ms", "sd_ms", "max_ms"):
                    vals = [r[key] for r in good if r.get(key) is not None]
                    entry[key] = round(statistics.median(vals), 3) if vals else None
                entry["failed"] = sum(r.get("failed") or 0 for r in good)
                entry["non_2xx"] = sum(r.get("non_2xx") or 0 for r in good)
                entry["requests"] = sum(r.get("requests") or 0 for r in good)
            else:
                entry["error"] = rs[-1].get("error") if rs else "not run"
            out[app][srv] = entry
            log(f"http2 {app} {srv}: " + (f"{entry['rps']:.0f} req/s mean {entry['mean_ms']} ms "
                                          f"over {len(good)} slots, {entry['failed']} failed"
                                          if "rps" in entry else str(entry["error"])))
    return out


def shrink_access_log(path, keep=200):
    """Count the access lines a server wrote (the proof its log was on), then cut its log file down
    to its first lines: a full run writes hundreds of MB of them."""
    lines = size = 0
    head = []
    try:
        with open(path, "rb") as f:
            for line in f:
                size += len(line)
                if b'"GET /' in line:
                    lines += 1
                if len(head) < keep:
                    head.append(line)
        with open(path, "wb") as f:
            f.writelines(head)
            f.write(f"[bench/run.py: log cut to its first {keep} lines; it had {lines} access lines, "
                    f"{size} bytes]\n".encode())
    except OSError as e:
        return {"error": str(e)}
    return {"access_lines": lines, "bytes": size}


def phase_throughput(ctx):
    cfg = ctx.cfg
    out = {}
    for app in cfg["apps"]:
        slots, logs = throughput_app(ctx, app)
        out[app] = {}
        for srv, rs in slots.items():
            good = [r for r in rs if r.get("rps")]
            entry = {"label": server_label(srv, app), "slots": rs}
            if srv in logs:
                entry["access_log"] = logs[srv]
            if good:
                # The median slot: robust to a slot that another user's burst of CPU use hit.
                for key in ("rps", "p50_ms", "p75_ms", "p90_ms", "p99_ms", "server_cpu_us_per_request"):
                    vals = [r[key] for r in good if r.get(key) is not None]
                    entry[key] = round(statistics.median(vals), 3) if vals else None
                    if len(vals) > 1:
                        entry[key + "_cv"] = round(statistics.stdev(vals) / statistics.mean(vals), 4)
                entry["errors"] = sum(r["socket_errors"] + r["non_2xx"] for r in good)
                entry["requests"] = sum(r["requests"] or 0 for r in good)
            else:
                entry["error"] = rs[-1].get("error") if rs else "not run"
            out[app][srv] = entry
            log(f"throughput {app} {srv}: " + (f"{entry['rps']:.0f} req/s p50 {entry['p50_ms']} ms "
                                                 f"p99 {entry['p99_ms']} ms over {len(good)} slots"
                                                 if "rps" in entry else str(entry["error"])))
    return out


@guarded
def boot_one(ctx, server):
    app = life_app(ctx.cfg, server)
    s = Server(ctx, server, app, ctx.cfg["workers"], ctx.tag("boot", server)).start()
    try:
        first = s.wait_first_response()
    finally:
        took = s.stop(timeout=5)
    res = {"first_response_s": first}
    if took is None:
        res["note"] = "ignored SIGTERM while its workers were starting (killed after 5 s)"
    return res


def phase_boot(ctx):
    cfg = ctx.cfg
    out = {}
    runs = {srv: [] for srv in cfg["servers"]}
    for _ in range(cfg["boot_reps"]):
        for srv in cfg["servers"]:
            runs[srv].append(boot_one(ctx, srv))
    for srv, rs in runs.items():
        good = [r["first_response_s"] for r in rs if "first_response_s" in r]
        out[srv] = {"label": life_label(cfg, srv), "app": life_app(cfg, srv),
                    "runs_ms": [round(x * 1000, 1) for x in good]}
        notes = sorted({r["note"] for r in rs if r.get("note")})
        if notes:
            out[srv]["notes"] = notes
        if good:
            out[srv]["first_response_ms"] = round(statistics.median(good) * 1000, 1)
        else:
            out[srv]["error"] = rs[-1].get("error")
        log(f"boot {srv}: {out[srv].get('first_response_ms', out[srv].get('error'))} ms")
    return out


# Where a native worker's CPU goes: each perf sample (thread, object, symbol) falls in the first
# category whose test matches. The engine thread is named "herdsman-engine"; the app's threads are
# the interpreter's. Order matters: the GIL's functions before the interpreter's, the kernel's
# scheduler before its network stack.
ENGINE_THREAD = "herdsman-engine"
SCHED_SYMS = ("finish_task_switch", "_raw_spin_unlock_irq", "__schedule", "schedule", "try_to_wake_up", "futex",
              "__switch_to", "pick_next_task", "enqueue_task", "dequeue_task", "update_curr", "ttwu", "select_task_rq",
              "irqentry_exit_to_user_mode", "psi_", "native_queued_spin_lock", "__wake_up", "ep_poll", "do_epoll_wait",
              "syscall_exit_to_user_mode", "exit_to_user_mode")
GIL_SYMS = ("take_gil", "drop_gil", "PyEval_SaveThread", "PyEval_RestoreThread", "PyGILState", "PyThread_",
            "pthread_cond", "pthread_mutex", "_PyEval_EvalFrameDefault_lock", "PyCOND", "__pthread", "sem_",
            "__lll_lock", "__futex", "___pthread")
ENGINE_CATEGORIES = [
    ("kernel: thread switches and wake-ups (engine thread <-> app threads, GIL hand-offs, epoll waits)",
     lambda comm, dso, sym: dso == "[kernel.kallsyms]" and any(k in sym for k in SCHED_SYMS)),
    ("kernel: system calls, sockets and TCP (read, write, epoll, loopback)",
     lambda comm, dso, sym: dso == "[kernel.kallsyms]"),
    ("GIL and thread sync in user space (CPython's take_gil/drop_gil, pthread, futex calls)",
     lambda comm, dso, sym: any(k in sym for k in GIL_SYMS)),
    ("engine thread: HTTP parse and write (hyper, httparse, header encoding)",
     lambda comm, dso, sym: comm == ENGINE_THREAD and ("hyper" in sym or "httparse" in sym or "http::" in sym)),
    ("engine thread: tokio runtime, timers and clock",
     lambda comm, dso, sym: comm == ENGINE_THREAD and ("tokio" in sym or "mio" in sym or "clock_gettime" in sym
                                                       or dso == "[vdso]")),
    ("engine thread: herdsman's request and reply handling (queue, in-flight registry, access log)",
     lambda comm, dso, sym: comm == ENGINE_THREAD and "herdsman_engine" in sym),
    ("engine thread: memory allocation and copies (libc)",
     lambda comm, dso, sym: comm == ENGINE_THREAD and dso.startswith("libc")),
    ("app threads: the WSGI glue in Rust (environ, start_response, body, replies)",
     lambda comm, dso, sym: comm != ENGINE_THREAD and ("engine" in dso or "herdsman_engine" in sym or "pyo3" in sym)),
    ("app threads: the Python interpreter (the app, its framework, objects)",
     lambda comm, dso, sym: comm != ENGINE_THREAD and ("python" in dso.lower() or ".cpython-" in dso)),
    ("app threads: memory allocation and copies (libc)",
     lambda comm, dso, sym: comm != ENGINE_THREAD and dso.startswith("libc")),
]


def categorize_perf(text):
    """`perf report --sort comm,dso,sym -t <US>` lines -> {category: percent}, {thread: percent}."""
    cats, threads = {}, {}
    for line in text.splitlines():
        parts = line.split("\x1f")
        if len(parts) < 4 or not parts[0].strip().endswith("%"):
            continue
        try:
            pct = float(parts[0].strip().rstrip("%"))
        except ValueError:
            continue
        comm, dso = parts[1].strip(), parts[2].strip()
        sym = parts[3].strip()
        sym = sym.split("] ", 1)[1] if sym.startswith("[") and "] " in sym else sym
        name = next((c for c, test in ENGINE_CATEGORIES if test(comm, dso, sym)), "other")
        cats[name] = cats.get(name, 0.0) + pct
        who = "engine thread" if comm == ENGINE_THREAD else "app threads"
        threads[who] = threads.get(who, 0.0) + pct
    return cats, threads


@guarded
def phase_engine_profile(ctx):
    """Where one native worker's CPU goes at full load: perf samples of every thread of the worker,
    sorted into categories, and the worker's CPU per request (from /proc) split by them."""
    cfg = ctx.cfg
    if not shutil.which("perf"):
        return {"error": "perf is not installed (Debian: apt-get install linux-perf)"}
    if ctx.loadgen != "wrk":
        return {"error": "needs wrk (the Python load generator cannot load one worker fully)"}
    out = {}
    secs = cfg["engine_profile_seconds"]
    for app in [a for a in cfg["apps"] if APPS[a][1] == "wsgi"]:
        try:
            with started(ctx, "herdsman-native", app, 1, ctx.tag("engprof", app)) as s:
                pids = s.worker_pids()
                if len(pids) != 1:
                    out[app] = {"error": f"expected one worker, found {len(pids)}"}
                    continue
                pid = pids[0]
                load = ctx.background_load(s.port, APPS[app][2], fresh=False).start()
                try:
                    time.sleep(0.5)
                    data = ctx.out / f"perf-{app}.data"
                    c0, t0 = cpu_ns(pid), time.monotonic()
                    rec = subprocess.run(["perf", "record", "-q", "-F", "1999", "-p", str(pid), "-o", str(data),
                                          "--", "sleep", str(secs)], capture_output=True, text=True, timeout=secs + 60)
                    c1, t1 = cpu_ns(pid), time.monotonic()
                finally:
                    res = load.stop()
                if rec.returncode != 0 or not data.exists():
                    out[app] = {"error": f"perf record failed: {(rec.stderr or '').strip()[-300:]}"}
                    continue
                rep = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-q",
                                      "--sort", "comm,dso,sym", "-t", "\x1f"],
                                     capture_output=True, text=True, timeout=120)
                data.unlink(missing_ok=True)
                cats, threads = categorize_perf(rep.stdout)
                # The requests of the recorded window, at the load's mean rate.
                requests = res["ok"] * (t1 - t0) / res["seconds"] if res["seconds"] else 0
                us = (c1 - c0) / 1000 / requests if requests else None
                out[app] = {
                    "rps": res["rps"], "failed": res["failed"], "seconds": secs,
                    "worker_cpu_us_per_request": round(us, 2) if us else None,
                    "categories_percent": {k: round(v, 2) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
                    "threads_percent": {k: round(v, 2) for k, v in threads.items()},
                }
                log(f"engine profile {app}: {res['rps']} req/s, {out[app]['worker_cpu_us_per_request']} µs of worker "
                    f"CPU a request; " + ", ".join(f"{v:.0f}% {k.split(':')[0]}: {k.split(':')[1][:30].strip()}"
                                                  for k, v in list(out[app]["categories_percent"].items())[:4]))
        except Exception as e:  # noqa: BLE001
            out[app] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return out


def time_import(ctx, module):
    """ms for a fresh interpreter to import the app module (and exit)."""
    t0 = time.monotonic()
    subprocess.run([str(PY), "-c", f"import {module}"], cwd=APPS_DIR, env=ctx.env, check=True)
    return round((time.monotonic() - t0) * 1000, 1)


PROBE_EVERY = 0.002


def replacement_once(s, victim, timeout=15.0):
    """SIGKILL one worker, and open a fresh connection every 2 ms until one is answered (200) by
    a pid that did not exist before the kill: the replacement is then serving, and the server has
    its N workers again. The surviving workers keep serving the other probes; a new worker that
    accepts gets its share of them within a few probes (they all accept from the same queue, or
    from their own SO_REUSEPORT socket), so the figure includes a few ms of probing lag. Also
    notes when the new process first appeared among the master's children."""
    before = s.worker_pids()
    if victim is None or victim not in before:
        raise RuntimeError("no worker process found under the master")
    known = set(before) | {s.pid}
    result, done = {}, threading.Event()
    inflight = threading.BoundedSemaphore(512)

    def probe():
        try:
            status, body = http_get(s.port, "/", timeout=1.0)
            pid = body_pid(body) if status == 200 else None
            if pid is not None and pid not in known and not done.is_set():
                result.setdefault("t_answer", time.monotonic())
                result.setdefault("new_pid", pid)
                done.set()
        except Exception:  # noqa: BLE001
            pass
        finally:
            inflight.release()

    def watch_children():
        while not done.is_set() and "t_spawn" not in result:
            for p in s.worker_pids():
                if p not in known:
                    result.setdefault("t_spawn", time.monotonic())
                    break
            time.sleep(0.002)

    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    watcher = threading.Thread(target=watch_children, daemon=True)
    watcher.start()
    deadline = t0 + timeout
    while not done.is_set() and time.monotonic() < deadline and s.alive():
        if inflight.acquire(timeout=PROBE_EVERY):
            threading.Thread(target=probe, daemon=True).start()
        done.wait(PROBE_EVERY)
    done.set()
    watcher.join(1)
    if "t_answer" not in result:
        s.check_alive()
        left = len(s.worker_pids())
        raise TimeoutError(f"no new worker answered within {timeout:.0f} s of the SIGKILL "
                           f"(the server still runs, with {left} worker{'s' if left != 1 else ''})")
    out = {"replacement_ms": round((result["t_answer"] - t0) * 1000, 1), "new_pid": result["new_pid"]}
    if "t_spawn" in result:
        out["new_process_ms"] = round((result["t_spawn"] - t0) * 1000, 1)
    out["workers_after"] = len(s.worker_pids())
    return out


def herdsman_runtime_ms(log_text, pid):
    """The worker runtime's own account: from its first line of Python to ready (10 ms steps)."""
    m = re.search(rf"\[herdsman worker \d+ pid {pid}\] ready: .*?([\d.]+)s after start", log_text)
    return round(float(m.group(1)) * 1000) if m else None


def herdsman_boot_ms(log_text, pid):
    """herdsman's own account of a worker's boot (fork to ready), from its log."""
    m = re.search(rf"worker ready worker=\d+ pid={pid} .*?boot=([\d.]+)(ms|s|µs)", log_text)
    if not m:
        return None
    v = float(m.group(1))
    return round(v * {"ms": 1, "s": 1000, "µs": 0.001}[m.group(2)], 1)


class started:
    """`with started(ctx, server, app, n, tag) as s:` a ready server, stopped (and its session
    killed) on the way out."""

    def __init__(self, ctx, server, app, n, tag, ready_timeout=90.0, recycle=None):
        self.s = Server(ctx, server, app, n, tag, recycle=recycle)
        self.ready_timeout = ready_timeout

    def __enter__(self):
        self.s.start()
        try:
            self.s.wait_ready(self.ready_timeout)
        except BaseException:
            self.s.stop(timeout=10)
            raise
        return self.s

    def __exit__(self, *exc):
        self.s.stop(timeout=10)


def exited_note(s, what):
    tail = " | ".join(line for line in s.log_tail(4).split(" | ") if not line.startswith("$ "))
    return f"the server exited after {what} (exit code {s.proc.returncode}): {tail}"[:300]


def life_replacement(ctx, server):
    cfg = ctx.cfg
    app = life_app(cfg, server)
    with started(ctx, server, app, cfg["workers"], ctx.tag("kill", server)) as s:
        if s.single_process():
            return {"error": "serves in a single process at this worker count: no worker to kill"}
        reps = []
        for i in range(cfg["kill_reps"]):
            try:
                victim = oldest_worker(s)
                # The floor, measured right before each kill: the machine's load drifts.
                floor = time_import(ctx, APPS[app][0].split(":")[0])
                r = replacement_once(s, victim)
                r["python_import_app_ms"] = floor
            except Exception as e:  # noqa: BLE001
                r = {"error": exited_note(s, "a worker was SIGKILLed") if not s.alive() else f"{e}"}
            if server.startswith("herdsman") and "error" not in r:
                time.sleep(0.05)
                text = s.log_path.read_text(errors="replace")
                new = [p for p in s.worker_pids() if r.get("new_pid") in (None, p)]
                r["herdsman_boot_ms"] = [herdsman_boot_ms(text, p) for p in new]
                r["worker_runtime_ms"] = [herdsman_runtime_ms(text, p) for p in new]
            reps.append(r)
            log(f"replacement {server} #{i + 1}: {r}")
            if "error" in r or not s.alive():
                break
            s.wait_ready()
    out = {"runs": reps}
    good = [r["replacement_ms"] for r in reps if "replacement_ms" in r]
    if good:
        out["median_ms"] = round(statistics.median(good), 1)
        spawn = [r["new_process_ms"] for r in reps if "new_process_ms" in r]
        if spawn:
            out["new_process_median_ms"] = round(statistics.median(spawn), 1)
    else:
        out["error"] = reps[-1].get("error") if reps else "not run"
    return out


def life_kill_under_load(ctx, server):
    """Requests failed when a worker is SIGKILLed under steady load."""
    cfg = ctx.cfg
    n = cfg["workers"]
    with started(ctx, server, life_app(cfg, server), n, ctx.tag("killload", server)) as s:
        if s.single_process():
            return {"error": "serves in a single process at this worker count: no worker to kill"}
        load = SteadyLoad(s.port, cfg["load_threads"]).start()
        notes = []
        try:
            time.sleep(0.5)
            for _ in range(cfg["kill_load_reps"]):
                victim = oldest_worker(s)
                before = set(s.worker_pids())
                with load.lock:
                    seen = set(load.first_seen)
                os.kill(victim, signal.SIGKILL)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and s.alive():
                    if load.seen_since(seen | before) and len(s.worker_pids()) >= n:
                        break
                    time.sleep(0.01)
                else:
                    notes.append(exited_note(s, "a worker was SIGKILLed") if not s.alive()
                                 else "no new worker answered within 30 s")
                    break
                time.sleep(0.5)
        finally:
            res = load.stop()
        res["kills"] = cfg["kill_load_reps"]
        if notes:
            res["notes"] = notes
        log(f"kill under load {server}: {res}")
        return res


def life_graceful_stop(ctx, server):
    """K slow requests in flight, then SIGTERM to the master: those not answered 200 failed."""
    cfg = ctx.cfg
    k, secs = cfg["slow_requests"], cfg["slow_seconds"]
    with started(ctx, server, life_app(cfg, server), cfg["workers"], ctx.tag("stop", server)) as s:
        answers = []
        lock = threading.Lock()

        def slow():
            try:
                status, _ = http_get(s.port, f"/slow?s={secs}", timeout=secs + 20)
                r = "ok" if status == 200 else f"HTTP {status}"
            except Exception as e:  # noqa: BLE001
                r = type(e).__name__
            with lock:
                answers.append(r)

        threads = [threading.Thread(target=slow, daemon=True) for _ in range(k)]
        for t in threads:
            t.start()
        time.sleep(min(0.5, secs / 2))  # all accepted and sleeping in the app by now
        took = s.stop(signal.SIGTERM, timeout=secs + 20)
        for t in threads:
            t.join(secs + 25)
        failed = [a for a in answers if a != "ok"]
        res = {"in_flight": k, "slow_s": secs, "failed": len(failed) + (k - len(answers)),
               "errors": sorted(set(failed)), "exit_s": round(took, 3) if took else None}
        log(f"graceful stop {server}: {res}")
        return res


def lifecycle_one(ctx, server):
    cfg = ctx.cfg
    return {
        "label": life_label(cfg, server),
        "app": life_app(cfg, server),
        "workers": cfg["workers"],
        "replacement": guarded(life_replacement)(ctx, server),
        "kill_under_load": guarded(life_kill_under_load)(ctx, server),
        # Reloads are measured with every other replacement in the replacements phase.
        "graceful_stop": guarded(life_graceful_stop)(ctx, server),
    }


def phase_lifecycle(ctx):
    return {srv: lifecycle_one(ctx, srv) for srv in ctx.cfg["servers"]}


# --------------------------------------------------------------------------------------------
# Replacement under load: every way a server replaces or retires a worker while it keeps
# serving, under wrk at full load, with keep-alive connections and with fresh ones.

class NotSettled(Exception):
    pass


def new_pid_answers(s, old):
    """One request on a fresh connection: answered 200 by a worker whose pid is not in old?"""
    try:
        status, body = http_get(s.port, "/", timeout=2.0)
    except Exception:  # noqa: BLE001
        return False
    pid = body_pid(body) if status == 200 else None
    return pid is not None and pid not in old


def wait_until(s, cond, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not s.alive():
            raise ServerDied(exited_note(s, what))
        if cond():
            return
        time.sleep(0.02)
    raise NotSettled(f"{what}: not settled within {timeout:.0f} s ({len(s.worker_pids())} workers)")


def wait_replaced(s, old, n, what, timeout):
    """Every old worker gone, n workers alive, and a new one has answered a fresh connection."""
    def done():
        now = set(s.worker_pids())
        return not (now & old) and len(now) == n and new_pid_answers(s, old)
    wait_until(s, done, what, timeout)


def act_signal_replace(sig):
    """A reload (or herdsman's in-place upgrade): sig to the master, until every worker is new."""
    def act(s, n, timeout):
        old = set(s.worker_pids())
        os.kill(s.pid, sig)
        wait_replaced(s, old, n, signal.Signals(sig).name, timeout)
    return act


def act_gunicorn_upgrade(s, n, timeout):
    """gunicorn's binary upgrade: SIGUSR2 makes the master fork and exec a new master, which starts
    its own workers on the inherited sockets; once they serve, SIGTERM to the old master stops it
    and its workers gracefully (gunicorn's documented sequence; SIGWINCH works only daemonized)."""
    old_master, old = s.pid, set(s.worker_pids())
    os.kill(old_master, signal.SIGUSR2)
    found = {}

    def new_master_serves():
        for c in worker_pids(old_master):
            if c not in old:
                kids = set(worker_pids(c))
                if len(kids) >= n and new_pid_answers(s, old | {c}):
                    found["pid"] = c
                    return True
        return False

    wait_until(s, new_master_serves, "SIGUSR2", timeout)
    os.kill(old_master, signal.SIGTERM)
    s.master = found["pid"]  # from now on the new master is the server
    wait_until(s, lambda: read_stat(old_master) is None or read_stat(old_master)[0] == "Z" or s.proc.poll() is not None,
               "SIGTERM to the old master", timeout)
    wait_replaced(s, old, n, "SIGUSR2 + SIGTERM", timeout)
    # The upgrade is over once the new master has noticed and taken over (before that, it takes a
    # SIGTERM for its own workers but never exits).
    promoted = f"[{found['pid']}] [INFO] Master has been promoted"
    wait_until(s, lambda: promoted in s.log_path.read_text(errors="replace"), "the new master's promotion", timeout)


def act_scale(s, n, timeout):
    """SIGTTOU (one worker fewer, retired as gracefully as the server can), then SIGTTIN."""
    old = set(s.worker_pids())
    os.kill(s.pid, signal.SIGTTOU)
    wait_until(s, lambda: len(s.worker_pids()) == n - 1 and set(s.worker_pids()) < old, "SIGTTOU", timeout)
    os.kill(s.pid, signal.SIGTTIN)
    wait_until(s, lambda: len(s.worker_pids()) == n and new_pid_answers(s, old), "SIGTTIN", timeout)


def replacement_action(server, kind):
    base = base_server(server)
    if kind == "reload":
        return act_signal_replace(signal.SIGHUP)
    if kind == "upgrade":
        return act_gunicorn_upgrade if base == "gunicorn" else act_signal_replace(signal.SIGUSR2)
    if kind == "scale":
        return act_scale
    raise ValueError(kind)


def load_window(ctx, s, mode, body):
    """wrk (or the fallback) against s for the length of body(): lead, body, tail. The load's
    figures, plus body's and any error it raised (the failures until then still count)."""
    cfg = ctx.cfg
    load = ctx.background_load(s.port, APPS[s.app][2], fresh=(mode == "fresh")).start()
    info = {}
    t0 = time.monotonic()
    try:
        time.sleep(cfg["repl_lead_s"])
        t1 = time.monotonic()
        info = body() or {}
        info.setdefault("settled_s", round(time.monotonic() - t1, 3))
        time.sleep(cfg["repl_tail_s"])
    except (NotSettled, ServerDied) as e:
        info = {"error": str(e)[:300]}
    finally:
        res = load.stop()
    res.update(info)
    res["window_s"] = round(time.monotonic() - t0, 2)
    return res


def summarize_events(events, asked):
    """Failed requests over a kind's events, and per event."""
    done = [e for e in events if "error" not in e]
    out = {"events": len(done), "asked": asked, "failed": sum(e["failed"] for e in events),
           "ok": sum(e["ok"] for e in events), "per_event_failed": [e["failed"] for e in events], "windows": events}
    errors = {}
    for e in events:
        for k, v in e.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    out["errors"] = errors
    settled = [e["settled_s"] for e in done if "settled_s" in e]
    if settled:
        out["median_settled_s"] = round(statistics.median(settled), 3)
    notes = [e["error"] for e in events if "error" in e]
    if notes:
        out["notes"] = notes
    return out


def run_kind(ctx, s, mode, kind, count):
    """count events of one kind in a row (fewer once they took repl_kind_budget_s, at least 2)."""
    cfg = ctx.cfg
    act = replacement_action(s.server, kind)
    n, timeout = s.workers, cfg["repl_settle_timeout_s"]
    events, t0 = [], time.monotonic()
    for i in range(count):
        if i >= 2 and time.monotonic() - t0 > cfg["repl_kind_budget_s"]:
            break
        r = load_window(ctx, s, mode, lambda: act(s, n, timeout))
        events.append(r)
        log(f"  {s.server} {s.app} {mode} {kind} #{i + 1}: {r['failed']} failed of {r['ok'] + r['failed']}"
            + (f", settled in {r['settled_s']} s" if "settled_s" in r else "") + (f" ({r['error']})" if "error" in r else ""))
        if "error" in r or not s.alive():
            break
        time.sleep(cfg["repl_gap_s"])
    return summarize_events(events, count)


def run_control(ctx, s, mode):
    r = load_window(ctx, s, mode, lambda: time.sleep(ctx.cfg["repl_control_s"]))
    r.pop("settled_s", None)
    log(f"  {s.server} {s.app} {mode} control: {r['failed']} failed of {r['ok'] + r['failed']}, {r['rps']} req/s")
    return r


def run_recycle(ctx, server, app, mode, control_rps):
    """One window of max-requests recycling at full load. N is the control's req/s per worker
    times repl_recycle_every_s (so every server recycles about as often), jitter N/10; the
    recycles are the new worker pids seen during the window (polled every 50 ms)."""
    cfg = ctx.cfg
    n = cfg["repl_workers"]
    per_worker = (control_rps or 0) / n
    limit = max(cfg["repl_recycle_min"], int(per_worker * cfg["repl_recycle_every_s"]))
    recycle = (limit, max(1, limit // 10))
    with started(ctx, server, app, n, ctx.tag("recycle", server, app, mode), recycle=recycle) as s:
        initial = set(s.worker_pids())
        seen = set(initial)

        def watch():
            end = time.monotonic() + cfg["repl_recycle_s"]
            while time.monotonic() < end:
                if not s.alive():
                    raise ServerDied(exited_note(s, "max-requests recycling"))
                seen.update(s.worker_pids())
                time.sleep(0.05)
            return {}

        r = load_window(ctx, s, mode, watch)
        r.pop("settled_s", None)
        # A worker that reached its limit near the end of the window may be replaced just after it:
        # its failures are in the window, so it counts too.
        end = time.monotonic() + 1.5
        while time.monotonic() < end and s.alive():
            seen.update(s.worker_pids())
            time.sleep(0.05)
        recycled = len(seen - initial)
        r.update({"max_requests": recycle[0], "jitter": recycle[1], "recycled": recycled})
        log(f"  {server} {app} {mode} recycle (max-requests {recycle[0]}): {recycled} workers recycled, "
            f"{r['failed']} failed of {r['ok'] + r['failed']}")
        out = summarize_events([r], 1)
        out.update({"events": recycled, "asked": None, "max_requests": recycle[0], "jitter": recycle[1],
                    "seconds": cfg["repl_recycle_s"]})
        return out


def counts(cfg):
    return {"reload": cfg["repl_reloads"], "upgrade": cfg["repl_upgrades"], "scale": cfg["repl_scales"]}


@guarded
def replacements_one(ctx, server, app):
    cfg = ctx.cfg
    n = cfg["repl_workers"]
    supp, unsupp = SUPPORTED.get(server, {}), UNSUPPORTED.get(server, {})
    out = {"label": server_label(server, app), "workers": n, "how": supp, "unsupported": unsupp,
           "modes": {m: {} for m in MODES}}
    control_rps = {}
    with started(ctx, server, app, n, ctx.tag("repl", server, app)) as s:
        for mode in MODES:
            ev = out["modes"][mode]
            ev["control"] = run_control(ctx, s, mode)
            control_rps[mode] = ev["control"].get("rps")
            for kind in ("reload", "scale", "upgrade"):
                if kind not in supp:
                    continue
                if not s.alive():
                    ev[kind] = {"error": exited_note(s, "an earlier event")}
                    continue
                ev[kind] = run_kind(ctx, s, mode, kind, counts(cfg)[kind])
    if "recycle" in supp:
        for mode in MODES:
            out["modes"][mode]["recycle"] = guarded(run_recycle)(ctx, server, app, mode, control_rps.get(mode))
    return out


def phase_replacements(ctx):
    out = {}
    for app, servers in ctx.cfg["repl_matrix"]:
        out[app] = {}
        for srv in servers:
            if srv not in ctx.cfg["servers"] or not serves(srv, app):
                continue
            log(f"replacements {app} {srv}")
            out[app][srv] = replacements_one(ctx, srv, app)
    return out


@guarded
def memory_one(ctx, server, app, n):
    s = Server(ctx, server, app, n, ctx.tag("mem", server, n)).start()
    try:
        s.wait_ready(timeout=120)
        pids = session_pids(s.sid)
        res = {
            "workers_seen": len(s.worker_pids()),
            "processes": len(pids),
            "master_rss_kib": status_kib(s.pid, "VmRSS"),
            "master_pss_kib": pss_kib(s.pid),
            "total_rss_kib": sum(status_kib(p, "VmRSS") for p in pids),
            "total_pss_kib": sum(pss_kib(p) for p in pids),
        }
        c0, t0 = cpu_ns(s.pid), time.monotonic()
        time.sleep(ctx.cfg["mem_window"])
        c1, t1 = cpu_ns(s.pid), time.monotonic()
        res["master_cpu_ms_per_min"] = round((c1 - c0) / 1e6 / (t1 - t0) * 60, 2)
        if s.single_process():
            res["note"] = "single process: the 'master' is the worker"
        return res
    finally:
        s.stop(timeout=15)


def phase_memory(ctx):
    cfg = ctx.cfg
    out = {}
    for n in cfg["mem_counts"]:
        for srv in cfg["servers"]:
            app = life_app(cfg, srv)
            r = memory_one(ctx, srv, app, n)
            out.setdefault(srv, {"label": life_label(cfg, srv), "app": app, "by_workers": {}})["by_workers"][str(n)] = r
            log(f"memory {srv} w={n}: {r}")
    return out


@guarded
def phase_idle(ctx):
    """Every server started at once, idle for the same minute: each master's own CPU time
    (utime+stime ticks and the finer schedstat ns) over that minute."""
    cfg = ctx.cfg
    servers = []
    out = {}
    try:
        for n in cfg["idle_counts"]:
            for srv in cfg["servers"]:
                servers.append(Server(ctx, srv, life_app(cfg, srv), n, ctx.tag("idle", srv, n)).start())
        ready = []
        for s in servers:
            try:
                s.wait_ready(timeout=180)
                ready.append(s)
            except Exception as e:  # noqa: BLE001
                out.setdefault(s.server, {})[str(s.workers)] = {"error": str(e)[:300]}
        # Wait until everything is idle together (the last boots may have kept the first busy).
        time.sleep(1.0)
        before = {s: (read_stat(s.pid), cpu_ns(s.pid), wakeups(s.pid)) for s in ready}
        t0 = time.monotonic()
        time.sleep(cfg["idle_seconds"])
        t1 = time.monotonic()
        for s in ready:
            st0, ns0, w0 = before[s]
            st1, ns1, w1 = read_stat(s.pid), cpu_ns(s.pid), wakeups(s.pid)
            entry = {"seconds": round(t1 - t0, 2)}
            if st0 and st1:
                entry["master_cpu_ticks_ms"] = round((st1[3] - st0[3]) * 1000 / TICK, 1)
                entry["master_cpu_ms"] = round((ns1 - ns0) / 1e6, 2)
                entry["master_cpu_ms_per_min"] = round((ns1 - ns0) / 1e6 / (t1 - t0) * 60, 2)
                entry["master_wakeups_per_s"] = round((w1 - w0) / (t1 - t0), 2)
                entry["workers_seen"] = len(s.worker_pids())
            else:
                entry["error"] = "the master exited during the idle window"
            out.setdefault(s.server, {})[str(s.workers)] = entry
            log(f"idle {s.server} w={s.workers}: {entry}")
        # The profile behind those figures: what each idle master does, syscall by syscall.
        for s, prof in strace_profiles(ctx, [s for s in ready if s.alive()], cfg["profile_seconds"]).items():
            out[s.server][str(s.workers)]["strace"] = prof
    finally:
        for s in servers:
            s.stop(timeout=15)
    return out


def parse_strace_c(text):
    """strace -c's table: % time, seconds, usecs/call, calls, [errors], syscall."""
    calls = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0].replace(".", "").isdigit() or parts[-1] == "total":
            continue
        try:
            n = int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
            usecs = int(parts[2])
        except ValueError:
            continue
        calls[parts[-1]] = {"calls": n, "errors": errors, "usecs_per_call": usecs}
    return calls


def strace_profiles(ctx, servers, seconds):
    """`strace -c -f -p MASTER` on every idle master at once for a few seconds (after the CPU
    figures were taken, since tracing slows the traced): syscalls per second by name."""
    if not shutil.which("strace") or not servers:
        return {}
    procs = {}
    for s in servers:
        path = ctx.logs / f"strace-{s.tag}.txt"
        procs[s] = (subprocess.Popen(["strace", "-c", "-f", "-p", str(s.pid), "-o", str(path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
    t0 = time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - t0
    out = {}
    for s, (proc, path) in procs.items():
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:
            calls = parse_strace_c(path.read_text())
        except OSError:
            continue
        total = sum(c["calls"] for c in calls.values())
        out[s] = {
            "seconds": round(took, 2),
            "syscalls_per_s": round(total / took, 1),
            "by_syscall_per_s": {k: round(v["calls"] / took, 1) for k, v in
                                 sorted(calls.items(), key=lambda kv: -kv[1]["calls"])[:8]},
            "failed_per_s": {k: round(v["errors"] / took, 1) for k, v in calls.items() if v["errors"]},
            "usecs_per_call": {k: v["usecs_per_call"] for k, v in calls.items()},
        }
    return out


# --------------------------------------------------------------------------------------------
# Environment description

def machine_info():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = status = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    del status
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpus_online": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory": mem,
        "loadavg_start": os.getloadavg(),
    }


def versions(ctx):
    code = ("import importlib.metadata as m, json, sys; ps=['gunicorn','uvicorn-worker','uvicorn','granian',"
            "'hypercorn','a2wsgi','fastapi','starlette','flask','uvloop','httptools','matplotlib'];"
            "v={p: m.version(p) for p in ps};v['python']=sys.version.split()[0];print(json.dumps(v))")
    out = json.loads(subprocess.run([str(PY), "-c", code], capture_output=True, text=True, check=True).stdout)
    try:
        out["herdsman"] = subprocess.run([str(ctx.herdsman), "--version"], capture_output=True, text=True,
                                         timeout=10).stdout.strip()
    except OSError as e:
        out["herdsman"] = f"unavailable: {e}"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "Cargo.toml",
                                "Cargo.lock"], capture_output=True, text=True, timeout=10).stdout.strip()
        out["herdsman_commit"] = commit + (" + uncommitted changes in src/" if dirty else "")
    except OSError:
        pass
    out["herdsman_build"] = "debug" if "/debug/" in str(ctx.herdsman) else "release"
    if ctx.loadgen == "wrk":
        wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
        out["wrk"] = wrk.split()[1] if len(wrk.split()) > 1 else wrk.strip()
    return out


# --------------------------------------------------------------------------------------------
# Main

def wait_quiet(max_wait, threshold=1.0, every=30.0):
    start = time.monotonic()
    while True:
        load1 = os.getloadavg()[0]
        if load1 < threshold:
            return True, load1, time.monotonic() - start
        if time.monotonic() - start >= max_wait:
            return False, load1, time.monotonic() - start
        log(f"load average {load1:.2f} >= {threshold}: waiting for a quiet machine "
            f"({int(time.monotonic() - start)}/{int(max_wait)} s)")
        time.sleep(every)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="reduced run proving the harness works (seconds)")
    ap.add_argument("--out", help="results directory (default: bench/results, or a temp dir with --smoke)")
    ap.add_argument("--docs", help="where benchmarks.md, benchmarks.json and the PNGs go "
                                   "(default: docs/ for a full run; the results directory with --smoke)")
    ap.add_argument("--herdsman", default=str(ROOT / "target/release/herdsman"), help="the herdsman binary")
    ap.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    ap.add_argument("--loadgen-note", default="", help="why the load generator is what it is (from run.sh)")
    ap.add_argument("--servers", help="comma-separated subset (development)")
    ap.add_argument("--apps", help="comma-separated subset of throughput apps (development)")
    ap.add_argument("--phases", help=f"comma-separated subset of {','.join(PHASES)} (development)")
    ap.add_argument("--repl-apps", help="comma-separated apps for the replacements phase, each with every server "
                                        "of --servers (development; default: the run's matrix)")
    ap.add_argument("--workers", type=int, help="worker count for throughput and lifecycle")
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="wait up to this many seconds for a 1-min load average < 1.0 (default 900 full, 0 smoke)")
    args = ap.parse_args()

    cfg = dict(SMOKE if args.smoke else FULL)
    if args.servers:
        cfg["servers"] = args.servers.split(",")
        cfg["throughput_servers"] = [s for s in cfg["servers"] if s != "hypercorn"] or cfg["servers"]
        cfg["accesslog_servers"] = [v for v in cfg["accesslog_servers"] if base_server(v) in cfg["servers"]]
        cfg["ws_servers"] = [v for v in cfg["ws_servers"] if v in cfg["servers"]]
        cfg["repl_matrix"] = [[app, list(cfg["servers"])] for app, _ in cfg["repl_matrix"]]
    if args.repl_apps:
        cfg["repl_matrix"] = [[app, list(cfg["servers"])] for app in args.repl_apps.split(",")]
    if args.apps:
        cfg["apps"] = args.apps.split(",")
    if args.workers:
        cfg["workers"] = args.workers
        if args.workers >= 2:  # scale-down needs two workers; the replacement phase never runs fewer
            cfg["repl_workers"] = args.workers
    phases = args.phases.split(",") if args.phases else PHASES
    for name in cfg["servers"]:
        if name not in SERVERS:
            ap.error(f"unknown server {name}")
    for app, _ in cfg["repl_matrix"]:
        if app not in APPS:
            ap.error(f"unknown app {app}")
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="herdsman-bench-") if args.smoke else str(BENCH / "results")
    if args.docs is None:
        args.docs = args.out if args.smoke else str(ROOT / "docs")
    if args.wait_quiet is None:
        args.wait_quiet = 0 if args.smoke else 900

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: (kill_everything(), sys.exit(130)))

    ctx = Ctx(args, cfg)
    if not ctx.herdsman.exists():
        sys.exit(f"run.py: no herdsman binary at {ctx.herdsman} (cargo build --release)")
    if not PY.exists():
        sys.exit(f"run.py: no peers venv at {VENV} (bash bench/run.sh builds it)")
    if ctx.loadgen == "wrk" and not shutil.which("wrk"):
        sys.exit("run.py: --loadgen wrk but wrk is not on PATH")

    quiet = {"max_wait_s": args.wait_quiet}
    if args.wait_quiet > 0:
        ok, load1, waited = wait_quiet(args.wait_quiet)
        quiet.update({"quiet": ok, "load1": round(load1, 2), "waited_s": round(waited)})
        if not ok:
            log(f"the machine never got quiet (load {load1:.2f}): running anyway; the report says so")
    results = {
        "kind": "smoke" if args.smoke else "full",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "quiet_wait": quiet,
        "versions": versions(ctx),
        "loadgen": {"tool": ctx.loadgen, "note": args.loadgen_note,
                    "connections": cfg["connections"] if ctx.loadgen == "wrk" else min(cfg["connections"], 16)},
        "config": cfg,
        "phases": {},
    }
    log(f"{results['kind']} run: servers {cfg['servers']}, {cfg['workers']} workers, load generator {ctx.loadgen}, "
        f"results in {ctx.out}")
    busy0, own0, t_start = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    funcs = {"imports": phase_imports, "profile": phase_profile, "throughput": phase_throughput,
             "websocket": phase_websocket,
             "http2": phase_http2,
             "engine_profile": phase_engine_profile, "boot": phase_boot,
             "lifecycle": phase_lifecycle, "replacements": phase_replacements, "memory": phase_memory,
             "idle": phase_idle}
    try:
        for name in PHASES:
            if name not in phases:
                continue
            log(f"phase {name}")
            b0, o0, p0 = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
            results["phases"][name] = funcs[name](ctx)
            b1, o1, p1 = machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
            results.setdefault("phase_times", {})[name] = {
                "seconds": round(p1 - p0, 1),
                # CPU used on this machine by processes that are not the benchmark's own (other
                # users' builds and tests): the noise next to the figures, in CPUs busy on average.
                "foreign_cpus": round(max(0.0, (b1 - b0) - (o1 - o0)) / (p1 - p0), 2),
            }
    finally:
        kill_everything()
    elapsed = time.monotonic() - t_start
    results["elapsed_s"] = round(elapsed, 1)
    results["foreign_cpus"] = round(max(0.0, (machine_busy_seconds() - busy0) - (own_cpu_seconds() - own0)) / elapsed, 2)
    results["machine"]["loadavg_end"] = os.getloadavg()

    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    import report  # bench/report.py: tables, targets, plots

    report.write(results, docs, smoke=args.smoke)
    log(f"done in {elapsed:.0f} s: {ctx.out / 'latest.json'}, {docs / 'benchmarks.md'}")

    # The harness is broken if nothing at all could be measured; slow figures never fail it.
    measured = json.dumps(results["phases"])
    if {"throughput", "boot", "lifecycle"} & set(phases) and '"rps"' not in measured and '"first_response_ms"' not in measured and '"replacement_ms"' not in measured:
        log("no measurement succeeded: the harness is broken")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
