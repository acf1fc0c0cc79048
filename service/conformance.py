"""`sigverify conformance verify-bundle`: the sigstore-conformance client CLI protocol
(`docs/cli_protocol.md`), on the same core as the service::

    sigverify conformance verify-bundle [--staging] --bundle FILE
        (--certificate-identity IDENTITY --certificate-oidc-issuer URL | --key FILE)
        [--trusted-root FILE] FILE_OR_DIGEST

`FILE_OR_DIGEST` is a digest when it is `sha256:` and 64 hex digits and no such path exists;
otherwise it is a file, whose sha256 is verified. The trusted root is `--trusted-root`; else,
with `--staging`, the staging root that ships inside sigstore-python (offline: no TUF
refresh); else the root the service itself would start on, without network
(`SIGVERIFY_TRUST_ROOT_FILE`, else the last TUF-verified copy in `SIGVERIFY_DATA_DIR`, else the
production root inside sigstore-python).

Exit status: 0 verified; 1 not verified (the reasons on stderr); 2 a usage or input error.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.config import Settings

NOT_VERIFIED = 1
USAGE = 2
_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}")


class _InputError(Exception):
    """A file that cannot be read or used; the message says which."""


def add_parser(commands: Any) -> None:
    """Add `conformance verify-bundle` to the `sigverify` subcommands."""
    conformance = commands.add_parser(
        "conformance", help="the sigstore-conformance client protocol (verify-bundle)"
    )
    protocol = conformance.add_subparsers(dest="protocol_command", required=True)
    verify = protocol.add_parser(
        "verify-bundle", help="verify a Sigstore bundle over an artifact or its sha256 digest"
    )
    verify.add_argument("--staging", action="store_true", help="use the staging trust root")
    verify.add_argument("--bundle", type=Path, required=True, help="the Sigstore bundle")
    verify.add_argument("--certificate-identity", help="the expected certificate SAN")
    verify.add_argument("--certificate-oidc-issuer", help="the expected OIDC issuer")
    verify.add_argument("--key", type=Path, help="a PEM public key (key-signed bundles)")
    verify.add_argument("--trusted-root", type=Path, help="a custom trusted_root.json")
    verify.add_argument("file_or_digest", metavar="FILE_OR_DIGEST")
    verify.set_defaults(func=verify_bundle)


def verify_bundle(args: argparse.Namespace) -> int:
    """Verify the bundle; prints `OK: <target>` or the reasons, returns the exit status."""
    from service import core  # noqa: PLC0415 - sigstore loads only for this command

    try:
        try:
            policy = core.policy_from_mapping(_policy(args))
        except core.PolicyError as exc:
            flag = "--key" if exc.field and exc.field.startswith("keys") else "policy"
            raise _InputError(f"{flag}: {exc}") from None
        digest = artifact_digest(args.file_or_digest)
        data, origin = _trust_root(args)
        try:
            trust = core.TrustRoot.from_json(data)
        except core.TrustRootError as exc:
            raise _InputError(f"trusted root from {origin}: {exc}") from None
        bundle = _read(args.bundle, "--bundle")
    except _InputError as exc:
        print(f"sigverify: {exc}", file=sys.stderr)
        return USAGE
    result = core.verify_artifact(
        bundle=bundle,
        artifact_digest=digest,
        policy=policy,
        trust=trust,
        now=datetime.now(UTC),
        source=str(args.bundle),
    )
    if not result.verified:
        print("sigverify: verification failed:", file=sys.stderr)
        for reason in result.reasons:
            print(f"  - {reason}", file=sys.stderr)
        return NOT_VERIFIED
    print(f"OK: {args.file_or_digest}")
    return 0


def artifact_digest(file_or_digest: str) -> str:
    """The protocol's rule: a `sha256:<hex>` that is not a path is a digest, else a file."""
    if _DIGEST.fullmatch(file_or_digest) and not Path(file_or_digest).exists():
        return file_or_digest.lower()
    sha = hashlib.sha256()
    try:
        with Path(file_or_digest).open("rb") as handle:
            while chunk := handle.read(1 << 20):
                sha.update(chunk)
    except OSError as exc:
        raise _InputError(f"artifact {file_or_digest}: cannot read: {exc.strerror}") from None
    return "sha256:" + sha.hexdigest()


def _policy(args: argparse.Namespace) -> dict[str, Any]:
    """The policy the flags ask for, as `POST /v1/verify/bundle` would take it."""
    identity, issuer = args.certificate_identity, args.certificate_oidc_issuer
    if (identity is None) != (issuer is None):
        raise _InputError("--certificate-identity and --certificate-oidc-issuer go together")
    if identity is None and args.key is None:
        raise _InputError(
            "expected --certificate-identity with --certificate-oidc-issuer, or --key"
        )
    raw: dict[str, Any] = {}
    if identity is not None:
        raw = {"certificateIdentity": identity, "certificateOidcIssuer": issuer}
    if args.key is not None:
        raw["keys"] = [_read(args.key, "--key").decode("utf-8", errors="replace")]
    return raw


def _trust_root(args: argparse.Namespace) -> tuple[bytes, str]:
    """The trusted_root.json to verify with, and where it came from."""
    from service.tlog.trust import (  # noqa: PLC0415 - see verify_bundle
        embedded_staging_root,
        load_trust_root_source,
    )

    if args.trusted_root is not None:
        return _read(args.trusted_root, "--trusted-root"), str(args.trusted_root)
    if args.staging:
        try:
            return embedded_staging_root(), "sigstore-python's embedded staging root"
        except OSError as exc:
            raise _InputError(
                f"--staging: no staging trusted root inside sigstore-python ({exc.strerror}) "
                "and no network to fetch one: give --trusted-root"
            ) from None
    source = load_trust_root_source(Settings.from_env())
    return source.data, source.origin


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _InputError(f"{flag} {path}: cannot read: {exc.strerror}") from None
