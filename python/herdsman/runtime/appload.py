"""Loading the engine and the app: importing uvicorn and a2wsgi with a clear message when they are
missing, importing MODULE:ATTR (calling it when it is a factory), and telling ASGI from WSGI. Every
failure becomes a BootError with the kind the master reports (docs/protocol.md).

The fix for a missing package is `pip install` into this interpreter, unless it is a system Python
that refuses that (PEP 668: an EXTERNALLY-MANAGED file in its stdlib directory, and not a venv):
then the fix is a venv with the package, and --python pointing at it."""

import functools
import inspect
import os
import sys
import sysconfig

from .errors import BootError, StopRequested


def python_description() -> str:
    return "%s (Python %s)" % (sys.executable or "python", "%d.%d.%d" % sys.version_info[:3])


def externally_managed() -> bool:
    """Whether pip refuses to install into this interpreter (PEP 668): a system Python, not a venv,
    whose stdlib directory holds the EXTERNALLY-MANAGED marker."""
    if sys.prefix != sys.base_prefix:
        return False
    try:
        stdlib = sysconfig.get_path("stdlib")
    except (KeyError, ValueError):
        return False
    return bool(stdlib) and os.path.isfile(os.path.join(stdlib, "EXTERNALLY-MANAGED"))


def install_hint(package: str, reinstall: bool = False) -> str:
    """How to get `package` for this interpreter: pip into it, or, for a system Python that refuses
    pip (PEP 668), a venv to point --python at."""
    if not externally_managed():
        force = "--force-reinstall " if reinstall else ""
        return "run '%s -m pip install %s%s'" % (sys.executable, force, package)
    venv = "/srv/app/.venv"
    return (
        "%s is the system's Python, which refuses pip installs (PEP 668, externally managed): create "
        "a venv and start herdsman with it, e.g. '%s -m venv %s && %s/bin/pip install %s', then "
        "--python %s/bin/python (on Debian and Ubuntu the venv module is the python3-venv package)"
        % (sys.executable, sys.executable, venv, venv, package, venv)
    )


# The uvicorn releases herdsman is tested with: CI runs the suite on both ends. The uvicorn engine
# reaches into uvicorn.Server's internals (`servers`, `server_state.connections` and `.tasks`, a
# connection's `cycle`, `config.http_protocol_class`, `timeout_graceful_shutdown`), which uvicorn
# is free to change in any release.
UVICORN_OLDEST = (0, 54)
UVICORN_NEWEST = (0, 55)


def version_pair(text):
    """(major, minor) of a version string such as '0.55.0' or '0.56.0rc1', or None."""
    parts = str(text).split(".")
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or "x")
    except (IndexError, ValueError):
        return None


def uvicorn_support(version):
    """(error, warning) for this uvicorn version: an error below the oldest supported release, a
    warning past the newest tested one (it may work; herdsman has not been run on it)."""
    supported = "%d.%d to %d.%d" % (UVICORN_OLDEST + UVICORN_NEWEST)
    pin = '"uvicorn>=%d.%d,<%d.%d"' % (UVICORN_OLDEST + (UVICORN_NEWEST[0], UVICORN_NEWEST[1] + 1))
    pair = version_pair(version)
    if pair is None:
        return None, ("uvicorn reports version %r, which herdsman cannot read; it supports uvicorn %s"
                      % (version, supported))
    if pair < UVICORN_OLDEST:
        return ("uvicorn %s for %s is older than herdsman supports (uvicorn %s; the worker runtime "
                "uses uvicorn internals that changed): %s" % (version, python_description(), supported,
                                                            install_hint(pin))), None
    if pair > UVICORN_NEWEST:
        return None, ("uvicorn %s is newer than any herdsman was tested with (uvicorn %s): if workers "
                      "misbehave, pin %s" % (version, supported, pin))
    return None, None


def import_uvicorn():
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        if exc.name == "uvicorn":
            return None, BootError(
                "dependency",
                "uvicorn is not installed for %s: %s" % (python_description(), install_hint("uvicorn")),
            )
        return None, BootError(
            "dependency",
            "uvicorn is installed for %s but cannot be imported (%s: %s): %s"
            % (python_description(), type(exc).__name__, exc, install_hint("uvicorn", reinstall=True)),
        )
    except Exception as exc:
        return None, BootError(
            "dependency",
            "uvicorn cannot be imported for %s (%s: %s): %s"
            % (python_description(), type(exc).__name__, exc, install_hint("uvicorn", reinstall=True)),
        )
    error, warning = uvicorn_support(getattr(uvicorn, "__version__", "unknown"))
    if error:
        return None, BootError("dependency", error)
    if warning:
        from .log import log

        log.warning(warning)
    return uvicorn, None


def import_a2wsgi():
    try:
        import a2wsgi
    except ModuleNotFoundError as exc:
        if exc.name == "a2wsgi":
            raise BootError(
                "dependency",
                "a2wsgi (needed to serve WSGI apps) is not installed for %s: %s"
                % (python_description(), install_hint("a2wsgi")),
            ) from None
        raise BootError(
            "dependency",
            "a2wsgi cannot be imported for %s (%s: %s): %s"
            % (python_description(), type(exc).__name__, exc, install_hint("a2wsgi", reinstall=True)),
        ) from None
    _fix_a2wsgi_readlines()
    return a2wsgi


def _fix_a2wsgi_readlines() -> None:
    """a2wsgi 1.10's `wsgi.input.readlines()` adds a newline to a last line that had none (the
    app reads a byte the client never sent) and takes `hint` as a line count instead of a byte
    total (io.IOBase's meaning, which PEP 3333 refers to). Replace it by one built on its own
    `readline()`, which is right; tests/wsgi.rs checks every way of reading the body."""
    try:
        from a2wsgi.wsgi import Body
    except ImportError:
        return
    if getattr(Body.readlines, "_herdsman", False):
        return

    def readlines(self, hint: int = -1):
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    readlines._herdsman = True
    Body.readlines = readlines


def load_app(spec: str, factory: bool):
    """Import MODULE:ATTR (ATTR may be dotted), and call it if it is a factory."""
    import importlib

    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise BootError("import", "app %r must be given as MODULE:ATTR, e.g. 'main:app'" % spec)

    def failed(what: str) -> BootError:
        exc = sys.exc_info()[1]
        # The master says it once, with the traceback (docs/protocol.md, boot_error).
        return BootError(
            "import",
            "cannot %s app %r: %s: %s" % (what, spec, type(exc).__name__, exc),
            traceback=app_traceback(exc),
        )

    try:
        module = importlib.import_module(module_name)
    except StopRequested:
        raise
    except BaseException as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == module_name:
            raise BootError(
                "import",
                "cannot import app %r: no module named %r (working directory %s): check the app name "
                "and the working directory (chdir)" % (spec, module_name, os.getcwd()),
            ) from None
        raise failed("import") from None

    obj = module
    walked = []
    for part in attr_path.split("."):
        walked.append(part)
        try:
            obj = getattr(obj, part)
        except AttributeError:
            message = "module %r has no attribute %r" % (module_name, ".".join(walked))
            raise BootError("import", "cannot load app %r: %s" % (spec, message)) from None
        except StopRequested:
            raise
        except BaseException:  # a module __getattr__ or a property that raises
            raise failed("load") from None

    if factory:
        if not callable(obj):
            raise BootError("import", "app factory %r is not callable (it is %s)" % (spec, _describe(obj)))
        try:
            obj = obj()
        except StopRequested:
            raise
        except BaseException:
            raise failed("call the factory of") from None
    return obj


def app_traceback(exc) -> str:
    """The traceback of `exc` from the app's first frame on: the runtime's own frames and
    importlib's bootstrap frames say nothing to the app's developer."""
    import traceback

    here = os.path.dirname(os.path.abspath(__file__))
    report = traceback.TracebackException.from_exception(exc)
    frames = list(report.stack)
    while frames and (frames[0].filename.startswith(here) or frames[0].filename.startswith("<frozen")
                      or "/importlib/" in frames[0].filename):
        frames.pop(0)
    report.stack = traceback.StackSummary.from_list(frames)
    return "".join(report.format()).rstrip("\n")


def _describe(obj) -> str:
    text = repr(obj)
    if len(text) > 60:
        text = text[:57] + "..."
    return "%s %s" % (type(obj).__name__, text)


def _is_coroutine_function(func) -> bool:
    if func is None:
        return False
    if inspect.iscoroutinefunction(func):
        return True
    if sys.version_info < (3, 14):
        # Also recognises callables marked with asyncio's `_is_coroutine` flag (asgiref's
        # markcoroutinefunction before 3.12), as uvicorn does on these versions.
        import asyncio

        return asyncio.iscoroutinefunction(func)
    return False


def _binds(sig: inspect.Signature, n: int) -> bool:
    try:
        sig.bind(*([None] * n))
    except TypeError:
        return False
    return True


def detect_interface(obj):
    """'asgi', 'wsgi' or None (cannot tell).

    ASGI: the object, or its __call__, is a coroutine function (FastAPI, Starlette, Django's
    ASGIHandler, raw `async def app(scope, receive, send)`). WSGI: a plain callable that accepts
    exactly two positional arguments (environ, start_response): Flask, Django's WSGIHandler, plain
    functions. ASGI2 (class-style) apps are not detected.
    """
    target = obj
    while isinstance(target, functools.partial):
        target = target.func
    if _is_coroutine_function(target) or (
        not inspect.isfunction(target) and _is_coroutine_function(getattr(target, "__call__", None))
    ):
        return "asgi"
    if not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if _binds(sig, 2) and not _binds(sig, 3):
        return "wsgi"
    return None


def resolve_interface(obj, requested: str, spec: str) -> str:
    if not callable(obj):
        raise BootError(
            "interface",
            "app %r is %s, not an ASGI or WSGI application: point the app at the application object "
            "(or use --factory if the attribute is a function that returns it)" % (spec, _describe(obj)),
        )
    if requested in ("asgi", "wsgi"):
        return requested
    detected = detect_interface(obj)
    if detected is None:
        raise BootError(
            "interface",
            "cannot tell whether app %r (%s) is ASGI or WSGI: pass --interface asgi|wsgi, or --factory "
            "if it is a function that returns the app" % (spec, _describe(obj)),
        )
    return detected


def shield_from_factory_guess(app):
    """uvicorn's Config.load() calls the app with no arguments to guess whether it is a factory.
    A real app called like that raises TypeError at once, but one whose parameters all have
    defaults would run (or return a coroutine that is never awaited); hide such an app behind a
    plain three-argument coroutine function."""
    try:
        sig = inspect.signature(app)
    except (TypeError, ValueError):
        return app
    if not _binds(sig, 0):
        return app

    async def asgi_app(scope, receive, send):
        return await app(scope, receive, send)

    return asgi_app


def enter_directory(chdir, runtime_dir: str, pythonpath=()) -> None:
    """Change to `chdir` (if given) and put the working directory first on sys.path, after the
    `pythonpath` directories (relative ones from that directory), in their order."""
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise BootError("import", "cannot change to directory %r: %s" % (chdir, exc.strerror))
    fix_sys_path(runtime_dir)
    first = [os.path.abspath(d) for d in pythonpath]
    sys.path[:] = first + [e for e in sys.path if e not in first]


def fix_sys_path(runtime_dir: str) -> None:
    """The working directory first (as under gunicorn/uvicorn), and not the runtime's directory."""
    kept = []
    for entry in sys.path:
        try:
            resolved = os.path.realpath(entry or os.curdir)
        except (OSError, ValueError):
            resolved = entry
        if resolved == runtime_dir:
            continue
        kept.append(entry)
    sys.path[:] = [os.getcwd()] + [e for e in kept if e != os.getcwd()]
