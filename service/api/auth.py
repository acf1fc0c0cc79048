"""Bearer API tokens mapped to tenants, and who may call the admission webhook.

With no token configured, authentication is off (development) and `/readyz` says so. With
tokens, every endpoint but the public ones needs `Authorization: Bearer <token>`. Tokens are
compared in constant time (hashed, then `hmac.compare_digest` against every known token, no
early exit) and never logged or echoed.

`POST /v1/admission` is called by the Kubernetes API server, which has none of those tokens.
While admission is configured it needs none of them; instead it can require what the API server
presents to webhooks (its AdmissionConfiguration `kubeConfigFile`): a client certificate that
SIGVERIFY_ADMISSION_CLIENT_CA_FILE's CA signed (optionally with one of
SIGVERIFY_ADMISSION_CLIENT_NAMES), and/or a bearer token from SIGVERIFY_ADMISSION_TOKEN_FILE.
Each one set is required. A caller without them gets a 401 or 403 problem, not an
AdmissionReview: the API server treats any non-200 as a failed call and applies the webhook's
`failurePolicy`, as it does when it cannot connect or the TLS handshake fails, and a caller
that is not the API server learns nothing about any image.

`POST /v1/gatekeeper/{policy}` is called by OPA Gatekeeper, which sends no token at all (its
Provider has no field for one) but presents its own client certificate: the same check, with
its own CA and names (SIGVERIFY_GATEKEEPER_CLIENT_CA_FILE, SIGVERIFY_GATEKEEPER_CLIENT_NAMES),
and in place of the API tokens while the provider is on (SIGVERIFY_GATEKEEPER_TENANT names the
tenant whose policies it may use).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import g, request

from service.api.errors import ApiProblem
from service.config import PREFIX, Settings, SettingsError
from service.state import services

log = logging.getLogger(__name__)

# Reachable without a token: liveness, readiness, the contract, public keys and badges.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/version", "/openapi.yaml", "/docs", "/metrics", "/v1/keys"}
)
PUBLIC_PREFIXES = ("/v1/badge", "/docs/")
# Needs no API token while admission is configured (SIGVERIFY_ADMISSION_POLICY, or the policy
# file's `admission` section): the Kubernetes API server calls webhooks without our tokens; its
# client certificate or webhook token (`check_admission_caller`), the NetworkPolicy (who may
# connect) and TLS protect it instead.
ADMISSION_PATH = "/v1/admission"
# Needs no API token while the Gatekeeper provider is on (SIGVERIFY_GATEKEEPER_TENANT): Gatekeeper
# sends none; its client certificate (`check_admission_caller` with its own callers) does instead.
GATEKEEPER_PREFIX = "/v1/gatekeeper/"
ADMISSION_PATHS = frozenset({ADMISSION_PATH, "/v1/admission/mutate"})  # validating, mutating
# The report pages (`service.api.report_page`) for people in a browser: a token in the
# Authorization header or in this cookie, which a sign-in form sets (HttpOnly, SameSite=Strict,
# Secure over HTTPS, path /reports/). The cookie is accepted on these pages only, never by the
# API: a browser that sends it along cannot be made to act on the API.
REPORT_PAGES = "/reports/"
REPORT_COOKIE = "sigverify_token"
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


@dataclass(frozen=True)
class AdmissionCallers:
    """What POST /v1/admission requires of its caller; nothing when both are empty/off."""

    token_digests: tuple[bytes, ...]
    client_certificate: bool
    client_names: frozenset[str]

    @property
    def enabled(self) -> bool:
        return self.client_certificate or bool(self.token_digests)

    def token_matches(self, token: str) -> bool:
        """Whether `token` is one of the file's; the same work whichever matches."""
        digest = hashlib.sha256(token.encode()).digest()
        found = False
        for known in self.token_digests:
            found |= hmac.compare_digest(known, digest)
        return found


def load_admission_callers(settings: Settings) -> AdmissionCallers:
    """The admission webhook's caller requirements from settings (the token file is read now,
    at start; `#` lines and blank lines are skipped)."""
    digests: list[bytes] = []
    path = settings.admission_token_file
    if path is not None:
        where = f"{PREFIX}ADMISSION_TOKEN_FILE={str(path)!r}"
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{where}: cannot read: {exc}") from None
        for n, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if len(text) < 16 or len(text.split()) != 1:
                raise SettingsError(f"{where}: line {n}: expected one token of 16+ characters")
            digests.append(hashlib.sha256(text.encode()).digest())
        if not digests:
            raise SettingsError(f"{where}: no token in the file")
    return AdmissionCallers(
        token_digests=tuple(digests),
        client_certificate=settings.admission_client_ca_file is not None,
        client_names=frozenset(settings.admission_client_names),
    )


def certificate_names(peer: Mapping[str, Any]) -> set[str]:
    """The subject common names and DNS SANs of a certificate as `ssl` decodes it."""
    names = {
        str(value) for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"
    }
    names |= {str(value) for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"}
    return names


def peer_certificate(environ: Mapping[str, Any]) -> dict[str, Any] | None:
    """The client certificate the TLS layer verified on this request's connection (gunicorn
    puts the socket in the WSGI environ), or None: no TLS, or no certificate offered."""
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        return None
    peer = sock.getpeercert()
    return peer or None


def load_gatekeeper_callers(settings: Settings) -> AdmissionCallers:
    """What POST /v1/gatekeeper requires of Gatekeeper: its client certificate, when the CA is
    set (Gatekeeper has no way to send a token)."""
    return AdmissionCallers(
        token_digests=(),
        client_certificate=settings.gatekeeper_client_ca_file is not None,
        client_names=frozenset(settings.gatekeeper_client_names),
    )


def gatekeeper_warning(settings: Settings, *, tokens: bool) -> str | None:
    """What `/readyz` says when the Gatekeeper provider is on, API tokens keep the tenants
    apart, and nothing checks who calls the provider."""
    tenant = settings.gatekeeper_tenant
    if tenant is None or not tokens or settings.gatekeeper_client_ca_file is not None:
        return None
    return (
        f"POST /v1/gatekeeper uses tenant {tenant}'s policies for any caller that reaches the "
        f"port: set {PREFIX}GATEKEEPER_CLIENT_CA_FILE to require Gatekeeper's client certificate"
    )


def check_admission_caller(
    callers: AdmissionCallers,
    *,
    endpoint: str = "the admission webhook",
    caller: str = "the Kubernetes API server",
    logged_as: str = "admission",
) -> None:
    """Before POST /v1/admission (or the Gatekeeper provider, named by `endpoint`, `caller` and
    `logged_as`): the caller shows what `callers` requires, or gets a problem (401 without the
    token, 403 without an accepted certificate). Never logs the token."""
    if callers.client_certificate:
        peer = peer_certificate(request.environ)
        names = certificate_names(peer) if peer is not None else set()
        refused = None
        if peer is None:
            refused = "no client certificate"
        elif callers.client_names and not names & callers.client_names:
            refused = f"client certificate names {sorted(names)} are not accepted"
        if refused is not None:
            log.warning("%s call from %s refused: %s", logged_as, request.remote_addr, refused)
            raise ApiProblem(
                403,
                "Forbidden",
                f"{endpoint} answers only {caller}: its client certificate is required",
                kind="admission-caller-refused",
            )
    if callers.token_digests:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not callers.token_matches(token.strip()):
            log.warning("admission call from %s refused: no valid token", request.remote_addr)
            raise ApiProblem(
                401,
                "Unauthorized",
                "the admission webhook answers only the Kubernetes API server: its token is "
                "required (Authorization: Bearer <token>)",
                kind="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="sigverify-admission"'},
            )


def is_public(path: str, *, admission: bool = False) -> bool:
    """Whether `path` needs no token; the admission webhook only when `admission` is configured."""
    if admission and path in ADMISSION_PATHS:
        return True
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def authenticate(tokens: Tokens) -> None:
    """Before every request: set `g.tenant` (None when auth is off), or answer 401; the
    configured admission webhook checks its own caller instead."""
    g.tenant = None
    svc = services()
    admission = svc.admission_configured
    if admission and request.path in ADMISSION_PATHS:
        check_admission_caller(svc.admission_callers)
        return
    if svc.settings.gatekeeper_tenant is not None and request.path.startswith(GATEKEEPER_PREFIX):
        check_admission_caller(
            svc.gatekeeper_callers,
            endpoint="the Gatekeeper provider",
            caller="OPA Gatekeeper",
            logged_as="gatekeeper",
        )
        g.tenant = svc.settings.gatekeeper_tenant
        return
    if not tokens.enabled or is_public(request.path, admission=admission):
        return
    if request.path.startswith(REPORT_PAGES):
        return  # the page asks for sign-in itself (`page_viewer`), in HTML
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


@dataclass(frozen=True)
class Viewer:
    """Who looks at a report page: `tenant` (None with authentication off), and whether the
    token came in the sign-in cookie (the page then offers to sign out)."""

    tenant: str | None
    by_cookie: bool = False


def page_viewer(tokens: Tokens) -> Viewer | None:
    """The viewer of a report page, or None: authentication is on and neither the
    Authorization header nor the sign-in cookie holds a valid token (the page asks for one)."""
    if not tokens.enabled:
        return Viewer(None)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        tenant = tokens.tenant(token.strip())
        return None if tenant is None else Viewer(tenant)
    cookie = request.cookies.get(REPORT_COOKIE, "")
    tenant = tokens.tenant(cookie) if cookie else None
    return None if tenant is None else Viewer(tenant, by_cookie=True)


def current_tenant() -> str | None:
    """The caller's tenant; None when authentication is off."""
    tenant = g.get("tenant")
    return tenant if isinstance(tenant, str) else None
