"""`python -m herdsman.runtime ARGS`: the worker runtime from an installed herdsman package."""

import sys

from .main import main

sys.exit(main())
