"""The worker's log lines, in the master's format, so that a terminal or a log collector sees one
log: the runtime's own lines and those of uvicorn's loggers.

The master passes `--log-format`: `text` is the master's text layout
(`2026-12-07T10:00:00.123456Z  INFO message worker=1 pid=42 generation=0`), `json` its JSON
records (`{"timestamp": ..., "level": "INFO", "message": ..., "worker": 1, "pid": 42, ...}`).
With `capture_output` the master asks for `json` and re-renders each record in its own format.
Each record is one `write` of one line (tracebacks stay inside the record: indented continuation
lines in text, a `traceback` field in JSON).
"""

import json
import logging
import os
import sys
import time

from .consts import LEVEL_RANK

# The master's level names (tracing's), by Python level name.
_LEVEL_NAMES = {
    "trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warning": "WARN",
    "error": "ERROR", "critical": "ERROR",
}


def timestamp(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as the master writes it."""
    whole = int(seconds)
    return "%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)),
                         int((seconds - whole) * 1e6))


class _Log:
    def __init__(self) -> None:
        self.rank = LEVEL_RANK["info"]
        self.json = False
        self.fields = {"worker": None, "pid": os.getpid()}

    def configure(self, worker_id: str, level: str, role: str = "worker", log_format: str = "text",
                  generation=None) -> None:
        self.rank = LEVEL_RANK[level]
        self.json = log_format == "json"
        key = "worker" if role == "worker" else role
        ident = int(worker_id) if str(worker_id).isdigit() else worker_id
        self.fields = {key: ident, "pid": os.getpid()}
        if generation is not None:
            self.fields["generation"] = generation

    def render(self, level: str, message: str, when=None, traceback=None, **extra) -> str:
        when = time.time() if when is None else when
        name = _LEVEL_NAMES.get(level, "INFO")
        fields = dict(self.fields)
        fields.update(extra)
        if self.json:
            record = {"timestamp": timestamp(when), "level": name, "message": message}
            record.update(fields)
            if traceback:
                record["traceback"] = traceback
            return json.dumps(record, separators=(",", ":"), default=str)
        pairs = " ".join("%s=%s" % (k, v if not isinstance(v, str) or v.isidentifier() else json.dumps(v))
                         for k, v in fields.items() if v is not None)
        line = "%s %5s %s %s" % (timestamp(when), name, message, pairs)
        if traceback:
            line += "\n" + "\n".join("    " + l for l in traceback.rstrip("\n").split("\n"))
        return line

    def write(self, level: str, message: str, **extra) -> None:
        if LEVEL_RANK.get(level, 0) < self.rank:
            return
        try:
            sys.stderr.write(self.render(level, message, **extra) + "\n")
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


# uvicorn's lines that only repeat what the master says (its own "worker ready", "retiring
# worker", "worker exited"): kept at debug.
_UVICORN_ECHOES = (
    "Started server process", "Waiting for application startup", "Application startup complete",
    "Shutting down", "Waiting for application shutdown", "Application shutdown complete",
    "Finished server process",
)


class RecordFormatter(logging.Formatter):
    """Python logging records (uvicorn's, and the app's through the root logger) in the master's
    format, with the logger's name as `logger`."""

    def format(self, record) -> str:
        message = record.getMessage()
        traceback = None
        if record.exc_info:
            traceback = self.formatException(record.exc_info)
        elif record.stack_info:
            traceback = record.stack_info
        level = record.levelname.lower()
        if record.name.startswith("uvicorn") and message.startswith(_UVICORN_ECHOES):
            level = "debug"
        return log.render(level, message, when=record.created, traceback=traceback, logger=record.name)


class _DemoteEchoes(logging.Filter):
    def filter(self, record) -> bool:
        if record.levelno <= logging.INFO and record.getMessage().startswith(_UVICORN_ECHOES):
            return log.rank <= LEVEL_RANK["debug"]
        return True


def logging_config(level: str) -> dict:
    """uvicorn's `log_config`: its loggers through RecordFormatter to stderr; the root logger
    too, unless the app configures logging itself (its own configuration then wins)."""
    python_level = "DEBUG" if level == "trace" else level.upper()
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "formatter": "herdsman", "filters": ["echoes"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"herdsman": {"()": RecordFormatter}},
        "filters": {"echoes": {"()": _DemoteEchoes}},
        "handlers": {"herdsman": handler},
        "loggers": {
            "uvicorn": {"handlers": ["herdsman"], "level": python_level, "propagate": False},
            "uvicorn.error": {"level": python_level},
            "uvicorn.access": {"handlers": ["herdsman"], "level": "WARNING", "propagate": False},
        },
    } | ({} if logging.getLogger().handlers else {"root": {"handlers": ["herdsman"], "level": "WARNING"}})
