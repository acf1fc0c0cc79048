"""Property-based contract tests: schemathesis generates requests from openapi.yaml and checks
every answer of the real service (gunicorn, on 127.0.0.1) against the same document.

Every operation in the spec is tested, none excluded: the text ones (/metrics, /docs, ...) get
the status-code and content-type checks; the schema checks apply to their media types as the
spec declares them. Generation is bounded and derandomized, so CI runs the same cases every time.

Nothing may leave loopback. Generated image references name arbitrary hosts (`foo.com/x`), so
the service is configured to refuse every registry before any name lookup:
`SIGVERIFY_REGISTRY_ALLOW=127.0.0.1` refuses every other host by name, and
`SIGVERIFY_ALLOW_LOOPBACK=false` then refuses 127.0.0.1 itself; Rekor is a closed loopback port.
The test process is held to loopback by tests/netguard.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from schemathesis import Case, CheckFunction, HookContext
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.contract import SPEC_PATH
from tests.servers import ServiceServer, running

MAX_EXAMPLES = 30  # per operation, for the fuzzing phase (examples and coverage come on top)
SEED = 20240906

# A 4xx that turns away a request the spec does not allow. 413 and 414 are the body and request
# line limits: a large invalid body (21 keys where 20 are allowed) or query (an `image` of 600
# characters) may be refused for its size first.
REJECTED = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429]

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",  # no example database: the same cases locally and in CI
        },
        "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    }
)

schema = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG)

# What every response is checked for. Left out, on purpose:
# - positive_data_acceptance: the spec describes a request's shape; the service also checks its
#   meaning (a policy needs an identity or a key, an identity needs certificateIdentity[Regexp],
#   known Fulcio extension names, RE2 syntax, PEM keys, Docker's reference grammar) and answers
#   a documented 400 naming the field. JSON Schema cannot say all of that, so schema-valid
#   requests are rightly refused. (A 5xx for them is still caught by not_a_server_error.)
# - use_after_free, ensure_resource_availability, object_level_authorization: stateful checks
#   of created resources; this API creates none.
# - ignored_auth: authentication is off in this run (no tokens); tests/api/test_auth.py covers it.
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
]

NAMED_POLICY = "release"
POLICIES = f"""\
policies:
  - name: {NAMED_POLICY}
    tenant: platform
    public: true
    description: The one named policy, so generated requests can get past policy-not-found.
    policy:
      certificateIdentity: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
      certificateOidcIssuer: https://token.actions.githubusercontent.com
"""
_POLICY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def _is_policy_name(value: object) -> bool:
    return isinstance(value, str) and _POLICY_NAME.fullmatch(value) is not None


def _name_the_policy(value: Any) -> Any:
    """`value` with every valid `policyName` replaced by the policy the service has.

    One valid name for another: a generated request stays exactly as valid or invalid as it was.
    """
    if isinstance(value, dict):
        return {
            k: NAMED_POLICY if k == "policyName" and _is_policy_name(v) else _name_the_policy(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_name_the_policy(item) for item in value]
    return value


@schema.hook
def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Half the bodies name the existing policy, so they reach the registry guard."""
    named = _name_the_policy(body)
    return st.just(body) if named == body else st.sampled_from([body, named])


@schema.hook
def flatmap_query(context: HookContext, query: Any) -> st.SearchStrategy[Any]:
    """Half the badges name the existing policy, so they reach the registry guard."""
    if isinstance(query, dict) and _is_policy_name(query.get("policy")):
        return st.sampled_from([query, {**query, "policy": NAMED_POLICY}])
    return st.just(query)


@schema.hook
def flatmap_path_parameters(context: HookContext, path: Any) -> st.SearchStrategy[Any]:
    """Half the Gatekeeper calls name the existing policy, so they reach the registry guard."""
    if isinstance(path, dict) and _is_policy_name(path.get("policy")):
        return st.sampled_from([path, {**path, "policy": NAMED_POLICY}])
    return st.just(path)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    """The service under gunicorn on 127.0.0.1, unable to reach any registry or Rekor.

    One named policy, also the admission webhook's and the Gatekeeper provider's tenant's (so
    POST /v1/admission and /v1/gatekeeper are fuzzed rather than a 404), and no API tokens:
    authentication is off, every operation is reachable.
    """
    workdir = tmp_path_factory.mktemp("contract-fuzz")
    policy_file = workdir / "policies.yaml"
    policy_file.write_text(POLICIES)
    server = ServiceServer(
        workdir / "service",
        env={
            "SIGVERIFY_REKOR_URL": "http://127.0.0.1:1",
            "SIGVERIFY_REGISTRY_ALLOW": "127.0.0.1",
            "SIGVERIFY_ALLOW_LOOPBACK": "false",
            "SIGVERIFY_POLICY_FILE": str(policy_file),
            "SIGVERIFY_ADMISSION_POLICY": NAMED_POLICY,
            "SIGVERIFY_GATEKEEPER_TENANT": "platform",
        },
    )
    with running(server):
        yield server


@schema.parametrize()
def test_operation_keeps_the_contract(case: Case[Any], service: ServiceServer) -> None:
    """No 5xx, and status, content type, headers and body as openapi.yaml documents them."""
    case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=30)
