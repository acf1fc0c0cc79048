"""A hostile OCI registry on 127.0.0.1: the attacks of a registry an image reference names.

It speaks enough of the distribution API for the service and for `tests.oci.Pusher` (HEAD and
GET of manifests and blobs by tag or digest, monolithic blob uploads, manifest PUTs; the
referrers API is a 404, as in distribution 2.8), and misbehaves by repository, so that one
server can carry every attack at once. The first path component of the repository chooses:

| repository      | what the registry does                                                        |
|-----------------|-------------------------------------------------------------------------------|
| `drip-headers/*`| sends the status line and headers one byte per `drip_interval` seconds        |
| `drip-body/*`   | sends the headers at once, then the body one byte per `drip_interval` seconds |
| `silent/*`      | reads the request and never answers                                           |
| `throttle/*`    | answers the first `throttle_count` GETs and HEADs of each repository with     |
|                 | `throttle_status` (429) and `Retry-After` (seconds, or an HTTP-date with      |
|                 | `retry_after_date`), then as usual (`throttled` counts them per repository);  |
|                 | with `throttle_every`, every so many GETs and HEADs instead                   |
| `huge/*`        | answers any tag with a distinct OCI index of about `huge_bytes` bytes         |
| anything else   | a plain registry over what was pushed                                         |

`calm()` switches the misbehaviour off meanwhile (to push images). Every attack is bounded: no
connection is held longer than `max_hold` seconds, and `stop()`
ends every held connection at once. `active` counts open connections, `holding` those an
attack holds now, and `requests` every request, for tests that measure what an attack holds.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_UPLOAD = 16 << 20
MODES = ("drip-headers", "drip-body", "silent", "throttle", "huge")
MAX_MADE = 32  # huge indexes kept made, so that a HEAD and the GET after it cost one

_PATH = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$")
_UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)$")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def huge_index(repo: str, tag: str, size: int) -> bytes:
    """A valid OCI index of at most (and nearly) `size` bytes, distinct for each (repo, tag):
    one platform manifest per entry, each with its own os/architecture/variant."""
    seed = hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()
    entries: list[dict[str, Any]] = []
    used = 128  # the index's own members
    n = 0
    while True:
        child = hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()
        entry = {
            "mediaType": OCI_MANIFEST,
            "digest": f"sha256:{child}",
            "size": 1000 + n % 977,
            "platform": {"os": "linux", "architecture": f"arch{n % 97}", "variant": f"v{n}"},
        }
        cost = len(json.dumps(entry, separators=(",", ":"))) + 1
        if used + cost > size:
            break
        entries.append(entry)
        used += cost
        n += 1
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    registry: HostileRegistry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests` and `active`."""

    def handle(self) -> None:
        registry = self.server.registry
        registry._enter()
        try:
            super().handle()
        except OSError:
            pass  # the client hung up, as a client under attack should
        finally:
            registry._leave()

    def do_GET(self) -> None:
        self._any("GET")

    def do_HEAD(self) -> None:
        self._any("HEAD")

    def do_PUT(self) -> None:
        self._any("PUT")

    def do_POST(self) -> None:
        self._any("POST")

    def _any(self, method: str) -> None:
        registry = self.server.registry
        body = b""
        length = self.headers.get("content-length", "")
        if length.isdigit() and int(length) <= MAX_UPLOAD:
            body = self.rfile.read(int(length))
        url = urlsplit(self.path)
        repo = registry.repository_of(url.path)
        mode = repo.split("/", 1)[0] if repo and not registry.calm_now else ""
        registry._count(mode or "other")
        if mode == "silent":
            registry._hold(registry.max_hold)
            self.close_connection = True
            return
        reply = registry.answer(method, url.path, parse_qs(url.query), body, mode)
        head = self._head(reply)
        payload = b"" if method == "HEAD" else reply.body
        if mode == "drip-headers":
            self.close_connection = True
            registry._drip(self.wfile, head + payload)
        elif mode == "drip-body":
            self.close_connection = True
            self.wfile.write(head)
            self.wfile.flush()
            registry._drip(self.wfile, payload)
        else:
            self.wfile.write(head + payload)

    def _head(self, reply: Reply) -> bytes:
        lines = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        headers = {"Content-Length": str(len(reply.body)), **reply.headers}
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HostileRegistry:
    """The registry of the module docstring, on a free port of 127.0.0.1 until `stop()`."""

    def __init__(
        self,
        *,
        drip_interval: float = 1.0,
        max_hold: float = 60.0,
        throttle_count: int = 2,
        throttle_every: int | None = None,
        throttle_status: int = 429,
        retry_after: float = 1.0,
        retry_after_date: bool = False,
        huge_bytes: int = 4 << 20,
    ) -> None:
        self.drip_interval = drip_interval
        self.max_hold = max_hold
        self.throttle_count = throttle_count
        self.throttle_every = throttle_every
        self._seen = 0
        self.throttle_status = throttle_status
        self.retry_after = retry_after
        self.retry_after_date = retry_after_date
        self.huge_bytes = huge_bytes
        self.requests: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.calm_now = False
        self.active = 0
        self.holding = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self._blobs: dict[str, bytes] = {}
        self._huge: dict[str, tuple[str, str]] = {}  # digest -> (repo, tag) it was made for
        self._made: OrderedDict[tuple[str, str], bytes] = OrderedDict()  # the last few made
        self._httpd: _Server | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> HostileRegistry:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.registry = self
        self._httpd = httpd
        self._stopping.clear()
        threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop accepting, and end every connection an attack holds."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        deadline = time.monotonic() + 5
        while self.holding and time.monotonic() < deadline:
            time.sleep(0.01)

    def release(self, within: float = 5.0) -> bool:
        """End every connection an attack holds now, and keep serving; whether all ended."""
        self._stopping.set()
        deadline = time.monotonic() + within
        while self.holding and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping.clear()
        return self.holding == 0

    def __enter__(self) -> HostileRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, as it appears in image references."""
        assert self._httpd is not None, "not started"
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @contextlib.contextmanager
    def calm(self) -> Iterator[None]:
        """Behave as a plain registry meanwhile (to push what a test needs)."""
        self.calm_now = True
        try:
            yield
        finally:
            self.calm_now = False

    def reset(self) -> None:
        """Zero the counters (throttling starts over for every repository)."""
        with self._lock:
            self.requests.clear()
            self.throttled.clear()
            self.peak = self.active

    # -- what the handler asks ----------------------------------------------------------------

    @staticmethod
    def repository_of(path: str) -> str | None:
        for pattern in (_UPLOAD, _PATH):
            match = pattern.match(path)
            if match:
                return match.group("repo")
        return None

    def answer(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes, mode: str
    ) -> Reply:
        """What a registry answers (before any dripping)."""
        if path in ("/v2/", "/v2"):
            return Reply(200, {"Content-Type": "application/json"}, b"{}")
        repo = self.repository_of(path)
        if method in ("GET", "HEAD") and mode == "throttle" and repo is not None:
            refusal = self._throttle(repo)
            if refusal is not None:
                return refusal
        upload = _UPLOAD.match(path)
        if upload:
            return self._upload(method, upload.group("repo"), query, body)
        match = _PATH.match(path)
        if match is None:
            return _error(404, "NAME_UNKNOWN", "no such route")
        repo, kind, ref = match.group("repo", "kind", "ref")
        if kind == "referrers":
            return _error(404, "UNSUPPORTED", "no referrers API")
        if kind == "blobs":
            return self._blob(method, ref)
        if method == "PUT":
            return self._put_manifest(repo, ref, body, query)
        if mode == "huge":
            return self._huge_manifest(repo, ref)
        with self._lock:
            found = self._manifests.get((repo, ref))
        if found is None:
            return _error(404, "MANIFEST_UNKNOWN", f"no manifest {ref} in {repo}")
        media_type, data = found
        return Reply(
            200, {"Content-Type": media_type, "Docker-Content-Digest": sha256_digest(data)}, data
        )

    def _throttle(self, repo: str) -> Reply | None:
        with self._lock:
            self._seen += 1
            if self.throttle_every is not None:
                if self._seen % self.throttle_every:
                    return None
            elif self.throttled[repo] >= self.throttle_count:
                return None
            self.throttled[repo] += 1
        if self.retry_after_date:
            when = email.utils.formatdate(time.time() + self.retry_after, usegmt=True)
        else:
            when = f"{self.retry_after:g}"
        reply = _error(self.throttle_status, "TOOMANYREQUESTS", "slow down")
        reply.headers["Retry-After"] = when
        return reply

    def _upload(self, method: str, repo: str, query: dict[str, list[str]], body: bytes) -> Reply:
        if method == "POST":
            return Reply(202, {"Location": f"/v2/{repo}/blobs/uploads/{uuid.uuid4().hex}"})
        digest = (query.get("digest") or [""])[0]
        if method != "PUT" or sha256_digest(body) != digest:
            return _error(400, "DIGEST_INVALID", "digest does not match the upload")
        with self._lock:
            self._blobs[digest] = body
        return Reply(
            201, {"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/blobs/{digest}"}
        )

    def _blob(self, method: str, digest: str) -> Reply:
        with self._lock:
            data = self._blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN", f"no blob {digest}")
        return Reply(200, {"Content-Type": "application/octet-stream"}, data)

    def _put_manifest(self, repo: str, ref: str, body: bytes, query: dict[str, list[str]]) -> Reply:
        try:
            media_type = json.loads(body).get("mediaType") or OCI_MANIFEST
        except ValueError:
            return _error(400, "MANIFEST_INVALID", "not JSON")
        digest = sha256_digest(body)
        with self._lock:
            self._manifests[(repo, ref)] = (media_type, body)
            self._manifests[(repo, digest)] = (media_type, body)
        return Reply(
            201, {"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/manifests/{digest}"}
        )

    def _huge_manifest(self, repo: str, ref: str) -> Reply:
        if ref.startswith("sha256-"):  # cosign's signature and referrers tags: none here
            return _error(404, "MANIFEST_UNKNOWN", f"no manifest {ref} in {repo}")
        tag = ref
        if ref.startswith("sha256:"):
            with self._lock:
                known = self._huge.get(ref)
            if known is None or known[0] != repo:
                return _error(404, "MANIFEST_UNKNOWN", f"no manifest {ref} in {repo}")
            tag = known[1]
        with self._lock:
            data = self._made.get((repo, tag))
        if data is None:  # made once: making one costs the test process a few hundred ms
            data = huge_index(repo, tag, self.huge_bytes)
        digest = sha256_digest(data)
        with self._lock:
            self._huge[digest] = (repo, tag)
            self._made[(repo, tag)] = data
            while len(self._made) > MAX_MADE:
                self._made.popitem(last=False)
        return Reply(200, {"Content-Type": OCI_INDEX, "Docker-Content-Digest": digest}, data)

    # -- bounded misbehaviour -----------------------------------------------------------------

    def _drip(self, out: Any, data: bytes) -> None:
        """Write `data` a byte at a time, `drip_interval` apart, for at most `max_hold`."""
        deadline = time.monotonic() + self.max_hold
        with self._held():
            for i in range(len(data)):
                if time.monotonic() > deadline or self._stopping.is_set():
                    return
                out.write(data[i : i + 1])
                out.flush()
                if self._stopping.wait(self.drip_interval):
                    return

    def _hold(self, seconds: float) -> None:
        with self._held():
            self._stopping.wait(seconds)

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        with self._lock:
            self.holding += 1
        try:
            yield
        finally:
            with self._lock:
                self.holding -= 1

    def _count(self, mode: str) -> None:
        with self._lock:
            self.requests[mode] += 1

    def _enter(self) -> None:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1


def _error(status: int, code: str, message: str) -> Reply:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    return Reply(status, {"Content-Type": "application/json"}, body)


@dataclass
class SlowClient:
    """A client that sends a request one header byte every `interval` seconds (bounded by
    `max_seconds`), as an attacker on the service's own port would: `run()` returns what the
    service did (the status line it answered, or how the connection ended) and when."""

    host: str
    port: int
    interval: float = 2.0
    max_seconds: float = 60.0
    request: bytes = (
        b"GET /healthz HTTP/1.1\r\nHost: sigverify\r\nX-Padding: " + b"a" * 64 + b"\r\n\r\n"
    )

    def run(self) -> tuple[str, float]:
        started = time.monotonic()
        with socket.create_connection((self.host, self.port), timeout=self.max_seconds) as sock:
            for byte in _bytes(self.request):
                if time.monotonic() - started > self.max_seconds:
                    return "gave up", time.monotonic() - started
                try:
                    sock.sendall(byte)
                except OSError:
                    return "dropped while sending", time.monotonic() - started
                if _readable(sock, self.interval):
                    break
            try:
                sock.settimeout(max(0.1, self.max_seconds - (time.monotonic() - started)))
                first = sock.recv(256)
            except OSError:
                return "dropped", time.monotonic() - started
        line = first.split(b"\r\n", 1)[0].decode("latin-1") if first else "closed"
        return line, time.monotonic() - started


def _bytes(data: bytes) -> Iterator[bytes]:
    for i in range(len(data)):
        yield data[i : i + 1]


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to `timeout` for the peer to answer or hang up; True if it did."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout))
