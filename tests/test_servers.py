"""The test bench itself: real processes start, answer, and are gone after stop."""

from __future__ import annotations

from pathlib import Path

import httpx
import redis

from tests.servers import RedisServer, RegistryServer


def test_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", b"v")
        assert client.get("k") == b"v"
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None


def test_registry_starts_answers_and_stops(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path).start()
    try:
        response = httpx.get(f"{server.url}/v2/", timeout=5)
        assert response.status_code == 200
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    finally:
        server.stop()
    assert server.proc is not None and server.proc.poll() is not None


def test_basic_auth_registry_refuses_anonymous(tmp_path: Path) -> None:
    server = RegistryServer(tmp_path, htpasswd=("u", "p")).start()
    try:
        assert httpx.get(f"{server.url}/v2/", timeout=5).status_code == 401
        assert httpx.get(f"{server.url}/v2/", auth=("u", "p"), timeout=5).status_code == 200
    finally:
        server.stop()
