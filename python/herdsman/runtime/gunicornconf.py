"""gunicorn's Python config file (`-c gunicorn.conf.py`), as herdsman reads it.

Self-contained on purpose (no import of the rest of the runtime): the master runs this very file
with the app's interpreter as `python -c SOURCE COMMAND ...`, before any runtime directory exists
(`herdsman check` has none). Commands:

    evaluate PATH          execute the file as gunicorn does and print one JSON object on stdout:
                           {"settings": {name: value}, "lines": {name: line}, "hooks": [names]},
                           and for `python:module` "import_root" (where its package was found);
                           exit 1 with the traceback on stderr if it raises
    hook NAME PATH CONTEXT run one master-side hook (`on_starting`, `child_exit`, ...) in this
                           short-lived process; CONTEXT is JSON: {"server": {...}, "worker": {...},
                           "args": [...], "chdir": ..., "pythonpath": [...],
                           "import_root": ...}

The worker runtime imports it too (hooks.py) for `load`, `Config`, `HookLog`, `Server`.

As gunicorn: the file runs as a module named `__config__` with `__file__` set, in the caller's
working directory (the master's), and only names that are gunicorn settings are taken; other
top-level names (imports, helpers) are ignored. `python:module.name` imports a module instead.
"""

import ast
import importlib
import importlib.util
import json
import logging
import os
import sys
import traceback
import types

# Every gunicorn setting (gunicorn 23), hooks included: names in a config file outside this set
# are helpers and silently ignored, as gunicorn does.
SETTINGS = frozenset("""
    access_log_format accesslog backlog bind ca_certs capture_output cert_reqs certfile chdir
    check_config ciphers config daemon dogstatsd_tags do_handshake_on_connect enable_stdio_inheritance
    errorlog forwarded_allow_ips graceful_timeout group header_map initgroups keepalive keyfile
    limit_request_field_size limit_request_fields limit_request_line logconfig logconfig_dict
    logconfig_json logger_class loglevel max_requests max_requests_jitter paste permit_obsolete_folding
    permit_unconventional_http_method permit_unconventional_http_version pidfile preload_app
    print_config proc_name proxy_allow_ips proxy_protocol pythonpath raw_env raw_paste_global_conf
    reload reload_engine reload_extra_files reuse_port casefold_http_method sendfile
    secure_scheme_headers spew ssl_version statsd_host statsd_prefix strip_header_spaces
    suppress_ragged_eofs syslog syslog_addr syslog_facility syslog_prefix threads timeout tmp_upload_dir
    umask user worker_class worker_connections worker_tmp_dir workers wsgi_app
    forwarder_headers default_proc_name
""".split())

# gunicorn's server hooks, in the order its docs list them.
HOOKS = (
    "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork", "post_worker_init",
    "worker_int", "worker_abort", "pre_exec", "pre_request", "post_request", "child_exit",
    "worker_exit", "nworkers_changed", "on_exit", "ssl_context",
)


def _module_for(target: str, import_root=None):
    """A fresh module holding the executed file (or the imported `python:module`).

    `import_root` (for `python:module`): the directory the master found the module's top-level
    package in (`evaluate` reports it), searched first for this import only and then kept last
    on sys.path; a worker has changed directory (`chdir`) since, so the master's working
    directory may no longer be on its path."""
    if target.startswith("python:"):
        return _import(target[len("python:"):], import_root)
    path = os.path.abspath(target)
    module = types.ModuleType("__config__")
    module.__file__ = path
    with open(path, "rb") as f:
        source = f.read()
    code = compile(source, path, "exec")
    exec(code, module.__dict__)
    return module


def _import(name: str, import_root):
    if not import_root or import_root in sys.path:
        return importlib.import_module(name)
    sys.path.insert(0, import_root)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(import_root)
        sys.path.append(import_root)  # for the hooks' own later imports, shadowing nothing


def import_root(name: str):
    """The sys.path entry an imported `python:module` was found in (absolute), or None."""
    top = sys.modules.get(name.split(".", 1)[0])
    locations = list(getattr(top, "__path__", None) or [])
    if locations:
        return os.path.dirname(os.path.abspath(locations[0]))
    origin = getattr(top, "__file__", None)
    return os.path.dirname(os.path.abspath(origin)) if origin else None


def source_path(target: str):
    """The file a target's code is in: the path itself, or a `python:module`'s file once imported."""
    if not target.startswith("python:"):
        return os.path.abspath(target)
    name = target[len("python:"):]
    origin = getattr(sys.modules.get(name), "__file__", None)
    if origin is None:  # its import failed: it is not in sys.modules
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            spec = None
        origin = spec.origin if spec is not None else None
    return os.path.abspath(origin) if origin else None


def load(target: str, import_root=None) -> dict:
    """The file's gunicorn settings and hooks: {name: value}, names outside SETTINGS left out."""
    namespace = vars(_module_for(target, import_root))
    return {name: value for name, value in namespace.items() if name in SETTINGS or name in HOOKS}


def hook_functions(settings: dict) -> dict:
    """{hook name: callable}; a hook given as a dotted path ("pkg.mod.func") is imported."""
    found = {}
    for name in HOOKS:
        value = settings.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            module, _, attr = value.rpartition(".")
            value = getattr(importlib.import_module(module), attr)
        if not callable(value):
            raise TypeError("%s must be a function, got %s" % (name, type(value).__name__))
        found[name] = value
    return found


def _lines(target: str) -> dict:
    """Line of the last top-level assignment or definition of each name (for messages)."""
    path = source_path(target)
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except Exception:
        return {}
    lines = {}
    for node in tree.body:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            targets = [node.name]
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                targets.extend(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        for name in targets:
            lines[name] = node.lineno
    return lines


def _jsonable(value):
    """A value as JSON can carry it; what it cannot is described: {"other": "a dict"}."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else {"float": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return {"other": "a %s" % type(value).__name__}


def evaluate(target: str) -> dict:
    settings = load(target)
    hooks = sorted(hook_functions(settings), key=HOOKS.index)
    values = {name: _jsonable(v) for name, v in settings.items() if name not in HOOKS}
    lines = _lines(target)
    evaluated = {
        "settings": values,
        "lines": {name: lines.get(name, 1) for name in list(values) + hooks},
        "hooks": hooks,
    }
    if target.startswith("python:"):
        evaluated["import_root"] = import_root(target[len("python:"):])
    return evaluated


class Config:
    """`server.cfg` / `worker.cfg`: gunicorn settings by name, as attributes (`cfg.bind`,
    `cfg.workers`); the effective values herdsman runs with, over the file's own."""

    def __init__(self, values: dict) -> None:
        self.__dict__["_values"] = dict(values)

    def __getattr__(self, name):
        values = self.__dict__["_values"]
        if name in values:
            return values[name]
        if name in SETTINGS:
            return None
        raise AttributeError("No configuration setting for: %s" % name)

    def __setattr__(self, name, value) -> None:
        self.__dict__["_values"][name] = value

    @property
    def settings(self) -> dict:
        return dict(self.__dict__["_values"])


def hook_logger(name: str) -> logging.Logger:
    """`server.log` / `worker.log`: a logger with gunicorn's methods (debug ... critical,
    exception), writing to stderr, which herdsman routes where the workers' output goes."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(process)d] [%(levelname)s] %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


class Server:
    """gunicorn's `server` (the Arbiter) as hooks see it: pid (the master's), cfg, num_workers,
    log, address (the listeners, as given), proc_name."""

    def __init__(self, context: dict, cfg: Config, log) -> None:
        self.pid = context.get("pid")
        self.num_workers = context.get("num_workers")
        self.address = context.get("address", [])
        self.LISTENERS = self.address
        self.cfg = cfg
        self.log = log
        self.proc_name = cfg.proc_name or "herdsman"
        self.app = None


class Worker:
    """A worker as master-side hooks (pre_fork, child_exit) see it: pid, age (its herdsman
    worker id, the spawn order), ppid, cfg, log, alive, exitcode when known."""

    def __init__(self, context: dict, cfg: Config, log) -> None:
        self.pid = context.get("pid")
        self.age = context.get("age")
        self.ppid = context.get("ppid")
        self.exitcode = context.get("exitcode")
        self.alive = context.get("alive", False)
        self.booted = context.get("booted", False)
        self.cfg = cfg
        self.log = log
        self.tmp = None


def run_hook(name: str, target: str, context: dict) -> int:
    settings = load(target, context.get("import_root"))
    functions = hook_functions(settings)
    if context.get("chdir"):
        os.chdir(context["chdir"])
    for entry in reversed(context.get("pythonpath") or []):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    function = functions.get(name)
    if function is None:
        return 0
    values = {k: v for k, v in settings.items() if k not in HOOKS}
    values.update(context.get("cfg") or {})
    cfg = Config(values)
    log = hook_logger("herdsman.hooks")
    server = Server(context.get("server") or {}, cfg, log)
    args = [server]
    if "worker" in context:
        args.append(Worker(context["worker"], cfg, log))
    args.extend(context.get("args") or [])
    function(*args)
    return 0


def user_traceback(exc: BaseException, target: str) -> str:
    """The traceback from the config file's first frame on: the runtime's and importlib's frames
    before it are noise. Without a frame of the file, from the first frame that is neither (a
    hook given as a dotted path); with none at all, only the exception (the file never ran: a
    syntax error, a module not found)."""
    path = source_path(target)
    first = _first_frame(exc.__traceback__, lambda name: name == path)
    if first is None:
        first = _first_frame(exc.__traceback__, lambda name: not _runtime_frame(name))
    if first is None:
        return "".join(traceback.format_exception_only(type(exc), exc))
    return "".join(traceback.format_exception(type(exc), exc, first))


def _first_frame(tb, wanted):
    while tb is not None and not wanted(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _runtime_frame(filename: str) -> bool:
    """This module's frames (a file, or `<string>` when the master runs it with -c), or importlib's."""
    return (filename in (globals().get("__file__"), "<string>") or filename.startswith("<frozen importlib")
            or filename == getattr(importlib, "__file__", None))


def print_user_traceback(exc: BaseException, target: str) -> None:
    sys.stderr.write(user_traceback(exc, target))
    sys.stderr.flush()


def main(argv) -> int:
    command = argv[0] if argv else ""
    try:
        if command == "evaluate" and len(argv) == 2:
            json.dump(evaluate(argv[1]), sys.stdout)
            sys.stdout.write("\n")
            return 0
        if command == "hook" and len(argv) == 4:
            return run_hook(argv[1], argv[2], json.loads(argv[3]))
    except SystemExit:
        raise
    except BaseException as exc:
        print_user_traceback(exc, argv[-2] if command == "hook" else argv[-1])
        return 1
    sys.stderr.write("usage: gunicornconf.py evaluate PATH | hook NAME PATH CONTEXT\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
