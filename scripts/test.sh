#!/usr/bin/env bash
# Runs every test of herdsman on a fresh machine: installs the system packages the tests need
# (scripts/deps.sh: nginx, for tests/nginx.rs), builds the pinned Python venv the real workers
# run in (scripts/venv.sh), builds the wheel and installs it into a fresh venv (scripts/wheel.sh),
# runs the worker runtime's Python unit tests (pytest, python/tests),
# then every Rust unit and integration test under cargo-nextest (one process per test, each with a
# hard deadline: .config/nextest.toml). Extra arguments go to nextest (and skip pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/deps.sh
bash scripts/venv.sh
export HERDSMAN_TEST_PYTHON="$PWD/.venv/bin/python"

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi

# The wheel (pyproject.toml), built with maturin and installed into a fresh venv: tests/wheel.rs
# serves from that installed `herdsman`, and fails under CI when this variable is missing. Always
# done, filtered runs included (warm: a few seconds; it shares the target dir with nextest).
wheel_started=$SECONDS
TEST_INSTALLED_HERDSMAN="$(bash scripts/wheel.sh)"
export TEST_INSTALLED_HERDSMAN
echo "test.sh: wheel built and installed in $((SECONDS - wheel_started)) s: $TEST_INSTALLED_HERDSMAN" >&2

if [[ $# -eq 0 ]]; then
    "$HERDSMAN_TEST_PYTHON" -m pytest -q -p no:cacheprovider python/tests
fi

profile=default
[[ "${CI:-}" == "true" ]] && profile=ci
# The native engine (engine/, a cdylib with no tests of its own): the integration tests' master finds
# it next to itself, target/debug/libherdsman_engine.so. nextest builds only test targets' needs.
cargo build -p herdsman-engine

# A test that cannot run on this machine says so through tests/common's `skip`, which appends
# "SKIPPED <binary>::<test>: <reason>" to this file (nextest hides a passing test's output).
# After the run every skip is printed; under CI=true one not in tests/skips.allow fails the run.
TEST_SKIP_RECORD="$(mktemp "${TMPDIR:-/tmp}/herdsman-skips.XXXXXX")"
export TEST_SKIP_RECORD
trap 'rm -f "$TEST_SKIP_RECORD"' EXIT
nextest_status=0
cargo nextest run --workspace --exclude herdsman-engine --all-targets --profile "$profile" "$@" \
    || nextest_status=$?
# The uvicorn engine's tests once more against the newest supported uvicorn (requirements/test.txt
# pins the oldest; appload.py's UVICORN_OLDEST and UVICORN_NEWEST are the range the workers accept):
# the tests that exercise the uvicorn internals the worker runtime uses (the drain, stops, ASGI,
# supervision, the access log, the hardening). Not for a filtered run.
if [[ $# -eq 0 && $nextest_status -eq 0 ]]; then
    bash scripts/venv.sh "$PWD/.venv-uvicorn-newest" requirements/uvicorn-newest.txt
    newest="$("$PWD/.venv-uvicorn-newest/bin/python" -c 'import uvicorn; print(uvicorn.__version__)')"
    echo "test.sh: the uvicorn engine's tests again, on uvicorn $newest" >&2
    HERDSMAN_TEST_PYTHON="$PWD/.venv-uvicorn-newest/bin/python" cargo nextest run --workspace \
        --exclude herdsman-engine --all-targets --profile "$profile" \
        -E '(binary(keepalive) | binary(stopping) | binary(asgi) | binary(supervision) | binary(accesslog) | binary(hardening)) & not test(/native/)' \
        || nextest_status=$?
fi
if ! bash scripts/skips.sh "$TEST_SKIP_RECORD" tests/skips.allow; then
    [[ $nextest_status -ne 0 ]] || nextest_status=1
fi
[[ $nextest_status -eq 0 ]] || exit "$nextest_status"

# The benchmark harness's smoke run (bench/run.sh --smoke, one to two minutes with its venv built):
# proves the harness still works, into a temp dir; it asserts nothing about speed. Not for a
# filtered run (extra arguments), nor with HERDSMAN_BENCH_SMOKE=0.
if [[ $# -eq 0 && "${HERDSMAN_BENCH_SMOKE:-1}" != 0 ]]; then
    bash bench/run.sh --smoke
fi
