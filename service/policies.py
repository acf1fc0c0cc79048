"""Named policies from a YAML file: each owned by a tenant, each enforcing or auditing.

```yaml
policies:
  - name: release                      # unique, [a-z0-9][a-z0-9._-]*
    tenant: platform                   # who may use it (see SIGVERIFY_API_TOKENS)
    mode: enforce                      # or audit: a failure is reported, not enforced
    public: false                      # true: GET /v1/badge answers for it (default false)
    description: Images built by our release workflow
    policy: {certificateIdentity: ..., certificateOidcIssuer: ...}   # as POST /v1/verify takes
admission:                             # optional: which policy POST /v1/admission applies where
  default: release                     # namespaces not listed below (omitted: they are denied)
  namespaces: {payments: release, dev: legacy-audit}
  exempt: [kube-system]                # never verified (omitted: SIGVERIFY_ADMISSION_EXEMPT_...)
```

The file is read at start (an invalid file stops the start) and again when it changes; an
invalid new version is rejected whole, logged, and the last good one stays in force.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from service import core

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_FIELDS = {"name", "tenant", "mode", "public", "description", "policy"}
_SECTIONS = {"policies", "admission"}
_ADMISSION_FIELDS = {"default", "namespaces", "exempt"}
# A Kubernetes namespace name: an RFC 1123 DNS label.
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

Mode = Literal["enforce", "audit"]


class PolicyFileError(ValueError):
    """The policy file is invalid; the message names the policy and field."""


@dataclass(frozen=True)
class NamedPolicy:
    """A policy as the file defines it, parsed."""

    name: str
    tenant: str
    mode: Mode
    # Whether GET /v1/badge answers for it: a badge is public (no token), and what it shows
    # (which repositories and tags exist, what signed them) is then public too.
    public: bool
    description: str
    policy: core.Policy = field(repr=False)
    document: Mapping[str, Any] = field(repr=False)  # the policy as written, for listing

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant": self.tenant,
            "mode": self.mode,
            "public": self.public,
            "description": self.description,
            "digest": self.policy.digest,
            "policy": dict(self.document),
        }


@dataclass(frozen=True)
class AdmissionRules:
    """The file's `admission` section: the named policy the webhook applies in each namespace.

    Every name is one of the file's policies (checked on parsing). A namespace that is neither
    listed nor exempt gets `default`; with no `default` it has no policy, and is denied."""

    default: str | None
    namespaces: Mapping[str, str]
    exempt: tuple[str, ...] | None  # None: not in the file, the setting's list applies

    def policy_for(self, namespace: str | None) -> str | None:
        """The policy name for `namespace`'s objects (None: no policy applies)."""
        if namespace is not None and namespace in self.namespaces:
            return self.namespaces[namespace]
        return self.default


@dataclass(frozen=True)
class PolicyFile:
    """The whole file, parsed: the named policies, and the admission rules if it has them."""

    policies: Mapping[str, NamedPolicy]
    admission: AdmissionRules | None


def parse_policy_file(
    data: bytes,
    *,
    max_regexp_length: int,
    trust_roots: Collection[str] = (core.DEFAULT_TRUST_ROOT,),
) -> PolicyFile:
    """The policies and the admission rules; `PolicyFileError` on the first problem."""
    if len(data) > MAX_FILE_BYTES:
        raise PolicyFileError(f"found {len(data)} bytes, expected at most {MAX_FILE_BYTES}")
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"not valid YAML: {exc}") from None
    if not isinstance(document, dict) or "policies" not in document:
        raise PolicyFileError("expected a mapping with the key `policies` (and maybe `admission`)")
    unknown_sections = sorted(set(document) - _SECTIONS, key=str)
    if unknown_sections:
        raise PolicyFileError(f"{unknown_sections[0]!s:.80}: unknown section")
    policies = _parse_named(
        document["policies"], max_regexp_length=max_regexp_length, trust_roots=trust_roots
    )
    admission = None
    if "admission" in document:
        admission = _parse_admission(document["admission"], policies)
    return PolicyFile(policies, admission)


def _parse_named(
    items: Any, *, max_regexp_length: int, trust_roots: Collection[str]
) -> dict[str, NamedPolicy]:
    """The `policies` list, by name."""
    if not isinstance(items, list):
        raise PolicyFileError("policies: expected a list")
    found: dict[str, NamedPolicy] = {}
    for i, item in enumerate(items):
        where = f"policies[{i}]"
        if not isinstance(item, dict):
            raise PolicyFileError(f"{where}: expected a mapping")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise PolicyFileError(
                f"{where}.name: expected [a-z0-9][a-z0-9._-]*, found {name!r:.80}"
            )
        where = f"{where} ({name})"
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise PolicyFileError(f"{where}.{unknown[0]}: unknown field")
        if name in found:
            raise PolicyFileError(f"{where}.name: defined twice")
        tenant = item.get("tenant")
        if not isinstance(tenant, str) or not tenant.strip():
            raise PolicyFileError(f"{where}.tenant: expected a non-empty string")
        mode = item.get("mode", "enforce")
        if mode not in ("enforce", "audit"):
            raise PolicyFileError(f"{where}.mode: expected enforce or audit, found {mode!r:.40}")
        public = item.get("public", False)
        if not isinstance(public, bool):
            raise PolicyFileError(f"{where}.public: expected true or false, found {public!r:.40}")
        description = item.get("description", "")
        if not isinstance(description, str):
            raise PolicyFileError(f"{where}.description: expected a string")
        raw = item.get("policy")
        if not isinstance(raw, dict):
            raise PolicyFileError(f"{where}.policy: expected a mapping")
        try:
            policy = core.policy_from_mapping(
                raw, max_regexp_length=max_regexp_length, trust_roots=trust_roots
            )
        except core.PolicyError as exc:
            at = f".{exc.field}" if exc.field else ""
            raise PolicyFileError(f"{where}.policy{at}: {exc}") from None
        found[name] = NamedPolicy(name, tenant, mode, public, description, policy, raw)
    return found


def _policy_name(value: Any, where: str, policies: Mapping[str, NamedPolicy]) -> str:
    if not isinstance(value, str) or value not in policies:
        known = ", ".join(sorted(policies)) or "none"
        raise PolicyFileError(
            f"{where}: expected the name of one of `policies` ({known}), found {value!r:.80}"
        )
    return value


def _namespace(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAMESPACE.fullmatch(value):
        raise PolicyFileError(
            f"{where}: expected a namespace name (a DNS label), found {value!r:.80}"
        )
    return value


def _parse_admission(section: Any, policies: Mapping[str, NamedPolicy]) -> AdmissionRules:
    """The `admission` section; every policy it names must be in `policies`."""
    if not isinstance(section, dict):
        raise PolicyFileError("admission: expected a mapping")
    unknown = sorted(set(section) - _ADMISSION_FIELDS, key=str)
    if unknown:
        raise PolicyFileError(f"admission.{unknown[0]!s:.80}: unknown field")
    if "default" not in section and "namespaces" not in section:
        # An empty section would deny every namespace: surely not what was meant.
        raise PolicyFileError("admission: expected `default` or `namespaces` (or both)")
    default = None
    if "default" in section:
        default = _policy_name(section["default"], "admission.default", policies)
    raw = section.get("namespaces", {})
    if not isinstance(raw, dict):
        raise PolicyFileError("admission.namespaces: expected a mapping of namespace to policy")
    namespaces: dict[str, str] = {}
    for key, value in raw.items():
        where = f"admission.namespaces.{key!s:.80}"
        namespaces[_namespace(key, where)] = _policy_name(value, where, policies)
    exempt: tuple[str, ...] | None = None
    if "exempt" in section:
        listed = section["exempt"]
        if not isinstance(listed, list):
            raise PolicyFileError("admission.exempt: expected a list of namespaces")
        exempt = tuple(_namespace(x, f"admission.exempt[{i}]") for i, x in enumerate(listed))
        both = sorted(set(exempt) & set(namespaces))
        if both:
            raise PolicyFileError(
                f"admission.exempt: {both[0]!r} is also in admission.namespaces; "
                "a namespace is either verified or exempt"
            )
    return AdmissionRules(default, namespaces, exempt)


class PolicyStore:
    """The named policies in force, re-read when the file changes (checked at most once per
    `check_interval` seconds, on use)."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_regexp_length: int,
        trust_roots: Collection[str] = (core.DEFAULT_TRUST_ROOT,),
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        last_good: Path | None = None,
        strict: bool = True,
    ) -> None:
        """`last_good`: where each accepted version is copied. Not `strict` (a gunicorn worker
        booting after the file went bad, as workers are recycled): an invalid file at start
        falls back to that copy, so a bad edit never stops the service. The master's check at
        `sigverify serve` is strict, so that copy was valid when this service started or since.
        """
        self.path = path
        self._last_good = last_good
        self._max_regexp_length = max_regexp_length
        self._trust_roots = tuple(trust_roots)
        self._interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._file = PolicyFile({}, None)
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self.last_error: str | None = None
        if path is not None:
            try:
                self._read(path)
            except (OSError, PolicyFileError) as exc:
                if strict or not self._fall_back(path, exc):
                    raise  # an invalid file at start is fatal

    def get(self, name: str) -> NamedPolicy | None:
        self._refresh()
        return self._file.policies.get(name)

    def current(self) -> PolicyFile:
        """The version in force, whole: its policies and admission rules belong together."""
        self._refresh()
        return self._file

    def visible_to(self, tenant: str | None) -> list[NamedPolicy]:
        """The policies `tenant` may use; every policy when auth is off (`tenant` None)."""
        self._refresh()
        return [p for p in self._file.policies.values() if tenant is None or p.tenant == tenant]

    def _read(self, path: Path) -> None:
        """Read, parse and keep a version; its stamp is taken first, so that a rejected
        version is not read again until it changes."""
        stat = path.stat()
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        data = path.read_bytes()
        # One assignment: a reader sees the policies and rules of one version.
        self._file = self._parse(data)
        self._keep(data)

    def _parse(self, data: bytes) -> PolicyFile:
        return parse_policy_file(
            data, max_regexp_length=self._max_regexp_length, trust_roots=self._trust_roots
        )

    def _keep(self, data: bytes) -> None:
        """Copy an accepted version to `last_good` (atomically: workers share it)."""
        if self._last_good is None:
            return
        try:
            self._last_good.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._last_good.with_name(f".{self._last_good.name}.{os.getpid()}")
            temporary.write_bytes(data)
            os.replace(temporary, self._last_good)
        except OSError as exc:
            log.warning("cannot keep the last good policy file at %s: %s", self._last_good, exc)

    def _fall_back(self, path: Path, exc: Exception) -> bool:
        """Serve the last good copy instead of an invalid file; False when there is none."""
        if self._last_good is None:
            return False
        try:
            self._file = self._parse(self._last_good.read_bytes())
        except (OSError, PolicyFileError):
            return False
        self.last_error = f"{path}: {exc}"
        log.error(
            "policy file rejected, the last good version (%s) stays in force: %s",
            self._last_good,
            exc,
        )
        return True

    def _refresh(self) -> None:
        if self.path is None or self._clock() - self._checked < self._interval:
            return
        with self._lock:
            now = self._clock()
            if now - self._checked < self._interval:
                return
            self._checked = now
            try:
                stat = self.path.stat()
                if (stat.st_mtime_ns, stat.st_size) == self._stamp:
                    return
                self._read(self.path)
                self.last_error = None
                log.info(
                    "policy file %s reloaded: %d policies", self.path, len(self._file.policies)
                )
            except (OSError, PolicyFileError) as exc:
                self.last_error = f"{self.path}: {exc}"
                log.error("policy file rejected, the previous version stays in force: %s", exc)
