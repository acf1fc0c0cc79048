"""What attestation requirements and several trust roots cost in the pure core (no I/O).

Real third-party data from tests/data/third_party: slsa-verifier's cosign attestation (SLSA
provenance v0.2, production root) and GitHub's artifact attestation (GitHub's private instance:
RFC 3161 timestamp, no log), each verified `--n` times in process.

Usage: .venv/bin/python -m bench.core_bench [--n 200]
Results are written down in bench/RESULTS.md; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from bench.verify_bench import summary
from service import core
from tests.core import data

GENERATOR = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
    "generator_container_slsa3.yml@refs/tags/v2.1.0"
)
REQUIREMENT = {
    "predicateType": "slsaprovenance",
    "conditions": [
        {"path": "predicate.builder.id", "equals": GENERATOR},
        {
            "path": "predicate.invocation.configSource.uri",
            "startsWith": "git+https://github.com/${certificate.githubWorkflowRepository}@",
        },
        {"path": "predicate.materials[*].uri", "matches": "^git\\+https://github\\.com/"},
    ],
}


def measure(n: int, run: Callable[[], core.ImageResult]) -> list[float]:
    assert run().verified  # what is measured is a pass
    out: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    now = datetime.now(UTC)
    production, github = data.production_root(), data.github_root()
    image, atts = data.slsa_attestations("v2.1.0")
    base: dict[str, Any] = {
        "certificateIdentity": GENERATOR,
        "certificateOidcIssuer": data.GITHUB_ACTIONS,
    }
    gh_policy: dict[str, Any] = {
        "certificateIdentity": data.GITHUB_IMAGE_SIGNER,
        "certificateOidcIssuer": data.GITHUB_ACTIONS,
    }

    def run(
        roots: Sequence[core.TrustRoot], digest: str, sigs: Any, policy: dict[str, Any]
    ) -> Callable[[], core.ImageResult]:
        return lambda: data.run(list(roots), digest, sigs, policy, now=now)

    rows = [
        (
            "slsa .att, signature policy only",
            run([production], image, atts, base),
        ),
        (
            "slsa .att, plus a provenance requirement (3 conditions)",
            run([production], image, atts, {**base, "attestations": [REQUIREMENT]}),
        ),
        (
            "slsa .att, requirement with its own identity",
            run(
                [production],
                image,
                atts,
                {
                    **base,
                    "attestations": [
                        {**REQUIREMENT, "identities": [{"certificateIdentity": GENERATOR}]}
                    ],
                },
            ),
        ),
        (
            "GitHub bundle, trustRoots [github]",
            run(
                [github],
                data.GITHUB_IMAGE,
                [data.github_bundle()],
                {**gh_policy, "trustRoots": ["github"]},
            ),
        ),
        (
            "GitHub bundle, trustRoots [default, github] (default fails first)",
            run(
                [production, github],
                data.GITHUB_IMAGE,
                [data.github_bundle()],
                {**gh_policy, "trustRoots": ["default", "github"]},
            ),
        ),
    ]
    print("| scenario | n | p50 ms | p95 ms | p99 ms | max ms | req/s |")
    print("|---|---|---|---|---|---|---|")
    for name, fn in rows:
        print(summary(name, measure(n, fn)))


if __name__ == "__main__":
    main()
