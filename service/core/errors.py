"""One error root for the verification core.

Messages are lowercase fragments that say what was found and what was expected, so that a
caller can prefix them ("the policy is invalid: ...") and a person can act on them.
"""

from __future__ import annotations


class CoreError(Exception):
    """The root of every error the core raises."""


class TrustRootError(CoreError):
    """A trusted_root.json that cannot be used."""


class InputError(CoreError):
    """A signature, bundle or log entry that is not well formed."""


class PolicyError(CoreError):
    """A policy that cannot be used; `field` names the offending field (dotted path)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class CheckError(CoreError):
    """One verification step failed; the message becomes the check's detail."""
