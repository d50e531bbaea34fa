"""The runtime's own log lines, written to stderr one whole line per write."""

import os
import sys

from .consts import LEVEL_RANK

class _Log:
    """The runtime's own log lines: stderr, prefixed with `[herdsman worker ID pid PID]`."""

    def __init__(self) -> None:
        self.prefix = "[herdsman worker ? pid %d]" % os.getpid()
        self.rank = LEVEL_RANK["info"]

    def configure(self, worker_id: str, level: str, role: str = "worker") -> None:
        self.prefix = "[herdsman %s %s pid %d]" % (role, worker_id, os.getpid())
        self.rank = LEVEL_RANK[level]

    def write(self, level: str, message: str) -> None:
        if LEVEL_RANK[level] < self.rank:
            return
        try:
            sys.stderr.write("%s %s\n" % (self.prefix, message))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def debug(self, message: str) -> None:
        self.write("debug", message)

    def info(self, message: str) -> None:
        self.write("info", message)

    def warning(self, message: str) -> None:
        self.write("warning", message)

    def error(self, message: str) -> None:
        self.write("error", message)


log = _Log()
