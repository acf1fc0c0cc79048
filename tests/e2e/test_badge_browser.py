"""Badges as a person sees them: every state rendered by Chromium (Debian's, driven by
Playwright), from the service under gunicorn.

For each state: the SVG as a document (its size, what it says to a screen reader, each text
inside its box by the browser's own measure), a screenshot of it (its size, the state's colour
in its box, and no text pixel in the margins where an overflowing text would show), and the
badge as a portal embeds it, an `<img>` that must not be broken. The advance widths the service
computes badge widths from are measured again against the font Chromium renders.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from playwright.sync_api import Browser, Page, sync_playwright

from service.api import badge_svg
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
RIGHT = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
LONG_IDENTITY = (
    "https://github.com/a-rather-long-organisation-name/an-even-longer-repository-name/"
    ".github/workflows/release.yml@refs/heads/feature/a-branch-with-a-long-name"
)
LONG = {"certificateIdentityRegexp": "^https://github\\.com/a-rather-long-organisation-name/",
        "certificateOidcIssuer": ACTIONS}  # fmt: skip
POLICIES = [
    {"name": "release", "tenant": "platform", "public": True, "policy": RIGHT},
    {"name": "watch", "tenant": "platform", "mode": "audit", "public": True, "policy": RIGHT},
    {"name": "long", "tenant": "platform", "public": True, "policy": LONG},
    {"name": "private", "tenant": "platform", "policy": RIGHT},
]


@dataclass(frozen=True)
class Case:
    """One badge to look at: where it is, the state and words it should show."""

    name: str
    url: str
    state: badge_svg.State
    message: str


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(device_scale_factor=1, viewport={"width": 800, "height": 200})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def cases(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Case]]:
    policy_file = tmp_path_factory.mktemp("badge-browser") / "policies.yaml"
    policy_file.write_text(yaml.safe_dump({"policies": POLICIES}))
    with (
        sigstore_local.registry_signer(registry.url) as signer,
        start_service(
            rekor_url=sigstore_local.url,
            trust_root_file=str(sigstore_local.trusted_root_path),
            policy_file=str(policy_file),
        ) as (server, _),
        start_service(rekor_url=sigstore_local.url, badges="false") as (off, _),
    ):
        yield _cases(signer, registry, server.url, off.url)


def _url(base: str, image: str, policy: str) -> str:
    return f"{base}/v1/badge?{urlencode({'image': image, 'policy': policy})}"


def _cases(signer: RegistrySigner, registry: RegistryServer, base: str, off: str) -> list[Case]:
    signed = signer.image("browser/signed")
    signer.sign(signed)
    wrong = signer.image("browser/wrong")
    signer.sign(wrong, identity=signer.signer.identity(LONG_IDENTITY.replace("feature", "x")))
    unsigned = signer.image("browser/unsigned")
    long = signer.image("browser/long")
    signer.sign(long, identity=signer.signer.identity(LONG_IDENTITY))
    shortened = badge_svg.fit(badge_svg.short_signer(LONG_IDENTITY))
    assert shortened.endswith(badge_svg.ELLIPSIS)  # the case is one that needs shortening
    b = badge_svg
    return [
        Case("verified", _url(base, signed.reference, "release"), b.VERIFIED, "acme/app@main"),
        Case("failed", _url(base, wrong.reference, "release"), b.FAILED, "failed"),
        Case("audit-failed", _url(base, wrong.reference, "watch"), b.AUDIT_FAILED,
             "failed (audit)"),
        Case("unsigned", _url(base, unsigned.reference, "release"), b.UNSIGNED, "unsigned"),
        Case("audit-unsigned", _url(base, unsigned.reference, "watch"), b.AUDIT_UNSIGNED,
             "unsigned (audit)"),
        Case("not-found", _url(base, f"{registry.host}/browser/missing:v1", "release"),
             b.NOT_FOUND, "not found"),
        Case("error", _url(base, "127.0.0.1:1/browser/app:v1", "release"), b.ERROR, "error"),
        Case("unknown-policy", _url(base, signed.reference, "private"), b.UNKNOWN_POLICY,
             "unknown policy"),
        Case("invalid", _url(base, "", "release"), b.INVALID, "invalid image"),
        Case("disabled", _url(off, signed.reference, "release"), b.DISABLED, "disabled"),
        Case("long-signer", _url(base, long.reference, "long"), b.VERIFIED, shortened),
    ]  # fmt: skip


# Each text element against its box, by the browser's measure; and the text's natural length
# (without textLength) against the width the service computed for it.
_MEASURE = """() => {
  const svg = document.documentElement;
  const out = {width: svg.getAttribute('width'), height: svg.getAttribute('height'),
               role: svg.getAttribute('role'), label: svg.getAttribute('aria-label'),
               title: svg.querySelector('title').textContent, parts: {}};
  for (const part of ['label', 'message']) {
    const rect = svg.querySelector('rect.' + part), text = svg.querySelector('text.' + part);
    const box = text.getBBox();
    const natural = text.cloneNode(true);
    natural.removeAttribute('textLength');
    natural.removeAttribute('lengthAdjust');
    svg.appendChild(natural);
    out.parts[part] = {
      rect: {x: rect.x.baseVal.value, width: rect.width.baseVal.value,
             fill: rect.getAttribute('fill')},
      text: {x: box.x, width: box.width, y: box.y, height: box.height,
             computed: text.getComputedTextLength(), content: text.textContent,
             textLength: parseFloat(text.getAttribute('textLength')),
             natural: natural.getComputedTextLength()},
    };
    natural.remove();
  }
  return out;
}"""

# The pixels of a PNG (a data: URL), decoded by the browser: [r, g, b, a] per pixel, row by row.
_PIXELS = """async (url) => {
  const img = new Image();
  img.src = url;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  return {width: canvas.width, height: canvas.height,
          data: Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)};
}"""


def _rgb(color: str) -> tuple[int, int, int]:
    hexes = color.lstrip("#")
    if len(hexes) == 3:
        hexes = "".join(c * 2 for c in hexes)
    red, green, blue = (int(hexes[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_every_state_renders_at_its_size_with_its_words_inside_its_boxes(
    cases: list[Case], page: Page, tmp_path: Path
) -> None:
    assert {c.state for c in cases} >= set(badge_svg.STATES) - {badge_svg.RATE_LIMITED}
    colours: dict[str, str] = {}
    for case in cases:
        response = page.goto(case.url)
        assert response is not None
        assert response.headers["content-type"].startswith("image/svg+xml"), case.name
        found: dict[str, Any] = page.evaluate(_MEASURE)
        spoken = f"sigstore: {case.message}"
        assert (found["role"], found["label"], found["title"]) == ("img", spoken, spoken), case
        width, height = int(found["width"]), int(found["height"])
        assert height == 20
        label, message = found["parts"]["label"], found["parts"]["message"]
        assert label["text"]["content"] == "sigstore"
        assert message["text"]["content"] == case.message
        assert message["rect"]["fill"] == case.state.color, case.name
        assert label["rect"]["x"] + label["rect"]["width"] == message["rect"]["x"]
        assert message["rect"]["x"] + message["rect"]["width"] == width
        for part in (label, message):
            rect, text = part["rect"], part["text"]
            # Inside its box, with room to spare, by the browser's own layout ...
            assert rect["x"] + 2 <= text["x"], (case.name, part)
            assert text["x"] + text["width"] <= rect["x"] + rect["width"] - 2, (case.name, part)
            assert text["computed"] <= rect["width"] - 2 * badge_svg.PADDING + 0.5, case.name
            assert text["y"] >= 0 and text["y"] + text["height"] <= height + 1, case.name
            # ... and the width computed for it is the font's: textLength barely adjusts it.
            assert abs(text["natural"] - text["textLength"]) <= max(0.6, 0.02 * text["natural"]), (
                case.name, text)  # fmt: skip
        colours[case.name] = case.state.color
        shot = page.locator("svg").screenshot()
        (tmp_path / f"{case.name}.png").write_bytes(shot)
        assert _png_size(shot) == (width, height), case.name
        _check_pixels(page, shot, case, int(label["rect"]["width"]), width)
    # Audit failures look unlike enforced ones.
    assert colours["audit-failed"] != colours["failed"]


def _check_pixels(page: Page, png: bytes, case: Case, split: int, width: int) -> None:
    """The label box is the label grey, the message box the state's colour, each has text in
    white, and the margins beside each text hold no text pixel (nothing overflows)."""
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    page.goto("about:blank")
    decoded: dict[str, Any] = page.evaluate(_PIXELS, url)
    assert (decoded["width"], decoded["height"]) == (width, 20)
    data = decoded["data"]

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        at = (y * width + x) * 4
        return data[at], data[at + 1], data[at + 2]

    def columns(start: int, stop: int) -> set[tuple[int, int, int]]:
        return {pixel(x, y) for x in range(start, stop) for y in range(20)}

    grey, colour = _rgb(badge_svg.LABEL_COLOR), _rgb(case.state.color)
    margin = badge_svg.PADDING - 2  # the padding, less antialiasing at the glyphs' edges
    assert columns(0, margin) == {grey}, case.name
    assert columns(split - margin, split) == {grey}, case.name
    assert columns(split, split + margin) == {colour}, case.name
    assert columns(width - margin, width) == {colour}, case.name
    label_box, message_box = columns(0, split), columns(split, width)
    assert any(min(p) > 200 for p in label_box), f"{case.name}: no text in the label"
    assert any(min(p) > 200 for p in message_box), f"{case.name}: no text in the message"


def test_a_portal_page_shows_every_badge(cases: list[Case], page: Page) -> None:
    """As a portal embeds them: an `<img>` per badge, none of them broken (a broken image has
    no natural size), each at the size the SVG says."""
    images = "".join(f'<img id="{c.name}" src="{c.url}" alt="">' for c in cases)
    page.set_content(f"<!doctype html><html><body>{images}</body></html>")
    page.wait_for_load_state("load")
    sizes: dict[str, list[int]] = page.evaluate(
        "() => Object.fromEntries([...document.images].map("
        "i => [i.id, [i.complete ? i.naturalWidth : -1, i.naturalHeight]]))"
    )
    for case in cases:
        width, height = sizes[case.name]
        assert width > 0 and height == 20, (case.name, sizes[case.name])


def test_the_width_table_is_the_fonts(page: Page) -> None:
    """The advance widths in the service, measured again in Chromium, one character at a time,
    in the font the badge falls back to here (DejaVu Sans)."""
    page.set_content(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        '<text id="t" font-family="DejaVu Sans" font-size="2048" style="font-kerning:none">'
        "</text></svg>"
    )
    measured: dict[str, float] = page.evaluate(
        """(chars) => {
          const t = document.getElementById('t'), out = {};
          t.textContent = 'aa';
          const pair = t.getComputedTextLength();
          for (const c of chars) {
            t.textContent = 'a' + c + 'a';  // a lone space would collapse to nothing
            out[c] = t.getComputedTextLength() - pair;
          }
          return out;
        }""",
        list(badge_svg.ADVANCES),
    )
    wrong = {c: (units, measured[c]) for c, units in badge_svg.ADVANCES.items()
             if abs(measured[c] - units) > 1}  # fmt: skip
    assert not wrong
