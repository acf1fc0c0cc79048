"""`POST /v1/admission`: a Kubernetes validating admission webhook (AdmissionReview v1), and
`POST /v1/admission/mutate`, its mutating twin that pins verified digests (at the end).

The API server sends a review of a Pod (created, updated, or given a debug container through its
`ephemeralcontainers` subresource), or of a workload with a pod template (Deployment,
StatefulSet, DaemonSet, ReplicaSet, Job, CronJob). Every image of its containers, init containers
and ephemeral containers is verified, concurrently (the batch machinery), against the named
policy for the object's namespace, and the policy's mode decides:

- `enforce`: an image that fails, or that cannot be verified now (registry or Rekor down, or not
  done within SIGVERIFY_ADMISSION_TIMEOUT), denies the object (fail closed); `status.message`
  names each such image (by tag and the digest it resolved to) and its first reason.
- `audit`: the object is allowed, with one warning per such image (kubectl shows them).
Either way a failure adds `auditAnnotations` (the API server's audit log keeps them).

What an answer says: the images the reviewed object names, the digests they resolved to, and
for each failure the verdict's first reason about that image, or, for an image that cannot be
verified now, which kind of trouble it met in fixed words ("its registry could not be reached").
Never what an upstream said (addresses, error text, token realms, other repositories): whoever
may create a Pod reads these messages. The service's log keeps the details, by review uid.

Which policy: the policy file's `admission` section maps namespaces to policies, with a `default`
for the others; without that section, or without a `default`, SIGVERIFY_ADMISSION_POLICY is the
default. A namespace that still gets no policy is denied (the webhook was asked about it, so
someone meant it to be checked). Exempt namespaces (the section's `exempt`, else
SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES) are allowed unchecked.

A well-formed review is always answered HTTP 200 with `response.uid` echoing `request.uid` (the
protocol), within the time budget; dry runs are handled alike. A malformed review is a 400
problem naming the field.

The API server sends none of the API tokens: while admission is configured the path needs none
(`service.api.auth`), and can require the API server's client certificate
(SIGVERIFY_ADMISSION_CLIENT_CA_FILE) or webhook token (SIGVERIFY_ADMISSION_TOKEN_FILE) instead;
the NetworkPolicy (who may connect) and TLS (`SIGVERIFY_TLS_CERT_FILE`, the API server checking
the certificate against the webhook's caBundle) protect it too. Admission reviews are not
charged to a rate limit: the API server is one caller for every namespace. Every verification
of a review is recorded in its policy's report (`service.reports`), with namespace and workload.

The mutating webhook reviews the same objects under the same rules (namespaces, exemptions,
policy, callers) and answers a JSON Patch that rewrites each image the request sets by tag and
that verified to `name@<the digest verified>`. It never denies and never pins what did not
verify: the API server runs it before the validating webhook, which then decides on the
pinned object.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, jsonify, request

from service.api.batch import verify_all
from service.api.errors import ApiProblem, trouble
from service.api.sightings import record_results
from service.api.verify import ChosenPolicy
from service.config import PREFIX, Settings, SettingsError
from service.policies import AdmissionRules, Mode, NamedPolicy, PolicyStore
from service.state import Services, services

log = logging.getLogger(__name__)

bp = Blueprint("admission", __name__, url_prefix="/v1")

API_VERSION = "admission.k8s.io/v1"
# Kubernetes objects are at most ~1.5 MiB; an UPDATE carries the old object too.
MAX_REVIEW_BYTES = 4 << 20
# The API server may truncate longer warnings; keep each one readable on a terminal.
MAX_WARNING_CHARS = 256
MAX_REASON_CHARS = 300
# Audit annotations end up in every audit event of the request; keep them bounded.
MAX_ANNOTATION_CHARS = 2048
DENIED_CODE = 403

# (API group, kind) -> where its pod spec is.
POD_SPECS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
# Operations with nothing to verify: the object goes away, or is only connected to.
UNCHECKED_OPERATIONS = frozenset({"DELETE", "CONNECT"})
# The one subresource that changes which images run: `kubectl debug` updates a Pod's
# `ephemeralcontainers` (the review's object is the whole Pod). Every other subresource (a Pod's
# status, binding, eviction or resize; a workload's scale or status) cannot, and is not checked.
CHECKED_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})
OPERATIONS = frozenset({"CREATE", "UPDATE"}) | UNCHECKED_OPERATIONS


class ReviewError(ValueError):
    """A malformed AdmissionReview; `field` is the path of the bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Container:
    """One container of the reviewed object: the JSON pointer to its `image`, the list it is
    in (`containers`, `initContainers`, `ephemeralContainers`), its name, and its image."""

    pointer: str
    list_name: str
    name: str | None
    image: str


@dataclass(frozen=True)
class Review:
    """What the webhooks need from an AdmissionReview request."""

    uid: str
    operation: str
    namespace: str | None
    kind: str | None  # None for an operation that is not checked
    name: str | None
    images: tuple[str, ...]  # unique, in the order they appear
    containers: tuple[Container, ...] = ()
    # UPDATE: each container's image in `oldObject`, by (list, name); None when unknown.
    previous: Mapping[tuple[str, str | None], str] | None = None
    workload: str | None = None  # what a report names it by: `Deployment/web`, its owner's

    def changed(self) -> tuple[Container, ...]:
        """The containers whose image this request sets: every one on CREATE; on UPDATE,
        the new ones and those whose image differs from `oldObject` (none when it is
        unknown), since changing a running Pod's image restarts that container."""
        if self.operation == "CREATE":
            return self.containers
        if self.previous is None:
            return ()
        before = self.previous
        return tuple(c for c in self.containers if before.get((c.list_name, c.name)) != c.image)


@dataclass(frozen=True)
class Failure:
    """An image that did not pass: what the answer says (`reason`), what the log keeps
    (`detail`), and whether it was an outage rather than a verdict."""

    image: str
    reason: str
    operational: bool
    detail: str = ""

    @property
    def logged(self) -> str:
        return self.detail or self.reason


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ReviewError(field, "expected an object")
    return value


def _optional_str(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ReviewError(field, "expected a string")
    return value


def pod_containers(
    group: str, kind: str, obj: Any, where: str = "request.object"
) -> tuple[Container, ...]:
    """Every container of `obj`'s pod spec (containers, init and ephemeral containers) that
    has an image, in order (a container without one, allowed in templates, is skipped)."""
    path = POD_SPECS.get((group, kind))
    if path is None:
        supported = ", ".join(k for _, k in POD_SPECS)
        raise ReviewError("request.kind", f"{kind!r} in group {group!r} is not one of {supported}")
    node = _mapping(obj, where)
    for step in path:
        where = f"{where}.{step}"
        node = _mapping(node.get(step), where)
    pointer = "/" + "/".join(path)
    found: list[Container] = []
    for list_name in CONTAINER_LISTS:
        containers = node.get(list_name)
        if containers is None:
            continue
        if not isinstance(containers, list):
            raise ReviewError(f"{where}.{list_name}", "expected a list")
        for index, container in enumerate(containers):
            at = f"{where}.{list_name}.{index}"
            entry = _mapping(container, at)
            image = _optional_str(entry.get("image"), f"{at}.image")
            if image is not None:
                name = entry.get("name")
                found.append(
                    Container(
                        f"{pointer}/{list_name}/{index}/image",
                        list_name,
                        name if isinstance(name, str) else None,
                        image.strip(),
                    )
                )
    return tuple(found)


def pod_images(group: str, kind: str, obj: Any, where: str = "request.object") -> tuple[str, ...]:
    """Every image of `obj`'s pod spec (containers, init and ephemeral containers), unique, in
    order. A container without an image (allowed in templates) is skipped."""
    return tuple(dict.fromkeys(c.image for c in pod_containers(group, kind, obj, where)))


def _previous(group: str, kind: str, old: Any) -> Mapping[tuple[str, str | None], str] | None:
    """The images of an UPDATE's `oldObject` by (list, container name); None when it is
    missing or not understood (then no image counts as unchanged: nothing is pinned)."""
    try:
        return {(c.list_name, c.name): c.image for c in pod_containers(group, kind, old)}
    except ReviewError:
        return None


def workload_of(req: Mapping[str, Any], kind: str, name: str | None) -> str:
    """What a report names the reviewed object by: its controller (`ReplicaSet/web-7d9f`) for
    a Pod a workload made, else `Kind/name` (`Pod/web-*` for a generated name). Never raises:
    the object was checked only as far as its containers."""
    obj = req.get("object")
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    owners = meta.get("ownerReferences")
    if isinstance(owners, list):
        valid = [
            o
            for o in owners
            if isinstance(o, Mapping)
            and isinstance(o.get("kind"), str)
            and isinstance(o.get("name"), str)
        ]
        owner = next((o for o in valid if o.get("controller") is True), None)
        if owner is not None:
            return f"{owner['kind']}/{owner['name']}"
    given = name or meta.get("name")
    if not isinstance(given, str) or not given:
        generated = meta.get("generateName")
        given = f"{generated}*" if isinstance(generated, str) and generated else "-"
    return f"{kind}/{given}"


def parse_review(body: Any) -> Review:
    """The review's uid, operation, namespace and images; `ReviewError` names a bad field."""
    review = _mapping(body, "body")
    if review.get("apiVersion") != API_VERSION:
        raise ReviewError("apiVersion", f"expected {API_VERSION}")
    if review.get("kind") != "AdmissionReview":
        raise ReviewError("kind", "expected AdmissionReview")
    req = _mapping(review.get("request"), "request")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid", "expected a non-empty string")
    operation = req.get("operation")
    # isinstance first: a list or an object is not hashable, and `in` a frozenset would raise.
    if not isinstance(operation, str) or operation not in OPERATIONS:
        raise ReviewError("request.operation", "expected " + ", ".join(sorted(OPERATIONS)))
    namespace = _optional_str(req.get("namespace"), "request.namespace")
    name = _optional_str(req.get("name"), "request.name")
    subresource = _optional_str(req.get("subResource"), "request.subResource") or ""
    if operation in UNCHECKED_OPERATIONS or subresource not in CHECKED_SUBRESOURCES:
        return Review(uid, operation, namespace, None, name, ())
    gvk = _mapping(req.get("kind"), "request.kind")
    group, kind = gvk.get("group", ""), gvk.get("kind")
    if not isinstance(group, str):
        raise ReviewError("request.kind.group", "expected a string")
    if not isinstance(kind, str) or not kind:
        raise ReviewError("request.kind.kind", "expected a non-empty string")
    containers = pod_containers(group, kind, req.get("object"))
    images = tuple(dict.fromkeys(c.image for c in containers))
    previous = _previous(group, kind, req.get("oldObject")) if operation == "UPDATE" else None
    return Review(
        uid,
        operation,
        namespace,
        kind,
        name,
        images,
        containers,
        previous,
        workload_of(req, kind, name),
    )


def image_label(result: Mapping[str, Any]) -> str:
    """How a result's image is named to a person: a tag with the digest it resolved to
    (`registry/repo:tag (sha256:...)`), so the answer says what was actually judged."""
    image = str(result["image"])
    found = (result.get("verdict") or {}).get("image") or {}
    digest = found.get("digest")
    if found.get("resolvedFromTag") is True and isinstance(digest, str) and digest not in image:
        return f"{image} ({digest})"
    return image


def failure_of(result: Mapping[str, Any]) -> Failure | None:
    """A batch result as an admission failure: None when the image verified."""
    image = image_label(result)
    verdict = result.get("verdict")
    if verdict is not None:
        if verdict.get("verified") is True:
            return None
        reasons = verdict.get("reasons") or ["not verified"]
        return Failure(image, _clip(str(reasons[0]), MAX_REASON_CHARS), operational=False)
    problem = result.get("problem") or {}
    detail = str(problem.get("detail") or "verification failed")
    kind, said = trouble(problem)
    reason = _clip(f"cannot be verified now: {said}", MAX_REASON_CHARS)
    return Failure(image, reason, operational=True, detail=f"{kind}: {detail}")


def decide(
    uid: str, policy: str, mode: Mode, total: int, failures: Sequence[Failure]
) -> dict[str, Any]:
    """The AdmissionResponse: allowed when nothing failed; else denied (enforce) with every
    failed image in `status.message`, or allowed (audit) with a warning for each; either way
    with audit annotations (the API server prefixes their keys with the webhook's name)."""
    if not failures:
        return {"uid": uid, "allowed": True}
    listed = "; ".join(f"{f.image}: {f.reason}" for f in failures)
    verb = "denied" if mode == "enforce" else "would deny (audit)"
    annotations = {
        "policy": policy,
        "verification": _clip(
            f"{verb} {len(failures)} of {total} image(s): {listed}", MAX_ANNOTATION_CHARS
        ),
    }
    if mode == "enforce":
        message = (
            f"sigverify policy {policy!r} denied {len(failures)} of {total} image(s): {listed}"
        )
        return {
            "uid": uid,
            "allowed": False,
            "status": {"code": DENIED_CODE, "message": message},
            "auditAnnotations": annotations,
        }
    warnings = [
        _clip(f"sigverify (audit, policy {policy}): {f.image}: {f.reason}", MAX_WARNING_CHARS)
        for f in failures
    ]
    return {"uid": uid, "allowed": True, "warnings": warnings, "auditAnnotations": annotations}


def _clip(text: str, limit: int) -> str:
    """`text` on one line, at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_policy(settings: Settings, policies: PolicyStore) -> None:
    """At start: the admission policy, when set, is one the policy file defines."""
    name = settings.admission_policy
    if name is not None and policies.get(name) is None:
        raise SettingsError(
            f"{PREFIX}ADMISSION_POLICY={name!r}: no such policy in "
            f"{PREFIX}POLICY_FILE={str(settings.policy_file)!r}"
        )


def exempt_namespaces(settings: Settings, rules: AdmissionRules | None) -> tuple[str, ...]:
    """The file's `admission.exempt` when it has one, else the setting's list."""
    if rules is not None and rules.exempt is not None:
        return rules.exempt
    return settings.admission_exempt_namespaces


def policy_name_for(
    namespace: str | None, rules: AdmissionRules | None, fallback: str | None
) -> str | None:
    """The named policy for `namespace`: the file's mapping, its `default`, then the setting."""
    chosen = rules.policy_for(namespace) if rules is not None else None
    return chosen if chosen is not None else fallback


def _answer(response: dict[str, Any]) -> Response:
    return jsonify(apiVersion=API_VERSION, kind="AdmissionReview", response=response)


def _refuse(uid: str, code: int, message: str) -> Response:
    log.error("admission %s denied: %s", uid, message)
    return _answer({"uid": uid, "allowed": False, "status": {"code": code, "message": message}})


def _review(svc: Services) -> Review:
    """The request's review; a 404 problem while admission is not configured, a 400 one
    naming the field of a malformed review."""
    if not svc.admission_configured:
        raise ApiProblem(
            404,
            "Not Found",
            f"admission is not configured: set {PREFIX}ADMISSION_POLICY to a named policy, "
            f"or add an `admission` section to {PREFIX}POLICY_FILE",
            kind="admission-not-configured",
        )
    # A Pod with many containers is larger than a verification request.
    request.max_content_length = max(svc.settings.max_body_bytes, MAX_REVIEW_BYTES)
    try:
        return parse_review(request.get_json(silent=True))
    except ReviewError as exc:
        raise ApiProblem(
            400,
            "Bad Request",
            f"not an AdmissionReview {API_VERSION}: {exc}",
            kind="invalid-request",
            errors={exc.field: [exc.message]},
        ) from None


@dataclass(frozen=True)
class _Applies:
    """What the policy file says of a review's namespace: exempt, a policy's name (None: no
    policy applies), and the policy itself (None: that name is no longer in the file)."""

    exempt: bool
    name: str | None
    named: NamedPolicy | None


def _applies(svc: Services, review: Review) -> _Applies:
    current = svc.policies.current()  # one version of the file for the whole review
    rules = current.admission
    if review.namespace in exempt_namespaces(svc.settings, rules):
        return _Applies(True, None, None)
    name = policy_name_for(review.namespace, rules, svc.settings.admission_policy)
    return _Applies(False, name, None if name is None else current.policies.get(name))


def _verify(
    svc: Services, images: Sequence[str], named: NamedPolicy, deadline: float
) -> tuple[list[tuple[str, ChosenPolicy]], list[dict[str, Any]]]:
    """Each image verified under `named` by `deadline`: the jobs and their results."""
    chosen = ChosenPolicy(named.policy, named.name, named.mode, named.tenant)
    jobs = [(image, chosen) for image in images]
    budget = svc.settings.admission_timeout
    results = verify_all(
        svc,
        jobs,
        timeout=max(0.0, deadline - time.monotonic()),
        late=f"not verified within the time budget of {budget:g}s",
    )
    return jobs, results


@bp.post("/admission")
def admission() -> Response:
    svc = services()
    # The budget counts from here: the API server's timeoutSeconds started a little earlier.
    deadline = time.monotonic() + svc.settings.admission_timeout
    review = _review(svc)
    applies = _applies(svc, review)
    if applies.exempt or not review.images:
        return _answer({"uid": review.uid, "allowed": True})
    if applies.name is None:  # fail closed: the webhook was asked, so it was meant to be checked
        return _refuse(
            review.uid,
            DENIED_CODE,
            f"sigverify: no admission policy for namespace {review.namespace!r}: list it under "
            "admission.namespaces in the policy file, or set admission.default",
        )
    named = applies.named
    if named is None:  # the file changed since the start: fail closed
        return _refuse(
            review.uid,
            500,
            f"sigverify: the admission policy {applies.name!r} is no longer in the policy file",
        )
    jobs, results = _verify(svc, review.images, named, deadline)
    record_results(jobs, results, "admission", namespace=review.namespace, workload=review.workload)
    failures = [f for f in map(failure_of, results) if f is not None]
    response = decide(review.uid, named.name, named.mode, len(review.images), failures)
    if failures:
        log.info(
            "admission %s of %s %s/%s (policy %s, %s): %s",
            review.uid,
            review.kind,
            review.namespace or "-",
            review.name or "-",
            named.name,
            named.mode,
            "; ".join(f"{f.image}: {f.logged}" for f in failures),
        )
    return _answer(response)


# -- pinning: the mutating webhook ---------------------------------------------------------------


def pinned(image: str, digest: str) -> str | None:
    """`image` pinned to `digest`, keeping its name as written and dropping its tag
    (`nginx:1.25` -> `nginx@sha256:...`, `ghcr.io/a/b` -> `ghcr.io/a/b@sha256:...`); None for
    an image that names a digest already (`name@sha256:...`, `name:tag@sha256:...`)."""
    if "@" in image:
        return None
    colon = image.rfind(":")
    name = image[:colon] if colon > image.rfind("/") else image  # `host:port/x` has no tag
    return f"{name}@{digest}"


def pin_patch(containers: Sequence[Container], digests: Mapping[str, str]) -> list[dict[str, str]]:
    """A JSON Patch (RFC 6902) with one `replace` per container whose image is in `digests`
    (image as written -> the digest verified for it) and not already pinned."""
    patch: list[dict[str, str]] = []
    for c in containers:
        digest = digests.get(c.image)
        value = None if digest is None else pinned(c.image, digest)
        if value is not None:
            patch.append({"op": "replace", "path": c.pointer, "value": value})
    return patch


def verified_digest(result: Mapping[str, Any]) -> str | None:
    """The digest a batch result verified, or None when it did not verify."""
    verdict = result.get("verdict") or {}
    if verdict.get("verified") is not True:
        return None
    digest = (verdict.get("image") or {}).get("digest")
    return digest if isinstance(digest, str) and digest.startswith("sha256:") else None


@bp.post("/admission/mutate")
def mutate() -> Response:
    """The mutating webhook: every image the request sets by tag that verifies under the
    namespace's policy is rewritten to the digest that was verified, so the kubelet pulls
    exactly that even if the tag moves. It never denies (the validating webhook does): an
    image that does not verify, or cannot be verified now, is left as it is, never pinned to
    a digest that was not verified, whatever the policy's mode."""
    svc = services()
    deadline = time.monotonic() + svc.settings.admission_timeout
    review = _review(svc)
    applies = _applies(svc, review)
    allowed: dict[str, Any] = {"uid": review.uid, "allowed": True}
    targets = tuple(c for c in review.changed() if "@" not in c.image)
    if applies.exempt or applies.named is None or not targets:
        return _answer(allowed)
    images = list(dict.fromkeys(c.image for c in targets))
    _, results = _verify(svc, images, applies.named, deadline)
    digests = {
        image: digest
        for image, result in zip(images, results, strict=True)
        if (digest := verified_digest(result)) is not None
    }
    patch = pin_patch(targets, digests)
    left = [image for image in images if image not in digests]
    summary = f"pinned {len(digests)} of {len(images)} image(s) given by tag to the verified digest"
    if left:
        summary += "; not verified, so not pinned: " + ", ".join(left)
    log.info("admission %s (mutate) of %s %s/%s: %s", review.uid, review.kind,
             review.namespace or "-", review.name or "-", summary)  # fmt: skip
    allowed["auditAnnotations"] = {"pinned": _clip(summary, MAX_ANNOTATION_CHARS)}
    if patch:
        allowed["patchType"] = "JSONPatch"
        allowed["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _answer(allowed)
