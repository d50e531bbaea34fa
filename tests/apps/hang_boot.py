"""Never finishes importing, so the worker never becomes ready (boot timeout tests)."""

import time

while True:
    time.sleep(1)

app = None  # never reached
