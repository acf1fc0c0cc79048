"""Typed settings read from `SIGVERIFY_*` environment variables.

Every setting has a default that lets `sigverify serve` start with no configuration at all; each
production setting overrides its default. A bad value stops the start with a message that names
the variable. The README's settings table is checked against `SETTINGS` by a test.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "SIGVERIFY_"
# Read by `sigverify verify` (the client), never by the service. A CI job that starts the service
# and runs the client has both kinds set, so these are known names the service ignores (and
# `sigverify serve` says so), not unknown settings.
CLIENT_VARIABLES = (PREFIX + "SERVER", PREFIX + "TOKEN")


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
    bracketed = host.startswith("[") and host.endswith("]")
    if ":" in host and not bracketed:
        raise ValueError("must be HOST:PORT, an IPv6 address in brackets ([::]:8080)")
    try:
        _check_host(host[1:-1] if bracketed else host)
    except ValueError as exc:
        raise ValueError(f"must be HOST:PORT: host {host!r:.80}: {exc}") from None
    return value


_LABEL = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
_HOST_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?", re.ASCII | re.IGNORECASE)
_NUMERIC_LABEL = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+", re.ASCII)


def _check_host(host: str, *, wildcard: bool = False) -> None:
    """A domain name, an IPv4 address in dotted-decimal form, or an IPv6 address (no brackets).

    An all-numeric host spelt otherwise (`127.1`, `0177.0.0.1`) names different addresses to
    different parsers; the registry client refuses such hosts, so a setting naming one could
    never match (see `service.registry.guard`)."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("not an IPv6 address") from None
        return
    bare = host.rstrip(".")
    if bare and all(_NUMERIC_LABEL.fullmatch(label) for label in bare.split(".")):
        try:
            ipaddress.IPv4Address(bare)
        except ValueError:
            raise ValueError(
                "a numeric host must be an IPv4 address written a.b.c.d in decimal without "
                "leading zeros"
            ) from None
        return
    if (
        not _HOST_NAME.fullmatch(host)
        or (host.startswith("*.") and not wildcard)
        or any(len(label) > 63 for label in bare.split("."))
    ):
        raise ValueError("not a host name")


def _check_port(port: str) -> None:
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"port {port!r} must be 1-65535")


def _registry(item: str) -> str:
    """One `host[:port]` registry pattern (`*.example.com`, `[::1]:5000` too)."""
    if "://" in item:
        raise ValueError(
            "found a URL scheme, expected host[:port] (an insecure registry is reached over "
            "http://, any other over https://)"
        )
    if "/" in item or "@" in item or any(c.isspace() for c in item):
        raise ValueError("expected host[:port], without a path or user")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPv6] or [IPv6]:port")
        if rest:
            _check_port(rest[1:])
        if ":" not in host:
            raise ValueError("brackets hold an IPv6 address")
    elif item.count(":") > 1:
        host = item  # an IPv6 address without brackets, so without a port
    else:
        host, sep, port = item.partition(":")
        if sep:
            _check_port(port)
    try:
        _check_host(host, wildcard=True)
    except ValueError as exc:
        raise ValueError(f"{exc}, expected host[:port]") from None
    return item


def _registries(value: str) -> tuple[str, ...]:
    """`host[:port]` patterns, comma-separated."""
    items = _list(value)
    for n, item in enumerate(items, start=1):
        try:
            _registry(item)
        except ValueError as exc:
            raise ValueError(f"item {n} ({item!r:.80}): {exc}") from None
    return items


def check_url(value: str, what: str = "URL") -> str:
    """`value` if it is `http(s)://host[:port][/path]`, else ValueError saying why. Shared
    with the OpenTelemetry variables (`service.telemetry`)."""
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"not a {what}: {exc}") from None
    if url.scheme not in {"http", "https"} or not url.hostname:
        raise ValueError(f"expected an http(s)://host[:port][/path] {what}")
    if url.username is not None or url.query or url.fragment:
        raise ValueError(
            f"expected an http(s)://host[:port][/path] {what}, without user, query or #"
        )
    try:
        _check_host(url.hostname)
    except ValueError as exc:
        raise ValueError(f"host {url.hostname!r:.80}: {exc}") from None
    if port == 0:
        raise ValueError("port 0 must be 1-65535")
    return value


def _opt_url(value: str) -> str | None:
    return check_url(value) if value else None


_REDIS_OPTIONS: Mapping[str, Callable[[str], object]] = {
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "socket_keepalive": _bool,
    "retry_on_timeout": _bool,
    "max_connections": int,
    "health_check_interval": int,
    "timeout": float,
    "protocol": int,
    "ssl_check_hostname": _bool,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "client_name": str,
}


def _redis_url(value: str) -> str | None:
    """A URL redis-py's `from_url` reads: redis://[user:password@]host[:port][/db],
    rediss://... (TLS) or unix:///path/to/socket, with its known `?option=value`s."""
    if not value:
        return None
    try:
        url = urlsplit(value)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"not a Redis URL: {exc}") from None
    if url.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(
            "expected a redis://host[:port][/db], rediss://... or unix:///path/to/socket URL"
        )
    if url.scheme == "unix":
        if not url.path:
            raise ValueError("unix:// needs the socket's path (unix:///path/to/redis.sock)")
    else:
        if not url.hostname:
            raise ValueError(f"expected {url.scheme}://host[:port][/db], found no host")
        if port == 0:
            raise ValueError("port 0 must be 1-65535")
        db = url.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the path names the database number, found {db!r:.40}")
    for name, values in parse_qs(url.query, keep_blank_values=True).items():
        parse = _REDIS_OPTIONS.get(name)
        if parse is None:
            raise ValueError(f"unknown option {name!r:.40}, expected " + ", ".join(_REDIS_OPTIONS))
        try:
            parse(values[0])
        except ValueError:
            raise ValueError(f"option {name}={values[0]!r:.40} is not a valid value") from None
    return value


_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # an RFC 1123 DNS label


def _namespaces(value: str) -> tuple[str, ...]:
    """Kubernetes namespace names, comma-separated: a misspelt one would exempt nothing."""
    items = _list(value)
    for n, item in enumerate(items, start=1):
        if not _NAMESPACE.fullmatch(item):
            raise ValueError(f"item {n} ({item!r:.80}): expected a namespace name (a DNS label)")
    return items


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
        "Writable directory for the development signing key, the last good policy file and the "
        "TUF cache (the last verified trust root).",
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
        _redis_url,
        "Redis URL for the shared cache (redis://host[:port][/db], rediss://..., "
        "unix:///path); empty means an in-process cache.",
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
        "A fixed Sigstore trusted_root.json, never refreshed; empty: the production root, "
        "refreshed through TUF (SIGVERIFY_TUF_*).",
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
        _opt_url,
        "TUF repository the default trust root is refreshed from, e.g. a mirror; empty: the "
        "public-good one, https://tuf-repo-cdn.sigstore.dev.",
    ),
    Setting(
        "tuf_refresh",
        "true",
        _bool,
        "Refresh the default trust root through TUF in the background (the service starts on "
        "the last verified copy in the data directory, else the embedded root); false: no TUF "
        "traffic at all (air-gapped). No effect with SIGVERIFY_TRUST_ROOT_FILE.",
    ),
    Setting(
        "tuf_root_file",
        "",
        _opt_path,
        "TUF root.json that trust in the repository starts from; empty: the public-good root "
        "inside sigstore-python (right for the public-good repository and its mirrors).",
    ),
    Setting(
        "tuf_interval",
        "3600",
        _float(1, 7 * 86400),
        "Seconds between TUF refreshes; after a failure the next try comes sooner (60 s, "
        "doubling up to this).",
    ),
    Setting(
        "tuf_timeout",
        "30",
        _float(1, 600),
        "Seconds one TUF refresh may take in all: each request gets what is left (one socket "
        "wait at most 10 s of it).",
    ),
    Setting(
        "rekor_url",
        "",
        _opt_url,
        "Rekor to look log entries up in; empty means the first Rekor v1 log in the trust root.",
    ),
    Setting(
        "rekor_lookups",
        "true",
        _bool,
        "Look log entries up in Rekor; false for a cluster with no Rekor (air-gapped): only the "
        "evidence signatures carry counts (a SET, an inclusion proof, signed timestamps).",
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
        _registries,
        "Registries (host[:port], comma-separated, no scheme) reached over plain HTTP.",
    ),
    Setting(
        "registry_allow",
        "",
        _registries,
        "If set, only these registries (host[:port] patterns, comma-separated) may be contacted.",
    ),
    Setting(
        "registry_deny",
        "",
        _registries,
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
        _namespaces,
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
        "admission_client_ca_file",
        "",
        _opt_path,
        "PEM CA certificate(s): POST /v1/admission then needs a client certificate they signed "
        "(the API server's, from its AdmissionConfiguration kubeConfigFile); needs HTTPS.",
    ),
    Setting(
        "admission_client_names",
        "",
        _list,
        "Names (comma-separated) one of which that client certificate must carry as its "
        "subject CN or a DNS SAN; empty: any certificate the CA signed.",
    ),
    Setting(
        "admission_token_file",
        "",
        _opt_path,
        "A file of bearer tokens (one per line) of which POST /v1/admission needs one in "
        "Authorization (the API server's kubeConfigFile `token`); empty: no token asked for.",
    ),
    Setting(
        "gatekeeper_tenant",
        "",
        _opt_str,
        "Tenant whose named policies POST /v1/gatekeeper/{policy} (OPA Gatekeeper's external "
        "data provider) may name; empty: no provider.",
    ),
    Setting(
        "gatekeeper_timeout",
        "2",
        _float(0.2, 29),
        "Seconds POST /v1/gatekeeper takes at most; an image not verified by then is an error "
        "item (keep it below the Provider's timeout, default 3).",
    ),
    Setting(
        "gatekeeper_client_ca_file",
        "",
        _opt_path,
        "PEM CA certificate(s): POST /v1/gatekeeper then needs a client certificate they signed "
        "(Gatekeeper's, the ca.crt of its gatekeeper-webhook-server-cert Secret); needs HTTPS.",
    ),
    Setting(
        "gatekeeper_client_names",
        "",
        _list,
        "Names (comma-separated) one of which Gatekeeper's client certificate must carry as its "
        "subject CN or a DNS SAN; empty: any certificate the CA signed.",
    ),
    Setting(
        "report_window",
        "604800",
        _float(60, 90 * 86400),
        "Seconds a verification under a named policy is kept for its report "
        "(GET /v1/reports/{policy}); default 7 days.",
    ),
    Setting(
        "report_max_sightings",
        "5000",
        _int(10, 100_000),
        "Verifications a report keeps per policy in each of its four lists (admission or API, "
        "denied or passed); beyond it the oldest go.",
    ),
    Setting(
        "report_max_images",
        "500",
        _int(1, 10_000),
        "Images one report lists (would-be-denied first); the rest are counted.",
    ),
    Setting(
        "report_max_names",
        "20",
        _int(1, 1000),
        "References, namespaces and workloads a report lists per image (most recent first); "
        "the rest are counted.",
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


def _without_password(url: str) -> str:
    """A URL as an error may show it: its password, if any, replaced by `***`."""
    head, at, tail = url.rpartition("@")
    scheme, sep, userinfo = head.partition("://")
    if not at or not sep or ":" not in userinfo:
        return repr(url)
    return repr(f"{scheme}://{userinfo.partition(':')[0]}:***@{tail}")


# How an error shows a setting's value, where the value may hold a secret.
_SHOWN: Mapping[str, Callable[[str], str]] = {
    "redis_url": _without_password,
    "api_tokens": lambda _raw: "<not shown>",
}


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
    tuf_refresh: bool = True
    tuf_root_file: Path | None = None
    tuf_interval: float = 3600.0
    tuf_timeout: float = 30.0
    rekor_url: str | None = None
    rekor_lookups: bool = True
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
    admission_client_ca_file: Path | None = None
    admission_client_names: tuple[str, ...] = ()
    admission_token_file: Path | None = None
    gatekeeper_tenant: str | None = None
    gatekeeper_timeout: float = 2.0
    gatekeeper_client_ca_file: Path | None = None
    gatekeeper_client_names: tuple[str, ...] = ()
    report_window: float = 604800.0
    report_max_sightings: int = 5000
    report_max_images: int = 500
    report_max_names: int = 20
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
        known = {setting.env for setting in SETTINGS}.union(CLIENT_VARIABLES)
        unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known)
        if unknown:
            raise SettingsError(f"{unknown[0]}: unknown setting")
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = env.get(setting.env, setting.default)
            try:
                values[setting.name] = setting.parse(raw.strip())
            except ValueError as exc:
                shown = _SHOWN.get(setting.name, repr)(raw)
                raise SettingsError(f"{setting.env}={shown}: {exc}") from None
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-setting rules that a single value cannot show."""
        for tuf in ("tuf_url", "tuf_root_file"):
            if self.trust_root_file is not None and getattr(self, tuf) is not None:
                raise SettingsError(
                    f"{PREFIX}TRUST_ROOT_FILE and {PREFIX}{tuf.upper()}: set one trust-root "
                    "source, not both"
                )
            if not self.tuf_refresh and getattr(self, tuf) is not None:
                raise SettingsError(
                    f"{PREFIX}{tuf.upper()} is set but {PREFIX}TUF_REFRESH=false: TUF is off"
                )
        for name in (
            "signing_key_file",
            "trust_root_file",
            "tuf_root_file",
            "docker_config",
            "policy_file",
            "api_tokens_file",
            "tls_cert_file",
            "tls_key_file",
            "admission_client_ca_file",
            "admission_token_file",
            "gatekeeper_client_ca_file",
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
        if self.admission_client_ca_file is not None and self.tls_cert_file is None:
            raise SettingsError(
                f"{PREFIX}ADMISSION_CLIENT_CA_FILE asks for client certificates, which only "
                f"HTTPS carries: set {PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE too"
            )
        if self.admission_client_names and self.admission_client_ca_file is None:
            raise SettingsError(
                f"{PREFIX}ADMISSION_CLIENT_NAMES names client certificates: set "
                f"{PREFIX}ADMISSION_CLIENT_CA_FILE to the CA that signs them"
            )
        self._check_gatekeeper()
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

    def _check_gatekeeper(self) -> None:
        """Gatekeeper's caller settings need the provider on, HTTPS, and each other; with the
        admission webhook's client CA set too, the TLS layer trusts both CAs on every
        connection, so each endpoint must name the certificates it answers."""
        if self.gatekeeper_tenant is None and (
            self.gatekeeper_client_ca_file is not None or self.gatekeeper_client_names
        ):
            raise SettingsError(
                f"{PREFIX}GATEKEEPER_CLIENT_* describe Gatekeeper's client certificate, but "
                f"{PREFIX}GATEKEEPER_TENANT is empty: the provider is off"
            )
        if self.gatekeeper_client_ca_file is not None and self.tls_cert_file is None:
            raise SettingsError(
                f"{PREFIX}GATEKEEPER_CLIENT_CA_FILE asks for client certificates, which only "
                f"HTTPS carries: set {PREFIX}TLS_CERT_FILE and {PREFIX}TLS_KEY_FILE too"
            )
        if self.gatekeeper_client_names and self.gatekeeper_client_ca_file is None:
            raise SettingsError(
                f"{PREFIX}GATEKEEPER_CLIENT_NAMES names client certificates: set "
                f"{PREFIX}GATEKEEPER_CLIENT_CA_FILE to the CA that signs them"
            )
        both = (self.admission_client_ca_file, self.gatekeeper_client_ca_file)
        if None not in both and not (self.admission_client_names and self.gatekeeper_client_names):
            raise SettingsError(
                f"{PREFIX}ADMISSION_CLIENT_CA_FILE and {PREFIX}GATEKEEPER_CLIENT_CA_FILE are both "
                "set, so a certificate either CA signed passes the TLS handshake: set "
                f"{PREFIX}ADMISSION_CLIENT_NAMES and {PREFIX}GATEKEEPER_CLIENT_NAMES to say "
                "which certificate may call which endpoint"
            )


assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)], (
    "SETTINGS and Settings differ"
)
