"""The TLS and admission settings: both TLS files or neither, existing files, the admission
policy needing a policy file, and gunicorn serving HTTPS from them."""

from __future__ import annotations

import importlib
import re
import ssl
import types
from pathlib import Path

import pytest
from gunicorn.config import Config

import service.gunicorn_conf
from service.config import Settings, SettingsError


@pytest.fixture
def pem_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    return cert, key


def test_tls_files_are_read(pem_files: tuple[Path, Path]) -> None:
    cert, key = pem_files
    env = {"SIGVERIFY_TLS_CERT_FILE": str(cert), "SIGVERIFY_TLS_KEY_FILE": str(key)}
    settings = Settings.from_env(env)
    assert (settings.tls_cert_file, settings.tls_key_file) == (cert, key)
    assert Settings.from_env({}).tls_cert_file is None


@pytest.mark.parametrize("given", ["SIGVERIFY_TLS_CERT_FILE", "SIGVERIFY_TLS_KEY_FILE"])
def test_one_tls_file_without_the_other_is_refused(
    pem_files: tuple[Path, Path], given: str
) -> None:
    with pytest.raises(SettingsError, match=r"set both .* or neither"):
        Settings.from_env({given: str(pem_files[0])})


@pytest.mark.parametrize("missing", ["SIGVERIFY_TLS_CERT_FILE", "SIGVERIFY_TLS_KEY_FILE"])
def test_a_missing_tls_file_is_named(
    pem_files: tuple[Path, Path], tmp_path: Path, missing: str
) -> None:
    cert, key = pem_files
    env = {"SIGVERIFY_TLS_CERT_FILE": str(cert), "SIGVERIFY_TLS_KEY_FILE": str(key)}
    env[missing] = str(tmp_path / "absent.pem")
    with pytest.raises(SettingsError, match=re.escape(missing) + ".*no such file"):
        Settings.from_env(env)


def test_admission_settings(tmp_path: Path) -> None:
    assert Settings.from_env({}).admission_policy is None
    assert Settings.from_env({}).admission_exempt_namespaces == ("kube-system",)
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text("policies: []")
    settings = Settings.from_env(
        {
            "SIGVERIFY_POLICY_FILE": str(policy_file),
            "SIGVERIFY_ADMISSION_POLICY": "release",
            "SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES": "kube-system, infra",
        }
    )
    assert settings.admission_policy == "release"
    assert settings.admission_exempt_namespaces == ("kube-system", "infra")
    assert (
        Settings.from_env({"SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES": ""}).admission_exempt_namespaces
        == ()
    )


def test_an_admission_policy_needs_a_policy_file() -> None:
    with pytest.raises(SettingsError, match=r"SIGVERIFY_ADMISSION_POLICY=.release.*POLICY_FILE"):
        Settings.from_env({"SIGVERIFY_ADMISSION_POLICY": "release"})


def _ssl(conf: types.ModuleType) -> bool:
    """Whether gunicorn, configured from `conf`, serves HTTPS."""
    cfg = Config()
    cfg.set("certfile", conf.certfile)
    cfg.set("keyfile", conf.keyfile)
    return bool(cfg.is_ssl)


def test_gunicorn_serves_https_only_with_tls_files(
    monkeypatch: pytest.MonkeyPatch, pem_files: tuple[Path, Path]
) -> None:
    try:
        plain = importlib.reload(service.gunicorn_conf)
        assert (plain.certfile, plain.keyfile) == (None, None)
        assert _ssl(plain) is False
        cert, key = pem_files
        monkeypatch.setenv("SIGVERIFY_TLS_CERT_FILE", str(cert))
        monkeypatch.setenv("SIGVERIFY_TLS_KEY_FILE", str(key))
        tls = importlib.reload(service.gunicorn_conf)
        assert (tls.certfile, tls.keyfile) == (str(cert), str(key))
        assert _ssl(tls) is True
    finally:
        monkeypatch.undo()
        importlib.reload(service.gunicorn_conf)


def test_admission_caller_settings_need_what_they_build_on(
    pem_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """A client CA needs HTTPS (certificates ride on TLS); names need the CA that signs them."""
    ca = tmp_path / "client-ca.crt"
    ca.write_text("ca")
    with pytest.raises(SettingsError, match="ADMISSION_CLIENT_CA_FILE asks for client"):
        Settings.from_env({"SIGVERIFY_ADMISSION_CLIENT_CA_FILE": str(ca)})
    with pytest.raises(SettingsError, match="ADMISSION_CLIENT_NAMES names client certificates"):
        Settings.from_env({"SIGVERIFY_ADMISSION_CLIENT_NAMES": "kube-apiserver"})
    with pytest.raises(SettingsError, match=r"ADMISSION_TOKEN_FILE=.*no such file"):
        Settings.from_env({"SIGVERIFY_ADMISSION_TOKEN_FILE": str(tmp_path / "absent")})
    cert, key = pem_files
    settings = Settings.from_env(
        {
            "SIGVERIFY_TLS_CERT_FILE": str(cert),
            "SIGVERIFY_TLS_KEY_FILE": str(key),
            "SIGVERIFY_ADMISSION_CLIENT_CA_FILE": str(ca),
            "SIGVERIFY_ADMISSION_CLIENT_NAMES": "kube-apiserver, apiserver-webhook",
        }
    )
    assert settings.admission_client_ca_file == ca
    assert settings.admission_client_names == ("kube-apiserver", "apiserver-webhook")
    assert Settings.from_env({}).admission_client_ca_file is None


def test_gunicorn_asks_for_client_certificates_only_with_a_client_ca(
    monkeypatch: pytest.MonkeyPatch, pem_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """CERT_OPTIONAL: every TLS client is asked, none is required to answer at the TLS layer
    (probes and API callers have no certificate); the admission view requires one."""
    ca = tmp_path / "client-ca.crt"
    ca.write_text("ca")
    cert, key = pem_files
    try:
        monkeypatch.setenv("SIGVERIFY_TLS_CERT_FILE", str(cert))
        monkeypatch.setenv("SIGVERIFY_TLS_KEY_FILE", str(key))
        tls = importlib.reload(service.gunicorn_conf)
        assert not hasattr(tls, "cert_reqs") and not hasattr(tls, "ca_certs")
        monkeypatch.setenv("SIGVERIFY_ADMISSION_CLIENT_CA_FILE", str(ca))
        mutual = importlib.reload(service.gunicorn_conf)
        assert (mutual.cert_reqs, mutual.ca_certs) == (ssl.CERT_OPTIONAL, str(ca))
        cfg = Config()
        cfg.set("cert_reqs", mutual.cert_reqs)
        cfg.set("ca_certs", mutual.ca_certs)
        assert cfg.cert_reqs == ssl.CERT_OPTIONAL
    finally:
        monkeypatch.undo()
        importlib.reload(service.gunicorn_conf)
