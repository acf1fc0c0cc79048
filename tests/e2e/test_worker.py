"""The gunicorn worker (`service.gunicorn_worker`) as gunicorn runs it: workers recycled by
`max_requests` under keep-alive load drop no connection (slow clients and refused requests are
in test_attacks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bystander import workers
from tests.servers import free_port


@pytest.fixture
def recycling(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The service under gunicorn with workers recycled every 40 or so requests."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGVERIFY_")}
    env.update(
        {
            "SIGVERIFY_BIND": f"127.0.0.1:{port}",
            "SIGVERIFY_DATA_DIR": str(tmp_path / "data"),
            "SIGVERIFY_REKOR_URL": "http://127.0.0.1:1",
            "SIGVERIFY_LOG_LEVEL": "WARNING",
        }
    )
    argv = [
        sys.executable, "-m", "gunicorn", "--config", "python:service.gunicorn_conf",
        "--max-requests", "40", "--max-requests-jitter", "10", "service.wsgi:app",
    ]  # fmt: skip
    with (tmp_path / "gunicorn.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_recycled_workers_drop_no_connection(recycling: tuple[str, int]) -> None:
    url, master = recycling
    errors: Counter[str] = Counter()
    answered = [0]
    seen: set[int] = set()
    lock = threading.Lock()
    stop = time.monotonic() + 8

    def caller() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:  # keep-alive connections
            while time.monotonic() < stop:
                try:
                    assert client.get("/healthz").status_code == 200
                    with lock:
                        answered[0] += 1
                except httpx.HTTPError as exc:
                    with lock:
                        errors[f"{type(exc).__name__}: {exc}"] += 1

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        seen.update(workers(master))
        time.sleep(0.1)
    assert len(seen) >= 4, f"workers were not recycled ({len(seen)} seen)"
    assert not errors, f"{dict(errors)} with {answered[0]} answered"
