"""Badges as pictures: every state an SVG a page can show, or shields.io's endpoint JSON.

Pure: no Flask, no I/O. A badge is two boxes, a grey label (`sigstore`) and a coloured message,
each exactly as wide as its text. Text widths come from DejaVu Sans' advance widths (the font
the SVG names after Verdana, and what Chromium on Linux renders); each `<text>` also carries
`textLength`, so a viewer with other font metrics (Verdana on Windows and macOS) still fits the
text to its box instead of overflowing it. A message wider than `MAX_MESSAGE_WIDTH` is shortened
at a word or path boundary with an ellipsis, never in the middle of a word (only a single word
longer than the whole budget is cut between characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape, quoteattr

LABEL = "sigstore"
LABEL_COLOR = "#555"
FONT_SIZE = 11
FONT_FAMILY = "Verdana,DejaVu Sans,sans-serif"
HEIGHT = 20
PADDING = 6  # each side of a text, in px
MAX_MESSAGE_WIDTH = 240  # px of message text before it is shortened
ELLIPSIS = "\u2026"

# DejaVu Sans Book advance widths of the printable ASCII characters (U+0020 to U+007E), in font
# units of 2048 per em: the font's own metrics, as Chromium measures them (tests/e2e/
# test_badge_browser.py measures them again). Any other character counts as a full em, so a
# message is never thought narrower than it is.
_UNITS_PER_EM = 2048
_ASCII_ADVANCES = (
    651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690,
    1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 1303, 690, 690, 1716, 1716, 1716, 1087,
    2048, 1401, 1405, 1430, 1577, 1294, 1178, 1587, 1540, 604, 604, 1343, 1141, 1767, 1532, 1612,
    1235, 1612, 1423, 1300, 1251, 1499, 1401, 2025, 1403, 1251, 1403, 799, 690, 799, 1716, 1024,
    1024, 1255, 1300, 1126, 1300, 1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995, 1298, 1253,
    1300, 1300, 842, 1067, 803, 1298, 1212, 1675, 1212, 1212, 1075, 1303, 690, 1303, 1716,
)  # fmt: skip
ADVANCES = {chr(32 + i): units for i, units in enumerate(_ASCII_ADVANCES)}
# Where a long message may be cut: after a space, or after a path or identity separator.
_BOUNDARY = re.compile(r"(?<=[ /@:.\-_])")
_GITHUB = re.compile(r"^https://github\.com/([^/]+/[^/]+)/\.github/workflows/[^@]+@(.+)$")


@dataclass(frozen=True)
class State:
    """What a badge can say, with its colour; `is_error` for shields.io's error rendering."""

    name: str
    message: str  # the message, unless the badge carries its own (a verified signer)
    color: str
    is_error: bool = False


VERIFIED = State("verified", "verified", "#2e7d32")
FAILED = State("failed", "failed", "#c62828")
# A failure under an audit policy: reported, not enforced, so not shown as red.
AUDIT_FAILED = State("audit-failed", "failed (audit)", "#6a1b9a")
UNSIGNED = State("unsigned", "unsigned", "#ad1457")
AUDIT_UNSIGNED = State("audit-unsigned", "unsigned (audit)", "#6a1b9a")
NOT_FOUND = State("not-found", "not found", "#1565c0")
ERROR = State("error", "error", "#a84300", is_error=True)
UNKNOWN_POLICY = State("unknown-policy", "unknown policy", "#37474f", is_error=True)
DISABLED = State("disabled", "disabled", "#757575", is_error=True)
INVALID = State("invalid", "invalid request", "#795548", is_error=True)
RATE_LIMITED = State("rate-limited", "rate limited", "#8d6e00", is_error=True)
STATES = (VERIFIED, FAILED, AUDIT_FAILED, UNSIGNED, AUDIT_UNSIGNED, NOT_FOUND, ERROR,
          UNKNOWN_POLICY, DISABLED, INVALID, RATE_LIMITED)  # fmt: skip


@dataclass(frozen=True)
class Badge:
    """One badge: its state, the message shown (fitted to the width) and how long to keep it."""

    state: State
    message: str
    max_age: int

    @classmethod
    def of(cls, state: State, max_age: int, message: str | None = None) -> Badge:
        return cls(state, fit(message if message is not None else state.message), max_age)


def text_width(text: str) -> float:
    """`text`'s width in px at FONT_SIZE, from the advance widths (no kerning)."""
    units = sum(ADVANCES.get(char, _UNITS_PER_EM) for char in text)
    return units * FONT_SIZE / _UNITS_PER_EM


def fit(text: str, max_width: float = MAX_MESSAGE_WIDTH) -> str:
    """`text` on one line, shortened to `max_width` px with an ellipsis at the last word or path
    boundary that fits; a first word wider than the budget is cut between characters."""
    flat = " ".join(text.split())
    if text_width(flat) <= max_width:
        return flat
    budget = max_width - text_width(ELLIPSIS)
    cuts = [m.start() for m in _BOUNDARY.finditer(flat) if 0 < m.start() < len(flat)]
    for cut in reversed(cuts):
        head = flat[:cut].rstrip()
        if head and text_width(head) <= budget:
            return head + ELLIPSIS
    head = flat
    while head and text_width(head) > budget:
        head = head[:-1]
    return head + ELLIPSIS


def short_signer(signer: str) -> str:
    """A signer as a badge shows it: a GitHub Actions workflow identity as `owner/repo@ref`
    (`refs/heads/` and `refs/tags/` dropped), anything else as its identity (the SAN)."""
    identity = signer.split(" (", 1)[0]
    match = _GITHUB.match(identity)
    if match:
        repo, ref = match.groups()
        ref = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        return f"{repo}@{ref}"
    return identity


def _box(text: str) -> tuple[int, float]:
    """(box width, text length) for `text`: whole pixels, the text centred with padding."""
    length = round(text_width(text), 1)
    return int(length + 2 * PADDING + 0.999), length


def svg(badge: Badge) -> bytes:
    """The badge as an SVG document (UTF-8), labelled for screen readers (`role="img"`,
    `aria-label` and `<title>`: "sigstore: <message>")."""
    left_w, left_len = _box(LABEL)
    right_w, right_len = _box(badge.message)
    width = left_w + right_w
    spoken = f"{LABEL}: {badge.message}"
    text = (
        f'text-anchor="middle" font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}" '
        'lengthAdjust="spacingAndGlyphs"'
    )
    document = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}" role="img" aria-label={quoteattr(spoken)} '
        f'data-state="{badge.state.name}">'
        f"<title>{escape(spoken)}</title>"
        '<g shape-rendering="crispEdges">'
        f'<rect class="label" width="{left_w}" height="{HEIGHT}" fill="{LABEL_COLOR}"/>'
        f'<rect class="message" x="{left_w}" width="{right_w}" height="{HEIGHT}" '
        f'fill="{badge.state.color}"/></g>'
        '<g fill="#fff">'
        f'<text class="label" x="{left_w / 2:g}" y="14" textLength="{left_len:g}" {text}>'
        f"{escape(LABEL)}</text>"
        f'<text class="message" x="{left_w + right_w / 2:g}" y="14" textLength="{right_len:g}" '
        f"{text}>{escape(badge.message)}</text></g></svg>"
    )
    return document.encode()


def shields(badge: Badge) -> dict[str, Any]:
    """The badge in shields.io's endpoint schema (schemaVersion 1)."""
    return {
        "schemaVersion": 1,
        "label": LABEL,
        "message": badge.message,
        "color": badge.state.color.lstrip("#"),
        "isError": badge.state.is_error,
        "cacheSeconds": badge.max_age,
    }
