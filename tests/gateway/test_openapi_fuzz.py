"""An OpenAPI-driven fuzz run (schemathesis, Python API) against the real gateway and inference service.

Every operation of /openapi.json gets a bounded number of generated requests from a fixed seed; each
response must not be a 5xx and must match the document: a documented status code, content type,
headers and body schema.
"""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway import openapi
from gateway.settings import GatewaySettings
from tests.gateway.servers import MODEL, RunningGateway

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 12


# The document the session's gateway serves (test_served_document_is_the_fuzzed_one checks it): loaded
# at import so schemathesis can parametrize (its lazy from_fixture loader does not run on pytest 9).
DOCUMENT = openapi.build(GatewaySettings(default_model=MODEL))
schemathesis.serializer.alias("application/x-image", "application/octet-stream")  # raw bytes on the wire
# The operator routes would unload the session's shared model mid-run; test_gateway_model_control.py tests them.
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path_regex=r":(un)?load$")
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE], max_examples=MAX_EXAMPLES, deterministic=True
)


def test_served_document_is_the_fuzzed_one(client: httpx.Client) -> None:
    assert client.get("/openapi.json").json() == DOCUMENT


def _long_deadline(case: Any) -> None:
    if case.headers and "X-Request-Timeout" in case.headers:
        # Expiring deadlines are tested in test_errors.py; a generated 5e-324 s deadline would rightly get 504.
        case.headers["X-Request-Timeout"] = str(max(float(case.headers["X-Request-Timeout"]), 30.0))


SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


@schema.parametrize()
@SETTINGS
def test_openapi(case: Any, gateway: RunningGateway) -> None:
    """Generated values everywhere (most model names are unknown: 404)."""
    _long_deadline(case)
    case.call_and_validate(base_url=gateway.url, checks=CHECKS, timeout=60)


@schema.parametrize()
@SETTINGS
def test_openapi_served_model(case: Any, gateway: RunningGateway) -> None:
    """The same with the served model's name, so bodies reach the model (generated PNGs, random bytes, JSON)."""
    _long_deadline(case)
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = MODEL
        if "version" in case.path_parameters:
            case.path_parameters["version"] = 1 + int(case.path_parameters["version"]) % 2
    if case.headers:
        for header in ("X-Tfic-Model", "X-Amzn-SageMaker-Target-Model"):
            if header in case.headers:
                case.headers[header] = MODEL
    case.call_and_validate(base_url=gateway.url, checks=CHECKS, timeout=60)
