"""`POST /v1/verify/batch`: many images in one call, verified concurrently within a bound.

Every image gets its own answer in request order: a verdict, or the problem that kept it from
one. One bad image never fails the others; the batch is `verified` only when every image is.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from flask import Blueprint, Response, jsonify, request

from service.api.errors import ApiProblem, operational_problem, unexpected_problem
from service.api.ratelimit import charge
from service.api.schemas import BatchRequestSchema
from service.api.sightings import record_results
from service.api.verify import ChosenPolicy, choose_policy, load_body
from service.registry import parse_reference
from service.state import Services, services

bp = Blueprint("batch", __name__, url_prefix="/v1")


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
    late: str = "not verified in time",
    instance: str | None = None,
) -> list[dict[str, Any]]:
    """Each (image, policy) job's result, in order, verified concurrently within
    SIGVERIFY_BATCH_CONCURRENCY: `{image, status, verdict}` or `{image, status, problem}`.

    With `timeout` (seconds), this returns by then: a job not finished is a 504 problem whose
    detail is `late`. Jobs not started are cancelled; a running one cannot be interrupted, so
    it ends in the background within its own registry and Rekor timeouts (its verdict is
    cached for the next request). Never raises for one image's failure. A problem's `instance`
    is the request's path; outside a request (`sigverify verify --local`), `instance`."""
    if not jobs:
        return []
    workers = min(svc.settings.batch_concurrency, len(jobs))
    # The request context does not reach the pool's threads.
    path = request.path if instance is None else instance
    pool = ThreadPoolExecutor(workers, thread_name_prefix="batch")
    try:
        # Each job runs in a copy of this context, so its spans are children of the request's.
        futures = [
            pool.submit(contextvars.copy_context().run, _one, svc, image, chosen, path)
            for image, chosen in jobs
        ]
        wait(futures, timeout=timeout)
    finally:
        # With a timeout, do not wait for stragglers; without one, every job has finished.
        pool.shutdown(wait=timeout is None, cancel_futures=True)
    return [
        future.result() if future.done() and not future.cancelled() else _late(image, path, late)
        for future, (image, _) in zip(futures, jobs, strict=True)
    ]


def _late(image: str, path: str, detail: str) -> dict[str, Any]:
    """The result of a job that did not finish in time."""
    late = ApiProblem(504, "Gateway Timeout", detail, kind="verification-timeout")
    return {"image": image, "status": late.status, "problem": late.body(path)}


def _one(svc: Services, image: str, chosen: ChosenPolicy, path: str) -> dict[str, Any]:
    """One image's verdict, or the problem that kept it from one (never raises)."""
    try:
        found = svc.verifier.verify(
            parse_reference(image), chosen.policy, policy_name=chosen.name, mode=chosen.mode
        )
    except Exception as exc:
        bad = operational_problem(exc) or unexpected_problem(exc)
        return {"image": image, "status": bad.status, "problem": bad.body(path)}
    return {"image": image, "status": 200, "verdict": chosen.outcome(found)}
