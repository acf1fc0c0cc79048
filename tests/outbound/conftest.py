"""Fixtures for the outbound kernel tests."""

from __future__ import annotations

import pytest

from tests.tlog.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock that only moves when a test (or a recorded sleep) moves it."""
    return FakeClock()
