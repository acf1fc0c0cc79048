"""The Rekor v1 REST API over HTTP on 127.0.0.1, backed by a `TransparencyLog`.

Routes and answers follow Rekor's openapi.yaml (operation ids in brackets):
GET /api/v1/log [getLogInfo], GET /api/v1/log/publicKey [getPublicKey],
GET /api/v1/log/entries?logIndex=N [getLogEntryByIndex],
GET /api/v1/log/entries/{entryUUID} [getLogEntryByUUID],
POST /api/v1/log/entries [createLogEntry], POST /api/v1/log/entries/retrieve [searchLogQuery],
POST /api/v1/index/retrieve [searchIndex]. Errors are `{"code", "message"}`.

For tests it counts requests per operation (`requests`), and can fail (`fail_with`, optionally
only for some operations or a number of times) or answer slowly (`delay`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.sigstore_local.log import RekorError, TransparencyLog

_ENTRY_PATH = re.compile(r"^/api/v1/log/entries/([^/]+)$")
_UUID = re.compile(r"^([0-9a-fA-F]{64}|[0-9a-fA-F]{80})$")
MAX_BODY = 1 << 20


class RequestCounter:
    """Thread-safe request counts per operation id (unknown routes count as "notFound")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._history: list[tuple[str, str]] = []

    def add(self, operation: str, method: str, path: str) -> None:
        with self._lock:
            self._counts[operation] += 1
            self._history.append((method, path))

    def __getitem__(self, operation: str) -> int:
        with self._lock:
            return self._counts[operation]

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def history(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request, oldest first."""
        with self._lock:
            return list(self._history)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._history.clear()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    rekor: RekorServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, keep-alive clients wait out a
    # delayed ACK (about 40 ms) on every answer after the first.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `requests`, not stderr."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        rekor = self.server.rekor
        url = urlsplit(self.path)
        body = b""
        length = self.headers.get("content-length")
        if length and length.isdigit() and int(length) <= MAX_BODY:
            body = self.rfile.read(int(length))
        operation = _operation(method, url.path, url.query)
        rekor.requests.add(operation, method, self.path)
        if rekor.delay > 0:
            time.sleep(rekor.delay)
        status = rekor.take_failure(operation)
        if status is not None:
            headers = {"Retry-After": str(rekor.retry_after)} if rekor.retry_after else {}
            self._json(status, {"code": status, "message": "simulated failure"}, headers)
            return
        try:
            status, payload, headers = self._route(rekor.log, operation, url.path, url.query, body)
        except RekorError as exc:
            self._json(exc.code, exc.to_json(), exc.headers)
            return
        if isinstance(payload, str):
            self._send(status, payload.encode(), "application/x-pem-file", headers)
        else:
            self._json(status, payload, headers)

    def _route(
        self, log: TransparencyLog, operation: str, path: str, query: str, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if operation == "getLogInfo":
            return 200, log.log_info(), {}
        if operation == "getPublicKey":
            return 200, log.public_key_pem(), {}
        if operation == "getLogEntryByIndex":
            values = parse_qs(query).get("logIndex", [])
            if len(values) != 1 or not values[0].isdigit():
                raise RekorError(400, "logIndex: expected one non-negative integer")
            return 200, log.entry(int(values[0])), {}
        if operation == "getLogEntryByUUID":
            match = _ENTRY_PATH.match(path)
            assert match is not None
            uuid = match.group(1)
            if not _UUID.match(uuid):
                raise RekorError(400, f"entryUUID in path should match {_UUID.pattern}")
            return 200, log.entry_by_uuid(uuid), {}
        if operation == "createLogEntry":
            entry = log.add(_json_body(body))
            (entry_id,) = entry
            return 201, entry, {"ETag": entry_id, "Location": f"{path}/{entry_id}"}
        if operation == "searchLogQuery":
            return 200, log.retrieve(_json_body(body)), {}
        if operation == "searchIndex":
            return 200, log.search_index(_json_body(body)), {}
        raise RekorError(404, f"path {path} was not found")

    def _json(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        self._send(status, data, "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _operation(method: str, path: str, query: str) -> str:
    path = path.rstrip("/") or "/"
    if method == "GET":
        if path == "/api/v1/log":
            return "getLogInfo"
        if path == "/api/v1/log/publicKey":
            return "getPublicKey"
        if path == "/api/v1/log/entries":
            return "getLogEntryByIndex"
        if _ENTRY_PATH.match(path) and path != "/api/v1/log/entries/retrieve":
            return "getLogEntryByUUID"
    if method == "POST":
        if path == "/api/v1/log/entries":
            return "createLogEntry"
        if path == "/api/v1/log/entries/retrieve":
            return "searchLogQuery"
        if path == "/api/v1/index/retrieve":
            return "searchIndex"
    return "notFound"


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise RekorError(400, "request body is not JSON") from None


class RekorServer:
    """A `TransparencyLog` served over HTTP on 127.0.0.1 (a free port) from a daemon thread.

    `requests` counts requests per operation id. `fail_with = 503` makes every request (or
    only those in `fail_only`, or only the next `fail_times`) answer that status; `delay`
    sleeps that many seconds before each answer.
    """

    def __init__(self, log: TransparencyLog | None = None) -> None:
        self.log = log or TransparencyLog()
        self.requests = RequestCounter()
        self.fail_with: int | None = None
        self.fail_only: Collection[str] | None = None
        self.fail_times: int | None = None
        self.retry_after: int | None = None
        self.delay: float = 0.0
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the Rekor server is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> RekorServer:
        """Serve on `port` (0: a free one)."""
        if self._httpd is None:
            httpd = _Server(("127.0.0.1", port), _Handler)
            httpd.rekor = self
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._httpd = None
            self._thread = None

    def restart(self) -> None:
        """Stop, and serve the same log on the same port again (a Rekor restarted)."""
        port = self.port
        self.stop()
        self.start(port)

    def __enter__(self) -> RekorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def take_failure(self, operation: str) -> int | None:
        """The status to fail this request with, if a failure is switched on for it."""
        with self._lock:
            if self.fail_with is None:
                return None
            if self.fail_only is not None and operation not in self.fail_only:
                return None
            if self.fail_times is not None:
                if self.fail_times <= 0:
                    return None
                self.fail_times -= 1
            return self.fail_with

    def heal(self) -> None:
        """Switch off failures and delay."""
        with self._lock:
            self.fail_with = None
            self.fail_only = None
            self.fail_times = None
            self.retry_after = None
            self.delay = 0.0
