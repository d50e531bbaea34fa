"""The worker runtime's command line (docs/protocol.md, "Worker argv"), and its entry point."""

import argparse
import time

from .accessformat import DEFAULT_FORMAT
from .consts import LOG_LEVELS
from .worker import worker_main
from .zygote import zygote_main


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="herdsman_worker.py",
        description="herdsman worker runtime (started by the herdsman master; see docs/protocol.md)",
    )
    parser.add_argument("--app", required=True, help="MODULE:ATTR")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--interface", choices=("auto", "asgi", "wsgi"), default="auto")
    # uvicorn's lifespan mode for ASGI apps (WSGI apps have none: always off).
    parser.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto")
    # The engine (config `engine`): the master passes all three only for the native engine, with
    # the library it already located (absolute path); the defaults are for a runtime run by hand.
    parser.add_argument("--engine", choices=("uvicorn", "native"), default="uvicorn")
    parser.add_argument("--engine-lib", default=None)
    # Python threads running a WSGI app in each worker (config `threads`): the native engine's
    # pool (1 if not given), or a2wsgi's under uvicorn (WSGI_THREADS if not given).
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--listen-fd", type=int, action="append", required=True, dest="listen_fds")
    parser.add_argument("--channel-fd", type=int, required=True)
    parser.add_argument("--worker-id", required=True)
    # The in-flight file (inflightfile.py); a zygote-forked worker gets it by SCM_RIGHTS instead.
    parser.add_argument("--inflight-fd", type=int, default=None)
    parser.add_argument("--heartbeat-interval", type=positive_float, required=True)
    # How often an idle worker (no request since its last heartbeat) still sends one.
    parser.add_argument("--idle-heartbeat-interval", type=positive_float)
    parser.add_argument("--graceful-timeout", type=non_negative_float, required=True)
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info")
    # The master's log format (log.py); with captured output the master asks for json.
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    # The access log (accesslog.py): a path or "-" for stdout; none without this option.
    parser.add_argument("--access-log-file")
    parser.add_argument("--access-log-format", default=DEFAULT_FORMAT)
    parser.add_argument("--chdir")
    # Directories put first on sys.path, in order (config `pythonpath`); repeatable.
    parser.add_argument("--pythonpath", action="append", default=[])
    # uvicorn calls listen() again on every socket it serves, with its own backlog (2048 unless
    # told): without this the last worker to start would decide the backlog, not the master.
    parser.add_argument("--backlog", type=int, default=2048)
    # Both engines: the keep-alive timeout (seconds) and gunicorn's request limits (0: none).
    parser.add_argument("--keep-alive", type=non_negative_float, default=5.0)
    parser.add_argument("--limit-request-line", type=int, default=4094)
    parser.add_argument("--limit-request-fields", type=int, default=100)
    parser.add_argument("--limit-request-field-size", type=int, default=8190)
    # Both engines: the cap on connections served at once (gunicorn's --worker-connections;
    # beyond it connections wait in the listen queue), and the PROXY protocol (read only from the
    # --proxy-allow-from peers; see docs/engine.md).
    parser.add_argument("--worker-connections", type=int, default=1000)
    parser.add_argument("--proxy-protocol", action="store_true")
    parser.add_argument("--proxy-allow-from", default="127.0.0.1,::1")
    # Native engine only: the HTTP versions (config `http`: auto, 1 or 2) and the HTTP/2 settings
    # (streams, the two flow-control windows and the header list in bytes, the PING interval in
    # seconds, 0: none); defaults as the master's.
    parser.add_argument("--http", choices=("auto", "1", "2"), default="auto")
    parser.add_argument("--http2-max-concurrent-streams", type=int, default=200)
    parser.add_argument("--http2-initial-stream-window-size", type=int, default=1 << 20)
    parser.add_argument("--http2-initial-connection-window-size", type=int, default=1 << 20)
    parser.add_argument("--http2-max-header-list-size", type=int, default=64 << 10)
    parser.add_argument("--http2-keep-alive-interval", type=non_negative_float, default=0.0)
    # The mount prefix (config `root_path`): ASGI root_path, WSGI SCRIPT_NAME.
    parser.add_argument("--root-path", default="")
    # The readiness probe (config `ready_path`, readiness.py): a GET the worker makes to its own app
    # before `ready`; only a 2xx or 3xx answer makes it ready.
    parser.add_argument("--ready-path", default=None)
    # The name in the process title (config `proc_name`, proctitle.py); none: the title is left.
    parser.add_argument("--proc-name", default=None)
    # A gunicorn.conf.py with worker-side hooks (hooks.py), and the effective settings as JSON.
    parser.add_argument("--gunicorn-config")
    parser.add_argument("--gunicorn-cfg")
    # TLS (config `certfile` ...): the engine reads the files when the worker starts. --cert-reqs
    # is gunicorn's 0/1/2; --tls-min-version "1.2" or "1.3" (what `ssl_version` maps to).
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument("--ca-certs")
    parser.add_argument("--cert-reqs", type=int, choices=(0, 1, 2), default=0)
    parser.add_argument("--ciphers")
    parser.add_argument("--tls-min-version", choices=("1.2", "1.3"), default="1.2")
    # The zygote (spawn = "zygote"): --channel-fd is its control socket, --worker-id its generation.
    parser.add_argument("--zygote", action="store_true")
    parser.add_argument("--preload", action="store_true")
    return parser.parse_args(argv)



def main(argv=None, runtime_dir=None) -> int:
    """Run a worker (or, with --zygote, a zygote). `runtime_dir` is the directory the master
    extracted the runtime into: it is taken off sys.path before the app is imported."""
    args = parse_args(argv)
    if args.zygote:
        return zygote_main(args, runtime_dir)
    return worker_main(args, time.monotonic(), None, runtime_dir)
