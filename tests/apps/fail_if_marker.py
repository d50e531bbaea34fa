"""Boots like asgi_app unless the file named by $MARKER exists, in which case the import fails
(boot_error `import`, exit 10). Lets a test make one slot crash-loop while the workers already
running keep serving, then heal it by removing the file."""

import os

_marker = os.environ.get("MARKER")
if _marker and os.path.exists(_marker):
    raise RuntimeError(f"marker file {_marker} exists: refusing to boot")

from asgi_app import app  # noqa: E402,F401  (the same routes as asgi_app)
