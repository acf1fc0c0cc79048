"""Real server processes for tests: a private redis-server and a private docker-registry.

Each binds 127.0.0.1 only, lives in its own temp dir, and is stopped at teardown. A server that
cannot start raises `ServerStartError` with its log, so a test that needs it fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 15.0


class ServerStartError(RuntimeError):
    """A test server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ServerStartError(f"{binary} is not installed (scripts/test.sh installs it)")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class RedisServer:
    """A private redis-server on a free port; `url` is what the service is configured with."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = _require("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        for _attempt in range(5):
            self.port = self.port or free_port()
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--bind", "127.0.0.1",
                    "--port", str(self.port),
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                    "--daemonize", "no",
                    "--logfile", str(log),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_ready():
                return self
            _stop(self.proc)
            self.port = 0
        raise ServerStartError(f"redis-server did not start: {_tail(log)}")

    def restart(self) -> None:
        """Stop, and start again on the same port (its data is gone: no persistence)."""
        self.stop()
        self.start()

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


_LISTEN_RE = re.compile(rb"listening on (?:\[::\]|127\.0\.0\.1):(\d+)")


@dataclass
class RegistryServer:
    """A private CNCF distribution registry (Debian's docker-registry) on 127.0.0.1.

    With `htpasswd` set, the registry requires basic auth (user `htpasswd[0]`, password
    `htpasswd[1]`).
    """

    workdir: Path
    htpasswd: tuple[str, str] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        """The registry host as it appears in image references: `127.0.0.1:PORT`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> RegistryServer:
        binary = _require("docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        auth = ""
        if self.htpasswd is not None:
            htpasswd_bin = _require("htpasswd")
            user, password = self.htpasswd
            line = subprocess.run(
                [htpasswd_bin, "-Bbn", "-C", "4", user, password],
                check=True,
                capture_output=True,
            ).stdout.strip()
            (self.workdir / "htpasswd").write_bytes(line + b"\n")
            auth = (
                f"auth: {{htpasswd: {{realm: basic-realm, path: {self.workdir / 'htpasswd'}}}}}\n"
            )
        config = self.workdir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir / 'data'}}}, "
            "delete: {enabled: true}}\n"
            "http: {addr: 127.0.0.1:0, secret: test-secret}\n" + auth
        )
        log = self.workdir / "registry.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            match = _LISTEN_RE.search(log.read_bytes())
            if match:
                self.port = int(match.group(1))
                return self
            time.sleep(0.01)
        self.stop()
        raise ServerStartError(f"docker-registry did not start: {_tail(log)}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"(no log: {exc})"


@contextlib.contextmanager
def running(server: RedisServer | RegistryServer | ServiceServer) -> Iterator[None]:
    """Start `server`, yield, and stop it whatever happens."""
    server.start()
    try:
        yield
    finally:
        server.stop()


@dataclass
class ServiceServer:
    """The service itself, started as a user would: `sigverify serve` (gunicorn), on 127.0.0.1.

    `env` holds SIGVERIFY_* settings; bind, data dir and log level are filled in unless given.
    """

    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    def start(self) -> ServiceServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).parent / "sigverify"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGVERIFY_")}
        env.setdefault("SIGVERIFY_DATA_DIR", str(self.workdir / "data"))
        # Never the public Rekor named in the embedded trust root: nothing listens on port 1.
        env.setdefault("SIGVERIFY_REKOR_URL", "http://127.0.0.1:1")
        # Nor the public-good TUF repository the service refreshes from by default: a test that
        # wants a refresh names a loopback repository (tests/tuf_repository.py).
        if "SIGVERIFY_TUF_URL" not in self.env and "SIGVERIFY_TUF_REFRESH" not in self.env:
            env["SIGVERIFY_TUF_REFRESH"] = "false"
        env.update({"SIGVERIFY_WORKERS": "2", "SIGVERIFY_THREADS": "4"})
        env.update(self.env)
        for _attempt in range(3):
            self.port = free_port()
            env["SIGVERIFY_BIND"] = f"127.0.0.1:{self.port}"
            with self.log_path.open("ab") as out:
                self.proc = subprocess.Popen(
                    [str(binary), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return self
            _stop(self.proc)
        raise ServerStartError(f"sigverify serve did not start: {_tail(self.log_path, 4000)}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
