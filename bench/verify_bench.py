"""Latency and throughput of `POST /v1/verify` under gunicorn, on this machine, loopback only.

Starts what the tests start (a private redis-server and docker-registry, the local Sigstore
instance, `sigverify serve` with 2 workers x 4 threads), signs images keylessly, and measures:

- cold:        first verification of each image (registry, Rekor lookup, core, signing, caches)
- rekor-warm:  a new policy for the same images: verdict miss, Rekor entries from Redis
- verdict-hit: the same request again and again from concurrent clients
- core:        the pure verification of one signature, in process (no I/O)

Usage: .venv/bin/python -m bench.verify_bench [--images 30] [--requests 1000] [--clients 8]
Results are written down in bench/RESULTS.md; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from service import core
from tests.servers import RedisServer, RegistryServer, ServiceServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.instance import LocalSigstore

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
STRICT = {**POLICY, "transparencyLog": {"allowInclusionPromise": False}}


def summary(name: str, seconds: Sequence[float], wall: float | None = None) -> str:
    """One markdown row: count, p50, p95, p99, max in ms, and requests per second."""
    ms = sorted(s * 1000 for s in seconds)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]

    rate = f"{len(ms) / wall:.0f}" if wall else "-"
    return (
        f"| {name} | {len(ms)} | {statistics.median(ms):.1f} | {pct(0.95):.1f} | "
        f"{pct(0.99):.1f} | {ms[-1]:.1f} | {rate} |"
    )


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="an extra setting"
    )
    args = parser.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        redis, registry = RedisServer(work / "redis"), RegistryServer(work / "registry")
        with running(redis), running(registry), LocalSigstore(work / "sigstore") as sigstore:
            env = {
                "SIGVERIFY_REDIS_URL": redis.url,
                "SIGVERIFY_REKOR_URL": sigstore.url,
                "SIGVERIFY_TRUST_ROOT_FILE": str(sigstore.trusted_root_path),
                "SIGVERIFY_INSECURE_REGISTRIES": registry.host,
                "SIGVERIFY_ALLOW_LOOPBACK": "true",
                "SIGVERIFY_LOG_LEVEL": "WARNING",
                **dict(item.split("=", 1) for item in args.set),
            }
            with sigstore.registry_signer(registry.url) as signer:
                images = [signer.image(f"bench/app{i}") for i in range(args.images)]
                layers = [signer.sign(image) for image in images]
            service = ServiceServer(work / "service", env=env)
            with running(service), httpx.Client(base_url=service.url, timeout=30) as client:

                def verify(image: str, policy: dict[str, Any]) -> None:
                    response = client.post("/v1/verify", json={"image": image, "policy": policy})
                    assert response.status_code == 200 and response.json()["verified"], (
                        response.text
                    )

                sigstore.requests.reset()
                cold = [timed(functools.partial(verify, i.reference, POLICY)) for i in images]
                rekor_cold = sigstore.requests.total
                warm = [timed(functools.partial(verify, i.reference, STRICT)) for i in images]
                rekor_warm = sigstore.requests.total - rekor_cold
                rows.append(summary("cold (registry + Rekor + core + sign)", cold))
                rows.append(summary("rekor-warm (verdict miss, entry from Redis)", warm))

                refs = [images[n % len(images)].reference for n in range(args.requests)]
                single = [timed(functools.partial(verify, r, POLICY)) for r in refs[:300]]
                rows.append(summary("verdict-hit, 1 client", single))
                with ThreadPoolExecutor(args.clients) as pool:
                    start = time.perf_counter()
                    hits = list(pool.map(lambda r: timed(lambda: verify(r, POLICY)), refs))
                    wall = time.perf_counter() - start
                rows.append(summary(f"verdict-hit, {args.clients} clients", hits, wall))
        # The pure core, in process: one keyless signature with its fetched entry.
        trust = core.TrustRoot.from_json(sigstore.trusted_root_path.read_bytes())
        layer = layers[0]
        assert layer.layer is not None
        signature = layer.layer.as_core()
        assert layer.entry is not None
        entry = core.LogEntry.from_rekor_response(layer.entry.response)
        (lookup,) = core.needed_log_lookups([signature])
        policy = core.policy_from_mapping(POLICY)
        now = datetime.now(UTC)
        times = [
            timed(
                lambda: core.verify_image(
                    image_digest=images[0].digest,
                    signatures=[signature],
                    log_entries={lookup: (entry,)},
                    policy=policy,
                    trust=trust,
                    now=now,
                )
            )
            for _ in range(200)
        ]
        rows.append(summary("core only, one keyless signature", times))
    print("| scenario | n | p50 ms | p95 ms | p99 ms | max ms | req/s |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nRekor requests: {rekor_cold} for {args.images} cold verifications, {rekor_warm} warm")


if __name__ == "__main__":
    main()
