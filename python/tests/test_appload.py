"""Loading the app and telling ASGI from WSGI (herdsman.runtime.appload)."""

import functools
import os
import sys
import textwrap

import pytest

from herdsman.runtime.appload import detect_interface, fix_sys_path, load_app, resolve_interface
from herdsman.runtime.errors import BootError


async def raw_asgi(scope, receive, send):
    pass


def raw_wsgi(environ, start_response):
    return []


class AsgiClass:
    async def __call__(self, scope, receive, send):
        pass


class WsgiClass:
    def __call__(self, environ, start_response):
        return []


@pytest.mark.parametrize(
    "app, expected",
    [
        (raw_asgi, "asgi"),
        (AsgiClass(), "asgi"),
        (functools.partial(raw_asgi), "asgi"),
        (raw_wsgi, "wsgi"),
        (WsgiClass(), "wsgi"),
        (lambda: None, None),  # no arguments: cannot tell
        (lambda a, b, c, d: None, None),
    ],
)
def test_detect_interface(app, expected):
    assert detect_interface(app) == expected


def test_resolve_interface_honours_an_explicit_choice_and_refuses_what_is_not_an_app():
    assert resolve_interface(lambda: None, "wsgi", "m:a") == "wsgi"
    with pytest.raises(BootError) as info:
        resolve_interface(42, "auto", "m:a")
    assert info.value.kind == "interface" and "not an ASGI or WSGI application" in info.value.message
    with pytest.raises(BootError) as info:
        resolve_interface(lambda: None, "auto", "m:a")
    assert "--interface asgi|wsgi" in info.value.message


@pytest.fixture
def app_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("hm_test_")]:
        del sys.modules[name]


def write(directory, name, text):
    (directory / name).write_text(textwrap.dedent(text))


def test_load_app_walks_dotted_attributes_and_calls_factories(app_dir):
    write(app_dir, "hm_test_ok.py", """
        class holder:
            app = "the app"
        def make():
            return "made"
    """)
    assert load_app("hm_test_ok:holder.app", False) == "the app"
    assert load_app("hm_test_ok:make", True) == "made"


@pytest.mark.parametrize(
    "spec, factory, words",
    [
        ("nocolon", False, "must be given as MODULE:ATTR"),
        ("hm_test_missing:app", False, "no module named 'hm_test_missing'"),
        ("hm_test_attr:nope", False, "has no attribute 'nope'"),
        ("hm_test_attr:value", True, "is not callable"),
        ("hm_test_raises:app", False, "ZeroDivisionError"),
    ],
)
def test_load_app_failures_are_import_boot_errors_that_say_why(app_dir, spec, factory, words, capsys):
    write(app_dir, "hm_test_attr.py", "value = 1\n")
    write(app_dir, "hm_test_raises.py", "1 / 0\n")
    with pytest.raises(BootError) as info:
        load_app(spec, factory)
    assert info.value.kind == "import"
    assert words in info.value.message
    assert "\n" not in info.value.message


def test_fix_sys_path_puts_the_working_directory_first_and_drops_the_runtime_dir(tmp_path, monkeypatch):
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(runtime), "/usr/lib/python3", str(tmp_path)])
    fix_sys_path(os.path.realpath(str(runtime)))
    assert sys.path == [os.getcwd(), "/usr/lib/python3"]


def _stdlib_with_marker(monkeypatch, tmp_path, marker: bool, venv: bool):
    """This interpreter, seen as a system Python (PEP 668 marker or not) or as a venv."""
    import sysconfig

    from herdsman.runtime import appload

    stdlib = tmp_path / "stdlib"
    stdlib.mkdir(exist_ok=True)
    (stdlib / "EXTERNALLY-MANAGED").unlink(missing_ok=True)
    if marker:
        (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=use a venv\n")
    real = sysconfig.get_path

    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(stdlib) if name == "stdlib" else real(name, *a, **k))
    monkeypatch.setattr(sys, "prefix", "/venv" if venv else sys.base_prefix)
    return appload


def test_a_system_python_that_refuses_pip_gets_a_venv_hint(monkeypatch, tmp_path):
    appload = _stdlib_with_marker(monkeypatch, tmp_path, marker=True, venv=False)
    assert appload.externally_managed()
    hint = appload.install_hint("uvicorn")
    venv = "/srv/app/.venv"
    assert "PEP 668" in hint, hint
    assert "'%s -m venv %s && %s/bin/pip install uvicorn'" % (sys.executable, venv, venv) in hint, hint
    assert "--python %s/bin/python" % venv in hint, hint
    assert "-m pip install" not in hint, hint


def test_pip_is_the_fix_elsewhere(monkeypatch, tmp_path):
    for marker, venv in [(False, False), (True, True)]:
        appload = _stdlib_with_marker(monkeypatch, tmp_path, marker=marker, venv=venv)
        assert not appload.externally_managed()
        assert appload.install_hint("a2wsgi") == "run '%s -m pip install a2wsgi'" % sys.executable
        assert "--force-reinstall a2wsgi" in appload.install_hint("a2wsgi", reinstall=True)


def test_the_missing_uvicorn_message_uses_the_hint(monkeypatch, tmp_path):
    appload = _stdlib_with_marker(monkeypatch, tmp_path, marker=True, venv=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ModuleNotFoundError
    module, error = appload.import_uvicorn()
    assert module is None
    assert error.kind == "dependency"
    assert "uvicorn is not installed for" in error.message, error.message
    assert "PEP 668" in error.message and "pip install uvicorn'" in error.message, error.message


def test_uvicorn_versions_in_the_supported_range_pass_older_fail_newer_warn():
    from herdsman.runtime.appload import uvicorn_support

    assert uvicorn_support("0.54.0") == (None, None)
    assert uvicorn_support("0.55.3") == (None, None)
    error, warning = uvicorn_support("0.53.1")
    assert warning is None and "older than herdsman supports (uvicorn 0.54 to 0.55" in error
    assert '"uvicorn>=0.54,<0.56"' in error
    error, warning = uvicorn_support("0.56.0rc1")
    assert error is None and "newer than any herdsman was tested with" in warning
    error, warning = uvicorn_support("1.0.0")
    assert error is None and warning
    error, warning = uvicorn_support("weird")
    assert error is None and "cannot read" in warning
