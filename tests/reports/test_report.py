"""Aggregating sightings into a report (pure): latest verdict per digest, copies counted once,
the window, caps with counts of what was left out, and the ready-to-enforce rule."""

from __future__ import annotations

import json
from typing import Any

from service.policies import Mode
from service.reports import READY_RULE, Limits, Outcome, ReportPolicy, Sighting
from service.reports.fixes import BY_NAME
from service.reports.report import aggregate, describe_window, ready_line
from service.reports.sightings import MAX_NAMESPACE, MAX_REASON, MAX_REFERENCE

NOW = 1_800_000_000.0
DAY = 86400.0
WEEK = 7 * DAY
POLICY = ReportPolicy("watch", "platform", "audit", "sha256:" + "c" * 64)
LIMITS = Limits(max_images=100, max_names=20)
A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def passed(digest: str = A) -> Outcome:
    return Outcome("verified", digest, None, (), None, POLICY.digest)


def failed(digest: str = A, fix: str = "unsigned", check: str = "no-signatures") -> Outcome:
    return Outcome("failed", digest, check, ("no signatures found",), BY_NAME[fix], POLICY.digest)


def seen(
    outcome: Outcome,
    *,
    ago: float = 60.0,
    reference: str = "registry.test/app:v1",
    namespace: str | None = "shop",
    workload: str | None = "Deployment/web",
) -> Sighting:
    return Sighting.of(
        at=NOW - ago,
        reference=reference,
        source="admission",
        mode="audit",
        outcome=outcome,
        namespace=namespace,
        workload=workload,
    )


def report(*sightings: Sighting, limits: Limits = LIMITS, mode: Mode = "audit") -> dict[str, Any]:
    policy = ReportPolicy(POLICY.name, POLICY.tenant, mode, POLICY.digest)
    return aggregate(sightings, policy=policy, now=NOW, window=WEEK, limits=limits).to_dict()


def test_each_digest_is_judged_by_its_latest_sighting() -> None:
    signed_later = [seen(failed(A), ago=3 * DAY), seen(passed(A), ago=DAY)]
    broke_later = [seen(passed(B), ago=3 * DAY), seen(failed(B), ago=DAY)]
    r = report(*signed_later, *broke_later)
    by_digest = {i["digest"]: i for i in r["images"]}
    assert by_digest[A]["verdict"] == "verified" and not by_digest[A]["wouldBeDenied"]
    assert by_digest[B]["verdict"] == "failed" and by_digest[B]["wouldBeDenied"]
    assert by_digest[B]["fix"]["name"] == "unsigned" and by_digest[B]["check"] == "no-signatures"
    assert by_digest[A]["count"] == by_digest[B]["count"] == 2
    assert r["images"][0]["digest"] == B  # would-be-denied first
    assert r["summary"]["imagesSeen"] == 2 and r["summary"]["wouldBeDenied"] == 1
    assert r["summary"]["passing"] == 1


def test_a_copy_counts_once_and_only_the_window_counts() -> None:
    first = seen(failed(), ago=DAY)
    too_old = seen(failed(B), ago=WEEK + 1)
    far_future = seen(failed(B), ago=-3600)  # another clock an hour ahead: not believed
    r = report(first, first, too_old, far_future)
    assert [i["digest"] for i in r["images"]] == [A]
    assert r["images"][0]["count"] == 1 and r["summary"]["sightings"] == 1


def test_names_are_capped_most_recent_first_and_the_rest_counted() -> None:
    sightings = [
        seen(failed(), ago=1000 - i, reference=f"registry.test/app:v{i}", namespace=f"ns-{i}")
        for i in range(30)
    ]
    r = report(*sightings, limits=Limits(max_images=10, max_names=5))
    (image,) = r["images"]
    assert image["references"] == [f"registry.test/app:v{i}" for i in (29, 28, 27, 26, 25)]
    assert image["referencesOmitted"] == 25 and image["namespacesOmitted"] == 25
    assert image["workloads"] == ["Deployment/web"] and image["workloadsOmitted"] == 0
    assert image["count"] == 30
    assert image["firstSeen"] < image["lastSeen"]


def test_images_are_capped_with_the_denied_ones_kept_and_everything_counted() -> None:
    digests = [f"sha256:{i:064x}" for i in range(12)]
    sightings = [seen(passed(d), ago=10.0 + i) for i, d in enumerate(digests[:10])]
    sightings += [seen(failed(d), ago=500.0) for d in digests[10:]]
    r = report(*sightings, limits=Limits(max_images=4, max_names=5))
    assert [i["digest"] for i in r["images"]] == [*digests[10:], digests[0], digests[1]]
    assert r["imagesOmitted"] == 8
    assert r["summary"]["imagesSeen"] == 12 and r["summary"]["wouldBeDenied"] == 2


def test_an_unresolved_reference_is_superseded_once_it_resolves_later() -> None:
    down = Outcome.unverifiable("registry-unavailable", "its registry could not be reached", None)
    earlier_outage = seen(down, ago=2 * DAY)
    r = report(earlier_outage, seen(passed(A), ago=DAY))
    assert [i["digest"] for i in r["images"]] == [A]
    assert r["summary"]["readyToEnforce"] is True
    # An outage after the last good sighting stays: under enforce it would be denied now.
    r = report(seen(passed(A), ago=2 * DAY), seen(down, ago=DAY))
    assert [i["digest"] for i in r["images"]] == [None, A]
    outage = r["images"][0]
    assert outage["verdict"] == "unverifiable" and outage["fix"]["name"] == "unverifiable"
    assert outage["check"] == "registry-unavailable"
    assert r["summary"]["readyToEnforce"] is False


def test_reasons_are_grouped_by_fix_in_the_fixes_order() -> None:
    r = report(
        seen(failed(A, "wrong-identity", "identity")),
        seen(failed(B, "unsigned")),
        seen(failed("sha256:" + "d" * 64, "wrong-identity", "identity")),
        seen(passed("sha256:" + "f" * 64)),
    )
    assert [(f["name"], f["images"]) for f in r["summary"]["byFix"]] == [
        ("unsigned", 1),
        ("wrong-identity", 2),
    ]
    assert all(f["action"] for f in r["summary"]["byFix"])


def test_ready_to_enforce_follows_its_rule() -> None:
    empty = report()
    assert empty["summary"]["readyToEnforce"] is False
    assert empty["summary"]["ready"] == (
        "Not ready to enforce: no image was seen under this policy in the last 7 days."
    )
    ready = report(seen(passed(A)), seen(passed(B)))["summary"]
    assert ready["readyToEnforce"] is True and ready["readyRule"] == READY_RULE
    assert ready["ready"] == (
        "Ready to enforce: none of the 2 image(s) seen in the last 7 days would be denied."
    )
    not_ready = report(seen(passed(A)), seen(failed(B)))["summary"]
    assert not_ready["readyToEnforce"] is False
    assert not_ready["ready"] == (
        "Not ready to enforce: 1 of 2 image(s) seen in the last 7 days would be denied."
    )
    enforcing = report(seen(passed(A)), seen(failed(B)), mode="enforce")["summary"]
    assert enforcing["ready"] == "Enforcing: 1 of 2 image(s) seen in the last 7 days were denied."
    assert ready_line("enforce", 3, 0, DAY) == (
        "Enforcing: none of the 3 image(s) seen in the last 1 day was denied."
    )
    assert describe_window(3600) == "the last 1 hour"
    assert describe_window(90) == "the last 90 seconds"


def test_a_change_of_policy_is_shown() -> None:
    old = Outcome("failed", A, "identity", ("x",), BY_NAME["wrong-identity"], "sha256:" + "0" * 64)
    (image,) = report(seen(old))["images"]
    assert image["currentPolicy"] is False and image["policyDigest"] == "sha256:" + "0" * 64


def test_a_sighting_round_trips_and_clips_what_callers_wrote() -> None:
    long = "x" * 10_000
    outcome = Outcome.of_verdict({"verified": False, "reasons": [long, "b", "c", "d"]})
    s = Sighting.of(
        at=NOW,
        reference="registry.test/" + long,
        source="batch",
        mode="enforce",
        outcome=outcome,
        namespace=long,
        workload="Deployment/" + long,
    )
    assert len(s.reference) == MAX_REFERENCE and len(s.namespace or "") == MAX_NAMESPACE
    assert [len(r) for r in s.outcome.reasons] == [MAX_REASON, 1, 1]
    assert len(s.to_json()) < 2048
    assert Sighting.from_json(s.to_json()) == s
    again = Sighting.of(at=NOW, reference="r", source="verify", mode="audit", outcome=passed())
    assert again.id != s.id


def test_records_this_version_does_not_read_are_skipped() -> None:
    good = json.loads(seen(passed()).to_json())
    for bad in (
        b"not json",
        b"[]",
        json.dumps({**good, "v": 99}).encode(),
        json.dumps({**good, "res": "maybe"}).encode(),
        json.dumps({**good, "src": "elsewhere"}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "at"}).encode(),
        json.dumps({**good, "at": "soon"}).encode(),
    ):
        assert Sighting.from_json(bad) is None, bad
