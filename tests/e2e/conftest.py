"""The service under gunicorn (`sigverify serve`), wired to the session's real Redis, registry
and local Sigstore instance, as an operator would configure it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from tests.contract import CheckedClient
from tests.oci import Pusher
from tests.servers import RegistryServer, ServiceServer, running

ServiceFactory = Callable[..., AbstractContextManager[tuple[ServiceServer, CheckedClient]]]


def service_env(registry: RegistryServer, **settings: str) -> dict[str, str]:
    """Settings that let the service reach the test registry on loopback, over plain HTTP.

    The allow-list keeps the service under test on loopback too: a name that is not listed is
    refused before it is even looked up, so a test cannot make the service send traffic out.
    """
    env = {
        "SIGVERIFY_INSECURE_REGISTRIES": registry.host,
        "SIGVERIFY_ALLOW_LOOPBACK": "true",
        "SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1,localhost",
        "SIGVERIFY_REKOR_TIMEOUT": "2",
    }
    env.update({f"SIGVERIFY_{k.upper()}": v for k, v in settings.items()})
    return env


@pytest.fixture(scope="module")
def start_service(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer
) -> ServiceFactory:
    """Starts `sigverify serve` with extra settings (lowercase names, as in `Settings`)."""

    @contextmanager
    def start(**settings: str) -> Iterator[tuple[ServiceServer, CheckedClient]]:
        server = ServiceServer(
            tmp_path_factory.mktemp("service"), env=service_env(registry, **settings)
        )
        with running(server), CheckedClient(base_url=server.url, timeout=30) as client:
            yield server, client

    return start


@pytest.fixture(scope="module")
def pusher(registry: RegistryServer) -> Iterator[Pusher]:
    p = Pusher(registry.url)
    yield p
    p.close()


def ref(registry: RegistryServer, repo: str, identifier: str) -> str:
    """An image reference in the test registry; `identifier` is `:tag` or `@sha256:...`."""
    return f"{registry.host}/{repo}{identifier}"
