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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import rfc8785

from service.core._util import PublicKey, compile_re2, key_fingerprint, load_public_key_pem
from service.core.certs import EXTENSION_NAMES, CertificateDetails
from service.core.conditions import Condition, condition_from_mapping
from service.core.errors import InputError, PolicyError
from service.core.trust import DEFAULT_TRUST_ROOT

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
_POLICY_FIELDS = frozenset(
    {
        "identities",
        "keys",
        "threshold",
        "transparencyLog",
        "attestations",
        "trustRoots",
        "acceptAttestationsAsSignatures",
    }
)
_ATTESTATION_FIELDS = frozenset({"name", "predicateType", "identities", "keys", "conditions"})
MAX_ATTESTATIONS = 10
MAX_CONDITIONS = 32
MAX_TRUST_ROOTS = 10
MAX_THRESHOLD = 20
# cosign's `--type` shorthands (cosign verify-attestation) for the common predicate types.
PREDICATE_TYPES: Mapping[str, str] = {
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}
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
class AttestationRequirement:
    """An attestation the image must have: of `predicate_type`, signed by one of `identities`
    or `keys` (the policy's own when both are empty), with every condition holding."""

    label: str
    predicate_type: str
    identities: tuple[Identity, ...]
    keys: tuple[PolicyKey, ...]
    conditions: tuple[Condition, ...]

    @property
    def own_signers(self) -> bool:
        return bool(self.identities or self.keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "predicateType": self.predicate_type,
            "identities": [[c.to_json() for c in i.constraints] for i in self.identities],
            "keys": [k.fingerprint for k in self.keys],
            "conditions": [c.to_json() for c in self.conditions],
        }


@dataclass(frozen=True)
class Policy:
    """A parsed policy; build it with `policy_from_mapping`."""

    identities: tuple[Identity, ...]
    keys: tuple[PolicyKey, ...]
    threshold: int
    transparency_log: TransparencyLogPolicy
    digest: str
    attestations: tuple[AttestationRequirement, ...] = ()
    trust_roots: tuple[str, ...] = (DEFAULT_TRUST_ROOT,)
    accept_attestations_as_signatures: bool = False
    """Count verified attestations (`.att` layers, DSSE bundles) toward `threshold`, as
    `cosign verify-attestation` does; by default only signatures count, as `cosign verify`."""

    def signed_by(self, requirement: AttestationRequirement) -> Policy:
        """This policy with a requirement's own signers: what its attestations verify against."""
        if not requirement.own_signers:
            return self
        return replace(
            self,
            identities=requirement.identities,
            keys=requirement.keys,
            threshold=1,
            attestations=(),
        )


def policy_from_mapping(
    d: Mapping[str, Any],
    *,
    max_regexp_length: int = MAX_REGEXP_LENGTH,
    trust_roots: Collection[str] = (DEFAULT_TRUST_ROOT,),
) -> Policy:
    """Parse a policy; raises `PolicyError` whose `field` names the offending field.

    `trust_roots` are the names of the trust roots configured here, which `trustRoots` may
    choose from."""
    if not isinstance(d, Mapping):
        raise PolicyError(f"found {type(d).__name__}, expected an object")
    _check_text(d)
    unknown = sorted(
        k for k in d if k not in _POLICY_FIELDS and k not in _IDENTITY_FIELDS and k != "extensions"
    )
    if unknown:
        raise PolicyError("unknown field, expected a cosign verify flag", field=unknown[0])
    identities: list[Identity] = []
    top = {k: v for k, v in d.items() if k in _IDENTITY_FIELDS or k == "extensions"}
    if top:
        identities.append(_identity(top, "", "policy", max_regexp_length))
    identities += _identities(d.get("identities", []), "", max_regexp_length)
    keys = _keys(d.get("keys", []))
    if not identities and not keys:
        raise PolicyError(
            "found no identity and no key, expected at least one "
            "(an empty policy would accept any signature)"
        )
    threshold = d.get("threshold", 1)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int)
        or not 1 <= threshold <= MAX_THRESHOLD
    ):
        raise PolicyError(
            f"found {threshold!r:.20}, expected an integer from 1 to {MAX_THRESHOLD}",
            field="threshold",
        )
    tlog = _tlog(d.get("transparencyLog", {}))
    attestations = _attestations(d.get("attestations", []), max_regexp_length)
    roots = _trust_roots(d.get("trustRoots", [DEFAULT_TRUST_ROOT]), trust_roots)
    accept_attestations = d.get("acceptAttestationsAsSignatures", False)
    if not isinstance(accept_attestations, bool):
        raise PolicyError(
            "found no boolean, expected true or false", field="acceptAttestationsAsSignatures"
        )
    canonical: dict[str, Any] = {
        "identities": [[c.to_json() for c in i.constraints] for i in identities],
        "keys": [k.fingerprint for k in keys],
        "threshold": threshold,
        "transparencyLog": {
            "required": tlog.required,
            "allowInclusionPromise": tlog.allow_inclusion_promise,
        },
    }
    # Added only when used, so that the digests of policies without them stay as they were.
    if attestations:
        canonical["attestations"] = [a.to_json() for a in attestations]
    if roots != (DEFAULT_TRUST_ROOT,):
        canonical["trustRoots"] = list(roots)
    if accept_attestations:
        canonical["acceptAttestationsAsSignatures"] = True
    return Policy(
        identities=tuple(identities),
        keys=keys,
        threshold=threshold,
        transparency_log=tlog,
        digest="sha256:" + hashlib.sha256(rfc8785.dumps(canonical)).hexdigest(),
        attestations=attestations,
        trust_roots=roots,
        accept_attestations_as_signatures=accept_attestations,
    )


def _check_text(policy: Mapping[Any, Any]) -> None:
    """Every key in the policy is text, and all its text is Unicode that UTF-8 can carry.

    JSON can spell a lone surrogate (`"\\ud800"`); no certificate or statement holds one, and
    the policy's digest (RFC 8785 hashes UTF-8) could not be computed. A policy file's YAML can
    have keys that are numbers. Both are refused naming the field, before anything else."""
    stack: list[tuple[object, str]] = [(policy, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            if not _is_unicode(node):
                raise PolicyError("found a lone surrogate, expected Unicode text", field=at or None)
        elif isinstance(node, Mapping):
            children: list[tuple[object, str]] = []
            for key, value in node.items():
                if not isinstance(key, str) or not _is_unicode(key):
                    raise PolicyError(f"found the key {key!r:.40}, expected text", field=at or None)
                children.append((value, f"{at}.{key}" if at else key))
            stack.extend(reversed(children))
        elif isinstance(node, list | tuple):
            stack.extend(reversed([(v, f"{at}[{i}]") for i, v in enumerate(node)]))


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _identities(raw: object, prefix: str, max_length: int) -> list[Identity]:
    """`identities`: more acceptable signers, each an object of identity fields."""
    if not isinstance(raw, list):
        raise PolicyError(
            "found no list, expected a list of identities", field=f"{prefix}identities"
        )
    identities: list[Identity] = []
    for i, item in enumerate(raw):
        where = f"{prefix}identities[{i}]"
        if not isinstance(item, Mapping):
            raise PolicyError("found no object, expected an identity", field=where)
        extra = sorted(k for k in item if k not in _IDENTITY_FIELDS and k != "extensions")
        if extra:
            raise PolicyError(
                "unknown field, expected an identity field", field=f"{where}.{extra[0]}"
            )
        identities.append(_identity(item, f"{where}.", where, max_length))
    return identities


def _attestations(raw: object, max_length: int) -> tuple[AttestationRequirement, ...]:
    if not isinstance(raw, list):
        raise PolicyError("found no list, expected a list of attestations", field="attestations")
    if len(raw) > MAX_ATTESTATIONS:
        raise PolicyError(
            f"found {len(raw)}, expected at most {MAX_ATTESTATIONS}", field="attestations"
        )
    found: list[AttestationRequirement] = []
    for i, item in enumerate(raw):
        where = f"attestations[{i}]"
        if not isinstance(item, Mapping):
            raise PolicyError("found no object, expected an attestation", field=where)
        unknown = sorted(k for k in item if k not in _ATTESTATION_FIELDS)
        if unknown:
            raise PolicyError(
                "unknown field, expected " + ", ".join(sorted(_ATTESTATION_FIELDS)),
                field=f"{where}.{unknown[0]}",
            )
        kind = item.get("predicateType")
        if not isinstance(kind, str) or not kind:
            raise PolicyError(
                "found no text, expected a predicate type URI or one of "
                + ", ".join(PREDICATE_TYPES),
                field=f"{where}.predicateType",
            )
        name = item.get("name", where)
        if not isinstance(name, str) or not name:
            raise PolicyError("found no text, expected a name", field=f"{where}.name")
        conditions = item.get("conditions", [])
        if not isinstance(conditions, list) or len(conditions) > MAX_CONDITIONS:
            raise PolicyError(
                f"expected a list of at most {MAX_CONDITIONS} conditions",
                field=f"{where}.conditions",
            )
        found.append(
            AttestationRequirement(
                label=name,
                predicate_type=PREDICATE_TYPES.get(kind, kind),
                identities=tuple(_identities(item.get("identities", []), f"{where}.", max_length)),
                keys=_keys(item.get("keys", []), f"{where}.keys"),
                conditions=tuple(
                    condition_from_mapping(c, f"{where}.conditions[{j}]", max_length)
                    for j, c in enumerate(conditions)
                ),
            )
        )
    return tuple(found)


def _trust_roots(raw: object, known: Collection[str]) -> tuple[str, ...]:
    """`trustRoots`: names of configured trust roots a signature may chain to, in order."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_TRUST_ROOTS:
        raise PolicyError(
            f"expected a list of 1 to {MAX_TRUST_ROOTS} trust root names", field="trustRoots"
        )
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in known:
            raise PolicyError(
                f"found {name!r:.40}, expected one of the trust roots configured here: "
                + ", ".join(sorted(known)),
                field=f"trustRoots[{i}]",
            )
    return tuple(dict.fromkeys(raw))


def _constraint(
    name: str, claim: str, value: object, *, regexp: bool, where: str, max_length: int
) -> Constraint:
    if not isinstance(value, str) or not value:
        raise PolicyError("found no text, expected a non-empty string", field=where)
    compiled = compile_re2(value, where, max_length) if regexp else None
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


def _keys(raw: object, field: str = "keys") -> tuple[PolicyKey, ...]:
    if not isinstance(raw, list):
        raise PolicyError("found no list, expected a list of PEM public keys", field=field)
    keys: list[PolicyKey] = []
    for i, pem in enumerate(raw):
        where = f"{field}[{i}]"
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
