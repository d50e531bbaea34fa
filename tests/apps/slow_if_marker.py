"""Boots like asgi_app, but first sleeps $SLOW_SECONDS (default 3) at import if the file named by
$SLOW_MARKER exists: keeps a rollout under way long enough for a test to act during it."""

import os
import time

_marker = os.environ.get("SLOW_MARKER")
if _marker and os.path.exists(_marker):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "3")))

from asgi_app import app  # noqa: E402,F401  (the same routes as asgi_app)
