"""`verify_image`: every signature of an image against a trust root and a policy. Pure.

A cosign signature or attestation made with a Fulcio certificate (keyless) is verified in
these steps; each appends a `Check` named as below, and the signature verifies only if all pass:

0. `layer-digest`: the layer's digest is the sha256 of its payload.
1. `transparency-log`: log evidence holds. Preferred: a fetched Rekor entry whose Merkle
   inclusion proof and signed checkpoint verify; otherwise, when the policy allows it, the
   SET (inclusion promise) from the cosign bundle annotation. The integrated time is trusted
   only when a SET over it verifies with a Rekor key valid at that time.
2. `log-entry-match`: the entry body (hashedrekord, rekord, dsse or intoto 0.0.1) records this
   payload hash, this signature and this certificate.
3. `certificate-validity` and `certificate-chain`: the leaf was valid at the integrated time
   and chains, through the trust root's certificates only, to a Fulcio CA valid at that time.
4. `sct`: the certificate's embedded SCT verifies with a CT log key of the trust root.
5. `signature`: the signature verifies over the payload (DSSE: over the PAE) with the
   certificate's key.
6. `image-digest`: the payload is about this image: simple-signing
   `critical.image.docker-manifest-digest` and `critical.type`, or an in-toto subject digest.
7. `identity`: the certificate satisfies one of the policy's identities.

A key-signed signature (no certificate) replaces 2-5 and 7 with `signature` against each policy
key; its log evidence is checked only when the policy requires a transparency log. A Sigstore
bundle is verified by sigstore-python's `Verifier` (`bundle`), then `image-digest` and
`identity`. The image verifies when at least `threshold` distinct signers verified.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore_models.common.v1 import HashAlgorithm

from service.core._util import (
    as_public_key,
    b64decode,
    from_unix,
    load_pem_certificates,
    mapping,
    rfc3339,
    sha256_hex,
)
from service.core.certs import CertificateDetails, verify_chain, verify_sct
from service.core.errors import CheckError, CoreError, InputError
from service.core.inputs import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    LogEntry,
    LogLookup,
    SetBundle,
    Signature,
    lookup_for,
)
from service.core.keys import describe_key, signature_valid
from service.core.policy import Policy, PolicyKey
from service.core.rekor import Material, match_body, verify_inclusion_proof, verify_set
from service.core.results import Check, Evidence, ImageResult, Kind, LogEvidence, SignatureResult
from service.core.trust import TrustRoot

SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
CLOCK_SKEW = timedelta(minutes=5)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def verify_image(
    *,
    image_digest: str,
    signatures: Sequence[Signature],
    log_entries: Mapping[LogLookup, Sequence[LogEntry]],
    policy: Policy,
    trust: TrustRoot,
    now: datetime,
) -> ImageResult:
    """Verify every signature of `image_digest`; the image verifies with `threshold` signers.

    `log_entries` holds what the orchestration fetched for `needed_log_lookups(signatures)`:
    every entry found (a search by hash finds one per signer of the same payload; empty where
    nothing was found); `now` is the verification time.
    """
    if not _DIGEST.fullmatch(image_digest):
        raise InputError(f"image digest: found {image_digest!r:.80}, expected sha256:<64 hex>")
    context = _Context(image_digest, log_entries, policy, trust, now)
    results = tuple(_verify_signature(s, context) for s in signatures)
    signers = tuple(dict.fromkeys(r.signer for r in results if r.verified and r.signer))
    reasons: list[str] = []
    if not results:
        reasons.append("no signatures found")
    else:
        for r in results:
            reasons += [f"{r.kind} {r.digest}: {reason}" for reason in r.reasons]
        if len(signers) < policy.threshold:
            reasons.append(
                f"threshold not met: found {len(signers)} distinct verified signer"
                f"{'' if len(signers) == 1 else 's'}, expected at least {policy.threshold}"
            )
    verified = bool(results) and len(signers) >= policy.threshold
    return ImageResult(
        verified=verified,
        signatures=results,
        signers=signers,
        reasons=() if verified else tuple(reasons),
    )


@dataclass(frozen=True)
class _Context:
    """The arguments of one `verify_image` call, shared by every signature."""

    image_digest: str
    log_entries: Mapping[LogLookup, Sequence[LogEntry]]
    policy: Policy
    trust: TrustRoot
    now: datetime


@dataclass
class _Run:
    """The checks of one signature as they accumulate, and the log evidence found."""

    checks: list[Check]
    evidence: LogEvidence | None = None

    def ok(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, True, detail))

    def fail(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, False, detail))


def _verify_signature(signature: Signature, context: _Context) -> SignatureResult:
    if isinstance(signature, BundleSignature):
        return _verify_bundle(signature, context)
    return _verify_cosign(signature, context)


# -- cosign legacy signatures and attestations ---------------------------------------------


@dataclass(frozen=True)
class _Signed:
    """What a cosign layer signs: the bytes under the signature, and the payload they carry."""

    signature: bytes
    signed_bytes: bytes
    payload: bytes
    envelope: bytes | None


def _signed_material(layer: CosignSignature | CosignAttestation) -> _Signed:
    if isinstance(layer, CosignSignature):
        raw = layer.annotations.get(SIGNATURE_ANNOTATION, "")
        if not raw:
            raise CheckError(f"found no {SIGNATURE_ANNOTATION} annotation, expected one")
        try:
            signature = b64decode(raw, "signature annotation")
        except InputError as exc:
            raise CheckError(str(exc)) from None
        return _Signed(signature, layer.payload, layer.payload, None)
    try:
        envelope = mapping(json.loads(layer.payload), "dsse envelope")
        payload_type = envelope.get("payloadType")
        payload = b64decode(envelope.get("payload"), "dsse payload")
        sigs = envelope.get("signatures")
        if not isinstance(payload_type, str):
            raise InputError("dsse payloadType: found none, expected a string")
        if not isinstance(sigs, list) or len(sigs) != 1:
            raise InputError("dsse signatures: found not exactly one, expected one")
        signature = b64decode(mapping(sigs[0], "dsse signature").get("sig"), "dsse sig")
    except (ValueError, InputError) as exc:
        raise CheckError(f"attestation is not a dsse envelope: {exc}") from None
    pae = b"DSSEv1 %d %s %d %s" % (
        len(payload_type.encode()),
        payload_type.encode(),
        len(payload),
        payload,
    )
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise CheckError(f"dsse payloadType {payload_type!r:.80}, expected {IN_TOTO_PAYLOAD_TYPE}")
    return _Signed(signature, pae, payload, layer.payload)


def _verify_cosign(
    layer: CosignSignature | CosignAttestation, context: _Context
) -> SignatureResult:
    kind: Kind = "cosign-signature" if isinstance(layer, CosignSignature) else "cosign-attestation"
    run = _Run([])
    leaf: x509.Certificate | None = None
    evidence: LogEvidence | None = None
    signer: str | None = None

    def result() -> SignatureResult:
        details = None if leaf is None else CertificateDetails.from_certificate(leaf)
        return SignatureResult(
            kind, layer.source, layer.layer_digest, tuple(run.checks), signer, details, evidence
        )

    # (0): the layer is what its digest says.
    actual = "sha256:" + sha256_hex(layer.payload)
    if actual == layer.layer_digest:
        run.ok("layer-digest", f"payload digest {actual}")
    else:
        run.fail("layer-digest", f"payload digest {actual}, expected {layer.layer_digest}")
    try:
        signed = _signed_material(layer)
    except CheckError as exc:
        run.fail("signature", str(exc))
        return result()
    cert_pem = layer.annotations.get(CERTIFICATE_ANNOTATION, "")
    if cert_pem:
        try:
            leaf = load_pem_certificates(cert_pem.encode(), "certificate annotation")[0]
        except InputError as exc:
            run.fail("certificate-chain", str(exc))
            return result()
        signer = _verify_keyless(layer, leaf, signed, context, run)
    else:
        signer = _verify_keyed(layer, signed, context, run)
    evidence = run.evidence
    # (6): the payload is about this image.
    _check_payload(layer, signed.payload, context.image_digest, run)
    return result()


def _verify_keyless(
    layer: CosignSignature | CosignAttestation,
    leaf: x509.Certificate,
    signed: _Signed,
    context: _Context,
    run: _Run,
) -> str | None:
    trust = context.trust
    try:
        leaf_key = as_public_key(leaf.public_key(), "certificate key")
    except InputError as exc:
        run.fail("signature", str(exc))
        return None
    material = Material(
        payload_sha256=sha256_hex(signed.payload if signed.envelope else layer.payload),
        signature=signed.signature,
        certificate=leaf,
        key=None,
        envelope=signed.envelope,
    )
    # (1) and (2): log evidence establishes the signing time; the entry is this signature.
    signed_at = _log_evidence(layer, material, context, run)
    # (3): the certificate was valid then and chains to a Fulcio CA valid then.
    issuer: x509.Certificate | None = None
    if signed_at is None:
        run.fail(
            "certificate-chain",
            "no verified signing time from the transparency log, so the short-lived "
            "certificate cannot be validated",
        )
    else:
        before, after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        in_window = before <= signed_at <= after
        if in_window:
            run.ok("certificate-validity", f"signed at {rfc3339(signed_at)}, within validity")
        else:
            run.fail(
                "certificate-validity",
                f"signed at {rfc3339(signed_at)}, expected within the certificate's validity "
                f"{rfc3339(before)} to {rfc3339(after)}",
            )
        try:
            ca, chain = verify_chain(leaf, trust, signed_at if in_window else before)
            issuer = chain[0]
            run.ok("certificate-chain", f"chains to {ca.uri or ca.subject} ({ca.subject})")
        except CheckError as exc:
            run.fail("certificate-chain", str(exc))
    # (4): the embedded SCT.
    if issuer is not None:
        try:
            run.ok("sct", verify_sct(leaf, issuer, trust))
        except (CheckError, InputError) as exc:
            run.fail("sct", str(exc))
    # (5): the signature over the payload, with the certificate's key.
    if signature_valid(leaf_key, signed.signature, signed.signed_bytes):
        run.ok("signature", f"verified with the certificate's {describe_key(leaf_key)} key")
    else:
        run.fail("signature", "does not verify with the certificate's key")
    # (7): identity policy.
    details = CertificateDetails.from_certificate(leaf)
    _check_identity(details, context.policy, run)
    issuer_claim = details.issuer or "no oidc issuer"
    return f"{details.subject} ({issuer_claim})"


def _check_identity(details: CertificateDetails, policy: Policy, run: _Run) -> None:
    if not policy.identities:
        run.fail(
            "identity",
            f"signed by {details.subject} with a certificate, expected a key-signed signature "
            "(the policy lists keys only)",
        )
        return
    failures: list[str] = []
    for identity in policy.identities:
        mismatches = identity.mismatches(details)
        if not mismatches:
            run.ok("identity", f"{details.subject} matches {identity.label}")
            return
        prefix = f"{identity.label}: " if len(policy.identities) > 1 else ""
        failures += [prefix + m for m in mismatches]
    run.fail("identity", "; ".join(failures))


def _verify_keyed(
    layer: CosignSignature | CosignAttestation, signed: _Signed, context: _Context, run: _Run
) -> str | None:
    policy = context.policy
    # (5): the signature against each policy key.
    if not policy.keys:
        run.fail(
            "signature",
            "signature has no certificate, expected a keyless signature "
            "(the policy lists identities only)",
        )
        return None
    matched: PolicyKey | None = next(
        (k for k in policy.keys if signature_valid(k.key, signed.signature, signed.signed_bytes)),
        None,
    )
    if matched is None:
        labels = ", ".join(k.label for k in policy.keys)
        run.fail("signature", f"does not verify with any policy key ({labels})")
    else:
        run.ok("signature", f"verified with {matched.label} ({describe_key(matched.key)})")
    # (1) and (2): log evidence, when the policy requires it.
    if not policy.transparency_log.required:
        run.ok("transparency-log", "not required by the policy")
    elif matched is not None:
        material = Material(
            payload_sha256=sha256_hex(signed.payload if signed.envelope else layer.payload),
            signature=signed.signature,
            certificate=None,
            key=matched.key,
            envelope=signed.envelope,
        )
        _log_evidence(layer, material, context, run)
    if matched is None:
        return None
    return f"{matched.label} sha256:{matched.fingerprint}"


def _log_evidence(
    layer: CosignSignature | CosignAttestation, material: Material, context: _Context, run: _Run
) -> datetime | None:
    """Checks (1) and (2); returns the integrated time when a SET over it verified."""
    trust, policy, now = context.trust, context.policy, context.now
    lookup = lookup_for(layer)
    fetched = _entry_for(context.log_entries.get(lookup, ()) if lookup else (), material)
    promise: SetBundle | None = None
    raw_bundle = layer.annotations.get(BUNDLE_ANNOTATION, "")
    if raw_bundle:
        try:
            promise = SetBundle.from_annotation(raw_bundle)
        except InputError as exc:
            run.fail("transparency-log", f"the rekor bundle annotation is malformed: {exc}")
            return None
    elif fetched is not None and fetched.signed_entry_timestamp is not None:
        promise = SetBundle(
            fetched.signed_entry_timestamp,
            fetched.body,
            fetched.integrated_time,
            fetched.log_index,
            fetched.log_id,
        )
    evidence: Evidence
    signed_at: datetime | None = None
    try:
        if fetched is not None and fetched.inclusion_proof is not None:
            if promise is not None and (
                fetched.body != promise.body
                or fetched.log_index != promise.log_index
                or fetched.log_id != promise.log_id
                or fetched.integrated_time != promise.integrated_time
            ):
                raise CheckError(
                    f"the fetched log entry (index {fetched.log_index}) is not the entry the "
                    f"signature's bundle names (index {promise.log_index})"
                )
            detail = verify_inclusion_proof(fetched, trust)
            evidence, body, entry = "inclusion-proof", fetched.body, fetched
            uuid: str | None = fetched.uuid
            if promise is not None:
                _verify_promise(promise, trust)
                signed_at = from_unix(fetched.integrated_time)
                detail += "; signed entry timestamp verified"
        elif promise is not None:
            if not policy.transparency_log.allow_inclusion_promise:
                raise CheckError(
                    "found only an inclusion promise (no inclusion proof could be obtained), "
                    "expected an inclusion proof as the policy requires"
                )
            _verify_promise(promise, trust)
            detail = f"signed entry timestamp verified (log index {promise.log_index})"
            evidence, body, uuid = "inclusion-promise", promise.body, None
            signed_at = from_unix(promise.integrated_time)
            entry = None
        else:
            raise CheckError(
                "found no transparency log evidence (no rekor bundle and no log entry), "
                "expected an inclusion proof or promise"
            )
        if signed_at is not None and signed_at > now + CLOCK_SKEW:
            raise CheckError(
                f"integrated time {rfc3339(signed_at)} is in the future (now {rfc3339(now)})"
            )
    except CheckError as exc:
        run.fail("transparency-log", str(exc))
        return None
    run.ok("transparency-log", detail)
    source = entry if entry is not None else promise
    assert source is not None
    run.evidence = LogEvidence(
        uuid=uuid,
        log_index=source.log_index,
        integrated_time=source.integrated_time,
        log_id=source.log_id,
        evidence=evidence,
    )
    # (2): the entry records this signature.
    try:
        kind = match_body(body, material)
        run.ok("log-entry-match", f"{kind} entry records this payload, signature and signer")
    except CheckError as exc:
        run.fail("log-entry-match", str(exc))
    return signed_at


def _entry_for(candidates: Sequence[LogEntry], material: Material) -> LogEntry | None:
    """The fetched entry that records this signature, else the first (its mismatch is reported).

    Several signers of one image sign the same payload, so a search by its hash finds an entry
    per signer; which one is this signature's is decided by the body, checked again below.
    """
    for candidate in candidates:
        try:
            match_body(candidate.body, material)
        except CheckError:
            continue
        return candidate
    return candidates[0] if candidates else None


def _verify_promise(promise: SetBundle, trust: TrustRoot) -> None:
    verify_set(
        trust,
        signed_entry_timestamp=promise.signed_entry_timestamp,
        body=promise.body,
        integrated_time=promise.integrated_time,
        log_index=promise.log_index,
        log_id=promise.log_id,
    )


def _check_payload(
    layer: CosignSignature | CosignAttestation, payload: bytes, image_digest: str, run: _Run
) -> None:
    """(6): simple-signing claims, or the in-toto subjects, name this image."""
    try:
        doc = mapping(json.loads(payload), "payload")
        if isinstance(layer, CosignSignature):
            critical = mapping(doc.get("critical"), "payload critical")
            kind = critical.get("type")
            if kind != SIMPLE_SIGNING_TYPE:
                raise CheckError(f"payload type {kind!r:.80}, expected {SIMPLE_SIGNING_TYPE!r}")
            image = mapping(critical.get("image"), "payload critical.image")
            signed = image.get("docker-manifest-digest")
            if signed != image_digest:
                raise CheckError(f"signature is for image {signed!s:.80}, expected {image_digest}")
            run.ok("image-digest", f"simple-signing payload names {image_digest}")
        else:
            _check_statement(doc, image_digest, run)
    except (ValueError, InputError) as exc:
        run.fail("image-digest", f"payload is not a JSON object: {exc}")
    except CheckError as exc:
        run.fail("image-digest", str(exc))


def _check_statement(doc: dict[str, object], image_digest: str, run: _Run) -> None:
    subjects = doc.get("subject")
    if not isinstance(subjects, list):
        raise CheckError("in-toto statement has no subject list, expected one")
    hex_digest = image_digest.removeprefix("sha256:")
    found: list[str] = []
    for subject in subjects:
        digests = subject.get("digest") if isinstance(subject, dict) else None
        if isinstance(digests, dict) and isinstance(digests.get("sha256"), str):
            found.append("sha256:" + digests["sha256"])
            if digests["sha256"].lower() == hex_digest:
                run.ok("image-digest", f"in-toto subject names {image_digest}")
                return
    raise CheckError(f"in-toto subjects are {', '.join(found) or 'none'}, expected {image_digest}")


# -- Sigstore bundles ----------------------------------------------------------------------


class _IdentityLater:
    """A sigstore-python policy that accepts; our own identity check runs afterwards, so
    that mismatches are reported per constraint."""

    def verify(self, cert: x509.Certificate) -> None:
        return None


def _verify_bundle(item: BundleSignature, context: _Context) -> SignatureResult:
    image_digest, policy, trust = context.image_digest, context.policy, context.trust
    run = _Run([])
    details: CertificateDetails | None = None
    evidence: LogEvidence | None = None
    signer: str | None = None

    def result() -> SignatureResult:
        return SignatureResult(
            "sigstore-bundle",
            item.source,
            item.manifest_digest,
            tuple(run.checks),
            signer,
            details,
            evidence,
        )

    # (B1): sigstore-python parses the bundle (it requires an inclusion proof + checkpoint).
    try:
        bundle = Bundle.from_json(item.bundle)
    except (SigstoreError, ValueError) as exc:
        run.fail("bundle", f"not a usable sigstore bundle: {exc}")
        return result()
    if bundle._inner.verification_material.certificate is None and (
        bundle._inner.verification_material.x509_certificate_chain is None
    ):
        run.fail("bundle", "key-signed bundles are not supported, expected a certificate")
        return result()
    try:
        verifier = trust.sigstore_verifier
    except CoreError as exc:
        run.fail("bundle", str(exc))
        return result()
    details = CertificateDetails.from_certificate(bundle.signing_certificate)
    # (B2): chain, SCT, log proof and promise, signature and log-entry consistency.
    try:
        if bundle._dsse_envelope is not None:
            payload_type, payload = verifier.verify_dsse(bundle, _IdentityLater())
            run.ok("bundle", "dsse bundle verified by sigstore-python")
            # (B3): the statement is about this image.
            if payload_type != IN_TOTO_PAYLOAD_TYPE:
                run.fail(
                    "image-digest",
                    f"dsse payloadType {payload_type!r:.80}, expected {IN_TOTO_PAYLOAD_TYPE}",
                )
            else:
                try:
                    _check_statement(mapping(json.loads(payload), "statement"), image_digest, run)
                except (ValueError, InputError) as exc:
                    run.fail("image-digest", f"statement is not a JSON object: {exc}")
                except CheckError as exc:
                    run.fail("image-digest", str(exc))
        else:
            digest = Hashed(
                algorithm=HashAlgorithm.SHA2_256,
                digest=bytes.fromhex(image_digest.removeprefix("sha256:")),
            )
            verifier.verify_artifact(digest, bundle, _IdentityLater())
            run.ok("bundle", "message-signature bundle verified by sigstore-python")
            # (B3): verify_artifact checked the signature over this digest (and messageDigest).
            run.ok("image-digest", f"message signature is over {image_digest}")
    except (SigstoreError, ValueError) as exc:
        run.fail("bundle", f"sigstore-python: {exc}")
        return result()
    inner = bundle.log_entry._inner
    evidence = LogEvidence(
        uuid=None,
        log_index=int(inner.log_index),
        integrated_time=int(inner.integrated_time or 0),
        log_id=inner.log_id.key_id.hex(),
        evidence="inclusion-proof",
    )
    # (B4): identity policy.
    _check_identity(details, policy, run)
    signer = f"{details.subject} ({details.issuer or 'no oidc issuer'})"
    return result()
