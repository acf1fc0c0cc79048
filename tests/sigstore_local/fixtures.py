"""pytest plugin: the `sigstore_local` session fixture (a running `LocalSigstore`).

Registered in tests/conftest.py through `pytest_plugins`. The instance is shared by the whole
session: a test that changes its failure switches, clock or tampering uses `fresh_rekor`,
which restores them afterwards and starts from zero request counts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RegistryServer
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

__all__ = ["LocalSigstore", "fresh_rekor", "registry_signer", "sigstore_local"]


@pytest.fixture(scope="session")
def sigstore_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSigstore]:
    """CA + CT log + Rekor on 127.0.0.1, and its trusted_root.json (`.trusted_root_path`)."""
    with LocalSigstore(tmp_path_factory.mktemp("sigstore-local")) as instance:
        yield instance


@pytest.fixture
def fresh_rekor(sigstore_local: LocalSigstore) -> Iterator[LocalSigstore]:
    """The session instance with request counts at zero; failure switches, clock and
    tampering are reset when the test ends."""
    sigstore_local.reset()
    try:
        yield sigstore_local
    finally:
        sigstore_local.reset()


@pytest.fixture
def registry_signer(
    sigstore_local: LocalSigstore, registry: RegistryServer
) -> Iterator[RegistrySigner]:
    """Pushes images to the session registry and signs them with the session instance."""
    with sigstore_local.registry_signer(registry.url) as signer:
        yield signer
