"""The sigstore-conformance `bundle-verify` cases kept in tests/data (see ATTRIBUTION.md there).

Each directory is one case (upstream `test/assets/bundle-verify/README.md`): a bundle, optional
`artifact` (else `a.txt` above), `identity` and `issuer` (else the beacon defaults), `key.pub`
(verify with a key instead) and `trusted_root.json` (else the production root). A case whose
name ends in `fail` must fail.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "third_party"
CASES = DATA / "sigstore-conformance" / "bundle-verify"
PRODUCTION_ROOT = (
    DATA / "trust-roots" / "sigstore-python" / "tuf-repo-cdn.sigstore.dev" / "trusted_root.json"
)
DEFAULT_IDENTITY = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"


@dataclass(frozen=True)
class Case:
    """One bundle-verify case, as the conformance harness reads its directory."""

    name: str
    bundle: Path
    artifact: Path
    identity: str
    issuer: str
    key: Path | None
    trusted_root: Path | None

    @property
    def expected(self) -> bool:
        """Whether the bundle must verify (upstream: the name does not end in `fail`)."""
        return not self.name.endswith("fail")

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.artifact.read_bytes()).hexdigest()

    def argv(self, target: str) -> list[str]:
        """`verify-bundle` arguments, in the order the protocol gives them."""
        argv = ["conformance", "verify-bundle", "--bundle", str(self.bundle)]
        if self.key is not None:
            argv += ["--key", str(self.key)]
        else:
            argv += ["--certificate-identity", self.identity]
            argv += ["--certificate-oidc-issuer", self.issuer]
        if self.trusted_root is not None:
            argv += ["--trusted-root", str(self.trusted_root)]
        return [*argv, target]


def _text(path: Path, default: str) -> str:
    return path.read_text().strip() if path.exists() else default


def load(directory: Path) -> Case:
    artifact = directory / "artifact"
    key = directory / "key.pub"
    root = directory / "trusted_root.json"
    return Case(
        name=directory.name,
        bundle=directory / "bundle.sigstore.json",
        artifact=artifact if artifact.exists() else CASES / "a.txt",
        identity=_text(directory / "identity", DEFAULT_IDENTITY),
        issuer=_text(directory / "issuer", DEFAULT_ISSUER),
        key=key if key.exists() else None,
        trusted_root=root if root.exists() else None,
    )


def all_cases() -> list[Case]:
    return [load(p) for p in sorted(CASES.iterdir()) if p.is_dir()]
