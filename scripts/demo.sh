#!/usr/bin/env bash
# Set everything up, then run the demo: berthd on the default socket, a busybox
# image made locally, and containers run through the real docker CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
