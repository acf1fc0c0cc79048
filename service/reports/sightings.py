"""A sighting: one verification of one image under a named policy, as a report keeps it.

`Outcome.of_verdict` is the one place that reads a verdict (a JSON dict today) for reports: when
verdicts become typed, only it changes. Everything a sighting holds that came from a caller, a
registry or a signer (references, namespaces, workload names, reasons) is clipped here, so a
sighting has a bounded size whatever the request said.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from service.policies import Mode
from service.reports.fixes import (
    BY_NAME,
    OTHER,
    UNVERIFIABLE,
    FailedCheck,
    Finding,
    Fix,
    classify,
)

Result = Literal["verified", "failed", "unverifiable"]
Source = Literal["verify", "batch", "admission"]

MAX_REFERENCE = 512
MAX_NAMESPACE = 63  # a DNS label
MAX_WORKLOAD = 320  # Kind/name: a name is at most 253
MAX_REASON = 300
MAX_REASONS = 3
MAX_CHECK = 64
FORMAT = 1
_NO_SIGNATURES = "no signatures found"
_THRESHOLD = "threshold not met"


def clip(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True)
class Outcome:
    """What one verification decided, in a report's terms.

    `digest` is the digest judged (None when the reference could not be resolved); `check` the
    first check that failed (or `no-signatures`, `attestation`, `threshold`), or for an image
    that could not be verified the kind of trouble; `reasons` the verdict's first reasons, or
    fixed words for trouble (never what an upstream said)."""

    result: Result
    digest: str | None
    check: str | None
    reasons: tuple[str, ...]
    fix: Fix | None
    policy_digest: str | None

    @property
    def denied(self) -> bool:
        """Whether an enforcing policy denies this (what audit mode reports as would-be)."""
        return self.result != "verified"

    @classmethod
    def of_verdict(cls, verdict: Mapping[str, Any]) -> Outcome:
        """The outcome a verdict (as `POST /v1/verify` answers it) records."""
        image = _mapping(verdict.get("image"))
        policy = _mapping(verdict.get("policy"))
        digest = _text(image.get("digest"))
        policy_digest = _text(policy.get("digest"))
        if verdict.get("verified") is True:
            return cls("verified", digest, None, (), None, policy_digest)
        reasons = tuple(clip(str(r), MAX_REASON) for r in _list(verdict.get("reasons")))
        finding, check = _finding(verdict, reasons)
        return cls(
            "failed",
            digest,
            check,
            reasons[:MAX_REASONS] or ("not verified",),
            classify(finding),
            policy_digest,
        )

    @classmethod
    def unverifiable(cls, kind: str, said: str, policy_digest: str | None) -> Outcome:
        """An image that could not be verified: `kind` of trouble, `said` in fixed words."""
        return cls(
            "unverifiable",
            None,
            clip(kind, MAX_CHECK),
            (clip(said, MAX_REASON),),
            UNVERIFIABLE,
            policy_digest,
        )


def _finding(verdict: Mapping[str, Any], reasons: tuple[str, ...]) -> tuple[Finding, str]:
    """What failed, for `classify`, and the check to name (as the metrics' reason does)."""
    signatures = [_mapping(s) for s in _list(verdict.get("signatures"))]
    attestations = [s for s in signatures if s.get("role") == "attestation"]
    no_signatures = any(r.startswith(_NO_SIGNATURES) for r in reasons)
    # Attestations count as signatures where the policy lets them: then none has that role.
    counted = [s for s in signatures if s.get("role") != "attestation"] or signatures
    failed: list[FailedCheck] = []
    if not no_signatures:
        for signature in counted:
            if signature.get("verified") is True:
                continue
            checks = map(_mapping, _list(signature.get("checks")))
            check = next((c for c in checks if c.get("passed") is False), None)
            if check is not None:
                name = clip(str(check.get("name", "")), MAX_CHECK)
                failed.append(FailedCheck(name, str(check.get("detail", ""))))
    unmet = any(_mapping(a).get("satisfied") is False for a in _list(verdict.get("attestations")))
    threshold = any(r.startswith(_THRESHOLD) for r in reasons)
    finding = Finding(
        no_signatures=no_signatures,
        attestations_found=len(attestations),
        failed=tuple(failed),
        attestations_unmet=unmet,
        threshold_unmet=threshold,
    )
    if no_signatures:
        check_name = "no-signatures"
    elif failed:
        check_name = failed[0].name
    elif unmet:
        check_name = "attestation"
    elif threshold:
        check_name = "threshold"
    else:
        check_name = "policy"
    return finding, check_name


@dataclass(frozen=True)
class Sighting:
    """One verification of an image under a named policy: when, how it was named, where from
    (and for admission, in which namespace and workload), and its outcome.

    `id` is random: it tells a second sighting from a copy of the first (a Redis writer could
    duplicate a sealed record, which would otherwise count twice)."""

    at: float  # seconds since the epoch
    reference: str  # as the caller wrote it
    source: Source
    mode: Mode
    outcome: Outcome
    namespace: str | None = None
    workload: str | None = None
    id: str = ""

    @classmethod
    def of(
        cls,
        *,
        at: float,
        reference: str,
        source: Source,
        mode: Mode,
        outcome: Outcome,
        namespace: str | None = None,
        workload: str | None = None,
    ) -> Sighting:
        """A new sighting, with every caller-given text clipped and a fresh id."""
        return cls(
            at=at,
            reference=clip(reference, MAX_REFERENCE),
            source=source,
            mode=mode,
            outcome=outcome,
            namespace=None if namespace is None else clip(namespace, MAX_NAMESPACE),
            workload=None if workload is None else clip(workload, MAX_WORKLOAD),
            id=secrets.token_hex(8),
        )

    def to_json(self) -> bytes:
        o = self.outcome
        record = {
            "v": FORMAT,
            "id": self.id,
            "at": round(self.at, 3),
            "ref": self.reference,
            "src": self.source,
            "mode": self.mode,
            "ns": self.namespace,
            "wl": self.workload,
            "res": o.result,
            "digest": o.digest,
            "check": o.check,
            "reasons": list(o.reasons),
            "fix": None if o.fix is None else o.fix.name,
            "pd": o.policy_digest,
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sighting | None:
        """A sighting from its record, or None for one this version does not read."""
        try:
            r = json.loads(data)
            if not isinstance(r, dict) or r.get("v") != FORMAT:
                return None
            result, source, mode = r["res"], r["src"], r["mode"]
            if (
                result not in get_args(Result)
                or source not in get_args(Source)
                or mode not in get_args(Mode)
            ):
                return None
            fix = None if r["fix"] is None else BY_NAME.get(str(r["fix"]), OTHER)
            outcome = Outcome(
                result=result,
                digest=_text(r["digest"]),
                check=_text(r["check"]),
                reasons=tuple(str(x) for x in _list(r["reasons"]))[:MAX_REASONS],
                fix=fix,
                policy_digest=_text(r["pd"]),
            )
            return cls(
                at=float(r["at"]),
                reference=str(r["ref"]),
                source=source,
                mode=mode,
                outcome=outcome,
                namespace=_text(r["ns"]),
                workload=_text(r["wl"]),
                id=str(r["id"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
