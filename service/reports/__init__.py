"""Audit reports: what each named policy saw and would deny, per image, over a window.

`Sighting` is one verification as a report keeps it (built from a verdict by `Outcome`, the
only reader of verdicts here); `ReportStore` keeps sightings in the shared cache and reads them
back as a `Report`; `service.reports.fixes` says how to fix each way of failing.
"""

from service.reports.fixes import FIXES, Fix, classify
from service.reports.report import READY_RULE, ImageEntry, Limits, Report, ReportPolicy
from service.reports.sightings import Outcome, Sighting, Source
from service.reports.store import ReportStore

__all__ = [
    "FIXES",
    "READY_RULE",
    "Fix",
    "ImageEntry",
    "Limits",
    "Outcome",
    "Report",
    "ReportPolicy",
    "ReportStore",
    "Sighting",
    "Source",
    "classify",
]
