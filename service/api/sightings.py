"""Recording verifications under named policies for their reports (`service.reports`).

The views call `record` after verifying: `/v1/verify` and `/v1/verify/batch` (source `verify`,
`batch`) and `/v1/admission` (with the namespace and workload). Only named policies have
reports; a verification under an inline policy is not recorded. Recording never fails or
delays a request beyond one cache write: the cache drops what it cannot store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.api.errors import UNEXPECTED, operational_problem, trouble
from service.reports import Outcome, Sighting, Source
from service.state import services

if TYPE_CHECKING:
    from service.api.verify import ChosenPolicy

log = logging.getLogger(__name__)

# Not an image at all: nothing to report it under.
_NOT_AN_IMAGE = "invalid-request"


def result_outcome(result: Mapping[str, Any], chosen: ChosenPolicy) -> Outcome | None:
    """A batch or admission result (`{image, status, verdict | problem}`) as a report's
    outcome; None for an invalid reference."""
    verdict = result.get("verdict")
    if isinstance(verdict, Mapping):
        return Outcome.of_verdict(verdict)
    problem = result.get("problem")
    kind, said = trouble(problem if isinstance(problem, Mapping) else {})
    if kind == _NOT_AN_IMAGE:
        return None
    return Outcome.unverifiable(kind, said, chosen.policy.digest)


def trouble_outcome(exc: Exception, chosen: ChosenPolicy) -> Outcome | None:
    """The outcome of a verification that raised `exc` (an outage, or a bug)."""
    problem = operational_problem(exc)
    if problem is None:
        return Outcome.unverifiable("internal", UNEXPECTED, chosen.policy.digest)
    return result_outcome({"problem": problem.body(None)}, chosen)


def record(
    chosen: ChosenPolicy,
    source: Source,
    outcomes: Iterable[tuple[str, Outcome | None]],
    *,
    namespace: str | None = None,
    workload: str | None = None,
) -> None:
    """Keep (image as written, outcome) pairs under `chosen`'s report, if it is named."""
    if chosen.name is None or chosen.tenant is None:
        return
    store = services().reports
    sightings: list[Sighting] = []
    try:
        now = store.now()
        sightings = [
            Sighting.of(
                at=now,
                reference=image,
                source=source,
                mode=chosen.mode,
                outcome=outcome,
                namespace=namespace,
                workload=workload,
            )
            for image, outcome in outcomes
            if outcome is not None
        ]
        if sightings:
            store.record(chosen.tenant, chosen.name, sightings)
    except Exception:  # a report is never worth a failed verification
        log.exception("recording %d sighting(s) of policy %s failed", len(sightings), chosen.name)


def record_results(
    jobs: Sequence[tuple[str, ChosenPolicy]],
    results: Sequence[Mapping[str, Any]],
    source: Source,
    *,
    namespace: str | None = None,
    workload: str | None = None,
) -> None:
    """Record each job's result (as `verify_all` answers them) under its policy's report."""
    by_policy: dict[int, tuple[ChosenPolicy, list[tuple[str, Outcome | None]]]] = {}
    for (image, chosen), result in zip(jobs, results, strict=True):
        entry = by_policy.setdefault(id(chosen), (chosen, []))
        entry[1].append((image, result_outcome(result, chosen)))
    for chosen, outcomes in by_policy.values():
        record(chosen, source, outcomes, namespace=namespace, workload=workload)
