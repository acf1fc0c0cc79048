"""Conditions on an attestation's in-toto statement: JSONPath-style comparisons. Pure.

A condition names a path into the statement and one comparison:

```yaml
- {path: predicate.builder.id, equals: "https://github.com/..."}
- {path: predicate.buildType, in: ["https://...", "https://..."]}
- {path: "predicate.materials[*].uri", matches: "^git\\+https://github\\.com/acme/"}
- {path: predicate.invocation.configSource.uri,
   startsWith: "git+${certificate.sourceRepositoryUri}@"}
- {path: predicate.metadata.completeness.materials, exists: true}
```

Why this and not an expression language (CEL, Rego, jq, Python): statements come from the
signer and policies from callers, both untrusted here. A declarative comparison has no loops,
no recursion and no user functions, so its cost is bounded by the statement's size (itself
capped by the blob limit) and by a budget of `MAX_VISITED` nodes for all the conditions of one
verification together; regexps are RE2, linear in their input. It
still says what policies need: "the builder id is X", "buildType is one of Y", "the source
repository is the certificate's" (`${certificate.<claim>}` puts a claim of the attestation's
certificate into `equals`, `in` and `startsWith`; never into a regexp, where it would be
read as a pattern).

Paths: dot-separated keys from the statement's root (`predicateType`, `subject[0].name`,
`predicate.x`), `[n]` for a list index, `[*]` for every element of a list, `["a.b"]` for a key
with dots. A condition holds when any selected value satisfies it (`exists: false` holds
when nothing is selected).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.core._util import compile_re2
from service.core.certs import DER_EXTENSIONS, RAW_EXTENSIONS, CertificateDetails
from service.core.errors import PolicyError

MAX_PATH_LENGTH = 256
MAX_STEPS = 32
MAX_VISITED = 200_000  # statement nodes, for all conditions of one verification
MAX_SHOWN = 120
OPERATORS = ("equals", "in", "matches", "startsWith", "exists")
CERTIFICATE_CLAIMS = frozenset({"subject", *RAW_EXTENSIONS.values(), *DER_EXTENSIONS.values()})
_PLACEHOLDER = re.compile(r"\$\{certificate\.([A-Za-z0-9]+)\}")
_STEP = re.compile(r'\.?([A-Za-z0-9_@$-]+)|\[(\d{1,6})\]|\[(\*)\]|\["([^"\\]{1,128})"\]')

Step = str | int | None  # a key, an index, or None for every element
Operator = Literal["equals", "in", "matches", "startsWith", "exists"]
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Condition:
    """One comparison of the values at `path`; build it with `condition_from_mapping`."""

    path: str
    operator: Operator
    expected: Any  # a scalar, a list of scalars, a pattern or a boolean
    steps: tuple[Step, ...] = field(repr=False)
    _compiled: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, self.operator: self.expected}

    def evaluate(
        self,
        statement: Mapping[str, Any],
        certificate: CertificateDetails | None,
        budget: Budget | None = None,
    ) -> ConditionResult:
        """Whether the condition holds for this statement, and what was found. Out of
        `budget`, it does not hold (whatever the operator, `exists: false` included)."""
        try:
            found = select(statement, self.steps, budget)
        except BudgetError as exc:
            return self._result(False, str(exc))
        if self.operator == "exists":
            held = bool(found) == self.expected
            return self._result(held, f"{len(found)} value(s) at {self.path}")
        try:
            expected = self._resolved(certificate)
        except PolicyError as exc:
            return self._result(False, str(exc))
        held = any(self._holds(value, expected) for value in found)
        shown = "nothing" if not found else ", ".join(_show(v) for v in found[:3])
        if len(found) > 3:
            shown += f" and {len(found) - 3} more"
        return self._result(held, f"found {shown}")

    def _result(self, held: bool, detail: str) -> ConditionResult:
        return ConditionResult(self, held, detail)

    def _resolved(self, certificate: CertificateDetails | None) -> Any:
        """`expected` with `${certificate.<claim>}` filled in from the certificate."""
        if self.operator == "matches":
            return self.expected
        if isinstance(self.expected, list):
            return [_fill(v, certificate) for v in self.expected]
        return _fill(self.expected, certificate)

    def _holds(self, value: Any, expected: Any) -> bool:
        if self.operator == "equals":
            return _same(value, expected)
        if self.operator == "in":
            return any(_same(value, e) for e in expected)
        if not isinstance(value, str):
            return False
        if self.operator == "startsWith":
            return value.startswith(expected)
        return self._compiled.search(value) is not None  # matches


@dataclass(frozen=True)
class ConditionResult:
    condition: Condition
    held: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.condition.to_json(), "held": self.held, "detail": self.detail}

    def describe(self) -> str:
        c = self.condition
        return f"{c.path} {c.operator} {_show(c.expected)}: {self.detail}"


def _same(a: Any, b: Any) -> bool:
    """JSON equality: `1 == true` is not, so types must agree."""
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def _show(value: Any) -> str:
    """A value for a reason, short: an object or list is described, never serialised (it may
    be most of a 4 MiB statement, and every condition's detail would copy it)."""
    if isinstance(value, Mapping):
        text = f"an object with {len(value)} keys"
    elif isinstance(value, list):
        text = f"a list of {len(value)} values"
    else:
        text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _fill(value: Any, certificate: CertificateDetails | None) -> Any:
    if not isinstance(value, str) or "${" not in value:
        return value

    def claim(match: re.Match[str]) -> str:
        name = match.group(1)
        if certificate is None:
            raise PolicyError(f"${{certificate.{name}}}: the attestation has no certificate")
        actual = certificate.subject if name == "subject" else certificate.extensions.get(name)
        if actual is None:
            raise PolicyError(f"${{certificate.{name}}}: the certificate has no {name}")
        return actual

    return _PLACEHOLDER.sub(claim, value)


def parse_path(path: object, where: str) -> tuple[Step, ...]:
    """`predicate.materials[*].uri` as steps ("predicate", "materials", None, "uri")."""
    if not isinstance(path, str) or not path:
        raise PolicyError(
            "found no text, expected a path such as predicate.builder.id", field=where
        )
    if len(path) > MAX_PATH_LENGTH:
        raise PolicyError(
            f"found {len(path)} characters, expected at most {MAX_PATH_LENGTH}", field=where
        )
    steps: list[Step] = []
    at = 0
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None or (match.group(0).startswith(".") and at == 0):
            raise PolicyError(
                f"cannot read the path at character {at + 1}: {path[at : at + 20]!r}", field=where
            )
        key, index, star, quoted = match.groups()
        steps.append(
            key
            if key is not None
            else int(index)
            if index is not None
            else None
            if star
            else quoted
        )
        at = match.end()
    if len(steps) > MAX_STEPS:
        raise PolicyError(f"found {len(steps)} steps, expected at most {MAX_STEPS}", field=where)
    return tuple(steps)


class Budget:
    """How many statement nodes the conditions of one verification may still visit: shared by
    every condition and attestation, so that neither many conditions nor many attestations
    can multiply the work."""

    def __init__(self, nodes: int = MAX_VISITED) -> None:
        self.nodes = nodes
        self.total = nodes

    def spend(self, nodes: int) -> None:
        self.nodes -= nodes
        if self.nodes < 0:
            raise BudgetError(
                f"evaluation stopped after {self.total} statement nodes, expected smaller "
                "statements or fewer conditions"
            )


class BudgetError(Exception):
    """The conditions of one verification visited more nodes than allowed."""


def select(document: Any, steps: Sequence[Step], budget: Budget | None = None) -> list[Any]:
    """Every value `steps` reaches in `document`; each node visited is spent from `budget`,
    and `BudgetError` stops the walk (never a partial answer)."""
    budget = budget or Budget()
    current: list[Any] = [document]
    for step in steps:
        budget.spend(len(current))
        nxt: list[Any] = []
        for node in current:
            if isinstance(step, str):
                if isinstance(node, Mapping) and step in node:
                    nxt.append(node[step])
            elif isinstance(step, int):
                if isinstance(node, list) and step < len(node):
                    nxt.append(node[step])
            elif isinstance(node, list):
                budget.spend(len(node))
                nxt.extend(node)
        current = nxt
    return current


MAX_SAFE_INTEGER = 2**53 - 1  # beyond it, JSON numbers are not exact (I-JSON, RFC 7493)


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _check_number(value: object, where: str) -> None:
    """A number to compare with must be one every JSON reader reads the same: finite, and
    within ±(2^53 - 1), where doubles are exact. `NaN` equals nothing (not even itself), and
    `9007199254740993` reads as `9007199254740992` in JavaScript and Go's float64: such a
    condition would hold or not depending on who parsed the statement."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(
            f"found {value}, expected a finite number (JSON has no NaN or Infinity)", field=where
        )
    if abs(value) > MAX_SAFE_INTEGER:
        raise PolicyError(
            f"found {value!r:.40}, expected a number from -{MAX_SAFE_INTEGER} to "
            f"{MAX_SAFE_INTEGER} (2^53 - 1, where JSON numbers are exact)",
            field=where,
        )


def _check_placeholders(value: object, where: str) -> None:
    if isinstance(value, str):
        for name in _PLACEHOLDER.findall(value):
            if name not in CERTIFICATE_CLAIMS:
                raise PolicyError(
                    f"unknown certificate claim {name!r}, expected subject, issuer or a fulcio "
                    "extension name",
                    field=where,
                )


def condition_from_mapping(raw: object, where: str, max_regexp_length: int) -> Condition:
    """Parse one condition; `PolicyError` names the field."""
    if not isinstance(raw, Mapping):
        raise PolicyError("found no object, expected {path, <operator>: value}", field=where)
    unknown = sorted(k for k in raw if k != "path" and k not in OPERATORS)
    if unknown:
        raise PolicyError(
            "unknown field, expected path and one of " + ", ".join(OPERATORS),
            field=f"{where}.{unknown[0]}",
        )
    operators = [k for k in OPERATORS if k in raw]
    if len(operators) != 1:
        raise PolicyError(
            f"found {len(operators)} operators, expected one of " + ", ".join(OPERATORS),
            field=where,
        )
    operator: Operator = operators[0]  # type: ignore[assignment]
    at = f"{where}.{operator}"
    value = raw[operator]
    steps = parse_path(raw.get("path"), f"{where}.path")
    compiled = None
    if operator == "exists":
        if not isinstance(value, bool):
            raise PolicyError("found no boolean, expected true or false", field=at)
    elif operator == "in":
        if (
            not isinstance(value, list)
            or not value
            or len(value) > 64
            or not all(map(_scalar, value))
        ):
            raise PolicyError("expected a list of 1 to 64 JSON scalars", field=at)
        for i, item in enumerate(value):
            _check_number(item, f"{at}[{i}]")
            _check_placeholders(item, f"{at}[{i}]")
    elif operator == "equals":
        if not _scalar(value):
            raise PolicyError(
                "found no JSON scalar, expected a string, number, boolean or null", field=at
            )
        _check_number(value, at)
        _check_placeholders(value, at)
    else:
        if not isinstance(value, str) or not value:
            raise PolicyError("found no text, expected a non-empty string", field=at)
        if operator == "matches":
            compiled = compile_re2(value, at, max_regexp_length)
        else:
            _check_placeholders(value, at)
    return Condition(raw["path"], operator, value, steps, compiled)
