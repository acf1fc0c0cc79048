"""Logs with no entries yet, in process: what signs the first entry of a log.

A fresh log's first entry has log index 0, and its inclusion proof, in the tree of size 1,
has no hashes: both are protobuf defaults, which protobuf JSON encoders (protojson,
sigstore-js) leave out of a bundle (see `artifacts.protobuf_json`). `FreshLogs` gives signers
that each log to a new `TransparencyLog` with the caller's CA, and the trusted root naming the
CA and every log it made. No servers: bundles carry their proofs, and need no lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core import TrustRoot
from tests.sigstore_local.ca import CertificateAuthority
from tests.sigstore_local.log import RekorEntry, TransparencyLog
from tests.sigstore_local.signer import Signer
from tests.sigstore_local.trust import LogKey, trusted_root_json

UNUSED_REKOR = "http://127.0.0.1:1"  # nothing listens: a lookup would fail at once
CT_URL = "https://ct.sigstore.local"


@dataclass
class FreshLogs:
    """Signers whose logs start empty, and the trusted root that trusts them all."""

    ca: CertificateAuthority
    logs: list[TransparencyLog] = field(default_factory=list)

    def signer(self) -> Signer:
        """Signs with `ca` and logs to a new log: its first upload is entry 0."""
        log = TransparencyLog(clock=self.ca.clock)
        self.logs.append(log)
        return Signer(self.ca, lambda proposed: RekorEntry.from_response(log.add(proposed)))

    def trusted_root_json(self) -> bytes:
        return trusted_root_json(
            authorities=[self.ca],
            tlogs=[LogKey(log.public_key, UNUSED_REKOR, self.ca.valid_from) for log in self.logs],
            ctlogs=[LogKey(self.ca.ct_key.public_key(), CT_URL, self.ca.valid_from)],
        )

    def trust(self) -> TrustRoot:
        return TrustRoot.from_json(self.trusted_root_json())
