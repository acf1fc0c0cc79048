#!/usr/bin/env bash
# Create .venv and install sigverify into it from the hashed lock files.
# Usage: scripts/bootstrap.sh [runtime|dev]   (default: runtime)
# Idempotent: a lock file that has not changed since the last install is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-runtime}"
lock="requirements/${kind}.lock"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.installed-${kind}"
want="$(sha256sum "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing $lock into .venv" >&2
  # Some machines' pip configuration names local indexes that do not exist; pip warns about each
  # package. The warnings are noise, the errors are kept.
  .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$lock" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
