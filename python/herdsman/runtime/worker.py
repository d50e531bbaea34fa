"""One worker's life, from `hello` to its exit code: an exec'd worker, or one forked from the
zygote (which hands it a Warm with the engine, and with preload the app, already imported)."""

import faulthandler
import os
import signal
import socket
import sys
import time

from . import hooks as worker_hooks
from . import lifecycle, proctitle, readiness
from .appload import enter_directory, import_uvicorn, load_app, resolve_interface
from .channel import Channel
from .consts import EXIT_CODES, EXIT_OK
from .engines import native as native_engine
from .engines import uvicorn as uvicorn_engine
from .errors import BootError, StopRequested
from .log import log


class Warm:
    """What a worker forked from the zygote finds already done: the engine imported (uvicorn, or
    the native engine's module: no thread of it runs before the fork), the working directory and
    sys.path set, and with --preload the app imported and its interface known."""

    def __init__(self, uvicorn, app=None, interface=None, engine=None) -> None:
        self.uvicorn = uvicorn
        self.app = app
        self.interface = interface
        self.engine = engine


def worker_main(args, started: float, warm, runtime_dir=None) -> int:
    """A worker's whole life: an exec'd one (`warm` is None) or one forked from the zygote."""
    try:
        return _worker_life(args, started, warm, runtime_dir)
    finally:
        if worker_hooks.current is not None:
            worker_hooks.current.worker_exit()
            worker_hooks.flush()


def _worker_life(args, started: float, warm, runtime_dir) -> int:
    log.configure(args.worker_id, args.log_level, log_format=args.log_format)
    if getattr(args, "proc_name", None):
        proctitle.set_title("worker", args.proc_name)

    lifecycle.install_signal_handlers()
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR2, all_threads=True, chain=False)

    channel = Channel(args.channel_fd)
    listeners = []
    try:
        for fd in args.listen_fds:
            os.set_inheritable(fd, False)  # the app's subprocesses must not hold the listeners
            listeners.append(socket.socket(fileno=fd))

        native = getattr(args, "engine", "uvicorn") == "native"
        if native:
            # The extension module only: its threads start with the server, after any fork.
            uvicorn, dependency_error = None, None
            try:
                engine = warm.engine if warm is not None and warm.engine is not None else native_engine.load_engine(args.engine_lib)
            except BootError as exc:
                engine, dependency_error = None, exc
            description = ("native %s" % engine.__version__) if engine is not None else None
        elif warm is None:
            uvicorn, dependency_error = import_uvicorn()
        else:
            uvicorn, dependency_error = warm.uvicorn, None
        if not native:
            description = ("uvicorn %s" % uvicorn.__version__) if uvicorn is not None else None
        channel.send(
            "hello",
            pid=os.getpid(),
            python="%d.%d.%d" % sys.version_info[:3],
            engine=description,
        )
        if channel.gone:
            log.info("master gone before the app was imported: exiting")
            return EXIT_OK
        if dependency_error is not None:
            raise dependency_error
        lifecycle.watch_channel_while_booting(args.channel_fd)

        if warm is None:
            enter_directory(args.chdir, runtime_dir, args.pythonpath)
        hooks = worker_hooks.load(args)
        if hooks is not None:
            worker_hooks.current = hooks
            hooks.install_abort()
            hooks.post_fork()

        if warm is not None and warm.app is not None:
            app, interface = warm.app, warm.interface
        else:
            app = load_app(args.app, args.factory)
            interface = resolve_interface(app, args.interface, args.app)
        log.debug("app %r loaded in %.3fs, interface %s" % (args.app, time.monotonic() - started, interface))
        if hooks is not None:
            hooks.post_worker_init(app)
        ready_path = getattr(args, "ready_path", None)
        if ready_path and interface == "wsgi":
            # The app itself, not through pre/post_request. ASGI apps are probed after lifespan
            # startup, by the engine adapter (it gets the app before wrapping: `probed`).
            code = readiness.probe_wsgi(app, ready_path, getattr(args, "root_path", ""))
            log.debug("readiness probe GET %s answered %d" % (ready_path, code))
        probed = app
        if hooks is not None:
            app = hooks.wrap(app, interface)
        if native:
            return native_engine.serve(args, engine, app, interface, channel, listeners, started, probed)
        return uvicorn_engine.serve(args, uvicorn, app, interface, channel, listeners, started, probed)

    except BootError as exc:
        lifecycle.state.phase = "done"
        fields = {"traceback": exc.traceback} if exc.traceback else {}
        channel.send("boot_error", kind=exc.kind, message=exc.message, **fields)
        # The master says it (once, with the traceback); say it here only if it did not hear.
        if channel.gone:
            log.write("error", "cannot start: %s" % exc.message, traceback=exc.traceback)
        return EXIT_CODES[exc.kind]

    except StopRequested as stop:
        lifecycle.state.phase = "done"
        log.debug("stopping (%s) before the app was ready" % (stop.signame if stop.reason == "signal" else stop.reason))
        if stop.reason != "master_gone":
            channel.send("stopping", reason=stop.reason)
        return EXIT_OK

