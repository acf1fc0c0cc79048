"""Transport failures over real sockets on 127.0.0.1: refused connections and a log too slow."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.cache import MemoryCache
from service.tlog import RekorClient, TlogTimeout, TlogUnavailable
from tests.servers import free_port


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(0.5)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_log() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_refused_connection_is_retried_then_unavailable() -> None:
    slept: list[float] = []
    client = RekorClient(
        f"http://127.0.0.1:{free_port()}", MemoryCache(), sleep=slept.append, trust_env=False
    )
    with pytest.raises(TlogUnavailable, match="unreachable") as info:
        client.entry_by_log_index(0)
    assert info.value.reason == "connect"
    assert client.stats.snapshot()["requests"] == 3
    assert len(slept) == 2


def test_slow_log_times_out(slow_log: str) -> None:
    client = RekorClient(slow_log, MemoryCache(), timeout=0.1, retries=1, sleep=lambda _s: None)
    started = time.monotonic()
    with pytest.raises(TlogTimeout, match=r"within 0\.1s"):
        client.entry_by_log_index(0)
    assert time.monotonic() - started < 0.45  # two attempts of 0.1 s, not two of 0.5 s
    assert client.stats.snapshot()["requests"] == 2
