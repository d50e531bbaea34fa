"""`python -m herdsman ARGS`: runs the installed `herdsman` executable with the same arguments.

It replaces this process (exec): the same pid, so signals sent to it reach the master, and the
master's exit code is the command's. Nothing of Python stays around the master.
"""

import os
import sys

from ._bin import find_herdsman_bin


def main():
    try:
        path = find_herdsman_bin()
    except FileNotFoundError as exc:
        sys.stderr.write("herdsman: %s\n" % exc)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(path, [path] + sys.argv[1:])
    except OSError as exc:
        sys.stderr.write("herdsman: cannot run %s: %s\n" % (path, exc.strerror or exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
