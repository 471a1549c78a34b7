"""Every error mapping, end to end: {"error": {"code", "status", "message", "reason"}} with the right status."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from gateway.settings import GatewaySettings
from tests.gateway.servers import MODEL, SECOND_MODEL, RunningGateway, RunningInference, run_gateway, run_inference

PNG = {"Content-Type": "image/png"}


def error_of(response: httpx.Response, status: int, grpc_status: str, reason: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert error["code"] == status
    assert error["status"] == grpc_status
    assert isinstance(error["message"], str) and error["message"]
    if reason is not None:
        assert error["reason"] == reason
    assert set(error) <= {"code", "status", "message", "reason", "details"}
    if "details" in error:  # the google.rpc details, ErrorInfo first, saying the same reason
        info = error["details"][0]
        assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
        assert (info["reason"], info["domain"]) == (error["reason"], "tfic.dev")
    return error


def violations(error: dict[str, Any]) -> list[str]:
    return [
        v["field"]
        for d in error.get("details", ())
        if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for v in d["fieldViolations"]
    ]


@pytest.fixture(scope="module")
def slow_image() -> bytes:
    """A 5000×5000 PNG of one colour: a few KB on the wire, ~100 ms to decode and resize."""
    buf = io.BytesIO()
    Image.new("RGB", (5000, 5000), (120, 30, 200)).save(buf, "PNG")
    return buf.getvalue()


# --- errors from the inference service --------------------------------------------------------------------


def test_corrupt_image_is_400(client: httpx.Client, images: dict[str, bytes]) -> None:
    error = error_of(client.post("/invocations", content=images["truncated_png"], headers=PNG), 400, "INVALID_ARGUMENT")
    assert error["reason"] == "invalid_image"
    assert violations(error) == ["images[0]"]  # the inference service's BadRequest, passed through


def test_data_that_is_not_an_image_is_415(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post("/invocations", content=images["not_an_image"], headers=PNG)
    error = error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert error["reason"] == "unsupported_format"
    assert "not an image" in error["message"]


def test_empty_body_is_400(client: httpx.Client) -> None:
    error = error_of(client.post("/invocations", content=b"", headers=PNG), 400, "INVALID_ARGUMENT", "invalid_image")
    assert "empty" in error["message"]


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/invocations", {"X-Tfic-Model": "nope"}),
        ("/invocations", {"X-Amzn-SageMaker-Target-Model": "nope.tar.gz"}),
        ("/models/nope/invocations", {}),
    ],
)
def test_unknown_model_is_404(
    client: httpx.Client, images: dict[str, bytes], path: str, headers: dict[str, str]
) -> None:
    error = error_of(client.post(path, content=images["png"], headers={**PNG, **headers}), 404, "NOT_FOUND")
    assert error["reason"] == "model_not_found"
    assert "'nope'" in error["message"]
    assert error["details"][0]["metadata"] == {"model": "nope"}  # the ErrorInfo's context


@pytest.mark.parametrize(
    "path", [f"/models/{MODEL}/versions/7/invocations", f"/models/{MODEL}/labels/stable/invocations"]
)
def test_unknown_version_or_label_is_404(client: httpx.Client, images: dict[str, bytes], path: str) -> None:
    error_of(client.post(path, content=images["png"], headers=PNG), 404, "NOT_FOUND", "not_found")


def test_version_out_of_int64_range_is_400(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post(f"/models/{MODEL}/versions/{2**63}/invocations", content=images["png"], headers=PNG)
    error_of(response, 400, "INVALID_ARGUMENT")


def test_top_k_larger_than_the_classes_returns_them_all(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post("/invocations", params={"top_k": 2**31 - 1}, content=images["png"], headers=PNG)
    assert response.status_code == 200
    assert len(response.json()) == 3


# --- errors the gateway finds itself ----------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "image/gif", "application/json", "image/*"])
def test_unsupported_content_type_is_415(
    client: httpx.Client, images: dict[str, bytes], content_type: str | None
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    error = error_of(client.post("/invocations", content=images["png"], headers=headers), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert error["reason"] == "unsupported_format"
    assert "application/x-image, image/jpeg, image/png" in error["message"]


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml, text/csv;q=0.5", "application/json;q=0", "image/png"]
)
def test_unacceptable_accept_is_406(client: httpx.Client, images: dict[str, bytes], accept: str) -> None:
    response = client.post("/invocations", content=images["png"], headers={**PNG, "Accept": accept})
    error = error_of(response, 406, "NOT_ACCEPTABLE", "not_acceptable")
    assert "application/json;verbose" in error["message"]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", str(2**31)])
def test_bad_top_k_is_400(client: httpx.Client, images: dict[str, bytes], value: str) -> None:
    response = client.post("/invocations", params={"top_k": value}, content=images["png"], headers=PNG)
    assert "top_k" in error_of(response, 400, "INVALID_ARGUMENT")["message"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-Request-Timeout", "soon"),
        ("X-Request-Timeout", "0"),
        ("X-Request-Timeout", "-2"),
        ("X-Request-Timeout", "inf"),
    ],
)
def test_bad_timeout_header_is_400(client: httpx.Client, images: dict[str, bytes], header: str, value: str) -> None:
    response = client.post("/invocations", content=images["png"], headers={**PNG, header: value})
    assert header.lower() in error_of(response, 400, "INVALID_ARGUMENT")["message"]


def test_unknown_route_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    error = error_of(client.get("/nowhere"), 404, "NOT_FOUND", "route_not_found")
    assert "/nowhere" in error["message"]
    response = client.get("/invocations")
    error_of(response, 405, "METHOD_NOT_ALLOWED", "method_not_allowed")
    assert response.headers["allow"] == "POST"


# --- deadlines --------------------------------------------------------------------------------------------


def test_deadline_from_header_is_504(client: httpx.Client, slow_image: bytes) -> None:
    response = client.post("/invocations", content=slow_image, headers={**PNG, "X-Request-Timeout": "0.02"})
    error_of(response, 504, "DEADLINE_EXCEEDED", "deadline_exceeded")
    metrics = client.get("/metrics").text
    assert 'tfic_gateway_upstream_duration_seconds_count{code="DEADLINE_EXCEEDED",method="Classify"}' in metrics


def test_envoy_timeout_header_and_gateway_timeout(gateway: RunningGateway, slow_image: bytes) -> None:
    with gateway.client() as client:
        response = client.post(
            "/invocations", content=slow_image, headers={**PNG, "X-Envoy-Expected-Rq-Timeout-Ms": "20"}
        )
    error_of(response, 504, "DEADLINE_EXCEEDED")
    with (
        run_gateway(replace(gateway.settings, timeout_seconds=0.02)) as short,
        short.client() as client,
    ):
        error_of(client.post("/invocations", content=slow_image, headers=PNG), 504, "DEADLINE_EXCEEDED")
        # A longer header does not extend the gateway's own limit.
        response = client.post("/invocations", content=slow_image, headers={**PNG, "X-Request-Timeout": "60"})
        error_of(response, 504, "DEADLINE_EXCEEDED")


def test_a_fast_request_within_its_deadline_succeeds(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post("/invocations", content=images["png"], headers={**PNG, "X-Request-Timeout": "30"})
    assert response.status_code == 200


# --- body size limit --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit(inference: RunningInference) -> Iterator[RunningGateway]:
    with run_gateway(GatewaySettings(inference=inference.target, default_model=MODEL, max_body_bytes=1000)) as gw:
        yield gw


def test_declared_oversized_body_is_413(small_limit: RunningGateway) -> None:
    with small_limit.client() as client:
        response = client.post("/invocations", content=b"x" * 1001, headers=PNG)
        error = error_of(response, 413, "CONTENT_TOO_LARGE", "body_too_large")
        assert "1000" in error["message"]
        response = client.post("/v1/models/tiny:predict", content=b"{" + b" " * 2000 + b"}")
        error_of(response, 413, "CONTENT_TOO_LARGE", "body_too_large")


def test_streamed_oversized_body_is_413(small_limit: RunningGateway) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * 100

    with small_limit.client() as client:
        response = client.post("/invocations", content=chunks(), headers=PNG)
    error_of(response, 413, "CONTENT_TOO_LARGE", "body_too_large")


def test_body_at_the_limit_is_read(small_limit: RunningGateway, images: dict[str, bytes]) -> None:
    assert len(images["png"]) > 1000
    with small_limit.client() as client:
        response = client.post("/invocations", content=b"x" * 1000, headers=PNG)
    # Under the limit, so it reaches the inference service, which refuses the bytes as an image.
    error_of(response, 415, "UNSUPPORTED_MEDIA_TYPE", "unsupported_format")


# --- inference service down, queue full, several models --------------------------------------------------


def test_inference_down_is_503_with_retry_after(refused_port: int, images: dict[str, bytes]) -> None:
    settings = GatewaySettings(inference=f"127.0.0.1:{refused_port}", default_model=MODEL, retry_after_seconds=3)
    with run_gateway(settings) as gw, gw.client() as client:
        for method, path, body in (
            ("POST", "/invocations", images["png"]),
            ("POST", "/v1/models/tiny:predict", b'{"instances": [{"b64": "AAAA"}]}'),
            ("GET", "/models", None),
            ("GET", "/v1/models/tiny", None),
            ("GET", "/readyz", None),
            ("GET", "/ping", None),
        ):
            response = client.request(method, path, content=body, headers=PNG if path == "/invocations" else {})
            error = error_of(response, 503, "UNAVAILABLE")
            assert response.headers["retry-after"] == "3"
            assert "127.0.0.1" not in error["message"]  # gRPC's transport details stay in the gateway
        assert client.get("/healthz").status_code == 200


@pytest.fixture(scope="module")
def single_model(model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningInference]:
    """An inference service with one model, one decode worker and room for one queued image."""
    import shutil

    base = tmp_path_factory.mktemp("single")
    shutil.copytree(model_base / SECOND_MODEL, base / SECOND_MODEL)
    with run_inference(base, decode_workers=1, max_decode_queue=1) as running:
        yield running


def test_queue_full_is_429_with_retry_after(single_model: RunningInference, slow_image: bytes) -> None:
    with run_gateway(GatewaySettings(inference=single_model.target)) as gw, gw.client() as client:

        def post(_: int) -> httpx.Response:
            return client.post("/invocations", content=slow_image, headers=PNG)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 429 in codes, codes
    for response in responses:
        if response.status_code == 429:
            error = error_of(response, 429, "RESOURCE_EXHAUSTED", "resource_exhausted")
            assert response.headers["retry-after"] == "1"
            assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"} in error["details"]


def test_the_only_model_is_the_default(single_model: RunningInference, images: dict[str, bytes]) -> None:
    with run_gateway(GatewaySettings(inference=single_model.target)) as gw, gw.client() as client:
        response = client.post("/invocations", content=images["png"], headers=PNG)
        assert response.status_code == 200
        assert response.headers["x-tfic-model"] == SECOND_MODEL
        assert client.get("/ping").status_code == 200


def test_several_models_and_no_default_is_400(inference: RunningInference, images: dict[str, bytes]) -> None:
    with run_gateway(GatewaySettings(inference=inference.target)) as gw, gw.client() as client:
        error = error_of(client.post("/invocations", content=images["png"], headers=PNG), 400, "INVALID_ARGUMENT")
        assert f"{MODEL}, {SECOND_MODEL}" in error["message"]
        assert client.post("/invocations", content=images["png"], headers={**PNG, "X-Tfic-Model": MODEL}).is_success
        assert client.get("/ping").status_code == 200  # some model is loaded


def test_ping_is_503_when_the_default_model_is_not_served(inference: RunningInference) -> None:
    with run_gateway(GatewaySettings(inference=inference.target, default_model="nope")) as gw, gw.client() as client:
        error_of(client.get("/ping"), 503, "UNAVAILABLE")
        assert client.get("/readyz").status_code == 200


# --- auth -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_auth(inference: RunningInference) -> Iterator[RunningGateway]:
    settings = GatewaySettings(inference=inference.target, default_model=MODEL, auth_token="s3cret")
    with run_gateway(settings) as gw:
        yield gw


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic czNjcmV0", "Bearer", "s3cret"])
def test_auth_refuses(with_auth: RunningGateway, images: dict[str, bytes], authorization: str | None) -> None:
    headers = {**PNG, "X-Request-Id": "auth-1"}
    if authorization is not None:
        headers["Authorization"] = authorization
    with with_auth.client() as client:
        for method, path in (("POST", "/invocations"), ("GET", "/models"), ("POST", "/v1/models/tiny:predict")):
            response = client.request(method, path, content=images["png"], headers=headers)
            error_of(response, 401, "UNAUTHENTICATED", "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert response.headers["x-request-id"] == "auth-1"
        metrics = client.get("/metrics").text
    assert 'tfic_gateway_requests_total{code="401",route="/invocations"}' in metrics
    assert 'tfic_gateway_requests_total{code="401",route="/v1/models/{name}:predict"}' in metrics


def test_auth_accepts_the_token(with_auth: RunningGateway, images: dict[str, bytes]) -> None:
    with with_auth.client(headers={"Authorization": "Bearer s3cret"}) as client:
        assert client.post("/invocations", content=images["png"], headers=PNG).status_code == 200
        assert client.get("/models").status_code == 200
    with with_auth.client(headers={"Authorization": "bearer s3cret"}) as client:
        assert client.post("/invocations", content=images["png"], headers=PNG).status_code == 200


def test_auth_leaves_probes_metrics_and_openapi_open(with_auth: RunningGateway) -> None:
    with with_auth.client() as client:
        for path in ("/ping", "/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        document = client.get("/openapi.json").json()
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/ping"]["get"]["security"] == []
    assert "401" in document["paths"]["/invocations"]["post"]["responses"]


def test_auth_is_off_by_default(client: httpx.Client) -> None:
    assert client.get("/models").status_code == 200
    assert "security" not in client.get("/openapi.json").json()
