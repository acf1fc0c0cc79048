"""The chart's Grafana dashboard as the tests read it: its panels' PromQL, parsed.

Grafana interpolates its variables before a query reaches Prometheus; `interpolate` does the
same with the values the dashboard would send (`$__rate_interval` a duration, `$job` and
`$policy` the `.*` of "All"), and `promql-parser` (the Rust PromQL parser of GreptimeDB, the
grammar of Prometheus) parses the result.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser

DASHBOARD = Path(__file__).parent.parent / "helm" / "sigverify" / "dashboards" / "sigverify.json"
# What Grafana puts in place of each variable the dashboard uses.
VARIABLES = {
    "$__rate_interval": "2m",
    "$__range": "6h",
    "$job": ".*",
    "$policy": ".*",
}
# Added by Prometheus when it scrapes, not served by the service.
SCRAPE_LABELS = frozenset({"job", "instance"})


@functools.cache
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every panel's targets, and of the query variables."""
    for panel in panels():
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*), (\w+)\)", query)
            assert inner is not None, query
            yield f"variable {variable['name']}", inner.group(1)


def interpolate(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, expr
    return expr


@dataclass(frozen=True)
class Selector:
    """One series selector of a query: the metric, and the labels the query names for it."""

    metric: str
    labels: frozenset[str]


def selectors(expr: str) -> tuple[list[Selector], set[str]]:
    """The selectors of `expr` (after interpolation), and every label it groups by."""
    parsed = promql_parser.parse(interpolate(expr))
    found: list[Selector] = []
    grouped: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers if node.matchers else []
            assert node.name, f"a selector without a metric name: {expr}"
            found.append(Selector(node.name, frozenset(m.name for m in matchers)))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouped.update(node.modifier.labels)

    promql_parser.walk(parsed, visit)
    return found, grouped
