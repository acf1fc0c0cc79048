"""The policy file: parsed whole or refused whole, reloaded when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.policies import PolicyFileError, PolicyStore, parse_policies

GOOD = b"""
policies:
  - name: release
    tenant: platform
    description: the release workflow
    policy:
      certificateIdentity: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
      certificateOidcIssuer: https://token.actions.githubusercontent.com
  - name: legacy-audit
    tenant: team-b
    mode: audit
    policy: {keys: []}
"""


def _good() -> bytes:
    # The second policy needs a key or identity; give it one.
    return GOOD.replace(
        b"policy: {keys: []}",
        b"policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}",
    )


def test_a_good_file() -> None:
    policies = parse_policies(_good(), max_regexp_length=256)
    assert sorted(policies) == ["legacy-audit", "release"]
    assert policies["release"].mode == "enforce"
    assert policies["legacy-audit"].mode == "audit"
    assert policies["release"].policy.digest.startswith("sha256:")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ((b"name: release", b"name: Release!"), "policies[0].name"),
        ((b"tenant: platform", b"tenant: ''"), "(release).tenant"),
        ((b"mode: audit", b"mode: warn"), "(legacy-audit).mode"),
        ((b"description: the", b"descripton: the"), "(release).descripton: unknown field"),
        ((b"name: legacy-audit", b"name: release"), "defined twice"),
        ((b"certificateIdentity: https", b"certificateIdentiy: https"), "(release).policy"),
        ((b"policies:", b"policy:"), "one key, `policies`"),
        ((b"    tenant: platform", b"    tenant: [platform"), "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_whole_with_the_place_named(
    change: tuple[bytes, bytes], fragment: str
) -> None:
    with pytest.raises(PolicyFileError) as refused:
        parse_policies(_good().replace(*change, 1), max_regexp_length=256)
    assert fragment in str(refused.value)


def test_the_empty_policy_is_refused() -> None:
    with pytest.raises(PolicyFileError, match="legacy-audit"):
        parse_policies(GOOD, max_regexp_length=256)


def test_reload_on_change_and_keep_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_bytes(_good())
    now = [0.0]
    store = PolicyStore(path, max_regexp_length=256, check_interval=1.0, clock=lambda: now[0])
    assert store.get("release") is not None
    assert [p.name for p in store.visible_to("team-b")] == ["legacy-audit"]

    path.write_bytes(_good().replace(b"name: release", b"name: release-v2"))
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert store.get("release") is not None  # not looked at again within the interval
    now[0] = 2.0
    assert store.get("release") is None and store.get("release-v2") is not None

    path.write_bytes(b"policies: [oops")
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    now[0] = 4.0
    assert store.get("release-v2") is not None  # the broken version is refused whole
    assert store.last_error is not None and "not valid YAML" in store.last_error


def test_an_invalid_file_stops_the_start(tmp_path: Path) -> None:
    from service.app import create_app
    from service.config import Settings, SettingsError

    path = tmp_path / "policies.yaml"
    path.write_bytes(b"policies: 3")
    with pytest.raises(SettingsError, match="SIGVERIFY_POLICY_FILE"):
        create_app(Settings(data_dir=tmp_path, policy_file=path, rekor_url="http://127.0.0.1:1"))
