"""Trust-root refresh through TUF under gunicorn: a real TUF repository on loopback (python-tuf's
metadata API, test keys), the local Sigstore instance and a second log, the real registry.

Offline-first: the service starts on the root it has and refreshes in the background; a refresh
reaches every worker within the interval; a refused refresh leaves the root in use; a repository
that hangs holds up neither the start nor a request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from securesystemslib.signer import CryptoSigner

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.prometheus import prometheus_value
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner
from tests.tuf_repository import HangingServer, TufRepository

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
WAIT = 20.0  # seconds any refresh may take to show (interval 1 s, poll 1 s, loaded machine)
_T = TypeVar("_T")


@pytest.fixture(scope="module")
def second_log(
    tmp_path_factory: pytest.TempPathFactory, sigstore_local: LocalSigstore
) -> Iterator[LocalSigstore]:
    """Another Rekor log (its own key and server), certificates from the same CA: what a new
    log shard looks like to a verifier."""
    with LocalSigstore(tmp_path_factory.mktemp("second-log"), ca=sigstore_local.ca) as log:
        yield log


def eventually(probe: Callable[[], _T | None], what: str, limit: float = WAIT) -> _T:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {limit} s: {what}")


def trust_root(client: CheckedClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/readyz").json()["checks"]["trustRoot"]
    return body


def trust_root_when(
    client: CheckedClient,
    holds: Callable[[dict[str, Any]], bool],
    what: str,
    limit: float = WAIT,
) -> dict[str, Any]:
    """/readyz's trustRoot once `holds` says so (within `WAIT`)."""

    def probe() -> dict[str, Any] | None:
        root = trust_root(client)
        return root if holds(root) else None

    return eventually(probe, what, limit)


def verify(client: CheckedClient, image: str) -> dict[str, Any]:
    response = client.post("/v1/verify", json={"image": image, "policy": POLICY})
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def only_root_in_use(client: CheckedClient, digest: str, old: str) -> bool | None:
    """True once every live worker uses `digest` and none `old` (the metric's totals)."""
    text = client.get("/metrics").text

    def in_use(d: str) -> float:
        return sum(
            prometheus_value(text, "sigverify_trust_root_info", source=s, version=v, digest=d)
            for s in ("tuf", "embedded")
            for v in ("", "2", "3", "4", "5")
        )

    return True if in_use(digest) == 1 and in_use(old) == 0 else None


def signed_under(log: LocalSigstore, registry: RegistryServer, repo: str) -> str:
    """An image with a bundle referrer logged in `log` (a bundle carries its own proof)."""
    with log.registry_signer(registry.url) as signer:
        image = signer.image(repo)
        signer.attach_bundle(image)
        return image.reference


def test_a_refresh_that_adds_a_log_key_makes_signatures_logged_under_it_verify(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    second_log: LocalSigstore,
    registry: RegistryServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp_path = tmp_path_factory.mktemp("tuf")
    with TufRepository(tmp_path / "repo") as tuf:
        tuf.publish(sigstore_local.trusted_root_json())
        bootstrap = tuf.write_bootstrap(tmp_path / "tuf-root.json")
        with start_service(
            tuf_url=tuf.url,
            tuf_root_file=str(bootstrap),
            tuf_interval="1",
            tuf_timeout="5",
            rekor_url=sigstore_local.url,
        ) as (_server, client):
            # Started on the embedded root (or already refreshed): never waiting for TUF.
            root = trust_root_when(client, lambda r: r["version"] == 2, "the first refresh")
            assert root["source"] == "tuf" and root["refresh"]["url"] == tuf.url
            image = signed_under(second_log, registry, "e2e/tuf-second-log")
            before = verify(client, image)
            assert before["verified"] is False
            assert before["trustRoot"]["digest"] == root["digest"]

            # The repository adds the second log's key: a new trusted_root.json, targets v3.
            second = sigstore_local.trusted_root_json(
                tlogs=[sigstore_local.rekor_key(), second_log.rekor_key()]
            )
            tuf.publish(second)
            new = trust_root_when(client, lambda r: r["version"] == 3, "the second refresh")
            # Every worker took it up, none is left on the old root.
            eventually(
                lambda: only_root_in_use(client, new["digest"], root["digest"]),
                "every worker on the new root",
            )
            after = verify(client, image)
            assert after["verified"] is True, after["reasons"]
            assert after["trustRoot"]["digest"] == new["digest"] != root["digest"]
            source = after["trustRoot"]["sources"]["default"]
            assert source == f"tuf {tuf.url} (targets v3, root v1)"
            assert client.get("/version").json()["trustRoot"]["version"] == 3

            # Its tampered twin: a third log's key, published under a timestamp signed by a key
            # the TUF root does not list, is refused; the root in use stays.
            with LocalSigstore(tmp_path_factory.mktemp("third-log"), ca=sigstore_local.ca) as third:
                image3 = signed_under(third, registry, "e2e/tuf-third-log")
                tuf.publish(
                    sigstore_local.trusted_root_json(
                        tlogs=[
                            sigstore_local.rekor_key(),
                            second_log.rekor_key(),
                            third.rekor_key(),
                        ]
                    ),
                    timestamp_signer=CryptoSigner.generate_ecdsa(),
                )
                refused = trust_root_when(
                    client, lambda r: bool(r["refresh"]["lastError"]), "the refused refresh"
                )
                assert "UnsignedMetadataError" in refused["refresh"]["lastError"]
                assert refused["digest"] == new["digest"] and refused["version"] == 3
                assert verify(client, image3)["verified"] is False
                assert verify(client, image)["verified"] is True
                ready = client.get("/readyz").json()
                assert any(w.startswith("trust root refresh failing") for w in ready["warnings"])


def test_a_hanging_repository_holds_up_neither_the_start_nor_a_request(
    start_service: ServiceFactory,
    registry_signer: RegistrySigner,
    tmp_path: Path,
) -> None:
    with TufRepository(tmp_path / "repo") as tuf:
        bootstrap = tuf.write_bootstrap(tmp_path / "tuf-root.json")
    image = registry_signer.image("e2e/tuf-hang").reference
    with HangingServer().running() as hang:
        # One worker: the one whose thread is stuck in the refresh is the one that answers.
        with start_service(
            tuf_url=hang.url,
            tuf_root_file=str(bootstrap),
            tuf_interval="1",
            tuf_timeout="8",
            workers="1",
        ) as (server, client):
            # Started and answering while the refresh hangs (connected, no failure recorded):
            # the start did not wait for TUF, and neither does any request.
            eventually(lambda: hang.accepted or None, "the refresher's connection", 10)
            for _ in range(3):
                asked = time.monotonic()
                root = trust_root(client)
                verdict = verify(client, image)
                took = time.monotonic() - asked
                assert took < 2.0, f"a request took {took:.1f} s while TUF hangs"
                assert root["source"] == "embedded"
                assert root["refresh"]["failures"] == 0, "the refresh ended too soon to show this"
                assert verdict["verified"] is False and verdict["trustRoot"]["digest"]
            failed = trust_root_when(
                client, lambda r: r["refresh"]["failures"] >= 2, "two refreshes ended", limit=40
            )
            assert "timed out" in failed["refresh"]["lastError"]
            assert failed["source"] == "embedded"
        log = server.log_path.read_text()
    failures = [line for line in log.splitlines() if "trust root refresh failed" in line]
    assert len(failures) == 1, failures  # once, not per attempt, not per request
    assert json.loads(failures[0])["level"] == "WARNING"
