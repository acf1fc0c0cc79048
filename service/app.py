"""The application factory: settings first, then services, then blueprints."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from service.api import (
    admission,
    badge,
    batch,
    body,
    budget,
    bundle,
    docs,
    errors,
    gatekeeper,
    health,
    keys,
    observability,
    policies,
    report_page,
    reports,
    verify,
)
from service.api.auth import (
    authenticate,
    load_admission_callers,
    load_gatekeeper_callers,
    load_tokens,
)
from service.cache import Cache, make_cache
from service.config import PREFIX, Settings, SettingsError
from service.core import CoreError, TrustRoot
from service.keys import load_retired_keys, load_signing_key, published_keys
from service.policies import PolicyFileError, PolicyStore
from service.registry import RegistryClient, RegistryConfig, RegistryError
from service.reports import Limits, ReportStore
from service.state import Services, services
from service.telemetry import Telemetry, TrustRootReading, metrics_dir
from service.tlog import CircuitBreaker, RekorClient
from service.tlog.trust import TrustRootStore, refresher_for
from service.verification import VerificationService

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}


def build_services(settings: Settings, *, strict_policies: bool = True) -> Services:
    """Load trust material and keys and connect the cache; bad settings raise SettingsError.

    Not `strict_policies` (a gunicorn worker): an invalid policy file falls back to the last
    good version, which every accepted version is copied to (see `PolicyStore`)."""
    # The best root at hand, without network; a TUF refresh, if on, follows in the background.
    trust = TrustRootStore(settings)
    more_trust = tuple(_named_trust_root(name, path) for name, path in settings.trust_roots)
    signing_key = load_signing_key(settings.signing_key_file, settings.data_dir)
    # Pods that share the verdict-signing key share the cache; one with another key keeps
    # apart (it could not open the others' sealed values anyway).
    cache = make_cache(
        settings.redis_url,
        secret=signing_key.cache_secret,
        namespace=signing_key.key_id[:16],
        max_value_bytes=settings.cache_max_value_bytes,
    )
    try:
        registry = RegistryClient(RegistryConfig.from_settings(settings))
    except RegistryError as exc:  # a docker config.json it cannot read
        raise SettingsError(f"{PREFIX}DOCKER_CONFIG: {exc}") from None
    rekor = _rekor_client(settings, trust.current(), cache)
    telemetry = Telemetry(multiprocess_dir=metrics_dir())
    cache.stats.observers.append(telemetry.cache_event)
    telemetry.watch_breaker("registry", lambda: registry.breaker_state)  # its worst host's
    if rekor is not None:
        telemetry.watch_breaker("rekor", lambda: rekor.breaker_state)
    telemetry.watch_trust_root(lambda: _trust_reading(trust))
    trust.observers.append(telemetry.refresh_trust_root)
    verifier = VerificationService(
        registry=registry,
        rekor=rekor,
        cache=cache,
        trust=trust.current,
        signing_key=signing_key,
        verdict_ttl=settings.verdict_ttl,
        manifest_ttl=settings.manifest_ttl,
        max_search_entries=settings.max_signatures,
        telemetry=telemetry,
        more_trust=more_trust,
    )
    try:
        policies = PolicyStore(
            settings.policy_file,
            max_regexp_length=settings.max_regexp_length,
            trust_roots=verifier.trust_root_names,
            last_good=settings.data_dir / LAST_GOOD_POLICIES,
            strict=strict_policies,
        )
    except (OSError, PolicyFileError) as exc:
        raise SettingsError(f"{PREFIX}POLICY_FILE={str(settings.policy_file)!r}: {exc}") from None
    admission.check_policy(settings, policies)
    return Services(
        settings=settings,
        cache=cache,
        trust=trust,
        refresher=refresher_for(trust, telemetry.trust_root_refresh),
        signing_key=signing_key,
        published_keys=published_keys(signing_key, load_retired_keys(settings.retired_key_files)),
        registry=registry,
        rekor=rekor,
        verifier=verifier,
        policies=policies,
        tokens=load_tokens(settings),
        admission_callers=load_admission_callers(settings),
        gatekeeper_callers=load_gatekeeper_callers(settings),
        telemetry=telemetry,
        reports=ReportStore(
            cache,
            window=settings.report_window,
            max_sightings=settings.report_max_sightings,
            limits=Limits(settings.report_max_images, settings.report_max_names),
        ),
    )


LAST_GOOD_POLICIES = "policies.last-good.yaml"


def _trust_reading(trust: TrustRootStore) -> TrustRootReading:
    root, info, _state = trust.snapshot()
    return TrustRootReading(
        source=info.source,
        version="" if info.targets_version is None else str(info.targets_version),
        digest=root.digest,
        refreshed_at=info.refreshed_at.timestamp() if info.refreshed_at else 0.0,
        expires_at=info.expires.timestamp() if info.expires else 0.0,
    )


def _named_trust_root(name: str, path: Path) -> TrustRoot:
    """One of `SIGVERIFY_TRUST_ROOTS`; a failure names it."""
    try:
        return TrustRoot.from_json(path.read_bytes(), name, source=f"file {path}")
    except OSError as exc:
        raise SettingsError(f"{PREFIX}TRUST_ROOTS: {name}={str(path)!r}: {exc.strerror}") from None
    except CoreError as exc:
        raise SettingsError(f"{PREFIX}TRUST_ROOTS: {name}={str(path)!r}: {exc}") from None


def rekor_url(settings: Settings, trust: TrustRoot) -> str | None:
    """The Rekor v1 API to look entries up in: the setting, else the trust root's first log.

    Trust roots list their Rekor v1 log first; later (v2, tiled) logs serve no lookup API.
    """
    if settings.rekor_url:
        return settings.rekor_url
    for log_key in trust.rekor_logs.values():
        if log_key.base_url:
            return log_key.base_url
    return None


def _rekor_client(settings: Settings, trust: TrustRoot, cache: Cache) -> RekorClient | None:
    """The Rekor client; None when lookups are off (air-gapped) or no log is known, and then
    only the evidence a signature carries counts."""
    if not settings.rekor_lookups:
        log.info("rekor lookups are off: only log evidence that signatures carry is used")
        return None
    url = rekor_url(settings, trust)
    if url is None:
        log.warning(
            "no rekor url in settings or trust root: rekor lookups are off, only log evidence "
            "that signatures carry is used"
        )
        return None
    return RekorClient(
        url,
        cache,
        timeout=settings.rekor_timeout,
        retries=settings.rekor_retries,
        breaker=CircuitBreaker(settings.rekor_breaker_failures, settings.rekor_breaker_cooldown),
    )


class _BoundedJSON(DefaultJSONProvider):
    """Flask's JSON, except that request bodies are read as I-JSON (`service.api.body`): one
    nested too deeply for the parser, or with NaN, lone surrogates or a member named twice, is
    invalid JSON (a 400) rather than a 500 somewhere later."""

    sort_keys = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return body.loads(s)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app; gunicorn calls this once per worker, after fork."""
    settings = settings or Settings.from_env()
    app = Flask("sigverify")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = _BoundedJSON(app)
    # Workers boot whenever gunicorn recycles one; `sigverify serve` checked the file strictly.
    app.extensions["sigverify"] = build_services(settings, strict_policies=False)
    errors.install(app)
    observability.install(app)  # first: its span covers the other hooks
    budget.install(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(bundle.bp)
    app.register_blueprint(batch.bp)
    app.register_blueprint(admission.bp)
    app.register_blueprint(gatekeeper.bp)
    app.register_blueprint(policies.bp)
    app.register_blueprint(reports.bp)
    app.register_blueprint(report_page.bp)
    app.register_blueprint(badge.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(keys.bp)
    app.register_blueprint(observability.bp)

    @app.before_request
    def _authenticate() -> None:
        authenticate(services().tokens)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return app
