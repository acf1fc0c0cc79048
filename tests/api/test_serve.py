"""`sigverify serve` as a user runs it: gunicorn, real settings, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.api.auth import AUTH_OFF_WARNING
from tests.contract import CheckedClient
from tests.servers import RedisServer, ServiceServer, running


def test_serve_with_no_configuration_is_ready(tmp_path: Path) -> None:
    server = ServiceServer(tmp_path)
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ok"
        assert ready["checks"]["signingKey"]["development"] is True
        # Both workers use the one development key made before they forked.
        key_ids = {client.get("/readyz").json()["checks"]["signingKey"]["keyId"] for _ in range(8)}
        assert len(key_ids) == 1
    assert "DEVELOPMENT key" in server.log_path.read_text()


def test_serve_uses_redis_when_configured(tmp_path: Path, redis_server: RedisServer) -> None:
    server = ServiceServer(tmp_path, env={"SIGVERIFY_REDIS_URL": redis_server.url})
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/readyz").json()["checks"]["cache"] == {"ok": True, "backend": "redis"}


def test_bad_setting_stops_serve_with_the_variable_named(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGVERIFY_")}
    env["SIGVERIFY_WORKERS"] = "many"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "sigverify"), "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SIGVERIFY_WORKERS='many'" in result.stderr


def test_serve_starts_beside_the_clients_variables_and_says_it_ignores_them(
    tmp_path: Path,
) -> None:
    """A CI job that starts the service and runs `sigverify verify` has SIGVERIFY_SERVER and
    SIGVERIFY_TOKEN set: the service starts, ignores them, and says that SIGVERIFY_TOKEN does
    not protect it (its tokens are SIGVERIFY_API_TOKENS)."""
    env = {"SIGVERIFY_SERVER": "http://127.0.0.1:1", "SIGVERIFY_TOKEN": "ci-token-0123456789"}
    server = ServiceServer(tmp_path, env=env)
    with running(server), CheckedClient(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        # Still no auth: SIGVERIFY_TOKEN is the client's.
        assert AUTH_OFF_WARNING in client.get("/readyz").json()["warnings"]
    log = server.log_path.read_text()
    for name in env:
        assert f"{name} is read by `sigverify verify` (the client), not by the service" in log
    assert "ci-token-0123456789" not in log
