"""Properties of policy parsing over generated policies (tests/hostile.py): it raises nothing
but `PolicyError` (naming a field where one is to blame), and an accepted policy's conditions
evaluate against any statement without raising.

What found the NaN and 2^53 conditions (a 500 from the policy digest) and lone surrogates.
Policies from a policy file are YAML, so keys here may also be numbers or null. Seeded and
bounded (see `SETTINGS`)."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from service.core import PolicyError, policy_from_mapping
from service.core.conditions import Budget
from tests.hostile import JSON_VALUES, POLICIES, SCALARS

SETTINGS = settings(
    max_examples=800,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# Policies, and mappings with keys a YAML file can have but JSON cannot.
YAML_POLICIES = POLICIES | st.dictionaries(
    st.integers() | st.none() | st.booleans(), SCALARS, max_size=3
).map(lambda d: {"certificateIdentity": "a", "extensions": d})


@SETTINGS
@given(YAML_POLICIES, JSON_VALUES)
def test_policies_parse_or_raise_policy_error(raw: Any, statement: Any) -> None:
    try:
        policy = policy_from_mapping(raw, max_regexp_length=256, trust_roots=("default",))
    except PolicyError as exc:
        assert exc.field is None or isinstance(exc.field, str)
        return
    assert policy.digest.startswith("sha256:") and len(policy.digest) == 71
    document = statement if isinstance(statement, dict) else {"predicate": statement}
    budget = Budget()
    for requirement in policy.attestations:
        for condition in requirement.conditions:
            condition.evaluate(document, None, budget)
