"""One cache interface: Redis when configured, an in-process LRU otherwise.

Values are bytes; callers serialise. Every cache counts hits, misses and errors per namespace so
metrics and tests can see what it does. A Redis outage never fails a request: reads become
misses, writes are dropped, and `healthy()` says so for `/readyz`. No value over
`max_value_bytes` is stored (counted as `too_large`): what an upstream serves is cached only
up to that size, so it cannot fill a shared, evicting cache.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import redis

from service.outbound import DeadlineExceeded, deadline

log = logging.getLogger(__name__)

MAX_VALUE_BYTES = 1 << 20


@dataclass
class CacheStats:
    """Hit, miss and error counts per namespace (the part of a key before the first ':').

    Each observer is called with every event (`hit`, `miss`, `too-large`, `read-error`,
    `write-error`) and the key's namespace; metrics subscribe here.
    """

    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    too_large: dict[str, int] = field(default_factory=dict)  # values refused by the size cap
    errors: int = 0
    observers: list[Callable[[str, str], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, key: str, hit: bool) -> None:
        namespace = key.split(":", 1)[0]
        with self._lock:
            target = self.hits if hit else self.misses
            target[namespace] = target.get(namespace, 0) + 1
        self._notify("hit" if hit else "miss", namespace)

    def refused(self, key: str) -> None:
        """A value over the size cap was not stored."""
        namespace = key.split(":", 1)[0]
        with self._lock:
            self.too_large[namespace] = self.too_large.get(namespace, 0) + 1
        self._notify("too-large", namespace)

    def error(self, key: str = "", event: str = "error") -> None:
        with self._lock:
            self.errors += 1
        self._notify(event, key.split(":", 1)[0])

    def _notify(self, event: str, namespace: str) -> None:
        for observer in self.observers:
            observer(event, namespace)


class Cache(Protocol):
    """What the service needs of a cache."""

    stats: CacheStats

    def get(self, key: str) -> bytes | None:
        """The value under `key`, or None when absent, expired or the cache is unreachable."""

    def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` for `ttl` seconds, unless it is over the cache's size cap; never
        raises."""

    def incr(self, key: str, amount: int, ttl: float) -> int | None:
        """Add `amount` to the counter `key` (created with a `ttl`-second life); the new
        value, or None when the cache is unreachable."""

    def healthy(self) -> bool:
        """Whether the cache backend answers."""

    @property
    def backend(self) -> str:
        """`redis` or `memory`."""


class MemoryCache:
    """An in-process LRU with per-entry expiry, for development and single-process use."""

    def __init__(
        self,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._max_value = max_value_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self.stats = CacheStats()

    @property
    def backend(self) -> str:
        return "memory"

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is not None and item[0] <= self._clock():
                del self._data[key]
                item = None
            if item is not None:
                self._data.move_to_end(key)
        self.stats.record(key, item is not None)
        return None if item is None else item[1]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(value) > self._max_value:
            self.stats.refused(key)
            return
        with self._lock:
            self._data[key] = (self._clock() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def incr(self, key: str, amount: int, ttl: float) -> int | None:
        with self._lock:
            now = self._clock()
            item = self._data.get(key)
            if item is None or item[0] <= now:
                item = (now + ttl, b"0")
            value = int(item[1]) + amount
            self._data[key] = (item[0], str(value).encode())
            self._data.move_to_end(key)
            return value

    def healthy(self) -> bool:
        return True


class RedisCache:
    """A Redis-backed cache. Errors are logged, counted and turned into misses."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "sigverify:",
        timeout: float = 0.5,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        self._max_value = max_value_bytes
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
        )
        self._prefix = prefix
        self.stats = CacheStats()

    @property
    def backend(self) -> str:
        return "redis"

    def get(self, key: str) -> bytes | None:
        try:
            value = self._client.get(self._prefix + key)
        except redis.RedisError as exc:
            self.stats.error(key, "read-error")
            log.warning("cache read failed, treating as a miss: %s", type(exc).__name__)
            self.stats.record(key, False)
            return None
        self.stats.record(key, value is not None)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(value) > self._max_value:
            self.stats.refused(key)
            return
        try:
            self._client.set(self._prefix + key, value, px=max(1, int(ttl * 1000)))
        except redis.RedisError as exc:
            self.stats.error(key, "write-error")
            log.warning("cache write dropped: %s", type(exc).__name__)

    def incr(self, key: str, amount: int, ttl: float) -> int | None:
        name = self._prefix + key
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.incrby(name, amount)
            pipe.expire(name, max(1, int(ttl)), nx=True)  # the first increment starts the clock
            value, _ = pipe.execute()
        except redis.RedisError as exc:
            self.stats.error(key, "write-error")
            log.warning("cache counter unavailable: %s", type(exc).__name__)
            return None
        return int(value)

    def healthy(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False


def make_cache(redis_url: str | None, *, max_value_bytes: int = MAX_VALUE_BYTES) -> Cache:
    """Redis when a URL is configured, the in-process LRU otherwise."""
    if redis_url:
        return RedisCache(redis_url, max_value_bytes=max_value_bytes)
    return MemoryCache(max_value_bytes=max_value_bytes)


class SingleFlight:
    """Runs identical concurrent calls once: later callers wait for the first one's result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, _Call] = {}

    def do(self, key: str, fn: Callable[[], bytes | None]) -> bytes | None:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = _Call()
                self._calls[key] = call
        if not leader:
            # Not past the request's deadline: the leader may be working for a longer one.
            left = deadline.time_left()
            if not call.done.wait(None if math.isinf(left) else left):
                raise DeadlineExceeded(f"waited for an identical lookup in flight ({key})")
            if call.error is not None:
                raise call.error
            return call.result
        try:
            call.result = fn()
            return call.result
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                self._calls.pop(key, None)
            call.done.set()


@dataclass
class _Call:
    done: threading.Event = field(default_factory=threading.Event)
    result: bytes | None = None
    error: BaseException | None = None
