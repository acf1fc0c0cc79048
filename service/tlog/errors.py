"""What can go wrong when asking a transparency log. One root, `TlogError`.

`TlogUnavailable` is operational (the log is down, slow, or the breaker refused): the service
answers 502 (504 for `TlogTimeout`), never signs a pass because of it, and never caches it.
`TlogProtocolError` means the log (or a cache) answered something that is not a well-formed
answer to the question asked.
"""

from __future__ import annotations


class TlogError(Exception):
    """A transparency-log lookup failed. `reason` is a short machine label for metrics."""

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class TlogUnavailable(TlogError):  # noqa: N818 - the name the service maps to 502/504
    """The log could not be reached, failed, or is shed by the circuit breaker."""


class TlogTimeout(TlogUnavailable):
    """The log did not answer in time (the last attempt timed out)."""


class TlogProtocolError(TlogError):
    """The log answered, but not with a well-formed answer to the question asked."""
