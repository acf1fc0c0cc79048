"""One TUF refresh of the trusted root: python-tuf's client, our HTTP, one deadline.

`TufClient.refresh()` runs the TUF client workflow (root chain, timestamp, snapshot, targets)
against a repository laid out as Sigstore's is (metadata at the base URL, targets under
`targets/`), with its metadata cache in a directory of ours, and returns the
`trusted_root.json` target with the versions and expiry that vouch for it. Every failure is a
`TufError` with a short reason; nothing here decides what the service then does.

Why python-tuf's `Updater` directly rather than sigstore-python's `TrustUpdater` (which wraps
it): TrustUpdater keeps its cache in the user's platform directories (not our data directory;
on a read-only root filesystem not writable at all), fetches with python-tuf's default HTTP
(a 30 s socket timeout per read and no deadline over the whole refresh), serves an unverified
cached file in its offline mode, and reports neither versions nor expiry. With the Updater the
directories, the fetcher and what is reported are ours, in about as many lines.

TUF's rule for an expired root, which matters because the root.json inside sigstore-python
expired on 2026-11-20: a trusted root that has expired still verifies the next root version
(rotation is checked by signatures, by the old root's threshold and the new one's); only the
final root must be unexpired. python-tuf does exactly that, so an expired bootstrap root is a
problem only when the repository cannot be reached or offers nothing newer.

Time: every request gets what is left of the deadline, each socket wait at most
`REQUEST_TIMEOUT` of it; a body still arriving when the deadline passes is abandoned. A refresh
therefore ends within `timeout` plus at most one socket wait. (The outbound HTTP kernel will
take this over; the deadline lives in `_Fetcher` alone.)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import httpx
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization import DeserializationError
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from service.tlog.errors import TlogError

PUBLIC_GOOD_URL = "https://tuf-repo-cdn.sigstore.dev"
TARGET = "trusted_root.json"
REQUEST_TIMEOUT = 10.0
"""Seconds one socket operation (connect, a read) waits at most, within the deadline."""
USER_AGENT = (
    f"sigverify/{importlib.metadata.version('sigverify')} "
    f"python-tuf/{importlib.metadata.version('tuf')}"
)
_EMBEDDED_ROOT = "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev"
_MAX_REDIRECTS = 3


class TufError(TlogError):
    """A refresh failed. `reason`: `timeout`, `unavailable`, `expired`, `invalid-metadata`,
    `no-target` or `io` (the cache directory)."""


@dataclass(frozen=True)
class TufTarget:
    """The trusted root TUF vouched for, and by what."""

    data: bytes
    root_version: int
    targets_version: int
    expires: datetime
    """The earliest expiry of the top-level metadata that vouched for it (usually the
    timestamp's): after it, TUF no longer says this root is current."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def public_good_root() -> bytes:
    """The public-good repository's TUF root.json that ships inside sigstore-python."""
    import importlib.resources  # noqa: PLC0415 - only TUF needs it

    resource = importlib.resources.files("sigstore") / "_store" / _EMBEDDED_ROOT / "root.json"
    return resource.read_bytes()


def check_root(data: bytes) -> int:
    """The version of a TUF root.json that signs itself; ValueError saying what is wrong."""
    try:
        root = Metadata[Root].from_bytes(data)
    except DeserializationError as exc:
        raise ValueError(f"not TUF root metadata: {exc}") from None
    if root.signed.type != Root.type:
        raise ValueError(f"found {root.signed.type!r} metadata, expected 'root'")
    try:
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except exceptions.UnsignedMetadataError as exc:
        raise ValueError(f"not signed by its own root keys: {exc}") from None
    return root.signed.version


def cache_dir(data_dir: Path, url: str) -> Path:
    """Where one repository's metadata, target and refresh state live in the data directory."""
    return data_dir / "tuf" / quote(url, safe="")


class TufClient:
    """Refreshes from one repository into one cache directory (one refresher at a time:
    python-tuf's cache is not safe for concurrent writers)."""

    def __init__(
        self,
        url: str,
        bootstrap: bytes,
        directory: Path,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`bootstrap`: the root.json trust starts from; `timeout`: the deadline in seconds."""
        self.url = url.rstrip("/")
        self.directory = directory
        self._bootstrap = bootstrap
        self._timeout = timeout
        self._clock = clock

    def refresh(self) -> TufTarget:
        """The current trusted root, TUF-verified; raises `TufError`."""
        metadata_dir = self.directory / "metadata"
        targets_dir = self.directory / "targets"
        deadline = self._clock() + self._timeout
        try:
            metadata_dir.mkdir(parents=True, exist_ok=True)
            targets_dir.mkdir(parents=True, exist_ok=True)
            with httpx.Client(
                headers={"User-Agent": USER_AGENT},
                follow_redirects=True,
                max_redirects=_MAX_REDIRECTS,
            ) as http:
                updater = Updater(
                    metadata_dir=str(metadata_dir),
                    metadata_base_url=self.url,
                    target_dir=str(targets_dir),
                    target_base_url=f"{self.url}/targets/",
                    fetcher=_Fetcher(http, deadline, self._clock),
                    config=UpdaterConfig(),
                    bootstrap=self._bootstrap,
                )
                updater.refresh()
                info = updater.get_targetinfo(TARGET)
                if info is None:
                    raise TufError(f"{self.url}: no {TARGET} target", reason="no-target")
                path = updater.find_cached_target(info) or _download(updater, info, targets_dir)
            data = Path(path).read_bytes()
            # The bytes returned are the ones TUF vouched for, whatever touched the file since.
            info.verify_length_and_hashes(data)
            return _vouched(data, metadata_dir)
        except exceptions.ExpiredMetadataError as exc:
            raise TufError(f"{self.url}: expired metadata: {exc}", reason="expired") from None
        except exceptions.RepositoryError as exc:
            raise TufError(
                f"{self.url}: metadata refused: {type(exc).__name__}: {exc}",
                reason="invalid-metadata",
            ) from None
        except exceptions.SlowRetrievalError as exc:
            raise TufError(f"{self.url}: timed out: {exc}", reason="timeout") from None
        except exceptions.DownloadError as exc:
            raise TufError(f"{self.url}: {_cause(exc)}", reason="unavailable") from None
        except OSError as exc:
            raise TufError(f"{self.url}: cache {self.directory}: {exc}", reason="io") from None


def _download(updater: Updater, info: TargetFile, targets_dir: Path) -> str:
    """Download the target beside its final name and move it there (python-tuf writes in
    place, which a reader could catch half-written)."""
    final = targets_dir / quote(info.path, safe="")
    fd, temporary = tempfile.mkstemp(dir=targets_dir, prefix=".download-")
    os.close(fd)
    try:
        updater.download_target(info, filepath=temporary)
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return str(final)


def _vouched(data: bytes, metadata_dir: Path) -> TufTarget:
    """`data` with the versions and earliest expiry of the metadata the refresh just trusted
    (python-tuf has persisted exactly that set in `metadata_dir`)."""
    root = Metadata[Root].from_file(str(metadata_dir / "root.json")).signed
    targets = Metadata[Targets].from_file(str(metadata_dir / "targets.json")).signed
    timestamp = Metadata[Timestamp].from_file(str(metadata_dir / "timestamp.json")).signed
    snapshot = Metadata[Snapshot].from_file(str(metadata_dir / "snapshot.json")).signed
    expires = min(role.expires for role in (root, timestamp, snapshot, targets))
    return TufTarget(data, root.version, targets.version, expires)


def _cause(exc: BaseException) -> str:
    """A download failure in words, from the HTTP error under python-tuf's wrapper."""
    if isinstance(exc, exceptions.DownloadHTTPError):
        return str(exc)
    cause = exc.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)


class _Fetcher(FetcherInterface):
    """python-tuf's downloads over httpx under one deadline."""

    def __init__(self, client: httpx.Client, deadline: float, clock: Callable[[], float]) -> None:
        self._client = client
        self._deadline = deadline
        self._clock = clock

    def _left(self, url: str) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            raise exceptions.SlowRetrievalError(f"{url}: the refresh deadline passed")
        return left

    def _fetch(self, url: str) -> Iterator[bytes]:
        timeout = min(self._left(url), REQUEST_TIMEOUT)
        request = self._client.build_request("GET", url, timeout=timeout)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise exceptions.SlowRetrievalError(f"{url}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            response.close()
            raise exceptions.DownloadHTTPError(
                f"{url}: HTTP {response.status_code}", response.status_code
            )
        return self._chunks(url, response)

    def _chunks(self, url: str, response: httpx.Response) -> Iterator[bytes]:
        try:
            for chunk in response.iter_bytes():
                self._left(url)
                yield chunk
        except httpx.TimeoutException as exc:
            raise exceptions.SlowRetrievalError(f"{url}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise exceptions.DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
