"""Every metric the chart's Grafana dashboard queries is one the service serves: a service under
gunicorn is put through verified, failed (enforce and audit), inline and failed-upstream
verifications and a failed TUF refresh, `/metrics` is scraped, and each selector of each panel's
PromQL names a series there, with the labels the query filters and groups by."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import yaml

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.grafana_dashboard import SCRAPE_LABELS, queries, selectors
from tests.otlp import wait_for
from tests.prometheus import prometheus_value
from tests.servers import RegistryServer, free_port
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {
    "certificateIdentity": artifacts.DEFAULT_IDENTITY,
    "certificateOidcIssuer": ACTIONS,
    "trustRoots": ["local"],
}
POLICIES = {
    "policies": [
        {"name": "release", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "watch", "tenant": "platform", "mode": "audit", "policy": POLICY},
    ]
}


@dataclass(frozen=True)
class Scraped:
    """`/metrics` after the service was put through its paces: each series' label names."""

    text: str
    labels: dict[str, set[str]]


def series_labels(text: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+", line)
        if match is None:
            continue
        names = set(re.findall(r'(\w+)="', match.group(2) or ""))
        found.setdefault(match.group(1), set()).update(names)
    return found


@pytest.fixture(scope="module")
def scraped(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scraped]:
    policy_file = tmp_path_factory.mktemp("dashboard") / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(POLICIES))
    settings = {
        "rekor_url": sigstore_local.url,
        # The local Sigstore root by name; the default root refreshes through TUF from a port
        # where nothing listens: a refresh that fails, as the dashboard's panel shows them.
        "trust_roots": f"local={sigstore_local.trusted_root_path}",
        "tuf_url": f"http://127.0.0.1:{free_port()}",
        "policy_file": str(policy_file),
    }
    with (
        sigstore_local.registry_signer(registry.url) as signer,
        start_service(**settings) as (_, client),
    ):
        exercise(client, signer, registry)
        text = wait_for(lambda: refreshed(client.get("/metrics").text))
        yield Scraped(text, series_labels(text))


def refreshed(text: str) -> str | None:
    failed = prometheus_value(text, "sigverify_trust_root_refreshes_total", result="failed")
    return text if failed >= 1 else None


def exercise(client: CheckedClient, signer: RegistrySigner, registry: RegistryServer) -> None:
    """A verification of every outcome, under both modes and inline, each answered once."""
    signed = signer.image("dashboard/signed")
    signer.sign(signed)
    unsigned = signer.image("dashboard/unsigned")
    absent = f"{registry.host}/dashboard/absent:v1"
    for image, policy, expected in (
        (signed.reference, "release", 200),
        (signed.reference, "release", 200),  # a verdict cache hit
        (unsigned.reference, "release", 200),
        (unsigned.reference, "watch", 200),
        (absent, "release", 404),
    ):
        response = client.post("/v1/verify", json={"image": image, "policyName": policy})
        assert response.status_code == expected, response.text
    inline = client.post("/v1/verify", json={"image": unsigned.reference, "policy": POLICY})
    assert inline.json()["verified"] is False


def test_every_metric_the_dashboard_queries_is_served(scraped: Scraped) -> None:
    checked = 0
    for title, expr in queries():
        found, grouped = selectors(expr)
        served = set()
        for selector in found:
            assert selector.metric in scraped.labels, f"{title}: {selector.metric} is not served"
            labels = scraped.labels[selector.metric]
            assert selector.labels - SCRAPE_LABELS <= labels, (title, selector, labels)
            served |= labels
            checked += 1
        # Every label a query groups by is one of its series' (`le` of a histogram included).
        assert grouped - SCRAPE_LABELS <= served, (title, grouped, served)
    assert checked >= 20


def test_the_policy_panels_have_both_modes_to_show(scraped: Scraped) -> None:
    series = "sigverify_verification_duration_seconds_count"

    def count(**labels: str) -> float:
        return prometheus_value(scraped.text, series, **labels)

    assert count(policy="release", mode="enforce", outcome="verified") == 2
    assert count(policy="release", mode="enforce", outcome="failed") == 1  # a denial
    assert count(policy="watch", mode="audit", outcome="failed") == 1  # a would-be denial
    assert count(policy="release", mode="enforce", outcome="error") == 1
    assert count(policy="inline", mode="enforce", outcome="failed") == 1
    # The histogram's buckets are there for the latency percentiles.
    buckets = [line for line in scraped.text.splitlines()
               if line.startswith("sigverify_verification_duration_seconds_bucket{")]  # fmt: skip
    assert any('le="+Inf"' in line for line in buckets)
