"""Where the default trusted root comes from, and how it stays fresh without blocking anyone.

At start, the best root at hand, with no network:

1. `SIGVERIFY_TRUST_ROOT_FILE`: a fixed root, never refreshed;
2. with TUF refresh on (the default): the last TUF-verified copy in the data directory
   (`<data>/tuf/<repository>/state.json`);
3. else the production root that ships inside sigstore-python (a snapshot of the day it was
   released).

Who refreshes: every gunicorn worker runs a `TrustRootRefresher` thread, and the workers elect
one of them by a lock file (`flock`; the kernel releases it when its holder exits, so a recycled
worker hands over within a second). Only the holder talks to the TUF repository, every
`SIGVERIFY_TUF_INTERVAL`, and writes the outcome, success or failure, to state.json in one atomic
rename. Every worker's thread re-reads state.json when it changes, checks it (the root's sha256
is the one TUF vouched for, the root parses) and swaps its root in one assignment. So there is
one fetch per pod rather than one per worker, all workers follow the same file within a second,
and a request reads `TrustRootStore.current()`: no lock, no disk, no network. A refresh that
fails, or a state file that does not check out, leaves the root in use as it is.

The data directory is the service's own (the chart's emptyDir): what it holds is trusted as the
development signing key beside it is, and checked for integrity, not re-verified through TUF.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import importlib.metadata
import importlib.resources
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from service.config import PREFIX, Settings, SettingsError
from service.core import CoreError, TrustRoot
from service.tlog.tuf import (
    PUBLIC_GOOD_URL,
    TufClient,
    TufError,
    TufTarget,
    cache_dir,
    check_root,
    public_good_root,
)

log = logging.getLogger(__name__)

_EMBEDDED = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
_STAGING = "https%3A%2F%2Ftuf-repo-cdn.sigstage.dev"
STATE_FILE = "state.json"
LOCK_FILE = "refresh.lock"
RETRY_AFTER = 60.0
"""Seconds before the first retry of a failed refresh; doubled per failure up to the interval."""
MAX_STATE_BYTES = 1 << 20

Source = Literal["embedded", "tuf", "file"]


def embedded_production_root() -> bytes:
    """The production trusted root that ships inside sigstore-python (no network)."""
    store = importlib.resources.files("sigstore") / "_store" / _EMBEDDED / "trusted_root.json"
    return store.read_bytes()


def embedded_staging_root() -> bytes:
    """The staging trusted root that ships inside sigstore-python (no network, no refresh)."""
    store = importlib.resources.files("sigstore") / "_store" / _STAGING / "trusted_root.json"
    return store.read_bytes()


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected a time")
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class RootInfo:
    """What /readyz, /version, metrics and verdicts say about the default root in use."""

    source: Source
    description: str
    targets_version: int | None = None
    """The TUF targets version that listed this root (TUF's version of it)."""
    root_version: int | None = None
    """The TUF root version (the repository's keys) that vouched for it."""
    refreshed_at: datetime | None = None
    """When TUF last confirmed it current."""
    expires: datetime | None = None
    """When the metadata of that confirmation expires."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "description": self.description,
            "version": self.targets_version,
            "rootVersion": self.root_version,
            "refreshedAt": _time(self.refreshed_at),
            "expires": _time(self.expires),
        }


def embedded_info() -> RootInfo:
    version = importlib.metadata.version("sigstore")
    return RootInfo("embedded", f"embedded in sigstore-python {version} (production)")


def tuf_info(url: str, target: TufTarget, refreshed_at: datetime | None) -> RootInfo:
    return RootInfo(
        "tuf",
        f"tuf {url} (targets v{target.targets_version}, root v{target.root_version})",
        target.targets_version,
        target.root_version,
        refreshed_at,
        target.expires,
    )


@dataclass(frozen=True)
class RefreshState:
    """What the refresher last achieved for one repository: state.json.

    `target` is the last verified root (kept through failures); `error` and `reason` describe
    the last attempt when it failed, `failures` how many in a row.
    """

    url: str
    target: TufTarget | None = None
    refreshed_at: datetime | None = None
    attempted_at: datetime | None = None
    error: str | None = None
    reason: str | None = None
    failures: int = 0

    def to_json(self) -> bytes:
        target = None
        if self.target is not None:
            target = {
                "sha256": self.target.sha256,
                "rootVersion": self.target.root_version,
                "targetsVersion": self.target.targets_version,
                "expires": _time(self.target.expires),
                "data": base64.b64encode(self.target.data).decode(),
            }
        return json.dumps(
            {
                "url": self.url,
                "refreshedAt": _time(self.refreshed_at),
                "attemptedAt": _time(self.attempted_at),
                "error": self.error,
                "reason": self.reason,
                "failures": self.failures,
                "trustedRoot": target,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RefreshState:
        """Parse and check a state file; ValueError says what is wrong with it."""
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError("not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("url"), str):
            raise ValueError("expected an object with a url")
        failures = doc.get("failures", 0)
        error, reason = doc.get("error"), doc.get("reason")
        if not isinstance(failures, int) or failures < 0:
            raise ValueError("failures: expected a count")
        if not isinstance(error, str | None) or not isinstance(reason, str | None):
            raise ValueError("error, reason: expected text")
        return cls(
            url=doc["url"],
            target=_target(doc.get("trustedRoot")),
            refreshed_at=_parse_time(doc.get("refreshedAt"), "refreshedAt"),
            attempted_at=_parse_time(doc.get("attemptedAt"), "attemptedAt"),
            error=error,
            reason=reason,
            failures=failures,
        )


def _target(raw: object) -> TufTarget | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError("trustedRoot: expected an object")
    try:
        data = base64.b64decode(raw["data"], validate=True)
        target = TufTarget(
            data, int(raw["rootVersion"]), int(raw["targetsVersion"]), _need_time(raw["expires"])
        )
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"trustedRoot: {type(exc).__name__}: {exc}") from None
    if target.sha256 != raw.get("sha256"):
        raise ValueError("trustedRoot: the data does not hash to the sha256 TUF vouched for")
    return target


def _need_time(value: object) -> datetime:
    parsed = _parse_time(value, "expires")
    if parsed is None:
        raise ValueError("expires: expected a time")
    return parsed


def read_state(path: Path) -> RefreshState | None:
    """The state file, or None when there is none; ValueError or OSError when unusable."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
    return RefreshState.from_json(data)


def write_state(path: Path, state: RefreshState) -> None:
    """Replace the state file atomically: a reader sees the old one or the new one, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(state.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@dataclass(frozen=True)
class TrustRootSource:
    """The bytes of a trusted_root.json, what is known about them, and (TUF) the state read."""

    data: bytes
    info: RootInfo
    state: RefreshState | None = None

    @property
    def origin(self) -> str:
        return self.info.description


@dataclass(frozen=True)
class TufSettings:
    """The TUF side of the settings, resolved: repository, bootstrap root, cache, timing."""

    url: str
    bootstrap: bytes
    directory: Path
    interval: float
    timeout: float

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE

    @classmethod
    def from_settings(cls, settings: Settings) -> TufSettings | None:
        """None when no refresh applies (a fixed root file, or refresh off)."""
        if settings.trust_root_file is not None or not settings.tuf_refresh:
            return None
        url = (settings.tuf_url or PUBLIC_GOOD_URL).rstrip("/")
        if settings.tuf_root_file is not None:
            what = f"{PREFIX}TUF_ROOT_FILE={str(settings.tuf_root_file)!r}"
            try:
                bootstrap = settings.tuf_root_file.read_bytes()
                check_root(bootstrap)
            except OSError as exc:
                raise SettingsError(f"{what}: cannot read: {exc.strerror}") from None
            except ValueError as exc:
                raise SettingsError(f"{what}: {exc}") from None
        else:
            bootstrap = public_good_root()
        return cls(
            url=url,
            bootstrap=bootstrap,
            directory=cache_dir(settings.data_dir, url),
            interval=settings.tuf_interval,
            timeout=settings.tuf_timeout,
        )


def load_trust_root_source(settings: Settings, tuf: TufSettings | None = None) -> TrustRootSource:
    """The best root at hand, without network; a failure names the setting that chose it.
    `tuf`: `TufSettings.from_settings(settings)`, when the caller has it already."""
    if settings.trust_root_file is not None:
        try:
            data = settings.trust_root_file.read_bytes()
        except OSError as exc:
            raise SettingsError(f"{PREFIX}TRUST_ROOT_FILE: cannot read: {exc.strerror}") from None
        return TrustRootSource(data, RootInfo("file", f"file {settings.trust_root_file}"))
    tuf = tuf or TufSettings.from_settings(settings)
    if tuf is not None:
        try:
            state = read_state(tuf.state_path)
        except (OSError, ValueError) as exc:
            log.warning("trust root state %s ignored: %s", tuf.state_path, exc)
            state = None
        if state is not None and state.url == tuf.url and state.target is not None:
            try:
                TrustRoot.from_json(state.target.data)
                info = tuf_info(tuf.url, state.target, state.refreshed_at)
                return TrustRootSource(state.target.data, info, state)
            except CoreError as exc:
                log.warning("trust root from %s ignored: %s", tuf.state_path, exc)
        return TrustRootSource(embedded_production_root(), embedded_info(), state)
    return TrustRootSource(embedded_production_root(), embedded_info())


@dataclass(frozen=True)
class _Active:
    root: TrustRoot
    info: RootInfo


class TrustRootStore:
    """The default trust root in force in this process. `current()` is one attribute read;
    `poll()` (the refresher thread's, each second) follows the state file."""

    def __init__(self, settings: Settings) -> None:
        """Raises SettingsError when the configured root (file, TUF bootstrap) is unusable."""
        self.tuf = TufSettings.from_settings(settings)
        self._stamp = self._stat()  # first: a change while loading is seen by the next poll
        source = load_trust_root_source(settings, self.tuf)
        try:
            root = TrustRoot.from_json(source.data, source=source.info.description)
        except CoreError as exc:
            raise SettingsError(f"trusted root from {source.origin}: {exc}") from None
        self._active = _Active(root, source.info)
        self._state = source.state
        self._lock = threading.Lock()
        self.observers: list[Callable[[], None]] = []
        """Called after the root or what is known about it changed (metrics)."""

    def current(self) -> TrustRoot:
        """The root to verify with now."""
        return self._active.root

    @property
    def info(self) -> RootInfo:
        return self._active.info

    @property
    def state(self) -> RefreshState | None:
        """The refresh state last read (None: no refresh, or none has been recorded)."""
        return self._state

    def snapshot(self) -> tuple[TrustRoot, RootInfo, RefreshState | None]:
        """Root, info and state of one moment (for /readyz)."""
        active = self._active
        return active.root, active.info, self._state

    def _stat(self) -> tuple[int, int, int] | None:
        if self.tuf is None:
            return None
        try:
            stat = self.tuf.state_path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def poll(self) -> bool:
        """Follow the state file if it changed; True when the root or its info changed.

        A state file that is unreadable, malformed, for another repository, or whose root
        does not parse is logged (once per version of the file) and changes nothing."""
        if self.tuf is None:
            return False
        with self._lock:
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                state = read_state(self.tuf.state_path)
                if state is None:
                    return False
                if state.url != self.tuf.url:
                    raise ValueError(f"for {state.url}, expected {self.tuf.url}")
            except (OSError, ValueError) as exc:
                log.error(
                    "trust root state %s refused, the %s root stays: %s",
                    self.tuf.state_path,
                    self._active.info.source,
                    exc,
                )
                return False
            changed = self._adopt(state)
        if changed:
            for observer in self.observers:
                observer()
        return changed

    def _adopt(self, state: RefreshState) -> bool:
        assert self.tuf is not None
        self._state = state
        active = self._active
        if state.target is None:
            return False  # nothing verified yet: the root in use stays
        info = tuf_info(self.tuf.url, state.target, state.refreshed_at)
        if state.target.sha256 == active.root.digest:
            if info == active.info:
                return False
            self._active = _Active(replace(active.root, source=info.description), info)
            return True
        try:
            root = TrustRoot.from_json(state.target.data, source=info.description)
        except CoreError as exc:
            log.error("trust root from %s refused, the old one stays: %s", self.tuf.url, exc)
            return False
        self._active = _Active(root, info)
        log.info(
            "trust root now %s, digest %s (was %s, digest %s)",
            info.description,
            root.digest,
            active.info.description,
            active.root.digest,
        )
        return True


class TrustRootRefresher:
    """One per worker. The worker holding the lock file refreshes through TUF; every worker's
    thread follows the state file. `tick()` is one round of that; `start()` runs it each
    `poll_interval` seconds on a daemon thread."""

    def __init__(
        self,
        store: TrustRootStore,
        client: TufClient,
        *,
        interval: float,
        on_refresh: Callable[[str, str | None], None] = lambda result, reason: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_interval: float = 1.0,
    ) -> None:
        """`on_refresh(result, reason)`: each attempt's outcome (`updated`, `unchanged`,
        `failed` with its reason), for metrics."""
        assert store.tuf is not None
        self._store = store
        self._client = client
        self._tuf = store.tuf
        self._interval = interval
        self._on_refresh = on_refresh
        self._clock = clock
        self._poll_interval = poll_interval
        self._lock_fd: int | None = None
        self._lock_error: str | None = None
        self._last_attempt: datetime | None = None
        self._logged_reason: str | None = None  # the failure this process last warned about
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        """Whether this process is the one that refreshes."""
        return self._lock_fd is not None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="sigverify-trust-root", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: another worker takes over
            self._lock_fd = None

    def _run(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:  # the thread must outlive any surprise; the root stays
                log.exception("trust root refresher: unexpected error")
            if self._stop.wait(self._poll_interval):
                return

    def tick(self) -> None:
        """Lead if nobody does, refresh when due, follow the state file."""
        if self._lock_fd is None:
            self._lead()
        if self._lock_fd is not None and self._due():
            self.refresh()
        self._store.poll()

    def _lead(self) -> None:
        path = self._tuf.directory / LOCK_FILE
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if self._lock_error != str(exc):
                log.error("trust root refresh cannot start, %s: %s", path, exc)
            self._lock_error = str(exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # another worker leads
            return
        self._lock_fd = fd
        log.info(
            "this worker (pid %d) refreshes the trust root from %s every %ss",
            os.getpid(),
            self._tuf.url,
            f"{self._interval:g}",
        )

    def _due(self) -> bool:
        now = self._clock()
        state = self._store.state
        attempts = [self._last_attempt, state.attempted_at if state else None]
        known = [t for t in attempts if t is not None]
        if not known:
            return True
        last = max(known)
        wait = self._interval
        if state is not None and state.error is not None and state.failures > 0:
            wait = min(self._interval, RETRY_AFTER * 2 ** min(state.failures - 1, 20))
        # A clock that went back is no reason to wait longer.
        return now < last or now - last >= timedelta(seconds=wait)

    def refresh(self) -> RefreshState:
        """One TUF refresh, its outcome written to the state file and logged (a failure once
        per run of failures with the same reason)."""
        try:
            previous = read_state(self._tuf.state_path)
        except (OSError, ValueError):
            previous = None
        if previous is not None and previous.url != self._tuf.url:
            previous = None
        previous = previous or RefreshState(self._tuf.url)
        started = self._clock()
        self._last_attempt = started
        try:
            target = self._client.refresh()
            try:
                TrustRoot.from_json(target.data)  # a root the service cannot use is refused
            except CoreError as exc:
                raise TufError(f"{self._tuf.url}: {exc}", reason="unusable-root") from None
        except TufError as exc:
            state = replace(
                previous,
                attempted_at=started,
                error=str(exc),
                reason=exc.reason,
                failures=previous.failures + 1,
            )
            self._log_failure(state)
            self._on_refresh("failed", exc.reason)
        else:
            state = RefreshState(self._tuf.url, target, refreshed_at=started, attempted_at=started)
            changed = previous.target is None or previous.target.sha256 != target.sha256
            if self._logged_reason is not None:
                log.info("trust root refresh from %s works again", self._tuf.url)
            self._logged_reason = None
            if changed:
                log.info(
                    "trust root refreshed through TUF: %s, digest %s",
                    tuf_info(self._tuf.url, target, started).description,
                    target.sha256,
                )
            self._on_refresh("updated" if changed else "unchanged", None)
        try:
            write_state(self._tuf.state_path, state)
        except OSError as exc:
            log.error("trust root state %s not written: %s", self._tuf.state_path, exc)
        return state

    def _log_failure(self, state: RefreshState) -> None:
        first = self._logged_reason != state.reason
        self._logged_reason = state.reason
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "trust root refresh failed (%s): %s; verifying with the %s root meanwhile%s",
            state.reason,
            state.error,
            self._store.info.description,
            "; further failures like this one are logged at debug level" if first else "",
        )


def refresher_for(
    store: TrustRootStore, on_refresh: Callable[[str, str | None], None]
) -> TrustRootRefresher | None:
    """The refresher `store`'s settings ask for, or None (a fixed root, or refresh off)."""
    if store.tuf is None:
        return None
    client = TufClient(
        store.tuf.url, store.tuf.bootstrap, store.tuf.directory, timeout=store.tuf.timeout
    )
    return TrustRootRefresher(store, client, interval=store.tuf.interval, on_refresh=on_refresh)


def describe_refresh(store: TrustRootStore) -> Mapping[str, Any]:
    """/readyz's `refresh` object."""
    tuf, state = store.tuf, store.state
    if tuf is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "url": tuf.url,
        "interval": tuf.interval,
        "lastAttemptAt": _time(state.attempted_at) if state else None,
        "lastError": state.error if state else None,
        "failures": state.failures if state else 0,
    }
