"""deadly_app (`/die` ends the worker with `os._exit(0)`) that refuses to boot while the file
named by $MARKER exists, like fail_if_marker: a test can make an upgrade's new workers fail
(so the adopted ones keep serving) and still kill a worker with a request."""

import os

_marker = os.environ.get("MARKER")
if _marker and os.path.exists(_marker):
    raise RuntimeError(f"marker file {_marker} exists: refusing to boot")

from deadly_app import app  # noqa: E402,F401  (the same routes as deadly_app)
