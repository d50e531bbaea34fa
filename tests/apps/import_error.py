"""Fails at import: the worker must report boot_error kind `import` (exit 10) with the traceback."""

raise RuntimeError("boom at import")
