#!/usr/bin/env bash
# Runs every test of herdsman on a fresh machine: builds the pinned Python venv the real workers
# run in (scripts/venv.sh), runs the worker runtime's Python unit tests (pytest, python/tests),
# then every Rust unit and integration test under cargo-nextest (one process per test, each with a
# hard deadline: .config/nextest.toml). Extra arguments go to nextest (and skip pytest).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/venv.sh
export HERDSMAN_TEST_PYTHON="$PWD/.venv/bin/python"

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked
fi

if [[ $# -eq 0 ]]; then
    "$HERDSMAN_TEST_PYTHON" -m pytest -q -p no:cacheprovider python/tests
fi

profile=default
[[ "${CI:-}" == "true" ]] && profile=ci
cargo nextest run --all-targets --profile "$profile" "$@"

# The benchmark harness's smoke run (bench/run.sh --smoke, one to two minutes with its venv built):
# proves the harness still works, into a temp dir; it asserts nothing about speed. Not for a
# filtered run (extra arguments), nor with HERDSMAN_BENCH_SMOKE=0.
if [[ $# -eq 0 && "${HERDSMAN_BENCH_SMOKE:-1}" != 0 ]]; then
    bash bench/run.sh --smoke
fi
