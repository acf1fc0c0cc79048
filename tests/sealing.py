"""The cache secret tests seal with, and helpers to read and forge what sits in Redis.

Values in Redis are sealed (`service.cache.Sealer`); a test that looks at a stored value opens
it with the same secret, and a test that plays a Redis writer stores bytes of its own.
"""

from __future__ import annotations

from service.cache import Sealer

SECRET = bytes(range(32))


def seal(key: str, value: bytes, ttl: float = 60.0) -> bytes:
    """`value` as a cache holding `SECRET` stores it under `key` (without the prefix)."""
    return Sealer(SECRET).seal(key, value, ttl)


def unseal(key: str, raw: object) -> bytes:
    """The value a cache holding `SECRET` stored under `key`; fails the test if not sealed."""
    assert isinstance(raw, bytes), raw
    value = Sealer(SECRET).open(key, raw)
    assert value is not None, f"the value under {key} is not sealed with the test secret"
    return value
