"""Property-based fuzzing of every route from the server's own /openapi.json.

Against the real gevent server subprocess: no input may give a 5xx, and every
answer must match the document (status code, content type, JSON schema).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error,
    response_schema_conformance, status_code_conformance,
)

from .conftest import ServerProcess


@pytest.fixture
def api(server: ServerProcess) -> schemathesis.schemas.BaseSchema:
    # the event stream stays open until its job ends: the SSE tests cover it
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(
        path="/jobs/{job_id}/events")


schema = schemathesis.pytest.from_fixture("api")


# Generating the cases is CPU work, slower beside the other xdist workers (pytest.ini).
@pytest.mark.slow
@pytest.mark.timeout(300)
@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_answers_match_the_schema(case: schemathesis.Case) -> None:
    # What must hold for any input: no 5xx, and an answer the document describes.
    # (A schema-valid body may still be refused for what it means: a pickle that is
    # no function, an id that is not a dead letter.)
    case.call_and_validate(timeout=10, checks=[
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_schema_conformance])
