"""Hypothesis strategies for what callers control: image references and policies.

Each strategy mixes input built around the real grammar (so that most of it gets deep into the
parser before something is wrong, or nothing is) with arbitrary values. Numeric hosts spell
loopback addresses only (127.0.0.0/8, ::1), in every spelling parsers disagree on; names end
in `.test` or are `localhost`; nothing here is ever resolved or connected to: the apps the
tests build refuse every registry by name or as loopback before any lookup.
"""

from __future__ import annotations

import ipaddress
import math
import string
from typing import Any

import hypothesis.strategies as st
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.core.certs import EXTENSION_NAMES
from service.core.policy import PREDICATE_TYPES

# -- image references -------------------------------------------------------------------------


_LABEL = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=8)


@st.composite
def _ipv4_spelling(draw: st.DrawFn) -> str:
    """A loopback IPv4 address as `a.b.c.d`, zero-padded, octal, hex, with fewer parts, as
    one number, or out of range."""
    value = int(ipaddress.IPv4Address("127.0.0.0")) + draw(st.integers(0, 2**24 - 1))
    octets = list(ipaddress.IPv4Address(value).packed)
    form = draw(st.sampled_from(["dotted", "padded", "octal", "hex", "short", "number", "big"]))
    if form == "dotted":
        return ".".join(map(str, octets))
    if form == "padded":
        return ".".join(str(o).zfill(draw(st.integers(1, 4))) for o in octets)
    if form == "octal":
        return ".".join(f"0{o:o}" for o in octets)
    if form == "hex":
        return ".".join(draw(st.sampled_from([f"0x{o:x}", f"0X{o:X}", str(o)])) for o in octets)
    if form == "short":
        return f"{octets[0]}.{value & 0xFFFFFF}" if draw(st.booleans()) else f"127.{octets[3]}"
    if form == "number":
        return draw(st.sampled_from([str(value), f"0{value:o}", f"0x{value:x}"]))
    return ".".join(map(str, [*octets[:3], draw(st.integers(256, 999))]))


_IPV6 = st.builds(
    lambda address, zone, form: form.format(f"{address}{zone}"),
    st.sampled_from(["::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1", "::ffff:7f00:1", "::"]),
    st.sampled_from(["", "%eth0", "%25lo"]),
    st.sampled_from(["[{}]", "{}", "[{}"]),
)
HOSTS = st.one_of(
    st.lists(_LABEL | st.just("x" * 64), min_size=1, max_size=3).map(
        lambda labels: ".".join([*labels, "test"])
    ),
    st.sampled_from(["localhost", "docker.io", "index.docker.io", "Registry.Test", "a..b", "Ab"]),
    _ipv4_spelling(),
    _IPV6,
)
_PORTS = st.none() | st.integers(0, 70000).map(str) | st.sampled_from(["", "05000", "x"])
_COMPONENTS = st.lists(
    st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=12)
    | st.text(string.printable, min_size=1, max_size=6),
    max_size=3,
)
_TAGS = (
    st.none()
    | st.text(string.ascii_letters + string.digits + "_.-", max_size=12)
    | st.sampled_from(["t" * 128, "t" * 129])
)
_HEX = st.integers(0, 2**64 - 1)
_DIGESTS = (
    st.none()
    | _HEX.map(lambda n: f"sha256:{n:064x}")
    | _HEX.map(lambda n: f"sha512:{n:0128x}")
    | st.builds(
        lambda alg, size, upper: f"{alg}:{('A' if upper else 'a') * size}",
        st.sampled_from(["sha256", "sha512", "md5", "SHA256", ""]),
        st.sampled_from([0, 32, 63, 64, 65, 127, 128, 129]),
        st.booleans(),
    )
)


def _reference(
    host: str | None, port: str | None, path: list[str], tag: str | None, digest: str | None
) -> str:
    text = "" if host is None else host + ("" if port is None else f":{port}") + "/"
    text += "/".join(path)
    text += "" if tag is None else f":{tag}"
    return text + ("" if digest is None else f"@{digest}")


REFERENCES = st.builds(_reference, st.none() | HOSTS, _PORTS, _COMPONENTS, _TAGS, _DIGESTS)
"""Image references around distribution's grammar, often a little wrong."""
ANY_REFERENCES = st.one_of(
    REFERENCES,
    REFERENCES,
    st.text(max_size=40),
    st.sampled_from(["a/" + "b" * 1100, "a" * 64, "a/" + "b" * 254, " nginx", "nginx\n"]),
)
"""Structured references, and arbitrary text (some very long, some with spaces)."""


# -- policies ---------------------------------------------------------------------------------

_KEY_PEM = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
IDENTITY_FIELDS = (
    "certificateIdentity",
    "certificateIdentityRegexp",
    "certificateOidcIssuer",
    "certificateOidcIssuerRegexp",
    "certificateGithubWorkflowTrigger",
    "certificateGithubWorkflowSha",
    "certificateGithubWorkflowName",
    "certificateGithubWorkflowRepository",
    "certificateGithubWorkflowRef",
)
_REGEXPISH = st.sampled_from(
    ["^https://github\\.com/acme/", "(", "(a+)+$", "a{1001}", "\\C", "(?P<x>a)", "[", "\\"]
)
_SURROGATES = st.sampled_from(["\ud800", "a\udfff", "\udc00x"])
# Strategies are built once, here: building them inside a draw costs more than the draw.
TEXTS = st.one_of(st.text(max_size=12), _REGEXPISH, _SURROGATES, st.just("x" * 1100))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**64, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]),
    TEXTS,
    st.sampled_from(["${certificate.sourceRepositoryUri}", "${certificate.nope}"]),
)
"""JSON scalars and what JSON readers disagree on: NaN, infinities, integers past 2^53."""
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_STEP = st.sampled_from(["predicate", "builder", "id", "materials", "[*]", "[0]", '["a.b"]'])
_PATHS = (
    st.lists(_STEP, min_size=1, max_size=6).map(
        lambda steps: "".join(s if s.startswith("[") else f".{s}" for s in steps).lstrip(".")
    )
    | st.text(max_size=10)
    | st.just("a" * 300)
)
_OPERATORS = ["equals", "in", "matches", "startsWith", "exists", "nope"]
_OPERANDS = {
    "equals": SCALARS,
    "in": st.lists(SCALARS, max_size=3) | st.just(list(range(65))) | SCALARS,
    "matches": TEXTS,
    "startsWith": TEXTS,
    "exists": st.booleans() | SCALARS,
    "nope": SCALARS,
}
_EXTENSIONS = st.dictionaries(
    st.sampled_from(sorted(EXTENSION_NAMES | {f"{n}Regexp" for n in EXTENSION_NAMES}))
    | st.text(max_size=8),
    TEXTS | SCALARS,
    max_size=3,
)
_IDENTITY_NAMES = st.lists(st.sampled_from([*IDENTITY_FIELDS, "certificateIdentiy"]), max_size=4)


@st.composite
def _condition(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(st.sampled_from(_OPERATORS))
    condition: dict[str, Any] = {"path": draw(_PATHS), operator: draw(_OPERANDS[operator])}
    if draw(st.integers(0, 9)) == 0:  # two operators
        condition["equals" if operator != "equals" else "in"] = draw(SCALARS)
    return condition


CONDITIONS = _condition() | _condition() | JSON_VALUES


@st.composite
def _identity(draw: st.DrawFn) -> dict[str, Any]:
    identity: dict[str, Any] = {name: draw(TEXTS | SCALARS) for name in draw(_IDENTITY_NAMES)}
    if draw(st.booleans()):
        identity["certificateIdentity"] = "https://github.com/acme/app/.github/workflows/r.yml"
    if draw(st.integers(0, 3)) == 0:
        identity["extensions"] = draw(_EXTENSIONS | SCALARS)
    return identity


IDENTITIES = _identity()
_PREDICATE_TYPES = st.sampled_from(sorted(PREDICATE_TYPES)) | TEXTS | SCALARS


@st.composite
def _attestation(draw: st.DrawFn) -> dict[str, Any]:
    requirement: dict[str, Any] = {"predicateType": draw(_PREDICATE_TYPES)}
    if draw(st.booleans()):
        requirement["conditions"] = draw(st.lists(CONDITIONS, max_size=4) | SCALARS)
    if draw(st.integers(0, 3)) == 0:
        requirement["identities"] = draw(st.lists(IDENTITIES, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        requirement["name"] = draw(TEXTS | SCALARS)
    return requirement


ATTESTATIONS = _attestation() | _attestation() | JSON_VALUES
_OPTIONAL = {
    "identities": st.lists(IDENTITIES, max_size=3) | SCALARS,
    "keys": st.lists(st.just(_KEY_PEM) | TEXTS, max_size=3) | SCALARS,
    "threshold": SCALARS | st.integers(-2, 25),
    "transparencyLog": st.fixed_dictionaries(
        {}, optional={"required": SCALARS, "allowInclusionPromise": SCALARS}
    )
    | SCALARS,
    "attestations": st.lists(ATTESTATIONS, max_size=3) | SCALARS,
    "trustRoots": st.lists(st.sampled_from(["default", "github"]) | TEXTS, max_size=3),
    "bogus": SCALARS,
}


@st.composite
def _policy(draw: st.DrawFn) -> dict[str, Any]:
    policy: dict[str, Any] = draw(IDENTITIES)
    for name, values in _OPTIONAL.items():
        if draw(st.integers(0, 3)) == 0:
            policy[name] = draw(values)
    return policy


_WELL_FORMED_CONDITION = st.builds(
    lambda path, operator, value: {"path": path, operator: value},
    _STEP.map(lambda step: f"predicate.{step}".replace(".[", "[")),
    st.sampled_from(["equals", "in"]),
    SCALARS,
).map(lambda c: {**c, "in": [c["in"]]} if "in" in c else c)


@st.composite
def _well_formed_policy(draw: st.DrawFn) -> dict[str, Any]:
    """A policy that is valid but for a condition operand: how NaN and 2^53 reached the
    policy digest."""
    return {
        "certificateIdentity": "https://github.com/acme/app/.github/workflows/release.yml",
        "certificateOidcIssuer": "https://token.actions.githubusercontent.com",
        "attestations": [
            {
                "predicateType": draw(st.sampled_from(sorted(PREDICATE_TYPES))),
                "conditions": draw(st.lists(_WELL_FORMED_CONDITION, min_size=1, max_size=3)),
            }
        ],
    }


POLICIES = _policy() | _policy() | _well_formed_policy() | JSON_VALUES
"""An inline policy: mostly well formed, with wrong or hostile values here and there."""
