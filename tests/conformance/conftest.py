"""Counts the conformance runs and prints the tally at the end of the session."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

_RUNS = "tests/conformance/test_bundle_verify.py::test_case["


@dataclass
class _Tally:
    matched: int = 0
    known: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


_tally = _Tally()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith(_RUNS) or report.when != "call":
        return
    run = report.nodeid.removeprefix(_RUNS).removesuffix("]")
    if hasattr(report, "wasxfail"):
        _tally.known.append(f"{run}: {report.wasxfail}")
    elif report.passed:
        _tally.matched += 1
    else:
        _tally.mismatched.append(run)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    total = _tally.matched + len(_tally.known) + len(_tally.mismatched)
    if not total:
        return
    terminalreporter.write_line(
        f"sigstore-conformance bundle-verify: {_tally.matched}/{total} runs matched their "
        f"expected outcome; {len(_tally.known)} known mismatches, "
        f"{len(_tally.mismatched)} unexpected"
    )
    for line in _tally.known + [f"{run}: unexpected" for run in _tally.mismatched]:
        terminalreporter.write_line(f"  {line}")
