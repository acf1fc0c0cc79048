"""Settings: defaults that start with nothing configured, and errors that name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.config import SETTINGS, Settings, SettingsError

README = Path(__file__).parent.parent / "README.md"


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.redis_url is None
    assert settings.trust_root_file is None


def test_every_setting_is_read_from_its_variable(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    settings = Settings.from_env(
        {
            "SIGVERIFY_BIND": "0.0.0.0:9000",
            "SIGVERIFY_WORKERS": "3",
            "SIGVERIFY_REDIS_URL": "redis://127.0.0.1:1/0",
            "SIGVERIFY_SIGNING_KEY_FILE": str(key),
            "SIGVERIFY_INSECURE_REGISTRIES": "127.0.0.1:5000, localhost:5001",
            "SIGVERIFY_ALLOW_LOOPBACK": "yes",
            "SIGVERIFY_VERDICT_TTL": "0",
        }
    )
    assert settings.bind == "0.0.0.0:9000"
    assert settings.workers == 3
    assert settings.redis_url == "redis://127.0.0.1:1/0"
    assert settings.signing_key_file == key
    assert settings.insecure_registries == ("127.0.0.1:5000", "localhost:5001")
    assert settings.allow_loopback is True
    assert settings.verdict_ttl == 0


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SIGVERIFY_WORKERS": "zero"}, "SIGVERIFY_WORKERS"),
        ({"SIGVERIFY_WORKERS": "0"}, "SIGVERIFY_WORKERS"),
        ({"SIGVERIFY_BIND": "8080"}, "SIGVERIFY_BIND"),
        ({"SIGVERIFY_ALLOW_LOOPBACK": "maybe"}, "SIGVERIFY_ALLOW_LOOPBACK"),
        ({"SIGVERIFY_LOG_LEVEL": "LOUD"}, "SIGVERIFY_LOG_LEVEL"),
        ({"SIGVERIFY_TRUST_ROOT_FILE": "/nonexistent/root.json"}, "SIGVERIFY_TRUST_ROOT_FILE"),
        ({"SIGVERIFY_SIGNING_KEY_FILE": "/nonexistent/key.pem"}, "SIGVERIFY_SIGNING_KEY_FILE"),
        ({"SIGVERIFY_REDIS_URLL": "redis://x"}, "SIGVERIFY_REDIS_URLL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(named)):
        Settings.from_env(env)


def test_the_clients_variables_are_no_settings_and_no_error() -> None:
    client = {"SIGVERIFY_SERVER": "https://sigverify", "SIGVERIFY_TOKEN": "t" * 20}
    assert Settings.from_env(client) == Settings()
    with pytest.raises(SettingsError, match="SIGVERIFY_SERVERS: unknown setting"):
        Settings.from_env({"SIGVERIFY_SERVERS": "https://sigverify"})


def test_two_trust_root_sources_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root.json"
    root.write_text("{}")
    with pytest.raises(SettingsError, match="TRUST_ROOT_FILE and SIGVERIFY_TUF_URL"):
        Settings.from_env(
            {"SIGVERIFY_TRUST_ROOT_FILE": str(root), "SIGVERIFY_TUF_URL": "https://127.0.0.1:1"}
        )


def test_readme_documents_every_setting_with_its_default() -> None:
    text = README.read_text()
    for setting in SETTINGS:
        row = re.search(rf"^\| `{setting.env}` \| `([^`]*)` \|", text, re.MULTILINE)
        assert row is not None, f"README lacks a row for {setting.env}"
        assert row.group(1) == setting.default, f"README default of {setting.env} is stale"
