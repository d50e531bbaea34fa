#!/usr/bin/env bash
# Builds the native engine (engine/, a pyo3 abi3 cdylib) and stages it, stripped, as
# python/herdsman/_engine.abi3.so, where the next `maturin build` puts it into the wheel
# (pyproject.toml's include; docs/releasing.md says why it is staged, not built by maturin).
# Prints the staged file on stdout, progress on stderr. scripts/wheel.sh runs it before maturin;
# a release build runs it by hand, with the same --profile and --target as maturin's.
#
#   bash scripts/stage-engine.sh [--profile dev|release] [--target TRIPLE] [--zig]   (default: dev)
#
# - --zig links with zig through cargo-zigbuild (what `maturin build --zig` uses), for a glibc
#   floor below the build machine's: give the floor in the target, `x86_64-unknown-linux-gnu.2.28`,
#   as for `maturin build --zig --compatibility manylinux_2_28`. The engine must need no newer
#   glibc than the wheel's tag promises, and maturin checks only the master: tests/wheel.rs does.
# - The build is the one `cargo build -p herdsman-engine` makes (scripts/test.sh runs it too), so
#   in the test run it costs nothing; it lands in ${CARGO_TARGET_DIR:-target}, the staged copy is
#   stripped there (`strip`, or $STRIP for another target's binutils), as maturin's `strip = true`
#   does for the master, and moved into python/ only when its bytes changed. build.rs watches
#   python/ (it embeds the .py files only): a new engine makes cargo run it again and rebuild the
#   master's library, an unchanged one does not.
# - python/herdsman/_engine.abi3.so is git-ignored. It is whatever this script staged last: a
#   `pip install .` from this checkout ships it, stale or not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=dev
target=
cargo_build=(cargo build)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profile) profile="${2:?--profile needs dev or release}"; shift 2 ;;
        --target) target="${2:?--target needs a target triple}"; shift 2 ;;
        --zig) cargo_build=(cargo zigbuild); shift ;;
        *) echo "stage-engine.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
say() { printf 'stage-engine.sh: %s\n' "$*" >&2; }

# cargo's output directory for the profile: `dev` builds into debug/, any other into its name;
# for a target, under the triple without cargo-zigbuild's glibc suffix (`.2.28`).
out="${CARGO_TARGET_DIR:-$PWD/target}"
[[ -n "$target" ]] && out="$out/${target%.[0-9]*.[0-9]*}"
if [[ "$profile" == dev ]]; then out="$out/debug"; else out="$out/$profile"; fi

say "${cargo_build[*]} -p herdsman-engine --profile $profile${target:+ --target $target}"
"${cargo_build[@]}" -p herdsman-engine --locked --profile "$profile" ${target:+--target "$target"} >&2
lib="$out/libherdsman_engine.so"
[[ -f "$lib" ]] || { say "cargo built no $lib"; exit 1; }

staged=python/herdsman/_engine.abi3.so
stripped="$out/libherdsman_engine.stripped.so"
"${STRIP:-strip}" --strip-all -o "$stripped" "$lib"
if cmp -s "$stripped" "$staged"; then
    rm -f "$stripped"
    say "$staged unchanged ($(du -k "$staged" | cut -f1) KiB)"
else
    mv -f "$stripped" "$staged"
    say "staged $staged ($(du -k "$staged" | cut -f1) KiB, from $lib)"
fi
printf '%s\n' "$PWD/$staged"
