"""Where sightings are kept: append-only lists in the shared cache, aggregated on read.

Each (tenant, policy) has four lists, by where a sighting came from and how it ended:
`admission-denied`, `admission-passed`, `api-denied`, `api-passed` (api: `/v1/verify` and
`/v1/verify/batch`). Each list keeps its newest SIGVERIFY_REPORT_MAX_SIGHTINGS sightings, each
sighting for SIGVERIFY_REPORT_WINDOW seconds. Apart, they keep each other's sightings: a CI job
verifying many images cannot push the webhook's sightings out, and a stream of passing pods
cannot push out the failures a report is for. Only callers that may use a policy (its tenant's
tokens; the admission webhook for the policies it applies) add to its lists.

In Redis an append is one MULTI/EXEC (RPUSH, LTRIM, PEXPIRE): appends from every pod are all
kept, none overwrites another; what is lost is the oldest sightings beyond a list's cap. Each
sighting is sealed under its list's key (`service.cache`): a Redis writer can delete or evict
sightings (a report then shows fewer) but not add, alter, move or prolong one; a copied
sighting counts once (by its id). Without Redis, each worker process keeps its own lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from service.cache import Cache
from service.reports.report import Limits, Report, ReportPolicy, aggregate
from service.reports.sightings import FORMAT, Sighting

LANES = ("admission-denied", "admission-passed", "api-denied", "api-passed")


def lane_of(sighting: Sighting) -> str:
    where = "admission" if sighting.source == "admission" else "api"
    return f"{where}-{'denied' if sighting.outcome.denied else 'passed'}"


class ReportStore:
    """Records sightings of named policies and reads them back as reports."""

    def __init__(
        self,
        cache: Cache,
        *,
        window: float,
        max_sightings: int,
        limits: Limits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cache = cache
        self.window = window
        self._max = max_sightings
        self._limits = limits
        self._clock = clock

    @staticmethod
    def key(tenant: str, policy: str, lane: str) -> str:
        """A list's cache key. Policy names have no `:`, so the tenant, last, is unambiguous."""
        return f"report:v{FORMAT}:{policy}:{lane}:{tenant}"

    def now(self) -> float:
        return self._clock()

    def record(self, tenant: str, policy: str, sightings: Sequence[Sighting]) -> None:
        """Keep `sightings` of `policy` (owned by `tenant`); never raises."""
        by_lane: dict[str, list[bytes]] = {}
        for s in sightings:
            by_lane.setdefault(lane_of(s), []).append(s.to_json())
        for lane, values in by_lane.items():
            self._cache.append(
                self.key(tenant, policy, lane), values, max_items=self._max, ttl=self.window
            )

    def read(self, policy: ReportPolicy) -> Report:
        """The report of `policy` over the window, as the cache holds it now."""
        found: list[Sighting] = []
        truncated = False
        for lane in LANES:
            raw = self._cache.items(self.key(policy.tenant, policy.name, lane), max_items=self._max)
            truncated |= len(raw) >= self._max
            found += [s for s in map(Sighting.from_json, raw) if s is not None]
        return aggregate(
            found,
            policy=policy,
            now=self._clock(),
            window=self.window,
            limits=self._limits,
            truncated=truncated,
        )
