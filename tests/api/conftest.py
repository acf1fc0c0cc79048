"""An in-process app with test settings, reached through httpx's WSGI transport."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask import Flask

from service.app import create_app
from service.config import Settings
from tests.contract import CheckedClient

# Nothing listens on port 1 of loopback: a test that reaches for Rekor by mistake fails fast
# instead of sending traffic to the public log named in the embedded trust root.
NO_REKOR = "http://127.0.0.1:1"


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Settings(data_dir=tmp_path / "data", rekor_url=NO_REKOR))


@pytest.fixture
def client(app: Flask) -> Iterator[httpx.Client]:
    with CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify") as c:
        yield c
