"""A policy's report: its sightings in the window, aggregated per image digest (pure).

Each image is judged by its latest sighting: a digest that failed and later verified (it was
signed meanwhile, or the policy was fixed) is passing. An image that could not even be resolved
(its registry was down) is listed by reference until a later sighting of that reference
resolved it, which supersedes it. Names per image (references, namespaces, workloads) and images
per report are capped; what is left out is counted.

Ready to enforce (`READY_RULE`): at least one image was seen in the window, and none of the
images seen would be denied, each judged by its latest verification.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.policies import Mode
from service.reports.fixes import FIXES, Fix
from service.reports.sightings import Sighting, Source

READY_RULE = (
    "Ready to enforce means: at least one image was seen under this policy in the window, and "
    "none of the images seen would be denied, each judged by its latest verification."
)
# A sighting a little in the future (another pod's clock) still counts.
CLOCK_SKEW = 300.0


@dataclass(frozen=True)
class ReportPolicy:
    """The policy a report is about, as it is now."""

    name: str
    tenant: str
    mode: Mode
    digest: str


@dataclass(frozen=True)
class Limits:
    """How much one report shows: images, and names of each kind per image."""

    max_images: int
    max_names: int


@dataclass(frozen=True)
class Names:
    """Names of one kind an image was seen under, the most recent first, and how many more."""

    shown: tuple[str, ...]
    omitted: int

    @classmethod
    def of(cls, last_seen: dict[str, float], limit: int) -> Names:
        ordered = sorted(last_seen, key=lambda n: (-last_seen[n], n))
        return cls(tuple(ordered[:limit]), max(0, len(ordered) - limit))


@dataclass(frozen=True)
class ImageEntry:
    """One image (a digest, or a reference that never resolved) in the window."""

    digest: str | None
    references: Names
    namespaces: Names
    workloads: Names
    first_seen: float
    last_seen: float
    count: int
    latest: Sighting
    sources: tuple[Source, ...]
    current_policy: bool  # judged under the policy as it is now

    @property
    def denied(self) -> bool:
        return self.latest.outcome.denied

    def to_dict(self) -> dict[str, Any]:
        o = self.latest.outcome
        return {
            "digest": self.digest,
            "references": list(self.references.shown),
            "referencesOmitted": self.references.omitted,
            "namespaces": list(self.namespaces.shown),
            "namespacesOmitted": self.namespaces.omitted,
            "workloads": list(self.workloads.shown),
            "workloadsOmitted": self.workloads.omitted,
            "firstSeen": _rfc3339(self.first_seen),
            "lastSeen": _rfc3339(self.last_seen),
            "count": self.count,
            "verdict": o.result,
            "wouldBeDenied": self.denied,
            "check": o.check,
            "reasons": list(o.reasons),
            "fix": None if o.fix is None else o.fix.to_dict(),
            "mode": self.latest.mode,
            "sources": list(self.sources),
            "policyDigest": o.policy_digest,
            "currentPolicy": self.current_policy,
        }


@dataclass(frozen=True)
class FixCount:
    """A fix, and how many of the images that would be denied need it."""

    fix: Fix
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.fix.to_dict(), "images": self.images}


@dataclass(frozen=True)
class Summary:
    images_seen: int
    would_be_denied: int
    by_fix: tuple[FixCount, ...]
    ready_to_enforce: bool
    ready: str  # the line a person reads
    sightings: int
    truncated: bool  # some list was full: the oldest sightings of the window may be gone

    @property
    def passing(self) -> int:
        return self.images_seen - self.would_be_denied

    def to_dict(self) -> dict[str, Any]:
        return {
            "imagesSeen": self.images_seen,
            "wouldBeDenied": self.would_be_denied,
            "passing": self.passing,
            "readyToEnforce": self.ready_to_enforce,
            "ready": self.ready,
            "readyRule": READY_RULE,
            "byFix": [f.to_dict() for f in self.by_fix],
            "sightings": self.sightings,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class Report:
    policy: ReportPolicy
    window: float  # seconds
    since: float
    until: float
    summary: Summary
    images: tuple[ImageEntry, ...]  # would-be-denied first, then the most recently seen
    images_omitted: int

    @property
    def denied(self) -> tuple[ImageEntry, ...]:
        return tuple(i for i in self.images if i.denied)

    @property
    def passing(self) -> tuple[ImageEntry, ...]:
        return tuple(i for i in self.images if not i.denied)

    @property
    def window_words(self) -> str:
        return describe_window(self.window)

    def to_dict(self) -> dict[str, Any]:
        p = self.policy
        return {
            "policy": {"name": p.name, "tenant": p.tenant, "mode": p.mode, "digest": p.digest},
            "window": {
                "seconds": self.window,
                "from": _rfc3339(self.since),
                "to": _rfc3339(self.until),
            },
            "summary": self.summary.to_dict(),
            "images": [i.to_dict() for i in self.images],
            "imagesOmitted": self.images_omitted,
        }


def describe_window(seconds: float) -> str:
    """`the last 7 days`, `the last 12 hours`, `the last 90 seconds`."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"the last {n} {unit}{'' if n == 1 else 's'}"
    n = int(seconds)
    return f"the last {n} second{'' if n == 1 else 's'}"


def ready_line(mode: Mode, seen: int, denied: int, window: float) -> str:
    """The line that says whether the policy may enforce, by `READY_RULE`."""
    when = describe_window(window)
    if seen == 0:
        return f"Not ready to enforce: no image was seen under this policy in {when}."
    if mode == "enforce":
        if denied == 0:
            return f"Enforcing: none of the {seen} image(s) seen in {when} was denied."
        return f"Enforcing: {denied} of {seen} image(s) seen in {when} were denied."
    if denied == 0:
        return f"Ready to enforce: none of the {seen} image(s) seen in {when} would be denied."
    return f"Not ready to enforce: {denied} of {seen} image(s) seen in {when} would be denied."


def aggregate(
    sightings: Iterable[Sighting],
    *,
    policy: ReportPolicy,
    now: float,
    window: float,
    limits: Limits,
    truncated: bool = False,
) -> Report:
    """The report of `sightings` (in any order, copies counted once) over the window."""
    since = now - window
    unique: dict[str, Sighting] = {}
    for s in sightings:
        if since <= s.at <= now + CLOCK_SKEW:
            unique.setdefault(s.id, s)
    groups: dict[tuple[str, str], list[Sighting]] = {}
    resolved_at: dict[str, float] = {}  # reference -> the last time it resolved to a digest
    for s in unique.values():
        digest = s.outcome.digest
        key = ("digest", digest) if digest is not None else ("reference", s.reference)
        groups.setdefault(key, []).append(s)
        if digest is not None:
            resolved_at[s.reference] = max(s.at, resolved_at.get(s.reference, s.at))
    entries: list[ImageEntry] = []
    for (kind, _), members in groups.items():
        entry = _entry(members, policy, limits)
        if kind == "reference" and resolved_at.get(entry.latest.reference, -1.0) > entry.last_seen:
            continue  # superseded: the reference resolved later
        entries.append(entry)
    entries.sort(key=lambda e: (not e.denied, -e.last_seen, e.digest or ""))
    denied = [e for e in entries if e.denied]
    by_fix = tuple(
        FixCount(fix, count)
        for fix in FIXES
        if (count := sum(1 for e in denied if e.latest.outcome.fix == fix))
    )
    seen = len(entries)
    summary = Summary(
        images_seen=seen,
        would_be_denied=len(denied),
        by_fix=by_fix,
        ready_to_enforce=seen > 0 and not denied,
        ready=ready_line(policy.mode, seen, len(denied), window),
        sightings=len(unique),
        truncated=truncated,
    )
    shown = tuple(entries[: limits.max_images])
    return Report(policy, window, since, now, summary, shown, len(entries) - len(shown))


def _entry(members: list[Sighting], policy: ReportPolicy, limits: Limits) -> ImageEntry:
    members.sort(key=lambda s: (s.at, s.id))
    latest = members[-1]
    references: dict[str, float] = {}
    namespaces: dict[str, float] = {}
    workloads: dict[str, float] = {}
    for s in members:  # oldest first: later times overwrite
        references[s.reference] = s.at
        if s.namespace is not None:
            namespaces[s.namespace] = s.at
        if s.workload is not None:
            workloads[s.workload] = s.at
    sources = tuple(sorted({s.source for s in members}))
    return ImageEntry(
        digest=latest.outcome.digest,
        references=Names.of(references, limits.max_names),
        namespaces=Names.of(namespaces, limits.max_names),
        workloads=Names.of(workloads, limits.max_names),
        first_seen=members[0].at,
        last_seen=latest.at,
        count=len(members),
        latest=latest,
        sources=sources,
        current_policy=latest.outcome.policy_digest in (None, policy.digest),
    )


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
