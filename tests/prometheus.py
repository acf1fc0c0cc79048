"""Reading samples out of Prometheus text, as a scrape would."""

from __future__ import annotations

import re


def prometheus_value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` (exactly those labels) in Prometheus text; 0 when absent."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return 0.0
