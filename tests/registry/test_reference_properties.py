"""Properties of reference parsing over generated references (tests/hostile.py): it raises
nothing but `InvalidReference`, and what it accepts the HTTP client and the guard take too.

The first property is what found `0177.0.0.1`: the parser accepted it, httpx then refused to
build the URL, and the service answered 500. Seeded and bounded (see `SETTINGS`)."""

from __future__ import annotations

import ipaddress

import httpx
from hypothesis import HealthCheck, given, settings

from service.registry import (
    AddressPolicy,
    InvalidReference,
    RegistryError,
    check_host,
    parse_reference,
)
from service.registry.guard import IPAddress
from tests.hostile import ANY_REFERENCES

SETTINGS = settings(
    max_examples=1500,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _loopback(host: str, port: int) -> list[IPAddress]:
    """A resolver that never asks DNS: every name is on loopback."""
    return [ipaddress.ip_address("127.0.0.1")]


@SETTINGS
@given(ANY_REFERENCES)
def test_references_parse_or_are_invalid_and_parse_to_usable_urls(text: str) -> None:
    try:
        ref = parse_reference(text)
    except InvalidReference:
        return
    # What parses names one registry for every party: a URL httpx builds, a host the guard
    # reads (no other error than its own), an image digest in sha256.
    url = httpx.URL(f"https://{ref.registry}/v2/{ref.repository}/manifests/{ref.identifier}")
    assert url.host
    try:
        check_host(url.host, url.port or 443, AddressPolicy(allow_loopback=True), _loopback)
    except RegistryError as exc:  # what the guard may refuse: an address, never a spelling
        assert "a.b.c.d" not in str(exc), exc
    assert ref.digest is None or ref.digest.startswith("sha256:")
    # The canonical form reads back the same, where it can: the limit applies to the name as
    # written, and a one-label registry named by an uppercase letter (Docker's rule: `Ab/c` is
    # on host `ab`) has no lowercase spelling that Docker reads as a registry.
    recognisable = any(c in ref.registry for c in ".:") or ref.registry == "localhost"
    if len(ref.name) <= 255 and recognisable:
        assert parse_reference(ref.canonical) == ref, (text, ref.canonical)
