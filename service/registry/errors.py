"""What can go wrong when talking to an OCI registry. One root, `RegistryError`.

| exception | meaning | the service answers |
|---|---|---|
| `InvalidReference` | the image reference does not parse | 400 |
| `NotFound` | the manifest, tag or blob is absent | 404 |
| `Unauthorized` | credentials missing or refused (401/403) | 401/403-ish 4xx |
| `Unavailable` | 5xx, 429, connection refused, DNS failure | 502 |
| `RegistryTimeout` | an `Unavailable` that timed out | 504 |
| `RegistryCircuitOpen` | an `Unavailable` not asked: the host's circuit breaker is open | 503 |
| `LimitExceeded` | a manifest, blob or signature count above its cap | 4xx |
| `DigestMismatch` | bytes that do not hash to the digest they were fetched by | 502 |
| `InvalidManifest` | a manifest that is not JSON or of an unsupported media type | 502 |
| `AddressRefused` | the outbound-address guard refused the host, address or scheme | 4xx |

Every error has `reason`, a short machine label for metrics.
"""

from __future__ import annotations


class RegistryError(Exception):
    """A registry operation failed; `reason` is a short label for metrics."""

    reason = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class InvalidReference(RegistryError):  # noqa: N818 - reads as what it is
    """An image reference that does not parse; the message names the part that is wrong."""

    reason = "invalid-reference"


class NotFound(RegistryError):  # noqa: N818
    """The manifest, tag, repository or blob does not exist."""

    reason = "not-found"


class Unauthorized(RegistryError):  # noqa: N818
    """The registry refused access (401 after authenticating, or 403)."""

    reason = "unauthorized"


class Unavailable(RegistryError):  # noqa: N818
    """The registry could not be reached or failed (5xx, 429, refused, DNS)."""

    reason = "unavailable"

    @property
    def timeout(self) -> bool:
        return False


class RegistryTimeout(Unavailable):
    """The registry did not answer in time."""

    reason = "timeout"

    @property
    def timeout(self) -> bool:
        return True


class RegistryCircuitOpen(Unavailable):
    """The registry host failed again and again; its circuit breaker is open, so it is not
    asked until `retry_in` seconds have passed (then one request probes it)."""

    reason = "circuit-open"

    def __init__(self, message: str, *, host: str, retry_in: float) -> None:
        super().__init__(message)
        self.host = host
        self.retry_in = retry_in


class LimitExceeded(RegistryError):  # noqa: N818
    """A manifest, blob or number of signatures is above its configured cap."""

    reason = "limit-exceeded"


class DigestMismatch(RegistryError):  # noqa: N818
    """Content did not hash to the digest it was asked for (or the registry claimed)."""

    reason = "digest-mismatch"


class InvalidManifest(RegistryError):  # noqa: N818
    """A manifest that is not a JSON object, or of a media type this client does not read."""

    reason = "invalid-manifest"


class AddressRefused(RegistryError):  # noqa: N818
    """The outbound-address guard refused a host, a resolved address or a scheme."""

    reason = "address-refused"
