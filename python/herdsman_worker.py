"""Launcher of the herdsman worker runtime, extracted by the master beside the `herdsman` package:

    PYTHON RUNTIME_DIR/herdsman_worker.py ARGS

Python puts this file's directory first on sys.path, so `herdsman.runtime` is imported from the
master's own copy; the runtime then takes that directory off sys.path before the app is imported.
"""

import os
import sys

from herdsman.runtime.main import main

if __name__ == "__main__":
    sys.exit(main(runtime_dir=os.path.dirname(os.path.realpath(os.path.abspath(__file__)))))
