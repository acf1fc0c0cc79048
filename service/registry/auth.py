"""Registry credentials and the token cache.

- Credentials come from a mapping (`{"ghcr.io": ("user", "token")}`) and/or a docker
  `config.json` (`auths.<host>.auth` = base64 `user:password`, or `username` + `password`).
  Credential helpers (`credsStore`, `credHelpers`) and `identitytoken` are not supported.
- `WWW-Authenticate` challenges are parsed into `Challenge` (scheme + parameters).
- Bearer tokens are cached per (registry, scope) until `expires_in` (default 60 s, the Docker
  token spec's minimum) minus a safety margin, behind a lock; the clock is injected.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from service.registry.errors import RegistryError
from service.registry.reference import DOCKER_HUB

DEFAULT_TOKEN_TTL = 60.0
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')
_HUB_KEYS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


def normalise_registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` → `index.docker.io`; `HOST:PORT/path` → `host:port`."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("/", 1)[0].lower()
    return DOCKER_HUB if text in _HUB_KEYS else text


def load_docker_config(path: Path) -> dict[str, tuple[str, str]]:
    """Credentials by registry from a docker `config.json`; a bad file raises `RegistryError`."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"docker config {path}: cannot read: {exc}") from None
    auths = doc.get("auths", {}) if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        raise RegistryError(f"docker config {path}: 'auths' must be an object")
    out: dict[str, tuple[str, str]] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise RegistryError(f"docker config {path}: auths[{key!r}] must be an object")
        user, password = entry.get("username"), entry.get("password")
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                decoded = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise RegistryError(
                    f"docker config {path}: auths[{key!r}].auth is not base64 of user:password"
                ) from None
            user, sep, password = decoded.partition(":")
            if not sep:
                raise RegistryError(
                    f"docker config {path}: auths[{key!r}].auth has no ':' between user and "
                    "password"
                )
        if isinstance(user, str) and user and isinstance(password, str):
            out[normalise_registry_key(key)] = (user, password)
    return out


@dataclass(frozen=True)
class Challenge:
    """A parsed `WWW-Authenticate` challenge."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def parse(cls, header: str | None) -> Challenge | None:
        """`Bearer realm="…",service="…"` → Challenge("bearer", {...}); None if absent."""
        if not header or not header.strip():
            return None
        scheme, _, rest = header.strip().partition(" ")
        params: dict[str, str] = {}
        pos = 0
        while pos < len(rest):
            match = _PARAM_RE.match(rest, pos)
            if match is None or match.end() == pos:
                break
            name, value = match.group(1).lower(), match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params.setdefault(name, value)
            pos = match.end()
        return cls(scheme.lower(), MappingProxyType(params))


class TokenCache:
    """Bearer tokens by (registry, scope), each kept until shortly before it expires."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, registry: str, scope: str) -> str | None:
        with self._lock:
            entry = self._tokens.get((registry, scope))
            if entry is None:
                return None
            token, expires = entry
            if self._clock() >= expires:
                del self._tokens[(registry, scope)]
                return None
            return token

    def put(self, registry: str, scope: str, token: str, expires_in: float | None) -> None:
        ttl = DEFAULT_TOKEN_TTL if expires_in is None or expires_in <= 0 else expires_in
        # Renew a little early so a token never expires between the cache and the registry.
        margin = min(10.0, ttl * 0.1)
        with self._lock:
            self._tokens[(registry, scope)] = (token, self._clock() + ttl - margin)

    def drop(self, registry: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((registry, scope), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tokens)
