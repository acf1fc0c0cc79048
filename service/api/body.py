"""Request bodies read as I-JSON (RFC 7493): JSON that every reader reads the same way.

Python's `json` reads more than JSON: `NaN`, `Infinity` and `-Infinity` literals, lone
surrogates (`"\\ud800"`, or their bytes), and objects that name a member twice (the last one
wins, where other readers keep the first). A gate that logs what it sent and a service that
acts on something else is how such input gets used, and lone surrogates and NaN made 500s
deep inside the service (hashing, RE2, RFC 8785). So a body with any of them is invalid JSON,
a 400 that says what and, where it can, names the field. Nesting too deep for the parser is
invalid JSON too.
"""

from __future__ import annotations

import json
from typing import Any


class InvalidJSON(ValueError):  # noqa: N818 - reads as what it is
    """A request body that is not I-JSON; `field` names where, when it is known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.reason = message
        self.field = field


class _Constant:
    """What `NaN`, `Infinity` or `-Infinity` parsed to, until the walk names its field."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidJSON(f"the member {key[:60]!r} appears twice in one object")
        out[key] = value
    return out


def loads(data: str | bytes) -> Any:
    """The JSON document in `data`, or `InvalidJSON` saying why it is not I-JSON."""
    try:
        doc = json.loads(data, parse_constant=_Constant, object_pairs_hook=_unique)
    except InvalidJSON:
        raise
    except RecursionError:
        raise InvalidJSON("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes
        raise InvalidJSON(f"not JSON ({exc})") from None
    _check(doc)
    return doc


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(doc: Any) -> None:
    """Refuse the constants and lone surrogates the parser let through, naming the field."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, _Constant):
            raise InvalidJSON(f"{node.literal} is not a JSON number", at or None)
        if isinstance(node, str):
            if not _is_unicode(node):
                raise InvalidJSON("a lone surrogate is not Unicode text", at or None)
        elif isinstance(node, dict):
            children: list[tuple[Any, str]] = []
            for key, value in node.items():
                if not _is_unicode(key):
                    raise InvalidJSON("a member name with a lone surrogate", at or None)
                children.append((value, f"{at}.{key}" if at else key))
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(v, f"{at}.{i}" if at else str(i)) for i, v in enumerate(node)]))
