"""The test network guard itself: loopback passes, everything else is refused before any I/O."""

from __future__ import annotations

import socket

import pytest

from tests.netguard import NetworkGuardError, is_loopback_target


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1", b"127.0.0.1"],
)
def test_loopback_targets(host: str) -> None:
    assert is_loopback_target(host)


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "192.168.1.1", "169.254.169.254", "8.8.8.8", "example.com", "::", ""]
)
def test_other_targets(host: str) -> None:
    # Pure decisions: nothing is contacted.
    assert not is_loopback_target(host)


def test_the_guard_is_installed_for_every_test() -> None:
    # Checked by identity, not by trying a real address: a broken guard would send traffic.
    for wrapped in (socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo):
        assert wrapped.__qualname__.startswith("_loopback_only."), wrapped
    assert socket.getaddrinfo("127.0.0.1", 80)
    # The unspecified address (Linux would take it for this host) is refused all the same.
    with socket.socket(socket.AF_INET6) as sock, pytest.raises(NetworkGuardError):
        sock.connect(("::", 9))
