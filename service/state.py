"""Per-app state: the services one worker uses, kept in `app.extensions["sigverify"]`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from service.cache import Cache
from service.config import Settings
from service.keys import PublishedKey, SigningKey

if TYPE_CHECKING:
    from service.api.auth import AdmissionCallers, Tokens
    from service.policies import PolicyStore
    from service.registry import RegistryClient
    from service.reports import ReportStore
    from service.telemetry import Telemetry
    from service.tlog import RekorClient
    from service.tlog.trust import TrustRootRefresher, TrustRootStore
    from service.verification import VerificationService


@dataclass
class Services:
    """Everything a request needs, built once per worker by `create_app`."""

    settings: Settings
    cache: Cache
    trust: TrustRootStore
    refresher: TrustRootRefresher | None
    signing_key: SigningKey
    published_keys: list[PublishedKey]
    registry: RegistryClient
    rekor: RekorClient | None
    verifier: VerificationService
    policies: PolicyStore
    tokens: Tokens
    admission_callers: AdmissionCallers
    gatekeeper_callers: AdmissionCallers
    telemetry: Telemetry
    reports: ReportStore

    def start_background(self) -> None:
        """Start this process's background work (the trust-root refresher): in a serving
        process only, after any fork, since threads do not survive one."""
        if self.refresher is not None:
            self.refresher.start()

    @property
    def admission_configured(self) -> bool:
        """Whether POST /v1/admission answers: a default admission policy is set, or the
        policy file has an `admission` section."""
        return (
            self.settings.admission_policy is not None
            or self.policies.current().admission is not None
        )


def services() -> Services:
    """The services of the app handling the current request."""
    svc = current_app.extensions["sigverify"]
    assert isinstance(svc, Services)
    return svc
