"""Typed settings read from `SIGVERIFY_*` environment variables.

Every setting has a default that lets `sigverify serve` start with no configuration at all; each
production setting overrides its default. A bad value stops the start with a message that names
the variable. The README's settings table is checked against `SETTINGS` by a test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PREFIX = "SIGVERIFY_"


class SettingsError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


def _str(value: str) -> str:
    return value


def _opt_str(value: str) -> str | None:
    return value or None


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _opt_path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return number

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = float(value)
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return number

    return parse


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _tokens(value: str) -> tuple[tuple[str, str], ...]:
    """`tenant=token` pairs, comma-separated; the token itself never appears in an error."""
    pairs: list[tuple[str, str]] = []
    for n, item in enumerate(_list(value), start=1):
        tenant, sep, token = item.partition("=")
        if not sep or not tenant.strip() or len(token.strip()) < 16:
            raise ValueError(f"item {n}: expected tenant=token with a token of 16+ characters")
        pairs.append((tenant.strip(), token.strip()))
    return tuple(pairs)


def _paths(value: str) -> tuple[Path, ...]:
    return tuple(Path(item) for item in _list(value))


def _named_paths(value: str) -> tuple[tuple[str, Path], ...]:
    """`name=path` pairs, comma-separated; names are unique, lower-case words."""
    pairs: list[tuple[str, Path]] = []
    for n, item in enumerate(_list(value), start=1):
        name, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name) or not path:
            raise ValueError(f"item {n}: expected name=path with a lower-case name")
        if name == "default" or name in dict(pairs):
            raise ValueError(f"item {n}: the name {name!r} is taken, expected a new one")
        pairs.append((name, Path(path)))
    return tuple(pairs)


def _bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT")
    return value


def _log_format(value: str) -> str:
    lowered = value.lower()
    if lowered not in {"json", "text"}:
        raise ValueError("must be json or text")
    return lowered


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


@dataclass(frozen=True)
class Setting:
    """One environment variable: its field, default (as the variable's text) and meaning."""

    name: str
    default: str
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "bind",
        "127.0.0.1:8080",
        _bind,
        "Address gunicorn listens on (use 0.0.0.0:8080 in a container).",
    ),
    Setting(
        "tls_cert_file",
        "",
        _opt_path,
        "PEM certificate (chain) gunicorn serves HTTPS with; set with SIGVERIFY_TLS_KEY_FILE.",
    ),
    Setting(
        "tls_key_file",
        "",
        _opt_path,
        "PEM private key of SIGVERIFY_TLS_CERT_FILE; both or neither (neither: plain HTTP).",
    ),
    Setting(
        "workers", "2", _int(1, 64), "gunicorn worker processes (one per core is a good start)."
    ),
    Setting(
        "threads", "4", _int(1, 64), "Threads per worker (requests wait on registries and Rekor)."
    ),
    Setting(
        "client_timeout",
        "10",
        _float(1, 120),
        "Seconds a client has, once it starts a request, to send all of it (headers and body); "
        "later it is answered 408 and dropped. A request is read before a thread takes it; "
        "connections silent for 5 s are closed.",
    ),
    Setting(
        "data_dir",
        "./var",
        _path,
        "Writable directory for the development signing key and the last good policy file.",
    ),
    Setting("log_level", "INFO", _log_level, "DEBUG, INFO, WARNING or ERROR."),
    Setting(
        "log_format",
        "json",
        _log_format,
        "json (one object per line, with trace and span ids) or text; access log included.",
    ),
    Setting(
        "metrics",
        "true",
        _bool,
        "Serve GET /metrics (Prometheus text, totals of all workers); false answers 404.",
    ),
    Setting(
        "redis_url",
        "",
        _opt_str,
        "Redis URL for the shared cache; empty means an in-process cache.",
    ),
    Setting(
        "cache_max_value_bytes",
        "1048576",
        _int(1024, 64 << 20),
        "Largest value the cache stores, in bytes; a larger manifest or verdict is not cached "
        "(what a registry serves cannot fill the cache).",
    ),
    Setting(
        "signing_key_file",
        "",
        _opt_path,
        "PEM ECDSA P-256 key that signs verdicts; empty: a development key in the data directory.",
    ),
    Setting(
        "retired_key_files",
        "",
        _paths,
        "PEM keys (comma-separated) that signed verdicts before a rotation; still published.",
    ),
    Setting(
        "trust_root_file",
        "",
        _opt_path,
        "A Sigstore trusted_root.json; empty: the production root in sigstore-python (offline).",
    ),
    Setting(
        "trust_roots",
        "",
        _named_paths,
        "More trust roots at once, as name=path of trusted_root.json files (comma-separated), "
        "e.g. github=/etc/sigverify/github.json; a policy accepts the ones its trustRoots "
        "names (the root above is named default).",
    ),
    Setting(
        "tuf_url",
        "",
        _opt_str,
        "A TUF repository URL to fetch the trusted root from at start.",
    ),
    Setting(
        "rekor_url",
        "",
        _opt_str,
        "Rekor to look log entries up in; empty means the first Rekor v1 log in the trust root.",
    ),
    Setting(
        "request_timeout",
        "30",
        _float(1, 300),
        "Seconds POST /v1/verify, /v1/verify/batch and GET /v1/badge take at most; an image "
        "not verified by then is answered as not verified in time (504), and no work for the "
        "request continues after its answer.",
    ),
    Setting(
        "rekor_timeout",
        "3",
        _float(0.1, 60),
        "Seconds for one Rekor request, all of it (connect, headers and body).",
    ),
    Setting(
        "rekor_retries",
        "2",
        _int(0, 5),
        "Retries of a Rekor request after a timeout, connection error, 5xx or 429.",
    ),
    Setting(
        "rekor_breaker_failures",
        "5",
        _int(1, 1000),
        "Consecutive Rekor failures that open the circuit breaker (lookups then fail fast).",
    ),
    Setting(
        "rekor_breaker_cooldown",
        "30",
        _float(0, 3600),
        "Seconds the Rekor circuit breaker stays open before one trial request.",
    ),
    Setting(
        "registry_timeout",
        "10",
        _float(0.1, 120),
        "Seconds for one registry request, all of it (connect, headers and body).",
    ),
    Setting(
        "registry_retries",
        "2",
        _int(0, 5),
        "Retries of a registry request after a connection error, 429, 502, 503 or 504, with "
        "backoff; a Retry-After is waited for only when it fits the request's time.",
    ),
    Setting(
        "registry_breaker_failures",
        "5",
        _int(1, 1000),
        "Consecutive failures of one registry host that open its circuit breaker (requests to "
        "it then fail fast with a 503 problem naming the host).",
    ),
    Setting(
        "registry_breaker_cooldown",
        "30",
        _float(0, 3600),
        "Seconds a registry host's circuit breaker stays open before one trial request.",
    ),
    Setting(
        "registry_host_connections",
        "8",
        _int(1, 256),
        "Requests to one registry host in flight at once, per worker process, so one slow host "
        "cannot take the connections the others need.",
    ),
    Setting(
        "insecure_registries",
        "",
        _list,
        "Registries (host[:port], comma-separated) reached over plain HTTP.",
    ),
    Setting(
        "registry_allow",
        "",
        _list,
        "If set, only these registries (host[:port] patterns, comma-separated) may be contacted.",
    ),
    Setting(
        "registry_deny",
        "",
        _list,
        "Registries (host[:port] patterns, comma-separated) that are never contacted.",
    ),
    Setting(
        "allow_loopback",
        "false",
        _bool,
        "Allow registries on loopback addresses (tests and local development only).",
    ),
    Setting(
        "allow_private", "false", _bool, "Allow registries on private (RFC 1918, ULA) addresses."
    ),
    Setting("docker_config", "", _opt_path, "A docker config.json with registry credentials."),
    Setting(
        "max_manifest_bytes", "4194304", _int(1024, 64 << 20), "Largest manifest fetched, in bytes."
    ),
    Setting(
        "max_blob_bytes",
        "4194304",
        _int(1024, 256 << 20),
        "Largest signature blob fetched, in bytes.",
    ),
    Setting(
        "max_signatures",
        "20",
        _int(1, 1000),
        "Most signatures and attestations examined per image.",
    ),
    Setting(
        "max_body_bytes", "65536", _int(1024, 16 << 20), "Largest request body accepted, in bytes."
    ),
    Setting(
        "max_regexp_length",
        "256",
        _int(1, 4096),
        "Longest identity or issuer regular expression accepted.",
    ),
    Setting(
        "batch_max_images", "50", _int(1, 1000), "Most images one batch verification may name."
    ),
    Setting(
        "batch_concurrency",
        "4",
        _int(1, 64),
        "Images of one batch verified at the same time (per request).",
    ),
    Setting(
        "policy_file",
        "",
        _opt_path,
        "YAML file of named policies with tenant and mode, reloaded when it changes.",
    ),
    Setting(
        "inline_policies",
        "true",
        _bool,
        "Accept policies inline in requests (false: only named policies).",
    ),
    Setting(
        "admission_policy",
        "",
        _opt_str,
        "Named policy (in SIGVERIFY_POLICY_FILE) POST /v1/admission applies where the file's "
        "`admission` section names none; empty and no section: no webhook.",
    ),
    Setting(
        "admission_exempt_namespaces",
        "kube-system",
        _list,
        "Namespaces (comma-separated) admitted without verification; the policy file's "
        "admission.exempt, when present, replaces this list.",
    ),
    Setting(
        "admission_timeout",
        "8",
        _float(0.5, 29),
        "Seconds POST /v1/admission takes at most; an image not verified by then cannot be "
        "verified now (keep it below the webhook's timeoutSeconds).",
    ),
    Setting(
        "api_tokens",
        "",
        _tokens,
        "Bearer API tokens, `tenant=token` comma-separated; with no tokens at all, no auth.",
    ),
    Setting(
        "api_tokens_file",
        "",
        _opt_path,
        "A file of `tenant token` lines (a mounted Secret), added to SIGVERIFY_API_TOKENS.",
    ),
    Setting("badges", "true", _bool, "Serve GET /v1/badge (public, no token)."),
    Setting(
        "rate_limit_per_minute",
        "0",
        _int(0, 1_000_000),
        "Verifications (images) a tenant, or a client address without auth, may ask for per "
        "minute, counted in Redis across pods; 0 turns the limit off.",
    ),
    Setting(
        "verdict_ttl",
        "300",
        _float(0, 86400),
        "Seconds a verdict stays cached (0 disables verdict caching).",
    ),
    Setting(
        "manifest_ttl",
        "3600",
        _float(0, 86400),
        "Seconds a manifest fetched by digest stays cached (it is hashed again when read); "
        "short, so that what a registry served does not stay for long.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """The service's configuration; build it with `Settings.from_env()` or directly in tests."""

    bind: str = "127.0.0.1:8080"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    workers: int = 2
    threads: int = 4
    client_timeout: float = 10.0
    data_dir: Path = Path("./var")
    log_level: str = "INFO"
    log_format: str = "json"
    metrics: bool = True
    redis_url: str | None = None
    cache_max_value_bytes: int = 1 << 20
    signing_key_file: Path | None = None
    retired_key_files: tuple[Path, ...] = ()
    trust_root_file: Path | None = None
    trust_roots: tuple[tuple[str, Path], ...] = ()
    tuf_url: str | None = None
    rekor_url: str | None = None
    request_timeout: float = 30.0
    rekor_timeout: float = 3.0
    rekor_retries: int = 2
    rekor_breaker_failures: int = 5
    rekor_breaker_cooldown: float = 30.0
    registry_timeout: float = 10.0
    registry_retries: int = 2
    registry_breaker_failures: int = 5
    registry_breaker_cooldown: float = 30.0
    registry_host_connections: int = 8
    insecure_registries: tuple[str, ...] = ()
    registry_allow: tuple[str, ...] = ()
    registry_deny: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_private: bool = False
    docker_config: Path | None = None
    max_manifest_bytes: int = 4 << 20
    max_blob_bytes: int = 4 << 20
    max_signatures: int = 20
    max_body_bytes: int = 65536
    max_regexp_length: int = 256
    batch_max_images: int = 50
    batch_concurrency: int = 4
    policy_file: Path | None = None
    inline_policies: bool = True
    admission_policy: str | None = None
    admission_exempt_namespaces: tuple[str, ...] = ("kube-system",)
    admission_timeout: float = 8.0
    api_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_tokens_file: Path | None = None
    badges: bool = True
    rate_limit_per_minute: int = 0
    verdict_ttl: float = 300.0
    manifest_ttl: float = 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every setting from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        known = {setting.env for setting in SETTINGS}
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env, setting.default)
            try:
                values[setting.name] = setting.parse(raw.strip())
            except ValueError as exc:
                raise SettingsError(f"{setting.env}={raw!r}: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-setting rules that a single value cannot show."""
        if self.trust_root_file is not None and self.tuf_url is not None:
            raise SettingsError(
                f"{PREFIX}TRUST_ROOT_FILE and {PREFIX}TUF_URL: set one trust-root source, not both"
            )
        for name in (
            "signing_key_file",
            "trust_root_file",
            "docker_config",
            "policy_file",
            "api_tokens_file",
            "tls_cert_file",
            "tls_key_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise SettingsError(f"{PREFIX}{name.upper()}={str(path)!r}: no such file")
        for root, path in self.trust_roots:
            if not path.is_file():
                raise SettingsError(f"{PREFIX}TRUST_ROOTS: {root}={str(path)!r}: no such file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError(
                f"{PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE: set both (HTTPS) or neither"
            )
        if self.admission_timeout > self.request_timeout:
            raise SettingsError(
                f"{PREFIX}ADMISSION_TIMEOUT={self.admission_timeout:g} is longer than "
                f"{PREFIX}REQUEST_TIMEOUT={self.request_timeout:g}: the admission budget must "
                "fit in a request's"
            )
        if self.admission_policy is not None and self.policy_file is None:
            raise SettingsError(
                f"{PREFIX}ADMISSION_POLICY={self.admission_policy!r} names a policy in "
                f"{PREFIX}POLICY_FILE, which is not set"
            )


assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)], (
    "SETTINGS and Settings differ"
)
