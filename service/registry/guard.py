"""The outbound-address guard: which hosts, addresses and schemes the client may reach.

Image references are user input that make the service open connections, so every connection
(registry, token realm, redirect target) is decided here, after name resolution, and then made
to the very address that was decided on (see `transport.py`): there is no second lookup that a
DNS-rebinding answer could change.

`check_host` is pure apart from the resolver it is given:

1. the host must pass the deny-list, then the allow-list if one is set (`host` or `host:port`
   patterns; `*.example.com` matches subdomains);
2. numeric hosts are never resolved: an IPv4 address must be written in dotted-decimal form
   without leading zeros (`127.0.0.1`); any other all-numeric spelling (`2130706433`,
   `127.1`, `0x7f.1`, `0177.0.0.1`, `127.000.000.001`) is refused, because parsers disagree
   on what it means (`inet_aton` reads `0177` as octal, others as decimal, Go and httpx refuse
   it) and the address checked must be the one every party connects to. IPv6 literals are
   read as the address they spell, in any of their forms;
3. names are resolved, and the answer is refused if ANY address is unspecified, link-local
   (169.254.0.0/16 holds cloud metadata; always refused), multicast, reserved or otherwise not
   global, loopback (unless `allow_loopback`), or private (RFC 1918, 100.64/10, ULA, site-local;
   unless `allow_private`). IPv4-mapped, IPv4-compatible, NAT64, 6to4 and Teredo IPv6 addresses
   are judged by the IPv4 address they carry as well.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from service.registry.errors import AddressRefused, Unavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[IPAddress]]

_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "fc00::/7",  # unique local
        "fec0::/10",  # deprecated site-local
    )
)
_LINK_LOCAL = tuple(ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NUMERIC_LABEL_RE = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+", re.ASCII)


@dataclass(frozen=True)
class AddressPolicy:
    """Where the client may connect. Patterns are `host` or `host:port` (`[v6]:port`)."""

    allow_registries: tuple[str, ...] = ()
    deny_registries: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False


def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `getaddrinfo` gives for `host`, in its order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unavailable(f"cannot resolve {host!r}: {exc}") from None
    out: list[IPAddress] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        addr = ipaddress.ip_address(text)
        if addr not in out:
            out.append(addr)
    return out


def is_numeric_host(host: str) -> bool:
    """Whether `host` is all numeric labels (`127.1`, `0x7f.1`, `2130706433`), which resolvers
    would read as an IPv4 address rather than look up."""
    labels = host.split(".")
    return all(_NUMERIC_LABEL_RE.fullmatch(label) for label in labels)


def non_canonical_ipv4(host: str) -> str | None:
    """Why the numeric host `host` is not a canonical dotted-decimal IPv4 address, or None.

    Only `a.b.c.d` in decimal without leading zeros is canonical: every parser reads it the
    same way. Other spellings are read as `inet_aton` does (octal for a leading 0, hex for 0x,
    fewer parts filling the last) by some, as decimal or not at all by others."""
    try:
        ipaddress.IPv4Address(host)  # strict: four decimal parts, no leading zeros
    except ValueError:
        pass
    else:
        return None
    try:
        reading = f"inet_aton reads this one as {_inet_aton(host.split('.'))}, others differ"
    except ValueError:
        reading = "this one is no IPv4 address"
    return (
        "a numeric host must be an IPv4 address written a.b.c.d in decimal without leading "
        f"zeros ({reading})"
    )


def parse_numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host spells (as `inet_aton` and IPv6 literals read), else None.

    Raises `AddressRefused` for something that is all numeric labels but no valid address
    (`999.1.1.1`): resolvers disagree on such names, so none is trusted with them.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            raise AddressRefused(f"host {host!r} is not a valid IPv6 address") from None
    if not is_numeric_host(text):
        return None
    try:
        return _inet_aton(text.split("."))
    except ValueError:
        raise AddressRefused(f"host {host!r} is numeric but not a valid IPv4 address") from None


def _inet_aton(labels: list[str]) -> ipaddress.IPv4Address:
    """`a`, `a.b`, `a.b.c`, `a.b.c.d`, each decimal, octal (leading 0) or hex (0x)."""
    if not 1 <= len(labels) <= 4:
        raise ValueError("too many parts")
    numbers: list[int] = []
    for label in labels:
        if label[:2].lower() == "0x":
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label, 10))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 1 << (8 * (5 - len(numbers))):
        raise ValueError("part out of range")
    value = 0
    for n in head:
        value = value << 8 | n
    value = value << (8 * (5 - len(numbers))) | last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """IPv4 addresses an IPv6 address carries, with the name of the form."""
    out: list[tuple[str, ipaddress.IPv4Address]] = []
    if addr.ipv4_mapped is not None:
        out.append(("ipv4-mapped", addr.ipv4_mapped))
    elif int(addr) >> 32 == 0 and int(addr) > 1:
        out.append(("ipv4-compatible", ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)))
    if addr in _NAT64:
        out.append(("nat64", ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)))
    if addr.sixtofour is not None:
        out.append(("6to4", addr.sixtofour))
    if addr.teredo is not None:
        server, client = addr.teredo
        out.extend((("teredo server", server), ("teredo client", client)))
    return out


def refusal(addr: IPAddress, policy: AddressPolicy) -> str | None:
    """Why `addr` may not be connected to under `policy`, or None if it may."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        for form, inner in embedded:
            reason = refusal(inner, policy)
            if reason is not None:
                return f"{form} form of {inner}, {reason}"
        if embedded and embedded[0][0] in {"ipv4-mapped", "ipv4-compatible", "nat64"}:
            return None  # the IPv4 address it stands for was allowed
    if addr.is_unspecified:
        return "unspecified address"
    if addr.is_loopback:
        return None if policy.allow_loopback else "loopback address"
    if any(addr in net for net in _LINK_LOCAL):
        return "link-local address (cloud metadata services live here)"
    if addr.is_multicast:
        return "multicast address"
    if any(addr in net for net in _PRIVATE):
        return None if policy.allow_private else "private address"
    if not addr.is_global:
        return "reserved or non-global address"
    return None


def _split_pattern(pattern: str) -> tuple[str, int | None]:
    pattern = pattern.strip().lower()
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif pattern.count(":") == 1:
        host, _, port_text = pattern.partition(":")
    else:
        host, port_text = pattern, ""
    return host.rstrip("."), int(port_text) if port_text.isdigit() else None


def _ip_literal(host: str) -> IPAddress | None:
    """The address `host` is when it is a canonical IPv4 or any IPv6 literal, else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _reaches(addr: IPAddress, *, embedded: bool) -> set[IPAddress]:
    """`addr` and the IPv4 address it stands for (IPv4-mapped); with `embedded`, also every
    IPv4 address it carries (IPv4-compatible, NAT64, 6to4, Teredo)."""
    out: set[IPAddress] = {addr}
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            out.add(addr.ipv4_mapped)
        if embedded:
            out.update(inner for _form, inner in _embedded_ipv4(addr))
    return out


def host_matches(host: str, port: int, patterns: Iterable[str], *, embedded: bool = False) -> bool:
    """Whether `host:port` matches any `host`, `host:port`, `*.domain` or `[v6]:port` pattern.

    Addresses are compared as addresses, whatever their spelling (`[::ffff:127.0.0.1]` is
    `127.0.0.1`, `[::0:1]` is `[::1]`); with `embedded` (the deny-list), an IPv6 address
    also matches a pattern naming an IPv4 address it carries (NAT64, 6to4, ...)."""
    name = host.strip("[]").lower().rstrip(".")
    addr = _ip_literal(name)
    reached = _reaches(addr, embedded=embedded) if addr is not None else set()
    for pattern in patterns:
        p_host, p_port = _split_pattern(pattern)
        if p_port is not None and p_port != port:
            continue
        if p_host.startswith("*."):
            if name.endswith(p_host[1:]) and len(name) > len(p_host) - 1:
                return True
        elif name == p_host or (addr is not None and _ip_literal(p_host) in reached):
            return True
    return False


def check_host(
    host: str, port: int, policy: AddressPolicy, resolve: Resolver = system_resolve
) -> list[IPAddress]:
    """The addresses `host:port` may be reached at, or `AddressRefused` saying why not.

    The caller must connect to one of the returned addresses, never to `host` again.
    """
    shown = f"{host}:{port}"
    # (1): names first: the deny-list wins, then the allow-list if one is set.
    if host_matches(host, port, policy.deny_registries, embedded=True):
        raise AddressRefused(f"{shown} is on the registry deny-list")
    if policy.allow_registries and not host_matches(host, port, policy.allow_registries):
        raise AddressRefused(f"{shown} is not on the registry allow-list")
    # (2): numeric hosts are what they spell, whatever a resolver would say; an IPv4 address
    # spelt any other way than dotted-decimal means different addresses to different parsers.
    bare = host.rstrip(".")
    if is_numeric_host(bare):
        why = non_canonical_ipv4(bare)
        if why is not None:
            raise AddressRefused(f"{shown}: {why}")
    numeric = parse_numeric_host(bare)
    addresses = [numeric] if numeric is not None else list(resolve(bare, port))
    if not addresses:
        raise Unavailable(f"{host!r} resolved to no address")
    # (3): one bad address refuses the host: a rebinding answer may mix good and bad. A name's
    # address is not shown: the answer must not map internal names for the caller.
    for addr in addresses:
        reason = refusal(addr, policy)
        if reason is not None:
            if numeric is not None:
                raise AddressRefused(f"{shown} is a {reason}, which is refused")
            raise AddressRefused(f"{shown} resolves to a {reason}, which is refused")
    return addresses


def check_scheme(scheme: str, host: str, port: int, insecure: Iterable[str]) -> None:
    """Only https, and http for registries explicitly listed as insecure."""
    if scheme == "https":
        return
    if scheme == "http" and host_matches(host, port, insecure):
        return
    if scheme == "http":
        raise AddressRefused(f"plain http to {host}:{port} is refused (not an insecure registry)")
    raise AddressRefused(f"scheme {scheme!r} is refused: only http and https")
