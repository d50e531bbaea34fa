"""The zygote (spawn = "zygote", docs/zygote.md).

One per generation, started by the master like a worker but with --zygote, the listeners at 3..
and a control socket where a worker's channel would be. It imports uvicorn (and with --preload
the app), freezes the garbage collector so the pages stay shared, then says `zygote_ready` and
forks a worker for every `fork` request. It starts no thread and no event loop: a fork copies
only the calling thread.

A fork request carries the new worker's channel (and, when the master wants the worker's output
elsewhere than the zygote's, the fd for its stdout and stderr) by SCM_RIGHTS. The zygote forks
an intermediate child that forks the worker and exits at once; the zygote reaps the
intermediate. The worker, orphaned, is reparented to the master (a child subreaper): it is the
master's child, reaped and signalled by it like an exec'd worker. The worker waits for that
(bounded), sets PR_SET_PDEATHSIG, puts its fds in place and continues into worker_main.
"""

import argparse
import gc
import json
import os
import signal
import socket
import sys
import time

from . import proctitle
from .appload import enter_directory, import_a2wsgi, import_uvicorn, load_app, resolve_interface
from .engines import native as native_engine
from .consts import BOOT_SEND_TIMEOUT, EXIT_CODES, EXIT_OK
from .errors import BootError
from .log import log
from .worker import Warm, worker_main

ZYGOTE_MAX_FDS = 4
# How long a forked worker waits to be reparented to the master before giving up (the
# intermediate exits right after the fork, so this is normally well under a millisecond).
REPARENT_WAIT = 2.0
EXIT_ORPHANED = 1
PR_SET_PDEATHSIG = 1


class BecomeWorker(BaseException):
    """Raised in a freshly forked worker: unwinds the zygote's stack up to zygote_main, which
    then runs the worker's life. Never caught by the zygote's own code."""

    def __init__(self, worker_args, started: float) -> None:
        super().__init__("become worker %s" % worker_args.worker_id)
        self.worker_args = worker_args
        self.started = started


def zygote_main(args, runtime_dir=None) -> int:
    log.configure(args.worker_id, args.log_level, role="zygote", log_format=args.log_format)
    if args.proc_name:
        proctitle.set_title("zygote", args.proc_name)
    control = socket.socket(fileno=args.channel_fd)
    control.settimeout(BOOT_SEND_TIMEOUT)
    master_pid = os.getppid()
    try:
        warm = _zygote_warm_up(args, runtime_dir)
    except BootError as exc:
        _zygote_send(control, "boot_error", kind=exc.kind, message=exc.message)
        log.write("error", "cannot start: %s" % exc.message, traceback=exc.traceback)
        return EXIT_CODES[exc.kind]
    try:
        return _zygote_serve(args, control, master_pid, warm)
    except BecomeWorker as become:
        return worker_main(become.worker_args, become.started, warm)


def _zygote_warm_up(args, runtime_dir) -> Warm:
    started = time.monotonic()
    if getattr(args, "engine", "uvicorn") == "native":
        # The module only: the engine's threads start in each worker's Server.start.
        engine = native_engine.load_engine(args.engine_lib)
        uvicorn, engine_name = None, "native engine %s" % engine.__version__
    else:
        uvicorn, dependency_error = import_uvicorn()
        if dependency_error is not None:
            raise dependency_error
        _warm_engine()
        engine, engine_name = None, "uvicorn %s" % uvicorn.__version__
    enter_directory(args.chdir, runtime_dir, args.pythonpath)
    warm = Warm(uvicorn, engine=engine)
    if args.preload:
        warm.app = load_app(args.app, args.factory)
        warm.interface = resolve_interface(warm.app, args.interface, args.app)
        if warm.interface == "wsgi" and engine is None:
            import_a2wsgi()
    import ctypes  # for prctl in the forked workers

    ctypes.CDLL(None, use_errno=True)
    # Everything imported so far is shared copy-on-write with the workers; a collection in a
    # worker would write to every object's header and unshare the pages. Frozen objects are never
    # collected.
    gc.collect()
    gc.freeze()
    log.debug("ready: %s imported%s in %.2fs; %d objects frozen"
             % (engine_name, ", app %r preloaded" % args.app if args.preload else "",
                time.monotonic() - started, gc.get_freeze_count()))
    return warm


def _warm_engine() -> None:
    """Import what uvicorn would import lazily in every worker (protocol implementations, the
    lifespan handler, the event loop): best effort, each is optional."""
    import asyncio  # noqa: F401
    import importlib

    # Not the WebSocket implementations: which one uvicorn picks depends on its version and what is
    # installed, and importing a deprecated one warns.
    for name in ("uvicorn.lifespan.on", "uvicorn.protocols.http.h11_impl",
                 "uvicorn.protocols.http.httptools_impl", "uvicorn.loops.uvloop", "uvloop"):
        try:
            importlib.import_module(name)
        except Exception:
            pass


def _zygote_send(control, type_: str, **fields) -> None:
    message = {"type": type_}
    message.update(fields)
    try:
        control.sendall((json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8"))
    except OSError as exc:
        log.debug("control: send failed: %s" % (exc,))


def _zygote_serve(args, control, master_pid: int, warm: Warm) -> int:
    _zygote_send(control, "zygote_ready", pid=os.getpid(), preloaded=bool(args.preload))
    control.settimeout(None)
    buffered = b""
    fds = []
    while True:
        try:
            data, received, _flags, _addr = socket.recv_fds(control, 65536, ZYGOTE_MAX_FDS)
        except InterruptedError:
            continue
        except OSError as exc:
            log.debug("control: receive failed: %s" % (exc,))
            return EXIT_OK
        fds.extend(received)
        if not data:
            log.debug("control: master gone, exiting")
            return EXIT_OK
        buffered += data
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict) or message.get("type") != "fork":
                log.debug("control: ignoring %r" % (line[:200],))
                continue
            inflight = bool(message.get("inflight"))  # the in-flight file comes last
            wanted = (2 if message.get("output") else 1) + inflight
            taken, fds = fds[:wanted], fds[wanted:]
            _zygote_fork(args, control, master_pid, message.get("worker_id"), taken, inflight)


def _zygote_fork(args, control, master_pid: int, worker_id, fds, inflight=False) -> None:
    if not isinstance(worker_id, int) or not fds:
        for fd in fds:
            os.close(fd)
        _zygote_send(control, "fork_failed", worker_id=worker_id, error="malformed fork request")
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or the worker would write the zygote's buffered output again
        except Exception:
            pass
    try:
        pid = _double_fork(args, control, master_pid, worker_id, fds, inflight)
    except OSError as exc:
        _zygote_send(control, "fork_failed", worker_id=worker_id, error=str(exc))
        return
    finally:
        for fd in fds:
            os.close(fd)
    if pid is None:
        _zygote_send(control, "fork_failed", worker_id=worker_id, error="the intermediate process failed")
    else:
        _zygote_send(control, "forked", worker_id=worker_id, pid=pid)


def _double_fork(args, control, master_pid: int, worker_id: int, fds, inflight=False):
    """Returns the worker's pid (None if the intermediate failed); in the worker, raises
    BecomeWorker."""
    read_end, write_end = os.pipe()
    try:
        intermediate = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        raise
    if intermediate == 0:
        try:
            os.close(read_end)
            worker = os.fork()
        except BaseException:
            os._exit(1)
        if worker == 0:
            os.close(write_end)
            started = time.monotonic()
            inflight_fd = fds.pop() if inflight and len(fds) > 1 else None
            _become_worker(args, control, master_pid, fds)
            worker_args = argparse.Namespace(**vars(args))
            worker_args.inflight_fd = inflight_fd
            worker_args.zygote = False
            worker_args.worker_id = str(worker_id)
            raise BecomeWorker(worker_args, started)
        try:
            os.write(write_end, worker.to_bytes(4, "little"))
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = b""
        while len(data) < 4:
            chunk = os.read(read_end, 4 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        os.waitpid(intermediate, 0)
    return int.from_bytes(data, "little") if len(data) == 4 else None


def _become_worker(args, control, master_pid: int, fds) -> None:
    """In the forked worker, before anything else: become the master's child, die with it, and
    hold exactly the fds of an exec'd worker. Exits at once if the master is gone."""
    deadline = time.monotonic() + REPARENT_WAIT
    while os.getppid() != master_pid:
        if time.monotonic() >= deadline:
            os._exit(EXIT_ORPHANED)
        time.sleep(0.0001)
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:  # the master died before prctl
        os._exit(EXIT_ORPHANED)
    os.setpgid(0, 0)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    channel_fd, output_fd = fds[0], (fds[1] if len(fds) > 1 else None)
    control.detach()  # its fd number becomes the worker's channel below
    if output_fd is not None:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
    os.dup2(channel_fd, args.channel_fd)
    os.close(channel_fd)
    del fds[:]  # closed here; the zygote closes its own copies
    if "random" in sys.modules:
        sys.modules["random"].seed()  # also done by Python's own at-fork hook; cheap to be sure
