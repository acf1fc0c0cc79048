"""`POST /v1/verify/bundle` under gunicorn, with the production root kept in tests/data."""

from __future__ import annotations

import json

from tests.conformance.cases import CASES, PRODUCTION_ROOT, load
from tests.e2e.conftest import ServiceFactory


def test_a_release_file_bundle_under_gunicorn(start_service: ServiceFactory) -> None:
    good, bad = load(CASES / "happy-path-v0.1"), load(CASES / "signature-mismatch_fail")
    with start_service(trust_root_file=str(PRODUCTION_ROOT)) as (_, client):
        verdicts = [
            client.post(
                "/v1/verify/bundle",
                json={
                    "bundle": json.loads(case.bundle.read_text()),
                    "artifactDigest": case.digest,
                    "policy": {
                        "certificateIdentity": case.identity,
                        "certificateOidcIssuer": case.issuer,
                    },
                },
            )
            for case in (good, bad)
        ]
    assert [v.status_code for v in verdicts] == [200, 200]
    passed, failed = (v.json() for v in verdicts)
    assert passed["verified"] is True, passed["reasons"]
    assert passed["artifact"]["digest"] == good.digest
    assert failed["verified"] is False
    assert failed["signatures"][0]["checks"][0]["name"] == "bundle"
