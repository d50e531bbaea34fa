"""Puts the repository's `python/` directory first on sys.path, so the tests import the runtime
package from the checkout (the same files the master embeds)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
