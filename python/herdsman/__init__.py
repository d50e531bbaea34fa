"""herdsman: a pre-fork process manager for Python WSGI and ASGI applications.

The master is a Rust program (the `herdsman` executable). This package is the Python side: the
worker runtime (`herdsman.runtime`) that each worker process runs inside the app's own interpreter.
The master embeds this package and writes it to a private directory at start, so an app's
virtualenv needs nothing from herdsman; the wheel ships the same files.
"""
