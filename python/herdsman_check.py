"""Launcher of `herdsman check`'s probe, extracted by herdsman beside the `herdsman` package:

    PYTHON RUNTIME_DIR/herdsman_check.py REPORT_PATH WORKER_ARGS

It does what a worker does before it serves (imports uvicorn or loads the native engine, enters the
working directory, imports the app, tells its interface), writes what it found as JSON to
REPORT_PATH, and exits. The app's own output goes where the worker's would.
"""

import os
import sys

from herdsman.runtime.check import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:], os.path.dirname(os.path.realpath(os.path.abspath(__file__)))))
