"""Reference parsing and normalisation, with distribution/reference's own examples."""

from __future__ import annotations

import pytest

from service.registry import ImageReference, InvalidReference, RegistryError, parse_reference

D256 = "sha256:" + "ab" * 32
D512 = "sha512:" + "cd" * 64


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("nginx", "index.docker.io/library/nginx:latest"),
        ("docker.io/nginx", "index.docker.io/library/nginx:latest"),
        ("docker.io/library/nginx:1.25", "index.docker.io/library/nginx:1.25"),
        ("index.docker.io/library/nginx", "index.docker.io/library/nginx:latest"),
        ("user/repo", "index.docker.io/user/repo:latest"),
        ("test_com", "index.docker.io/library/test_com:latest"),
        # No '/': "test.com" is a repository on Docker Hub and what follows ':' a tag.
        ("test.com:tag", "index.docker.io/library/test.com:tag"),
        ("test.com:5000", "index.docker.io/library/test.com:5000"),
        ("foo_bar.com:8080", "index.docker.io/library/foo_bar.com:8080"),
        ("foo/foo_bar.com:8080", "index.docker.io/foo/foo_bar.com:8080"),
        ("test.com/repo:tag", "test.com/repo:tag"),
        ("test:5000/repo", "test:5000/repo:latest"),
        ("test:5000/repo:tag", "test:5000/repo:tag"),
        (f"test:5000/repo@{D256}", f"test:5000/repo@{D256}"),
        (f"test:5000/repo:tag@{D256}", f"test:5000/repo:tag@{D256}"),
        ("localhost/repo", "localhost/repo:latest"),
        ("localhost:5000/a/b/c:tag", "localhost:5000/a/b/c:tag"),
        ("lowercase:Uppercase", "index.docker.io/library/lowercase:Uppercase"),
        ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux:latest"),
        ("ghcr.io/sigstore/cosign/cosign:v2.4.1", "ghcr.io/sigstore/cosign/cosign:v2.4.1"),
        ("Registry.Example.COM/repo", "registry.example.com/repo:latest"),
        ("[::1]:5000/repo:tag", "[::1]:5000/repo:tag"),
        ("[::1]/repo", "[::1]/repo:latest"),
        ("127.0.0.1:5000/a__b/c-d/e--f/g.h", "127.0.0.1:5000/a__b/c-d/e--f/g.h:latest"),
        ("127.0.0.10/repo", "127.0.0.10/repo:latest"),
        ("[::ffff:127.0.0.1]:5000/repo", "[::ffff:127.0.0.1]:5000/repo:latest"),
        # Numeric labels among others make a name, not an address.
        ("0x7f.test/repo", "0x7f.test/repo:latest"),
        (("a" * 63 + ".") * 3 + "b" * 61 + "/x", ("a" * 63 + ".") * 3 + "b" * 61 + "/x:latest"),
        ("docker.io:443/x/y", "docker.io:443/x/y:latest"),
        ("a/" + "b" * 253, "index.docker.io/a/" + "b" * 253 + ":latest"),
        ("repo:" + "t" * 128, "index.docker.io/library/repo:" + "t" * 128),
    ],
)
def test_parses_and_normalises(text: str, canonical: str) -> None:
    ref = parse_reference(text)
    assert ref.canonical == canonical
    assert str(ref) == canonical
    if len(ref.name) <= 255:  # the limit applies to the name as written, as in Docker
        assert parse_reference(ref.canonical) == ref


def test_fields() -> None:
    ref = parse_reference(f"localhost:5000/team/app:v1@{D256}")
    assert ref == ImageReference("localhost:5000", "team/app", "v1", D256)
    assert ref.identifier == D256  # the digest wins over the tag
    assert ref.name == "localhost:5000/team/app"
    plain = parse_reference("team/app")
    assert (plain.tag, plain.digest, plain.identifier) == ("latest", None, "latest")
    only_digest = parse_reference(f"team/app@{D256}")
    assert only_digest.tag is None


def test_with_digest() -> None:
    ref = parse_reference("nginx:1.25").with_digest(D256)
    assert ref.canonical == f"index.docker.io/library/nginx:1.25@{D256}"
    with pytest.raises(InvalidReference, match="64 lowercase hex"):
        ref.with_digest("sha256:abc")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("https://docker.io/nginx", "URL scheme"),
        ("Uppercase:tag", "must be lowercase"),
        ("docker.io/UPPER/repo", "must be lowercase"),
        ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
        ("aa/asdf$$^/aa", "component"),
        ("foo/bar:baz:qux", "component"),
        ("a___b", "component"),
        ("-a", "component"),
        ("a..b/c", "invalid registry"),
        ("repo@sha256:abc", "64 lowercase hex"),
        ("repo@sha256:" + "AB" * 32, "64 lowercase hex"),
        ("repo@md5:" + "ab" * 16, "sha256"),
        ("repo@" + D256 + "@" + D256, "more than one '@'"),
        ("repo:", "invalid tag"),
        ("repo:-tag", "invalid tag"),
        ("repo:" + "t" * 129, "invalid tag"),
        ("repo:tag with space", "whitespace"),
        (":tag", "empty"),
        (f"@{D256}", "empty"),
        ("ab" * 32, "image id"),
        ("a/" + "b" * 254, "longer than 255"),
        ("[::1/repo", "unclosed"),
        ("[not-v6]:5000/repo", "IPv6"),
        ("host:99999/repo", "port"),
        ("host:/repo", "port"),
        ("host.com/", "empty"),
        # An image is named by its sha256; sha512 could never verify.
        (f"repo@{D512}", "sha256 digest"),
        (f"localhost:5000/repo:v1@{D512}", "sha256 digest"),
        # Labels DNS cannot carry.
        ("a" * 64 + ".test/repo", "labels of at most 63"),
    ],
)
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message) as info:
        parse_reference(text)
    assert isinstance(info.value, RegistryError)


_DOTTED = ["0177.0.0.1", "127.000.000.001", "127.0.0.01", "127.1", "127.0.1", "0x7f.1"]
_DOTTED += ["127.0.0.256", "127.0.0.1.1"]
# One label is a registry only with a port (without one, a Docker Hub repository).
_SINGLE = ["2130706433:5000", "017700000001:5000", "0x7f000001:5000"]


@pytest.mark.parametrize("host", _DOTTED + [f"{h}:5000" for h in _DOTTED] + _SINGLE)
def test_numeric_hosts_must_be_dotted_decimal(host: str) -> None:
    """Docker's grammar reads these as domain names; resolvers read them as addresses, and
    differently (inet_aton: 0177 is octal; Go and httpx: no address at all). A reference that
    means different registries to different parties is refused before anything connects."""
    with pytest.raises(InvalidReference, match=r"a\.b\.c\.d in decimal without leading zeros"):
        parse_reference(f"{host}/team/app:v1")
