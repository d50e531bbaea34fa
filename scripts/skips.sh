#!/usr/bin/env bash
# Reports the tests that skipped themselves (tests/common's `skip` appends one line per skip,
# "SKIPPED <binary>::<test>: <reason>", to RECORD) and, under CI=true, fails (exit 1) when one of
# them is not on ALLOW: a test that cannot run on the CI machine is a hole in CI unless someone
# wrote down why that is acceptable.
#
# ALLOW has one entry a line, "<binary>::<test>  # <reason>"; blank lines and lines starting with
# # are comments. An entry without a reason is refused (exit 2).
#
# Usage: scripts/skips.sh RECORD ALLOW
set -euo pipefail
record=$1
allow=$2

allowed=()
if [[ -f "$allow" ]]; then
    lineno=0
    while IFS= read -r line || [[ -n "$line" ]]; do
        lineno=$((lineno + 1))
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        if [[ ! "$line" =~ ^[[:space:]]*([^[:space:]#]+)[[:space:]]+#[[:space:]]*([^[:space:]].*)$ ]]; then
            echo "skips.sh: $allow:$lineno: an entry is \"<binary>::<test>  # <reason>\": $line" >&2
            exit 2
        fi
        allowed+=("${BASH_REMATCH[1]}")
    done <"$allow"
fi

[[ -s "$record" ]] || { echo "skips.sh: no test skipped" >&2; exit 0; }
count=$(sort -u "$record" | wc -l)
echo "skips.sh: $count skipped test(s) (they passed without running):" >&2
unlisted=0
while IFS= read -r line; do
    name=${line#SKIPPED }
    name=${name%%: *}
    listed=no
    for entry in "${allowed[@]}"; do
        [[ "$entry" == "$name" ]] && listed=yes && break
    done
    if [[ $listed == yes ]]; then
        echo "  $line   (allowed: $allow)" >&2
    else
        echo "  $line" >&2
        unlisted=$((unlisted + 1))
    fi
done < <(sort -u "$record")
if [[ "${CI:-}" == "true" && $unlisted -gt 0 ]]; then
    echo "skips.sh: under CI every test runs: $unlisted skip(s) not in $allow; give the machine what the test needs, or add \"<binary>::<test>  # <reason>\" to $allow" >&2
    exit 1
fi
