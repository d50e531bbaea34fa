"""herdsman: a pre-fork process manager for Python WSGI and ASGI applications.

The master is a Rust program (the `herdsman` executable). This package is the Python side: the
worker runtime (`herdsman.runtime`) that each worker process runs inside the app's own interpreter,
and, when installed from the wheel, `python -m herdsman` (which runs the executable the wheel put
in the environment's `bin/`, see `find_herdsman_bin`). The master embeds this package and writes it
to a private directory at start, so an app's virtualenv needs nothing from herdsman to be served;
the wheel ships the same files. Every worker imports this module first: it imports nothing beyond
what `_bin` needs from the standard library, and does no work at import.
"""

from ._bin import find_herdsman_bin

__all__ = ["find_herdsman_bin"]
