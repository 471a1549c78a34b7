"""The gateway presents its credential to the inference service: a bearer token, TLS verified by the given
roots, and a client certificate (mTLS), against a real gRPC server on loopback that requires all three
(tests/gateway/classifier_server.py; the inference service's own check is part of the service's tests)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.certs import self_signed
from tests.gateway.classifier_server import MODEL, ClassifierServer
from tests.gateway.servers import LoopThread, run_gateway
from tfic.errors import InvalidArgument

TOKEN = "upstream-s3cret"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upstream-tls")
    server_cert, server_key = self_signed(folder, "inference")
    client_cert, client_key = self_signed(folder, "gateway")
    return {"server_cert": server_cert, "server_key": server_key, "client_cert": client_cert, "client_key": client_key}


@pytest.fixture(scope="module")
def secured(certs: dict[str, Path]) -> Iterator[ClassifierServer]:
    """Token, TLS and a client certificate signed by the gateway's CA all required."""
    loop = LoopThread("secured-upstream")
    credentials = grpc.ssl_server_credentials(
        [(certs["server_key"].read_bytes(), certs["server_cert"].read_bytes())],
        root_certificates=certs["client_cert"].read_bytes(),
        require_client_auth=True,
    )
    server = ClassifierServer(loop, token=TOKEN, credentials=credentials)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        loop.close()


def classify(gateway_url: str) -> httpx.Response:
    with httpx.Client(base_url=gateway_url, timeout=10) as client:
        return client.post(f"/models/{MODEL}/invocations", content=b"img", headers={"Content-Type": "image/png"})


def settings_for(server: ClassifierServer, **kwargs: object) -> GatewaySettings:
    return GatewaySettings(inference=f"localhost:{server.port}", reconnect_max_backoff_seconds=0.2, **kwargs)  # type: ignore[arg-type]


def test_token_tls_and_client_certificate_reach_the_service(secured: ClassifierServer, certs: dict[str, Path]) -> None:
    settings = settings_for(
        secured,
        inference_auth_token=TOKEN,
        inference_ca=certs["server_cert"],
        inference_cert=certs["client_cert"],
        inference_key=certs["client_key"],
    )
    with run_gateway(settings) as gateway:
        response = classify(gateway.url)
        assert response.status_code == 200, response.text
        ready = httpx.get(gateway.url + "/readyz", timeout=10)
        assert ready.status_code == 200
    assert secured.servicer is not None
    assert secured.servicer.seen_metadata[-1]["authorization"] == f"Bearer {TOKEN}"


def test_a_refused_token_is_the_gateways_fault_not_the_callers(
    secured: ClassifierServer, certs: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        secured,
        inference_auth_token="wrong",
        inference_ca=certs["server_cert"],
        inference_cert=certs["client_cert"],
        inference_key=certs["client_key"],
    )
    with caplog.at_level(logging.ERROR, "gateway.errors"), run_gateway(settings) as gateway:
        response = classify(gateway.url)
    assert response.status_code == 500  # not 401: the caller cannot fix the gateway's token
    assert response.json()["error"]["status"] == "INTERNAL"
    assert "refused the gateway's credential" in caplog.text


@pytest.mark.parametrize("missing", ["client certificate", "TLS"])
def test_without_the_certificate_or_tls_the_service_is_unreachable(
    secured: ClassifierServer, certs: dict[str, Path], missing: str
) -> None:
    extra: dict[str, object] = {"inference_ca": certs["server_cert"]} if missing == "client certificate" else {}
    with run_gateway(settings_for(secured, inference_auth_token=TOKEN, **extra)) as gateway:
        response = classify(gateway.url)
    assert response.status_code == 503
    assert response.json()["error"]["status"] == "UNAVAILABLE"


def test_credential_settings_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="--inference-cert and --inference-key go together"):
        GatewaySettings(inference_cert=Path(__file__))
    with pytest.raises(InvalidArgument, match=r"--inference-ca /nonexistent\.pem is not a file"):
        GatewaySettings(inference_ca=Path("/nonexistent.pem"))
    with pytest.raises(InvalidArgument, match="--inference-auth-token must not be blank"):
        GatewaySettings(inference_auth_token=" ")
    assert GatewaySettings(inference_ca=Path(__file__)).inference_uses_tls
    assert not GatewaySettings().inference_uses_tls
