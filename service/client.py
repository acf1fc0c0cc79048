"""`sigverify verify`: the client a CI job runs, with `cosign verify`'s flags::

    sigverify verify [--server URL | --local] (identity flags | --key FILE | --policy NAME)
        [--attestation TYPE ...] [--output text|json] IMAGE [IMAGE ...]

Every image goes to the service in one `POST /v1/verify/batch` call (`--server`, else
`SIGVERIFY_SERVER`; the bearer token from `SIGVERIFY_TOKEN`, never a flag, so that it stays out
of process lists and logs). With `--local` the same verification runs in this process: the
service's own wiring (`build_services`), its settings from `SIGVERIFY_*` and the flags that
override them, and the batch code of the API, so the answer is the one the server would give.

Exit status: 0 every image verified (or failed only under a named policy in audit mode, which
is reported and not enforced); 1 an image did not verify; 2 an image, or the whole request,
could not be verified (usage, settings, network, a 4xx or 5xx answer). 1 wins over 2: an image
known to be bad is the answer to act on, whatever else could not be checked.

Output: a block per image on stdout (reference, digest, result, signer, reasons), or with
`--output json` the answer as the server gives it (or the problem it refused the request with).
Where `GITHUB_STEP_SUMMARY` names a file (GitHub Actions), a Markdown table is appended to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

from service.config import PREFIX, Settings, SettingsError

VERIFIED, NOT_VERIFIED, CANNOT_VERIFY = 0, 1, 2
SERVER_ENV = PREFIX + "SERVER"
TOKEN_ENV = PREFIX + "TOKEN"
DEFAULT_TIMEOUT = 120.0
CONNECT_TIMEOUT = 10.0
BATCH_PATH = "/v1/verify/batch"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"

# cosign's identity flags and the policy fields they set (README's policy table).
IDENTITY_FLAGS = {
    "--certificate-identity": "certificateIdentity",
    "--certificate-identity-regexp": "certificateIdentityRegexp",
    "--certificate-oidc-issuer": "certificateOidcIssuer",
    "--certificate-oidc-issuer-regexp": "certificateOidcIssuerRegexp",
    "--certificate-github-workflow-trigger": "certificateGithubWorkflowTrigger",
    "--certificate-github-workflow-sha": "certificateGithubWorkflowSha",
    "--certificate-github-workflow-name": "certificateGithubWorkflowName",
    "--certificate-github-workflow-repository": "certificateGithubWorkflowRepository",
    "--certificate-github-workflow-ref": "certificateGithubWorkflowRef",
}
# Flags of `--local` and the settings they override.
LOCAL_FLAGS = {
    "--trusted-root": "trust_root_file",
    "--rekor-url": "rekor_url",
    "--policy-file": "policy_file",
    "--insecure-registry": "insecure_registries",
    "--allow-loopback": "allow_loopback",
    "--allow-private": "allow_private",
}


class ClientError(Exception):
    """Why `sigverify verify` has no answer about the images (exit status 2)."""

    problem: Mapping[str, Any] | None = None


class UsageError(ClientError):
    """The command line (or a file it names) cannot be used; the message says which part."""


class NoAnswerError(ClientError):
    """The service gave no usable answer: network, timeout, or a refused request."""

    def __init__(self, message: str, problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.problem = problem


def _flag(option: str) -> str:
    """argparse's attribute name of `option`."""
    return option.removeprefix("--").replace("-", "_")


def add_parser(commands: Any) -> None:
    """Add `verify` to the `sigverify` subcommands."""
    verify = commands.add_parser(
        "verify",
        help="verify images with a sigverify service (or --local), for CI",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument("images", nargs="+", metavar="IMAGE", help="image references")
    where = verify.add_argument_group("where to verify")
    where.add_argument(
        "--server", metavar="URL", help=f"the service's base URL (default: ${SERVER_ENV})"
    )
    where.add_argument(
        "--local",
        action="store_true",
        help="verify in this process, with the embedded trust root unless told otherwise",
    )
    where.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the answer (default {DEFAULT_TIMEOUT:g})",
    )
    policy = verify.add_argument_group(
        "policy", "cosign verify's flags, or a named policy of the server (GET /v1/policies)"
    )
    for option, field in IDENTITY_FLAGS.items():
        policy.add_argument(option, metavar="TEXT", help=f"policy field {field}")
    policy.add_argument(
        "--key",
        action="append",
        type=Path,
        metavar="FILE",
        help="a PEM public key of a key-based signer (repeatable)",
    )
    policy.add_argument(
        "--attestation",
        action="append",
        metavar="TYPE",
        help="require an attestation of this predicate type, signed by the same signers: a URI "
        "or cosign's --type name (slsaprovenance, slsaprovenance1, spdxjson, cyclonedx, vuln, "
        "openvex, custom; repeatable)",
    )
    policy.add_argument("--policy", metavar="NAME", help="a named policy instead of the flags")
    local = verify.add_argument_group(
        "--local only", "settings of the in-process verifier; the other SIGVERIFY_* apply too"
    )
    local.add_argument(
        "--trusted-root",
        "--trust-root",
        type=Path,
        metavar="FILE",
        help="a trusted_root.json (SIGVERIFY_TRUST_ROOT_FILE; default: the production root)",
    )
    local.add_argument("--rekor-url", metavar="URL", help="SIGVERIFY_REKOR_URL")
    local.add_argument(
        "--policy-file", type=Path, metavar="FILE", help="named policies (SIGVERIFY_POLICY_FILE)"
    )
    local.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST[:PORT]",
        help="a registry reached over plain HTTP (SIGVERIFY_INSECURE_REGISTRIES; repeatable)",
    )
    local.add_argument(
        "--allow-loopback", action="store_true", help="registries on loopback addresses"
    )
    local.add_argument(
        "--allow-private", action="store_true", help="registries on private addresses"
    )
    output = verify.add_argument_group("output")
    output.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text: a block per image (default); json: the server's answer as it is",
    )
    output.add_argument(
        "-v", "--verbose", action="store_true", help="say what is asked, and log (--local)"
    )
    verify.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`sigverify verify`: ask, print, summarise; returns the exit status."""
    try:
        body = request_body(args)
        if args.local:
            answer = verify_locally(body, args)
        else:
            answer = ask_server(server_url(args), body, os.environ.get(TOKEN_ENV), args)
        outcomes = judge(answer, args.images)
    except (ClientError, SettingsError) as exc:
        problem = exc.problem if isinstance(exc, ClientError) else None
        message = str(exc) if isinstance(exc, ClientError) else f"configuration error: {exc}"
        if args.output == "json" and problem is not None:
            print(json.dumps(problem, indent=2))
        print(f"sigverify: {message}", file=sys.stderr)
        append_step_summary(failure_markdown(message))
        return CANNOT_VERIFY
    if args.output == "json":
        print(json.dumps(answer, indent=2))
    else:
        print(human_summary(outcomes))
    append_step_summary(markdown_summary(outcomes))
    return exit_status(outcomes)


# -- the request ---------------------------------------------------------------------------------


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /v1/verify/batch` body the flags ask for."""
    if args.local and args.server:
        raise UsageError("--server and --local: give one, the service or this process")
    if not args.local:
        given = [option for option in LOCAL_FLAGS if getattr(args, _flag(option))]
        if given:
            raise UsageError(f"{given[0]} applies to --local only; the server has its settings")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: expected a number of seconds above 0")
    images = [{"image": image} for image in args.images]
    fields = {
        field: getattr(args, _flag(option))
        for option, field in IDENTITY_FLAGS.items()
        if getattr(args, _flag(option)) is not None
    }
    if args.policy is not None:
        inline = [o for o in (*IDENTITY_FLAGS, "--key", "--attestation") if getattr(args, _flag(o))]
        if inline:
            raise UsageError(f"--policy and {inline[0]}: a named policy says whom to trust itself")
        return {"policyName": args.policy, "images": images}
    identity = fields.keys() & {"certificateIdentity", "certificateIdentityRegexp"}
    issuer = fields.keys() & {"certificateOidcIssuer", "certificateOidcIssuerRegexp"}
    if identity and not issuer:
        raise UsageError(
            "--certificate-oidc-issuer[-regexp] goes with --certificate-identity[-regexp], "
            "as in cosign: an identity means something only with the issuer that vouches for it"
        )
    if issuer and not identity:
        raise UsageError(
            "--certificate-identity[-regexp] goes with --certificate-oidc-issuer[-regexp], "
            "as in cosign: an issuer alone would accept anyone it vouches for"
        )
    if not fields and not args.key:
        raise UsageError(
            "say whom to trust: --certificate-identity[-regexp] with "
            "--certificate-oidc-issuer[-regexp], --key FILE, or --policy NAME"
        )
    policy: dict[str, Any] = dict(fields)
    if args.key:
        policy["keys"] = [_read_text(path, "--key") for path in args.key]
    if args.attestation:
        policy["attestations"] = [{"predicateType": kind} for kind in args.attestation]
    return {"policy": policy, "images": images}


def _read_text(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{flag} {path}: not a PEM file (not UTF-8 text)") from None


def server_url(args: argparse.Namespace) -> str:
    """The service's base URL from `--server` or `SIGVERIFY_SERVER`, checked."""
    import httpx  # noqa: PLC0415 - keeps the other commands light

    url = args.server or os.environ.get(SERVER_ENV, "")
    source = "--server" if args.server else SERVER_ENV
    if not url:
        raise UsageError(f"no server: give --server URL or set {SERVER_ENV} (or verify --local)")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UsageError(f"{source} {url!r}: {exc}") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise UsageError(f"{source} {url!r}: expected an http(s) URL such as https://sigverify")
    if parsed.userinfo or parsed.query or parsed.fragment:
        raise UsageError(f"{source} {url!r}: expected no credentials, query or fragment")
    return url


def ask_server(
    url: str, body: dict[str, Any], token: str | None, args: argparse.Namespace
) -> dict[str, Any]:
    """The service's answer to `body`; anything but a 200 batch answer is `NoAnswerError`."""
    import httpx  # noqa: PLC0415 - keeps the other commands light

    headers = {
        "accept": "application/json, application/problem+json",
        "user-agent": f"sigverify-cli/{version('sigverify')}",
    }
    if token:
        headers["authorization"] = f"Bearer {token.strip()}"
    timeout = httpx.Timeout(args.timeout, connect=min(args.timeout, CONNECT_TIMEOUT))
    endpoint = url.rstrip("/") + BATCH_PATH
    if args.verbose:
        print(f"sigverify: POST {endpoint} ({len(body['images'])} images)", file=sys.stderr)
    try:
        with httpx.Client(timeout=timeout, headers=headers, follow_redirects=False) as client:
            response = client.post(endpoint, json=body)
    except httpx.TimeoutException:
        raise NoAnswerError(f"{endpoint}: no answer within {args.timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise NoAnswerError(f"{endpoint}: {exc or type(exc).__name__}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code != 200:
        raise NoAnswerError(
            refusal(response.status_code, answer), answer if isinstance(answer, dict) else None
        )
    if not isinstance(answer, dict):
        raise NoAnswerError(f"{endpoint}: the answer is not a JSON object")
    return answer


def refusal(status: int, problem: Any) -> str:
    """What a non-200 answer says, with each bad field named by its flag."""
    if not isinstance(problem, dict):
        return f"the server answered {status} without a problem document"
    text = f"the server answered {status} {problem.get('title', '')}: {problem.get('detail', '')}"
    errors = problem.get("errors")
    if isinstance(errors, dict):
        for field, messages in errors.items():
            if isinstance(messages, list):
                text += f"\n  {flag_of(str(field))}: {'; '.join(map(str, messages))}"
    return text


def flag_of(field: str) -> str:
    """The command-line flag behind a request field (`policy.keys.0` is `--key`)."""
    parts = field.split(".")
    if parts[:1] == ["images"] and len(parts) > 1 and parts[1].isdigit():
        return f"IMAGE {int(parts[1]) + 1}"
    if parts[:1] == ["policyName"]:
        return "--policy"
    if parts[:1] == ["policy"] and len(parts) > 1:
        name = re.split(r"[.\[]", parts[1])[0]
        if name == "keys":
            return "--key"
        if name == "attestations":
            return "--attestation"
        kebab = re.sub(r"([A-Z])", lambda m: "-" + m.group(1).lower(), name)
        if f"--{kebab}" in IDENTITY_FLAGS:
            return f"--{kebab}"
    return field


# -- verifying in this process -------------------------------------------------------------------


def local_settings(args: argparse.Namespace, data_dir: Path) -> Settings:
    """The service's settings from `SIGVERIFY_*`, the `--local` flags over them, and a data
    directory of this run's own unless `SIGVERIFY_DATA_DIR` names one."""
    settings = Settings.from_env()
    changes: dict[str, Any] = {}
    for option, name in LOCAL_FLAGS.items():
        value = getattr(args, _flag(option))
        if not value:
            continue
        if name == "insecure_registries":
            value = (*settings.insecure_registries, *value)
        if isinstance(value, Path) and not value.is_file():
            raise UsageError(f"{option} {value}: no such file")
        if name == "trust_root_file":
            changes["tuf_url"] = None  # the flag is the one trust-root source
        changes[name] = value
    if PREFIX + "DATA_DIR" not in os.environ:
        changes["data_dir"] = data_dir
    settings = dataclasses.replace(settings, **changes)
    settings.check()
    return settings


def verify_locally(body: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The batch answer the service would give to `body`, computed in this process."""
    from marshmallow import ValidationError  # noqa: PLC0415 - only --local loads the service

    from service import core, logs  # noqa: PLC0415
    from service.api.batch import batch_answer, verify_all  # noqa: PLC0415
    from service.api.schemas import BatchRequestSchema  # noqa: PLC0415
    from service.api.verify import ChosenPolicy  # noqa: PLC0415
    from service.app import build_services  # noqa: PLC0415

    logs.configure("text", "INFO" if args.verbose else "ERROR")
    with tempfile.TemporaryDirectory(prefix="sigverify-") as scratch:
        settings = local_settings(args, Path(scratch))
        services = build_services(settings)
        try:
            loaded = BatchRequestSchema(settings.batch_max_images).load(body)
        except ValidationError as exc:
            raise UsageError(_validation_message(exc.messages)) from None
        if "policyName" in loaded:
            named = services.policies.get(loaded["policyName"])
            if named is None:
                where = settings.policy_file or f"no --policy-file or {PREFIX}POLICY_FILE"
                raise UsageError(f"--policy {loaded['policyName']}: no such policy ({where})")
            chosen = ChosenPolicy(named.policy, named.name, named.mode)
        else:
            try:
                policy = core.policy_from_mapping(
                    loaded["policy"],
                    max_regexp_length=settings.max_regexp_length,
                    trust_roots=services.verifier.trust_root_names,
                )
            except core.PolicyError as exc:
                where = flag_of(f"policy.{exc.field}") if exc.field else "policy"
                raise UsageError(f"{where}: {exc}") from None
            chosen = ChosenPolicy(policy, None, "enforce")
        jobs = [(item["image"], chosen) for item in loaded["images"]]
        results = verify_all(services, jobs, timeout=args.timeout, instance=BATCH_PATH)
        return batch_answer(results)


def _validation_message(messages: Any, prefix: str = "") -> str:
    """marshmallow's nested messages as `flag: message` lines."""
    lines: list[str] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            lines.append(_validation_message(value, f"{prefix}.{key}" if prefix else str(key)))
        return "\n  ".join(lines)
    text = "; ".join(map(str, messages)) if isinstance(messages, list) else str(messages)
    return f"{flag_of(prefix)}: {text}"


# -- the answer ----------------------------------------------------------------------------------

Result = Literal["verified", "not verified", "not enforced", "could not verify"]


@dataclass(frozen=True)
class Outcome:
    """One image's answer, as the summary and the exit status read it."""

    image: str
    result: Result
    digest: str | None = None
    policy: str | None = None
    signers: tuple[str, ...] = ()
    signed_by: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    status: int = 200
    degraded: bool = False


def judge(answer: Mapping[str, Any], images: Sequence[str]) -> list[Outcome]:
    """Each image's outcome, in order; an answer that does not fit the request is refused."""
    results = answer.get("results")
    if not isinstance(results, list) or len(results) != len(images):
        raise NoAnswerError(f"the answer has no result for each of the {len(images)} images")
    outcomes: list[Outcome] = []
    for image, result in zip(images, results, strict=True):
        if not isinstance(result, dict) or result.get("image") != image:
            raise NoAnswerError(f"the answer's results are not those of the images asked ({image})")
        outcomes.append(_outcome(image, result))
    return outcomes


def _strings(values: Any) -> tuple[str, ...]:
    if not isinstance(values, list):
        return ()
    return tuple(dict.fromkeys(str(v) for v in values if v))


def _outcome(image: str, result: Mapping[str, Any]) -> Outcome:
    verdict = result.get("verdict")
    if result.get("status") != 200 or not isinstance(verdict, dict):
        problem = result.get("problem") if isinstance(result.get("problem"), dict) else {}
        assert isinstance(problem, dict)
        kind = str(problem.get("type", "")).rsplit("/", 1)[-1]
        detail = problem.get("detail") or problem.get("title") or "no verdict"
        status = result.get("status")
        return Outcome(
            image,
            "could not verify",
            reasons=(f"{kind}: {detail}" if kind else str(detail),),
            status=status if isinstance(status, int) else 0,
        )
    verified = verdict.get("verified") is True
    policy = verdict.get("policy") if isinstance(verdict.get("policy"), dict) else {}
    assert isinstance(policy, dict)
    outcome: Result = "verified"
    if not verified:
        outcome = "not enforced" if verdict.get("enforced") is False else "not verified"
    name = policy.get("name")
    image_part = verdict.get("image") if isinstance(verdict.get("image"), dict) else {}
    assert isinstance(image_part, dict)
    signatures = verdict.get("signatures")
    return Outcome(
        image,
        outcome,
        digest=image_part.get("digest"),
        policy=f"{name} ({policy.get('mode', 'enforce')})" if name else None,
        signers=_strings(verdict.get("signers")),
        signed_by=_strings(
            [s.get("signer") for s in signatures if isinstance(s, dict)]
            if isinstance(signatures, list)
            else []
        ),
        reasons=_strings(verdict.get("reasons")),
        degraded=verdict.get("degraded") is True,
    )


def exit_status(outcomes: Iterable[Outcome]) -> int:
    """0 all verified (an audit policy's failure included); 1 a failure; else 2 an error."""
    results = {o.result for o in outcomes}
    if "not verified" in results:
        return NOT_VERIFIED
    if "could not verify" in results:
        return CANNOT_VERIFY
    return VERIFIED


def _tally(outcomes: Sequence[Outcome]) -> str:
    verified = sum(o.result == "verified" for o in outcomes)
    text = f"{verified} of {len(outcomes)} image{'' if len(outcomes) == 1 else 's'} verified"
    rest = [
        f"{count} {label}"
        for label, result in (
            ("not verified", "not verified"),
            ("failed under an audit policy (not enforced)", "not enforced"),
            ("could not be verified", "could not verify"),
        )
        if (count := sum(o.result == result for o in outcomes))
    ]
    return text + (": " + ", ".join(rest) if rest else "")


def human_summary(outcomes: Sequence[Outcome]) -> str:
    """A block per image, then the tally."""
    lines: list[str] = []
    for o in outcomes:
        heading = o.result.upper() if o.result != "verified" else "verified"
        if o.result == "not enforced":
            heading = "NOT VERIFIED (audit policy: not enforced)"
        if o.result == "could not verify" and o.status:
            heading += f" ({o.status})"
        lines.append(f"{o.image}: {heading}")
        if o.digest:
            lines.append(f"  digest:  {o.digest}")
        if o.policy:
            lines.append(f"  policy:  {o.policy}")
        lines += [f"  signer:  {s}" for s in o.signers]
        if not o.signers:
            lines += [f"  signed by: {s}" for s in o.signed_by]
        if o.degraded:
            lines.append("  note:    Rekor unreachable; a verified inclusion promise carried it")
        lines += [f"  reason:  {r}" for r in o.reasons]
    lines.append(_tally(outcomes))
    return "\n".join(lines)


# -- GitHub's step summary -----------------------------------------------------------------------

_ICONS = {
    "verified": "✅ verified",
    "not verified": "❌ not verified",
    "not enforced": "⚠️ not verified (audit policy: not enforced)",
    "could not verify": "⚠️ could not verify",
}


def code(text: str) -> str:
    """`text` as a Markdown code span in a table cell: no link, HTML or emphasis in it, so
    what a signer or registry wrote shows as written, and a `|` does not end the cell."""
    flat = " ".join(text.split()).replace("|", "\\|")
    ticks = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (ticks + 1)
    return f"{fence} {flat} {fence}" if flat else ""


def markdown_summary(outcomes: Sequence[Outcome]) -> str:
    """The step summary: the tally, then one table row per image."""
    rows = [
        f"### sigverify: {_tally(outcomes)}",
        "",
        "| image | digest | result | signer | reasons |",
        "| --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        result = _ICONS[o.result] + (f" ({o.status})" if o.result == "could not verify" else "")
        if o.policy:
            result += f"<br>policy {code(o.policy)}"
        signer = "<br>".join(code(s) for s in o.signers) or "<br>".join(
            "signed by " + code(s) for s in o.signed_by
        )
        reasons = "<br>".join(code(r) for r in o.reasons)
        rows.append(
            f"| {code(o.image)} | {code(o.digest or '')} | {result} | {signer} | {reasons} |"
        )
    return "\n".join(rows) + "\n"


def failure_markdown(message: str) -> str:
    """The step summary when no image got an answer."""
    lines = "<br>".join(code(line) for line in message.splitlines())
    return f"### sigverify: could not verify\n\n{lines}\n"


def append_step_summary(markdown: str) -> None:
    """Append to `$GITHUB_STEP_SUMMARY` when it is set; a summary that cannot be written is
    said on stderr and changes no exit status."""
    path = os.environ.get(STEP_SUMMARY_ENV)
    if not path:
        return
    try:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(markdown + "\n")
    except OSError as exc:
        print(f"sigverify: {STEP_SUMMARY_ENV} {path}: cannot write: {exc}", file=sys.stderr)
