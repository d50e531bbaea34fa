"""Every module of the runtime package imports with the standard library alone (the contract:
uvicorn and a2wsgi are imported only once the channel is open)."""

import importlib
import pkgutil
import sys

import herdsman.runtime


def test_every_runtime_module_imports_without_uvicorn_or_a2wsgi():
    names = [m.name for m in pkgutil.walk_packages(herdsman.runtime.__path__, "herdsman.runtime.")]
    assert "herdsman.runtime.engines.uvicorn" in names
    for name in names:
        if name.endswith("__main__"):
            continue
        importlib.import_module(name)
    assert "a2wsgi" not in sys.modules and "uvicorn" not in sys.modules
