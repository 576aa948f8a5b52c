#!/usr/bin/env bash
# Set everything up, then run the whole test suite (unit and end-to-end, real runc/conmon/docker CLI).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
