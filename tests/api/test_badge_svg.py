"""Badge pictures as values: states, widths, shortening, signers, the SVG and shields JSON.
How they look in a browser is tests/e2e/test_badge_browser.py."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from service.api import badge_svg
from service.api.badge import badge_for
from service.api.badge_svg import ELLIPSIS, MAX_MESSAGE_WIDTH, STATES, Badge, fit, text_width

SVG = "{http://www.w3.org/2000/svg}"


def _luminance(color: str) -> float:
    channels = [int(color.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_every_state_has_its_own_words_and_colour_readable_in_white() -> None:
    assert len({s.name for s in STATES}) == len(STATES)
    assert len({s.message for s in STATES}) == len(STATES)
    # The audit variants share one colour (audit), unlike anything enforced.
    colours = {s.color for s in STATES if s not in (badge_svg.AUDIT_UNSIGNED,)}
    assert len(colours) == len(STATES) - 1
    assert badge_svg.AUDIT_FAILED.color not in (badge_svg.FAILED.color, badge_svg.UNSIGNED.color)
    for state in STATES:
        contrast = 1.05 / (_luminance(state.color) + 0.05)  # white text, WCAG 2 ratio
        assert contrast >= 4.5, (state.name, contrast)


@pytest.mark.parametrize(
    ("signer", "short"),
    [
        ("https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3 (https://x)",
         "acme/app@v1.2.3"),
        ("https://github.com/acme/app/.github/workflows/ci/build.yml@refs/heads/main",
         "acme/app@main"),
        ("https://github.com/acme/app/.github/workflows/x.yml@refs/pull/7/merge",
         "acme/app@refs/pull/7/merge"),
        ("dev@example.com (https://accounts.google.com)", "dev@example.com"),
        ("https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main",
         "https://gitlab.com/acme/app//.gitlab-ci.yml@refs/heads/main"),
    ],
)  # fmt: skip
def test_short_signers(signer: str, short: str) -> None:
    assert badge_svg.short_signer(signer) == short


def test_widths_follow_the_characters() -> None:
    assert text_width("") == 0
    assert text_width("iii") < text_width("mmm")
    assert text_width("sigstore") == pytest.approx(43.8, abs=0.1)  # DejaVu Sans at 11 px
    # Characters outside the table count as a full em: never narrower than they are.
    assert text_width("\u4e2d") == 11


def test_a_short_message_is_left_alone() -> None:
    assert fit("acme/app@main") == "acme/app@main"
    assert fit("  two \n lines ") == "two lines"


@pytest.mark.parametrize(
    "text",
    [
        "a-rather-long-organisation-name/an-even-longer-repository-name@feature/some-branch",
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth",
        "someone.with.a.long.name@subdomain.of.an.example.organisation.example.com",
    ],
)
def test_a_long_message_is_cut_at_a_boundary(text: str) -> None:
    shown = fit(text)
    assert shown.endswith(ELLIPSIS) and text_width(shown) <= MAX_MESSAGE_WIDTH
    head = shown.removesuffix(ELLIPSIS)
    assert text.startswith(head)
    # The cut is at a boundary: what follows in the original starts a new word or path part.
    assert head[-1] in " /@:.-_" or text[len(head)] in " "
    # ... and it is the last boundary that fits: up to the next one would not.
    rest = text[len(head) :]
    following = next(
        (i + 1 for i, c in enumerate(rest) if c in " /@:.-_" and rest[: i + 1].strip()), len(rest)
    )
    longer = (head + rest[:following]).rstrip()
    assert text_width(longer + ELLIPSIS) > MAX_MESSAGE_WIDTH


def test_one_word_longer_than_the_budget_is_cut_between_characters() -> None:
    word = "x" * 200
    shown = fit(word)
    assert shown.endswith(ELLIPSIS) and word.startswith(shown[:-1])
    assert MAX_MESSAGE_WIDTH - 10 < text_width(shown) <= MAX_MESSAGE_WIDTH


def test_the_svg_is_as_wide_as_its_texts_and_escapes_them() -> None:
    shown = Badge.of(badge_svg.VERIFIED, 60, 'a<b>&"c"')
    root = ET.fromstring(badge_svg.svg(shown))  # noqa: S314 - our own output
    assert root.get("aria-label") == 'sigstore: a<b>&"c"'
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == 'sigstore: a<b>&"c"'
    rects = {r.get("class"): r for r in root.iter(f"{SVG}rect")}
    texts = {t.get("class"): t for t in root.iter(f"{SVG}text")}
    assert texts["message"].text == 'a<b>&"c"'
    width = float(str(root.get("width")))
    assert width == float(str(rects["label"].get("width"))) + float(
        str(rects["message"].get("width"))
    )
    for part in ("label", "message"):
        box = float(str(rects[part].get("width")))
        length = float(str(texts[part].get("textLength")))
        assert length == pytest.approx(text_width(str(texts[part].text)), abs=0.05)
        assert box - length >= 2 * badge_svg.PADDING - 0.05
        assert box - length < 2 * badge_svg.PADDING + 1
    assert rects["message"].get("fill") == badge_svg.VERIFIED.color
    assert root.get("data-state") == "verified"


def test_the_same_badge_is_the_same_bytes() -> None:
    one = badge_svg.svg(Badge.of(badge_svg.UNKNOWN_POLICY, 30))
    assert one == badge_svg.svg(Badge.of(badge_svg.UNKNOWN_POLICY, 30))
    assert one != badge_svg.svg(Badge.of(badge_svg.NOT_FOUND, 30))


def test_shields_json() -> None:
    shown = badge_svg.shields(Badge.of(badge_svg.ERROR, 30))
    assert shown == {"schemaVersion": 1, "label": "sigstore", "message": "error",
                     "color": "a84300", "isError": True, "cacheSeconds": 30}  # fmt: skip


def _verdict(verified: bool, signatures: int, signers: list[str]) -> dict[str, object]:
    return {"verified": verified, "signatures": [{}] * signatures, "signers": signers}


def test_a_verdicts_badge() -> None:
    identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    passed = badge_for(_verdict(True, 1, [f"{identity} (issuer)"]), audit=False, max_age=60)
    assert (passed.state, passed.message, passed.max_age) == (
        badge_svg.VERIFIED, "acme/app@main", 60)  # fmt: skip
    # An audit policy's pass is a pass like any other.
    assert badge_for(_verdict(True, 1, [identity]), audit=True, max_age=60).state.name == "verified"
    for audit, failed, unsigned in [(False, "failed", "unsigned"),
                                    (True, "audit-failed", "audit-unsigned")]:  # fmt: skip
        assert badge_for(_verdict(False, 2, []), audit=audit, max_age=1).state.name == failed
        assert badge_for(_verdict(False, 0, []), audit=audit, max_age=1).state.name == unsigned
