#!/usr/bin/env bash
# The README's run command: install into .venv (first time only) and start `sigverify serve`.
# Every setting comes from SIGVERIFY_* environment variables; none is required.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh runtime
exec .venv/bin/sigverify serve "$@"
