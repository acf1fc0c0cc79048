"""A read-only client of the Rekor v1 REST API: log entries by index or uuid, and search by hash.

It returns Rekor's own JSON (`{uuid: {body, integratedTime, logID, logIndex, verification}}`)
for `service.core` to parse and verify; it trusts none of it. It only checks that an answer is
the answer to the question asked, so that neither a cache nor a log can hand back another entry:

1. the answer is a JSON object with exactly one entry;
2. its uuid is the RFC 6962 leaf hash of its body, `sha256(0x00 || base64decode(body))`
   (an 80-hex entry id is a 16-hex tree id followed by that hash);
3. its `logIndex` is the index asked for, and its uuid the uuid asked for.

Caching (keys under `rekor:`, `<origin>` is the log's host and path):

- `rekor:idx:<origin>:<n>` and `rekor:uuid:<origin>:<leaf hash>`: the entry, for `entry_ttl`
  when it carries an inclusion proof (entries are immutable), `unproven_ttl` when it does not;
- the key asked: "not found" (a 404) for `miss_ttl`;
- `rekor:search:<origin>:<sha256 hex>`: the uuids, for `search_ttl` (`miss_ttl` when none).

Errors are never cached. Every cached value is checked again when read, like an answer from the
log, and refetched when it fails. Identical concurrent lookups go out once.

Resilience (the outbound kernel, `service.outbound`): every request has a timeout over the whole
exchange and ends by the request's deadline; connect errors, timeouts, 5xx and 429 are retried
with exponential backoff and jitter, a `Retry-After` counting up to `max_backoff` (4xx are not);
a circuit breaker sheds load while the log is down.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from service.cache import Cache, SingleFlight
from service.outbound import (
    BreakerState,
    CircuitBreaker,
    CircuitOpen,
    HttpKernel,
    KernelConfig,
    ProtocolFailure,
    ResponseTooLarge,
    RetryPolicy,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from service.tlog.errors import TlogError, TlogProtocolError, TlogTimeout, TlogUnavailable

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
ENTRY_TTL = 30 * DAY
SEARCH_TTL = 60.0
MISS_TTL = 5.0
UNPROVEN_TTL = 60.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_BATCH = 10  # Rekor answers at most this many uuids per /log/entries/retrieve call
HOST_CONNECTIONS = 16  # exchanges with the log in flight at once, per worker
RETRY_STATUSES = frozenset({429, *range(500, 600)})
USER_AGENT = "sigverify-rekor-client/1"

_ENTRY_ID = re.compile(r"(?:[0-9a-f]{16})?[0-9a-f]{64}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MISS = b"!not-found"  # not JSON, so it cannot be mistaken for an entry
_T = TypeVar("_T")


@dataclass
class RekorStats:
    """What the client did, for metrics. `requests` counts HTTP attempts, retries included."""

    requests: int = 0
    retries: int = 0
    hits: int = 0
    misses: int = 0
    not_found: int = 0
    errors: int = 0
    rejected: int = 0  # cached values that failed their checks and were refetched
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "hits": self.hits,
                "misses": self.misses,
                "not_found": self.not_found,
                "errors": self.errors,
                "rejected": self.rejected,
            }


@dataclass(frozen=True)
class CheckedEntry:
    """A Rekor answer that passed the client's checks (not a verified entry)."""

    entry_id: str  # the key Rekor used: 64 or 80 lowercase hex
    leaf_hash: str  # the 64-hex RFC 6962 leaf hash of the body
    log_index: int
    has_proof: bool
    document: dict[str, Any]  # Rekor's JSON object, `{entry_id: {...}}`


def normalise_uuid(uuid: str) -> str:
    """A Rekor uuid (64 hex) or entry id (80 hex), lowercased; ValueError otherwise."""
    if isinstance(uuid, str):
        lowered = uuid.strip().lower()
        if _ENTRY_ID.fullmatch(lowered):
            return lowered
    raise ValueError(f"rekor uuid: expected 64 or 80 hex digits, got {uuid!r:.100}")


def normalise_sha256(digest: str) -> str:
    """A sha256 digest as 64 lowercase hex, with or without a `sha256:` prefix."""
    if isinstance(digest, str):
        lowered = digest.strip().lower().removeprefix("sha256:")
        if _SHA256.fullmatch(lowered):
            return lowered
    raise ValueError(f"sha256 digest: expected 64 hex digits, got {digest!r:.100}")


def _check_log_index(log_index: int) -> int:
    if isinstance(log_index, bool) or not isinstance(log_index, int) or log_index < 0:
        raise ValueError(f"log index: expected an integer >= 0, got {log_index!r:.100}")
    return log_index


def check_entry(
    document: object, *, log_index: int | None = None, uuid: str | None = None
) -> CheckedEntry:
    """Check that `document` is one Rekor log entry, and the one asked for (see module doc)."""
    # (1): exactly one entry, keyed by an entry id
    if not isinstance(document, dict):
        raise TlogProtocolError(
            f"log entry: expected a JSON object, got {type(document).__name__}", reason="shape"
        )
    if len(document) != 1:
        raise TlogProtocolError(
            f"log entry: expected exactly one entry, got {len(document)}", reason="shape"
        )
    ((key, value),) = document.items()
    entry_id = key.lower() if isinstance(key, str) else ""
    if not _ENTRY_ID.fullmatch(entry_id):
        raise TlogProtocolError(
            f"log entry: uuid {key!r:.100} is not 64 or 80 hex digits", reason="shape"
        )
    if not isinstance(value, dict):
        raise TlogProtocolError(
            f"log entry: expected an object under the uuid, got {type(value).__name__}",
            reason="shape",
        )
    # (2): the uuid is the leaf hash of the body
    body = value.get("body")
    if not isinstance(body, str):
        raise TlogProtocolError("log entry: body is missing or not a string", reason="shape")
    try:
        canonical = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise TlogProtocolError("log entry: body is not base64", reason="shape") from None
    leaf_hash = hashlib.sha256(b"\x00" + canonical).hexdigest()
    if entry_id[-64:] != leaf_hash:
        raise TlogProtocolError(
            f"log entry: uuid {entry_id} is not the leaf hash of its body ({leaf_hash})",
            reason="mismatch",
        )
    # (3): the fields the core needs are there, and it is the entry asked for
    index = value.get("logIndex")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise TlogProtocolError(
            f"log entry: logIndex {index!r:.40} is not an integer >= 0", reason="shape"
        )
    integrated = value.get("integratedTime")
    if isinstance(integrated, bool) or not isinstance(integrated, int):
        raise TlogProtocolError(
            f"log entry: integratedTime {integrated!r:.40} is not an integer", reason="shape"
        )
    if not isinstance(value.get("logID"), str):
        raise TlogProtocolError("log entry: logID is missing or not a string", reason="shape")
    if log_index is not None and index != log_index:
        raise TlogProtocolError(
            f"log entry: logIndex {index}, expected {log_index}", reason="mismatch"
        )
    if uuid is not None:
        asked = normalise_uuid(uuid)
        both_ids = len(asked) == len(entry_id) == 80
        if asked[-64:] != leaf_hash or (both_ids and asked != entry_id):
            raise TlogProtocolError(
                f"log entry: uuid {entry_id}, expected {asked}", reason="mismatch"
            )
    verification = value.get("verification")
    if verification is not None and not isinstance(verification, dict):
        raise TlogProtocolError("log entry: verification is not an object", reason="shape")
    proof = (verification or {}).get("inclusionProof")
    has_proof = (
        isinstance(proof, dict)
        and isinstance(proof.get("hashes"), list)
        and isinstance(proof.get("checkpoint"), str)
        and "rootHash" in proof
        and "treeSize" in proof
    )
    return CheckedEntry(entry_id, leaf_hash, index, has_proof, document)


def _loads(raw: bytes, what: str) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise TlogProtocolError(f"{what}: not JSON", reason="shape") from None


def _check_uuid_list(document: object) -> list[str]:
    if not isinstance(document, list):
        raise TlogProtocolError(
            f"search: expected a JSON array, got {type(document).__name__}", reason="shape"
        )
    uuids: list[str] = []
    for item in document:
        if not isinstance(item, str) or not _ENTRY_ID.fullmatch(item.lower()):
            raise TlogProtocolError(
                f"search: {item!r:.100} is not a 64 or 80 hex uuid", reason="shape"
            )
        uuids.append(item.lower())
    return uuids


def log_origin(base_url: str) -> str:
    """The part of a log's URL that names it in cache keys: host, port and path."""
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"rekor url: expected http(s)://host[:port][/path], got {base_url!r}")
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.host.lower()}{port}{url.path.rstrip('/')}"


class RekorClient:
    """Looks entries up in one Rekor v1 log, through the cache. Thread-safe; one per worker.

    HTTP goes through the outbound kernel (`service.outbound`), whose client is created on
    first use (after gunicorn forks) and again if the process was forked since. `breaker=None`
    gives a default breaker (5 failures, 30 s cool-down) on `clock`; it is the kernel's breaker
    for the log's host. `sleep=None` waits between retries in a way that ends when the request
    is answered.
    """

    def __init__(
        self,
        base_url: str,
        cache: Cache,
        *,
        timeout: float = 3.0,
        retries: int = 2,
        backoff: float = 0.1,
        max_backoff: float = 2.0,
        breaker: CircuitBreaker | None = None,
        entry_ttl: float = ENTRY_TTL,
        search_ttl: float = SEARCH_TTL,
        miss_ttl: float = MISS_TTL,
        unproven_ttl: float = UNPROVEN_TTL,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
        transport: httpx.BaseTransport | None = None,
        trust_env: bool = True,
        host_connections: int = HOST_CONNECTIONS,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if retries < 0:
            raise ValueError(f"retries must not be negative, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.origin = log_origin(base_url)
        self.cache = cache
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=clock)
        self.entry_ttl = entry_ttl
        self.search_ttl = search_ttl
        self.miss_ttl = miss_ttl
        self.unproven_ttl = unproven_ttl
        self.max_response_bytes = max_response_bytes
        self.stats = RekorStats()
        self._flight = SingleFlight()
        self._kernel = HttpKernel(
            KernelConfig(
                timeout=timeout,
                host_connections=host_connections,
                retry=RetryPolicy(
                    retries=retries,
                    backoff=backoff,
                    max_backoff=max_backoff,
                    statuses=RETRY_STATUSES,
                    timeouts=True,
                    retry_after_cap=max_backoff,
                ),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                trust_env=trust_env,
            ),
            transport=None if transport is None else (lambda: transport),
            breaker=lambda _host: self.breaker,
            observe=self._observe,
            clock=clock,
            sleep=sleep,
            jitter=jitter,
        )

    # -- public lookups ---------------------------------------------------------------------

    @property
    def breaker_state(self) -> BreakerState:
        return self.breaker.state

    def entry_by_log_index(self, log_index: int) -> dict[str, Any] | None:
        """The entry at `log_index` with its inclusion proof, or None when the log has none."""
        index = _check_log_index(log_index)
        return self._counted(
            lambda: self._entry(
                self._idx_key(index),
                path="/api/v1/log/entries",
                params={"logIndex": str(index)},
                log_index=index,
                uuid=None,
            )
        )

    def entry_by_uuid(self, uuid: str) -> dict[str, Any] | None:
        """The entry with this uuid (64 hex) or entry id (80 hex), or None when absent."""
        asked = normalise_uuid(uuid)
        return self._counted(
            lambda: self._entry(
                self._uuid_key(asked[-64:]),
                path=f"/api/v1/log/entries/{asked}",
                params=None,
                log_index=None,
                uuid=asked,
            )
        )

    def search_by_hash(self, sha256_hex: str) -> list[str]:
        """The uuids (or entry ids) of entries for an artifact sha256, as the log lists them."""
        digest = normalise_sha256(sha256_hex)
        return self._counted(lambda: self._search(digest))

    def entries_by_uuids(self, uuids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Several entries by uuid, in as few requests as possible; None for those absent.

        Keyed by the uuids as given. Cached entries are not asked for; absent ones are not
        cached (the batch endpoint does not say "not found" per uuid).
        """
        asked = {uuid: normalise_uuid(uuid) for uuid in uuids}
        return self._counted(lambda: self._entries(asked))

    def close(self) -> None:
        self._kernel.close()

    def __enter__(self) -> RekorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups through the cache ----------------------------------------------------------

    def _idx_key(self, log_index: int) -> str:
        return f"rekor:idx:{self.origin}:{log_index}"

    def _uuid_key(self, leaf_hash: str) -> str:
        return f"rekor:uuid:{self.origin}:{leaf_hash}"

    def _counted(self, lookup: Callable[[], _T]) -> _T:
        try:
            return lookup()
        except TlogError as exc:
            self.stats.add("errors")
            log.warning("rekor lookup at %s failed (%s): %s", self.origin, exc.reason, exc)
            raise

    def _cached_entry(
        self, key: str, *, log_index: int | None, uuid: str | None
    ) -> tuple[bool, dict[str, Any] | None]:
        """(found, entry) from the cache; a value that fails its checks counts as absent."""
        raw = self.cache.get(key)
        if raw is None:
            return False, None
        if raw == _MISS:
            return True, None
        try:
            checked = check_entry(_loads(raw, "cached log entry"), log_index=log_index, uuid=uuid)
        except TlogProtocolError as exc:
            self.stats.add("rejected")
            log.warning("rejected cached rekor entry under %s: %s", key, exc)
            return False, None
        return True, checked.document

    def _entry(
        self,
        key: str,
        *,
        path: str,
        params: dict[str, str] | None,
        log_index: int | None,
        uuid: str | None,
    ) -> dict[str, Any] | None:
        found, entry = self._cached_entry(key, log_index=log_index, uuid=uuid)
        if found:
            self.stats.add("hits")
            return entry
        self.stats.add("misses")

        def fetch() -> bytes | None:
            status, raw = self._request("GET", path, params=params)
            if status == 404:
                self.stats.add("not_found")
                self.cache.set(key, _MISS, self.miss_ttl)
                return None
            if status != 200:
                raise TlogProtocolError(
                    f"log entry: rekor answered {status} to GET {path}", reason=f"http_{status}"
                )
            checked = check_entry(_loads(raw, "log entry"), log_index=log_index, uuid=uuid)
            self._store(checked, raw)
            return raw

        raw = self._flight.do(f"{key}|{uuid or ''}", fetch)
        if raw is None:
            return None
        # each caller gets its own copy, checked against its own question
        return check_entry(_loads(raw, "log entry"), log_index=log_index, uuid=uuid).document

    def _store(self, checked: CheckedEntry, raw: bytes) -> None:
        ttl = self.entry_ttl if checked.has_proof else self.unproven_ttl
        self.cache.set(self._idx_key(checked.log_index), raw, ttl)
        self.cache.set(self._uuid_key(checked.leaf_hash), raw, ttl)

    def _search(self, digest: str) -> list[str]:
        key = f"rekor:search:{self.origin}:{digest}"
        raw = self.cache.get(key)
        if raw is not None:
            try:
                uuids = _check_uuid_list(_loads(raw, "cached search"))
            except TlogProtocolError as exc:
                self.stats.add("rejected")
                log.warning("rejected cached rekor search under %s: %s", key, exc)
            else:
                self.stats.add("hits")
                return uuids
        self.stats.add("misses")

        def fetch() -> bytes:
            path = "/api/v1/index/retrieve"
            status, body = self._request("POST", path, payload={"hash": f"sha256:{digest}"})
            if status != 200:
                raise TlogProtocolError(
                    f"search: rekor answered {status} to POST {path}", reason=f"http_{status}"
                )
            uuids = _check_uuid_list(_loads(body, "search"))
            self.cache.set(key, body, self.search_ttl if uuids else self.miss_ttl)
            return body

        body = self._flight.do(key, fetch)
        assert body is not None  # fetch never returns None
        return _check_uuid_list(_loads(body, "search"))

    def _entries(self, asked: dict[str, str]) -> dict[str, dict[str, Any] | None]:
        result: dict[str, dict[str, Any] | None] = {}
        wanted: dict[str, list[str]] = {}  # leaf hash -> the uuids given for it
        for given, uuid in asked.items():
            found, entry = self._cached_entry(self._uuid_key(uuid[-64:]), log_index=None, uuid=uuid)
            if found and entry is not None:
                self.stats.add("hits")
                result[given] = entry
            else:
                self.stats.add("misses")
                wanted.setdefault(uuid[-64:], []).append(given)
        leaves = list(wanted)
        path = "/api/v1/log/entries/retrieve"
        for start in range(0, len(leaves), MAX_BATCH):
            batch = leaves[start : start + MAX_BATCH]
            status, body = self._request("POST", path, payload={"entryUUIDs": batch})
            if status == 404:
                continue
            if status != 200:
                raise TlogProtocolError(
                    f"entries: rekor answered {status} to POST {path}", reason=f"http_{status}"
                )
            document = _loads(body, "entries")
            if not isinstance(document, list):
                raise TlogProtocolError(
                    f"entries: expected a JSON array, got {type(document).__name__}",
                    reason="shape",
                )
            for item in document:
                checked = check_entry(item)
                if checked.leaf_hash not in batch:
                    raise TlogProtocolError(
                        f"entries: rekor answered uuid {checked.entry_id}, not one asked for",
                        reason="mismatch",
                    )
                raw = json.dumps(item, separators=(",", ":")).encode()
                self._store(checked, raw)
                for given in wanted[checked.leaf_hash]:
                    copy = _loads(raw, "entries")  # each uuid given gets its own copy
                    result[given] = check_entry(copy, uuid=asked[given]).document
        return {given: result.get(given) for given in asked}

    # -- HTTP, through the outbound kernel ----------------------------------------------------

    def _observe(self, event: str, _host: str) -> None:
        self.stats.add("requests" if event == "request" else "retries")

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        payload: object = None,
    ) -> tuple[int, bytes]:
        """(status, body) of the first answer that is not an outage; TlogUnavailable if none.

        The kernel retries, backs off and keeps the breaker; this maps what it says. A request
        whose own deadline passed raises the kernel's `DeadlineExceeded`, which is not an
        outage of the log and is never turned into one."""
        try:
            answer = self._kernel.exchange(
                method,
                self.base_url + path,
                params=params,
                json=payload,
                limit=self.max_response_bytes,
            )
        except CircuitOpen:
            raise TlogUnavailable(
                f"rekor at {self.origin} is failing; circuit breaker open, not asking",
                reason="breaker_open",
            ) from None
        except UpstreamTimeout as exc:
            raise TlogTimeout(
                f"rekor at {self.origin} did not answer within {self.timeout}s ({exc.cause})",
                reason="timeout",
            ) from None
        except UpstreamUnreachable as exc:
            raise TlogUnavailable(
                f"rekor at {self.origin} unreachable: {exc.cause}: {exc.detail}",
                reason="connect",
            ) from None
        except (ResponseTooLarge, ProtocolFailure) as exc:
            raise TlogProtocolError(
                f"rekor at {self.origin}: unreadable answer to {method} {path}: {exc}",
                reason="shape",
            ) from None
        if answer.status >= 500 or answer.status == 429:
            raise TlogUnavailable(
                f"rekor at {self.origin} answered {answer.status} to {method} {path}",
                reason=f"http_{answer.status}",
            )
        return answer.status, answer.data
