"""Settings: defaults that start with nothing configured, and errors that name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis

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


# -- values that used to be accepted and fail later (found from outside) ----------------------


@pytest.mark.parametrize(
    ("env", "why"),
    [
        # A scheme: accepted, then every request failed with an SSL error.
        ({"SIGVERIFY_INSECURE_REGISTRIES": "http://127.0.0.1:5000"}, "found a URL scheme"),
        ({"SIGVERIFY_INSECURE_REGISTRIES": "127.0.0.1:5000/v2"}, "without a path"),
        ({"SIGVERIFY_INSECURE_REGISTRIES": "localhost:0"}, "port '0' must be 1-65535"),
        ({"SIGVERIFY_INSECURE_REGISTRIES": "localhost:5000,127.1:5000"}, "item 2 ('127.1:5000')"),
        ({"SIGVERIFY_REGISTRY_ALLOW": "https://ghcr.io"}, "found a URL scheme"),
        ({"SIGVERIFY_REGISTRY_ALLOW": "[::1"}, "expected [IPv6]"),
        ({"SIGVERIFY_REGISTRY_DENY": "0177.0.0.1"}, "a.b.c.d in decimal"),
        ({"SIGVERIFY_REGISTRY_DENY": "bad_host"}, "not a host name"),
        # Malformed Redis URLs: accepted, then a traceback when the cache was built.
        ({"SIGVERIFY_REDIS_URL": "localhost:6379"}, "expected a redis://host"),
        ({"SIGVERIFY_REDIS_URL": "http://127.0.0.1:6379"}, "expected a redis://host"),
        ({"SIGVERIFY_REDIS_URL": "redis://127.0.0.1:99999"}, "Port out of range"),
        ({"SIGVERIFY_REDIS_URL": "redis://"}, "found no host"),
        ({"SIGVERIFY_REDIS_URL": "redis://127.0.0.1/cache"}, "database number"),
        ({"SIGVERIFY_REDIS_URL": "unix://"}, "socket's path"),
        ({"SIGVERIFY_REDIS_URL": "redis://127.0.0.1/0?socket_timeout=soon"}, "socket_timeout"),
        ({"SIGVERIFY_REDIS_URL": "redis://127.0.0.1/0?sockettimeout=1"}, "unknown option"),
        ({"SIGVERIFY_REKOR_URL": "rekor.sigstore.dev"}, "expected an http(s)://host"),
        ({"SIGVERIFY_REKOR_URL": "http://0177.0.0.1:3000"}, "a.b.c.d in decimal"),
        ({"SIGVERIFY_REKOR_URL": "https://127.0.0.1:99999"}, "Port out of range"),
        ({"SIGVERIFY_TUF_URL": "file:///etc/tuf"}, "expected an http(s)://host"),
        ({"SIGVERIFY_TUF_URL": "https://127.0.0.1/tuf?x=1"}, "without user, query"),
        ({"SIGVERIFY_BIND": "all interfaces:8080"}, "not a host name"),
        ({"SIGVERIFY_BIND": "::1:8080"}, "in brackets"),
        ({"SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES": "kube-system,Kube_Public"}, "item 2"),
    ],
)
def test_unusable_values_are_one_line_errors_naming_the_variable(
    env: dict[str, str], why: str
) -> None:
    ((name, value),) = env.items()
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    message = str(refused.value)
    assert message.startswith(f"{name}={value!r}: "), message
    assert why in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIGVERIFY_INSECURE_REGISTRIES", "127.0.0.1:5000, localhost:5001,[::1]:5000,::1"),
        ("SIGVERIFY_REGISTRY_ALLOW", "ghcr.io,*.pkg.dev,registry.example.com.,127.0.0.1"),
        ("SIGVERIFY_REGISTRY_DENY", "*.internal,[fd00::1]:443"),
        ("SIGVERIFY_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ("SIGVERIFY_REDIS_URL", "rediss://user:p%40ss@cache.example.com:6380/2?ssl_cert_reqs=none"),
        ("SIGVERIFY_REDIS_URL", "unix:///run/redis/redis.sock?db=3&socket_timeout=0.5"),
        ("SIGVERIFY_REDIS_URL", "redis://[::1]:6379"),
        ("SIGVERIFY_REKOR_URL", "https://rekor.sigstore.dev"),
        ("SIGVERIFY_REKOR_URL", "http://127.0.0.1:3000/rekor/"),
        ("SIGVERIFY_TUF_URL", "https://tuf-repo-cdn.sigstore.dev"),
        ("SIGVERIFY_BIND", "[::]:8080"),
        ("SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES", "kube-system, sigverify,cert-manager"),
    ],
)
def test_usable_values_stay_accepted(name: str, value: str) -> None:
    Settings.from_env({name: value})
    if name == "SIGVERIFY_REDIS_URL":  # and redis-py reads what the check let through
        redis.Redis.from_url(value)


def test_secrets_in_values_stay_out_of_errors() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"SIGVERIFY_REDIS_URL": "redis://cache:s3cret-pass@127.0.0.1:99999"})
    assert "s3cret-pass" not in str(refused.value)
    assert "redis://cache:***@127.0.0.1:99999" in str(refused.value)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"SIGVERIFY_API_TOKENS": "platform=tooshort-secret"})
    assert "tooshort-secret" not in str(refused.value)
