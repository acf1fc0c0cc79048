"""The circuit breaker on an injected clock: closed, open, half-open and back."""

from __future__ import annotations

import threading

import pytest

from service.outbound import CircuitBreaker
from tests.tlog.helpers import FakeClock


def state(breaker: CircuitBreaker) -> str:
    """The state as a plain string (mypy would narrow the Literal across calls otherwise)."""
    return breaker.state


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.failure()


def test_starts_closed_and_allows(clock: FakeClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    assert state(breaker) == "closed"
    assert breaker.allow()


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=30, clock=clock)
    _fail(breaker, 2)
    assert state(breaker) == "closed"
    _fail(breaker, 1)
    assert state(breaker) == "open"
    assert breaker.opened == 1
    assert not breaker.allow()
    assert breaker.refused == 1


def test_a_success_resets_the_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)
    _fail(breaker, 2)
    breaker.success()
    _fail(breaker, 2)
    assert state(breaker) == "closed"
    assert breaker.consecutive_failures == 2


def test_default_is_five_failures_and_thirty_seconds(clock: FakeClock) -> None:
    breaker = CircuitBreaker(clock=clock)
    _fail(breaker, 4)
    assert state(breaker) == "closed"
    _fail(breaker, 1)
    assert state(breaker) == "open"
    clock.advance(29.9)
    assert state(breaker) == "open"
    clock.advance(0.1)
    assert state(breaker) == "half_open"


def test_half_open_lets_exactly_one_probe_through(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    _fail(breaker, 1)
    clock.advance(10)
    assert state(breaker) == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else waits for its outcome
    assert state(breaker) == "half_open"


def test_successful_probe_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    _fail(breaker, 1)
    clock.advance(10)
    assert breaker.allow()
    breaker.success()
    assert state(breaker) == "closed"
    assert breaker.allow()
    assert breaker.allow()


def test_failed_probe_reopens_for_a_full_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown=10, clock=clock)
    _fail(breaker, 2)
    clock.advance(10)
    assert breaker.allow()
    breaker.failure()  # one failure is enough in half-open state
    assert state(breaker) == "open"
    assert breaker.opened == 2
    clock.advance(9.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()


def test_lost_probe_is_replaced_after_another_cooldown(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    _fail(breaker, 1)
    clock.advance(10)
    assert breaker.allow()  # a probe that never reports back
    clock.advance(9)
    assert not breaker.allow()
    clock.advance(1)
    assert breaker.allow()


def test_late_failures_do_not_extend_an_open_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    _fail(breaker, 1)
    clock.advance(5)
    breaker.failure()  # an attempt allowed before it opened, failing late
    clock.advance(5)
    assert state(breaker) == "half_open"
    assert breaker.opened == 1


def test_concurrent_callers_get_one_probe(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown=1, clock=clock)
    _fail(breaker, 1)
    clock.advance(1)
    allowed: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def ask() -> None:
        start.wait()
        result = breaker.allow()
        with lock:
            allowed.append(result)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert allowed.count(True) == 1


@pytest.mark.parametrize(("threshold", "cooldown"), [(0, 1.0), (1, -1.0)])
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError, match="must"):
        CircuitBreaker(threshold, cooldown)
