"""Where the trusted root comes from: a file, a TUF repository, or the offline production copy.

Returns the trusted_root.json bytes and a short description of the source; parsing and
verification belong to `service.core.TrustRoot`.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from service.config import PREFIX, Settings, SettingsError

PRODUCTION_TUF_URL = "https://tuf-repo-cdn.sigstore.dev"
_EMBEDDED = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
_STAGING = "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"


@dataclass(frozen=True)
class TrustRootSource:
    """The bytes of a trusted_root.json and where they came from."""

    data: bytes
    origin: str


def embedded_production_root() -> bytes:
    """The production trusted root that ships inside sigstore-python (no network)."""
    store = importlib.resources.files("sigstore") / "_store" / _EMBEDDED / "trusted_root.json"
    return store.read_bytes()


def embedded_staging_root() -> bytes:
    """The staging trusted root that ships inside sigstore-python (no network, no refresh)."""
    store = importlib.resources.files("sigstore") / "_store" / _STAGING / "trusted_root.json"
    return store.read_bytes()


def load_trust_root_source(settings: Settings) -> TrustRootSource:
    """The configured trusted root; a failure names the setting that chose the source."""
    if settings.trust_root_file is not None:
        try:
            return TrustRootSource(
                settings.trust_root_file.read_bytes(), str(settings.trust_root_file)
            )
        except OSError as exc:
            raise SettingsError(f"{PREFIX}TRUST_ROOT_FILE: cannot read: {exc.strerror}") from None
    if settings.tuf_url is not None:
        return TrustRootSource(_fetch_from_tuf(settings.tuf_url), settings.tuf_url)
    return TrustRootSource(embedded_production_root(), "embedded:sigstore-python production")


def _fetch_from_tuf(url: str) -> bytes:
    """Refresh the trusted root through TUF (sigstore-python's updater and its on-disk cache)."""
    from sigstore._internal.tuf import TrustUpdater  # noqa: PLC0415 - network path, rarely used

    try:
        path = TrustUpdater(url, offline=False).get_trusted_root_path()
        return Path(path).read_bytes()
    except Exception as exc:  # any TUF failure stops the start with the setting named
        raise SettingsError(
            f"{PREFIX}TUF_URL={url!r}: cannot refresh the trusted root: {exc}"
        ) from None
