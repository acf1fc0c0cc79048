"""Bearer API tokens mapped to tenants.

With no token configured, authentication is off (development) and `/readyz` says so. With
tokens, every endpoint but the public ones needs `Authorization: Bearer <token>`. Tokens are
compared in constant time (hashed, then `hmac.compare_digest` against every known token, no
early exit) and never logged or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flask import g, request

from service.api.errors import ApiProblem
from service.config import PREFIX, Settings, SettingsError
from service.state import services

# Reachable without a token: liveness, readiness, the contract, public keys and badges.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/version", "/openapi.yaml", "/docs", "/metrics", "/v1/keys"}
)
PUBLIC_PREFIXES = ("/v1/badge", "/docs/")
# Public only while admission is configured (SIGVERIFY_ADMISSION_POLICY, or the policy file's
# `admission` section): the Kubernetes API server calls webhooks without our tokens; the
# NetworkPolicy (who may connect) and TLS protect it instead.
ADMISSION_PATH = "/v1/admission"
AUTH_OFF_WARNING = (
    f"no API tokens configured ({PREFIX}API_TOKENS, {PREFIX}API_TOKENS_FILE): every caller may "
    "use every policy"
)


@dataclass(frozen=True)
class Tokens:
    """sha256(token) -> tenant. Empty means authentication is off."""

    by_digest: tuple[tuple[bytes, str], ...]

    @property
    def enabled(self) -> bool:
        return bool(self.by_digest)

    def tenant(self, token: str) -> str | None:
        """The tenant `token` belongs to, or None; the same work whichever token matches."""
        digest = hashlib.sha256(token.encode()).digest()
        found: str | None = None
        for known, tenant in self.by_digest:
            if hmac.compare_digest(known, digest):
                found = tenant
        return found


def _pairs_from_file(path: Path) -> Iterable[tuple[str, str]]:
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 2 or len(parts[1]) < 16:
            raise SettingsError(
                f"{PREFIX}API_TOKENS_FILE={str(path)!r}: line {n}: expected `tenant token` "
                "with a token of 16+ characters"
            )
        yield parts[0], parts[1]


def load_tokens(settings: Settings) -> Tokens:
    """The tokens from settings and the tokens file; a token given twice is an error."""
    pairs = list(settings.api_tokens)
    if settings.api_tokens_file is not None:
        pairs += list(_pairs_from_file(settings.api_tokens_file))
    seen: dict[bytes, str] = {}
    for tenant, token in pairs:
        digest = hashlib.sha256(token.encode()).digest()
        if digest in seen and seen[digest] != tenant:
            raise SettingsError(
                f"API tokens: one token is given to tenants {seen[digest]} and {tenant}"
            )
        seen[digest] = tenant
    return Tokens(tuple(seen.items()))


def is_public(path: str, *, admission: bool = False) -> bool:
    """Whether `path` needs no token; the admission webhook only when `admission` is configured."""
    if admission and path == ADMISSION_PATH:
        return True
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def authenticate(tokens: Tokens) -> None:
    """Before every request: set `g.tenant` (None when auth is off), or answer 401."""
    g.tenant = None
    admission = services().admission_configured
    if not tokens.enabled or is_public(request.path, admission=admission):
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    tenant = tokens.tenant(token.strip()) if scheme.lower() == "bearer" and token else None
    if tenant is None:
        raise ApiProblem(
            401,
            "Unauthorized",
            "a valid API token is required: Authorization: Bearer <token>",
            kind="unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="sigverify"'},
        )
    g.tenant = tenant


def current_tenant() -> str | None:
    """The caller's tenant; None when authentication is off."""
    tenant = g.get("tenant")
    return tenant if isinstance(tenant, str) else None
