"""Deadlines carried by the context: a request's, and the outbound exchange's in flight.

A `Scope` is what one request may still spend: a deadline and a cancellation flag. The API sets
one around every request (`enter`/`leave`); work it hands to other threads runs in a copy of
the context (`contextvars.copy_context().run`), so it sees the same scope, and stops when the
scope is cancelled or its deadline passes. Nothing here sleeps past a scope: `time_left()` is
what every blocking step (a socket read, a wait for a connection slot, a backoff, a wait for
an identical lookup in flight) may take at most.

The outbound kernel adds the deadline of the exchange in flight (`exchange`), which the
network streams read on every operation; `time_left()` is the smaller of the two.

Each `Deadline` reads its own clock, so a test's injected clock and the real one never mix.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from service.outbound.errors import DeadlineExceeded


@dataclass(frozen=True)
class Deadline:
    """An instant on `clock`."""

    at: float
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)

    @classmethod
    def after(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


@dataclass
class Scope:
    """What one request may still spend: until `deadline`, and not after `cancel()`.

    `budget` is the number of seconds it was given, for messages ("within 30s").
    """

    deadline: Deadline
    budget: float
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _received: list[int] = field(default_factory=lambda: [0], repr=False)  # shared with children

    @classmethod
    def starting(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Scope:
        return cls(Deadline.after(seconds, clock), seconds)

    def narrowed(self, seconds: float) -> Scope:
        """A child scope ending at most `seconds` from now (never after this one), with its
        own cancellation; cancelling this scope does not cancel it, so cancel both."""
        child = Deadline.after(seconds, self.deadline.clock)
        deadline = child if child.at < self.deadline.at else self.deadline
        return Scope(deadline, min(seconds, self.budget), _received=self._received)

    def add_received(self, size: int) -> None:
        """Bytes of upstream bodies read for this request (approximate across threads)."""
        self._received[0] += size

    @property
    def received(self) -> int:
        """Bytes of upstream bodies read for this request and its narrowed scopes."""
        return self._received[0]

    def cancel(self) -> None:
        """The request has been answered: whatever still runs for it stops at its next step."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def remaining(self) -> float:
        return 0.0 if self.cancelled else self.deadline.remaining()

    def check(self, what: str) -> None:
        """Raise `DeadlineExceeded` if nothing more may be done for this request."""
        if self.cancelled:
            raise DeadlineExceeded(f"{what}: the request was answered or cancelled")
        if self.deadline.expired:
            raise DeadlineExceeded(f"{what}: not done within the request's {self.budget:g}s")

    def sleep(self, seconds: float) -> bool:
        """Wait `seconds` unless cancelled first; True if the wait was cut short."""
        return self._cancelled.wait(seconds)


_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "sigverify_scope", default=None
)
_EXCHANGE: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "sigverify_exchange", default=None
)


def current() -> Scope | None:
    """The scope of the request this code runs for, if any."""
    return _SCOPE.get()


def enter(scope: Scope) -> contextvars.Token[Scope | None]:
    """Make `scope` current; give the token to `leave` (request hooks cannot use `with`)."""
    return _SCOPE.set(scope)


def leave(token: contextvars.Token[Scope | None]) -> None:
    _SCOPE.reset(token)


@contextlib.contextmanager
def scoped(scope: Scope) -> Iterator[Scope]:
    """`scope` is current inside the block (and in contexts copied there)."""
    token = enter(scope)
    try:
        yield scope
    finally:
        leave(token)


@contextlib.contextmanager
def exchange(deadline: Deadline) -> Iterator[None]:
    """The deadline of one outbound exchange, for the network streams (kernel only)."""
    token = _EXCHANGE.set(deadline)
    try:
        yield
    finally:
        _EXCHANGE.reset(token)


def time_left() -> float:
    """Seconds the current step may take: the smaller of the exchange's and the request's
    time left, `inf` when neither is set, `0` once either has passed or was cancelled."""
    left = math.inf
    scope = _SCOPE.get()
    if scope is not None:
        left = min(left, scope.remaining())
    step = _EXCHANGE.get()
    if step is not None:
        left = min(left, step.remaining())
    return max(0.0, left)


def scope_left() -> float:
    """Seconds the current request has left (`inf` outside any request)."""
    scope = _SCOPE.get()
    return math.inf if scope is None else max(0.0, scope.remaining())


def scope_over() -> bool:
    """Whether the current request's time is up (its deadline passed, or it was cancelled)."""
    scope = _SCOPE.get()
    return scope is not None and scope.remaining() <= 0
