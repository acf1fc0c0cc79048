"""`Policy`: who may sign an image, mirroring `cosign verify` flags (in camelCase).

An identity is a set of constraints on a Fulcio certificate, all of which must hold:
`certificateIdentity` | `certificateIdentityRegexp` (any SAN), `certificateOidcIssuer` |
`certificateOidcIssuerRegexp`, `certificateGithubWorkflow{Trigger,Sha,Name,Repository,Ref}`
(extensions 1.2-1.6), and `extensions: {<name>: value, <name>Regexp: pattern}` for the
Fulcio extensions 1.8-1.22 by name. The top-level identity fields form one identity;
`identities` adds more; a signature needs to satisfy one of them.

Regular expressions are RE2 (Go's `regexp` syntax) and match the way cosign matches them,
with Go's `MatchString`: an unanchored search. `github` matches any subject containing
"github"; write `^...$` to pin a whole value.

An empty policy (no identity and no key) is refused: it would accept any signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import re2
import rfc8785

from service.core._util import PublicKey, key_fingerprint, load_public_key_pem
from service.core.certs import EXTENSION_NAMES, CertificateDetails
from service.core.errors import InputError, PolicyError

MAX_REGEXP_LENGTH = 256

# policy field -> (claim, regexp?)
_IDENTITY_FIELDS: Mapping[str, tuple[str, bool]] = {
    "certificateIdentity": ("subject", False),
    "certificateIdentityRegexp": ("subject", True),
    "certificateOidcIssuer": ("issuer", False),
    "certificateOidcIssuerRegexp": ("issuer", True),
    "certificateGithubWorkflowTrigger": ("githubWorkflowTrigger", False),
    "certificateGithubWorkflowSha": ("githubWorkflowSha", False),
    "certificateGithubWorkflowName": ("githubWorkflowName", False),
    "certificateGithubWorkflowRepository": ("githubWorkflowRepository", False),
    "certificateGithubWorkflowRef": ("githubWorkflowRef", False),
}
_POLICY_FIELDS = frozenset({"identities", "keys", "threshold", "transparencyLog"})
_TLOG_FIELDS = frozenset({"required", "allowInclusionPromise"})


@dataclass(frozen=True)
class Constraint:
    """One claim of the certificate compared with an exact value or an RE2 pattern."""

    name: str
    claim: str
    value: str
    regexp: bool
    _compiled: Any = field(default=None, compare=False, repr=False)

    def matches(self, actual: str) -> bool:
        if self.regexp:
            return self._compiled.search(actual) is not None
        return actual == self.value

    def mismatch(self, details: CertificateDetails) -> str | None:
        """None when the certificate satisfies this constraint, else why not, in words."""
        expected = f"a match for regexp {self.value}" if self.regexp else self.value
        if self.claim == "subject":
            sans = details.subject_alternative_names
            if any(self.matches(san) for san in sans):
                return None
            return f"signed by {' / '.join(sans) or 'no subject'}, expected {expected}"
        actual = details.extensions.get(self.claim)
        if actual is not None and self.matches(actual):
            return None
        label = "oidc issuer" if self.claim == "issuer" else self.claim
        return f"{label} {actual if actual is not None else 'absent'}, expected {expected}"

    def to_json(self) -> dict[str, str]:
        return {"field": self.name, "value": self.value}


@dataclass(frozen=True)
class Identity:
    """Constraints that must all hold; `label` names it in reasons ("identities[1]")."""

    label: str
    constraints: tuple[Constraint, ...]

    def mismatches(self, details: CertificateDetails) -> list[str]:
        return [m for c in self.constraints if (m := c.mismatch(details)) is not None]


@dataclass(frozen=True)
class PolicyKey:
    """A trusted public key; `label` names it ("keys[0]"), `fingerprint` is sha256(SPKI)."""

    label: str
    fingerprint: str
    key: PublicKey = field(compare=False, repr=False)


@dataclass(frozen=True)
class TransparencyLogPolicy:
    required: bool = True
    allow_inclusion_promise: bool = True


@dataclass(frozen=True)
class Policy:
    """A parsed policy; build it with `policy_from_mapping`."""

    identities: tuple[Identity, ...]
    keys: tuple[PolicyKey, ...]
    threshold: int
    transparency_log: TransparencyLogPolicy
    digest: str


def policy_from_mapping(
    d: Mapping[str, Any], *, max_regexp_length: int = MAX_REGEXP_LENGTH
) -> Policy:
    """Parse a policy; raises `PolicyError` whose `field` names the offending field."""
    if not isinstance(d, Mapping):
        raise PolicyError(f"found {type(d).__name__}, expected an object")
    unknown = sorted(
        k for k in d if k not in _POLICY_FIELDS and k not in _IDENTITY_FIELDS and k != "extensions"
    )
    if unknown:
        raise PolicyError("unknown field, expected a cosign verify flag", field=unknown[0])
    identities: list[Identity] = []
    top = {k: v for k, v in d.items() if k in _IDENTITY_FIELDS or k == "extensions"}
    if top:
        identities.append(_identity(top, "", "policy", max_regexp_length))
    raw_identities = d.get("identities", [])
    if not isinstance(raw_identities, list):
        raise PolicyError("found no list, expected a list of identities", field="identities")
    for i, raw in enumerate(raw_identities):
        where = f"identities[{i}]"
        if not isinstance(raw, Mapping):
            raise PolicyError("found no object, expected an identity", field=where)
        extra = sorted(k for k in raw if k not in _IDENTITY_FIELDS and k != "extensions")
        if extra:
            raise PolicyError(
                "unknown field, expected an identity field", field=f"{where}.{extra[0]}"
            )
        identities.append(_identity(raw, f"{where}.", where, max_regexp_length))
    keys = _keys(d.get("keys", []))
    if not identities and not keys:
        raise PolicyError(
            "found no identity and no key, expected at least one "
            "(an empty policy would accept any signature)"
        )
    threshold = d.get("threshold", 1)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise PolicyError(f"found {threshold!r:.20}, expected an integer >= 1", field="threshold")
    tlog = _tlog(d.get("transparencyLog", {}))
    canonical: dict[str, Any] = {
        "identities": [[c.to_json() for c in i.constraints] for i in identities],
        "keys": [k.fingerprint for k in keys],
        "threshold": threshold,
        "transparencyLog": {
            "required": tlog.required,
            "allowInclusionPromise": tlog.allow_inclusion_promise,
        },
    }
    return Policy(
        identities=tuple(identities),
        keys=keys,
        threshold=threshold,
        transparency_log=tlog,
        digest="sha256:" + hashlib.sha256(rfc8785.dumps(canonical)).hexdigest(),
    )


def _compile(pattern: str, where: str, max_length: int) -> Any:
    if len(pattern) > max_length:
        raise PolicyError(
            f"found a regexp of {len(pattern)} characters, expected at most {max_length}",
            field=where,
        )
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PolicyError(f"found an invalid regexp: {detail}", field=where) from None


def _constraint(
    name: str, claim: str, value: object, *, regexp: bool, where: str, max_length: int
) -> Constraint:
    if not isinstance(value, str) or not value:
        raise PolicyError("found no text, expected a non-empty string", field=where)
    compiled = _compile(value, where, max_length) if regexp else None
    return Constraint(name, claim, value, regexp, compiled)


def _identity(raw: Mapping[str, Any], prefix: str, label: str, max_length: int) -> Identity:
    constraints: list[Constraint] = []
    claimed: dict[str, str] = {}
    for name, (claim, regexp) in _IDENTITY_FIELDS.items():
        if name in raw:
            if claim in claimed:
                raise PolicyError(
                    f"found both {claimed[claim]} and {name}, expected one of them",
                    field=prefix + name,
                )
            claimed[claim] = name
            constraints.append(
                _constraint(
                    name,
                    claim,
                    raw[name],
                    regexp=regexp,
                    where=prefix + name,
                    max_length=max_length,
                )
            )
    extensions = raw.get("extensions", {})
    if not isinstance(extensions, Mapping):
        raise PolicyError("found no object, expected an object", field=prefix + "extensions")
    for name, value in extensions.items():
        where = f"{prefix}extensions.{name}"
        claim = name.removesuffix("Regexp")
        if claim not in EXTENSION_NAMES:
            raise PolicyError(
                "unknown fulcio extension, expected one of " + ", ".join(sorted(EXTENSION_NAMES)),
                field=where,
            )
        if claim in claimed:
            raise PolicyError(
                f"found both {claimed[claim]} and {name}, expected one of them", field=where
            )
        claimed[claim] = f"extensions.{name}"
        constraints.append(
            _constraint(
                f"extensions.{name}",
                claim,
                value,
                regexp=name != claim,
                where=where,
                max_length=max_length,
            )
        )
    if "subject" not in claimed:
        raise PolicyError(
            "found no certificateIdentity or certificateIdentityRegexp, expected one "
            "(without it any signer of the issuer would be accepted)",
            field=prefix + "certificateIdentity" if prefix else "certificateIdentity",
        )
    return Identity(label, tuple(constraints))


def _keys(raw: object) -> tuple[PolicyKey, ...]:
    if not isinstance(raw, list):
        raise PolicyError("found no list, expected a list of PEM public keys", field="keys")
    keys: list[PolicyKey] = []
    for i, pem in enumerate(raw):
        where = f"keys[{i}]"
        if not isinstance(pem, str):
            raise PolicyError("found no text, expected a PEM public key", field=where)
        try:
            key = load_public_key_pem(pem.encode(), where)
        except InputError:
            raise PolicyError("found no PEM public key, expected one", field=where) from None
        keys.append(PolicyKey(where, key_fingerprint(key), key))
    return tuple(keys)


def _tlog(raw: object) -> TransparencyLogPolicy:
    if not isinstance(raw, Mapping):
        raise PolicyError("found no object, expected an object", field="transparencyLog")
    for name in raw:
        if name not in _TLOG_FIELDS:
            raise PolicyError("unknown field", field=f"transparencyLog.{name}")
    values: dict[str, bool] = {}
    for name in _TLOG_FIELDS:
        value = raw.get(name, True)
        if not isinstance(value, bool):
            raise PolicyError(
                "found no boolean, expected true or false", field=f"transparencyLog.{name}"
            )
        values[name] = value
    return TransparencyLogPolicy(values["required"], values["allowInclusionPromise"])
