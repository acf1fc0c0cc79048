"""One verdict-signing key per release: the chart generates it into a Secret once, keeps it
across upgrades, and every pod signs with it; an existing Secret wins.

Without a cluster (`helm template`), `lookup` finds nothing and every render makes a new key.
Keeping it across upgrades is therefore shown against the Kubernetes API double of
`tests.deploy.kube_api`: helm renders with `--dry-run=server`, looks the Secret up there, and
must find it under the name it creates it with.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from service.keys import load_signing_key
from tests.deploy import helm
from tests.deploy.helm import CHART, NAMESPACE, RELEASE, Rendered
from tests.deploy.kube_api import kube_api
from tests.deploy.test_chart import _container_env, rendered

SECRET = f"{RELEASE}-signing-key"
KEY = "signing-key.pem"


def _key_pem(r: Rendered, name: str = SECRET) -> bytes:
    return base64.b64decode(r.get("Secret", name)["data"][KEY])


def _signing_volume(r: Rendered) -> dict[str, object]:
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    secret: dict[str, object] = volumes["signing-key"]["secret"]
    return secret


def test_the_generated_key_is_one_the_service_signs_with(tmp_path: Path) -> None:
    r = rendered("defaults")
    path = tmp_path / KEY
    path.write_bytes(_key_pem(r))
    key = load_signing_key(path, tmp_path / "data")
    assert not key.development  # a configured key: no development warning, in /readyz either
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    assert not (tmp_path / "data").exists()  # nothing generated beside it


def test_every_pod_mounts_the_one_secret_and_is_told_where() -> None:
    r = rendered("defaults")
    assert _signing_volume(r)["secretName"] == SECRET
    assert _signing_volume(r)["items"] == [{"key": KEY, "path": KEY}]
    mounts = {m["name"]: m for m in r.container["volumeMounts"]}
    assert mounts["signing-key"]["readOnly"] is True
    env = _container_env(r)
    assert env["SIGVERIFY_SIGNING_KEY_FILE"] == f"{mounts['signing-key']['mountPath']}/{KEY}"


def test_the_secret_survives_an_uninstall() -> None:
    annotations = rendered("defaults").get("Secret", SECRET)["metadata"]["annotations"]
    assert annotations["helm.sh/resource-policy"] == "keep"


def test_an_existing_secret_wins() -> None:
    r = rendered("secrets")
    assert not r.has("Secret")
    assert _signing_volume(r)["secretName"] == "sigverify-verdict-key"
    env = _container_env(r)
    assert env["SIGVERIFY_SIGNING_KEY_FILE"] == "/etc/sigverify/signing-key/signing-key.pem"


def test_a_render_without_a_cluster_makes_a_new_key_each_time() -> None:
    """Why the README asks for signingKey.existingSecret where the chart is rendered with
    `helm template` (Argo CD and similar): nothing there could keep the key."""
    assert _key_pem(rendered("defaults")) != _key_pem(helm.template())


def test_an_upgrade_keeps_the_key_it_finds_under_the_name_it_created(tmp_path: Path) -> None:
    with kube_api(tmp_path) as (api, kubeconfig):
        first = helm.template(kubeconfig=kubeconfig)  # the first install: nothing to find
        asked = f"/api/v1/namespaces/{NAMESPACE}/secrets/{SECRET}"
        assert asked in api.requests
        created = first.get("Secret", SECRET)
        # The install stores the Secret; the upgrade finds it and renders the same key.
        api.add_secret(created, NAMESPACE, release=RELEASE)
        upgrade = helm.template(kubeconfig=kubeconfig)
        assert upgrade.get("Secret", SECRET)["data"] == created["data"]
        assert _signing_volume(upgrade)["secretName"] == SECRET
        # Another release in the namespace has a Secret of its own, and a key of its own.
        other = helm.template(sets=["fullnameOverride=verifier"], kubeconfig=kubeconfig)
        assert f"/api/v1/namespaces/{NAMESPACE}/secrets/verifier-signing-key" in api.requests
        assert other.get("Secret", "verifier-signing-key")["data"] != created["data"]


def test_a_replaced_key_is_what_the_next_upgrade_keeps(tmp_path: Path) -> None:
    """A rotation (chart README) replaces the Secret's key by hand; upgrades keep the new one."""
    with kube_api(tmp_path) as (api, kubeconfig):
        created = helm.template(kubeconfig=kubeconfig).get("Secret", SECRET)
        replaced = {**created, "data": {KEY: base64.b64encode(b"replaced by hand").decode()}}
        api.add_secret(replaced, NAMESPACE, release=RELEASE)
        assert (
            helm.template(kubeconfig=kubeconfig).get("Secret", SECRET)["data"] == (replaced["data"])
        )


def test_with_an_existing_secret_nothing_is_looked_up(tmp_path: Path) -> None:
    values = [CHART / "ci" / "secrets-values.yaml"]
    with kube_api(tmp_path) as (api, kubeconfig):
        r = helm.template(values, kubeconfig=kubeconfig)
        assert not r.has("Secret")
        assert not [p for p in api.requests if "/secrets/" in p]


def test_retired_keys_are_published_from_their_secrets() -> None:
    sets = [
        "signingKey.retired[0].existingSecret=key-2024",
        "signingKey.retired[0].key=pub.pem",
        "signingKey.retired[1].existingSecret=key-2025",
        "signingKey.retired[1].key=pub.pem",
    ]
    r = helm.template(sets=sets)
    env = _container_env(r)
    files = env["SIGVERIFY_RETIRED_KEY_FILES"]
    assert files == ",".join(f"/etc/sigverify/retired-keys/{n}/retired.pem" for n in (0, 1))
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
    for n, secret in enumerate(["key-2024", "key-2025"]):
        mount = mounts[f"/etc/sigverify/retired-keys/{n}"]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"] == secret
    # The release's own key still signs.
    assert r.has("Secret") and _signing_volume(r)["secretName"] == SECRET
