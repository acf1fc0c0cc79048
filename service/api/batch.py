"""`POST /v1/verify/batch`: many images in one call, verified concurrently within a bound.

Every image gets its own answer in request order: a verdict, or the problem that kept it from
one. One bad image never fails the others; the batch is `verified` only when every image is.
The batch answers within the request's deadline (SIGVERIFY_REQUEST_TIMEOUT): an image not
verified by then is a 504 `verification-timeout` problem, and its work stops.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from flask import Blueprint, Response, jsonify, request

from service.api.errors import late_problem, operational_problem, unexpected_problem
from service.api.ratelimit import charge
from service.api.schemas import BatchRequestSchema
from service.api.sightings import record_results
from service.api.verify import ChosenPolicy, choose_policy, load_body
from service.outbound import DeadlineExceeded, Scope, deadline
from service.registry import parse_reference
from service.state import Services, services

log = logging.getLogger(__name__)

bp = Blueprint("batch", __name__, url_prefix="/v1")
GRACE = 1.0  # seconds a job cut off at its deadline gets to unwind before the answer


@bp.post("/verify/batch")
def verify_batch() -> Response:
    svc = services()
    body = load_body(BatchRequestSchema(svc.settings.batch_max_images))
    shared = choose_policy(body) if "policy" in body or "policyName" in body else None
    jobs: list[tuple[str, ChosenPolicy]] = []
    for i, item in enumerate(body["images"]):
        own = "policy" in item or "policyName" in item
        chosen = choose_policy(item, f"images.{i}.") if own else shared
        assert chosen is not None  # the schema refuses an image without one
        jobs.append((item["image"], chosen))
    charge(len(jobs))
    results = verify_all(svc, jobs)
    record_results(jobs, results, "batch")
    return jsonify(batch_answer(results))


def batch_answer(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The batch's answer: `verified` when every image verified, `passed` when every image
    verified or failed only under an audit policy (what a gate acts on), and the results."""
    verified = all(r.get("verdict", {}).get("verified") is True for r in results)
    passed = all(
        r.get("verdict", {}).get("verified") is True
        or r.get("verdict", {}).get("enforced") is False
        for r in results
    )
    return {"verified": verified, "passed": passed, "results": results}


def verify_all(
    svc: Services,
    jobs: Sequence[tuple[str, ChosenPolicy]],
    *,
    timeout: float | None = None,
    late: str | None = None,
    instance: str | None = None,
) -> list[dict[str, Any]]:
    """Each (image, policy) job's result, in order, verified concurrently within
    SIGVERIFY_BATCH_CONCURRENCY: `{image, status, verdict}` or `{image, status, problem}`.

    The jobs run in copies of this context under one scope that ends with the request's (or
    `timeout` seconds from now, if sooner), and this returns by then: a job not finished is a
    504 problem whose detail is `late`. Nothing outlives the answer: jobs not started are
    cancelled, and the running ones, whose every exchange, retry and wait ends by the scope's
    deadline, are told to stop and waited for (`GRACE` seconds at most; one still running then
    would be a bug, and is logged). Never raises for one image's failure; call it from a
    request. A problem's `instance` is the request's path; outside a request (`sigverify verify
    --local`), `instance`."""
    if not jobs:
        return []
    parent = deadline.current() or Scope.starting(svc.settings.request_timeout)
    scope = parent.narrowed(parent.remaining() if timeout is None else timeout)
    detail = late or f"not verified within the request's {parent.budget:g}s"
    workers = min(svc.settings.batch_concurrency, len(jobs))
    # The request context does not reach the pool's threads.
    path = request.path if instance is None else instance
    pool = ThreadPoolExecutor(workers, thread_name_prefix="batch")
    with deadline.scoped(scope):
        try:
            # Each job runs in a copy of this context: its spans are children of the request's,
            # and its deadline is the scope's.
            futures = [
                pool.submit(contextvars.copy_context().run, _one, svc, image, chosen, path, detail)
                for image, chosen in jobs
            ]
            _, running = wait(futures, timeout=max(0.0, scope.remaining()))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            scope.cancel()
    if running:
        _, stuck = wait(running, timeout=GRACE)
        if stuck:
            log.error("%d batch job(s) still running after their request's deadline", len(stuck))
    return [
        future.result() if future.done() and not future.cancelled() else _late(image, path, detail)
        for future, (image, _) in zip(futures, jobs, strict=True)
    ]


def _late(image: str, path: str, detail: str) -> dict[str, Any]:
    """The result of a job that did not finish in time."""
    late = late_problem(detail)
    return {"image": image, "status": late.status, "problem": late.body(path)}


def _one(svc: Services, image: str, chosen: ChosenPolicy, path: str, late: str) -> dict[str, Any]:
    """One image's verdict, or the problem that kept it from one (never raises)."""
    try:
        found = svc.verifier.verify(
            parse_reference(image), chosen.policy, policy_name=chosen.name, mode=chosen.mode
        )
    except DeadlineExceeded:
        return _late(image, path, late)
    except Exception as exc:
        bad = operational_problem(exc) or unexpected_problem(exc)
        return {"image": image, "status": bad.status, "problem": bad.body(path)}
    return {"image": image, "status": 200, "verdict": chosen.outcome(found)}
