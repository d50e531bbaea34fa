"""`herdsman check`'s probe (launched by python/herdsman_check.py): the steps of a worker's boot
that can fail on this machine, run once in the app's interpreter with the worker's argv and
environment, so that what would fail at start fails here, with the same message.

It takes the worker's argv as the master builds it (only the options that concern loading are
read) and writes one JSON object to the report path: the Python version, the engine's version,
the app's interface, and `error` ({kind, message, traceback}) for the first step that failed.
"""

import argparse
import json
import sys

from .appload import enter_directory, import_a2wsgi, import_uvicorn, load_app, resolve_interface
from .engines.native import load_engine
from .errors import BootError


def parse_worker_args(argv):
    parser = argparse.ArgumentParser(prog="herdsman_check.py", add_help=False)
    parser.add_argument("--app", required=True)
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--interface", default="auto")
    parser.add_argument("--engine", default="uvicorn")
    parser.add_argument("--engine-lib", default=None)
    parser.add_argument("--chdir")
    parser.add_argument("--pythonpath", action="append", default=[])
    args, _ = parser.parse_known_args(argv)
    return args


def probe(args, runtime_dir: str, report: dict) -> None:
    """Fills `report`; raises BootError at the first step that fails."""
    if args.engine == "native":

        report["native"] = load_engine(args.engine_lib).__version__
    else:
        uvicorn, error = import_uvicorn()
        if error is not None:
            raise error
        report["uvicorn"] = uvicorn.__version__
    enter_directory(args.chdir, runtime_dir, args.pythonpath)
    app = load_app(args.app, args.factory)
    interface = resolve_interface(app, args.interface, args.app)
    report["interface"] = interface
    if interface == "wsgi" and args.engine != "native":
        a2wsgi = import_a2wsgi()
        report["a2wsgi"] = getattr(a2wsgi, "__version__", None) or _distribution_version("a2wsgi")


def _distribution_version(name: str):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def main(report_path: str, argv, runtime_dir: str) -> int:
    args = parse_worker_args(argv)
    report = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}
    code = 0
    try:
        probe(args, runtime_dir, report)
    except BootError as exc:
        report["error"] = {"kind": exc.kind, "message": exc.message, "traceback": exc.traceback}
        code = 1
    with open(report_path, "w", encoding="utf-8") as out:
        json.dump(report, out)
    return code
