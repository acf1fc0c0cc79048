"""Attacks from outside, end to end: the service under gunicorn with Redis, hostile registries on
loopback, and a bystander asking `/healthz` and a cached verification of a good image on a
healthy registry all along. For every attack the bounds are the issue's:

- the bystander is answered within 2 s, never with a 5xx;
- every attacking request is answered within its deadline + 5 s;
- the workers' threads are back to their idle count within 10 s of the last answer (and the
  hostile registry holds nothing: no work continues after an answer);
- 20 distinct 4 MiB indexes grow Redis by less than 40 MiB, no answer is over 1 MiB, and each
  worker's resident size is back within 32 MiB of its level;
- a registry answering 429 with Retry-After, then 200, gives the verdict.

The service has 2 workers x 4 threads; an attack holds at most 4 requests at a time, since each
holds its thread until its deadline (capacity is threads: the bounds are about what an attack
costs beyond the threads it uses, see README "Bounded work"). Each attack has its own hostile
registry (its own host, so its own circuit breaker). Every attack is bounded in count and time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml

from tests.bystander import Bystander, rss, threads, wait_for_threads, workers
from tests.e2e.conftest import ServiceFactory
from tests.hostile_registry import HostileRegistry, SlowClient
from tests.servers import RedisServer, RegistryServer, ServiceServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
DEADLINE = 8.0  # SIGVERIFY_REQUEST_TIMEOUT here
BUDGET = 4.0  # SIGVERIFY_ADMISSION_TIMEOUT here
CLIENT_TIMEOUT = 3.0
BYSTANDER_BOUND = 2.0
ANSWER_SLACK = 5.0
IDLE_WITHIN = 10.0
MIB = 1 << 20
HUGE = (4 << 20) - 4096  # just under SIGVERIFY_MAX_MANIFEST_BYTES
RSS_SLACK_KIB = 32 * 1024  # a worker's resident size after 20 such indexes, over its level

pytestmark = pytest.mark.timeout(300)


@dataclass
class Lab:
    server: ServiceServer
    client: httpx.Client
    good: str  # a signed image by tag on the healthy registry
    hostile: dict[str, HostileRegistry]
    redis: RedisServer
    idle: int  # threads of the busiest worker at rest

    @property
    def master(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid


@pytest.fixture(scope="module")
def lab(
    start_service: ServiceFactory,
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("attacks")
    policy_file = work / "policies.yaml"
    policy_file.write_text(
        yaml.safe_dump(
            {"policies": [{"name": "gate", "tenant": "t", "mode": "enforce", "policy": POLICY}]}
        )
    )
    hostile = {
        "drip": HostileRegistry(drip_interval=0.5, max_hold=60),
        "admission": HostileRegistry(drip_interval=0.5, max_hold=60),
        "silent": HostileRegistry(max_hold=30),
        "huge": HostileRegistry(huge_bytes=HUGE),
        "throttle": HostileRegistry(throttle_count=2, retry_after=1),
    }
    private_redis = RedisServer(work / "redis")
    with running(private_redis), _started(hostile):
        with sigstore_local.registry_signer(registry.url) as signer:
            good = signer.image("attacks/good", "v1")
            signer.sign(good)
        settings = {
            "redis_url": private_redis.url,
            "rekor_url": sigstore_local.url,
            "trust_root_file": str(sigstore_local.trusted_root_path),
            "insecure_registries": ",".join([registry.host, *(h.host for h in hostile.values())]),
            "request_timeout": f"{DEADLINE:g}",
            "admission_timeout": f"{BUDGET:g}",
            "client_timeout": f"{CLIENT_TIMEOUT:g}",
            "policy_file": str(policy_file),
            "admission_policy": "gate",
            "log_level": "WARNING",
        }
        with start_service(**settings) as (server, _):
            client = httpx.Client(base_url=server.url, timeout=60)
            assert verify(client, good.tag_reference).json()["verified"] is True  # now cached
            assert server.proc is not None
            idle = max(threads(workers(server.proc.pid)).values())
            yield Lab(server, client, good.tag_reference, hostile, private_redis, idle)
            client.close()


@contextmanager
def _started(hostile: dict[str, HostileRegistry]) -> Iterator[None]:
    for server in hostile.values():
        server.start()
    try:
        yield
    finally:
        for server in hostile.values():
            server.stop()


def verify(client: httpx.Client, image: str) -> httpx.Response:
    return client.post("/v1/verify", json={"image": image, "policy": POLICY})


@contextmanager
def bystander(lab: Lab) -> Iterator[Bystander]:
    """A bystander throughout the block; afterwards its bounds are asserted."""
    probes: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "healthz": lambda c: c.get("/healthz"),
        "cached-verify": lambda c: verify(c, lab.good),
    }
    with Bystander(lab.server.url, probes, interval=0.2, timeout=30) as watcher:
        yield watcher
    assert watcher.answers, "the bystander asked nothing"
    worst = max(watcher.answers, key=lambda a: a.seconds)
    assert worst.seconds < BYSTANDER_BOUND, f"bystander waited {worst}"
    assert set(watcher.statuses()) == {200}, f"bystander got {sorted(set(watcher.statuses()))}"


def answered_within(bound: float, fn: Callable[[], httpx.Response]) -> httpx.Response:
    started = time.monotonic()
    response = fn()
    took = time.monotonic() - started
    assert took < bound, f"answered after {took:.1f}s, bound {bound:g}s"
    return response


def back_to_idle(lab: Lab) -> None:
    reached, took, worst = wait_for_threads(lab.master, lab.idle, IDLE_WITHIN)
    assert reached, f"a worker still has {worst} threads {took:.1f}s after (idle: {lab.idle})"


def nothing_held(server: HostileRegistry, within: float = 3.0) -> None:
    """The hostile registry sees every connection of the attack closed: nothing still asks."""
    stop = time.monotonic() + within
    while server.holding and time.monotonic() < stop:
        time.sleep(0.05)
    assert server.holding == 0, f"{server.holding} connections still held"


def concurrently(n: int, jobs: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda job: job(), jobs))


# -- a registry that drips its headers ---------------------------------------------------------


def test_dripped_headers_are_answered_by_the_deadline(lab: Lab) -> None:
    hostile = lab.hostile["drip"]
    images = [f"{hostile.host}/drip-headers/app{i}:v1" for i in range(8)]

    def one(image: str) -> Callable[[], httpx.Response]:
        return lambda: answered_within(DEADLINE + ANSWER_SLACK, lambda: verify(lab.client, image))

    with bystander(lab):
        answers = concurrently(4, [one(image) for image in images])
    for response in answers:
        assert response.status_code in (503, 504), response.text
        assert response.headers["content-type"] == "application/problem+json"
    kinds = {r.json()["type"].rsplit("/", 1)[1] for r in answers}
    assert kinds <= {"verification-timeout", "registry-timeout", "registry-circuit-open"}
    nothing_held(hostile)
    back_to_idle(lab)


# -- a registry that never answers, in batches -------------------------------------------------


def test_batches_on_a_silent_registry_are_answered_by_the_deadline(lab: Lab) -> None:
    hostile = lab.hostile["silent"]

    def batch(n: int) -> Callable[[], httpx.Response]:
        images = [{"image": f"{hostile.host}/silent/b{n}-{i}:v1"} for i in range(50)]
        body = {"policy": POLICY, "images": images}
        return lambda: answered_within(
            DEADLINE + ANSWER_SLACK, lambda: lab.client.post("/v1/verify/batch", json=body)
        )

    with bystander(lab):
        answers = concurrently(2, [batch(n) for n in range(4)])
    for response in answers:
        assert response.status_code == 200
        results = response.json()["results"]
        assert len(results) == 50 and response.json()["verified"] is False
        kinds = {r["problem"]["type"].rsplit("/", 1)[1] for r in results}
        assert kinds <= {"verification-timeout", "registry-timeout", "registry-circuit-open"}
    back_to_idle(lab)


# -- admission reviews of dripping images -------------------------------------------------------


def review(uid: str, images: list[str]) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "namespace": "shop",
            "object": {"spec": {"containers": containers}},
        },
    }


def test_admission_reviews_of_dripping_images_leave_nothing_running(lab: Lab) -> None:
    hostile = lab.hostile["admission"]

    def one(n: int) -> Callable[[], httpx.Response]:
        images = [f"{hostile.host}/drip-headers/r{n}-i{k}:v1" for k in range(20)]
        return lambda: answered_within(
            BUDGET + ANSWER_SLACK,
            lambda: lab.client.post("/v1/admission", json=review(f"uid-{n}", images)),
        )

    with bystander(lab):
        answers = concurrently(4, [one(n) for n in range(20)])
    for n, response in enumerate(answers):
        assert response.status_code == 200
        decision = response.json()["response"]
        assert decision["uid"] == f"uid-{n}"
        assert decision["allowed"] is False  # enforce: cannot be verified now
        assert "cannot be verified now" in decision["status"]["message"]
    nothing_held(hostile)
    back_to_idle(lab)


# -- clients that send their requests a byte at a time ------------------------------------------


def test_slow_clients_hold_no_thread_and_are_dropped(lab: Lab) -> None:
    port = int(lab.server.url.rsplit(":", 1)[1])
    clients = [SlowClient("127.0.0.1", port, interval=1.0, max_seconds=30) for _ in range(16)]
    with bystander(lab):
        ended = concurrently(16, [client.run for client in clients])
    for line, seconds in ended:
        assert line == "HTTP/1.1 408 Request Timeout"
        assert seconds < CLIENT_TIMEOUT + ANSWER_SLACK
    back_to_idle(lab)


def test_a_body_sent_slowly_is_dropped_and_a_large_one_refused_unread(lab: Lab) -> None:
    port = int(lab.server.url.rsplit(":", 1)[1])
    body = json.dumps({"image": lab.good, "policy": POLICY}).encode()
    head = (
        f"POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    slow_body = SlowClient("127.0.0.1", port, interval=0.5, max_seconds=30, request=head + body)
    line, seconds = slow_body.run()
    assert line == "HTTP/1.1 408 Request Timeout"
    assert seconds < CLIENT_TIMEOUT + ANSWER_SLACK
    too_large = head.replace(f"Content-Length: {len(body)}".encode(), b"Content-Length: 9999999")
    refused = SlowClient("127.0.0.1", port, interval=0.0, max_seconds=10, request=too_large)
    assert refused.run()[0] == "HTTP/1.1 413 Request Entity Too Large"
    chunked = b"POST /v1/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    refused = SlowClient("127.0.0.1", port, interval=0.0, max_seconds=10, request=chunked)
    assert refused.run()[0] == "HTTP/1.1 411 Length Required"


def test_a_client_that_expects_100_continue_is_told_to_send_its_body(lab: Lab) -> None:
    """curl sends `Expect: 100-continue` with bodies over 1 KiB and waits for the 100."""
    import socket

    body = json.dumps({"image": lab.good, "policy": POLICY}).encode()
    head = (
        "POST /v1/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    port = int(lab.server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    final = answer[answer.rindex(b"HTTP/1.1 ") :]
    assert final.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(final.split(b"\r\n\r\n", 1)[1])["verified"] is True


# -- a registry serving huge distinct indexes ---------------------------------------------------


def test_huge_distinct_indexes_neither_fill_redis_nor_bloat_answers(lab: Lab) -> None:
    hostile = lab.hostile["huge"]
    direct = redis.Redis.from_url(lab.redis.url)
    before = int(direct.info("memory")["used_memory"])
    rss_before = rss(workers(lab.master))

    def one(n: int) -> Callable[[], httpx.Response]:
        image = f"{hostile.host}/huge/app:t{n}"
        return lambda: answered_within(DEADLINE + ANSWER_SLACK, lambda: verify(lab.client, image))

    with bystander(lab):  # two at a time: each costs a worker about a second of CPU
        answers = concurrently(2, [one(n) for n in range(20)])
    grown = int(direct.info("memory")["used_memory"]) - before
    for response in answers:
        assert response.status_code == 200, response.text
        assert len(response.content) < MIB
        verdict = response.json()
        assert verdict["verified"] is False
        image = verdict["image"]
        assert len(image["platforms"]) == 32
        assert image["platformCount"] > 10_000
        summary = image["platformSummary"]
        assert (
            summary["otherPlatforms"] + sum(summary["byPlatform"].values())
            == (image["platformCount"])
        )
    assert len({r.json()["image"]["digest"] for r in answers}) == 20  # all distinct
    assert grown < 40 * MIB, f"Redis grew by {grown / MIB:.1f} MiB"
    back_to_idle(lab)
    # Each of these requests peaks at tens of MiB; what they freed is given back to the system.
    rss_after = rss(workers(lab.master))
    for pid, before_kib in rss_before.items():
        assert rss_after[pid] - before_kib < RSS_SLACK_KIB, (rss_before, rss_after)


# -- a registry that throttles, then answers ----------------------------------------------------


def test_429_with_retry_after_then_200_gives_the_verdict(
    lab: Lab, sigstore_local: LocalSigstore, tmp_path: Path
) -> None:
    hostile = lab.hostile["throttle"]
    with hostile.calm(), RegistrySigner(sigstore_local.signer, hostile.url) as signer:
        image = signer.image("throttle/app", "v1")
        signer.sign(image)
    hostile.reset()
    response = answered_within(
        DEADLINE + ANSWER_SLACK, lambda: verify(lab.client, image.tag_reference)
    )
    assert response.status_code == 200, response.text
    assert response.json()["verified"] is True
    assert sum(hostile.throttled.values()) >= 2
