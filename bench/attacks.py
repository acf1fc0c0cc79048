"""What a hostile registry or a slow client costs the service under gunicorn with Redis.

Starts a private redis-server and docker-registry (a good, signed image for bystanders), the
local Sigstore instance, the hostile registry of `tests/hostile_registry.py`, and `sigverify serve`
(2 workers x 4 threads, a fresh one per scenario, Redis flushed), then runs each attack while a
bystander asks `/healthz` and a cached verification of the good image, and reports:

- drip-headers:   one verification on a registry that drips its response headers
- silent-batch:   a batch of 50 images on a registry that never answers
- silent-batches: 12 such batches at once, and what the bystander sees
- admission:      admission reviews of 20 dripping images each from 12 clients (10 s timeout),
                  the bystander, the workers' peak threads and threads 10 s after the last answer
- slow-clients:   16 clients sending a header byte every 2 s, and the bystander
- huge-indexes:   distinct 4 MiB indexes: Redis growth, largest answer, worker RSS
- throttle:       a registry answering 429 with Retry-After twice, then 200

Every attack is bounded in count and time; all traffic is on 127.0.0.1.

Usage: .venv/bin/python -m bench.attacks [--only NAME ...] [--reviews 60] [--indexes 40]
Results are written down in bench/RESULTS.md; nothing here asserts a bound (the tests in
tests/e2e/test_attacks.py do).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from tests.bystander import Bystander, ThreadWatch, rss, threads, wait_for_threads, workers
from tests.hostile_registry import HostileRegistry, SlowClient
from tests.servers import RedisServer, RegistryServer, ServiceServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
Row = tuple[str, str, str]


@dataclass
class Lab:
    """Everything the scenarios share."""

    work: Path
    redis: RedisServer
    registry: RegistryServer
    sigstore: LocalSigstore
    hostile: HostileRegistry
    good: str  # a signed image by tag on the healthy registry
    throttled: str  # a signed image by tag on the hostile registry's throttle/ repository
    extra: dict[str, str]

    def env(self) -> dict[str, str]:
        policy_file = self.work / "policies.yaml"
        policy_file.write_text(
            yaml.safe_dump(
                {
                    "policies": [
                        {"name": "gate", "tenant": "bench", "mode": "enforce", "policy": POLICY}
                    ]
                },
            )
        )
        return {
            "SIGVERIFY_REDIS_URL": self.redis.url,
            "SIGVERIFY_REKOR_URL": self.sigstore.url,
            "SIGVERIFY_TRUST_ROOT_FILE": str(self.sigstore.trusted_root_path),
            "SIGVERIFY_INSECURE_REGISTRIES": f"{self.registry.host},{self.hostile.host}",
            "SIGVERIFY_ALLOW_LOOPBACK": "true",
            "SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1",
            "SIGVERIFY_REGISTRY_TIMEOUT": "10",
            "SIGVERIFY_POLICY_FILE": str(policy_file),
            "SIGVERIFY_ADMISSION_POLICY": "gate",
            "SIGVERIFY_LOG_LEVEL": "WARNING",
            **self.extra,
        }

    @contextmanager
    def service(self, name: str) -> Iterator[ServiceServer]:
        """A fresh service on a flushed Redis, its verdict for the good image cached."""
        redis.Redis.from_url(self.redis.url).flushall()
        self.hostile.release()
        self.hostile.reset()
        server = ServiceServer(self.work / f"service-{name}", env=self.env())
        with running(server):
            with httpx.Client(base_url=server.url, timeout=30) as client:
                verify(client, self.good)
            yield server
        self.hostile.release()


def verify(client: httpx.Client, image: str, timeout: float = 300) -> httpx.Response:
    return client.post("/v1/verify", json={"image": image, "policy": POLICY}, timeout=timeout)


def bystander(lab: Lab, server: ServiceServer) -> Bystander:
    return Bystander(
        server.url,
        {
            "healthz": lambda c: c.get("/healthz"),
            "cached-verify": lambda c: verify(c, lab.good),
        },
        timeout=150,
    )


def seen(by: Bystander) -> list[Row]:
    """What the bystander saw: worst answer per probe, and answers that were not 200."""
    rows: list[Row] = []
    for probe in ("healthz", "cached-verify"):
        bad = [s for s in by.statuses(probe) if s != 200]
        rows.append((f"bystander {probe}", "worst s", f"{by.worst(probe):.1f}"))
        rows.append((f"bystander {probe}", "not 200", f"{len(bad)} of {len(by.statuses(probe))}"))
    return rows


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


def timed(fn: Callable[[], httpx.Response]) -> tuple[float, int, int]:
    """(seconds, status, body bytes); status 0 when no answer came in the client's time."""
    started = time.monotonic()
    try:
        response = fn()
    except httpx.HTTPError:
        return time.monotonic() - started, 0, 0
    return time.monotonic() - started, response.status_code, len(response.content)


def settle(server: ServiceServer, idle: int) -> Row:
    assert server.proc is not None
    reached, took, worst = wait_for_threads(server.proc.pid, idle, 10)
    value = f"{took:.1f}" if reached else f"not within 10 ({worst} threads)"
    return ("threads", "s back to idle after the last answer", value)


def idle_threads(server: ServiceServer) -> int:
    assert server.proc is not None
    return max(threads(workers(server.proc.pid)).values())


# -- scenarios ------------------------------------------------------------------------------------


def drip_headers(lab: Lab) -> list[Row]:
    with lab.service("drip-headers") as server, httpx.Client(base_url=server.url) as client:
        image = f"{lab.hostile.host}/drip-headers/app:v1"
        seconds, status, _ = timed(lambda: verify(client, image))
    return [("drip-headers, 1 verification", "s (status)", f"{seconds:.1f} ({status})")]


def silent_batch(lab: Lab) -> list[Row]:
    images = [{"image": f"{lab.hostile.host}/silent/app{i}:v1"} for i in range(50)]
    body = {"policy": POLICY, "images": images}
    with lab.service("silent-batch") as server, httpx.Client(base_url=server.url) as client:
        seconds, status, _ = timed(lambda: client.post("/v1/verify/batch", json=body, timeout=300))
    return [("silent, 1 batch of 50", "s (status)", f"{seconds:.1f} ({status})")]


def silent_batches(lab: Lab) -> list[Row]:
    rows: list[Row] = []
    with lab.service("silent-batches") as server:
        idle = idle_threads(server)

        def batch(n: int) -> tuple[float, int, int]:
            images = [{"image": f"{lab.hostile.host}/silent/b{n}-{i}:v1"} for i in range(50)]
            body = {"policy": POLICY, "images": images}
            with httpx.Client(base_url=server.url) as client:
                return timed(lambda: client.post("/v1/verify/batch", json=body, timeout=300))

        with bystander(lab, server) as by, ThreadPoolExecutor(12) as pool:
            results = list(pool.map(batch, range(12)))
        rows.append(
            (
                "silent, 12 batches of 50 at once",
                "slowest s (statuses)",
                f"{max(r[0] for r in results):.1f} ({sorted({r[1] for r in results})})",
            )
        )
        rows.extend(seen(by))
        rows.append(settle(server, idle))
    return rows


def admission(lab: Lab, reviews: int) -> list[Row]:
    rows: list[Row] = []
    with lab.service("admission") as server:
        assert server.proc is not None
        idle = idle_threads(server)

        def one(n: int) -> tuple[float, int, int]:
            images = [f"{lab.hostile.host}/drip-headers/r{n}-i{k}:v1" for k in range(20)]
            with httpx.Client(base_url=server.url, timeout=10) as client:
                return timed(lambda: client.post("/v1/admission", json=review(f"uid-{n}", images)))

        with (
            ThreadWatch(server.proc.pid) as watch,
            bystander(lab, server) as by,
            ThreadPoolExecutor(12) as pool,
        ):
            results = list(pool.map(one, range(reviews)))
        late = sum(1 for r in results if r[1] != 200)
        rows.append(
            (
                f"admission, {reviews} reviews of 20 dripping images",
                "slowest s; not answered 200 in 10 s",
                f"{max(r[0] for r in results):.1f}; {late}",
            )
        )
        rows.extend(seen(by))
        rows.append(("threads", "idle / peak per worker", f"{idle} / {watch.peak}"))
        rows.append(settle(server, idle))
    return rows


def slow_clients(lab: Lab) -> list[Row]:
    rows: list[Row] = []
    with lab.service("slow-clients") as server:
        port = int(server.url.rsplit(":", 1)[1])
        clients = [SlowClient("127.0.0.1", port, interval=2.0, max_seconds=90) for _ in range(16)]
        with bystander(lab, server) as by, ThreadPoolExecutor(16) as pool:
            ended = list(pool.map(lambda c: c.run(), clients))
        endings = sorted({line for line, _ in ended})
        rows.append(
            (
                "16 slow clients (a header byte / 2 s)",
                "longest held s; how they ended",
                f"{max(s for _, s in ended):.1f}; {', '.join(endings)}",
            )
        )
        rows.extend(seen(by))
    return rows


def huge_indexes(lab: Lab, count: int) -> list[Row]:
    rows: list[Row] = []
    direct = redis.Redis.from_url(lab.redis.url)
    with lab.service("huge-indexes") as server:
        assert server.proc is not None
        pids = workers(server.proc.pid)
        before_rss = rss(pids)
        before = int(direct.info("memory")["used_memory"])

        def one(n: int) -> tuple[float, int, int]:
            image = f"{lab.hostile.host}/huge/app:t{n}"
            with httpx.Client(base_url=server.url, timeout=120) as client:
                return timed(lambda: verify(client, image))

        with bystander(lab, server) as by, ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(count)))
        after = int(direct.info("memory")["used_memory"])
        after_rss = rss(pids)
        time.sleep(10)
        later_rss = rss(pids)
        rows.append(
            (
                f"{count} distinct 4 MiB indexes",
                "Redis growth MiB; largest answer MB; statuses",
                f"{(after - before) / 2**20:.0f}; {max(r[2] for r in results) / 1e6:.2f}; "
                f"{sorted({r[1] for r in results})}",
            )
        )
        rows.append(
            (
                "worker RSS MiB",
                "before / after / 10 s later (each worker)",
                " ; ".join(
                    f"{before_rss[p] / 1024:.0f} / {after_rss.get(p, 0) / 1024:.0f} / "
                    f"{later_rss.get(p, 0) / 1024:.0f}"
                    for p in pids
                ),
            )
        )
        rows.extend(seen(by))
    return rows


def throttle(lab: Lab) -> list[Row]:
    with lab.service("throttle") as server, httpx.Client(base_url=server.url) as client:
        lab.hostile.reset()
        response = verify(client, lab.throttled)
        body = response.json()
        outcome = (
            f"verified={body['verified']}"
            if response.status_code == 200
            else body.get("type", "").rsplit("/", 1)[-1]
        )
    return [
        (
            "429 + Retry-After: 1, twice, then 200",
            "status; outcome",
            f"{response.status_code}; {outcome}",
        )
    ]


SCENARIOS = (
    "drip-headers",
    "silent-batch",
    "silent-batches",
    "admission",
    "slow-clients",
    "huge-indexes",
    "throttle",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--reviews", type=int, default=60)
    parser.add_argument("--indexes", type=int, default=40)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an extra setting"
    )
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis_server, registry = RedisServer(work / "redis"), RegistryServer(work / "registry")
        hostile = HostileRegistry(drip_interval=1.0, max_hold=120, throttle_count=2, retry_after=1)
        with (
            running(redis_server),
            running(registry),
            LocalSigstore(work / "sigstore") as sigstore,
            hostile,
        ):
            with sigstore.registry_signer(registry.url) as signer:
                good = signer.image("bench/good", "v1")
                signer.sign(good)
            with hostile.calm(), RegistrySigner(sigstore.signer, hostile.url) as signer:
                throttled = signer.image("throttle/app", "v1")
                signer.sign(throttled)
            lab = Lab(
                work,
                redis_server,
                registry,
                sigstore,
                hostile,
                good.tag_reference,
                throttled.tag_reference,
                dict(item.split("=", 1) for item in args.set),
            )
            runs: dict[str, Callable[[], list[Row]]] = {
                "drip-headers": lambda: drip_headers(lab),
                "silent-batch": lambda: silent_batch(lab),
                "silent-batches": lambda: silent_batches(lab),
                "admission": lambda: admission(lab, args.reviews),
                "slow-clients": lambda: slow_clients(lab),
                "huge-indexes": lambda: huge_indexes(lab, args.indexes),
                "throttle": lambda: throttle(lab),
            }
            for name in args.only:
                started = time.monotonic()
                found = runs[name]()
                rows.extend(found)
                print(json.dumps({"scenario": name, "seconds": round(time.monotonic() - started)}))
                for row in found:
                    print("| " + " | ".join(row) + " |", flush=True)
    print("\n| attack | measure | value |\n|---|---|---|")
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))


if __name__ == "__main__":
    main()
