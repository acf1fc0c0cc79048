"""The in-process flavour of the local Sigstore, for the verification core's unit tests.

`FakeSigstore` is a `CertificateAuthority` (issuing at a fixed time by default) plus a Rekor
key; it answers as the log would without a server: SETs, cosign bundle annotations and Rekor
entries with a real inclusion proof in a small tree (built by a `TransparencyLog`), and its
trusted root. `keyless_layer` and `dsse_attestation` make cosign layers with it. No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from service.core import CosignAttestation, CosignSignature, TrustRoot
from tests.sigstore_local import artifacts
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY, DSSE_ENVELOPE, SIMPLE_SIGNING
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, p256
from tests.sigstore_local.encoding import b64, sha256_hex
from tests.sigstore_local.log import TransparencyLog, canonicalize, tamper
from tests.sigstore_local.trust import LogKey, trusted_root_json

SIGNED_AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
REKOR_URL = "https://rekor.test.invalid"
REKOR_HOST = "rekor.test.invalid"
REKOR_TREE_ID = 0x24296FB24B8AD77A  # production Rekor's tree id, so entry ids look familiar


def _signing_time() -> datetime:
    return SIGNED_AT - timedelta(minutes=1)


@dataclass
class FakeSigstore(CertificateAuthority):
    """One private Sigstore instance without servers; `trust()` is its trusted root."""

    name: str = "fake-fulcio"
    clock: Callable[[], datetime] = _signing_time
    rekor_key: ec.EllipticCurvePrivateKey = field(default_factory=p256)

    @property
    def rekor_log_id(self) -> str:
        return self._log().log_id

    def _log(self, *, index_offset: int = 0) -> TransparencyLog:
        return TransparencyLog(
            self.rekor_key, hostname=REKOR_HOST, tree_id=REKOR_TREE_ID, index_offset=index_offset
        )

    def trusted_root_json(self) -> bytes:
        return trusted_root_json(
            authorities=[self],
            tlogs=[LogKey(self.rekor_key.public_key(), REKOR_URL, self.valid_from)],
            ctlogs=[LogKey(self.ct_key.public_key(), "https://ct.test.invalid", self.valid_from)],
        )

    def trust(self) -> TrustRoot:
        return TrustRoot.from_json(self.trusted_root_json())

    def set_for(self, body: bytes, integrated_time: int, log_index: int) -> bytes:
        """The SET this log would give the entry."""
        return self._log().signed_entry_timestamp(body, integrated_time, log_index)

    def bundle_annotation(
        self, body: bytes, integrated_time: int, log_index: int, set_: bytes | None = None
    ) -> str:
        """cosign's bundle annotation for the entry (with `set_` instead of the real SET)."""
        signed = set_ if set_ is not None else self.set_for(body, integrated_time, log_index)
        return artifacts.set_bundle_annotation(
            signed, body, integrated_time, log_index, self.rekor_log_id
        )

    def rekor_response(
        self,
        body: bytes,
        integrated_time: int,
        log_index: int,
        *,
        tree_size: int = 7,
        with_set: bool = True,
    ) -> dict[str, Any]:
        """What `GET /api/v1/log/entries?logIndex=N` answers: the entry in a shard of
        `tree_size` entries (the others filler), with its inclusion proof and checkpoint."""
        position = log_index % tree_size
        log = self._log(index_offset=log_index - position)
        for i in range(tree_size):
            filler = f"other entry {i}".encode()
            log.append_body(body if i == position else filler, integrated_time=integrated_time)
        response = log.entry(log_index)
        return response if with_set else tamper(response, signed_entry_timestamp=None)


hashedrekord_body = artifacts.hashedrekord_body
simple_signing = artifacts.simple_signing


@dataclass(frozen=True)
class Signed:
    """A keyless cosign layer made by `keyless_layer`, with what went into it."""

    layer: CosignSignature
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    body: bytes
    integrated_time: int
    log_index: int


def keyless_layer(
    fake: FakeSigstore,
    image_digest: str,
    *,
    san: str = DEFAULT_IDENTITY,
    issuer: str = ACTIONS,
    extensions: Mapping[int, str] | None = None,
    signed_at: datetime = SIGNED_AT,
    not_before: datetime | None = None,
    log_index: int = 4242,
    bundle: bool = True,
    payload: bytes | None = None,
) -> Signed:
    """A keyless cosign signature layer as `cosign sign` writes it (cert, chain, SET bundle)."""
    key = p256()
    cert = fake.issue(
        key,
        san=san,
        issuer=issuer,
        extensions=extensions,
        not_before=not_before or signed_at - timedelta(minutes=1),
    )
    payload = payload if payload is not None else simple_signing(image_digest)
    signature = artifacts.sign(key, payload)
    body = hashedrekord_body(payload, signature, cert)
    integrated = int(signed_at.timestamp())
    annotations = {
        artifacts.SIGNATURE_ANNOTATION: b64(signature),
        artifacts.CERTIFICATE_ANNOTATION: cert.public_bytes(Encoding.PEM).decode(),
        artifacts.CHAIN_ANNOTATION: fake.chain_pem(),
    }
    if bundle:
        annotations[artifacts.BUNDLE_ANNOTATION] = fake.bundle_annotation(
            body, integrated, log_index
        )
    layer = CosignSignature(
        payload=payload,
        annotations=annotations,
        media_type=SIMPLE_SIGNING,
        layer_digest="sha256:" + sha256_hex(payload),
        source="fake",
    )
    return Signed(layer, cert, key, body, integrated, log_index)


def dsse_attestation(
    fake: FakeSigstore, image_digest: str, *, subject_digest: str | None = None
) -> CosignAttestation:
    """A keyless cosign attestation (DSSE in-toto statement) with a dsse/0.0.1 SET bundle."""
    key = p256()
    cert = fake.issue(key, san=DEFAULT_IDENTITY)
    statement = artifacts.in_toto_statement(subject_digest or image_digest)
    envelope, _signature = artifacts.dsse_envelope(statement, key)
    body, _keys = canonicalize(artifacts.dsse_proposal(envelope, [cert]))
    integrated = int(SIGNED_AT.timestamp())
    return CosignAttestation(
        payload=envelope.encode(),
        annotations={
            artifacts.SIGNATURE_ANNOTATION: "",
            artifacts.CERTIFICATE_ANNOTATION: cert.public_bytes(Encoding.PEM).decode(),
            artifacts.BUNDLE_ANNOTATION: fake.bundle_annotation(body, integrated, 99),
        },
        media_type=DSSE_ENVELOPE,
        layer_digest="sha256:" + sha256_hex(envelope.encode()),
        source="fake",
    )
