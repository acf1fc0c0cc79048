#!/usr/bin/env bash
# Put a JSON schema of Grafana's dashboard model at .venv/tools/grafana/dashboard.schema.json, for
# the chart's dashboard test (tests/deploy/test_chart_dashboard.py). No Grafana package ships a
# JSON schema, so it is made from @grafana/schema's TypeScript type of the dashboard JSON model
# (`Dashboard` in raw/dashboard/x/types.gen: the model Grafana stores and imports) by
# ts-json-schema-generator, both installed from npm with the hashes in
# scripts/grafana-schema/package-lock.json (npm ci checks them). Objects admit only the fields
# the type names, so a misspelt key fails. Idempotent: nothing is done while the schema is there
# and was made from the same lock file.
# Usage: scripts/grafana-schema.sh        (prints nothing when the schema is already there)
set -euo pipefail
cd "$(dirname "$0")/.."
src="scripts/grafana-schema"
dest=".venv/tools/grafana"
schema="$dest/dashboard.schema.json"
want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"

if [ -f "$schema" ] && [ "$(cat "$dest/.made-from" 2>/dev/null)" = "$want" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "scripts/grafana-schema.sh: npm is needed" >&2; exit 1; }
echo "making Grafana's dashboard schema from @grafana/schema (npm)" >&2
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --silent)
node "$dest/node_modules/ts-json-schema-generator/bin/ts-json-schema-generator.js" \
  --path "$dest/node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts" \
  --type Dashboard --no-type-check --out "$schema.tmp" >/dev/null
mv -f "$schema.tmp" "$schema"
echo "$want" > "$dest/.made-from"
