"""The chart's Grafana dashboard: a ConfigMap that Grafana's sidecar loads, behind a flag, whose
JSON is Grafana's dashboard model and whose queries are PromQL about sigverify's metrics.

The dashboard JSON is validated against a JSON schema of Grafana's dashboard model made from
@grafana/schema's TypeScript types (scripts/grafana-schema.sh: no Grafana package ships a JSON
schema, and the Go dashboard linter is not installable here). That every metric it queries is
served is checked against a running service in tests/e2e/test_dashboard.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy import helm
from tests.deploy.helm import CHART, NAMESPACE, RELEASE, ROOT
from tests.deploy.test_chart import rendered
from tests.grafana_dashboard import DASHBOARD, dashboard, panels, queries, selectors

SCHEMA = ROOT / ".venv" / "tools" / "grafana" / "dashboard.schema.json"
GRID_COLUMNS = 24


def grafana_schema() -> dict[str, Any]:
    if not SCHEMA.is_file():
        pytest.fail(f"{SCHEMA} is missing: run scripts/grafana-schema.sh (scripts/test.sh does it)")
    loaded = json.loads(SCHEMA.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_no_dashboard_unless_asked_for() -> None:
    assert not [
        c for c in rendered("defaults").all("ConfigMap") if "dashboard" in c["metadata"]["name"]
    ]


def test_the_dashboard_is_a_configmap_for_grafanas_sidecar() -> None:
    values = yaml.safe_load((CHART / "ci" / "dashboard-values.yaml").read_text())["metrics"]
    config = rendered("dashboard").get("ConfigMap", f"{RELEASE}-dashboard")
    metadata = config["metadata"]
    assert metadata["namespace"] == values["dashboard"]["namespace"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["labels"]["team"] == "platform"
    assert metadata["annotations"] == {"grafana_folder": "Platform"}
    (name,) = config["data"]
    assert name.endswith(".json")
    assert json.loads(config["data"][name]) == json.loads(DASHBOARD.read_text())


def test_the_sidecar_label_and_namespace_are_configurable() -> None:
    sets = ["metrics.dashboard.enabled=true", "metrics.dashboard.labels.grafana_dashboard=null",
            "metrics.dashboard.labels.dashboards=sigverify"]  # fmt: skip
    config = helm.template(sets=sets).get("ConfigMap", f"{RELEASE}-dashboard")
    assert "grafana_dashboard" not in config["metadata"]["labels"]
    assert config["metadata"]["labels"]["dashboards"] == "sigverify"
    assert config["metadata"]["namespace"] == NAMESPACE  # the release's by default


def test_the_schema_refuses_a_bad_dashboard_value() -> None:
    message = helm.template_error(sets=["metrics.dashboard.namespace=Not_A_Namespace"])
    assert "/metrics/dashboard/namespace" in message, message


def test_the_json_is_grafanas_dashboard_model(tmp_path: Path) -> None:
    schema = grafana_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(dashboard(), schema)
    # The schema admits only the fields Grafana's model names: a misspelt one is refused.
    broken = json.loads(DASHBOARD.read_text())
    broken["panels"][0]["gridPoss"] = broken["panels"][0].pop("gridPos")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    broken = json.loads(DASHBOARD.read_text())
    broken["schemaVersion"] = "39"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_panels_have_ids_places_and_the_datasource_variable() -> None:
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        taken = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not taken & cells, f"{panel['title']} overlaps another panel"
        cells |= taken
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    (datasource,) = [v for v in dashboard()["templating"]["list"] if v["name"] == "datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")


def test_every_query_is_promql() -> None:
    for title, expr in queries():
        found, _ = selectors(expr)  # raises on a syntax error
        assert found, (title, expr)
        assert all(s.metric.startswith(("sigverify_", "http_server_")) for s in found), title


def test_the_panels_the_platform_team_asked_for() -> None:
    """Rate by outcome, failures by reason, by policy and mode (audit would-be denials beside
    enforce denials), latency percentiles, cache hit ratio, upstream errors, breaker state."""
    by_title: dict[str, str] = {}
    for title, expr in queries():  # a panel's targets together, as `a or b`
        by_title[title] = f"{by_title[title]} or {expr}" if title in by_title else expr
    wanted = {
        "Verifications by outcome": ("sigverify_verification_duration_seconds_count", {"outcome"}),
        "Failures by reason": ("sigverify_verifications_total", {"reason"}),
        "By policy and mode": (
            "sigverify_verification_duration_seconds_count", {"policy", "mode", "outcome"},
        ),
        "Denials and would-be denials by policy": (
            "sigverify_verification_duration_seconds_count", {"policy", "mode"},
        ),
        "Verification latency": ("sigverify_verification_duration_seconds_bucket", {"le"}),
        "Cache hit ratio": ("sigverify_cache_lookups_total", {"cache"}),
        "Upstream errors": ("sigverify_upstream_errors_total", {"system", "reason"}),
        "Circuit breakers": ("sigverify_circuit_breaker_state", {"upstream"}),
    }  # fmt: skip
    for title, (metric, grouped_by) in wanted.items():
        found, grouped = selectors(by_title[title])
        assert metric in {s.metric for s in found}, title
        assert grouped_by <= grouped, (title, grouped)
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in by_title["Verification latency"]
    audit = by_title["Would-be denials (audit)"]
    assert 'mode="audit"' in audit and 'outcome="failed"' in audit
    enforce = by_title["Denials (enforce)"]
    assert 'mode="enforce"' in enforce and 'outcome="failed"' in enforce
