"""The `sigverify` command: `serve` runs gunicorn; `verify` is the client CI runs
(`service.client`); `keygen` makes a verdict-signing key; `conformance verify-bundle` speaks the
sigstore-conformance protocol (`service.conformance`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service import client, conformance
from service.config import CLIENT_VARIABLES, SETTINGS, Settings, SettingsError
from service.keys import key_id

log = logging.getLogger(__name__)

SERVE_DESCRIPTION = """\
Run the HTTP service under gunicorn. Every setting is an environment variable, none is required;
a bad value or an unknown SIGVERIFY_* variable stops the start with the variable named."""


def _settings_help() -> str:
    """Every setting with its default and meaning, for `serve --help`."""
    lines = ["settings (environment variables):"]
    for setting in SETTINGS:
        lines.append(f"  {setting.env} (default: {setting.default or 'empty'})")
        lines += textwrap.wrap(setting.help, 92, initial_indent=" " * 6, subsequent_indent=" " * 6)
    lines += [
        "",
        f"read by `sigverify verify`, ignored by the service: {', '.join(CLIENT_VARIABLES)}",
    ]
    return "\n".join(lines)


def _serve(_args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from service import logs, telemetry  # noqa: PLC0415 - keeps `keygen` light

    logs.configure(settings.log_format, settings.log_level)
    for name in CLIENT_VARIABLES:
        if name in os.environ:
            hint = " (the service's own tokens are SIGVERIFY_API_TOKENS)" if "TOKEN" in name else ""
            log.warning(
                "%s is read by `sigverify verify` (the client), not by the service: ignored%s",
                name,
                hint,
            )
    telemetry.exporters_from_env()  # an unusable OTEL_* value stops the start here
    # Fail before forking workers: a bad trust root or key stops the start with its setting named,
    # and the development key is created once here rather than raced by the workers.
    from service.app import build_services  # noqa: PLC0415 - keeps `keygen` light

    build_services(settings)
    # Python objects from the C allocator, in two arenas rather than one per thread: what a
    # request frees after parsing a large manifest can then be given back to the system (see
    # service.api.budget), so a worker's resident size returns to its level afterwards.
    # pymalloc's own arenas are only returned when wholly empty, which a few long-lived objects
    # prevent. Either variable set already is left as it is.
    os.environ.setdefault("PYTHONMALLOC", "malloc")
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:service.gunicorn_conf",  # bind, workers, threads: from settings
        "service.wsgi:app",
    ]  # fmt: skip
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell
    return 0  # pragma: no cover - execv does not return


def _keygen(args: argparse.Namespace) -> int:
    out: Path = args.out
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
    except FileExistsError:
        raise
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if isinstance(exc, FileNotFoundError) and not out.parent.is_dir():
            why = f"the directory {str(out.parent)!r} does not exist"
        print(f"sigverify: cannot create {str(out)!r}: {why}", file=sys.stderr)
        return 2
    print(f"wrote {out} (key id {key_id(key.public_key())})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sigverify", description=__doc__)
    parser.add_argument(
        "--version",
        action="version",
        version=f"sigverify {version('sigverify')} (sigstore-python {version('sigstore')})",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service under gunicorn",
        description=SERVE_DESCRIPTION,
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.set_defaults(func=_serve)
    client.add_parser(commands)
    keygen = commands.add_parser("keygen", help="write a new ECDSA P-256 verdict-signing key")
    keygen.add_argument("out", type=Path, help="file to create (mode 0600; never overwritten)")
    keygen.set_defaults(func=_keygen)
    conformance.add_parser(commands)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand, with its usage (argparse's default is the top one)
        commands.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        result: int = args.func(args)
    except SettingsError as exc:
        print(f"sigverify: configuration error: {exc}", file=sys.stderr)
        return 2
    except FileExistsError as exc:
        print(f"sigverify: {exc.filename} exists; not overwriting it", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
