"""Helpers for the tlog tests: a hand-driven clock, a recording sleep, Rekor-shaped entries."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to; `sleep` advances it and records."""

    now: float = 1000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_entry(
    log_index: int,
    *,
    payload: str = "artifact",
    with_proof: bool = True,
    tree_id: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """(uuid, Rekor JSON object) for a synthetic entry whose uuid is the leaf hash of its body.

    The signature material inside is not real: these entries exercise the client's shape
    checks, which never verify signatures.
    """
    canonical = json.dumps(
        {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {"data": payload}},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    leaf = hashlib.sha256(b"\x00" + canonical).hexdigest()
    entry_id = (tree_id or "") + leaf
    value: dict[str, Any] = {
        "body": base64.b64encode(canonical).decode(),
        "integratedTime": 1_700_000_000 + log_index,
        "logID": "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d",
        "logIndex": log_index,
        "verification": {"signedEntryTimestamp": base64.b64encode(b"set").decode()},
    }
    if with_proof:
        value["verification"]["inclusionProof"] = {
            "logIndex": log_index,
            "rootHash": "00" * 32,
            "treeSize": log_index + 1,
            "hashes": [],
            "checkpoint": "rekor.local - 1\n1\nAAAA\n",
        }
    return leaf, {entry_id: value}


@dataclass
class ScriptedLog:
    """An in-process stand-in for Rekor behind `httpx.MockTransport`, for unit tests.

    It serves `entries` by index, uuid, hash search and batch retrieve. `script` is consumed
    one item per request before the normal answer: an int is answered as that status, an
    exception is raised as the transport's. `gate`, when set, holds every request until set.
    The integration tests use the real local Rekor instead.
    """

    entries: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    searches: dict[str, list[str]] = field(default_factory=dict)
    script: list[int | Exception] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    override: bytes | None = None
    gate: threading.Event | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *entries: tuple[str, dict[str, Any]]) -> None:
        for uuid, document in entries:
            ((value),) = document.values()
            self.entries[value["logIndex"]] = (uuid, document)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            step = self.script.pop(0) if self.script else None
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if isinstance(step, Exception):
            raise step
        if step is not None:
            return httpx.Response(
                step, json={"code": step, "message": "scripted"}, headers=self.headers
            )
        if self.override is not None:
            return httpx.Response(200, content=self.override)
        return self._answer(request)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/api/v1/log/entries":
            found = self.entries.get(int(request.url.params["logIndex"]))
            return httpx.Response(200, json=found[1]) if found else httpx.Response(404)
        if request.method == "GET" and path.startswith("/api/v1/log/entries/"):
            asked = path.rsplit("/", 1)[1][-64:]
            for uuid, document in self.entries.values():
                if uuid == asked:
                    return httpx.Response(200, json=document)
            return httpx.Response(404)
        if request.method == "POST" and path == "/api/v1/index/retrieve":
            digest = json.loads(request.content)["hash"].removeprefix("sha256:")
            return httpx.Response(200, json=self.searches.get(digest, []))
        if request.method == "POST" and path == "/api/v1/log/entries/retrieve":
            wanted = [u[-64:] for u in json.loads(request.content)["entryUUIDs"]]
            docs = [d for u, d in self.entries.values() if u in wanted]
            return httpx.Response(200, json=docs)
        return httpx.Response(400, json={"code": 400, "message": "unknown"})

    def count(self, method: str, path_prefix: str) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.method == method and r.url.path.startswith(path_prefix)
            )
