"""The `sigverify` command: `serve` runs gunicorn; `keygen` makes a verdict-signing key;
`conformance verify-bundle` speaks the sigstore-conformance protocol (`service.conformance`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service import conformance
from service.config import Settings, SettingsError
from service.keys import key_id


def _serve(_args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    from service import logs, telemetry  # noqa: PLC0415 - keeps `keygen` light

    logs.configure(settings.log_format, settings.log_level)
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
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    print(f"wrote {out} (key id {key_id(key.public_key())})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sigverify", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service under gunicorn")
    serve.set_defaults(func=_serve)
    keygen = commands.add_parser("keygen", help="write a new ECDSA P-256 verdict-signing key")
    keygen.add_argument("out", type=Path, help="file to create (mode 0600; never overwritten)")
    keygen.set_defaults(func=_keygen)
    conformance.add_parser(commands)
    args = parser.parse_args(argv)
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
