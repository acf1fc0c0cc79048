"""A bounded soak: mixed good, bad and hostile images against the service under gunicorn, with
Redis and Rekor each restarted once along the way.

Starts what the tests start (a private redis-server and docker-registry, the local Sigstore
instance, `sigverify serve` with 2 workers x 4 threads, its default deadlines) and the hostile
registries of `tests/hostile_registry.py` (one per attack, each its own host and so its own circuit
breaker), and runs `--clients` callers for `--minutes`, each picking an image at random:

| kind     | image                                                  | a wrong answer is      |
|----------|--------------------------------------------------------|------------------------|
| good     | signed by the expected identity (tag or digest)        | `verified: false`      |
| bad      | signed by another identity                             | `verified: true`       |
| unsigned | no signature at all                                    | `verified: true`       |
| drip     | a registry that drips its headers                      | `verified: true`       |
| silent   | a registry that never answers                          | `verified: true`       |
| throttle | signed, on a registry answering every 5th request 429 | `verified: false`      |
| huge     | a distinct 4 MiB index every time                      | `verified: true`       |

A 5xx is not a wrong answer (an outage must be one), but it is counted, by kind. Redis is
stopped at a third of the run and Rekor at two thirds, each for `--down` seconds, and started
again on its own port. The report:
requests, wrong answers (must be 0), 5xx, p50/p99 latency, answers over the deadline + 5 s, the
largest answer, and each worker's resident memory at the start and the end.

Usage: .venv/bin/python -m bench.soak [--minutes 10] [--clients 6]
Results are written down in bench/RESULTS.md; nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.bystander import rss, workers
from tests.hostile_registry import HostileRegistry
from tests.servers import RedisServer, RegistryServer, ServiceServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
DEADLINE = 30.0  # the service's default SIGVERIFY_REQUEST_TIMEOUT
WEIGHTS = {
    "good": 40,
    "bad": 15,
    "unsigned": 15,
    "drip": 5,
    "silent": 5,
    "throttle": 5,
    "huge": 15,
}
EXPECTED = {  # what `verified` must be when a verdict comes back
    "good": True,
    "bad": False,
    "unsigned": False,
    "drip": False,
    "silent": False,
    "throttle": True,
    "huge": False,
}


@dataclass
class Tally:
    """Every answer, by kind; thread-safe."""

    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    wrong: Counter[str] = field(default_factory=Counter)
    server_errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    over_deadline: int = 0
    largest: int = 0
    examples: list[str] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # requests with no answer, why
    failed_at: list[float] = field(default_factory=list)  # when, in seconds from the start
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        kind: str,
        seconds: float,
        response: httpx.Response | None,
        failure: str = "",
        at: float = 0.0,
    ) -> None:
        with self._lock:
            self.requests[kind] += 1
            self.latencies.append(seconds)
            self.by_kind.setdefault(kind, []).append(seconds)
            if seconds > DEADLINE + 5:
                self.over_deadline += 1
            if response is None:
                self.server_errors[kind] += 1
                self.statuses[0] += 1
                self.failures[f"{kind}: {failure}"] += 1
                self.failed_at.append(at)
                return
            self.statuses[response.status_code] += 1
            self.largest = max(self.largest, len(response.content))
            if response.status_code >= 500:
                self.server_errors[kind] += 1
            elif response.status_code == 200:
                verified = response.json().get("verified")
                if verified is not EXPECTED[kind]:
                    self.wrong[kind] += 1
                    if len(self.examples) < 5:
                        self.examples.append(f"{kind}: {response.text[:300]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis, Rekor are down")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tally = Tally()
    events: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis, registry = RedisServer(work / "redis"), RegistryServer(work / "registry")
        # One hostile registry per attack: each its own host, so its own circuit breaker.
        hostile = {
            "drip": HostileRegistry(drip_interval=1.0, max_hold=60),
            "silent": HostileRegistry(max_hold=60),
            "huge": HostileRegistry(),
            "throttle": HostileRegistry(throttle_every=5, retry_after=1),
        }
        with (
            running(redis),
            running(registry),
            LocalSigstore(work / "sigstore") as sigstore,
            hostile["drip"],
            hostile["silent"],
            hostile["huge"],
            hostile["throttle"],
        ):
            pools = prepare(sigstore, registry, hostile["throttle"])
            env = {
                "SIGVERIFY_REDIS_URL": redis.url,
                "SIGVERIFY_REKOR_URL": sigstore.url,
                "SIGVERIFY_TRUST_ROOT_FILE": str(sigstore.trusted_root_path),
                "SIGVERIFY_INSECURE_REGISTRIES": ",".join(
                    [registry.host, *(h.host for h in hostile.values())]
                ),
                "SIGVERIFY_ALLOW_LOOPBACK": "true",
                "SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1",
                "SIGVERIFY_REKOR_TIMEOUT": "2",
                "SIGVERIFY_LOG_LEVEL": "WARNING",
            }
            service = ServiceServer(work / "service", env=env)
            with running(service):
                assert service.proc is not None
                master = service.proc.pid
                while len(workers(master)) < 2:  # both booted
                    time.sleep(0.1)
                rss_start = rss(workers(master))
                memory = MemoryWatch(master, time.monotonic())
                started = time.monotonic()
                stop_at = started + args.minutes * 60
                huge_counter = iter(range(10**9))
                lock = threading.Lock()

                def pick() -> tuple[str, str]:
                    with lock:
                        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
                        if kind == "huge":
                            host = hostile["huge"].host
                            return kind, f"{host}/huge/soak:t{next(huge_counter)}"
                        if kind in ("drip", "silent"):
                            n = rng.randrange(10**6)
                            mode = "drip-headers" if kind == "drip" else "silent"
                            return kind, f"{hostile[kind].host}/{mode}/soak{n}:v1"
                        return kind, rng.choice(pools[kind])

                def caller() -> None:
                    with httpx.Client(base_url=service.url, timeout=DEADLINE + 30) as client:
                        while time.monotonic() < stop_at:
                            kind, image = pick()
                            t0 = time.monotonic()
                            failure = ""
                            try:
                                response: httpx.Response | None = client.post(
                                    "/v1/verify", json={"image": image, "policy": POLICY}
                                )
                            except httpx.HTTPError as exc:
                                response, failure = None, f"{type(exc).__name__}: {exc}"
                            tally.add(kind, time.monotonic() - t0, response, failure, t0 - started)

                rekor_port = sigstore.server.port

                def restarts() -> None:
                    third = args.minutes * 60 / 3
                    for at, name, stop, start in (
                        (third, "redis", redis.stop, redis.start),
                        (2 * third, "rekor", sigstore.server.stop,
                         lambda: sigstore.server.start(rekor_port)),
                    ):  # fmt: skip
                        wait = started + at - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                        t0 = time.monotonic()
                        stop()
                        time.sleep(args.down)
                        start()
                        events.append(
                            f"{name} stopped at {t0 - started:.0f} s, back "
                            f"{time.monotonic() - t0:.1f} s later"
                        )

                threads = [threading.Thread(target=caller) for _ in range(args.clients)]
                threads.append(threading.Thread(target=restarts))
                with memory:
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                wall = time.monotonic() - started
                time.sleep(5)
                rss_end = rss(workers(master))
    report(tally, wall, rss_start, rss_end, events=events, args=args, memory=memory)


def prepare(
    sigstore: LocalSigstore, registry: RegistryServer, throttling: HostileRegistry
) -> dict[str, list[str]]:
    """Good, bad and unsigned images on the healthy registry, a signed one on the throttling
    repository of the hostile one."""
    pools: dict[str, list[str]] = {"good": [], "bad": [], "unsigned": [], "throttle": []}
    with sigstore.registry_signer(registry.url) as signer:
        for i in range(8):
            image = signer.image(f"soak/good{i}", "v1")
            signer.sign(image)
            pools["good"] += [image.reference, image.tag_reference]
            bad = signer.image(f"soak/bad{i}", "v1")
            signer.sign(bad, identity=signer.signer.identity("https://github.com/evil/x"))
            pools["bad"] += [bad.reference, bad.tag_reference]
            unsigned = signer.image(f"soak/unsigned{i}", "v1")
            pools["unsigned"] += [unsigned.reference, unsigned.tag_reference]
    with throttling.calm(), RegistrySigner(sigstore.signer, throttling.url) as signer:
        throttled = signer.image("throttle/soak", "v1")
        signer.sign(throttled)
        pools["throttle"] = [throttled.tag_reference]
    return pools


def report(
    tally: Tally,
    wall: float,
    rss_start: dict[int, int],
    rss_end: dict[int, int],
    *,
    events: list[str],
    args: argparse.Namespace,
    memory: MemoryWatch,
) -> None:
    ms = sorted(s * 1000 for s in tally.latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    total = sum(tally.requests.values())
    print(f"soak: {args.minutes:g} min, {args.clients} clients, seed {args.seed}; {wall:.0f} s")
    print("| measure | value |\n|---|---|")
    rows: list[tuple[str, str]] = [
        ("requests", f"{total} ({total / wall:.1f}/s)"),
        ("by kind", ", ".join(f"{k} {n}" for k, n in sorted(tally.requests.items()))),
        ("wrong answers", str(sum(tally.wrong.values()))),
        (
            "5xx (or no answer), by kind",
            ", ".join(f"{k} {n}" for k, n in sorted(tally.server_errors.items())) or "0",
        ),
        ("statuses", json.dumps(dict(sorted(tally.statuses.items())))),
        ("p50 / p99 / max ms", f"{statistics.median(ms):.0f} / {pct(0.99):.0f} / {ms[-1]:.0f}"),
        (
            "p99 ms by kind",
            ", ".join(f"{k} {_p99(v):.0f}" for k, v in sorted(tally.by_kind.items())),
        ),
        ("answers later than the deadline + 5 s", str(tally.over_deadline)),
        ("largest answer", f"{tally.largest / 1e3:.0f} kB"),
        ("worker RSS MiB at start", _mib(rss_start)),
        ("worker RSS MiB at the end", _mib(rss_end)),
        ("worker RSS MiB, highest seen (sampled every 5 s)", f"{memory.peak / 1024:.0f}"),
        ("worker processes seen (max_requests recycles them)", str(len(memory.pids))),
        ("new workers first seen at (s)", ", ".join(f"{t:.0f}" for t in memory.new_workers)),
        ("requests with no answer at (s)", ", ".join(f"{t:.0f}" for t in tally.failed_at)),
        *((f"event {i + 1}", e) for i, e in enumerate(events)),
    ]
    for name, value in rows:
        print(f"| {name} | {value} |")
    for example in tally.examples:
        print("wrong:", example)
    for failure, count in tally.failures.most_common():
        print(f"no answer ({count}x): {failure}")


@dataclass
class MemoryWatch:
    """Samples the workers' resident memory every 5 s while in the block."""

    master: int
    started: float
    peak: int = 0
    pids: set[int] = field(default_factory=set)
    new_workers: list[float] = field(default_factory=list)  # when a new worker was first seen
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemoryWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(5):
            sizes = rss(workers(self.master))
            if self.pids and set(sizes) - self.pids:
                self.new_workers.append(time.monotonic() - self.started)
            self.pids.update(sizes)
            self.peak = max([self.peak, *sizes.values()])


def _p99(seconds: list[float]) -> float:
    ms = sorted(s * 1000 for s in seconds)
    return ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]


def _mib(values: dict[int, int]) -> str:
    return ", ".join(f"{v / 1024:.0f}" for _, v in sorted(values.items())) or "-"


if __name__ == "__main__":
    main()
