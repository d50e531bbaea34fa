"""Process titles (config `proc_name`, gunicorn's -n/--name): `herdsman: worker [NAME]` in `ps`,
NAME as the command name in `top` and `pgrep`.

Linux shows the command line from the memory the arguments were passed in (/proc/self/stat
fields 48-49: arg_start, arg_end); the title is written over it, padded with NULs, and cut to its
size (a worker's argv, the interpreter, the runtime's path and its options, is hundreds of bytes).
CPython copied its arguments at start (sys.argv), so nothing reads that memory afterwards. The
command name is set with prctl(PR_SET_NAME), 15 bytes at most. Best effort: failing changes
nothing.
"""

import ctypes
import ctypes.util

PR_SET_NAME = 15


def _arg_area():
    with open("/proc/self/stat", "rb") as stat:
        text = stat.read()
    fields = text[text.rindex(b")") + 1:].split()
    # fields[0] is field 3 (the state): arg_start and arg_end are fields 48 and 49.
    start, end = int(fields[48 - 3]), int(fields[49 - 3])
    if not 0 < start < end:
        raise ValueError("no argument area")
    return start, end


def set_title(role: str, name: str) -> None:
    """Titles this process `herdsman: ROLE [NAME]`, with NAME as its command name."""
    title = ("herdsman: %s [%s]" % (role, name)).encode("utf-8", "replace")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode("utf-8", "replace")[:15]), 0, 0, 0)
        start, end = _arg_area()
        size = end - start
        text = title[:size - 1]
        ctypes.memmove(start, text + b"\0" * (size - len(text)), size)
    except (OSError, ValueError, AttributeError):
        pass
