#!/usr/bin/env bash
# Create or refresh the test virtualenv (default: $REPO/.venv, or the directory given as $1) from the
# pinned requirements/test.txt, then, if a second argument names one, a requirements file installed
# over it (requirements/uvicorn-newest.txt: the same venv with the newest supported uvicorn). Idempotent: when the venv's stamp file holds the hash of the current
# requirements file and its interpreter still runs, nothing is done. When the requirements changed the
# venv is recreated from scratch (--clear), so packages dropped from the pins do not linger.
#
# stdout stays quiet; progress and errors go to stderr. Set PYTHON to use another base interpreter
# than `python3` (it must be >= 3.11: fastapi 0.165 requires it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv}"
REQ="$REPO/requirements/test.txt"
PYTHON="${PYTHON:-python3}"
OVERLAY="${2:-}"
STAMP="$VENV/.herdsman-requirements.sha256"

say() { printf 'venv.sh: %s\n' "$*" >&2; }

[[ -f "$REQ" ]] || { say "missing $REQ"; exit 1; }
[[ -z "$OVERLAY" || -f "$OVERLAY" ]] || { say "missing $OVERLAY"; exit 1; }
command -v "$PYTHON" >/dev/null || { say "'$PYTHON' not found: install python3 (>= 3.11)"; exit 1; }

# One interpreter start (pyenv shims are slow): full version string, empty if too old.
pyver="$("$PYTHON" -c 'import sys; print(sys.version.replace("\n", " ") if sys.version_info >= (3, 11) else "")')"
if [[ -z "$pyver" ]]; then
    say "$("$PYTHON" -V 2>&1) is too old: the pinned requirements need Python >= 3.11"
    exit 1
fi

# The hash covers the requirements and the base interpreter's version: a new python3 means a new venv.
want="$({ cat "$REQ" ${OVERLAY:+"$OVERLAY"}; printf '%s\n' "$pyver"; } | sha256sum | cut -d' ' -f1)"

venv_ok() {
    [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null
}

# Fast path, without the lock.
if venv_ok; then
    exit 0
fi

# Serialise concurrent runs (parallel test jobs). The lock lives outside the venv (--clear empties it)
# and outside the repository (it would show up as an untracked file).
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null; then
    lock="${TMPDIR:-/tmp}/herdsman-venv-$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
    exec 9>"$lock"
    flock 9
    if venv_ok; then   # someone else just built it
        exit 0
    fi
fi

if ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    minor="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    say "'$PYTHON -m venv' cannot work: ensurepip is missing."
    say "On Debian/Ubuntu install it with: apt-get install python${minor}-venv"
    exit 1
fi

say "creating $VENV with $("$PYTHON" -V 2>&1)"
rm -f "$STAMP"
if ! "$PYTHON" -m venv --clear "$VENV" >&2; then
    minor="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    say "'$PYTHON -m venv' failed; on Debian/Ubuntu: apt-get install python${minor}-venv"
    exit 1
fi

say "installing $(grep -cv '^\s*\(#\|$\)' "$REQ") pinned packages from ${REQ#"$REPO"/}"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ" >&2
if [[ -n "$OVERLAY" ]]; then
    say "installing ${OVERLAY#"$REPO"/} over it"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$OVERLAY" >&2
fi
"$VENV/bin/python" -m pip check --disable-pip-version-check >&2

printf '%s\n' "$want" >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
say "ready: $VENV/bin/python"
