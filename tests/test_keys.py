"""The verdict-signing key: configured file, or a development key made once."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from service.config import SettingsError
from service.keys import DEV_KEY_NAME, load_signing_key


def test_development_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    first = load_signing_key(None, tmp_path / "data")
    path = tmp_path / "data" / DEV_KEY_NAME
    assert first.development
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_signing_key(None, tmp_path / "data")
    assert second.key_id == first.key_id


def test_key_id_is_sha256_of_spki(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "k.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loaded = load_signing_key(path, tmp_path)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert loaded.key_id == hashlib.sha256(spki).hexdigest()
    assert not loaded.development
    assert not (tmp_path / DEV_KEY_NAME).exists()


def test_non_p256_key_is_refused_with_the_setting_named(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SettingsError, match=r"SIGVERIFY_SIGNING_KEY_FILE.*P-256"):
        load_signing_key(path, tmp_path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pem"
    path.write_text("not a key")
    with pytest.raises(SettingsError, match="SIGVERIFY_SIGNING_KEY_FILE"):
        load_signing_key(path, tmp_path)


def test_rotation_publishes_the_retired_keys(tmp_path: Path) -> None:
    """After a rotation, verdicts signed with the old key still check against /v1/keys."""
    from examples.verify_verdict import check
    from service.app import create_app
    from service.config import Settings
    from service.keys import SigningKey, key_id
    from service.verdicts import sign

    old_private = ec.generate_private_key(ec.SECP256R1())
    old_file = tmp_path / "old.pub"
    old_file.write_bytes(
        old_private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    app = create_app(
        Settings(data_dir=tmp_path, rekor_url="http://127.0.0.1:1", retired_key_files=(old_file,))
    )
    keys = app.test_client().get("/v1/keys").get_json()
    assert [k["signing"] for k in keys["keys"]] == [True, False]
    assert keys["keys"][1]["keyId"] == key_id(old_private.public_key())
    old = SigningKey(old_private, key_id(old_private.public_key()), development=False)
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "r/x", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://slsa.dev/verification_summary/v1",
        "predicate": {"verificationResult": "PASSED"},
    }
    verdict = {"signedVerdict": sign(statement, old)}
    assert (
        check(verdict, keys, "sha256:" + "ab" * 32)["predicate"]["verificationResult"] == "PASSED"
    )
    # Unpublished keys do not verify.
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = {"signedVerdict": sign(statement, SigningKey(stranger, "0" * 64, development=False))}
    with pytest.raises(ValueError, match="no signature verifies"):
        check(forged, keys)


def test_a_retired_key_of_the_wrong_kind_stops_the_start(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from service.app import create_app
    from service.config import Settings, SettingsError

    wrong = tmp_path / "ed.pem"
    wrong.write_bytes(
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SettingsError, match="RETIRED_KEY_FILES"):
        create_app(
            Settings(data_dir=tmp_path, rekor_url="http://127.0.0.1:1", retired_key_files=(wrong,))
        )
