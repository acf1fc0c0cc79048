#!/usr/bin/env bash
# The README's test command: install what is missing (Debian packages for the real Redis and
# OCI registry the tests start and chromium for the browser tests; the virtualenv and Python
# packages), then ruff, mypy and pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v htpasswd >/dev/null || need+=(apache2-utils)
# Browser tests of the HTML pages drive Debian's chromium (Playwright downloads no browser).
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
scripts/bootstrap.sh dev
scripts/helm.sh  # .venv/tools/helm for the chart tests in tests/deploy
scripts/grafana-schema.sh  # Grafana's dashboard model as a JSON schema, for the dashboard test
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest "$@"
