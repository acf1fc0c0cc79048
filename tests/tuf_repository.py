"""A real TUF repository for tests: python-tuf's metadata API, test keys, served on loopback.

Laid out as Sigstore's public-good repository is (consistent snapshots): `N.root.json`,
`timestamp.json`, `N.snapshot.json`, `N.targets.json` at the base URL, targets under
`targets/<sha256>.<name>`. Every role has one ECDSA P-256 key. `publish()` makes a new version of
the `trusted_root.json` target and of targets, snapshot and timestamp; keyword arguments break
one thing at a time (a timestamp signed by a key root does not list, one that has expired).
`rotate()` replaces a role's key in a new root version, signed by the old and the new root
keys, as a real key rotation is.

`HangingServer` is a repository that accepts connections and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

TARGET = "trusted_root.json"


def _in(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


class TufRepository:
    """A TUF repository in `directory`; `start()` serves it on 127.0.0.1 (`url`)."""

    def __init__(self, directory: Path, *, root_expires: datetime | None = None) -> None:
        self.directory = directory
        (directory / "targets").mkdir(parents=True, exist_ok=True)
        self.signers: dict[str, Signer] = {
            role: CryptoSigner.generate_ecdsa() for role in TOP_LEVEL_ROLE_NAMES
        }
        root = Root(expires=root_expires or _in(365), consistent_snapshot=True)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self.targets = Metadata(Targets(expires=_in(90)))
        self.snapshot = Metadata(Snapshot(expires=_in(30)))
        self.timestamp = Metadata(Timestamp(expires=_in(7)))
        self._write_root([self.signers[Root.type]])
        self._server: ThreadingHTTPServer | None = None
        self.requests: list[str] = []

    # -- what a client is given --------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the repository first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def root_bytes(self, version: int = 1) -> bytes:
        """A root version as published: version 1 is what clients bootstrap from."""
        return (self.directory / f"{version}.root.json").read_bytes()

    def write_bootstrap(self, path: Path) -> Path:
        path.write_bytes(self.root_bytes(1))
        return path

    # -- changes -----------------------------------------------------------------------------

    def publish(
        self,
        trusted_root: bytes,
        *,
        timestamp_signer: Signer | None = None,
        timestamp_expires: datetime | None = None,
    ) -> None:
        """A new `trusted_root.json` and new targets, snapshot and timestamp versions.

        `timestamp_signer` signs the timestamp instead of the timestamp key root lists;
        `timestamp_expires` replaces its expiry (one in the past makes it expired)."""
        target = TargetFile.from_data(TARGET, trusted_root, ["sha256"])
        sha256 = target.hashes["sha256"]
        (self.directory / "targets" / f"{sha256}.{TARGET}").write_bytes(trusted_root)
        targets = self.targets.signed
        targets.targets[TARGET] = target
        targets.version += 1
        self._sign(self.targets, [self.signers[Targets.type]])
        self._write(self.targets, f"{targets.version}.targets.json")
        snapshot = self.snapshot.signed
        snapshot.meta["targets.json"] = MetaFile(targets.version)
        snapshot.version += 1
        self._sign(self.snapshot, [self.signers[Snapshot.type]])
        self._write(self.snapshot, f"{snapshot.version}.snapshot.json")
        timestamp = self.timestamp.signed
        timestamp.snapshot_meta = MetaFile(snapshot.version)
        timestamp.version += 1
        timestamp.expires = timestamp_expires or _in(7)
        self._sign(self.timestamp, [timestamp_signer or self.signers[Timestamp.type]])
        self._write(self.timestamp, "timestamp.json")

    def rotate(self, role: str, *, expires: datetime | None = None) -> Signer:
        """A new root version in which `role` has a new key (and the old one is gone), signed
        by the old root key and, for a root rotation, by the new one too."""
        old = self.signers[role]
        new = CryptoSigner.generate_ecdsa()
        root = self.root.signed
        root.revoke_key(old.public_key.keyid, role)
        root.add_key(new.public_key, role)
        root.version += 1
        root.expires = expires or _in(365)
        signing = [self.signers[Root.type]] + ([new] if role == Root.type else [])
        self.signers[role] = new
        self._write_root(signing)
        return new

    # -- serving -----------------------------------------------------------------------------

    def start(self) -> TufRepository:
        handler = partial(_Handler, self, directory=str(self.directory))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> TufRepository:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _sign(self, metadata: Metadata[Any], signers: list[Signer]) -> None:
        metadata.signatures.clear()
        for signer in signers:
            metadata.sign(signer, append=True)

    def _write(self, metadata: Metadata[Any], name: str) -> None:
        (self.directory / name).write_bytes(metadata.to_bytes())

    def _write_root(self, signers: list[Signer]) -> None:
        self._sign(self.root, signers)
        self._write(self.root, f"{self.root.signed.version}.root.json")


class _Handler(SimpleHTTPRequestHandler):
    """Serves the repository's files and records each path asked for."""

    def __init__(self, repository: TufRepository, *args: Any, **kwargs: Any) -> None:
        self._repository = repository
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self._repository.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HangingServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = self._sock.accept()
                self._held.append(conn)
                self.accepted += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[HangingServer]:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stopped.set()
            thread.join(5)
            for conn in self._held:
                conn.close()
            self._sock.close()
