"""Fixtures for the registry client tests: clients, pushers, a token-auth registry."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.registry import AddressPolicy, RegistryClient, RegistryConfig
from tests.oci import Pusher
from tests.registry.helpers import (
    HTTPServer,
    TokenIssuer,
    TokenRegistryServer,
    TokenService,
)
from tests.servers import RegistryServer, running

ClientFactory = Callable[..., RegistryClient]


@pytest.fixture
def repo() -> str:
    """A repository name of its own for each test."""
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """Builds `RegistryClient`s allowed to reach loopback over http at `insecure` hosts."""
    clients: list[RegistryClient] = []

    def make(*insecure: str, **overrides: Any) -> RegistryClient:
        policy = overrides.pop("policy", AddressPolicy(allow_loopback=True))
        resolve = overrides.pop("resolve", None)
        config = RegistryConfig(
            timeout=overrides.pop("timeout", 5.0),
            insecure_registries=tuple(insecure),
            policy=policy,
            **overrides,
        )
        client = (
            RegistryClient(config) if resolve is None else RegistryClient(config, resolve=resolve)
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def pusher(registry: RegistryServer) -> Iterator[Pusher]:
    p = Pusher(registry.url)
    yield p
    p.close()


@pytest.fixture(scope="session")
def token_issuer(tmp_path_factory: pytest.TempPathFactory) -> TokenIssuer:
    return TokenIssuer(tmp_path_factory.mktemp("token-issuer"))


@pytest.fixture(scope="session")
def token_service(token_issuer: TokenIssuer) -> Iterator[tuple[TokenService, HTTPServer]]:
    """The token endpoint on 127.0.0.1; anonymous tokens unless a test sets `require`."""
    service = TokenService(token_issuer)
    with HTTPServer(service.route) as server:
        yield service, server


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory,
    token_issuer: TokenIssuer,
    token_service: tuple[TokenService, HTTPServer],
) -> Iterator[TokenRegistryServer]:
    """docker-registry with `auth: token`, as Docker Hub and ghcr.io do it."""
    server = TokenRegistryServer(
        tmp_path_factory.mktemp("registry-token"),
        issuer=token_issuer,
        realm=f"{token_service[1].url}/token",
    )
    with running(server):
        yield server
