#!/usr/bin/env bash
# The demo: herdsman serving examples/hello.py (a FastAPI app) on every usable CPU at
# http://127.0.0.1:8000 (override with HERDSMAN_DEMO_BIND). Builds what it needs first: the Python
# venv with uvicorn and FastAPI, and the release binary. Ctrl-C is a quick stop (requests in flight
# are cancelled); `kill -TERM` the master for a graceful one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/venv.sh
cargo build --release --quiet
bind="${HERDSMAN_DEMO_BIND:-127.0.0.1:8000}"
# herdsman rejects HERDSMAN_* variables it does not know (typo protection): this one is ours.
unset HERDSMAN_DEMO_BIND
echo "demo: serving examples/hello.py on http://$bind with one worker per usable CPU; try: curl http://$bind/" >&2
exec ./target/release/herdsman --python .venv/bin/python --chdir examples --workers auto --bind "$bind" hello:app
