"""A circuit breaker for one upstream host: stop asking a host that is down, probe it now and then.

The outbound kernel keeps one per host (`service.outbound.kernel`); the Rekor client's is the
one of its log's host.

States:
  closed     every attempt goes through; `failure_threshold` consecutive failures open it.
  open       every attempt is refused at once, for `cooldown` seconds.
  half_open  after the cool-down one probe goes through (the others are still refused); its
             success closes the breaker, its failure opens it again for another cool-down.

The clock is injected so tests never sleep. Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]

CLOSED: BreakerState = "closed"
OPEN: BreakerState = "open"
HALF_OPEN: BreakerState = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of attempts against one upstream and refuses when it is down.

    A caller asks `allow()` before an attempt and reports `success()`, `failure()` or
    `abandon()` after it; an attempt that was allowed must be reported, or a half-open probe
    stays in flight until another cool-down has passed.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if cooldown < 0:
            raise ValueError(f"cooldown must not be negative, got {cooldown}")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self.opened = 0  # how many times the breaker opened, for metrics
        self.refused = 0  # attempts refused while open or while a probe was in flight

    @property
    def state(self) -> BreakerState:
        """`closed`, `open` or `half_open` (an open breaker whose cool-down has passed)."""
        with self._lock:
            return self._current_state()

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._failures

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        with self._lock:
            if self._current_state() != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.cooldown - self._clock())

    def allow(self) -> bool:
        """Whether an attempt may go out now; in half-open state only the first caller may."""
        with self._lock:
            state = self._current_state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN:
                now = self._clock()
                probe_lost = (
                    self._probe_started is not None and now - self._probe_started >= self.cooldown
                )
                if self._probe_started is None or probe_lost:
                    self._state = HALF_OPEN
                    self._probe_started = now
                    return True
            self.refused += 1
            return False

    def success(self) -> None:
        """The attempt reached a working upstream: close the breaker."""
        with self._lock:
            self._state = CLOSED
            self._failures = 0
            self._probe_started = None

    def failure(self) -> None:
        """The attempt failed because of the upstream (outage, timeout, 5xx, 429)."""
        with self._lock:
            self._failures += 1
            probing = self._state == HALF_OPEN
            if probing or (self._state == CLOSED and self._failures >= self.failure_threshold):
                self._state = OPEN
                self._opened_at = self._clock()
                self._probe_started = None
                self.opened += 1

    def abandon(self) -> None:
        """The attempt ended without saying anything about the upstream (refused before it
        was sent, or cut short by the caller): a half-open probe may go out again at once."""
        with self._lock:
            self._probe_started = None

    def _current_state(self) -> BreakerState:
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
            return HALF_OPEN
        return self._state
