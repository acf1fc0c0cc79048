"""The outbound-address guard as a pure decision (resolution stubbed), and end to end with
loopback spellings against a client configured to refuse loopback. No test here connects
anywhere but 127.0.0.1."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from service.registry import (
    AddressPolicy,
    AddressRefused,
    RegistryClient,
    RegistryConfig,
    RegistryError,
    Unavailable,
    check_host,
    parse_reference,
)
from service.registry.guard import (
    IPAddress,
    check_scheme,
    host_matches,
    parse_numeric_host,
    refusal,
)
from service.registry.transport import GuardedTransport
from tests.registry.helpers import HTTPServer, Reply, tls_pair

STRICT = AddressPolicy()
LOOPBACK_OK = AddressPolicy(allow_loopback=True)
EVERYTHING = AddressPolicy(allow_loopback=True, allow_private=True)


class StubResolver:
    """Answers from a table and records what it was asked; never touches the network."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        return [ipaddress.ip_address(a) for a in self.table[host]]


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.9.9.9", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "private"),
        ("fec0::1", "private"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - judged, not bound
        ("::", "unspecified"),
        ("0.1.2.3", "non-global"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "non-global"),
        ("255.255.255.255", "non-global"),
        ("192.0.2.1", "non-global"),
        ("198.18.0.1", "non-global"),
        ("2001:db8::1", "non-global"),
        ("::ffff:127.0.0.1", "ipv4-mapped form of 127.0.0.1, loopback"),
        ("::ffff:169.254.169.254", "ipv4-mapped form of 169.254.169.254, link-local"),
        ("::ffff:10.0.0.1", "ipv4-mapped form of 10.0.0.1, private"),
        ("::127.0.0.1", "ipv4-compatible form of 127.0.0.1, loopback"),
        ("::169.254.169.254", "ipv4-compatible form of 169.254.169.254"),
        ("64:ff9b::a9fe:a9fe", "nat64 form of 169.254.169.254, link-local"),
        ("64:ff9b::7f00:1", "nat64 form of 127.0.0.1, loopback"),
        ("2002:a9fe:a9fe::1", "6to4 form of 169.254.169.254, link-local"),
        ("2002:7f00:1::1", "6to4 form of 127.0.0.1, loopback"),
        ("2002:0a00:0001::1", "6to4 form of 10.0.0.1, private"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    found = refusal(ip(address), STRICT)
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_global_addresses_pass(address: str) -> None:
    assert refusal(ip(address), STRICT) is None


def test_flags_open_only_their_category() -> None:
    assert refusal(ip("127.0.0.1"), LOOPBACK_OK) is None
    assert refusal(ip("::ffff:127.0.0.1"), LOOPBACK_OK) is None
    assert refusal(ip("10.0.0.1"), LOOPBACK_OK) == "private address"
    assert refusal(ip("10.0.0.1"), EVERYTHING) is None
    assert refusal(ip("fd12::1"), EVERYTHING) is None
    # Metadata, unspecified and multicast stay refused whatever the flags say.
    always = ("169.254.169.254", "::ffff:169.254.169.254", "fe80::1", "0.0.0.0", "ff02::1")  # noqa: S104
    for address in always:
        assert refusal(ip(address), EVERYTHING) is not None, address


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("2852039166", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("0", "0.0.0.0"),  # noqa: S104
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
    ],
)
def test_numeric_spellings(host: str, address: str) -> None:
    assert parse_numeric_host(host) == ip(address)


@pytest.mark.parametrize("host", ["registry.test", "1e100.test", "a1.b2", "localhost"])
def test_names_are_not_numeric(host: str) -> None:
    assert parse_numeric_host(host) is None


@pytest.mark.parametrize("host", ["999.1.1.1", "256.0.0.1", "1.2.3.4.5", "1.2.3.256", "08.1"])
def test_bad_numeric_hosts_refused(host: str) -> None:
    with pytest.raises(AddressRefused, match="numeric"):
        parse_numeric_host(host)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1.", "[::ffff:127.0.0.1]", "::1", "[0:0::1]", "::ffff:7f00:1"]
)
def test_check_host_numeric_loopback_without_resolver(host: str) -> None:
    resolver = StubResolver({})
    with pytest.raises(AddressRefused, match="loopback"):
        check_host(host, 5000, STRICT, resolver)
    assert resolver.asked == []
    assert check_host(host, 5000, LOOPBACK_OK, resolver)[0] in {
        ip("127.0.0.1"),
        ip("::1"),
        ip("::ffff:127.0.0.1"),
    }
    assert resolver.asked == []


NON_CANONICAL = [
    "2130706433",
    "127.1",
    "127.0.1",
    "0x7f.1",
    "0X7F.0.0.1",
    "017700000001",
    "0177.0.0.1",
    "127.000.000.001",
    "127.0.0.01",
    "127.0.0.1.1",
    "127.0.0.256",
]


@pytest.mark.parametrize("host", NON_CANONICAL)
def test_non_canonical_ipv4_spellings_are_refused_whatever_the_policy(host: str) -> None:
    """Parsers disagree on these (inet_aton reads 0177 as octal, Go and httpx refuse it): the
    address checked would not be the one every party connects to, so none is reached."""
    resolver = StubResolver({})
    for policy in (STRICT, EVERYTHING, AddressPolicy(allow_registries=(host,))):
        with pytest.raises(AddressRefused, match=r"a\.b\.c\.d in decimal without leading zeros"):
            check_host(host, 5000, policy, resolver)
    assert resolver.asked == []


def test_addresses_match_lists_by_value_whatever_their_spelling() -> None:
    """A deny-list entry cannot be stepped around by spelling the same address another way."""
    deny = ("127.0.0.1", "[::1]:5000")
    assert host_matches("[::ffff:127.0.0.1]", 80, deny, embedded=True)
    assert host_matches("::ffff:7f00:1", 80, deny, embedded=True)
    assert host_matches("[64:ff9b::7f00:1]", 80, deny, embedded=True)  # NAT64 of 127.0.0.1
    assert host_matches("[0:0::1]", 5000, deny)
    assert not host_matches("[0:0::1]", 5001, deny)
    # The allow-list takes the address and its IPv4-mapped form, not what NAT64 carries.
    assert host_matches("[::ffff:127.0.0.1]", 80, ("127.0.0.1",))
    assert not host_matches("[64:ff9b::7f00:1]", 80, ("127.0.0.1",))
    # A non-canonical pattern is no address: it matches nothing numeric.
    assert not host_matches("127.0.0.1", 80, ("127.1",))
    for spelling in ("[::ffff:127.0.0.1]", "[64:ff9b::7f00:1]"):
        with pytest.raises(AddressRefused, match="deny-list"):
            check_host(spelling, 80, AddressPolicy(allow_loopback=True, deny_registries=deny))


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["169.254.169.254"], "link-local"),
        (["10.0.0.5"], "private"),
        (["::ffff:192.168.0.1"], "private"),
        (["fd00::5"], "private"),
        (["127.0.0.1"], "loopback"),
        # One bad address among good ones refuses the name (DNS rebinding mixes them).
        (["8.8.8.8", "169.254.169.254"], "link-local"),
        (["2606:4700:4700::1111", "::1"], "loopback"),
    ],
)
def test_check_host_resolved_names(answer: list[str], reason: str) -> None:
    resolver = StubResolver({"registry.test": answer})
    with pytest.raises(AddressRefused, match=reason) as info:
        check_host("registry.test", 443, STRICT, resolver)
    assert "registry.test:443" in str(info.value)
    assert resolver.asked == [("registry.test", 443)]


def test_check_host_returns_what_it_vetted() -> None:
    resolver = StubResolver({"registry.test": ["8.8.8.8", "2606:4700:4700::1111"]})
    assert check_host("registry.test", 443, STRICT, resolver) == [
        ip("8.8.8.8"),
        ip("2606:4700:4700::1111"),
    ]
    resolver = StubResolver({"intranet.test": ["10.0.0.5"]})
    assert check_host("intranet.test", 443, EVERYTHING, resolver) == [ip("10.0.0.5")]


def test_deny_and_allow_lists() -> None:
    resolver = StubResolver({name: ["8.8.8.8"] for name in ("a.test", "b.corp.test", "corp.test")})
    deny = AddressPolicy(deny_registries=("a.test", "*.corp.test"))
    with pytest.raises(AddressRefused, match="deny-list"):
        check_host("a.test", 443, deny, resolver)
    with pytest.raises(AddressRefused, match="deny-list"):
        check_host("B.Corp.Test", 443, deny, resolver)
    assert resolver.asked == []  # refused by name, before any lookup
    assert check_host("corp.test", 443, deny, resolver)  # *.corp.test is subdomains only
    allow = AddressPolicy(allow_registries=("a.test:5000", "*.corp.test"))
    assert check_host("a.test", 5000, allow, resolver)
    with pytest.raises(AddressRefused, match="allow-list"):
        check_host("a.test", 443, allow, resolver)
    with pytest.raises(AddressRefused, match="allow-list"):
        check_host("corp.test", 443, allow, resolver)
    assert check_host("b.corp.test", 443, allow, resolver)
    both = AddressPolicy(allow_registries=("a.test",), deny_registries=("a.test",))
    with pytest.raises(AddressRefused, match="deny-list"):
        check_host("a.test", 443, both, resolver)
    # The allow-list names hosts; it does not open address categories.
    resolver.table["internal.test"] = ["10.0.0.1"]
    with pytest.raises(AddressRefused, match="private"):
        check_host(
            "internal.test", 443, AddressPolicy(allow_registries=("internal.test",)), resolver
        )
    v6 = AddressPolicy(deny_registries=("[::1]:5000",))
    with pytest.raises(AddressRefused, match="deny-list"):
        check_host("::1", 5000, v6, resolver)


def test_schemes() -> None:
    check_scheme("https", "registry.test", 443, ())
    check_scheme("http", "127.0.0.1", 5000, ("127.0.0.1:5000",))
    with pytest.raises(AddressRefused, match="plain http"):
        check_scheme("http", "127.0.0.1", 5001, ("127.0.0.1:5000",))
    with pytest.raises(AddressRefused, match="only http and https"):
        check_scheme("ftp", "registry.test", 21, ("registry.test",))


# -- end to end: loopback spellings against a client that refuses loopback ------------------


EMPTY_DIGEST = "sha256:" + hashlib.sha256(b"{}").hexdigest()


def _ok(method: str, path: str, headers: dict[str, str]) -> Reply:
    """A registry whose every manifest is `{}`."""
    return 200, {"Docker-Content-Digest": EMPTY_DIGEST}, b"{}"


@pytest.mark.parametrize("spelling", ["[::ffff:127.0.0.1]", "127.0.0.1", "[::1]"])
def test_client_refuses_loopback_spellings(spelling: str) -> None:
    with HTTPServer(_ok) as server:
        port = server.host.rsplit(":", 1)[1]
        host = f"{spelling}:{port}"
        config = RegistryConfig(timeout=2, insecure_registries=(host,), policy=STRICT)
        with RegistryClient(config) as client, pytest.raises(AddressRefused, match="loopback"):
            client.resolve(parse_reference(f"{host}/team/app:v1"))
        assert server.requests == []


def test_client_connects_to_the_vetted_address_keeping_the_host_name() -> None:
    with HTTPServer(_ok) as server:
        port = int(server.host.rsplit(":", 1)[1])
        name = f"registry.sigverify.test:{port}"
        resolver = StubResolver({"registry.sigverify.test": ["127.0.0.1"]})
        config = RegistryConfig(timeout=2, insecure_registries=(name,), policy=LOOPBACK_OK)
        with RegistryClient(config, resolve=resolver) as client:
            ref = parse_reference(f"{name}/team/app:v1")
            for _ in range(3):
                assert client.resolve(ref).digest == EMPTY_DIGEST
        # Resolved once for the pooled connection, and the name kept in the Host header.
        assert resolver.asked == [("registry.sigverify.test", port)]
        assert server.requests
        assert {r.headers["host"] for r in server.requests} == {name}


def test_client_refuses_a_name_that_resolves_to_loopback() -> None:
    with HTTPServer(_ok) as server:
        port = int(server.host.rsplit(":", 1)[1])
        name = f"rebind.sigverify.test:{port}"
        resolver = StubResolver({"rebind.sigverify.test": ["127.0.0.1"]})
        config = RegistryConfig(timeout=2, insecure_registries=(name,), policy=STRICT)
        with (
            RegistryClient(config, resolve=resolver) as client,
            pytest.raises(AddressRefused, match="resolves to a loopback address") as refused,
        ):
            client.resolve(parse_reference(f"{name}/team/app:v1"))
        assert server.requests == []
        # The answer must not tell the caller what an internal name resolves to.
        assert "127.0.0.1" not in str(refused.value)


def test_plain_http_needs_an_insecure_listing() -> None:
    with HTTPServer(_ok) as server:
        config = RegistryConfig(timeout=2, policy=LOOPBACK_OK)
        with RegistryClient(config) as client:
            ref = parse_reference(f"{server.host}/team/app:v1")
            assert client._base_url(ref.registry).startswith("https://")
        # Asked to use http anyway (a redirect, a realm), the transport refuses.
        with (
            httpx.Client(transport=GuardedTransport(LOOPBACK_OK)) as raw,
            pytest.raises(AddressRefused, match="plain http"),
        ):
            raw.get(f"{server.url}/v2/")
        assert server.requests == []


def test_redirects_are_guarded() -> None:
    with HTTPServer(_ok) as target:

        def redirect(method: str, path: str, headers: dict[str, str]) -> Reply:
            return 307, {"Location": f"{target.url}/blob"}, b""

        with HTTPServer(redirect) as front:
            # The redirect target is loopback too, but not listed as insecure: http refused.
            config = RegistryConfig(
                timeout=2, insecure_registries=(front.host,), policy=LOOPBACK_OK
            )
            with RegistryClient(config) as client:
                ref = parse_reference(f"{front.host}/team/app")
                with pytest.raises(AddressRefused, match="plain http"):
                    client.get_blob(ref, "sha256:" + "0" * 64)
            # Listed as insecure but denied by name: refused too.
            config = RegistryConfig(
                timeout=2,
                insecure_registries=(front.host, target.host),
                policy=AddressPolicy(allow_loopback=True, deny_registries=(target.host,)),
            )
            with RegistryClient(config) as client, pytest.raises(AddressRefused, match="deny-list"):
                client.get_blob(ref, "sha256:" + "0" * 64)
        assert target.requests == []


@pytest.mark.parametrize("spelling", ["2130706433", "127.1", "0x7f.1"])
def test_redirects_to_non_canonical_spellings_are_refused(spelling: str) -> None:
    """A registry's redirect to another spelling of an address is refused, not read as
    inet_aton reads it: even with loopback allowed and the spelling listed as insecure,
    nothing connects."""
    with HTTPServer(_ok) as target:
        port = target.host.rsplit(":", 1)[1]

        def redirect(method: str, path: str, headers: dict[str, str]) -> Reply:
            return 307, {"Location": f"http://{spelling}:{port}/blob"}, b""

        with HTTPServer(redirect) as front:
            config = RegistryConfig(
                timeout=2,
                insecure_registries=(front.host, f"{spelling}:{port}"),
                policy=LOOPBACK_OK,
            )
            ref = parse_reference(f"{front.host}/team/app")
            with RegistryClient(config) as client, pytest.raises(AddressRefused, match=r"a\.b\.c"):
                client.get_blob(ref, "sha256:" + "0" * 64)
        assert target.requests == []


@pytest.mark.parametrize(
    ("realm", "error"),
    [
        ("http://127.1:{port}/token", AddressRefused),  # the guard refuses the spelling
        ("http://0177.0.0.1:{port}/token", RegistryError),  # httpx cannot even parse it
        ("http://[::1/token", RegistryError),
    ],
)
def test_token_realms_that_are_no_usable_url_are_registry_errors(
    realm: str, error: type[RegistryError]
) -> None:
    """The realm of a bearer challenge comes from the registry: one that the URL parser refuses
    is the registry's fault (an error the API answers with a 4xx/5xx problem), not a crash."""
    with HTTPServer(_ok) as target:
        port = target.host.rsplit(":", 1)[1]
        challenge = f'Bearer realm="{realm.format(port=port)}",service="registry"'

        def unauthorized(method: str, path: str, headers: dict[str, str]) -> Reply:
            return 401, {"WWW-Authenticate": challenge}, b"{}"

        with HTTPServer(unauthorized) as front:
            config = RegistryConfig(
                timeout=2,
                insecure_registries=(front.host, f"127.1:{port}", f"0177.0.0.1:{port}"),
                policy=LOOPBACK_OK,
            )
            with RegistryClient(config) as client, pytest.raises(error):
                client.resolve(parse_reference(f"{front.host}/team/app:v1"))
        assert target.requests == []


def test_tls_verifies_the_name_while_connecting_to_the_vetted_address(tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path, "registry.sigverify.test")
    with HTTPServer(_ok, tls=server_tls) as server:
        port = int(server.host.rsplit(":", 1)[1])
        resolver = StubResolver(
            {"registry.sigverify.test": ["127.0.0.1"], "other.sigverify.test": ["127.0.0.1"]}
        )
        config = RegistryConfig(timeout=2, policy=LOOPBACK_OK)  # https: nothing insecure
        with RegistryClient(config, resolve=resolver, ssl_context=client_tls) as client:
            good = parse_reference(f"registry.sigverify.test:{port}/team/app:v1")
            assert client.resolve(good).digest == EMPTY_DIGEST
            # Same address, a name the certificate does not carry: the handshake fails.
            wrong = parse_reference(f"other.sigverify.test:{port}/team/app:v1")
            with pytest.raises(Unavailable, match="ConnectError"):
                client.resolve(wrong)
        assert {r.headers["host"] for r in server.requests} == {f"registry.sigverify.test:{port}"}
