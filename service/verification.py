"""`VerificationService`: the orchestration of one verification, and nothing else.

1. verdict cache hit? → the cached signed verdict
2. registry: resolve tag → digest, discover signatures
3. tlog: complete each signature's log evidence (Rekor lookups, cached)
4. core: verify every signature against trust root + policy (pure)
5. verdicts: build and sign the verdict
6. cache the verdict

A verification failure is a normal, signed, cacheable verdict. An operational failure (registry
or Rekor unreachable) raises `UpstreamError` and is never signed or cached, but a Rekor outage
raises only where log evidence alone decides: when the core says the outcome awaits the log
(`ImageResult.awaiting_log`). A pass that a verified SET carries, and a failure that no log
evidence could change (a wrong identity, key, digest, chain or signature), are correct verdicts
that say Rekor was not reached (`degraded`, `rekor.status`). With no Rekor at all (lookups off)
only the evidence signatures carry counts.

Cached verdicts are read back only from values the cache authenticated (`service.cache`), under
a key that holds everything the verdict depends on, so a verdict is served only to the request
it answers and only signed with this service's key.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from service import core, verdicts
from service.cache import Cache, SingleFlight
from service.keys import SigningKey
from service.outbound import DeadlineExceeded
from service.registry import (
    Discovery,
    ImageReference,
    Manifest,
    RegistryClient,
    RegistryError,
    ResolvedImage,
    discover,
    verify_digest,
)
from service.telemetry import Result, Telemetry, verdict_reason
from service.tlog import RekorClient, TlogError, TlogTimeout, TlogUnavailable

if TYPE_CHECKING:
    from service.policies import Mode

log = logging.getLogger(__name__)

VERSION = importlib.metadata.version("sigverify")
MANIFEST_TTL = 3600.0  # content-addressed, but served by whoever runs the registry: not for long
INLINE = "inline"  # the policy label of a verification under a request's own policy
DEGRADED_TTL = 30.0  # seconds a verdict given during a Rekor outage stays cached
VERDICT_FORMAT = "2"  # in the cache key: a rolling upgrade never reads another version's verdict
# What a verdict lists of an index: its registry chose how many platforms and what they say.
MAX_PLATFORMS = 32  # listed; past that they are counted
MAX_PLATFORM_KINDS = 16  # os/architecture pairs counted by name in the summary
MAX_PLATFORM_CHARS = 128  # per listed value
PLATFORM_FIELDS = ("os", "architecture", "variant", "os.version", "digest", "mediaType")
_P = ParamSpec("_P")


class UpstreamError(Exception):
    """Rekor could not be reached and the verdict would depend on it."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True)
class _Under:
    """What a verification is asked under: the policy, its name (signed into the verdict), and
    the trust roots it accepts, read once (the default root may be refreshed meanwhile)."""

    policy: core.Policy
    name: str | None
    roots: tuple[core.TrustRoot, ...]

    @property
    def trust_digest(self) -> str:
        return _trust_digest(self.roots)


@dataclass(frozen=True)
class Verification:
    """A verdict (JSON-ready, signed) and whether it came from the cache."""

    verdict: dict[str, Any]
    cached: bool


def _observed(
    method: Callable[Concatenate[VerificationService, _P], Verification],
) -> Callable[Concatenate[VerificationService, _P], Verification]:
    """A verification in a `sigverify.verify` span, its outcome counted by result and reason,
    and its time by policy, mode and outcome (the policy's name is the caller's `policy_name`,
    which is a policy file's name or None, never a string from a request: `inline`)."""

    @functools.wraps(method)
    def observed(self: VerificationService, /, *args: _P.args, **kwargs: _P.kwargs) -> Verification:
        telemetry = self._telemetry
        policy = str(kwargs.get("policy_name") or INLINE)
        mode = str(kwargs.get("mode", "enforce"))
        started = time.perf_counter()
        with telemetry.span("sigverify.verify") as span:
            try:
                found = method(self, *args, **kwargs)
            except Exception as exc:
                reason = _error_reason(exc)
                if isinstance(exc, RegistryError):
                    telemetry.upstream_error("registry", exc.reason)
                telemetry.verification("error", reason)
                telemetry.verification_time(policy, mode, "error", time.perf_counter() - started)
                span.set_attribute("sigverify.reason", reason)
                log.info("verification error: %s", reason)
                raise
            verdict = found.verdict
            verified = verdict.get("verified") is True
            reason = verdict_reason(verdict)
            outcome: Result = "verified" if verified else "failed"
            telemetry.verification(outcome, reason)
            telemetry.verification_time(policy, mode, outcome, time.perf_counter() - started)
            # An image's verdict names it in `image`, an artifact's in `artifact`.
            image = verdict.get("image") or {}
            subject = image.get("reference") or (verdict.get("artifact") or {}).get("digest")
            digest = image.get("digest") or (verdict.get("artifact") or {}).get("digest")
            span.set_attributes(
                {
                    "sigverify.subject": str(subject),
                    "sigverify.digest": str(digest),
                    "sigverify.verified": verified,
                    "sigverify.reason": reason,
                    "sigverify.cached": found.cached,
                }
            )
            log.info(
                "verification %s: %s (%s; reason %s, cached %s)",
                "passed" if verified else "failed",
                subject,
                digest,
                reason,
                found.cached,
            )
            return found

    return observed


def _error_reason(exc: Exception) -> str:
    """The `reason` label of a verification that ended in an operational error."""
    if isinstance(exc, RegistryError):
        return f"registry-{exc.reason}"
    if isinstance(exc, UpstreamError):
        return "rekor-timeout" if exc.timeout else "rekor-unavailable"
    if isinstance(exc, DeadlineExceeded):
        return "deadline"
    return "internal"


class VerificationService:
    """Verifies images: registry, log evidence, pure core, signed verdict, cache.

    Each step is a span and a step-duration sample in `telemetry` (see `service.telemetry`).
    """

    def __init__(
        self,
        *,
        registry: RegistryClient,
        rekor: RekorClient | None,
        cache: Cache,
        trust: Callable[[], core.TrustRoot],
        signing_key: SigningKey,
        verdict_ttl: float,
        manifest_ttl: float = MANIFEST_TTL,
        max_search_entries: int = 20,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        telemetry: Telemetry | None = None,
        more_trust: Sequence[core.TrustRoot] = (),
    ) -> None:
        """`trust()` is the default trust root now (it is refreshed in the background);
        `more_trust` the others a policy may name."""
        self._registry = registry
        self._rekor = rekor
        self._cache = cache
        self._default_trust = trust
        self._trust_roots = {root.name: root for root in more_trust}
        self._key = signing_key
        self._verdict_ttl = verdict_ttl
        self._manifest_ttl = manifest_ttl
        self._max_search_entries = max_search_entries
        self._clock = clock
        self._flight = SingleFlight()
        self._telemetry = telemetry or Telemetry()

    @property
    def trust_root_names(self) -> tuple[str, ...]:
        """The names policies may list in `trustRoots`, the default one first."""
        return (core.DEFAULT_TRUST_ROOT, *self._trust_roots)

    def _roots(self, policy: core.Policy) -> tuple[core.TrustRoot, ...]:
        """The trust roots `policy` accepts (its names were checked when it was parsed)."""
        roots = {**self._trust_roots, core.DEFAULT_TRUST_ROOT: self._default_trust()}
        return tuple(roots[name] for name in policy.trust_roots)

    @_observed
    def verify(
        self,
        reference: ImageReference,
        policy: core.Policy,
        *,
        policy_name: str | None = None,
        mode: Mode = "enforce",
    ) -> Verification:
        """Verify one image against `policy` (named `policy_name` in the signed verdict; `mode`
        only labels the metrics: what a failure does is the caller's business).

        Registry errors propagate as `RegistryError`, Rekor outages as `UpstreamError`.
        """
        # (2): tags move, so the digest is resolved on every request; everything after is keyed
        # by content.
        resolved = self._telemetry.timed("registry.resolve", lambda: self._resolve(reference))
        # The roots are read once: the key, the core and the verdict must name the same ones.
        under = _Under(policy, policy_name, self._roots(policy))
        key = self._verdict_key(resolved, under)
        verdict = None
        if self._verdict_ttl > 0:
            raw = self._telemetry.timed("verdict_cache.get", lambda: self._cache.get(key))
            verdict = None if raw is None else self._readable(raw, key)
        cached = verdict is not None
        if verdict is None:
            # (1) missed: identical concurrent requests do the work once.
            raw = self._flight.do(key, lambda: self._verify_resolved(resolved, under, key))
            assert raw is not None
            verdict = json.loads(raw)
        # The signed part names the image by repository and digest only; how this request
        # named it (tag or digest) is filled in per request, so a cached verdict serves any tag.
        verdict["image"] = _image(resolved)
        return Verification(verdict, cached=cached)

    @_observed
    def verify_artifact(
        self,
        bundle: bytes,
        artifact_digest: str,
        policy: core.Policy,
        *,
        policy_name: str | None,
        mode: Mode = "enforce",
    ) -> Verification:
        """Verify one Sigstore bundle over an artifact's digest, as `cosign verify-blob` and
        `gh attestation verify` do: no registry and no Rekor lookup (a bundle carries its own
        evidence), so no cache either; the verdict is signed like an image's.

        The statement's subject is the artifact, named by its digest (`sha256:<hex>`), the
        only name the service knows it by; `resourceUri` is that digest too.
        """
        now = self._clock()
        under = _Under(policy, policy_name, self._roots(policy))
        result = core.verify_artifact(
            bundle=bundle,
            artifact_digest=artifact_digest,
            policy=policy,
            trust=under.roots,
            now=now,
            source="request",
        )
        subject = verdicts.VerdictSubject(name=artifact_digest, digest=artifact_digest)
        signed = self._signed(subject, under, result, now, resource_uri=artifact_digest)
        verdict = {"verified": result.verified, "artifact": {"digest": artifact_digest}, **signed}
        return Verification(verdict, cached=False)

    def _readable(self, raw: bytes, key: str) -> dict[str, Any] | None:
        """A cached verdict, or None (a miss) when it is not one this service signed.

        The cache authenticated the value and its key; what is left to check is that it is a
        verdict of this version signed with this service's key (a pod of an older version, or
        one whose retired key still shares the namespace, is read as a miss and overwritten).
        """
        try:
            verdict = json.loads(raw)
            signatures = verdict["signedVerdict"]["signatures"]
            ours = isinstance(verdict, dict) and signatures[0]["keyid"] == self._key.key_id
        except (ValueError, KeyError, IndexError, TypeError):
            ours = False
        if not ours:
            log.warning("cached verdict under %s is not signed with this key: recomputing", key)
            return None
        assert isinstance(verdict, dict)
        return verdict

    def _verify_resolved(self, resolved: ResolvedImage, under: _Under, key: str) -> bytes:
        """Steps (2) to (6) for a resolved image: the verdict as JSON, cached (briefly when
        Rekor was not reached)."""
        discovery = self._telemetry.timed(
            "registry.discover", lambda: discover(self._registry, resolved)
        )
        signatures = _core_inputs(discovery)
        policy = under.policy
        # (3): complete the log evidence, unless lookups are off here.
        lookups = (
            []
            if self._rekor is None
            else core.needed_log_lookups(signatures, log_required=policy.transparency_log.required)
        )
        entries, unreachable, outage = self._log_entries(lookups)
        # (4): the pure core decides.
        now = self._clock()
        with self._telemetry.step("core.verify"):
            result = core.verify_image(
                image_digest=resolved.digest,
                signatures=signatures,
                log_entries=entries,
                policy=policy,
                trust=under.roots,
                now=now,
                log_unreachable=unreachable,
                log_lookups_off=self._rekor is None,
            )
        if outage is not None and result.awaiting_log:
            # Only log evidence could decide, and the log is not there: an error, not a verdict.
            raise outage
        # (5): build and sign.
        with self._telemetry.step("verdict.sign"):
            raw = json.dumps(
                self._verdict(resolved, under, result, now, rekor=self._rekor_status(outage))
            ).encode()
        # (6): cache; a verdict given while Rekor was not reached is correct but re-checked soon.
        if self._verdict_ttl > 0:
            ttl = self._verdict_ttl if outage is None else min(self._verdict_ttl, DEGRADED_TTL)
            self._telemetry.timed("verdict_cache.set", lambda: self._cache.set(key, raw, ttl))
        return raw

    def _resolve(self, reference: ImageReference) -> ResolvedImage:
        """`reference` resolved; a digest reference's manifest may come from the cache.

        Manifests are content-addressed, so a cached one is as good as a fetched one once its
        bytes hash to the digest again (the cache is not trusted). Tags are always asked.
        """
        key = f"manifest:{reference.registry}/{reference.repository}@{reference.digest}"
        if reference.digest is not None:
            raw = self._cache.get(key)
            if raw is not None:
                media_type, _, data = raw.partition(b"\n")
                try:
                    verify_digest(data, reference.digest, f"cached manifest {reference.digest}")
                    manifest = Manifest.parse(data, reference.digest, media_type.decode() or None)
                    return ResolvedImage.of(reference, manifest)
                except (RegistryError, UnicodeDecodeError) as exc:
                    log.warning("cached manifest refused, fetching it again: %s", exc)
        resolved = self._registry.resolve(reference)
        if resolved.manifest is not None:
            digest_key = f"manifest:{reference.registry}/{reference.repository}@{resolved.digest}"
            value = (resolved.media_type or "").encode() + b"\n" + resolved.manifest.data
            self._cache.set(digest_key, value, self._manifest_ttl)
        return resolved

    def _verdict_key(self, resolved: ResolvedImage, under: _Under) -> str:
        ref = resolved.reference
        # The name is signed into the verdict, so it is part of the key.
        return (
            f"verdict:v{VERDICT_FORMAT}:{ref.registry}/{ref.repository}@{resolved.digest}"
            f":{under.policy.digest}:{under.trust_digest}:{under.name or ''}"
        )

    def _rekor_status(self, outage: UpstreamError | None) -> dict[str, Any]:
        """The verdict's `rekor`: whether the log was asked for what it was needed for."""
        if self._rekor is None:
            return {
                "status": "off",
                "detail": "rekor lookups are off here: only log evidence signatures carry counts",
            }
        if outage is not None:
            return {"status": "unreachable", "detail": str(outage)}
        return {"status": "ok", "detail": None}

    def _log_entries(
        self, lookups: list[core.LogLookup]
    ) -> tuple[
        dict[core.LogLookup, tuple[core.LogEntry, ...]],
        set[core.LogLookup],
        UpstreamError | None,
    ]:
        """Fetch each lookup: the entries found, the lookups the log could not be asked for,
        and the outage that kept it (an unusable answer is no evidence, not an outage)."""
        entries: dict[core.LogLookup, tuple[core.LogEntry, ...]] = {}
        unreachable: set[core.LogLookup] = set()
        outage: UpstreamError | None = None
        for lookup in lookups:
            try:
                entries[lookup] = self._telemetry.timed(
                    "rekor.lookup", functools.partial(self._fetch, lookup), {"rekor.by": lookup.by}
                )
            except TlogUnavailable as exc:
                self._telemetry.upstream_error("rekor", exc.reason)
                log.warning("rekor unavailable for %s=%s: %s", lookup.by, lookup.value, exc)
                entries[lookup] = ()
                unreachable.add(lookup)
                outage = UpstreamError(
                    f"rekor unavailable: {exc}", timeout=isinstance(exc, TlogTimeout)
                )
            except (TlogError, core.CoreError) as exc:
                # A malformed answer is evidence we cannot use; the core then fails closed.
                reason = exc.reason if isinstance(exc, TlogError) else "unusable-entry"
                self._telemetry.upstream_error("rekor", reason)
                log.warning("rekor answer unusable for %s=%s: %s", lookup.by, lookup.value, exc)
                entries[lookup] = ()
        self._telemetry.refresh_breakers()
        return entries, unreachable, outage

    def _fetch(self, lookup: core.LogLookup) -> tuple[core.LogEntry, ...]:
        """Rekor's entries for one lookup; a hash search may find one per signer."""
        if self._rekor is None:
            return ()
        raws: list[Mapping[str, Any] | None]
        if lookup.by == "logIndex":
            raws = [self._rekor.entry_by_log_index(int(lookup.value))]
        elif lookup.by == "uuid":
            raws = [self._rekor.entry_by_uuid(lookup.value)]
        else:
            uuids = self._rekor.search_by_hash(lookup.value)[: self._max_search_entries]
            raws = list(self._rekor.entries_by_uuids(uuids).values()) if uuids else []
        return tuple(core.LogEntry.from_rekor_response(raw) for raw in raws if raw is not None)

    def _verdict(
        self,
        resolved: ResolvedImage,
        under: _Under,
        result: core.ImageResult,
        now: datetime,
        *,
        rekor: dict[str, Any],
    ) -> dict[str, Any]:
        ref = resolved.reference
        subject = verdicts.VerdictSubject(
            name=f"{ref.registry}/{ref.repository}", digest=resolved.digest
        )
        signed = self._signed(subject, under, result, now)
        degraded = rekor["status"] == "unreachable"
        reasons = _reasons(resolved, signed["reasons"])
        if degraded and reasons:
            reasons.append(
                f"the transparency log was not reached ({rekor['detail']}); this failure "
                "does not depend on it"
            )
        return {
            "verified": result.verified,
            "image": _image(resolved),
            **signed,
            "reasons": reasons,
            "degraded": degraded,
            "rekor": rekor,
        }

    def _signed(
        self,
        subject: verdicts.VerdictSubject,
        under: _Under,
        result: core.ImageResult,
        now: datetime,
        *,
        resource_uri: str | None = None,
    ) -> dict[str, Any]:
        """What every verdict carries, images and artifacts alike, with the DSSE envelope over
        the statement about `subject`."""
        body = result.to_dict()
        policy = under.policy
        statement = verdicts.statement(
            subject=subject,
            verified=result.verified,
            policy_name=under.name,
            policy_digest=policy.digest,
            inputs=[s["digest"] for s in body["signatures"] if s.get("verified")],
            verified_at=now,
            version=VERSION,
            resource_uri=resource_uri,
        )
        return {
            "policy": {"digest": policy.digest, "name": under.name},
            "trustRoot": {
                "digest": under.trust_digest,
                "names": list(policy.trust_roots),
                "sources": {root.name: root.source for root in under.roots},
            },
            "signers": body["signers"],
            "signatures": body["signatures"],
            "attestations": body["attestations"],
            "reasons": body["reasons"],
            "verifiedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "signedVerdict": verdicts.sign(statement, self._key),
        }


def _trust_digest(roots: Sequence[core.TrustRoot]) -> str:
    """One digest for the accepted roots: the root's own when there is one."""
    if len(roots) == 1:
        return roots[0].digest
    joined = ",".join(f"{r.name}={r.digest}" for r in roots)
    return hashlib.sha256(joined.encode()).hexdigest()


def _image(resolved: ResolvedImage) -> dict[str, Any]:
    """The verdict's `image`: what was asked, and the digest and manifest it resolved to."""
    ref = resolved.reference
    return {
        "reference": ref.canonical,
        "registry": ref.registry,
        "repository": ref.repository,
        "tag": ref.tag,
        "digest": resolved.digest,
        "resolvedFromTag": ref.digest is None,
        "mediaType": resolved.media_type,
        "manifestFound": resolved.manifest is not None,
        **_platforms(resolved.platforms),
    }


def _platforms(platforms: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """An index's platforms as a verdict lists them: the first `MAX_PLATFORMS`, each with its
    known fields clipped; past that a summary counts them all by os/architecture (the most
    common `MAX_PLATFORM_KINDS` by name), so an index of any size gives a small verdict."""
    listed = [
        {k: p[k][:MAX_PLATFORM_CHARS] for k in PLATFORM_FIELDS if k in p}
        for p in platforms[:MAX_PLATFORMS]
    ]
    out: dict[str, Any] = {"platforms": listed, "platformCount": len(platforms)}
    if len(platforms) > MAX_PLATFORMS:
        kinds = Counter(
            f"{p.get('os', '?')}/{p.get('architecture', '?')}"[:MAX_PLATFORM_CHARS]
            for p in platforms
        )
        named = dict(kinds.most_common(MAX_PLATFORM_KINDS))
        out["platformSummary"] = {
            "listed": len(listed),
            "byPlatform": named,
            "otherPlatforms": len(platforms) - sum(named.values()),
        }
    return out


def _reasons(resolved: ResolvedImage, reasons: list[str]) -> list[str]:
    """The core's reasons, with the likeliest cause first when the image itself is absent."""
    if resolved.manifest is None and reasons:
        ref = resolved.reference
        return [
            f"the registry holds no manifest {resolved.digest} in {ref.registry}/{ref.repository}"
            " (is the reference right?)",
            *reasons,
        ]
    return reasons


def _core_inputs(
    discovery: Discovery,
) -> list[core.CosignSignature | core.CosignAttestation | core.BundleSignature]:
    """Registry artifacts → the core's input types, layer by layer."""
    out: list[core.CosignSignature | core.CosignAttestation | core.BundleSignature] = []
    for artifact in discovery.artifacts:
        for layer in artifact.layers:
            if artifact.kind in ("cosign-signature", "cosign-attestation"):
                kind = (
                    core.CosignSignature
                    if artifact.kind == "cosign-signature"
                    else core.CosignAttestation
                )
                out.append(
                    kind(
                        payload=layer.data,
                        annotations=layer.annotations,
                        media_type=layer.media_type,
                        layer_digest=layer.digest,
                        source=artifact.source,
                    )
                )
            else:
                out.append(
                    core.BundleSignature(
                        bundle=layer.data,
                        manifest_digest=artifact.manifest_digest,
                        source=artifact.source,
                    )
                )
    return out
