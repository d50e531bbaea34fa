#!/usr/bin/env bash
# herdsman's benchmark: herdsman against gunicorn + UvicornWorker, uvicorn --workers, granian and
# hypercorn, measured the same way on this machine in one run (docs/benchmarks.md says how).
#
#   bash bench/run.sh            full run (about 20 minutes): rewrites docs/benchmarks.md,
#                                docs/benchmarks.json and docs/bench-*.png
#   bash bench/run.sh --smoke    reduced run (one to two minutes once built): proves the harness
#                                works, writes into a temp dir, asserts nothing about speed
#
# Other arguments go to bench/run.py (see `bench/.venv-peers/bin/python bench/run.py --help`).
# Steps: install wrk and strace with apt-get if missing (without wrk, a pure-Python load
# generator stands in and the report says so; without strace, idle masters are not profiled); build the peers venv bench/.venv-peers from
# the pinned bench/requirements.txt (only when the pins or the base Python changed); build herdsman
# (release; the debug build for --smoke, which the test run has already built); run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'bench/run.sh: %s\n' "$*" >&2; }

smoke=0
for arg in "$@"; do
    [[ "$arg" == "--smoke" ]] && smoke=1
done

# 1. The load generator (wrk), the profiler of idle masters (strace), the sampling profiler of
# the native engine (perf, Debian's linux-perf) and the HTTP/2 load generator (h2load, Debian's
# nghttp2-client), from Debian's packages.
missing=()
for tool in wrk strace perf h2load; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        case "$tool" in
            perf) missing+=(linux-perf) ;;
            h2load) missing+=(nghttp2-client) ;;  # the HTTP/2 load generator
            *) missing+=("$tool") ;;
        esac
    fi
done
if ((${#missing[@]})); then
    sudo=""
    [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
    if command -v apt-get >/dev/null 2>&1 && { [[ "$(id -u)" == 0 ]] || [[ -n "$sudo" ]]; }; then
        say "installing ${missing[*]} (apt-get)"
        if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
                $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; }; then
            say "apt-get could not install ${missing[*]}"
        fi
    fi
fi
loadgen=wrk
loadgen_note=""
if ! command -v wrk >/dev/null 2>&1; then
    loadgen=python
    loadgen_note="wrk could not be installed here (no apt-get, not root, or apt failed): the fallback \
Python load generator was used; it is far weaker than wrk, so its throughput figures are bounded by the client."
    say "wrk unavailable: using the pure-Python load generator (weaker; the report says so)"
fi
command -v strace >/dev/null 2>&1 || say "strace unavailable: the idle masters will not be profiled"
command -v perf >/dev/null 2>&1 || say "perf unavailable: the native engine will not be profiled"

# 2. The peers venv: one venv for every server, so each runs the same Python and the same uvicorn.
VENV="bench/.venv-peers"
REQ="bench/requirements.txt"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || { say "'$PYTHON' not found: install python3 (>= 3.11)"; exit 1; }
pyver="$("$PYTHON" -c 'import sys; print(sys.version.replace("\n", " ") if sys.version_info >= (3, 11) else "")')"
[[ -n "$pyver" ]] || { say "$("$PYTHON" -V 2>&1) is too old: the pinned peers need Python >= 3.11"; exit 1; }
want="$({ cat "$REQ"; printf '%s\n' "$pyver"; } | sha256sum | cut -d' ' -f1)"
STAMP="$VENV/.bench-requirements.sha256"
venv_ok() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c '' 2>/dev/null; }
if ! venv_ok; then
    if command -v flock >/dev/null; then
        exec 9>"${TMPDIR:-/tmp}/herdsman-bench-venv-$(printf '%s' "$PWD" | sha256sum | cut -c1-16).lock"
        flock 9
    fi
    if ! venv_ok; then
        say "creating $VENV with $("$PYTHON" -V 2>&1) from $REQ"
        rm -f "$STAMP"
        "$PYTHON" -m venv --clear "$VENV" >&2
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ" >&2
        "$VENV/bin/python" -m pip check --disable-pip-version-check >&2
        printf '%s\n' "$want" >"$STAMP"
    fi
fi

# 3. herdsman itself and its native engine (where cargo puts them: CARGO_TARGET_DIR if set, else
# ./target; the master finds libherdsman_engine.so beside its binary).
target="${CARGO_TARGET_DIR:-target}"
[[ "$target" == /* ]] || target="$PWD/$target"
if [[ "$smoke" == 1 ]]; then
    cargo build --quiet --bin herdsman >&2
    cargo build --quiet -p herdsman-engine >&2
    herdsman="$target/debug/herdsman"
else
    say "cargo build --release (the master and the native engine)"
    cargo build --quiet --release --bin herdsman >&2
    cargo build --quiet --release -p herdsman-engine >&2
    herdsman="$target/release/herdsman"
fi

# 4. Run. The smoke run is bounded in time whatever happens (run.py kills what it started): about
# two minutes on a busy 2-core machine, so 7 minutes is a hang, not a slow machine.
run=("$VENV/bin/python" bench/run.py --herdsman "$herdsman" --loadgen "$loadgen" --loadgen-note "$loadgen_note")
if [[ "$smoke" == 1 ]]; then
    exec timeout --kill-after=10 420 "${run[@]}" "$@"
fi
exec "${run[@]}" "$@"
