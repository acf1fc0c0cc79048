"""Image references, parsed and normalised as Docker does (distribution/reference).

Grammar (distribution's `reference` package; the comments there are the spec):

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [ domain "/" ] path-component { "/" path-component }
    domain     := host [ ":" port ]
    host       := domain-name | IPv4 | "[" IPv6 "]"
    path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest     := "sha256:" 64 lowercase hex | "sha512:" 128 lowercase hex

Stricter than Docker where Docker's leniency would make the service verify one thing and a
client pull another:

- A host of numeric labels only must be an IPv4 address in dotted-decimal form without
  leading zeros. `127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.000.000.001` match
  Docker's domain-name rule, but parsers read them differently (`inet_aton` as 127.0.0.1,
  Go's and httpx's not as an address at all, so a resolver with search domains may find a
  name), so the registry verified would not be the one pulled from.
- Domain-name labels are at most 63 characters (RFC 1035): longer ones cannot be resolved.
- An image's digest is sha256: signatures, attestations and the signed verdict name images by
  sha256 (as cosign does), so `image@sha512:...` could never verify. Content digests inside
  manifests (`check_digest`) may still be sha512.

Normalisation: the first component is a registry only if it contains "." or ":", is
"localhost", or has an uppercase letter (Docker's rule); otherwise the image is on Docker Hub,
which is spelled `index.docker.io` (as go-containerregistry and cosign do) and whose one-component
names live under `library/`. With neither tag nor digest the tag is `latest`; with both, the
digest is what gets fetched and the tag is kept only for display.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from service.registry.errors import InvalidReference
from service.registry.guard import is_numeric_host, non_canonical_ipv4

DOCKER_HUB = "index.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io"})
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255
MAX_REFERENCE_LENGTH = 1024
MAX_LABEL_LENGTH = 63

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME_RE = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*", re.ASCII)
_IPV6_RE = re.compile(r"\[([a-fA-F0-9:.]+)\]", re.ASCII)
_PORT_RE = re.compile(r"[0-9]+", re.ASCII)
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_RE = {
    "sha256": re.compile(r"[a-f0-9]{64}", re.ASCII),
    "sha512": re.compile(r"[a-f0-9]{128}", re.ASCII),
}
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)


def check_digest(digest: str) -> str:
    """`digest` if it is `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase); else raise."""
    algorithm, sep, encoded = digest.partition(":")
    pattern = _DIGEST_RE.get(algorithm)
    if not sep or pattern is None:
        raise InvalidReference(
            f"invalid digest {digest[:80]!r}: expected sha256:<64 hex> or sha512:<128 hex>"
        )
    if not pattern.fullmatch(encoded):
        size = 64 if algorithm == "sha256" else 128
        raise InvalidReference(
            f"invalid digest {digest[:80]!r}: expected {size} lowercase hex characters"
        )
    return digest


@dataclass(frozen=True)
class ImageReference:
    """A normalised image reference; build one with `parse_reference`.

    `tag` is None when only a digest was given; `digest`, when set, is what gets fetched.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """`registry/repository`, e.g. `index.docker.io/library/nginx`."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What to ask the registry for: the digest if there is one, else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag or DEFAULT_TAG

    @property
    def canonical(self) -> str:
        """The full normalised reference, e.g. `index.docker.io/library/nginx:latest`."""
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_digest(self, digest: str) -> ImageReference:
        """The same reference pinned to `digest` (the tag, if any, is kept for display)."""
        return replace(self, digest=check_digest(digest))

    def __str__(self) -> str:
        return self.canonical


def _split_domain(name: str) -> tuple[str | None, str]:
    """Docker's rule: the first component is a registry if it looks like a host."""
    first, sep, rest = name.partition("/")
    if not sep:
        return None, name
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, rest
    return None, name


def _normalise_domain(domain: str) -> str:
    """Validate `host[:port]` (IPv6 in brackets) and return it with the host lowercased."""
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            raise InvalidReference(f"invalid registry {domain!r}: unclosed '[' in IPv6 address")
        host, rest = domain[: end + 1], domain[end + 1 :]
        match = _IPV6_RE.fullmatch(host)
        try:
            if match is None:
                raise ValueError(host)
            ipaddress.IPv6Address(match.group(1))
        except ValueError:
            raise InvalidReference(
                f"invalid registry {domain!r}: not an IPv6 address in brackets"
            ) from None
        if rest and not rest.startswith(":"):
            raise InvalidReference(f"invalid registry {domain!r}: expected ':port' after ']'")
        port = rest[1:] if rest else None
    else:
        host, sep, port_text = domain.partition(":")
        port = port_text if sep else None
        if not _DOMAIN_NAME_RE.fullmatch(host):
            raise InvalidReference(
                f"invalid registry {domain!r}: host must be a domain name, IPv4 address "
                "or [IPv6] address"
            )
        why = non_canonical_ipv4(host) if is_numeric_host(host) else None
        if why is not None:
            raise InvalidReference(f"invalid registry {domain!r}: {why}")
        if any(len(label) > MAX_LABEL_LENGTH for label in host.split(".")):
            raise InvalidReference(
                f"invalid registry {domain[:80]!r}: a host name has labels of at most "
                f"{MAX_LABEL_LENGTH} characters (RFC 1035)"
            )
    if port is not None and (not _PORT_RE.fullmatch(port) or not 0 < int(port) < 65536):
        raise InvalidReference(f"invalid registry {domain!r}: port must be 1-65535")
    host = host.lower()
    if port is None and host in _HUB_ALIASES:
        return DOCKER_HUB
    return host if port is None else f"{host}:{port}"


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise an image reference, or raise `InvalidReference` saying why.

    >>> parse_reference("nginx").canonical
    'index.docker.io/library/nginx:latest'
    """
    if not isinstance(text, str) or not text:
        raise InvalidReference("invalid reference: empty")
    if len(text) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(f"invalid reference: longer than {MAX_REFERENCE_LENGTH} characters")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference("invalid reference: contains whitespace")
    if "://" in text:
        raise InvalidReference(
            "invalid reference: a URL scheme is not part of an image reference "
            "(write host/repository:tag)"
        )
    remainder, at, digest = text.partition("@")
    if at:
        if "@" in digest:
            raise InvalidReference("invalid reference: more than one '@'")
        check_digest(digest)
        if not digest.startswith("sha256:"):
            raise InvalidReference(
                f"unsupported image digest {digest[:20]}...: images are verified by their "
                "sha256 digest (signatures and verdicts name it), give @sha256:<64 hex>"
            )
    # A ':' after the last '/' starts the tag; one before it is a registry port.
    tag: str | None = None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/") and not remainder[colon:].endswith("]"):
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(
                f"invalid tag {tag[:140]!r}: expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
            )
    name = remainder
    if not name:
        raise InvalidReference("invalid reference: repository name is empty")
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(
            f"invalid reference: repository name longer than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if _IDENTIFIER_RE.fullmatch(name):
        raise InvalidReference(
            "invalid reference: a 64-character hexadecimal string is an image id, "
            "not a repository name"
        )
    domain, path = _split_domain(name)
    registry = DOCKER_HUB if domain is None else _normalise_domain(domain)
    if not path:
        raise InvalidReference(f"invalid reference {text[:80]!r}: repository path is empty")
    for component in path.split("/"):
        if _PATH_COMPONENT_RE.fullmatch(component):
            continue
        if _PATH_COMPONENT_RE.fullmatch(component.lower()):
            raise InvalidReference(
                f"invalid repository {path[:80]!r}: repository names must be lowercase"
            )
        raise InvalidReference(
            f"invalid repository {path[:80]!r}: component {component[:80]!r} must be lowercase "
            "letters and digits, separated by '.', '_', '__' or '-'"
        )
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if tag is None and not at:
        tag = DEFAULT_TAG
    return ImageReference(
        registry=registry, repository=path, tag=tag, digest=digest if at else None
    )
