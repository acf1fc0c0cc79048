"""Shared fixtures: real Redis and a real OCI registry, private to the test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import RedisServer, RegistryServer, running

pytest_plugins = ["tests.netguard", "tests.sigstore_local.fixtures"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    with running(server):
        yield server


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A private docker-registry (CNCF distribution) for the whole session, no auth."""
    server = RegistryServer(tmp_path_factory.mktemp("registry"))
    with running(server):
        yield server


@pytest.fixture(scope="session")
def basic_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A private docker-registry that requires basic auth as `tester` / `s3cret-pass`."""
    server = RegistryServer(
        tmp_path_factory.mktemp("registry-auth"), htpasswd=("tester", "s3cret-pass")
    )
    with running(server):
        yield server


@pytest.fixture
def data_dir() -> Path:
    """tests/data, where third-party test data lives with its attribution."""
    return Path(__file__).parent / "data"
