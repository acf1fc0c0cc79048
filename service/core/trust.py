"""`TrustRoot`: a Sigstore trusted_root.json (protobuf-specs JSON), parsed once.

It holds the Fulcio certificate authorities, the Rekor and CT log keys by log id, and the
timestamp authorities, each with its validity window, plus sigstore-python's own `TrustedRoot`
when sigstore-python can load the same document (it is used for Sigstore bundles).
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.models import TrustedRoot
from sigstore.verify import Verifier
from sigstore_models.trustroot import v1 as trustroot_v1

from service.core._util import (
    PublicKey,
    b64decode,
    load_der_certificate,
    load_json,
    load_public_key_der,
    mapping,
    parse_time,
    sha256_hex,
    text,
)
from service.core.errors import CoreError, InputError, TrustRootError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
DEFAULT_TRUST_ROOT = "default"
"""The name of the trust root a policy uses when it names none (`trustRoots`)."""
_EMBEDDED = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"


@dataclass(frozen=True)
class Validity:
    """A validity window; `end` None means still valid."""

    start: datetime
    end: datetime | None

    def contains(self, when: datetime) -> bool:
        return self.start <= when and (self.end is None or when <= self.end)

    def describe(self) -> str:
        end = self.end.isoformat() if self.end else "open-ended"
        return f"{self.start.isoformat()} to {end}"


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA or a TSA: its chain (issuing certificate first, root last) and validity."""

    uri: str
    subject: str
    chain: tuple[x509.Certificate, ...]
    validity: Validity


@dataclass(frozen=True)
class LogKey:
    """A Rekor or CT log's public key, by log id (hex), with its validity."""

    log_id: str
    base_url: str
    key: PublicKey = field(compare=False)
    validity: Validity


@dataclass(frozen=True, eq=False)
class TrustRoot:
    """The trust material verification runs against; build with `from_json` or `production`."""

    digest: str
    certificate_authorities: tuple[CertificateAuthority, ...]
    rekor_logs: Mapping[str, LogKey]
    ct_logs: Mapping[str, LogKey]
    timestamp_authorities: tuple[CertificateAuthority, ...]
    sigstore_root: TrustedRoot | None = field(default=None, repr=False)
    """sigstore-python's `sigstore.models.TrustedRoot`, or None if it refused the document."""
    name: str = DEFAULT_TRUST_ROOT  # what policies call it (`trustRoots`)
    source: str = ""
    """Where it came from, in words (a file, TUF and its version, the embedded copy): said in
    verdicts and /readyz, never used by verification."""

    @classmethod
    def from_json(
        cls, data: bytes, name: str = DEFAULT_TRUST_ROOT, *, source: str = ""
    ) -> TrustRoot:
        """Parse a trusted_root.json; raises `TrustRootError` naming what is wrong."""
        try:
            document = load_json(data, "trusted root")
        except InputError:
            raise TrustRootError("trusted root: found invalid JSON, expected an object") from None
        try:
            return cls._parse(data, document, name, source)
        except InputError as exc:
            raise TrustRootError(f"trusted root: {exc}") from None

    @classmethod
    def production(cls) -> TrustRoot:
        """The production public-good root that ships inside sigstore-python (offline, no TUF)."""
        resource = (
            importlib.resources.files("sigstore") / "_store" / _EMBEDDED / "trusted_root.json"
        )
        return cls.from_json(resource.read_bytes())

    @classmethod
    def _parse(cls, data: bytes, document: object, name: str, source: str) -> TrustRoot:
        doc = mapping(document, "trusted root")
        media_type = doc.get("mediaType")
        if media_type != MEDIA_TYPE:
            raise InputError(f"mediaType: found {media_type!r:.80}, expected {MEDIA_TYPE!r}")
        cas = tuple(
            _authority(item, f"certificateAuthorities[{i}]")
            for i, item in enumerate(_list(doc, "certificateAuthorities"))
        )
        tsas = tuple(
            _authority(item, f"timestampAuthorities[{i}]")
            for i, item in enumerate(_list(doc, "timestampAuthorities"))
        )
        rekor = _log_keys(_list(doc, "tlogs"), "tlogs")
        ct = _log_keys(_list(doc, "ctlogs"), "ctlogs")
        if not cas and not rekor:
            raise InputError(
                "found no certificate authorities and no transparency logs, expected some"
            )
        return cls(
            digest=sha256_hex(data),
            certificate_authorities=cas,
            rekor_logs=MappingProxyType(rekor),
            ct_logs=MappingProxyType(ct),
            timestamp_authorities=tsas,
            sigstore_root=_sigstore_root(data),
            name=name,
            source=source,
        )

    @functools.cached_property
    def sigstore_verifier(self) -> Verifier:
        """sigstore-python's `Verifier` for this root; raises `CoreError` when unavailable."""
        if self.sigstore_root is None:
            raise CoreError("sigstore-python cannot load this trusted root")
        try:
            return Verifier(trusted_root=self.sigstore_root)
        except SigstoreError as exc:
            raise CoreError(
                f"sigstore-python cannot verify with this trusted root: {exc}"
            ) from None


def _list(doc: Mapping[str, Any], name: str) -> list[Any]:
    value = doc.get(name, [])
    if not isinstance(value, list):
        raise InputError(f"{name}: found {type(value).__name__}, expected a list")
    return value


def _validity(obj: Mapping[str, Any], what: str) -> Validity:
    valid_for = mapping(obj.get("validFor", {}), f"{what}.validFor")
    if "start" not in valid_for:
        raise InputError(f"{what}.validFor.start: found nothing, expected a start time")
    start = parse_time(valid_for["start"], f"{what}.validFor.start")
    raw_end = valid_for.get("end")
    end = None if raw_end is None else parse_time(raw_end, f"{what}.validFor.end")
    return Validity(start, end)


def _authority(item: object, what: str) -> CertificateAuthority:
    obj = mapping(item, what)
    chain = mapping(obj.get("certChain"), f"{what}.certChain")
    raw = chain.get("certificates")
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{what}.certChain.certificates: found none, expected at least one")
    certs = tuple(
        load_der_certificate(
            b64decode(mapping(c, f"{what}.certChain.certificates[{i}]").get("rawBytes"), what),
            f"{what}.certChain.certificates[{i}]",
        )
        for i, c in enumerate(raw)
    )
    subject = obj.get("subject", {})
    subject_text = ""
    if isinstance(subject, dict):
        subject_text = " / ".join(
            str(subject[k]) for k in ("organization", "commonName") if subject.get(k)
        )
    return CertificateAuthority(
        uri=str(obj.get("uri", "")),
        subject=subject_text or certs[0].subject.rfc4514_string(),
        chain=certs,
        validity=_validity(obj, what),
    )


def _log_keys(items: list[Any], what: str) -> dict[str, LogKey]:
    keys: dict[str, LogKey] = {}
    for i, item in enumerate(items):
        where = f"{what}[{i}]"
        obj = mapping(item, where)
        public_key = mapping(obj.get("publicKey"), f"{where}.publicKey")
        log_id = b64decode(
            mapping(obj.get("logId"), f"{where}.logId").get("keyId"), f"{where}.logId.keyId"
        ).hex()
        raw = b64decode(public_key.get("rawBytes"), f"{where}.publicKey.rawBytes")
        try:
            key = load_public_key_der(raw, f"{where}.publicKey")
        except InputError as exc:
            # A key type we cannot use is skipped, not trusted: what it signs will not verify.
            log.warning("trusted root: skipping %s: %s", where, exc)
            continue
        keys[log_id] = LogKey(
            log_id=log_id,
            base_url=text(obj.get("baseUrl", ""), f"{where}.baseUrl"),
            key=key,
            validity=_validity(public_key, f"{where}.publicKey"),
        )
    return keys


def _sigstore_root(data: bytes) -> TrustedRoot | None:
    """sigstore-python's model of the same document, or None when it refuses it.

    A validity period (protobuf-specs `TimeRange`) is closed, but sigstore-python 4.5
    accepts a timestamp only strictly before its authority's end. Datetimes have microsecond
    resolution, so handing it each end one microsecond later makes its `<` the spec's `<=`.
    """
    try:
        inner = trustroot_v1.TrustedRoot.from_json(data)
        for authority in inner.timestamp_authorities:
            if authority.valid_for is not None and authority.valid_for.end is not None:
                authority.valid_for.end += timedelta(microseconds=1)
        return TrustedRoot(inner)
    except Exception as exc:  # any refusal means: no sigstore-python for this root
        log.info("sigstore-python cannot load this trusted root: %s", exc)
        return None
