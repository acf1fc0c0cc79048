"""The trust root's TUF refresh, in process: a real TUF repository (python-tuf's metadata API,
test keys, served on loopback), python-tuf's client, the state file and the election between
workers. Under gunicorn: tests/e2e/test_trust_refresh.py.

Every refusal keeps the root in use; every test that accepts has a tampered twin that refuses.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from securesystemslib.signer import CryptoSigner

from service.app import create_app
from service.config import Settings, SettingsError
from service.core import TrustRoot
from service.state import Services
from service.tlog.trust import (
    STATE_FILE,
    RefreshState,
    TrustRootRefresher,
    TrustRootStore,
    TufSettings,
    embedded_production_root,
    refresher_for,
    write_state,
)
from service.tlog.tuf import PUBLIC_GOOD_URL, TufClient, check_root, public_good_root
from tests.contract import CheckedClient
from tests.core.data import GITHUB_ROOT
from tests.prometheus import prometheus_value
from tests.sigstore_local.fixtures import LocalSigstore
from tests.tuf_repository import HangingServer, TufRepository

NO_REKOR = "http://127.0.0.1:1"
NOTHING_LISTENS = "http://127.0.0.1:1"
EMBEDDED = TrustRoot.from_json(embedded_production_root())


@pytest.fixture
def repo(tmp_path: Path, sigstore_local: LocalSigstore) -> Iterator[TufRepository]:
    """A repository whose trusted_root.json is the local Sigstore instance's."""
    with TufRepository(tmp_path / "repo") as repository:
        repository.publish(sigstore_local.trusted_root_json())
        yield repository


def settings_for(tmp_path: Path, repository: TufRepository | None, **more: object) -> Settings:
    bootstrap = tmp_path / "bootstrap-root.json"
    if repository is not None:
        repository.write_bootstrap(bootstrap)
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "rekor_url": NO_REKOR,
        "tuf_url": repository.url if repository else NOTHING_LISTENS,
        "tuf_root_file": bootstrap if repository else None,
        "tuf_timeout": 5.0,
        **more,
    }
    return Settings(**values)  # type: ignore[arg-type]


def worker(settings: Settings) -> tuple[TrustRootStore, TrustRootRefresher]:
    """What one gunicorn worker builds: its store, and its refresher (not started)."""
    store = TrustRootStore(settings)
    results: list[str] = []
    refresher = refresher_for(store, lambda result, reason: results.append(result))
    assert refresher is not None
    return store, refresher


@pytest.fixture
def root_b(sigstore_local: LocalSigstore) -> bytes:
    """Another valid trusted root: the local instance with a second log's key."""
    other = LocalSigstore(sigstore_local.workdir / "unused", ca=sigstore_local.ca)
    return sigstore_local.trusted_root_json(
        tlogs=[sigstore_local.rekor_key(), other.rekor_key("http://127.0.0.1:2")]
    )


# -- starting ------------------------------------------------------------------------------------


def test_first_start_without_the_repository_is_on_the_embedded_root(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, refresher = worker(settings_for(tmp_path, None))
    assert store.info.source == "embedded"
    assert store.current().digest == EMBEDDED.digest
    caplog.set_level(logging.DEBUG, "service.tlog.trust")
    for _ in range(3):
        state = refresher.refresh()
        store.poll()
    assert state.reason == "unavailable" and state.failures == 3
    assert store.current().digest == EMBEDDED.digest
    assert store.state is not None and store.state.error == state.error
    # Logged once, not once per attempt.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "trust root refresh failed (unavailable)" in warnings[0].getMessage()


def test_a_start_uses_the_last_verified_copy_without_the_network(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore
) -> None:
    settings = settings_for(tmp_path, repo)
    _store, refresher = worker(settings)
    refresher.refresh()
    repo.stop()  # the repository is gone; the data directory still has the verified copy
    later = TrustRootStore(settings)
    assert later.info.source == "tuf"
    assert later.current().digest == sigstore_local.trust().digest
    assert later.info.targets_version == 2 and later.info.root_version == 1
    assert later.current().source == later.info.description


def test_refresh_off_and_a_fixed_file_never_use_tuf(tmp_path: Path, repo: TufRepository) -> None:
    _store, refresher = worker(settings_for(tmp_path, repo))
    refresher.refresh()  # a verified copy exists in the data directory
    off = TrustRootStore(Settings(data_dir=tmp_path / "data", tuf_refresh=False))
    assert (off.info.source, off.tuf, refresher_for(off, print)) == ("embedded", None, None)
    fixed = TrustRootStore(Settings(data_dir=tmp_path / "data", trust_root_file=GITHUB_ROOT))
    assert fixed.info.source == "file" and fixed.tuf is None
    assert fixed.current().digest == TrustRoot.from_json(GITHUB_ROOT.read_bytes()).digest


# -- refreshing ----------------------------------------------------------------------------------


def test_a_refresh_reaches_every_worker_through_the_state_file(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    settings = settings_for(tmp_path, repo)
    (store1, refresher1), (store2, refresher2) = worker(settings), worker(settings)
    assert store1.info.source == store2.info.source == "embedded"
    refresher1.tick()  # leads, refreshes, follows
    refresher2.tick()  # does not lead; follows
    assert refresher1.leading and not refresher2.leading
    for store in (store1, store2):
        assert store.info.source == "tuf"
        assert store.current().digest == sigstore_local.trust().digest
    # A new trusted root: both follow once the leader has refreshed.
    updated = root_b
    repo.publish(updated)
    refresher1.refresh()
    refresher2.tick()
    store1.poll()
    assert store1.current().digest == store2.current().digest == TrustRoot.from_json(updated).digest
    assert store2.info.targets_version == 3


def test_only_the_elected_worker_fetches_and_another_takes_over_when_it_goes(
    tmp_path: Path, repo: TufRepository
) -> None:
    settings = settings_for(tmp_path, repo)
    (_s1, refresher1), (_s2, refresher2) = worker(settings), worker(settings)
    refresher1.tick()
    fetched = len(repo.requests)
    assert fetched > 0
    refresher2.tick()
    assert len(repo.requests) == fetched and not refresher2.leading
    refresher1.stop()  # the worker exits: the kernel releases its lock
    refresher2.tick()
    assert refresher2.leading
    # It knows when the last refresh was (the state file): not due again yet.
    assert len(repo.requests) == fetched


def test_a_bad_timestamp_signature_is_refused_and_the_old_root_stays(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    refresher.tick()
    good = store.current().digest
    repo.publish(root_b, timestamp_signer=CryptoSigner.generate_ecdsa())
    state = refresher.refresh()
    store.poll()
    assert state.reason == "invalid-metadata", state.error
    assert "UnsignedMetadataError" in (state.error or "")
    assert store.current().digest == good and store.info.targets_version == 2
    assert state.target is not None and state.target.sha256 == good
    # Its twin: the same publication signed by the timestamp key root lists is taken.
    repo.publish(root_b)
    refresher.refresh()
    store.poll()
    assert store.current().digest == TrustRoot.from_json(root_b).digest


def test_an_expired_timestamp_is_refused_and_the_old_root_stays(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    refresher.tick()
    good = store.current().digest
    yesterday = datetime.now(UTC) - timedelta(days=1)
    repo.publish(root_b, timestamp_expires=yesterday)
    state = refresher.refresh()
    store.poll()
    assert state.reason == "expired", state.error
    assert store.current().digest == good


def test_a_rolled_back_timestamp_is_refused(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    old_timestamp = (repo.directory / "timestamp.json").read_bytes()
    repo.publish(root_b)
    refresher.tick()
    newest = store.current().digest
    (repo.directory / "timestamp.json").write_bytes(old_timestamp)  # a mirror replays v2
    state = refresher.refresh()
    store.poll()
    assert state.reason == "invalid-metadata" and "BadVersionNumberError" in (state.error or "")
    assert store.current().digest == newest


def test_a_target_that_is_not_a_trusted_root_is_refused(
    tmp_path: Path, repo: TufRepository
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    refresher.tick()
    good = store.current().digest
    repo.publish(b'{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}')
    state = refresher.refresh()
    store.poll()
    assert state.reason == "unusable-root", state.error
    assert store.current().digest == good


def test_key_rotation_in_root_metadata(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    refresher.tick()
    old_timestamp_key = repo.signers["timestamp"]
    repo.rotate("timestamp")  # root v2: a new timestamp key, the old one revoked
    # The revoked key no longer counts, even with the new root in place.
    repo.publish(root_b, timestamp_signer=old_timestamp_key)
    refused = refresher.refresh()
    assert refused.reason == "invalid-metadata", refused.error
    repo.publish(root_b)
    refresher.refresh()
    store.poll()
    assert store.info.root_version == 2
    assert store.current().digest == TrustRoot.from_json(root_b).digest
    # The root keys themselves: v3 is signed by the old root key and the new one.
    repo.rotate("root")
    repo.publish(sigstore_local.trusted_root_json())
    refresher.refresh()
    store.poll()
    assert store.info.root_version == 3
    assert store.current().digest == sigstore_local.trust().digest


def test_a_root_version_signed_only_by_the_new_keys_is_refused(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore, root_b: bytes
) -> None:
    store, refresher = worker(settings_for(tmp_path, repo))
    refresher.tick()
    repo.rotate("root")
    # Re-sign v2 with the new root key alone: the old root's threshold is not met.
    repo.root.signatures.clear()
    repo.root.sign(repo.signers["root"])
    (repo.directory / "2.root.json").write_bytes(repo.root.to_bytes())
    repo.publish(root_b)
    state = refresher.refresh()
    store.poll()
    assert state.reason == "invalid-metadata", state.error
    assert store.info.root_version == 1 and store.info.targets_version == 2


def test_an_expired_bootstrap_root_still_verifies_a_newer_root(
    tmp_path: Path, sigstore_local: LocalSigstore
) -> None:
    """As with sigstore-python's embedded root.json, expired on 2026-11-20: rotation is checked
    by signatures; only the final root must be unexpired."""
    expired = datetime.now(UTC) - timedelta(days=10)
    with TufRepository(tmp_path / "repo", root_expires=expired) as repository:
        repository.publish(sigstore_local.trusted_root_json())
        settings = settings_for(tmp_path, repository)
        store, refresher = worker(settings)
        state = refresher.refresh()
        assert state.reason == "expired", state.error  # nothing newer: the final root expired
        repository.rotate("root")  # v2, unexpired, signed by the expired v1's key and its own
        refresher.refresh()
        store.poll()
        assert store.info.source == "tuf" and store.info.root_version == 2


def test_the_public_good_bootstrap_root_is_sigstores_and_has_expired() -> None:
    tuf = TufSettings.from_settings(Settings())
    assert tuf is not None
    assert tuf.url == PUBLIC_GOOD_URL
    assert tuf.bootstrap == public_good_root()
    assert check_root(tuf.bootstrap) >= 14  # it signs itself
    expires = json.loads(tuf.bootstrap)["signed"]["expires"]
    assert expires == "2026-11-20T13:58:18Z"


def test_a_hanging_repository_ends_within_its_deadline(tmp_path: Path) -> None:
    with HangingServer().running() as hang:
        settings = settings_for(tmp_path, None, tuf_url=hang.url, tuf_timeout=1.0)
        store, refresher = worker(settings)
        started = time.monotonic()
        state = refresher.refresh()
        elapsed = time.monotonic() - started
    assert state.reason == "timeout", state.error
    assert hang.accepted >= 1
    assert elapsed < 3.0  # the deadline (1 s) plus scheduling, never a socket's default wait
    assert store.current().digest == EMBEDDED.digest


def test_a_failed_refresh_is_retried_sooner_than_the_interval(tmp_path: Path) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    settings = settings_for(tmp_path, None, tuf_interval=3600.0)
    store = TrustRootStore(settings)
    assert store.tuf is not None
    client = TufClient(store.tuf.url, store.tuf.bootstrap, store.tuf.directory, timeout=1)
    attempts: list[str] = []
    refresher = TrustRootRefresher(
        store,
        client,
        interval=3600.0,
        on_refresh=lambda result, reason: attempts.append(result),
        clock=lambda: now[0],
    )
    refresher.tick()
    assert attempts == ["failed"]
    now[0] += timedelta(seconds=59)
    refresher.tick()
    assert attempts == ["failed"]
    now[0] += timedelta(seconds=2)  # 60 s after the first failure
    refresher.tick()
    assert attempts == ["failed", "failed"]
    now[0] += timedelta(seconds=100)  # the second retry waits 120 s
    refresher.tick()
    assert len(attempts) == 2
    now[0] += timedelta(seconds=21)
    refresher.tick()
    assert len(attempts) == 3


# -- the state file ------------------------------------------------------------------------------


def test_a_state_file_that_does_not_check_out_is_ignored(
    tmp_path: Path, repo: TufRepository, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(tmp_path, repo)
    store, refresher = worker(settings)
    refresher.tick()
    good = store.current().digest
    path = refresher_state_path(store)
    original = json.loads(path.read_bytes())

    tampered = json.loads(json.dumps(original))
    other = GITHUB_ROOT.read_bytes()
    tampered["trustedRoot"]["data"] = base64.b64encode(other).decode()
    for broken in (b"{not json", json.dumps(tampered).encode(), b"\x00" * 10):
        caplog.clear()
        path.write_bytes(broken)
        assert store.poll() is False
        assert store.current().digest == good
        assert any("refused" in r.getMessage() for r in caplog.records)
        # A worker starting now ignores it too (and is on the embedded root).
        assert TrustRootStore(settings).current().digest == EMBEDDED.digest
    # The sha256 check is what refused the tampered one: restored, it is accepted again.
    path.write_bytes(json.dumps(original).encode())
    assert TrustRootStore(settings).current().digest == good
    assert RefreshState.from_json(path.read_bytes()).target is not None


def refresher_state_path(store: TrustRootStore) -> Path:
    assert store.tuf is not None
    path = store.tuf.directory / STATE_FILE
    assert path == store.tuf.state_path
    return path


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIGVERIFY_TUF_URL": "https://127.0.0.1:1", "SIGVERIFY_TUF_REFRESH": "false"},
         "SIGVERIFY_TUF_URL is set but SIGVERIFY_TUF_REFRESH=false"),
        ({"SIGVERIFY_TUF_INTERVAL": "0"}, "SIGVERIFY_TUF_INTERVAL"),
        ({"SIGVERIFY_TUF_TIMEOUT": "601"}, "SIGVERIFY_TUF_TIMEOUT"),
        ({"SIGVERIFY_TUF_ROOT_FILE": "/nonexistent/root.json"}, "SIGVERIFY_TUF_ROOT_FILE"),
    ],
)  # fmt: skip
def test_bad_tuf_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_a_tuf_root_file_that_is_no_signed_root_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "root.json"
    bad.write_bytes(GITHUB_ROOT.read_bytes())
    with pytest.raises(SettingsError, match=r"SIGVERIFY_TUF_ROOT_FILE=.*not TUF root metadata"):
        TrustRootStore(Settings(data_dir=tmp_path, tuf_root_file=bad))
    unsigned = json.loads(public_good_root())
    unsigned["signed"]["version"] += 1  # the signatures no longer cover it
    bad.write_text(json.dumps(unsigned))
    with pytest.raises(SettingsError, match="not signed by its own root keys"):
        TrustRootStore(Settings(data_dir=tmp_path, tuf_root_file=bad))


# -- what the service says -----------------------------------------------------------------------


def test_readyz_version_and_metrics_name_the_root_in_use(
    tmp_path: Path, repo: TufRepository, sigstore_local: LocalSigstore
) -> None:
    app = create_app(settings_for(tmp_path, repo))
    services = app.extensions["sigverify"]
    assert isinstance(services, Services) and services.refresher is not None
    transport = httpx.WSGITransport(app=app)
    with CheckedClient(transport=transport, base_url="http://sigverify") as client:
        before = client.get("/readyz").json()["checks"]["trustRoot"]
        assert before["source"] == "embedded" and before["version"] is None
        assert before["refresh"]["enabled"] is True and before["refresh"]["lastError"] is None
        services.refresher.tick()
        ready = client.get("/readyz").json()
        root = ready["checks"]["trustRoot"]
        assert root["source"] == "tuf" and root["version"] == 2 and root["rootVersion"] == 1
        assert root["digest"] == sigstore_local.trust().digest
        assert root["refreshedAt"] and root["expires"] > root["refreshedAt"]
        assert root["refresh"]["url"] == repo.url
        assert not [w for w in ready["warnings"] if "trust root" in w]
        version = client.get("/version").json()["trustRoot"]
        assert version == {k: root[k] for k in version}
        metrics = client.get("/metrics").text
        labels = {"source": "tuf", "version": "2", "digest": root["digest"]}
        assert prometheus_value(metrics, "sigverify_trust_root_info", **labels) == 1
        embedded = {"source": "embedded", "version": "", "digest": EMBEDDED.digest}
        assert prometheus_value(metrics, "sigverify_trust_root_info", **embedded) == 0
        expiry = prometheus_value(metrics, "sigverify_trust_root_expiry_timestamp_seconds")
        assert expiry == datetime.fromisoformat(root["expires"]).timestamp()
        assert prometheus_value(metrics, "sigverify_trust_root_refreshes_total", result="updated")
        # A failing refresh: a warning, the same root.
        repo.stop()
        services.refresher.refresh()
        services.trust.poll()
        ready = client.get("/readyz").json()
        assert ready["checks"]["trustRoot"]["digest"] == root["digest"]
        assert ready["checks"]["trustRoot"]["refresh"]["failures"] == 1
        assert [w for w in ready["warnings"] if w.startswith("trust root refresh failing")]
        metrics = client.get("/metrics").text
        assert prometheus_value(metrics, "sigverify_trust_root_refreshes_total", result="failed")
        assert prometheus_value(
            metrics, "sigverify_upstream_errors_total", system="tuf", reason="unavailable"
        )


def test_readyz_warns_when_the_roots_tuf_metadata_has_expired(
    tmp_path: Path, repo: TufRepository
) -> None:
    settings = settings_for(tmp_path, repo)
    app = create_app(settings)
    services = app.extensions["sigverify"]
    assert isinstance(services, Services) and services.refresher is not None
    services.refresher.tick()
    state = services.trust.state
    assert state is not None and state.target is not None
    # The root was verified; the metadata that vouched for it has since expired (TUF could not
    # be reached for a week): still the root in use, with a warning.
    expired = replace(state.target, expires=datetime.now(UTC) - timedelta(hours=1))
    write_state(refresher_state_path(services.trust), replace(state, target=expired))
    assert services.trust.poll() is True
    body = app.test_client().get("/readyz").get_json()
    assert body["status"] == "ok"
    assert body["checks"]["trustRoot"]["digest"] == state.target.sha256
    assert [w for w in body["warnings"] if w.startswith("trust root metadata expired at")]
