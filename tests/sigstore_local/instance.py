"""One running local Sigstore: CA + CT log, a Rekor log served over HTTP, its trusted root.

Typical use (the `sigstore_local` fixture is such an instance, started for the session):
`instance.signer.message_bundle(digest)` signs and uploads over HTTP;
`instance.registry_signer(registry.url)` pushes images and signs them as cosign does;
`instance.trusted_root_path` and `instance.url` configure a verifier.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from service.core import TrustRoot
from tests.sigstore_local.ca import CertificateAuthority, utcnow
from tests.sigstore_local.log import TransparencyLog
from tests.sigstore_local.server import RekorServer, RequestCounter
from tests.sigstore_local.signer import HttpRekor, RegistrySigner, Signer
from tests.sigstore_local.trust import LogKey, trusted_root_json

CT_URL = "https://ct.sigstore.local"


class Clock:
    """The instance's time: real time, or a fixed time a test sets (and must unset)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fixed: datetime | None = None

    def __call__(self) -> datetime:
        with self._lock:
            return self._fixed if self._fixed is not None else utcnow()

    def set(self, when: datetime | None) -> None:
        with self._lock:
            self._fixed = when

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._fixed = (self._fixed or utcnow()) + delta

    @contextlib.contextmanager
    def frozen(self, when: datetime) -> Iterator[None]:
        """Certificates are issued and entries integrated at `when` inside the block."""
        self.set(when)
        try:
            yield
        finally:
            self.set(None)


class LocalSigstore:
    """CA, CT log, Rekor log and server, and a trusted_root.json written in `workdir`."""

    def __init__(self, workdir: Path, *, ca: CertificateAuthority | None = None) -> None:
        self.workdir = workdir
        self.clock = Clock()
        self.ca = ca or CertificateAuthority(clock=self.clock)
        self.log = TransparencyLog(clock=self.clock)
        self.server = RekorServer(self.log)
        self.trusted_root_path = workdir / "trusted_root.json"
        self._uploader: HttpRekor | None = None
        self._signer: Signer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalSigstore:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        self.trusted_root_path.write_bytes(self.trusted_root_json())
        self._uploader = HttpRekor(self.url)
        self._signer = Signer(self.ca, self._uploader)
        return self

    def stop(self) -> None:
        if self._uploader is not None:
            self._uploader.close()
            self._uploader = None
        self.server.stop()

    def __enter__(self) -> LocalSigstore:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The Rekor base URL (`http://127.0.0.1:PORT`), as in the trusted root's tlog."""
        return self.server.url

    @property
    def requests(self) -> RequestCounter:
        """Requests the Rekor server answered, per operation id (see `server.py`)."""
        return self.server.requests

    @property
    def fail_with(self) -> int | None:
        """Set to an HTTP status (503, 429...) to make Rekor answer it (see `RekorServer`)."""
        return self.server.fail_with

    @fail_with.setter
    def fail_with(self, status: int | None) -> None:
        self.server.fail_with = status

    @property
    def delay(self) -> float:
        """Seconds Rekor waits before each answer."""
        return self.server.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self.server.delay = seconds

    def reset(self) -> None:
        """Back to a healthy log: no failures, delay or tampering, real time, zero counts."""
        self.server.heal()
        self.log.clear_tampering()
        self.clock.set(None)
        self.requests.reset()

    @property
    def signer(self) -> Signer:
        """Signs with this CA and uploads to this log over HTTP."""
        if self._signer is None:
            raise RuntimeError("start() the instance first")
        return self._signer

    def registry_signer(
        self, registry_url: str, auth: tuple[str, str] | None = None
    ) -> RegistrySigner:
        """Pushes images to `registry_url` and attaches this instance's signatures."""
        return RegistrySigner(self.signer, registry_url, auth)

    def rekor_key(self, url: str | None = None) -> LogKey:
        return LogKey(self.log.public_key, url or self.url, self.ca.valid_from)

    def ct_key(self) -> LogKey:
        return LogKey(self.ca.ct_key.public_key(), CT_URL, self.ca.valid_from)

    def trusted_root_json(
        self,
        *,
        authorities: list[CertificateAuthority] | None = None,
        tlogs: list[LogKey] | None = None,
        ctlogs: list[LogKey] | None = None,
    ) -> bytes:
        """This instance's trusted root; any part can be replaced for negative tests."""
        return trusted_root_json(
            authorities=[self.ca] if authorities is None else authorities,
            tlogs=[self.rekor_key()] if tlogs is None else tlogs,
            ctlogs=[self.ct_key()] if ctlogs is None else ctlogs,
        )

    def write_trusted_root(
        self,
        path: Path,
        *,
        authorities: list[CertificateAuthority] | None = None,
        tlogs: list[LogKey] | None = None,
        ctlogs: list[LogKey] | None = None,
    ) -> Path:
        """Write a (possibly altered, see `trusted_root_json`) trusted root to `path`."""
        path.write_bytes(
            self.trusted_root_json(authorities=authorities, tlogs=tlogs, ctlogs=ctlogs)
        )
        return path

    def trust(self) -> TrustRoot:
        """The trusted root as the project's verification core loads it."""
        return TrustRoot.from_json(self.trusted_root_path.read_bytes())
