#!/usr/bin/env bash
# Builds the herdsman wheel with maturin and installs it into a fresh venv; prints the installed
# `herdsman` (VENV/bin/herdsman) on stdout, progress on stderr. scripts/test.sh runs it and points
# tests/wheel.rs at that binary.
#
#   bash scripts/wheel.sh [--profile dev|release]     (default: dev)
#
# - maturin is the version pinned in pyproject.toml's build-system.requires (the one source of
#   truth), installed into a build venv that is kept while the pin holds.
# - The native engine is built and staged first (scripts/stage-engine.sh, same profile): maturin
#   builds the master only, and takes the engine from python/herdsman/_engine.abi3.so.
# - The dev profile reuses what `cargo nextest run` and `cargo build -p herdsman-engine` build
#   anyway (same target dir, same library units), so in CI the wheel costs a link, a strip and a
#   zip; the wheel's layout and metadata do not depend on the profile. Release wheels:
#   docs/releasing.md.
# - The fresh venv is made from scratch every run. It gets its dependencies (uvicorn, a2wsgi,
#   ...) without a network: a .pth file puts the test venv's site-packages (scripts/venv.sh) on its
#   sys.path ($HERDSMAN_TEST_PYTHON's, as for the tests), and the wheel is installed with --no-index, so pip checks the wheel's Requires-Dist
#   against them (and `pip check` again after) while its own prefix stays the fresh venv's.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=dev
if [[ "${1:-}" == "--profile" ]]; then
    profile="${2:?--profile needs dev or release}"
fi
say() { printf 'wheel.sh: %s\n' "$*" >&2; }

PYTHON="${PYTHON:-python3}"
# The test venv's interpreter, as for the tests: $HERDSMAN_TEST_PYTHON, else .venv.
test_python="${HERDSMAN_TEST_PYTHON:-$PWD/.venv/bin/python}"
[[ -x "$test_python" ]] || { say "no $test_python: run scripts/venv.sh first"; exit 1; }
work="${CARGO_TARGET_DIR:-$PWD/target}/wheel-test"
mkdir -p "$work"

# 1. maturin, at the pin of pyproject.toml.
pin="$(sed -n 's/^requires = \["\(maturin==[0-9.]*\)"\]$/\1/p' pyproject.toml)"
[[ -n "$pin" ]] || { say "no maturin==X.Y.Z pin in pyproject.toml's build-system.requires"; exit 1; }
build_venv="$work/build-venv"
if [[ "$(cat "$build_venv/.pin" 2>/dev/null)" != "$pin" ]] || ! "$build_venv/bin/maturin" --version >/dev/null 2>&1; then
    say "installing $pin into $build_venv"
    "$PYTHON" -m venv --clear "$build_venv" >&2
    "$build_venv/bin/python" -m pip install --disable-pip-version-check --no-input -q "$pin" >&2
    printf '%s\n' "$pin" >"$build_venv/.pin"
fi

# 2. The native engine, staged in python/herdsman for maturin to pick up (same profile).
bash scripts/stage-engine.sh --profile "$profile" >/dev/null

# 3. The wheel, which must hold the engine where the master looks for it.
dist="$work/dist"
rm -rf "$dist"
say "maturin build --profile $profile"
"$build_venv/bin/maturin" build --quiet --profile "$profile" --out "$dist" >&2
wheel="$(ls "$dist"/herdsman-*.whl)"
"$build_venv/bin/python" -c 'import sys, zipfile; sys.exit("herdsman/_engine.abi3.so" not in zipfile.ZipFile(sys.argv[1]).namelist())' "$wheel" \
    || { say "$(basename "$wheel") holds no herdsman/_engine.abi3.so"; exit 1; }
say "built $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"

# 4. A fresh venv, the wheel installed offline.
venv="$work/venv"
"$PYTHON" -m venv --clear "$venv" >&2
site_of() { "$1" -c 'import sysconfig; print(sysconfig.get_path("purelib"))'; }
site_of "$test_python" >"$(site_of "$venv/bin/python")/herdsman-test-deps.pth"
"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q --no-index "$wheel" >&2
"$venv/bin/python" -m pip check --disable-pip-version-check >&2
[[ -x "$venv/bin/herdsman" ]] || { say "the wheel installed no $venv/bin/herdsman"; exit 1; }
printf '%s\n' "$venv/bin/herdsman"
