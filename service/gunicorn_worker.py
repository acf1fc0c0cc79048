"""gunicorn's gthread worker, except that no thread waits for a client.

gthread hands a connection to a thread as soon as it is readable, and the thread then reads the
request from a blocking socket: a client that sends a header byte every two seconds holds that
thread for as long as it likes (16 such clients held every thread of two workers, and so
`/healthz`, for the 90 s they kept sending; bench/RESULTS.md). `ReadingWorker` changes what a
thread is used for:

1. a request reaches the application only once its headers and its whole body (by
   `Content-Length`) have arrived: until then each arrival is read without blocking, in a
   moment of a thread, and the connection goes back to gunicorn's poller;
2. a request not all there `SIGVERIFY_CLIENT_TIMEOUT` seconds after its first byte is answered
   408 and dropped; a connection silent for gunicorn's `keepalive` seconds is closed (gunicorn);
3. a body larger than the endpoint takes is answered 413 before it is read, headers over
   `MAX_HEAD_BYTES` 431, and a chunked body 411 (its end is only known by reading it; every
   caller of this API, the Kubernetes API server included, sends `Content-Length`);
4. the worker stops accepting connections while every thread is busy, so a worker with a free
   thread takes them instead of queueing them behind slow requests;
5. every read and write of a client socket is bounded by `SO_RCVTIMEO` / `SO_SNDTIMEO`
   (`SIGVERIFY_CLIENT_TIMEOUT`): the TLS handshake (which gunicorn performs in the thread) and
   a client that stops reading its answer cannot hold a thread beyond that per operation;
6. a connection the worker refuses (or whose client left) is closed in the thread, lingering
   at most `LINGER` seconds for the client to take the answer, rather than by gunicorn's
   graceful close on the main loop (up to 2 s per connection, for a client that never closes,
   during which the worker accepts and polls nothing). Connections gunicorn itself is done
   with are closed as gthread closes them.

What belongs in front of the service instead (README, "Slow clients"): limits per client
address and on the number of connections, and a bound on whole TLS handshakes.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from gunicorn.workers.gthread import _DEFER, ThreadWorker

from service.api.admission import MAX_REVIEW_BYTES
from service.config import Settings

MAX_HEAD_BYTES = 32 * 1024
READ_CHUNK = 64 * 1024
LINGER = 0.25  # seconds a refused connection is drained before it is closed
SECURITY_HEADERS = "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"


@dataclass(frozen=True)
class Refusal:
    """A request answered by the worker itself, and the connection closed."""

    status: int
    title: str
    detail: str

    def response(self) -> bytes:
        kind = self.title.lower().replace(" ", "-")
        body = (
            f'{{"type": "https://sigverify.dev/problems/{kind}", "title": "{self.title}", '
            f'"status": {self.status}, "detail": "{self.detail}"}}'
        ).encode()
        head = (
            f"HTTP/1.1 {self.status} {self.title}\r\n"
            "Content-Type: application/problem+json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"{SECURITY_HEADERS}"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body


@dataclass(frozen=True)
class Arrived:
    """What has arrived of a request: all of it (`complete`), and whether it asks for a
    `100 Continue` before sending its body."""

    complete: bool
    expects_continue: bool = False


def request_state(data: bytes | bytearray, body_cap: int, admission_cap: int) -> Arrived | Refusal:
    """Whether `data` (what a client sent so far) holds a whole request to hand on.

    Only what decides that is read here: the end of the headers, the path (admission reviews
    may be larger), `Transfer-Encoding` and `Content-Length`. Anything else malformed is handed
    on whole, for gunicorn's parser to refuse.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            return Refusal(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers are over {MAX_HEAD_BYTES} bytes",
            )
        return Arrived(complete=False)
    lines = data[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    path = parts[1].split("?", 1)[0] if len(parts) > 1 else ""
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    if "transfer-encoding" in headers:
        return Refusal(411, "Length Required", "send the body with a Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        return Arrived(complete=True)  # gunicorn answers it
    length = int(length_text)
    cap = admission_cap if path == "/v1/admission" else body_cap
    if length > cap:
        return Refusal(413, "Request Entity Too Large", f"the body is {length} bytes, over {cap}")
    have = len(data) - (end + 4)
    expects = headers.get("expect", "").lower() == "100-continue"
    return Arrived(complete=have >= length, expects_continue=expects and have < length)


@dataclass
class _Pending:
    """A request being read: its bytes so far, when the first came, whether 100 went out."""

    data: bytearray
    started: float | None = None
    continued: bool = False


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def _close_soon(sock: socket.socket) -> None:
    """Send FIN, then take what the client still sends for up to `LINGER` seconds (closing with
    unread data would answer it with RST, which can destroy the answer in flight), and close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        until = time.monotonic() + LINGER
        drained = 0
        while drained < MAX_HEAD_BYTES and (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            chunk = sock.recv(READ_CHUNK)
            if not chunk:
                break
            drained += len(chunk)
    except (OSError, ValueError):
        pass
    with contextlib.suppress(OSError):
        sock.close()


class ReadingWorker(ThreadWorker):  # type: ignore[misc] # gunicorn has no type hints
    """See the module docstring."""

    def init_process(self) -> None:
        settings = Settings.from_env()
        self.client_timeout = settings.client_timeout
        self.body_cap = settings.max_body_bytes
        self.admission_cap = max(settings.max_body_bytes, MAX_REVIEW_BYTES)
        self.inflight = 0
        super().init_process()

    def get_thread_pool(self) -> Any:
        """gthread's pool, its threads all started now: a worker's thread count at rest is
        constant, so that what a request leaves running can be seen."""
        pool = super().get_thread_pool()
        ready = threading.Barrier(self.cfg.threads + 1)
        for _ in range(self.cfg.threads):
            pool.submit(ready.wait, 10)
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(10)
        return pool

    # -- accept only with a free thread (main thread only) -------------------------------------

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.inflight < self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        self.inflight += 1
        if self.inflight >= self.cfg.threads:
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.inflight -= 1
        if getattr(conn, "sigverify_closed", False):
            self.nr_conns -= 1  # closed in the thread already: only the count is left
            return
        super().finish_request(conn, fs)

    # -- in a thread: read what has arrived, hand on only whole requests -----------------------

    def handle(self, conn: Any) -> Any:
        if conn.is_http2:
            return super().handle(conn)
        try:
            state = self._gather(conn)
        except (OSError, ValueError) as exc:
            self.log.debug("connection from %s ended while reading: %s", conn.client, exc)
            self._close(conn)
            return False
        if state is None:
            return _DEFER  # back to the poller until more arrives
        if isinstance(state, Refusal):
            self._refuse(conn, state)
            return False
        return super().handle(conn)

    def _gather(self, conn: Any) -> Refusal | Literal[True] | None:
        """Read what is there: True when the whole request is in hand (given back to gunicorn's
        parser), a `Refusal`, None to wait for more; a client gone raises OSError."""
        if not conn.initialized:
            for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
                conn.sock.setsockopt(socket.SOL_SOCKET, option, _timeval(self.client_timeout))
            conn.init()  # TLS: the handshake, each read bounded by SO_RCVTIMEO
        pending: _Pending | None = getattr(conn, "sigverify_pending", None)
        if pending is None:
            pending = _Pending(bytearray(conn.parser.unreader.take_buffered()))
            conn.sigverify_pending = pending
        now = time.monotonic()
        if pending.data and pending.started is None:
            pending.started = now
        self._read_available(conn.sock, pending, now)
        if not pending.data:
            return None
        state = request_state(pending.data, self.body_cap, self.admission_cap)
        if isinstance(state, Refusal):
            return state
        assert pending.started is not None
        if not state.complete:
            if now - pending.started > self.client_timeout:
                return Refusal(
                    408,
                    "Request Timeout",
                    f"the request did not arrive within {self.client_timeout:g}s",
                )
            if state.expects_continue and not pending.continued:
                pending.continued = True
                conn.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            return None
        conn.sigverify_pending = None
        conn.parser.unreader.unread(bytes(pending.data))
        return True

    def _read_available(self, sock: Any, pending: _Pending, now: float) -> None:
        """Append what the socket holds now, without waiting; OSError if the client left."""
        limit = MAX_HEAD_BYTES + self.admission_cap + READ_CHUNK
        sock.setblocking(False)
        try:
            while len(pending.data) < limit:
                try:
                    chunk = sock.recv(READ_CHUNK)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return
                if not chunk:
                    raise OSError(errno.ECONNRESET, "the client closed the connection")
                if pending.started is None:
                    pending.started = now
                pending.data += chunk
        finally:
            sock.setblocking(True)

    def _refuse(self, conn: Any, refusal: Refusal) -> None:
        self.log.info("%s from %s: %s", refusal.status, conn.client, refusal.detail)
        with contextlib.suppress(OSError):
            conn.sock.sendall(refusal.response())
        self._close(conn)

    @staticmethod
    def _close(conn: Any) -> None:
        _close_soon(conn.sock)
        conn.sigverify_closed = True
