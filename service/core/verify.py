"""`verify_image`: every signature of an image against a trust root and a policy;
`verify_artifact`: one Sigstore bundle over an artifact's digest. Pure.

A cosign signature or attestation made with a Fulcio certificate (keyless) is verified in
these steps; each appends a `Check` named as below, and the signature verifies only if all pass:

0. `layer-digest`: the layer's digest is the sha256 of its payload.
1. `transparency-log`: log evidence holds. Preferred: a fetched Rekor entry whose Merkle
   inclusion proof and signed checkpoint verify; otherwise, when the policy allows it, the
   SET (inclusion promise) from the cosign bundle annotation. The integrated time is trusted
   only when a SET over it verifies with a Rekor key valid at that time.
2. `log-entry-match`: the entry body (hashedrekord, rekord, dsse, intoto 0.0.1 or 0.0.2)
   records this payload hash, this signature and this certificate.
3. `certificate-validity` and `certificate-chain`: the leaf was valid at the integrated time
   (and at every verified timestamp, for bundles) and chains, through the trust root's
   certificates only, to a Fulcio CA valid at that time.
4. `sct`: the certificate's embedded SCT verifies with a CT log key of the trust root (not
   applicable to a trust root without CT logs, such as GitHub's private instance).
5. `signature`: the signature verifies over the payload (DSSE: over the PAE) with the
   certificate's key.
6. `image-digest`: the payload is about this image: simple-signing
   `critical.image.docker-manifest-digest` and `critical.type`, or an in-toto subject digest.
7. `identity`: the certificate satisfies one of the policy's identities.

A key-signed signature (no certificate) replaces 2-5 and 7 with `signature` against each policy
key; its log evidence is checked only when the policy requires a transparency log. Sigstore
bundles take the steps listed at `_verify_bundle`: mostly sigstore-python's `Verifier`, and
the steps above where it cannot (key-signed bundles, intoto log entries, bundles with signed
timestamps and no log entry).

Each signature is checked against each trust root the policy accepts, in order, and reported
under the first one it verifies with. The subject verifies when at least `threshold` distinct
signers verified and every attestation the policy requires is met: one attestation of its
predicate type verified (against the requirement's own signers, if it names any) and
satisfies its conditions (`service.core.conditions`).

Signatures and attestations count separately, as cosign counts them: `threshold` counts the
signers of signatures (`.sig` layers, bundles with a message signature or cosign's own signing
statement); attestations (`.att` layers, other DSSE bundles) meet `attestations` requirements,
and count toward `threshold` only under `acceptAttestationsAsSignatures`.

When the transparency log could not be reached (`log_unreachable`), a check that failed only
for want of its evidence is marked `awaiting_log`; every other check still runs (without a
signing time, the chain is checked at both ends of the certificate's validity), so that a wrong
identity, key, digest, chain or signature is a final failure whatever the log would say, and
`ImageResult.awaiting_log` tells whether the log could still change the outcome.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from sigstore.errors import Error as SigstoreError
from sigstore.hashes import Hashed
from sigstore.models import Bundle
from sigstore_models.bundle.v1 import Bundle as BundleModel
from sigstore_models.common.v1 import HashAlgorithm
from sigstore_models.rekor.v1 import TransparencyLogEntry as TransparencyLogEntryModel

from service.core._util import (
    PublicKey,
    as_public_key,
    b64decode,
    from_unix,
    load_der_certificate,
    load_json,
    load_pem_certificates,
    mapping,
    rfc3339,
    sha256_hex,
)
from service.core.certs import CertificateDetails, verify_chain, verify_sct
from service.core.conditions import Budget
from service.core.errors import CheckError, CoreError, InputError
from service.core.inputs import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    InclusionProof,
    LogEntry,
    LogLookup,
    SetBundle,
    Signature,
    lookup_for,
)
from service.core.keys import describe_key, signature_valid
from service.core.policy import Policy, PolicyKey
from service.core.rekor import Material, match_body, verify_inclusion_proof, verify_set
from service.core.results import (
    AttestationMatch,
    AttestationResult,
    Check,
    Evidence,
    ImageResult,
    Kind,
    LogEvidence,
    Role,
    SignatureResult,
)
from service.core.timestamps import verify_timestamps
from service.core.trust import TrustRoot

SIMPLE_SIGNING_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
"""The predicate type of an image signature made by cosign v3 (a DSSE bundle referrer)."""
CLOCK_SKEW = timedelta(minutes=5)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_T = TypeVar("_T")


def verify_image(
    *,
    image_digest: str,
    signatures: Sequence[Signature],
    log_entries: Mapping[LogLookup, Sequence[LogEntry]],
    policy: Policy,
    trust: TrustRoot | Sequence[TrustRoot],
    now: datetime,
    log_unreachable: Collection[LogLookup] = (),
    log_lookups_off: bool = False,
) -> ImageResult:
    """Verify every signature of `image_digest`; the image verifies with `threshold` signers
    and every attestation the policy requires.

    `log_entries` holds what the orchestration fetched for `needed_log_lookups(signatures)`:
    every entry found (a search by hash finds one per signer of the same payload; empty where
    nothing was found); `log_unreachable` the lookups it could not make because the log was
    not reached (their checks are `awaiting_log`); `log_lookups_off` says no log is asked here
    at all (an air-gapped setup: only the evidence a signature carries counts, and its absence
    is final). `trust` is the trust root, or several, of which the policy's `trustRoots` names
    those accepted (a signature verifies when it verifies against one of them); `now` is the
    verification time.
    """
    if not _DIGEST.fullmatch(image_digest):
        raise InputError(f"image digest: found {image_digest!r:.80}, expected sha256:<64 hex>")
    roots = _roots(trust, policy)
    context = _Context(
        image_digest,
        log_entries,
        policy,
        roots[0],
        now,
        log_unreachable=frozenset(log_unreachable),
        log_lookups_off=log_lookups_off,
    )
    return _verdict(signatures, context, roots)


def verify_artifact(
    *,
    bundle: bytes,
    artifact_digest: str,
    policy: Policy,
    trust: TrustRoot | Sequence[TrustRoot],
    now: datetime,
    source: str = "bundle",
) -> ImageResult:
    """Verify one Sigstore bundle (v0.1 to v0.3) over an artifact known by its digest.

    What `cosign verify-blob --bundle` and `gh attestation verify --bundle` do: a message
    signature must be over `artifact_digest`; a DSSE statement must name it as a subject. The
    bundle is checked as a bundle attached to an image is, with checks named
    `artifact-digest` where an image's are `image-digest`. A malformed bundle is a failed
    `bundle` check, not an exception. `source` says where the bundle came from (a path).
    """
    if not _DIGEST.fullmatch(artifact_digest):
        raise InputError(
            f"artifact digest: found {artifact_digest!r:.80}, expected sha256:<64 hex>"
        )
    roots = _roots(trust, policy)
    context = _Context(artifact_digest, {}, policy, roots[0], now, subject="artifact")
    item = BundleSignature(bundle, "sha256:" + sha256_hex(bundle), source)
    # The one bundle given is what is verified, a DSSE statement as much as a signature (as
    # `cosign verify-blob-attestation` and `gh attestation verify` do).
    return _verdict((item,), context, roots, count_attestations=True)


def _roots(trust: TrustRoot | Sequence[TrustRoot], policy: Policy) -> tuple[TrustRoot, ...]:
    """The given roots the policy accepts (`trustRoots`), in the policy's order."""
    given = {root.name: root for root in ((trust,) if isinstance(trust, TrustRoot) else trust)}
    roots = tuple(given[name] for name in policy.trust_roots if name in given)
    if not roots:
        raise InputError(
            f"trust roots: found {', '.join(given) or 'none'}, expected one the policy accepts "
            f"({', '.join(policy.trust_roots)})"
        )
    return roots


def _verdict(
    signatures: Sequence[Signature],
    context: _Context,
    roots: tuple[TrustRoot, ...],
    *,
    count_attestations: bool = False,
) -> ImageResult:
    """The subject verifies when at least `threshold` distinct signers of what counts as a
    signature (attestations too, with `count_attestations` or where the policy says so)
    verified and every attestation requirement is met; whether log evidence that could not be
    fetched could still make it verify is `awaiting_log`."""
    policy = context.policy
    results = tuple(_against_roots(s, context, roots) for s in signatures)
    everything = count_attestations or policy.accept_attestations_as_signatures
    counted = [r for r in results if everything or r.role == "signature"]
    signers = tuple(dict.fromkeys(r.signer for r in counted if r.verified and r.signer))
    hopeful = {r.signer for r in counted if (r.verified or r.awaiting_log) and r.signer}
    attestations = _attestations(signatures, results, context, roots)
    reasons: list[str] = []
    if not counted:
        reasons.append(_no_signatures(len(results)))
    for r in results:
        reasons += [f"{r.kind} {r.digest}: {reason}" for reason in r.reasons]
    if counted and len(signers) < policy.threshold:
        reasons.append(
            f"threshold not met: found {len(signers)} distinct verified signer"
            f"{'' if len(signers) == 1 else 's'}, expected at least {policy.threshold}"
        )
    for a in attestations:
        reasons += a.reasons
    verified = (
        bool(counted)
        and len(signers) >= policy.threshold
        and all(a.satisfied for a in attestations)
    )
    possible = (
        bool(counted)
        and len(hopeful) >= policy.threshold
        and all(a.could_be_satisfied for a in attestations)
    )
    return ImageResult(
        verified=verified,
        signatures=results,
        signers=signers,
        reasons=() if verified else tuple(reasons),
        attestations=attestations,
        awaiting_log=possible and not verified,
    )


def _no_signatures(attestations: int) -> str:
    """Why nothing counted as a signature: none at all, or only attestations."""
    if not attestations:
        return "no signatures found"
    return (
        f"no signatures found: found {attestations} attestation"
        f"{'' if attestations == 1 else 's'}, which count as signatures only where the policy "
        "sets acceptAttestationsAsSignatures (as cosign verify-attestation does)"
    )


def _against_roots(
    signature: Signature, context: _Context, roots: tuple[TrustRoot, ...]
) -> SignatureResult:
    """The signature checked against each accepted trust root in turn: the first under which
    it verifies, else one under which only log evidence is missing (it may yet verify), else
    the one under which it got furthest (most checks passed: its reasons are the most
    telling)."""
    best: SignatureResult | None = None
    for root in roots:
        result = replace(
            _verify_signature(signature, replace(context, trust=root)), trust_root=root.name
        )
        if result.verified:
            return result
        if best is None or _rank(result) > _rank(best):
            best = result
    assert best is not None  # roots is never empty
    return best


def _identity_of(result: SignatureResult, policy: Policy) -> SignatureResult:
    """A keyless result under another policy's identities: of its checks only `identity`
    depends on them (the certificate's chain, SCT, log and signature do not), so only that
    check is run again. A result that never reached it is returned as it is (it failed)."""
    assert result.certificate is not None
    run = _Run([])
    _check_identity(result.certificate, policy, run)
    (identity,) = run.checks
    return replace(
        result, checks=tuple(identity if c.name == "identity" else c for c in result.checks)
    )


def _rank(result: SignatureResult) -> tuple[bool, int]:
    return result.awaiting_log, sum(c.passed for c in result.checks)


def _attestations(
    signatures: Sequence[Signature],
    results: tuple[SignatureResult, ...],
    context: _Context,
    roots: tuple[TrustRoot, ...],
) -> tuple[AttestationResult, ...]:
    """Each attestation requirement of the policy against the subject's DSSE signatures (cosign
    attestations and DSSE bundles): those of its predicate type, verified against its own
    signers (keyless: the identity check again; key-signed: verified again with its keys) or
    the policy's (as already checked), with its conditions."""
    requirements = context.policy.attestations
    if not requirements:
        return ()
    attested = [(s, r) for s, r in zip(signatures, results, strict=True) if r.statement]
    found_types = tuple(dict.fromkeys(r.predicate_type or "none" for _, r in attested))
    out: list[AttestationResult] = []
    budget = Budget()  # one for every condition and attestation of this verification
    for requirement in requirements:
        if requirement.own_signers:
            own = replace(context, policy=context.policy.signed_by(requirement))
            checked = [
                _identity_of(r, own.policy)
                if r.certificate is not None
                else _against_roots(s, own, roots)
                for s, r in attested
            ]
        else:
            checked = [r for _, r in attested]
        matches = tuple(
            AttestationMatch(
                r,
                tuple(
                    c.evaluate(r.statement or {}, r.certificate, budget)
                    for c in requirement.conditions
                ),
            )
            for r in checked
            if r.predicate_type == requirement.predicate_type
        )
        out.append(
            AttestationResult(requirement.label, requirement.predicate_type, matches, found_types)
        )
    return tuple(out)


@dataclass(frozen=True)
class _Context:
    """The arguments of one `verify_image` call, shared by every signature."""

    image_digest: str
    log_entries: Mapping[LogLookup, Sequence[LogEntry]]
    policy: Policy
    trust: TrustRoot
    now: datetime
    subject: str = "image"  # or "artifact": names the digest check
    log_unreachable: frozenset[LogLookup] = frozenset()
    log_lookups_off: bool = False

    @property
    def digest_check(self) -> str:
        return f"{self.subject}-digest"


@dataclass
class _Run:
    """The checks of one signature as they accumulate, and the log evidence found."""

    checks: list[Check]
    evidence: LogEvidence | None = None
    statement: dict[str, object] | None = None  # the in-toto statement, once parsed
    dsse: bool = False  # a DSSE envelope (an attestation unless it is cosign's signing one)

    def ok(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, True, detail))

    def fail(self, name: str, detail: str, *, awaiting_log: bool = False) -> None:
        self.checks.append(Check(name, False, detail, awaiting_log))

    def awaits_log(self, name: str) -> bool:
        """Whether the check `name` failed only for want of unreachable log evidence."""
        return any(c.name == name and c.awaiting_log for c in self.checks)

    @property
    def role(self) -> Role:
        """A DSSE statement is an attestation, unless it is cosign's own image signature."""
        if not self.dsse:
            return "signature"
        predicate = None if self.statement is None else self.statement.get("predicateType")
        return "signature" if predicate == COSIGN_SIGN_PREDICATE else "attestation"


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
    prehashed: bool = False  # `signed_bytes` is the sha256 of the artifact (hashedrekord)

    @property
    def payload_sha256(self) -> str:
        """The sha256 a log entry records for this signature: the artifact's, or the payload's."""
        return self.signed_bytes.hex() if self.prehashed else sha256_hex(self.payload)

    def verifies_with(self, key: PublicKey) -> bool:
        return signature_valid(key, self.signature, self.signed_bytes, prehashed=self.prehashed)


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
        envelope = mapping(load_json(layer.payload, "dsse envelope"), "dsse envelope")
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
    pae = _pae(payload_type, payload)
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
            kind,
            layer.source,
            layer.layer_digest,
            tuple(run.checks),
            signer,
            details,
            evidence,
            statement=run.statement,
            role="signature" if kind == "cosign-signature" else "attestation",
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
        signer = _verify_keyless(
            leaf, signed, context, run, lambda m: _log_evidence(layer, m, context, run)
        )
    else:
        signer = _verify_keyed(
            signed, context, run, lambda m: _log_evidence(layer, m, context, run)
        )
    evidence = run.evidence
    # (6): the payload is about this image.
    _check_payload(layer, signed.payload, context.image_digest, run)
    return result()


def _verify_keyless(
    leaf: x509.Certificate,
    signed: _Signed,
    context: _Context,
    run: _Run,
    log: _LogCheck,
    *,
    timestamps: Sequence[datetime] = (),
) -> str | None:
    """Checks (1) to (5) and (7) with the certificate; `log` runs (1) and (2), and
    `timestamps` are further verified signing times (from a timestamp authority)."""
    trust = context.trust
    try:
        leaf_key = as_public_key(leaf.public_key(), "certificate key")
    except InputError as exc:
        run.fail("signature", str(exc))
        return None
    material = Material(
        payload_sha256=signed.payload_sha256,
        signature=signed.signature,
        certificate=leaf,
        key=None,
        envelope=signed.envelope,
    )
    # (1) and (2): log evidence establishes the signing time; the entry is this signature.
    signed_at = log(material)
    times = list(dict.fromkeys([*([signed_at] if signed_at is not None else []), *timestamps]))
    # (3): the certificate was valid then and chains to a Fulcio CA valid then.
    issuer: x509.Certificate | None = None
    if not times:
        issuer = _chain_without_time(leaf, trust, run, awaiting=run.awaits_log("transparency-log"))
    else:
        before, after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        outside = [t for t in times if not before <= t <= after]
        if not outside:
            signed_text = ", ".join(rfc3339(t) for t in times)
            run.ok("certificate-validity", f"signed at {signed_text}, within validity")
        else:
            run.fail(
                "certificate-validity",
                f"signed at {rfc3339(outside[0])}, expected within the certificate's validity "
                f"{rfc3339(before)} to {rfc3339(after)}",
            )
        try:
            for when in times:
                ca, chain = verify_chain(leaf, trust, when if before <= when <= after else before)
            issuer = chain[0]
            run.ok("certificate-chain", f"chains to {ca.uri or ca.subject} ({ca.subject})")
        except CheckError as exc:
            run.fail("certificate-chain", str(exc))
    # (4): the embedded SCT; an instance without certificate transparency has none to check.
    if issuer is not None and not trust.ct_logs:
        run.ok("sct", f"not applicable: trust root {trust.name} has no ct log")
    elif issuer is not None:
        try:
            run.ok("sct", verify_sct(leaf, issuer, trust))
        except (CheckError, InputError) as exc:
            run.fail("sct", str(exc))
    # (5): the signature over the payload, with the certificate's key.
    if signed.verifies_with(leaf_key):
        run.ok("signature", f"verified with the certificate's {describe_key(leaf_key)} key")
    else:
        run.fail("signature", "does not verify with the certificate's key")
    # (7): identity policy.
    details = CertificateDetails.from_certificate(leaf)
    _check_identity(details, context.policy, run)
    issuer_claim = details.issuer or "no oidc issuer"
    return f"{details.subject} ({issuer_claim})"


def _chain_without_time(
    leaf: x509.Certificate, trust: TrustRoot, run: _Run, *, awaiting: bool
) -> x509.Certificate | None:
    """(3) without a verified signing time: the chain checked at either end of the
    certificate's validity, so that the other checks can still run and say what else is wrong.

    A chain that holds at neither end holds at no time within it (the trust root's CAs are
    valid for far longer than a Fulcio certificate's minutes): that failure is final. One that
    holds still lacks the time, which the log could give when it is `awaiting` (not reached).
    Returns the issuer, for the SCT check."""
    error: CheckError | None = None
    for when in (leaf.not_valid_before_utc, leaf.not_valid_after_utc):
        try:
            ca, chain = verify_chain(leaf, trust, when)
        except CheckError as exc:
            error = error or exc
            continue
        run.fail(
            "certificate-chain",
            "no verified signing time from the transparency log or a timestamp authority, "
            "so the short-lived certificate cannot be validated (it chains to "
            f"{ca.uri or ca.subject} within its validity"
            f"{'; the time awaits the log, which could not be reached' if awaiting else ''})",
            awaiting_log=awaiting,
        )
        return chain[0]
    assert error is not None
    run.fail("certificate-chain", str(error))
    return None


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


def _verify_keyed(signed: _Signed, context: _Context, run: _Run, log: _LogCheck) -> str | None:
    """Check (5) against the policy's keys, then (1) and (2) through `log` when required."""
    policy = context.policy
    # (5): the signature against each policy key.
    if not policy.keys:
        run.fail(
            "signature",
            "signature has no certificate, expected a keyless signature "
            "(the policy lists identities only)",
        )
        return None
    matched: PolicyKey | None = next((k for k in policy.keys if signed.verifies_with(k.key)), None)
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
            payload_sha256=signed.payload_sha256,
            signature=signed.signature,
            certificate=None,
            key=matched.key,
            envelope=signed.envelope,
        )
        log(material)
    if matched is None:
        return None
    return f"{matched.label} sha256:{matched.fingerprint}"


def _log_evidence(
    layer: CosignSignature | CosignAttestation, material: Material, context: _Context, run: _Run
) -> datetime | None:
    """Checks (1) and (2) for a cosign layer: the fetched entry and the SET annotation."""
    lookup = lookup_for(layer)
    fetched = _entry_for(context.log_entries.get(lookup, ()) if lookup else (), material)
    unreachable = lookup is not None and lookup in context.log_unreachable
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
    return _prove(fetched, promise, material, context, run, unreachable=unreachable)


def _prove(
    fetched: LogEntry | None,
    promise: SetBundle | None,
    material: Material,
    context: _Context,
    run: _Run,
    *,
    unreachable: bool = False,
) -> datetime | None:
    """Checks (1) and (2) on an entry with its proof and/or a SET; returns the integrated time
    when a SET over it verified. `unreachable`: the lookup that could have found the entry
    could not be made, so evidence that is only missing (not wrong) awaits the log."""
    trust, policy, now = context.trust, context.policy, context.now
    if context.log_lookups_off:
        nowhere = "rekor lookups are off here, so only evidence the signature carries counts"
    elif unreachable:
        nowhere = "the transparency log could not be reached"
    else:
        nowhere = ""
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
                run.fail(
                    "transparency-log",
                    "found only an inclusion promise (no inclusion proof could be obtained"
                    f"{': ' + nowhere if nowhere else ''}), expected an inclusion proof as the "
                    "policy requires",
                    awaiting_log=unreachable,
                )
                return None
            _verify_promise(promise, trust)
            detail = f"signed entry timestamp verified (log index {promise.log_index})"
            evidence, body, uuid = "inclusion-promise", promise.body, None
            signed_at = from_unix(promise.integrated_time)
            entry = None
        else:
            run.fail(
                "transparency-log",
                "found no transparency log evidence (no rekor bundle and no log entry"
                f"{': ' + nowhere if nowhere else ''}), expected an inclusion proof or promise",
                awaiting_log=unreachable,
            )
            return None
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
        doc = mapping(load_json(payload, "payload"), "payload")
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


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _check_statement(
    doc: dict[str, object], image_digest: str, run: _Run, check: str = "image-digest"
) -> None:
    run.statement = doc
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
                run.ok(check, f"in-toto subject names {image_digest}")
                return
    raise CheckError(f"in-toto subjects are {', '.join(found) or 'none'}, expected {image_digest}")


# -- Sigstore bundles ----------------------------------------------------------------------

_LogCheck = Callable[[Material], datetime | None]
"""Runs checks (1) and (2) for a signature's material; returns the verified signing time."""


class _IdentityLater:
    """A sigstore-python policy that accepts; our own identity check runs afterwards, so
    that mismatches are reported per constraint."""

    def verify(self, cert: x509.Certificate) -> None:
        return None


def _verify_bundle(item: BundleSignature, context: _Context) -> SignatureResult:
    """One Sigstore bundle, in these steps (each a check, as above):

    B1. `bundle`: the protobuf-specs JSON parses; a certificate bundle also holds
        sigstore-python's invariants (one log entry, with an inclusion proof and checkpoint).
    B2. A certificate bundle is verified by sigstore-python's `Verifier` (chain, SCT, log
        proof and promise, timestamps, signature, entry consistency), except two kinds it
        does not support, which take the keyless steps (1) to (5) above with their signed
        timestamps verified by `service.core.timestamps` (`timestamp`): intoto log entries,
        and bundles with no log entry (GitHub's private instance), whose signing time comes
        from the timestamps alone. A key-signed bundle takes step (5) against the policy's
        keys, then (1) and (2) on the bundle's Rekor v1 entry; a key has no validity window,
        so its timestamps are unused.
    B3. `image-digest` / `artifact-digest`: the message signature is over the subject's
        digest, or the DSSE statement names it as a subject.
    B4. `identity`, for certificates.
    """
    run = _Run([])
    details: CertificateDetails | None = None
    signer: str | None = None

    def result() -> SignatureResult:
        return SignatureResult(
            "sigstore-bundle",
            item.source,
            item.manifest_digest,
            tuple(run.checks),
            signer,
            details,
            run.evidence,
            statement=run.statement,
            role=run.role,
        )

    # (B1): parse; sigstore-python's `Bundle` refuses bundles without a certificate or a log
    # entry, which take our own steps.
    try:
        model = _bundle_model(item.bundle)
        run.dsse = model.dsse_envelope is not None
        material = model.verification_material
        keyed, logged = material.public_key is not None, bool(material.tlog_entries)
        # sigstore-python's invariants, on the model read above (defaults filled in).
        bundle = Bundle(model) if logged and not keyed else None
    except (SigstoreError, ValueError) as exc:
        run.fail("bundle", f"not a usable sigstore bundle: {exc}")
        return result()
    if keyed:
        signer = _verify_key_bundle(model, context, run)
        return result()
    if bundle is None:
        signer, details = _verify_timestamped_bundle(model, context, run)
        return result()
    details = CertificateDetails.from_certificate(bundle.signing_certificate)
    if bundle.log_entry._inner.kind_version.kind == "intoto":
        signer = _verify_intoto_bundle(bundle, context, run)
        return result()
    try:
        verifier = context.trust.sigstore_verifier
    except CoreError as exc:
        run.fail("bundle", str(exc))
        return result()
    # (B2): sigstore-python checks the chain, SCT, log proof and promise, timestamps, the
    # signature and the log entry's consistency.
    check = context.digest_check
    try:
        if bundle._dsse_envelope is not None:
            payload_type, payload = verifier.verify_dsse(bundle, _IdentityLater())
            run.ok("bundle", "dsse bundle verified by sigstore-python")
            # (B3): the statement is about this subject.
            _check_dsse_payload(payload_type, payload, context, run)
        else:
            digest = Hashed(
                algorithm=HashAlgorithm.SHA2_256,
                digest=bytes.fromhex(context.image_digest.removeprefix("sha256:")),
            )
            verifier.verify_artifact(digest, bundle, _IdentityLater())
            run.ok("bundle", "message-signature bundle verified by sigstore-python")
            # (B3): verify_artifact checked the signature over this digest (and messageDigest).
            run.ok(check, f"message signature is over {context.image_digest}")
    except (SigstoreError, ValueError) as exc:
        run.fail("bundle", f"sigstore-python: {exc}")
        return result()
    run.evidence = _bundle_evidence(bundle.log_entry._inner)
    # (B4): identity policy.
    _check_identity(details, context.policy, run)
    signer = f"{details.subject} ({details.issuer or 'no oidc issuer'})"
    return result()


def _bundle_evidence(entry: TransparencyLogEntryModel) -> LogEvidence:
    """What a bundle's log entry proved (sigstore-python verified its inclusion proof)."""
    body = entry.canonicalized_body
    v1 = bool(entry.integrated_time)  # Rekor v2 entries have none, nor a uuid
    return LogEvidence(
        uuid=hashlib.sha256(b"\x00" + body).hexdigest() if v1 else None,
        log_index=int(entry.log_index),
        integrated_time=int(entry.integrated_time) if entry.integrated_time else None,
        log_id=entry.log_id.key_id.hex(),
        evidence="inclusion-proof",
    )


def _check_dsse_payload(payload_type: str, payload: bytes, context: _Context, run: _Run) -> None:
    """(B3) for a DSSE bundle: an in-toto statement with the subject's digest as a subject."""
    check = context.digest_check
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        run.fail(check, f"dsse payloadType {payload_type!r:.80}, expected {IN_TOTO_PAYLOAD_TYPE}")
        return
    try:
        doc = mapping(load_json(payload, "statement"), "statement")
        _check_statement(doc, context.image_digest, run, check)
    except (ValueError, InputError) as exc:
        run.fail(check, f"statement is not a JSON object: {exc}")
    except CheckError as exc:
        run.fail(check, str(exc))


def _bundle_signed(model: BundleModel, context: _Context) -> _Signed:
    """What the bundle's signature covers: the DSSE PAE, or the subject's digest."""
    envelope = model.dsse_envelope
    if envelope is not None:
        if len(envelope.signatures) != 1:
            raise CheckError(
                f"dsse envelope has {len(envelope.signatures)} signatures, expected one"
            )
        payload = envelope.payload
        pae = _pae(envelope.payload_type, payload)
        return _Signed(envelope.signatures[0].sig, pae, payload, None)
    message = model.message_signature
    if message is None:
        raise CheckError("bundle has neither a message signature nor a dsse envelope")
    digest = bytes.fromhex(context.image_digest.removeprefix("sha256:"))
    return _Signed(message.signature, digest, b"", None, prehashed=True)


def _bundle_log_entry(entry: TransparencyLogEntryModel) -> tuple[LogEntry, SetBundle | None]:
    """A bundle's Rekor v1 entry as the core's `LogEntry`, and its SET if it has one."""
    if not entry.integrated_time:
        raise CheckError(
            f"log entry {entry.kind_version.kind}/{entry.kind_version.version} has no "
            "integrated time (rekor v2), which is not supported here: expected a rekor v1 entry"
        )
    log_id = entry.log_id.key_id.hex()
    body = entry.canonicalized_body
    raw_proof = entry.inclusion_proof
    proof = None
    if raw_proof is not None and raw_proof.checkpoint is not None:
        proof = InclusionProof(
            log_index=int(raw_proof.log_index),
            tree_size=int(raw_proof.tree_size),
            root_hash=raw_proof.root_hash,
            hashes=tuple(raw_proof.hashes),
            checkpoint=raw_proof.checkpoint.envelope,
        )
    promise = entry.inclusion_promise
    log_entry = LogEntry(
        uuid=hashlib.sha256(b"\x00" + body).hexdigest(),
        body=body,
        integrated_time=int(entry.integrated_time),
        log_id=log_id,
        log_index=int(entry.log_index),
        signed_entry_timestamp=None if promise is None else promise.signed_entry_timestamp,
        inclusion_proof=proof,
    )
    set_bundle = (
        None
        if promise is None
        else SetBundle(
            promise.signed_entry_timestamp,
            body,
            log_entry.integrated_time,
            log_entry.log_index,
            log_id,
        )
    )
    return log_entry, set_bundle


def _bundle_log_check(model: BundleModel, context: _Context, run: _Run) -> _LogCheck:
    """Checks (1) and (2) on the bundle's own log entry (a v0.2+ bundle needs its proof)."""

    def check(material: Material) -> datetime | None:
        entries = model.verification_material.tlog_entries
        try:
            if len(entries) != 1:
                raise CheckError(f"bundle has {len(entries)} log entries, expected one")
            entry, promise = _bundle_log_entry(entries[0])
            if (
                entry.inclusion_proof is None
                and model.media_type != Bundle.BundleType.BUNDLE_0_1.value
            ):
                raise CheckError(
                    "bundle has no inclusion proof with a checkpoint, expected one (v0.2+)"
                )
        except CheckError as exc:
            run.fail("transparency-log", str(exc))
            return None
        return _prove(entry, promise, material, context, run)

    return check


def _verify_key_bundle(model: BundleModel, context: _Context, run: _Run) -> str | None:
    """(B1) to (B3) for a bundle signed with a key (`cosign sign-blob --key`)."""
    try:
        version = Bundle.BundleType(model.media_type)
        signed = _bundle_signed(model, context)
    except (ValueError, CheckError) as exc:
        detail = str(exc) if isinstance(exc, CheckError) else f"media type {model.media_type}"
        run.fail("bundle", f"not a usable sigstore bundle: {detail}")
        return None
    run.ok("bundle", f"key-signed bundle ({version.value})")
    # (B2): the signature against the policy's keys, then the log entry.
    signer = _verify_keyed(signed, context, run, _bundle_log_check(model, context, run))
    _check_bundle_subject(model, signed, context, run)
    return signer


def _check_bundle_subject(
    model: BundleModel, signed: _Signed, context: _Context, run: _Run
) -> None:
    """(B3) for our own bundle steps: the DSSE statement names the subject, or the message
    signature (checked over the subject's digest) does not name another digest."""
    if model.dsse_envelope is not None:
        _check_dsse_payload(model.dsse_envelope.payload_type, signed.payload, context, run)
        return
    message = model.message_signature
    assert message is not None  # _bundle_signed refused a bundle without either
    named = message.message_digest
    if named is not None and named.digest != signed.signed_bytes:
        run.fail(
            context.digest_check,
            f"bundle messageDigest is sha256:{named.digest.hex()}, expected {context.image_digest}",
        )
    else:
        run.ok(context.digest_check, f"message signature is over {context.image_digest}")


def _bundle_model(raw: bytes) -> BundleModel:
    """The protobuf-specs model of a bundle, read as protobuf's JSON mapping reads it.

    Protobuf JSON leaves out a field that holds its default (proto3 implicit presence), and
    writes an int64 as a string or a number; sigstore_models requires the fields and the
    strings. So a bundle sigstore-js or protojson wrote for the first entry of a log has no
    `logIndex` and no inclusion proof `hashes`, and one from an instance without a log (GitHub's
    private one) no `tlogEntries`. The defaults the specs allow are filled in here
    (`_protobuf_defaults`); a field whose default is no valid value (`treeSize`, `rootHash`,
    `kindVersion`, `canonicalizedBody`, a certificate's bytes ...) is still refused as missing.
    """
    try:
        return BundleModel.from_json(raw)
    except ValueError:
        pass
    try:
        doc = load_json(raw, "bundle")
    except InputError as exc:
        raise ValueError(str(exc)) from None
    return BundleModel.from_json(json.dumps(_protobuf_defaults(doc)))


def _protobuf_defaults(doc: object) -> object:
    """`doc` with the proto3 defaults of these fields where they are absent or null (as
    protobuf JSON reads a null), and their int64s as strings; anything else as it was:

    - `verificationMaterial.tlogEntries` (repeated): `[]`, a bundle without log evidence;
    - `tlogEntries[].logIndex` (int64): `"0"`, the first entry of a log;
    - `tlogEntries[].inclusionProof.logIndex` (int64): `"0"`, and `.hashes` (repeated): `[]`,
      the proof of the first entry in a tree of size 1;
    - `verificationMaterial.publicKey.hint` (string): `""`, a key without a hint;
    - `timestampVerificationData.rfc3161Timestamps` (repeated): `[]` (the model defaults it).

    `integratedTime` may be absent already (Rekor v2: 0), and is only made a string here; the
    proof's `treeSize` too. Both field spellings count (`logIndex` and `log_index`, as protobuf
    JSON parsers accept), so a default never shadows a value given under the other name.
    """
    if not isinstance(doc, dict):
        return doc
    out = dict(doc)
    material = _field(out, "verificationMaterial")
    if not isinstance(material, dict):
        return out
    material = _set(out, "verificationMaterial", dict(material))
    entries = _field(material, "tlogEntries")
    if entries is None:
        _set(material, "tlogEntries", [])
    elif isinstance(entries, list):
        _set(material, "tlogEntries", [_entry_defaults(e) for e in entries])
    key = _field(material, "publicKey")
    if isinstance(key, dict) and _field(key, "hint") is None:
        _set(material, "publicKey", {**key, "hint": ""})
    return out


def _entry_defaults(entry: object) -> object:
    if not isinstance(entry, dict):
        return entry
    out = dict(entry)
    _int64(out, "logIndex", default="0")
    _int64(out, "integratedTime", default=None)
    proof = _field(out, "inclusionProof")
    if isinstance(proof, dict):
        proof = _set(out, "inclusionProof", dict(proof))
        _int64(proof, "logIndex", default="0")
        _int64(proof, "treeSize", default=None)
        if _field(proof, "hashes") is None:
            _set(proof, "hashes", [])
    return out


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _field(obj: dict[str, object], name: str) -> object:
    """The value of the field `name` under its JSON name or its proto name; None if neither."""
    return obj[name] if obj.get(name) is not None else obj.get(_snake(name))


def _set(obj: dict[str, Any], name: str, value: _T) -> _T:
    """Set the field under the spelling the object already uses (JSON name by default)."""
    obj[_snake(name) if _snake(name) in obj and name not in obj else name] = value
    return value


def _int64(obj: dict[str, object], name: str, *, default: str | None) -> None:
    """An int64 field as the string the model reads: a JSON integer as its digits, absent or
    null as `default` (left absent when None)."""
    value = _field(obj, name)
    if value is None:
        if default is not None:
            _set(obj, name, default)
    elif isinstance(value, int) and not isinstance(value, bool):
        _set(obj, name, str(value))


def _timestamps(
    model: BundleModel, signed: _Signed, context: _Context, run: _Run
) -> list[datetime] | None:
    """The `timestamp` check: the times of the bundle's signed timestamps that verify (an
    empty list when it has none); None when it has some and none verifies."""
    data = model.verification_material.timestamp_verification_data
    stamps = [t.signed_timestamp for t in data.rfc3161_timestamps] if data is not None else []
    if not stamps:
        return []
    try:
        times = verify_timestamps(signed.signature, stamps, context.trust)
    except CheckError as exc:
        run.fail("timestamp", str(exc))
        return None
    shown = ", ".join(rfc3339(t) for t in times)
    run.ok("timestamp", f"{len(times)} of {len(stamps)} signed timestamps verified ({shown})")
    return times


def _verify_timestamped_bundle(
    model: BundleModel, context: _Context, run: _Run
) -> tuple[str | None, CertificateDetails | None]:
    """A certificate bundle without a log entry: signing time from signed timestamps, then the
    keyless steps (1) to (5) and (7). The transparency log is waived only where it cannot
    exist (the trust root has none) or the policy does not require one."""
    material = model.verification_material
    try:
        chain = material.x509_certificate_chain
        raw = (
            material.certificate.raw_bytes
            if material.certificate is not None
            else chain.certificates[0].raw_bytes
            if chain is not None and chain.certificates
            else None
        )
        if raw is None:
            raise CheckError("bundle has no certificate and no public key, expected one")
        leaf = load_der_certificate(raw, "bundle certificate")
        signed = _bundle_signed(model, context)
    except (CheckError, InputError) as exc:
        run.fail("bundle", f"not a usable sigstore bundle: {exc}")
        return None, None
    run.ok("bundle", "certificate bundle without a log entry, verified step by step")
    times = _timestamps(model, signed, context, run)
    if times is None:
        return None, CertificateDetails.from_certificate(leaf)
    trust, policy = context.trust, context.policy

    def no_log(_: Material) -> datetime | None:
        if trust.rekor_logs and policy.transparency_log.required:
            run.fail(
                "transparency-log",
                "bundle has no log entry, expected one (the trust root has a transparency log "
                "and the policy requires it)",
            )
        elif not trust.rekor_logs:
            run.ok("transparency-log", f"not applicable: trust root {trust.name} has no log")
        else:
            run.ok("transparency-log", "not required by the policy")
        return None

    signer = _verify_keyless(leaf, signed, context, run, no_log, timestamps=times)
    _check_bundle_subject(model, signed, context, run)
    return signer, CertificateDetails.from_certificate(leaf)


def _verify_intoto_bundle(bundle: Bundle, context: _Context, run: _Run) -> str | None:
    """(B2) to (B4) for a certificate bundle whose log entry is intoto (0.0.1 or 0.0.2)."""
    model = bundle._inner
    try:
        signed = _bundle_signed(model, context)
        if model.dsse_envelope is None:
            raise CheckError("intoto log entry for a message signature, expected a dsse envelope")
    except CheckError as exc:
        run.fail("bundle", f"not a usable sigstore bundle: {exc}")
        return None
    run.ok("bundle", "dsse bundle with an intoto log entry, verified step by step")
    times = _timestamps(model, signed, context, run)
    if times is None:
        return None
    signer = _verify_keyless(
        bundle.signing_certificate,
        signed,
        context,
        run,
        _bundle_log_check(model, context, run),
        timestamps=times,
    )
    _check_dsse_payload(model.dsse_envelope.payload_type, signed.payload, context, run)
    return signer
