"""Request scopes: deadlines on an injected clock, cancellation, what `time_left` reads, and
that waiting for an identical lookup in flight ends with the request."""

from __future__ import annotations

import contextvars
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.cache import SingleFlight
from service.outbound import Deadline, DeadlineExceeded, Scope, deadline
from tests.tlog.helpers import FakeClock


def test_a_scope_counts_down_on_its_clock_and_stops_when_cancelled(clock: FakeClock) -> None:
    scope = Scope.starting(30, clock)
    assert scope.remaining() == 30
    clock.advance(10)
    assert scope.remaining() == 20
    scope.check("still in time")
    scope.cancel()
    assert scope.remaining() == 0
    with pytest.raises(DeadlineExceeded, match="answered or cancelled"):
        scope.check("after the answer")


def test_an_expired_scope_says_its_budget(clock: FakeClock) -> None:
    scope = Scope.starting(8, clock)
    clock.advance(8)
    with pytest.raises(DeadlineExceeded, match=r"within the request's 8s"):
        scope.check("GET ghcr.io:443")


def test_a_narrowed_scope_never_outlives_its_parent(clock: FakeClock) -> None:
    parent = Scope.starting(10, clock)
    assert parent.narrowed(4).remaining() == 4
    clock.advance(8)
    child = parent.narrowed(4)
    assert child.remaining() == 2  # the parent's end comes first
    assert child.budget == 4
    parent.cancel()
    assert not child.cancelled  # its own flag: cancel both when the request is answered


def test_time_left_is_the_smaller_of_exchange_and_request(clock: FakeClock) -> None:
    assert deadline.time_left() == math.inf
    with deadline.scoped(Scope.starting(5, clock)):
        assert deadline.time_left() == 5
        with deadline.exchange(Deadline.after(2, clock)):
            assert deadline.time_left() == 2
            clock.advance(3)
            assert deadline.time_left() == 0  # never negative
        assert deadline.time_left() == 2
        assert deadline.scope_left() == 2
        assert not deadline.scope_over()
        clock.advance(2)
        assert deadline.scope_over()
    assert deadline.current() is None


def test_work_in_a_copied_context_sees_the_scope_and_its_cancellation() -> None:
    scope = Scope.starting(60)
    seen: list[bool] = []

    def job() -> None:
        current = deadline.current()
        assert current is scope
        seen.append(current.sleep(5))  # cut short by the cancellation

    with deadline.scoped(scope), ThreadPoolExecutor(1) as pool:
        future = pool.submit(contextvars.copy_context().run, job)
        time.sleep(0.1)
        scope.cancel()
        future.result(timeout=2)
    assert seen == [True]


def test_waiting_for_an_identical_call_in_flight_ends_with_the_request() -> None:
    flight = SingleFlight()
    release = threading.Event()

    def slow() -> bytes:
        release.wait(5)
        return b"done"

    with ThreadPoolExecutor(1) as pool:
        leader = pool.submit(flight.do, "key", slow)
        time.sleep(0.1)
        started = time.monotonic()
        with deadline.scoped(Scope.starting(0.3)), pytest.raises(DeadlineExceeded):
            flight.do("key", slow)
        assert time.monotonic() - started < 1.5
        release.set()
        assert leader.result(timeout=5) == b"done"
    assert flight.do("key", lambda: b"again") == b"again"  # nothing left behind
