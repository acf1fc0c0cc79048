"""The gunicorn configuration module: real gunicorn settings, values from SIGVERIFY_*."""

from __future__ import annotations

import importlib
import types
from collections.abc import Iterator

import pytest
from gunicorn.config import Config

import service.gunicorn_conf

NOT_SETTINGS = {"Any", "Settings", "annotations"}


@pytest.fixture
def conf(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """The module as gunicorn loads it, under SIGVERIFY_* set by the test."""
    monkeypatch.setenv("SIGVERIFY_WORKERS", "3")
    monkeypatch.setenv("SIGVERIFY_THREADS", "7")
    monkeypatch.setenv("SIGVERIFY_BIND", "127.0.0.1:9999")
    yield importlib.reload(service.gunicorn_conf)
    monkeypatch.undo()
    importlib.reload(service.gunicorn_conf)


def test_every_name_is_a_gunicorn_setting_gunicorn_accepts(conf: types.ModuleType) -> None:
    cfg = Config()
    names = [
        name
        for name, value in vars(conf).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in NOT_SETTINGS
    ]
    for name in names:
        assert name in cfg.settings, f"{name} is not a gunicorn setting (gunicorn ignores it)"
        cfg.set(name, getattr(conf, name))  # validates types and hook arity
    assert {"post_fork", "pre_fork", "child_exit", "worker_exit", "on_starting"} <= set(names)


def test_workers_threads_and_bind_come_from_the_settings(conf: types.ModuleType) -> None:
    assert (conf.workers, conf.threads, conf.bind) == (3, 7, "127.0.0.1:9999")
    assert conf.worker_class == "service.gunicorn_worker.ReadingWorker"
    assert conf.max_requests > 0 and conf.max_requests_jitter > 0
    assert conf.graceful_timeout > 0
    # Each worker builds its own app, and so its own HTTP and Redis clients, after fork.
    assert conf.preload_app is False
