"""RegistryClient against the real registry (distribution 2.8) and tiny 127.0.0.1 servers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.registry import (
    DigestMismatch,
    ImageReference,
    InvalidManifest,
    LimitExceeded,
    NotFound,
    RegistryClient,
    RegistryConfig,
    RegistryError,
    RegistryTimeout,
    Unauthorized,
    Unavailable,
    discover,
    parse_reference,
)
from service.registry.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
)
from tests.oci import Pusher, canonical, sha256_digest
from tests.registry.conftest import ClientFactory
from tests.registry.helpers import (
    HTTPServer,
    Reply,
    SilentServer,
    TokenRegistryServer,
    TokenService,
)
from tests.servers import RegistryServer, free_port


def ref_in(registry: RegistryServer | HTTPServer, repo: str, suffix: str = ":v1") -> ImageReference:
    return parse_reference(f"{registry.host}/{repo}{suffix}")


# -- resolve ------------------------------------------------------------------------------


def test_resolve_oci_manifest(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    image = pusher.image(repo, "v1", layer=b"layer one")
    client = make_client(registry.host)
    resolved = client.resolve(ref_in(registry, repo))
    assert resolved.digest == image.digest
    assert resolved.media_type == OCI_MANIFEST
    assert not resolved.is_index
    assert resolved.platforms == ()
    assert resolved.manifest is not None
    assert resolved.manifest.data == pusher.get_manifest(repo, "v1").content
    assert resolved.reference.digest is None  # as asked
    assert resolved.pinned.digest == image.digest
    # Pinned by digest: fetched and checked, same answer.
    again = client.resolve(resolved.pinned)
    assert (again.digest, again.media_type) == (image.digest, OCI_MANIFEST)


def test_resolve_oci_index_lists_platforms(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    amd = pusher.image(repo, None, layer=b"amd", platform={"architecture": "amd64", "os": "linux"})
    arm = pusher.image(
        repo, None, layer=b"arm", platform={"architecture": "arm64", "os": "linux", "variant": "v8"}
    )
    index = pusher.index(repo, "multi", [amd, arm])
    resolved = make_client(registry.host).resolve(ref_in(registry, repo, ":multi"))
    assert resolved.digest == index.digest
    assert resolved.is_index and resolved.media_type == OCI_INDEX
    assert [dict(p) for p in resolved.platforms] == [
        {"architecture": "amd64", "os": "linux", "digest": amd.digest, "mediaType": OCI_MANIFEST},
        {
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8",
            "digest": arm.digest,
            "mediaType": OCI_MANIFEST,
        },
    ]


def _docker_image(pusher: Pusher, repo: str, layer: bytes) -> tuple[bytes, str]:
    config = pusher.blob(
        repo,
        canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}),
        "application/vnd.docker.container.image.v1+json",
    )
    layer_d = pusher.blob(repo, layer, "application/vnd.docker.image.rootfs.diff.tar.gzip")
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config.to_json(),
            "layers": [layer_d.to_json()],
        },
        indent=3,  # Docker's own spacing: digests are over these exact bytes
    ).encode()
    return body, sha256_digest(body)


def test_resolve_docker_v2_manifest_and_list(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    body, digest = _docker_image(pusher, repo, b"docker layer")
    pusher.manifest(repo, "docker", body, DOCKER_MANIFEST)
    client = make_client(registry.host)
    resolved = client.resolve(ref_in(registry, repo, ":docker"))
    assert (resolved.digest, resolved.media_type) == (digest, DOCKER_MANIFEST)
    assert resolved.manifest is not None
    assert resolved.manifest.data == body
    listing = canonical(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": digest,
                    "size": len(body),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    )
    pusher.manifest(repo, "list", listing, DOCKER_LIST)
    resolved = client.resolve(ref_in(registry, repo, ":list"))
    assert resolved.is_index and resolved.media_type == DOCKER_LIST
    assert resolved.digest == sha256_digest(listing)
    assert resolved.platforms[0]["digest"] == digest


def test_manifests_and_blobs(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    image = pusher.image(repo, "v1", layer=b"the layer")
    client = make_client(registry.host)
    ref = ref_in(registry, repo)
    manifest = client.get_manifest(ref)
    assert manifest.digest == image.digest
    layer = manifest.layers[0]
    assert client.get_blob(ref, layer.digest, expected_size=layer.size) == b"the layer"
    assert manifest.config is not None
    with pytest.raises(NotFound, match="not found"):
        client.get_blob(ref, sha256_digest(b"absent"))
    with pytest.raises(NotFound):
        client.get_manifest(ref, "no-such-tag")
    with pytest.raises(NotFound):
        client.resolve(ref_in(registry, repo, ":no-such-tag"))
    with pytest.raises(NotFound):
        client.resolve(ref_in(registry, "no/such-repo"))
    with pytest.raises(DigestMismatch, match="descriptor says"):
        client.get_blob(ref, layer.digest, expected_size=layer.size + 1)


# -- digests are checked, never trusted ------------------------------------------------------


MANIFEST = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
    "mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256_digest(b"{}"), "size": 2
}, "layers": []})  # fmt: skip
OTHER = MANIFEST.replace(b'"layers":[]', b'"layers":[ ]')


def _serving(head_digest: str | None, body: bytes, get_digest: str | None = None) -> HTTPServer:
    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        reply: dict[str, str] = {"Content-Type": OCI_MANIFEST}
        claimed = head_digest if method == "HEAD" else get_digest
        if claimed is not None:
            reply["Docker-Content-Digest"] = claimed
        return 200, reply, body

    return HTTPServer(route)


def test_head_without_digest_falls_back_to_get(make_client: ClientFactory) -> None:
    with _serving(None, MANIFEST) as server:
        resolved = make_client(server.host).resolve(ref_in(server, "team/app"))
        assert resolved.digest == sha256_digest(MANIFEST)
        assert [(r.method, r.path) for r in server.requests] == [
            ("HEAD", "/v2/team/app/manifests/v1"),
            ("GET", "/v2/team/app/manifests/v1"),
        ]
        assert all(OCI_INDEX in r.headers["accept"] for r in server.requests)


@pytest.mark.parametrize(
    ("head", "get", "message"),
    [
        # HEAD names a digest; the bytes fetched by it hash to something else.
        (sha256_digest(MANIFEST), None, "expected sha256:"),
        # HEAD says nothing; GET by tag claims a digest its bytes do not have.
        (None, sha256_digest(MANIFEST), "content hashes to"),
    ],
)
def test_resolve_detects_wrong_bytes(
    make_client: ClientFactory, head: str | None, get: str | None, message: str
) -> None:
    with _serving(head, OTHER, get) as server, pytest.raises(DigestMismatch, match=message):
        make_client(server.host).resolve(ref_in(server, "team/app"))


def test_digest_reference_and_blob_are_checked(make_client: ClientFactory) -> None:
    with _serving(None, OTHER, sha256_digest(MANIFEST)) as server:
        client = make_client(server.host)
        pinned = ref_in(server, "team/app", "@" + sha256_digest(MANIFEST))
        with pytest.raises(DigestMismatch):
            client.resolve(pinned)
        with pytest.raises(DigestMismatch, match="blob"):
            client.get_blob(pinned, sha256_digest(MANIFEST))


# -- size caps: refused while reading, never buffered -------------------------------------


def _endless(chunk: int = 64 * 1024) -> Iterator[bytes]:
    for _ in range(64 * 1024 * 1024 // chunk):  # 64 MiB, made on the fly
        yield b" " * chunk


@pytest.mark.parametrize("declared", [True, False])
def test_huge_manifest_and_blob_refused_early(make_client: ClientFactory, declared: bool) -> None:
    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        reply = {"Content-Length": str(64 << 20)} if declared else {}
        return 200, reply, _endless()

    with HTTPServer(route) as server:
        client = make_client(server.host, max_manifest_bytes=256 * 1024, max_blob_bytes=256 * 1024)
        ref = ref_in(server, "team/app")
        with pytest.raises(LimitExceeded, match="262144-byte limit"):
            client.get_manifest(ref, "v1")
        with pytest.raises(LimitExceeded, match="262144-byte limit"):
            client.get_blob(ref, sha256_digest(b"x"))
        time.sleep(0.2)
        # What left the server is bounded by the cap plus socket buffers, not 64 MiB.
        assert server.sent < 16 << 20


def test_caps_on_the_real_registry(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    big = b"\x00" * (300 * 1024)
    pusher.image(repo, "v1", layer=big)
    client = make_client(registry.host, max_blob_bytes=256 * 1024, max_manifest_bytes=300)
    ref = ref_in(registry, repo)
    with pytest.raises(LimitExceeded, match="300-byte limit"):
        client.resolve(ref)
    client = make_client(registry.host, max_blob_bytes=256 * 1024)
    layer = client.get_manifest(ref).layers[0]
    with pytest.raises(LimitExceeded, match="more than the 262144-byte limit"):
        client.get_blob(ref, layer.digest, expected_size=layer.size)  # by descriptor
    with pytest.raises(LimitExceeded, match="262144-byte limit"):
        client.get_blob(ref, layer.digest)  # by Content-Length


# -- timeouts and outages -------------------------------------------------------------------


@pytest.mark.parametrize("call", ["resolve", "get_manifest", "get_blob", "referrers", "discover"])
def test_every_call_times_out(make_client: ClientFactory, call: str) -> None:
    silent = SilentServer()
    try:
        client = make_client(silent.host, timeout=0.3)
        ref = parse_reference(f"{silent.host}/team/app@{sha256_digest(b'x')}")
        started = time.monotonic()
        with pytest.raises(RegistryTimeout, match="timed out") as info:
            if call == "resolve":
                client.resolve(ref)
            elif call == "get_manifest":
                client.get_manifest(ref, "v1")
            elif call == "get_blob":
                client.get_blob(ref, sha256_digest(b"x"))
            elif call == "referrers":
                client.get_referrers(ref, sha256_digest(b"x"))
            else:
                from service.registry.client import ResolvedImage

                fake = Manifest.parse(MANIFEST, sha256_digest(MANIFEST), OCI_MANIFEST)
                discover(client, ResolvedImage(ref, fake.digest, OCI_MANIFEST, fake))
        assert time.monotonic() - started < 3
        assert info.value.timeout and isinstance(info.value, Unavailable)
    finally:
        silent.close()


def test_slow_drip_body_hits_the_deadline(make_client: ClientFactory) -> None:
    def drip() -> Iterator[bytes]:
        for _ in range(100):
            time.sleep(0.1)
            yield b" "

    with HTTPServer(lambda m, p, h: (200, {}, drip())) as server:
        client = make_client(server.host, timeout=0.25)  # each byte is in time; the whole is not
        started = time.monotonic()
        with pytest.raises(RegistryTimeout, match="deadline"):
            client.get_manifest(ref_in(server, "team/app"), "v1")
        assert time.monotonic() - started < 3


def test_refused_connection_and_server_errors(make_client: ClientFactory) -> None:
    closed = f"127.0.0.1:{free_port()}"
    client = make_client(closed)
    with pytest.raises(Unavailable, match="ConnectError") as info:
        client.resolve(parse_reference(f"{closed}/team/app:v1"))
    assert not info.value.timeout
    for status, message in ((500, "registry error"), (503, "registry error"), (429, "rate")):

        def failing(method: str, path: str, headers: dict[str, str], code: int = status) -> Reply:
            return code, {}, b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}'

        with (
            HTTPServer(failing) as server,
            pytest.raises(Unavailable, match=message) as info,
        ):
            make_client(server.host).get_manifest(ref_in(server, "team/app"))
        assert "UNAVAILABLE: down" in str(info.value)  # the registry's own words, bounded
    with (
        HTTPServer(lambda m, p, h: (418, {}, b"{}")) as server,
        pytest.raises(RegistryError, match="unexpected status 418"),
    ):
        make_client(server.host).get_manifest(ref_in(server, "team/app"))


# -- basic auth, docker config.json ---------------------------------------------------------

CREDS = ("tester", "s3cret-pass")


@pytest.fixture
def basic_image(basic_auth_registry: RegistryServer, repo: str) -> Iterator[ImageReference]:
    pusher = Pusher(basic_auth_registry.url, auth=CREDS)
    pusher.image(repo, "v1", layer=b"private layer")
    pusher.close()
    yield ref_in(basic_auth_registry, repo)


def test_basic_auth(
    basic_auth_registry: RegistryServer, basic_image: ImageReference, make_client: ClientFactory
) -> None:
    host = basic_auth_registry.host
    with pytest.raises(Unauthorized, match="requires credentials"):
        make_client(host).resolve(basic_image)
    with pytest.raises(Unauthorized, match="credentials refused"):
        make_client(host, credentials={host: ("tester", "wrong")}).resolve(basic_image)
    client = make_client(host, credentials={host: CREDS})
    resolved = client.resolve(basic_image)
    assert resolved.manifest is not None
    layer = resolved.manifest.layers[0]
    assert client.get_blob(basic_image, layer.digest) == b"private layer"


@pytest.mark.parametrize("style", ["auth", "username", "url-key"])
def test_docker_config_credentials(
    basic_auth_registry: RegistryServer,
    basic_image: ImageReference,
    make_client: ClientFactory,
    tmp_path: Path,
    style: str,
) -> None:
    host = basic_auth_registry.host
    encoded = base64.b64encode(":".join(CREDS).encode()).decode()
    entry: dict[str, str] = (
        {"username": CREDS[0], "password": CREDS[1]} if style == "username" else {"auth": encoded}
    )
    key = f"http://{host}/v2/" if style == "url-key" else host
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {key: entry, "other.test": {"auth": "eDp5"}}}))
    resolved = make_client(host, docker_config=path).resolve(basic_image)
    assert resolved.digest.startswith("sha256:")


def test_bad_docker_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"r.test": {"auth": "not base64!"}}}))
    with pytest.raises(RegistryError, match="not base64"):
        RegistryClient(RegistryConfig(docker_config=path))
    path.write_text("{")
    with pytest.raises(RegistryError, match="cannot read"):
        RegistryClient(RegistryConfig(docker_config=path))


# -- bearer tokens (distribution's `auth: token`, a token service on 127.0.0.1) ---------------


class BearerPusher(Pusher):
    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url)
        self._client.headers["authorization"] = f"Bearer {token}"


@pytest.fixture
def token_env(
    token_registry: TokenRegistryServer,
    token_service: tuple[TokenService, HTTPServer],
    repo: str,
) -> Iterator[tuple[TokenService, str, list[str]]]:
    """Two images pushed to the token registry; the token service counts what it issues."""
    service, server = token_service
    assert token_registry.issuer is not None
    repos = [repo, repo + "-b"]
    token = token_registry.issuer.mint([(r, ["pull", "push"]) for r in repos])
    pusher = BearerPusher(token_registry.url, token)
    for r in repos:
        pusher.image(r, "v1", layer=r.encode())
    pusher.close()
    service.issued.clear()
    yield service, server.host, repos
    service.require, service.expires_in = None, 300


def test_anonymous_bearer_token(
    token_registry: TokenRegistryServer,
    token_env: tuple[TokenService, str, list[str]],
    make_client: ClientFactory,
) -> None:
    service, realm_host, (first, second) = token_env
    client = make_client(token_registry.host, realm_host)
    resolved = client.resolve(ref_in(token_registry, first))
    assert resolved.manifest is not None
    layer = resolved.manifest.layers[0]
    assert client.get_blob(resolved.reference, layer.digest) == first.encode()
    # One token for the repository, reused for HEAD, GET and the blob.
    assert service.issued == [(f"repository:{first}:pull", False)]
    client.resolve(ref_in(token_registry, second))
    assert service.issued[-1] == (f"repository:{second}:pull", False)
    assert len(service.issued) == 2


def test_bearer_token_expiry_uses_the_clock(
    token_registry: TokenRegistryServer,
    token_env: tuple[TokenService, str, list[str]],
    make_client: ClientFactory,
) -> None:
    service, realm_host, (first, _) = token_env
    service.expires_in = None  # the spec's default: 60 s
    now = [1000.0]
    client = RegistryClient(
        RegistryConfig(
            timeout=5,
            insecure_registries=(token_registry.host, realm_host),
            policy=make_client().config.policy,
        ),
        clock=lambda: now[0],
    )
    try:
        ref = ref_in(token_registry, first)
        client.resolve(ref)
        now[0] += 45
        client.resolve(ref)
        assert len(service.issued) == 1
        now[0] += 10  # past 60 s minus the renewal margin
        client.resolve(ref)
        assert len(service.issued) == 2
    finally:
        client.close()


def test_bearer_token_with_credentials(
    token_registry: TokenRegistryServer,
    token_env: tuple[TokenService, str, list[str]],
    make_client: ClientFactory,
) -> None:
    service, realm_host, (first, _) = token_env
    service.require = CREDS
    ref = ref_in(token_registry, first)
    with pytest.raises(Unauthorized, match="token service refused"):
        make_client(token_registry.host, realm_host).resolve(ref)
    client = make_client(token_registry.host, realm_host, credentials={token_registry.host: CREDS})
    assert client.resolve(ref).digest.startswith("sha256:")
    assert service.issued == [(f"repository:{first}:pull", True)]


def test_token_realm_is_guarded(
    token_registry: TokenRegistryServer,
    token_env: tuple[TokenService, str, list[str]],
    make_client: ClientFactory,
) -> None:
    from service.registry import AddressRefused

    service, _realm_host, (first, _) = token_env
    # The realm is http on a host not listed as insecure: the client will not go there.
    with pytest.raises(AddressRefused, match="plain http"):
        make_client(token_registry.host).resolve(ref_in(token_registry, first))
    assert service.issued == []


def test_threads_share_one_client(
    token_registry: TokenRegistryServer,
    token_env: tuple[TokenService, str, list[str]],
    make_client: ClientFactory,
) -> None:
    service, realm_host, repos = token_env
    client = make_client(token_registry.host, realm_host)
    refs = [ref_in(token_registry, repos[i % 2]) for i in range(60)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        digests = list(pool.map(lambda r: client.resolve(r).digest, refs))
    assert len(set(digests[0::2])) == 1 and len(set(digests[1::2])) == 1
    assert {scope for scope, _ in service.issued} == {f"repository:{r}:pull" for r in repos}


def test_config_from_settings() -> None:
    from service.config import Settings

    settings = Settings(
        registry_timeout=2.5,
        insecure_registries=("127.0.0.1:5000",),
        registry_allow=("ghcr.io",),
        registry_deny=("evil.test",),
        allow_private=True,
        max_signatures=7,
    )
    config = RegistryConfig.from_settings(settings)
    assert (config.timeout, config.max_signatures, config.max_manifest_bytes) == (2.5, 7, 4 << 20)
    assert config.insecure_registries == ("127.0.0.1:5000",)
    assert config.policy.allow_registries == ("ghcr.io",)
    assert config.policy.deny_registries == ("evil.test",)
    assert (config.policy.allow_private, config.policy.allow_loopback) == (True, False)


def test_a_digest_absent_from_the_registry_resolves_to_itself(
    registry: RegistryServer, pusher: Pusher, repo: str, make_client: ClientFactory
) -> None:
    """As `cosign verify` does for a pinned reference: the digest is the content's name."""
    pusher.image(repo, "v1", layer=b"present")
    absent = sha256_digest(b"an image this registry never saw")
    client = make_client(registry.host)
    resolved = client.resolve(ref_in(registry, repo, "@" + absent))
    assert resolved.digest == absent
    assert resolved.manifest is None
    assert resolved.media_type is None
    assert not resolved.is_index
    with pytest.raises(NotFound):  # a tag still has to exist
        client.resolve(ref_in(registry, repo, ":absent"))


def test_a_manifest_nested_too_deeply_is_invalid_not_a_crash() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(InvalidManifest, match="is not JSON"):
        Manifest.parse(deep, sha256_digest(deep), OCI_MANIFEST)
