"""Several instances on one Redis, and a Redis writer: what each instance serves verifies with
its own `GET /v1/keys`, and nothing written to Redis by anyone else changes an answer.

Instances with the same verdict-signing key share cached verdicts; an instance with another
key never serves theirs (it keeps its own, and could not open theirs). A value rewritten in
Redis (a failure turned into `verified: true`, a pass copied onto an unsigned image, a plain
JSON verdict) is a miss: the instance verifies again and answers the truth.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.sealing import seal
from tests.servers import RedisServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

ROOT = Path(__file__).parents[2]
POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}


def key_file(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture(scope="module")
def fleet(
    start_service: ServiceFactory,
    redis_server: RedisServer,
    sigstore_local: LocalSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, CheckedClient]]:
    """a and b share a key (one release); c has its own (another release, or a development
    key); all three share one Redis."""
    keys = tmp_path_factory.mktemp("keys")
    shared, own = key_file(keys / "shared.pem"), key_file(keys / "own.pem")
    common = {
        "redis_url": redis_server.url,
        "rekor_url": sigstore_local.url,
        "trust_root_file": str(sigstore_local.trusted_root_path),
    }
    with (
        start_service(signing_key_file=str(shared), **common) as (_, a),
        start_service(signing_key_file=str(shared), **common) as (_, b),
        start_service(signing_key_file=str(own), **common) as (_, c),
    ):
        yield {"a": a, "b": b, "c": c}


def verify(client: CheckedClient, image: str) -> dict[str, Any]:
    response = client.post("/v1/verify", json={"image": image, "policy": POLICY})
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def checks_with_own_keys(
    client: CheckedClient, verdict: dict[str, Any], digest: str, tmp_path: Path
) -> str:
    """The verdict checked with the serving instance's published keys, by code that shares
    nothing with the service (examples/verify_verdict.py); its printed result."""
    (tmp_path / "verdict.json").write_text(json.dumps(verdict))
    (tmp_path / "keys.json").write_text(json.dumps(client.get("/v1/keys").json()))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples/verify_verdict.py"),
            str(tmp_path / "verdict.json"),
            str(tmp_path / "keys.json"),
            digest,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def verdict_keys(direct: redis.Redis, digest: str) -> list[bytes]:
    return sorted(direct.scan_iter(match=f"sigverify:*verdict:*{digest}*"))


def test_each_instance_serves_verdicts_its_own_keys_verify(
    fleet: dict[str, CheckedClient],
    registry_signer: RegistrySigner,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    image = registry_signer.image("shared/good")
    registry_signer.sign(image)
    first = verify(fleet["a"], image.reference)
    assert (first["verified"], first["cached"]) == (True, False)
    # b holds the same key: a's verdict is b's cache hit, and it verifies with b's keys
    second = verify(fleet["b"], image.reference)
    assert second["cached"] is True
    assert second["signedVerdict"] == first["signedVerdict"]
    # c holds another key: it never serves a's verdict, it signs its own
    third = verify(fleet["c"], image.reference)
    assert third["cached"] is False
    assert (
        third["signedVerdict"]["signatures"][0]["keyid"]
        != (first["signedVerdict"]["signatures"][0]["keyid"])
    )
    assert verify(fleet["c"], image.reference)["cached"] is True  # and caches it apart
    for name, verdict in (("a", first), ("b", second), ("c", third)):
        assert checks_with_own_keys(fleet[name], verdict, image.digest, tmp_path) == "PASSED"
    direct = redis.Redis.from_url(redis_server.url)
    assert len(verdict_keys(direct, image.digest)) == 2  # one per key, not one per instance


def test_a_redis_writer_cannot_change_an_answer(
    fleet: dict[str, CheckedClient], registry_signer: RegistrySigner, redis_server: RedisServer
) -> None:
    """The chart's Redis has no password by default: whoever reaches it can write. A failure
    rewritten as a pass, a pass copied onto an unsigned image, a plain JSON pass: all misses."""
    signed = registry_signer.image("shared/attacked")
    registry_signer.sign(signed)
    unsigned = registry_signer.image("shared/attacked", tag="unsigned")
    a = fleet["a"]
    assert verify(a, signed.reference)["verified"] is True
    failure = verify(a, unsigned.reference)
    assert failure["verified"] is False
    direct = redis.Redis.from_url(redis_server.url)
    (good_key,) = verdict_keys(direct, signed.digest)
    (bad_key,) = verdict_keys(direct, unsigned.digest)
    stored = direct.get(bad_key)
    assert isinstance(stored, bytes)
    start = len(seal("any", b""))  # the seal's header, then the verdict's JSON
    forged = json.loads(stored[start:])
    forged["verified"] = True
    good = direct.get(good_key)
    assert isinstance(good, bytes)
    attempts = {
        "failure rewritten as a pass": stored[:start] + json.dumps(forged).encode(),
        "plain JSON pass": json.dumps(forged).encode(),
        "a pass copied from another image": good,
        "sealed with another secret": seal(
            bad_key.decode().split(":", 2)[2], json.dumps(forged).encode()
        ),
    }
    for what, value in attempts.items():
        direct.set(bad_key, value)
        for client in (fleet["a"], fleet["b"]):
            answer = verify(client, unsigned.reference)
            assert (answer["verified"], answer["cached"]) == (False, False), what
            direct.set(bad_key, value)  # the instance overwrote it; the writer tries again
    metrics = a.get("/metrics").text
    assert 'sigverify_upstream_errors_total{reason="rejected",system="redis"}' in metrics
