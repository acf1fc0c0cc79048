"""`RegistryClient`: reads manifests and blobs from OCI registries, checked and bounded.

- HTTP goes through the outbound kernel (`service.outbound`): one client per `RegistryClient`,
  created on first use (so after gunicorn forks, and again if the process id changes), safe to
  share between threads; a deadline over each whole exchange (`timeout`: connect, headers and
  body) and the request's own; at most `host_connections` exchanges per registry host; 429,
  502, 503, 504 and connection errors retried with backoff, `Retry-After` honoured when it fits
  the request's time; a circuit breaker per registry host (`RegistryCircuitOpen` while open).
- Every body is streamed and refused as soon as it passes its cap (`Content-Length` first, then
  the bytes actually read), so nothing large is buffered.
- Nothing the registry says about a digest is trusted: every manifest and blob is hashed and
  compared with the digest it was fetched by (and with `Docker-Content-Digest` when fetched by
  tag).
- Auth: anonymous or credentialed bearer tokens (the `WWW-Authenticate: Bearer` challenge), and
  basic auth; credentials from a mapping or a docker `config.json`.
- Every connection goes through the outbound-address guard (`transport.py`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx

from service.outbound import (
    BreakerState,
    CircuitOpen,
    HttpKernel,
    KernelConfig,
    ProtocolFailure,
    ResponseTooLarge,
    RetryPolicy,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from service.registry.auth import (
    Challenge,
    TokenCache,
    load_docker_config,
    normalise_registry_key,
)
from service.registry.errors import (
    DigestMismatch,
    InvalidReference,
    LimitExceeded,
    NotFound,
    RegistryCircuitOpen,
    RegistryError,
    RegistryTimeout,
    Unauthorized,
    Unavailable,
)
from service.registry.guard import AddressPolicy, Resolver, host_matches, system_resolve
from service.registry.manifest import (
    ACCEPT_MANIFESTS,
    OCI_INDEX,
    Manifest,
    compute_digest,
    verify_digest,
)
from service.registry.reference import ImageReference, check_digest
from service.registry.transport import GuardedTransport

if TYPE_CHECKING:
    import ssl

    from service.config import Settings

MAX_TOKEN_BYTES = 256 * 1024
MAX_ERROR_BYTES = 16 * 1024


@dataclass(frozen=True)
class RegistryConfig:
    """Everything a `RegistryClient` is configured with; `from_settings` maps the service's.

    `timeout` bounds one whole exchange (connect, headers, body), each retry its own."""

    timeout: float = 10.0
    retries: int = 2
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    host_connections: int = 8
    max_manifest_bytes: int = 4 << 20
    max_blob_bytes: int = 4 << 20
    max_signatures: int = 20
    insecure_registries: tuple[str, ...] = ()
    policy: AddressPolicy = field(default_factory=AddressPolicy)
    docker_config: Path | None = None
    credentials: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    user_agent: str = "sigverify"
    max_redirects: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> RegistryConfig:
        return cls(
            timeout=settings.registry_timeout,
            retries=settings.registry_retries,
            breaker_failures=settings.registry_breaker_failures,
            breaker_cooldown=settings.registry_breaker_cooldown,
            host_connections=settings.registry_host_connections,
            max_manifest_bytes=settings.max_manifest_bytes,
            max_blob_bytes=settings.max_blob_bytes,
            max_signatures=settings.max_signatures,
            insecure_registries=settings.insecure_registries,
            policy=AddressPolicy(
                allow_registries=settings.registry_allow,
                deny_registries=settings.registry_deny,
                allow_loopback=settings.allow_loopback,
                allow_private=settings.allow_private,
            ),
            docker_config=settings.docker_config,
        )


@dataclass(frozen=True)
class ResolvedImage:
    """A reference resolved to a digest, with the (digest-checked) manifest it names.

    `reference` is the reference as asked (its `digest` is None if a tag was resolved).
    `platforms` lists an index's entries (`os`, `architecture`, `variant`, `digest`, ...);
    it is empty for a single-platform manifest. `manifest` is None only for a digest reference
    whose manifest the registry does not hold (see `RegistryClient.resolve`).
    """

    reference: ImageReference
    digest: str
    media_type: str | None
    manifest: Manifest | None
    platforms: tuple[Mapping[str, str], ...] = ()

    @property
    def is_index(self) -> bool:
        return self.manifest is not None and self.manifest.is_index

    @classmethod
    def of(cls, reference: ImageReference, manifest: Manifest) -> ResolvedImage:
        """`reference` resolved to `manifest` (already checked against its digest)."""
        return cls(
            reference=reference,
            digest=manifest.digest,
            media_type=manifest.media_type,
            manifest=manifest,
            platforms=_platforms(manifest),
        )

    @property
    def pinned(self) -> ImageReference:
        """The reference pinned to the resolved digest."""
        return self.reference.with_digest(self.digest)


@dataclass(frozen=True)
class _Body:
    status: int
    headers: httpx.Headers
    data: bytes


def _platforms(manifest: Manifest) -> tuple[Mapping[str, str], ...]:
    out: list[Mapping[str, str]] = []
    for desc in manifest.manifests:
        entry = dict(desc.platform)
        entry["digest"] = desc.digest
        entry["mediaType"] = desc.media_type
        out.append(MappingProxyType(entry))
    return tuple(out)


def _valid_digest(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return check_digest(value.strip())
    except InvalidReference:
        return None


class RegistryClient:
    """Reads manifests and blobs from OCI registries; see the module docstring."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        resolve: Resolver = system_resolve,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config or RegistryConfig()
        self._resolve = resolve
        self._clock = clock
        self._ssl_context = ssl_context
        creds: dict[str, tuple[str, str]] = {}
        if self.config.docker_config is not None:
            creds.update(load_docker_config(self.config.docker_config))
        for key, value in self.config.credentials.items():
            creds[normalise_registry_key(key)] = value
        self._credentials = creds
        self._tokens = TokenCache(clock)
        self._challenges: dict[str, Challenge] = {}
        self._lock = threading.Lock()
        config = self.config
        self._kernel = HttpKernel(
            KernelConfig(
                timeout=config.timeout,
                host_connections=config.host_connections,
                max_redirects=config.max_redirects,
                retry=RetryPolicy(retries=config.retries),
                breaker_failures=config.breaker_failures,
                breaker_cooldown=config.breaker_cooldown,
                headers={"user-agent": config.user_agent},
            ),
            transport=lambda: GuardedTransport(
                config.policy,
                insecure_registries=config.insecure_registries,
                resolve=self._resolve,
                ssl_context=self._ssl_context,
            ),
            clock=clock,
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def breaker_state(self) -> BreakerState:
        """The worst state among the registry hosts' circuit breakers."""
        return self._kernel.breaker_state

    def close(self) -> None:
        self._kernel.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public operations --------------------------------------------------------------

    def resolve(self, ref: ImageReference) -> ResolvedImage:
        """The digest `ref` names now, with its manifest fetched and checked.

        A tag is resolved with HEAD (cheap, and not rate-limited on Docker Hub); the manifest is
        then fetched by that digest and hashed. Without a digest header, the manifest is fetched
        by tag and its digest computed. A digest reference is fetched and checked too; if the
        registry does not hold it, the digest still names the content exactly, so (as `cosign
        verify` does, which never fetches a pinned image) it resolves to itself without a
        manifest, and its signatures can still be found and verified.
        """
        if ref.digest is not None:
            try:
                manifest = self.get_manifest(ref, ref.digest)
            except NotFound:
                return ResolvedImage(
                    reference=ref, digest=ref.digest, media_type=None, manifest=None
                )
        else:
            tag = ref.identifier
            head = self._request(
                "HEAD", ref, f"manifests/{tag}", {"accept": ACCEPT_MANIFESTS}, limit=0
            )
            digest = _valid_digest(head.headers.get("docker-content-digest"))
            if digest is not None and not digest.startswith("sha256:"):
                digest = None  # an image is named by its sha256: fetch by tag and hash it
            manifest = (
                self.get_manifest(ref, digest) if digest is not None else self.get_manifest(ref)
            )
        return ResolvedImage.of(ref, manifest)

    def get_manifest(self, image: ImageReference, ref: str | None = None) -> Manifest:
        """The manifest `ref` (a tag or digest; default: the image's) in `image`'s repository."""
        target = ref or image.identifier
        body = self._request(
            "GET",
            image,
            f"manifests/{target}",
            {"accept": ACCEPT_MANIFESTS},
            limit=self.config.max_manifest_bytes,
        )
        return self._checked_manifest(image, target, body)

    def get_blob(
        self, image: ImageReference, digest: str, *, expected_size: int | None = None
    ) -> bytes:
        """The blob `digest` in `image`'s repository, hashed and checked, at most
        `max_blob_bytes` (and exactly `expected_size` bytes when a descriptor says so)."""
        check_digest(digest)
        limit = self.config.max_blob_bytes
        if expected_size is not None and expected_size > limit:
            raise LimitExceeded(
                f"blob {digest} in {image.name} is {expected_size} bytes, more than the "
                f"{limit}-byte limit"
            )
        body = self._request("GET", image, f"blobs/{digest}", {}, limit=limit)
        if expected_size is not None and len(body.data) != expected_size:
            raise DigestMismatch(
                f"blob {digest} in {image.name}: {len(body.data)} bytes, descriptor says "
                f"{expected_size}"
            )
        verify_digest(body.data, digest, f"blob {digest} in {image.name}")
        return body.data

    def get_referrers(
        self, image: ImageReference, digest: str, artifact_type: str | None = None
    ) -> tuple[Manifest, bool] | None:
        """The OCI 1.1 referrers index of `digest` and whether the server applied the
        `artifactType` filter; None when the registry has no referrers API (404)."""
        check_digest(digest)
        params = {"artifactType": artifact_type} if artifact_type else None
        body = self._request(
            "GET",
            image,
            f"referrers/{digest}",
            {"accept": OCI_INDEX},
            limit=self.config.max_manifest_bytes,
            params=params,
            missing_ok=True,
        )
        if body.status != 200:
            return None
        # The referrers response is generated, not content-addressed: hash it for the record.
        manifest = Manifest.parse(
            body.data, compute_digest(body.data), body.headers.get("content-type")
        )
        applied = {
            item.strip().lower()
            for item in body.headers.get("oci-filters-applied", "").split(",")
            if item.strip()
        }
        return manifest, "artifacttype" in applied

    # -- internals ----------------------------------------------------------------------

    def _checked_manifest(self, image: ImageReference, target: str, body: _Body) -> Manifest:
        claimed = _valid_digest(body.headers.get("docker-content-digest"))
        asked = _valid_digest(target) if ":" in target else None
        where = f"manifest {target} in {image.name}"
        if asked is not None:
            verify_digest(body.data, asked, where)
            digest = asked
        else:
            digest = compute_digest(body.data)  # by tag: an image is named by its sha256
        if claimed is not None and claimed != digest:
            # A header that disagrees with the bytes is refused; one that names them in another
            # algorithm (sha512 for sha256) is merely not used.
            verify_digest(body.data, claimed, where)
        return Manifest.parse(body.data, digest, body.headers.get("content-type"))

    def _base_url(self, registry: str) -> str:
        """`https://registry`, or `http://registry` for a registry listed as insecure."""
        if registry.startswith("["):
            host, _, rest = registry[1:].partition("]")
            port = rest[1:]
        else:
            host, _, port = registry.partition(":")
        # Plain http's port is 80 unless the registry names one.
        insecure = host_matches(host, int(port or 80), self.config.insecure_registries)
        return f"{'http' if insecure else 'https'}://{registry}"

    def _auth_header(self, registry: str, scope: str) -> dict[str, str]:
        token = self._tokens.get(registry, scope)
        if token is not None:
            return {"authorization": f"Bearer {token}"}
        with self._lock:
            challenge = self._challenges.get(registry)
        creds = self._credentials.get(registry)
        if challenge is not None and challenge.scheme == "bearer":
            token = self._fetch_token(registry, scope, challenge)
            return {"authorization": f"Bearer {token}"}
        if challenge is not None and challenge.scheme == "basic" and creds is not None:
            return {"authorization": _basic(creds)}
        return {}

    def _fetch_token(self, registry: str, scope: str, challenge: Challenge) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise Unauthorized(f"registry {registry}: bearer challenge has no realm")
        params = {"scope": scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {"accept": "application/json"}
        creds = self._credentials.get(registry)
        if creds is not None:
            headers["authorization"] = _basic(creds)
        body = self._send(
            "GET", realm, headers, MAX_TOKEN_BYTES, params=params, what=f"token for {registry}"
        )
        if body.status in {401, 403}:
            raise Unauthorized(
                f"registry {registry}: token service refused {scope} ({body.status})"
            )
        _raise_for_status(body, f"token for {registry}")
        try:
            doc = json.loads(body.data)
        except (ValueError, RecursionError):
            raise Unauthorized(f"registry {registry}: token response is not JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"registry {registry}: token response has no token")
        expires_in = doc.get("expires_in")
        ttl = float(expires_in) if isinstance(expires_in, int | float) else None
        self._tokens.put(registry, scope, token, ttl)
        return token

    def _request(
        self,
        method: str,
        image: ImageReference,
        path: str,
        headers: Mapping[str, str],
        *,
        limit: int,
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> _Body:
        """One registry API call with auth: retried once after a 401 challenge."""
        registry = image.registry
        url = f"{self._base_url(registry)}/v2/{image.repository}/{path}"
        scope = f"repository:{image.repository}:pull"
        what = f"{path.split('/', 1)[0].rstrip('s')} {path.split('/', 1)[-1]} in {image.name}"
        sent_auth = False
        for attempt in range(2):
            auth = self._auth_header(registry, scope)
            sent_auth = sent_auth or bool(auth)
            body = self._send(method, url, {**headers, **auth}, limit, params=params, what=what)
            if body.status != 401 or attempt == 1:
                break
            challenge = Challenge.parse(body.headers.get("www-authenticate"))
            if challenge is None or challenge.scheme not in {"bearer", "basic"}:
                raise Unauthorized(f"{what}: 401 without a usable WWW-Authenticate challenge")
            if challenge.scheme == "basic" and registry not in self._credentials:
                raise Unauthorized(f"{what}: registry {registry} requires credentials")
            with self._lock:
                self._challenges[registry] = challenge
            self._tokens.drop(registry, scope)
        if body.status == 401:
            raise Unauthorized(
                f"{what}: credentials refused" if sent_auth else f"{what}: authentication required"
            )
        if missing_ok and body.status in {400, 404, 405}:
            return body
        _raise_for_status(body, what)
        return body

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        limit: int,
        *,
        params: Mapping[str, str] | None,
        what: str,
    ) -> _Body:
        """One exchange through the kernel; a 2xx body is read up to `limit` bytes, an error
        body up to `MAX_ERROR_BYTES` (beyond that it only loses its detail); all else mapped.

        The kernel's `DeadlineExceeded` (the request's own time ran out) passes through."""
        try:
            answer = self._kernel.exchange(
                method,
                url,
                headers=headers,
                params=params,
                limit=limit,
                error_limit=MAX_ERROR_BYTES,
            )
        except ResponseTooLarge as exc:
            raise LimitExceeded(f"{what}: {exc}") from None
        except CircuitOpen as exc:
            raise RegistryCircuitOpen(
                f"{what}: registry {exc.host} is failing; circuit breaker open, not asking "
                f"for {exc.retry_in:.0f}s",
                host=exc.host,
                retry_in=exc.retry_in,
            ) from None
        except UpstreamTimeout as exc:
            raise RegistryTimeout(f"{what}: timed out ({exc})") from None
        except UpstreamUnreachable as exc:
            raise Unavailable(f"{what}: {exc.cause}: {exc.detail}") from None
        except ProtocolFailure as exc:
            raise Unavailable(f"{what}: {exc}") from None
        except httpx.InvalidURL as exc:  # a token realm the registry sent
            raise RegistryError(f"{what}: not a usable URL: {exc}") from None
        return _Body(answer.status, answer.headers, answer.data)


def _basic(creds: tuple[str, str]) -> str:
    user, password = creds
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _error_detail(body: _Body) -> str:
    try:
        doc: Any = json.loads(body.data)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code, message = errors[0].get("code", ""), errors[0].get("message", "")
            return f" ({str(code)[:60]}: {str(message)[:200]})"
    except (ValueError, RecursionError):
        pass
    return ""


def _raise_for_status(body: _Body, what: str) -> None:
    status = body.status
    if status == 200:
        return
    detail = _error_detail(body)
    if status == 404:
        raise NotFound(f"{what}: not found{detail}")
    if status in {401, 403}:
        raise Unauthorized(f"{what}: access denied ({status}){detail}")
    if status == 429:
        raise Unavailable(f"{what}: rate limited (429){detail}")
    if status >= 500:
        raise Unavailable(f"{what}: registry error ({status}){detail}")
    raise RegistryError(f"{what}: unexpected status {status}{detail}")
