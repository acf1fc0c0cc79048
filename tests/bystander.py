"""What an attack costs everyone else: a bystander's answers, and the workers' threads and memory.

`Bystander` asks the service the same harmless questions again and again from its own thread
(its own connections, as another caller would) while an attack runs, and records how long each
answer took and its status. `workers` finds gunicorn's worker processes under the master;
`threads` and `rss` read them from /proc.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

Probe = Callable[[httpx.Client], httpx.Response]


@dataclass(frozen=True)
class Answer:
    """One bystander request: when it was sent (monotonic), how long it took, its status
    (0 when it got no answer at all within the client's timeout)."""

    probe: str
    sent: float
    seconds: float
    status: int


@dataclass
class Bystander:
    """Runs each probe in turn every `interval` seconds until stopped."""

    base_url: str
    probes: dict[str, Probe]
    interval: float = 0.25
    timeout: float = 30.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Bystander:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        # A fresh connection per probe: a bystander that is another caller must get a new
        # connection accepted and served, not reuse one the attack cannot touch.
        while not self._stop.is_set():
            for name, probe in self.probes.items():
                started = time.monotonic()
                try:
                    with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
                        status = probe(client).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers.append(Answer(name, started, time.monotonic() - started, status))
            self._stop.wait(self.interval)

    def worst(self, probe: str | None = None) -> float:
        """The slowest answer (seconds), of one probe or of all."""
        return max((a.seconds for a in self._of(probe)), default=0.0)

    def statuses(self, probe: str | None = None) -> list[int]:
        return [a.status for a in self._of(probe)]

    def _of(self, probe: str | None) -> Sequence[Answer]:
        return [a for a in self.answers if probe is None or a.probe == probe]


def workers(master: int) -> list[int]:
    """The pids of `master`'s child processes (gunicorn's workers)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.append(int(stat.parent.name))
    return sorted(found)


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise LookupError(f"{name} not in /proc/{pid}/status")


def threads(pids: Sequence[int]) -> dict[int, int]:
    """Threads of each process (gone processes are left out)."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            out[pid] = _status_field(pid, "Threads")
        except (OSError, LookupError):
            continue
    return out


def rss(pids: Sequence[int]) -> dict[int, int]:
    """Resident memory of each process, in KiB."""
    out: dict[int, int] = {}
    for pid in pids:
        try:
            out[pid] = _status_field(pid, "VmRSS")
        except (OSError, LookupError):
            continue
    return out


@dataclass
class ThreadWatch:
    """Samples the workers' thread counts every `interval` seconds in the background."""

    master: int
    interval: float = 0.2
    peak: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ThreadWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            counts = threads(workers(self.master))
            worst = max(counts.values(), default=0)
            self.samples.append((time.monotonic(), worst))
            self.peak = max(self.peak, worst)
            self._stop.wait(self.interval)


def wait_for_threads(master: int, at_most: int, within: float) -> tuple[bool, float, int]:
    """Wait until no worker has more than `at_most` threads: (reached, seconds, last worst)."""
    started = time.monotonic()
    worst = 0
    while True:
        worst = max(threads(workers(master)).values(), default=0)
        elapsed = time.monotonic() - started
        if worst <= at_most:
            return True, elapsed, worst
        if elapsed > within:
            return False, elapsed, worst
        time.sleep(0.1)
