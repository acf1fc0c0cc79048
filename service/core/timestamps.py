"""RFC 3161 signed timestamps as signing-time evidence. Pure.

A timestamp authority (TSA) signs the hash of a signature together with the time it saw it.
Where the trust root lists TSAs, a verified timestamp is a signing time the certificate's
validity can be checked at, as a transparency log's integrated time is; for an instance with
no log at all (GitHub's private Sigstore instance) it is the only one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import rfc3161_client

from service.core.errors import CheckError
from service.core.trust import TrustRoot

MAX_TIMESTAMPS = 32


def verify_timestamps(
    signature: bytes, stamps: Sequence[bytes], trust: TrustRoot
) -> list[datetime]:
    """The times of the `stamps` (DER TimeStampResponses over `signature`) that verify with a
    TSA of `trust` whose validity includes the stamped time. Raises `CheckError` when none
    does, when there are duplicates or too many, or when the trust root has no TSA."""
    if not trust.timestamp_authorities:
        raise CheckError(
            f"found {len(stamps)} signed timestamp(s), expected a trust root with timestamp "
            "authorities to verify them"
        )
    if len(stamps) > MAX_TIMESTAMPS:
        raise CheckError(
            f"found {len(stamps)} signed timestamps, expected at most {MAX_TIMESTAMPS}"
        )
    if len(set(stamps)) != len(stamps):
        raise CheckError("found a signed timestamp twice, expected each once")
    times: list[datetime] = []
    failures: list[str] = []
    for i, raw in enumerate(stamps):
        try:
            response = rfc3161_client.decode_timestamp_response(raw)
        except (ValueError, rfc3161_client.VerificationError) as exc:
            failures.append(f"timestamp {i}: not a timestamp response: {exc}")
            continue
        when = response.tst_info.gen_time
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
        for authority in trust.timestamp_authorities:
            if len(authority.chain) < 2 or not authority.validity.contains(when):
                continue
            builder = (
                rfc3161_client.VerifierBuilder()
                .tsa_certificate(authority.chain[0])
                .add_root_certificate(authority.chain[-1])
            )
            for intermediate in authority.chain[1:-1]:
                builder = builder.add_intermediate_certificate(intermediate)
            try:
                builder.build().verify_message(response, signature)
            except rfc3161_client.VerificationError:
                continue
            times.append(when)
            break
        else:
            failures.append(
                f"timestamp {i} ({when.isoformat()}): does not verify with a timestamp "
                "authority of the trust root valid at that time"
            )
    if not times:
        raise CheckError("; ".join(failures) or "found no signed timestamp, expected one")
    return times
