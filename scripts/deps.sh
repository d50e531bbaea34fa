#!/usr/bin/env bash
# System packages the integration tests need, from Debian's archive: nginx (tests/nginx.rs runs
# real nginx processes in front of herdsman) and nghttp2-client (h2load, for tests/http2.rs and
# the benchmark's HTTP/2 row), and libfaketime (tests/supervision.rs's wall-clock jump, F19).
# Idempotent: does nothing when `nginx -v` and `h2load --version` work and libfaketime is there.
# Installs with apt-get as root (or through `sudo -n`); never starts the system nginx service:
# while the package installs, a policy-rc.d that refuses every service start is in place (unless
# the machine already has one, as Debian's container images do), and the tests run their own
# nginx processes from temp dirs. Without apt-get or root it says so and leaves the tests to fail
# with the same message.
set -euo pipefail

say() { printf 'scripts/deps.sh: %s\n' "$*" >&2; }

nginx_bin() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

missing=()
if ! { bin="$(nginx_bin)" && "$bin" -v >/dev/null 2>&1; }; then
    missing+=(nginx)
fi
if ! h2load --version >/dev/null 2>&1; then
    missing+=(nghttp2-client)
fi
FAKETIME=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if [[ "$(uname -m)" == x86_64 && ! -e "$FAKETIME" ]]; then
    missing+=(libfaketime)
fi
if [[ ${#missing[@]} == 0 ]]; then
    exit 0
fi

sudo=""
[[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1 && sudo="sudo -n"
if ! command -v apt-get >/dev/null 2>&1 || { [[ "$(id -u)" != 0 ]] && [[ -z "$sudo" ]]; }; then
    say "${missing[*]} missing and cannot be installed here (no apt-get, or not root): install Debian's ${missing[*]} package(s)"
    exit 1
fi

policy=/usr/sbin/policy-rc.d
ours=0
if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# scripts/deps.sh: no service starts while nginx installs\nexit 101\n' |
        $sudo tee "$policy" >/dev/null
    $sudo chmod 0755 "$policy"
    ours=1
fi
cleanup() { if [[ "$ours" == 1 ]]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

# Debian 12's nginx-light is a transitional package that pulls in nginx; `nginx` exists in every
# release since, and is the plain build (no third-party modules).
say "installing ${missing[*]} (apt-get)"
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
bin="$(nginx_bin)" || { say "nginx installed but not found on PATH or at /usr/sbin/nginx"; exit 1; }
"$bin" -v
h2load --version | head -n 1
