"""Schemathesis over every operation of ``/openapi.json``, in-process, bounded and seeded.

Valid and invalid inputs generated from the schema must never be answered 5xx, every
error must be problem+json, and no successful answer may carry NaN or Infinity.
Requests alternate between an unknown model id and the ready ``multiclass_model``.
"""

from __future__ import annotations

import itertools

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402  (hypothesis comes with schemathesis)
from hypothesis.errors import Unsatisfiable  # noqa: E402

from tests.helpers.service import ALICE  # noqa: E402

EXAMPLES_PER_OPERATION = 40
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,  # the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


def _violation(response) -> str | None:
    content_type = response.headers.get("content-type", "")
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    if response.status_code >= 500:
        return "server error"
    if response.status_code >= 400 and not content_type.startswith("application/problem+json"):
        return f"error without problem+json ({content_type!r})"
    if response.status_code < 300 and ("NaN" in response.text or "Infinity" in response.text):
        return "non-finite number in a successful answer"
    return None


@pytest.mark.filterwarnings(
    "ignore::hypothesis.errors.HypothesisDeprecationWarning"
)  # from schemathesis itself
def test_generated_requests_never_break_the_error_contract(service, multiclass_model):
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    use_ready_model = itertools.cycle([False, True])
    violations: list[str] = []
    for mode, result in itertools.product(schemathesis.GenerationMode, schema.get_all_operations()):
        operation = result.ok()

        @given(case=operation.as_strategy(mode))
        @FUZZ_SETTINGS
        def call(case) -> None:
            if next(
                use_ready_model
            ):  # the path id stays generated: DELETE must not hit the shared model
                for container in (case.query, case.body):
                    if isinstance(container, dict) and "model_id" in container:
                        container["model_id"] = multiclass_model.id
            response = case.call(headers={**(case.headers or {}), **ALICE})
            problem = _violation(response)
            if problem is not None:
                violations.append(
                    f"{mode.value} {operation.label}: {problem}, {response.status_code}; "  # noqa: B023
                    f"query={case.query!r} body={str(case.body)[:200]} -> {response.text[:300]}"
                )

        try:
            call()
        except Unsatisfiable:  # no invalid input exists for an operation without parameters
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert violations == [], "\n".join(violations[:20])
