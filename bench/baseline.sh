#!/usr/bin/env bash
# Make an earlier berth runnable beside this one, for bench/run.py --baseline:
#   bash bench/baseline.sh REF      -> /tmp/berth-baseline-REF with its own .venv
# The tree is exported with git archive (no worktree is registered) and REF is recorded in it.
set -euo pipefail
cd "$(dirname "$0")/.."
ref=${1:?usage: bench/baseline.sh GIT-REF}
short=$(git rev-parse --short "$ref")
dir=/tmp/berth-baseline-$short
if [ ! -x "$dir/.venv/bin/berthd" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    git archive "$short" | tar -x -C "$dir"
    /usr/bin/python3 -m venv "$dir/.venv"
    "$dir/.venv/bin/pip" install -q --disable-pip-version-check -e "$dir"
fi
echo "$short" > "$dir/REF"
echo "$dir"
