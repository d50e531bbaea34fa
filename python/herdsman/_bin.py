"""Where the `herdsman` executable of this installation is: the wheel installs it as a script of
the environment (`bin/herdsman` of a venv), beside the interpreter that imports this package.

Looked up in the install schemes pip may have used, in order: the interpreter's own (a venv, or
the system prefix), the user scheme (`pip install --user`), then the `bin/` beside the directory
holding this package (`pip install --target DIR`). Not on PATH: that could be another version.
"""

import os
import sys

EXE = "herdsman"


def candidate_dirs():
    """The script directories the executable may have been installed into, in lookup order."""
    import sysconfig

    dirs = [sysconfig.get_path("scripts")]
    user_scheme = "%s_user" % os.name
    if user_scheme in sysconfig.get_scheme_names():
        dirs.append(sysconfig.get_path("scripts", scheme=user_scheme))
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs.append(os.path.join(package_parent, "bin"))
    seen = []
    for directory in dirs:
        if directory and directory not in seen:
            seen.append(directory)
    return seen


def find_herdsman_bin():
    """The path of the installed `herdsman` executable; FileNotFoundError naming where it looked."""
    dirs = candidate_dirs()
    for directory in dirs:
        path = os.path.join(directory, EXE)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "the herdsman executable is not installed with this Python package (looked in %s): "
        "reinstall it with `%s -m pip install --force-reinstall herdsman`"
        % (", ".join(dirs), os.path.basename(sys.executable or "python"))
    )
