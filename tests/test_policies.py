"""The policy file: parsed whole or refused whole, reloaded when it changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.policies import PolicyFileError, PolicyStore, parse_policy_file

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
    public: true
    policy: {keys: []}
"""


def _good() -> bytes:
    # The second policy needs a key or identity; give it one.
    return GOOD.replace(
        b"policy: {keys: []}",
        b"policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}",
    )


def test_a_good_file() -> None:
    policies = parse_policy_file(_good(), max_regexp_length=256).policies
    assert sorted(policies) == ["legacy-audit", "release"]
    assert policies["release"].mode == "enforce"
    assert policies["legacy-audit"].mode == "audit"
    assert policies["release"].policy.digest.startswith("sha256:")
    # Badges answer only for public policies; a policy is not public unless it says so.
    assert policies["release"].public is False
    assert policies["legacy-audit"].public is True
    assert policies["legacy-audit"].to_dict()["public"] is True


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ((b"name: release", b"name: Release!"), "policies[0].name"),
        ((b"tenant: platform", b"tenant: ''"), "(release).tenant"),
        ((b"mode: audit", b"mode: warn"), "(legacy-audit).mode"),
        ((b"public: true", b"public: 'yes'"), "(legacy-audit).public: expected true or false"),
        ((b"description: the", b"descripton: the"), "(release).descripton: unknown field"),
        ((b"name: legacy-audit", b"name: release"), "defined twice"),
        ((b"certificateIdentity: https", b"certificateIdentiy: https"), "(release).policy"),
        ((b"policies:", b"policy:"), "the key `policies`"),
        ((b"    tenant: platform", b"    tenant: [platform"), "not valid YAML"),
    ],
)
def test_a_bad_file_is_refused_whole_with_the_place_named(
    change: tuple[bytes, bytes], fragment: str
) -> None:
    with pytest.raises(PolicyFileError) as refused:
        parse_policy_file(_good().replace(*change, 1), max_regexp_length=256)
    assert fragment in str(refused.value)


def test_the_empty_policy_is_refused() -> None:
    with pytest.raises(PolicyFileError, match="legacy-audit"):
        parse_policy_file(GOOD, max_regexp_length=256)


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


ADMISSION = b"""
admission:
  default: release
  namespaces:
    payments: release
    dev: legacy-audit
  exempt: [kube-system, sandbox]
"""


def test_an_admission_section() -> None:
    parsed = parse_policy_file(_good() + ADMISSION, max_regexp_length=256)
    rules = parsed.admission
    assert rules is not None
    assert (rules.policy_for("payments"), rules.policy_for("dev")) == ("release", "legacy-audit")
    assert rules.policy_for("shop") == "release"  # the default
    assert rules.exempt == ("kube-system", "sandbox")
    assert parse_policy_file(_good(), max_regexp_length=256).admission is None


def test_without_a_default_an_unlisted_namespace_has_no_policy() -> None:
    data = _good() + b"admission: {namespaces: {dev: legacy-audit}}\n"
    rules = parse_policy_file(data, max_regexp_length=256).admission
    assert rules is not None
    assert rules.policy_for("dev") == "legacy-audit"
    assert rules.policy_for("shop") is None and rules.policy_for(None) is None
    assert rules.exempt is None  # not said: the setting's list applies


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ((b"default: release", b"default: relase"),
         "admission.default: expected the name of one of `policies` (legacy-audit, release), "
         "found 'relase'"),
        ((b"dev: legacy-audit", b"dev: strict"), "admission.namespaces.dev: expected the name"),
        ((b"payments: release", b"Payments: release"), "admission.namespaces.Payments: expected "
         "a namespace name"),
        ((b"exempt: [kube-system, sandbox]", b"exempt: [kube-system, dev]"),
         "'dev' is also in admission.namespaces"),
        ((b"exempt: [kube-system, sandbox]", b"exempt: kube-system"),
         "admission.exempt: expected a list"),
        ((b"exempt: [kube-system, sandbox]", b"exempt: [kube-system, 7]"), "admission.exempt[1]"),
        ((b"  default: release", b"  defualt: release"), "admission.defualt: unknown field"),
        ((b"  namespaces:\n    payments: release\n    dev: legacy-audit\n",
          b"  namespaces: [payments]\n"), "admission.namespaces: "
         "expected a mapping"),
        ((b"admission:", b"admision:"), "admision: unknown section"),
    ],
)  # fmt: skip
def test_a_bad_admission_section_is_refused_whole_with_the_field_named(
    change: tuple[bytes, bytes], fragment: str
) -> None:
    with pytest.raises(PolicyFileError) as refused:
        parse_policy_file(_good() + ADMISSION.replace(*change, 1), max_regexp_length=256)
    assert fragment in str(refused.value)


def test_an_empty_admission_section_is_refused() -> None:
    for empty in (b"admission: {}\n", b"admission: {exempt: [kube-system]}\n"):
        with pytest.raises(PolicyFileError, match="expected `default` or `namespaces`"):
            parse_policy_file(_good() + empty, max_regexp_length=256)
    with pytest.raises(PolicyFileError, match="admission: expected a mapping"):
        parse_policy_file(_good() + b"admission: [dev]\n", max_regexp_length=256)


def test_a_reload_swaps_policies_and_rules_together(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_bytes(_good() + ADMISSION)
    now = [0.0]
    store = PolicyStore(path, max_regexp_length=256, check_interval=1.0, clock=lambda: now[0])
    first = store.current()
    assert first.admission is not None and first.admission.policy_for("dev") == "legacy-audit"
    # A new version whose rules name a policy it does not define is refused whole.
    path.write_bytes(_good() + ADMISSION.replace(b"dev: legacy-audit", b"dev: gone"))
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    now[0] = 2.0
    assert store.current() is first
    assert store.last_error is not None and "admission.namespaces.dev" in store.last_error
    path.write_bytes(_good())
    os.utime(path, ns=(1, 3_000_000_000_000_000_000))
    now[0] = 4.0
    assert store.current().admission is None and store.last_error is None


def test_a_worker_booting_on_a_bad_file_serves_the_last_good_copy(tmp_path: Path) -> None:
    """Workers are recycled: one that boots after a bad edit must not stop the service."""
    path, last_good = tmp_path / "policies.yaml", tmp_path / "var" / "policies.last-good.yaml"
    path.write_bytes(_good())
    PolicyStore(path, max_regexp_length=256, last_good=last_good)  # the master's strict check
    assert last_good.read_bytes() == _good()
    path.write_bytes(b"policies: [{name: broken}]")
    # The master's check at a new start stays strict: the bad file stops it.
    with pytest.raises(PolicyFileError):
        PolicyStore(path, max_regexp_length=256, last_good=last_good)
    worker = PolicyStore(path, max_regexp_length=256, last_good=last_good, strict=False)
    assert worker.get("release") is not None
    assert worker.last_error is not None and "broken" in worker.last_error
    assert last_good.read_bytes() == _good()  # a rejected version is never kept
    # With nothing kept, even a lenient worker cannot start on a bad file.
    with pytest.raises(PolicyFileError):
        PolicyStore(path, max_regexp_length=256, last_good=tmp_path / "none.yaml", strict=False)


def test_each_accepted_reload_is_kept(tmp_path: Path) -> None:
    path, last_good = tmp_path / "policies.yaml", tmp_path / "policies.last-good.yaml"
    path.write_bytes(_good())
    now = [0.0]
    store = PolicyStore(
        path, max_regexp_length=256, clock=lambda: now[0], last_good=last_good, strict=False
    )
    newer = _good().replace(b"the release workflow", b"the release workflow, v2")
    assert newer != _good()
    path.write_bytes(newer)
    now[0] += 5
    store.get("release")
    assert last_good.read_bytes() == newer
