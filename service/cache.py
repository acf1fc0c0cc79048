"""One cache interface: Redis when configured, an in-process LRU otherwise.

Values are bytes; callers serialise. Every cache counts hits, misses and errors per namespace so
metrics and tests can see what it does. A Redis outage never fails a request: reads become
misses, writes are dropped, and `healthy()` says so for `/readyz`. No value over
`max_value_bytes` is stored (counted as `too_large`): what an upstream serves is cached only
up to that size, so it cannot fill a shared, evicting cache.

Nothing read from Redis is trusted: anyone who can write to it could otherwise decide answers.
Every value is sealed (`Sealer`): an HMAC-SHA256, keyed with a secret the service's pods share,
over the key, the value and its expiry. A value that is not sealed by us, was moved to another
key, or is past the expiry it was written with, is a miss ("rejected"), so a Redis writer can
cause misses and nothing else. Rate-limit counters (`incr`) are plain integers: a writer can
change them, which moves a limit, never an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
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
    `write-error`, `rejected`) and the key's namespace; metrics subscribe here.
    """

    hits: dict[str, int] = field(default_factory=dict)
    misses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    rejected: int = 0  # values that failed their seal: written by someone else, or tampered
    too_large: dict[str, int] = field(default_factory=dict)  # values refused by the size cap
    observers: list[Callable[[str, str], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, key: str, hit: bool) -> None:
        namespace = key.split(":", 1)[0]
        with self._lock:
            target = self.hits if hit else self.misses
            target[namespace] = target.get(namespace, 0) + 1
        self._notify("hit" if hit else "miss", namespace)

    def error(self, key: str = "", event: str = "error") -> None:
        with self._lock:
            self.errors += 1
        self._notify(event, key.split(":", 1)[0])

    def reject(self, key: str) -> None:
        with self._lock:
            self.rejected += 1
        self._notify("rejected", key.split(":", 1)[0])

    def refused(self, key: str) -> None:
        """A value over the size cap was not stored."""
        namespace = key.split(":", 1)[0]
        with self._lock:
            self.too_large[namespace] = self.too_large.get(namespace, 0) + 1
        self._notify("too-large", namespace)

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

    def append(self, key: str, values: Sequence[bytes], *, max_items: int, ttl: float) -> None:
        """Append `values` to the list `key` in one step, keep its newest `max_items`, and keep
        each item for `ttl` seconds (the list lives `ttl` past its last append); never raises.
        Concurrent appends (other threads, other pods) are all kept, up to the cap."""

    def items(self, key: str, *, max_items: int) -> list[bytes]:
        """The list's newest `max_items` items that are still valid (unexpired and, in
        Redis, sealed by us), oldest first; [] when absent or the cache is unreachable."""

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
        max_lists: int = 1024,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        self._max_value = max_value_bytes
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Lists (`append`): key -> items as (expiry, value), oldest first; least recently
        # appended lists go first beyond `max_lists`.
        self._lists: OrderedDict[str, deque[tuple[float, bytes]]] = OrderedDict()
        self._max_lists = max_lists
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

    def append(self, key: str, values: Sequence[bytes], *, max_items: int, ttl: float) -> None:
        if ttl <= 0 or not values or max_items <= 0:
            return
        with self._lock:
            now = self._clock()
            found = self._lists.get(key)
            if found is None or found.maxlen != max_items:
                found = deque(found or (), maxlen=max_items)
                self._lists[key] = found
            found.extend((now + ttl, value) for value in values)
            while found and found[0][0] <= now:  # items are appended in expiry order
                found.popleft()
            self._lists.move_to_end(key)
            while len(self._lists) > self._max_lists:
                self._lists.popitem(last=False)

    def items(self, key: str, *, max_items: int) -> list[bytes]:
        with self._lock:
            now = self._clock()
            found = list(self._lists.get(key) or ())
        kept = [value for expiry, value in found[-max_items:] if expiry > now] if max_items else []
        self.stats.record(key, bool(kept))
        return kept

    def healthy(self) -> bool:
        return True


class Sealer:
    """Seals cache values so that only a holder of `secret` can write one we accept.

    A sealed value is `VERSION || expiry (ms since the epoch, 8 bytes) || HMAC || value`, the
    HMAC-SHA256 taken over the key, the expiry and the value: a value cannot be forged, moved
    to another key, or kept past the lifetime it was written with. The clock is injected.
    """

    VERSION = b"sv1"
    _HEADER = len(VERSION) + 8 + hashlib.sha256().digest_size

    def __init__(self, secret: bytes, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("a cache secret has at least 32 bytes")
        self._secret = secret
        self._clock = clock

    def _mac(self, key: str, expiry: bytes, value: bytes) -> bytes:
        message = len(key).to_bytes(4, "big") + key.encode() + expiry + value
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def seal(self, key: str, value: bytes, ttl: float) -> bytes:
        expiry = int((self._clock() + ttl) * 1000).to_bytes(8, "big")
        return self.VERSION + expiry + self._mac(key, expiry, value) + value

    def open(self, key: str, sealed: bytes) -> bytes | None:
        """The value, or None when the seal does not hold or the value has expired."""
        if len(sealed) < self._HEADER or not sealed.startswith(self.VERSION):
            return None
        start = len(self.VERSION)
        expiry, mac = sealed[start : start + 8], sealed[start + 8 : self._HEADER]
        value = sealed[self._HEADER :]
        if not hmac.compare_digest(mac, self._mac(key, expiry, value)):
            return None
        if int.from_bytes(expiry, "big") <= self._clock() * 1000:
            return None
        return value

    def expired(self, sealed: bytes) -> bool:
        """Whether `sealed` says its lifetime is over (read without checking the seal: an
        expired value is dropped whoever wrote it, so it needs no other account)."""
        if len(sealed) < self._HEADER or not sealed.startswith(self.VERSION):
            return False
        start = len(self.VERSION)
        return int.from_bytes(sealed[start : start + 8], "big") <= self._clock() * 1000


class RedisCache:
    """A Redis-backed cache of sealed values. Errors are logged, counted and turned into misses.

    Values live under `prefix`; counters under `counter_prefix` (default: `prefix`), so that
    pods with different secrets keep apart the values they cannot read but share counters.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: bytes,
        prefix: str = "sigverify:",
        counter_prefix: str | None = None,
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
        self._sealer = Sealer(secret)
        self._prefix = prefix
        self._counter_prefix = prefix if counter_prefix is None else counter_prefix
        self._last_rejection_log = float("-inf")
        self.stats = CacheStats()

    @property
    def backend(self) -> str:
        return "redis"

    def get(self, key: str) -> bytes | None:
        try:
            raw = self._client.get(self._prefix + key)
        except redis.RedisError as exc:
            self.stats.error(key, "read-error")
            log.warning("cache read failed, treating as a miss: %s", type(exc).__name__)
            self.stats.record(key, False)
            return None
        value = self._sealer.open(key, raw) if isinstance(raw, bytes) else None
        if isinstance(raw, bytes) and value is None:
            self._rejected(key)
        self.stats.record(key, value is not None)
        return value

    def _rejected(self, key: str) -> None:
        """A value we did not seal: counted always, logged at most once a minute (a Redis
        writer must not be able to flood the log)."""
        self.stats.reject(key)
        now = time.monotonic()
        if now - self._last_rejection_log >= 60:
            self._last_rejection_log = now
            log.warning(
                "cache value under %s failed its seal (written by another key holder, "
                "tampered with, or expired): treated as a miss",
                key.split(":", 1)[0],
            )

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if ttl <= 0:
            return
        if len(value) > self._max_value:
            self.stats.refused(key)
            return
        sealed = self._sealer.seal(key, value, ttl)
        try:
            self._client.set(self._prefix + key, sealed, px=max(1, int(ttl * 1000)))
        except redis.RedisError as exc:
            self.stats.error(key, "write-error")
            log.warning("cache write dropped: %s", type(exc).__name__)

    def incr(self, key: str, amount: int, ttl: float) -> int | None:
        name = self._counter_prefix + key
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

    def append(self, key: str, values: Sequence[bytes], *, max_items: int, ttl: float) -> None:
        if ttl <= 0 or not values or max_items <= 0:
            return
        name = self._prefix + key
        # Each item is sealed under the list's key: it cannot be moved to another list, forged,
        # or kept past its own lifetime (the list's TTL restarts with every append).
        sealed = [self._sealer.seal(key, value, ttl) for value in values]
        try:
            # MULTI/EXEC: RPUSH is atomic, so appends from every pod are kept; LTRIM drops the
            # oldest beyond the cap.
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(name, *sealed)
            pipe.ltrim(name, -max_items, -1)
            pipe.pexpire(name, max(1, int(ttl * 1000)))
            pipe.execute()
        except redis.RedisError as exc:
            self.stats.error(key, "write-error")
            log.warning("cache list append dropped: %s", type(exc).__name__)

    def items(self, key: str, *, max_items: int) -> list[bytes]:
        if max_items <= 0:
            return []
        try:
            # The newest `max_items` only, whatever a Redis writer may have grown the list to.
            raw = self._client.lrange(self._prefix + key, -max_items, -1)
        except redis.RedisError as exc:
            self.stats.error(key, "read-error")
            log.warning("cache list read failed, treating as empty: %s", type(exc).__name__)
            self.stats.record(key, False)
            return []
        kept: list[bytes] = []
        rejected = False
        for item in raw:
            value = self._sealer.open(key, item) if isinstance(item, bytes) else None
            if value is not None:
                kept.append(value)
            elif not (isinstance(item, bytes) and self._sealer.expired(item)):
                rejected = True
        if rejected:
            self._rejected(key)
        self.stats.record(key, bool(kept))
        return kept

    def healthy(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False


def make_cache(
    redis_url: str | None,
    *,
    secret: bytes,
    namespace: str = "",
    max_value_bytes: int = MAX_VALUE_BYTES,
) -> Cache:
    """Redis when a URL is configured (values sealed with `secret`, kept under
    `sigverify:<namespace>:`, counters under `sigverify:`), the in-process LRU otherwise; no
    value over `max_value_bytes` either way."""
    if redis_url:
        prefix = f"sigverify:{namespace}:" if namespace else "sigverify:"
        return RedisCache(
            redis_url,
            secret=secret,
            prefix=prefix,
            counter_prefix="sigverify:",
            max_value_bytes=max_value_bytes,
        )
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
