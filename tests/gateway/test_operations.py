"""Health checks, model listing, metrics, the OpenAPI document, and graceful shutdown."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.app import create_app
from tests.gateway.servers import LABELS, MODEL, SECOND_MODEL, RunningGateway, run_gateway

PNG = {"Content-Type": "image/png"}


def test_health_routes(client: httpx.Client) -> None:
    for path, body in (("/ping", {"status": "ok"}), ("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.json() == body
        assert response.headers["content-type"] == "application/json"


def test_models(client: httpx.Client) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    models = response.json()["models"]
    assert [m["name"] for m in models] == [MODEL, SECOND_MODEL]
    tiny = models[0]
    assert [v["version"] for v in tiny["versions"]] == [1, 2]
    assert tiny["versions"][1] == {
        "version": 2,
        "state": "AVAILABLE",
        "error": "",
        "labels": list(LABELS),
        "input_shape": {"height": 16, "width": 16, "channels": 3},
        "version_labels": [],
        "output": "multi_class",
        "threshold": 0.0,
    }
    assert client.get(f"/models/{SECOND_MODEL}").json() == models[1]
    missing = client.get("/models/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["reason"] == "model_not_found"


def test_metrics_use_route_templates(gateway: RunningGateway, images: dict[str, bytes]) -> None:
    with gateway.client() as client:
        client.post("/invocations", content=images["png"], headers=PNG)
        client.post(f"/models/{MODEL}/versions/1/invocations", content=images["png"], headers=PNG)
        client.post("/models/nope/invocations", content=images["png"], headers=PNG)
        client.get("/no/such/path/12345")
        text = client.get("/metrics").text
        assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert 'tfic_gateway_requests_total{code="200",route="/models/{name}/versions/{version}/invocations"}' in text
    assert 'tfic_gateway_requests_total{code="404",route="/models/{name}/invocations"}' in text
    assert 'tfic_gateway_requests_total{code="404",route="unmatched"}' in text
    assert "/no/such/path" not in text and "nope" not in text
    assert re.search(r'tfic_gateway_request_duration_seconds_bucket\{le="0\.005",route="/invocations"\} \d', text)
    assert 'tfic_gateway_request_duration_seconds_count{route="/models/{name}/invocations"}' in text
    assert 'tfic_gateway_upstream_duration_seconds_count{code="NOT_FOUND",method="Classify"}' in text
    assert "tfic_gateway_requests_in_flight 1.0" in text  # the /metrics request itself


def test_openapi_document(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.0")
    invocations = document["paths"]["/invocations"]["post"]
    body = invocations["requestBody"]["content"]
    assert set(body) == {"application/x-image", "image/jpeg", "image/png"}
    assert all(v["schema"] == {"type": "string", "format": "binary"} for v in body.values())
    responses = invocations["responses"]
    assert {"200", "400", "404", "406", "413", "415", "429", "500", "503", "504"} <= set(responses)
    assert set(responses["200"]["content"]) == {"application/json", "application/jsonlines"}
    assert "Retry-After" in responses["429"]["headers"] and "Retry-After" in responses["503"]["headers"]
    for path in ("/v1/models/{name}:predict", "/v1/models/{name}/versions/{version}/metadata", "/metrics", "/ping"):
        assert path in document["paths"]


def test_draining_gateway_is_not_ready_but_still_serves(gateway: RunningGateway, images: dict[str, bytes]) -> None:
    with run_gateway(gateway.settings) as gw, gw.client() as client:
        assert client.get("/readyz").status_code == 200
        gw.server.gateway.draining = True
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "shutting down"
        assert client.post("/invocations", content=images["png"], headers=PNG).status_code == 200


class Arrivals:
    """Pure ASGI middleware setting an event when a request reaches the app (headers parsed)."""

    def __init__(self, app: ASGIApp, arrived: threading.Event) -> None:
        self.app = app
        self.arrived = arrived

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.arrived.set()
        await self.app(scope, receive, send)


def test_graceful_shutdown_finishes_in_flight_requests(gateway: RunningGateway, images: dict[str, bytes]) -> None:
    settings = replace(gateway.settings, shutdown_grace_seconds=30)
    arrived, shutting_down = threading.Event(), threading.Event()
    app = create_app(settings)
    app.add_middleware(Arrivals, arrived=arrived)
    image = images["png"]
    results: list[int] = []
    with run_gateway(settings, app) as gw, gw.client() as client:

        def body() -> Iterator[bytes]:
            yield image[:100]
            shutting_down.wait(30)  # the rest of the body arrives after SIGTERM
            yield image[100:]

        thread = threading.Thread(
            target=lambda: results.append(client.post("/invocations", content=body(), headers=PNG).status_code)
        )
        thread.start()
        assert arrived.wait(30)
        gw.server.handle_exit(15, None)  # SIGTERM, as uvicorn's signal handler calls it
        assert gw.server.gateway.draining
        shutting_down.set()
        thread.join(60)
    assert results == [200]


@pytest.mark.parametrize(
    "flag",
    ["--port", "--inference", "--default-model", "--max-body-bytes", "--auth-token", "--coalesce-max-images"],
)
def test_cli_help_lists_every_setting(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tfic_cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "gateway", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert flag in out
    assert "TFIC_GATEWAY_" + flag.lstrip("-").replace("-", "_").upper() in out
