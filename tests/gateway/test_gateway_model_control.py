"""The gateway's operator routes (``POST /models/{name}:unload`` and ``:load``, per version too) in front of a real
inference service of their own (the session's shared one must keep serving), behind both services' tokens; and
the fleet labels of that model seen through the gateway (the X-Tfic-Version-Label header)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.settings import GatewaySettings
from tests.gateway.servers import MODEL, SECOND_MODEL, RunningGateway, run_gateway, run_inference
from tests.gateway.test_errors import error_of
from tfic import version_labels

GATEWAY_TOKEN = "gw-token"
INFERENCE_TOKEN = "inference-token"
PNG = {"Content-Type": "image/png"}


@pytest.fixture(scope="module")
def controlled(model_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    base = tmp_path_factory.mktemp("control") / "models"
    shutil.copytree(model_base, base)
    # Fleet labels, canary share 0: default requests go to stable (1); the header or the path picks the canary.
    version_labels.write(base / MODEL, version_labels.VersionLabels({"stable": 1, "canary": 2}, 0.0))
    with run_inference(base, auth_token=INFERENCE_TOKEN) as inference:
        settings = GatewaySettings(
            inference=inference.target,
            default_model=MODEL,
            auth_token=GATEWAY_TOKEN,
            inference_auth_token=INFERENCE_TOKEN,
        )
        with run_gateway(settings) as gateway:
            yield gateway


@pytest.fixture
def client(controlled: RunningGateway) -> Iterator[httpx.Client]:
    with controlled.client(headers={"Authorization": f"Bearer {GATEWAY_TOKEN}"}) as c:
        yield c


def states(body: dict[str, object]) -> list[tuple[int, str, str]]:
    versions = body["versions"]
    assert isinstance(versions, list)
    return [(v["version"], v["state"], v.get("error", "")) for v in versions]


def test_unload_then_load_a_model(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post(f"/models/{SECOND_MODEL}:unload", json={"reason": "disk maintenance"})
    assert response.status_code == 200, response.text
    assert states(response.json()) == [(1, "END", "unloaded: disk maintenance")]
    body = error_of(
        client.post(f"/models/{SECOND_MODEL}/invocations", content=images["png"], headers=PNG),
        409,
        "FAILED_PRECONDITION",
    )
    assert body["message"] == f"model {SECOND_MODEL!r} is unloaded (disk maintenance); load it again to serve it"
    assert states(client.get(f"/models/{SECOND_MODEL}").json()) == [(1, "END", "unloaded: disk maintenance")]
    # The other model is untouched.
    assert client.post(f"/models/{MODEL}/invocations", content=images["png"], headers=PNG).status_code == 200

    response = client.post(f"/models/{SECOND_MODEL}:load")
    assert response.status_code == 200, response.text
    assert states(response.json()) == [(1, "AVAILABLE", "")]
    assert client.post(f"/models/{SECOND_MODEL}/invocations", content=images["png"], headers=PNG).status_code == 200


def test_unload_then_load_one_version(client: httpx.Client, images: dict[str, bytes]) -> None:
    response = client.post(f"/models/{MODEL}/versions/2:unload")
    assert response.status_code == 200, response.text
    assert states(response.json()) == [(1, "AVAILABLE", ""), (2, "END", "unloaded: by an operator")]
    error_of(
        client.post(f"/models/{MODEL}/versions/2/invocations", content=images["png"], headers=PNG),
        409,
        "FAILED_PRECONDITION",
    )
    answered = client.post("/invocations", content=images["png"], headers={**PNG, "Accept": "application/json"})
    assert answered.status_code == 200
    response = client.post(f"/models/{MODEL}/versions/2:load")
    assert states(response.json()) == [(1, "AVAILABLE", ""), (2, "AVAILABLE", "")]
    assert client.post(f"/models/{MODEL}/versions/2/invocations", content=images["png"], headers=PNG).status_code == 200


def test_control_errors(client: httpx.Client, controlled: RunningGateway) -> None:
    error_of(client.post("/models/nope:unload"), 404, "NOT_FOUND")
    error_of(client.post(f"/models/{MODEL}/versions/9:unload"), 404, "NOT_FOUND")
    error_of(client.post(f"/models/{MODEL}:unload", content=b"{not json"), 400, "INVALID_ARGUMENT")
    error_of(client.post(f"/models/{MODEL}:unload", json={"reason": 3}), 400, "INVALID_ARGUMENT")
    with controlled.client() as anonymous:
        error_of(anonymous.post(f"/models/{MODEL}:unload"), 401, "UNAUTHENTICATED")
        with_wrong = anonymous.post(f"/models/{MODEL}:load", headers={"Authorization": "Bearer wrong"})
        error_of(with_wrong, 401, "UNAUTHENTICATED")
    assert states(client.get(f"/models/{MODEL}").json()) == [(1, "AVAILABLE", ""), (2, "AVAILABLE", "")]


def test_control_routes_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/models/{name}:unload", "/models/{name}:load", "/models/{name}/versions/{version}:unload"):
        assert set(paths[path]["post"]["responses"]) >= {"200", "401", "404", "409"}
    assert "409" in paths["/models/{name}/invocations"]["post"]["responses"]


def test_version_label_header_and_path(client: httpx.Client, images: dict[str, bytes]) -> None:
    def version(path: str, **headers: str) -> str:
        response = client.post(path, content=images["png"], headers={**PNG, **headers})
        assert response.status_code == 200, response.text
        return response.headers["x-tfic-model-version"]

    assert version("/invocations") == "1"
    assert version(f"/models/{MODEL}/invocations") == "1"
    assert version("/invocations", **{"X-Tfic-Version-Label": "canary"}) == "2"
    assert version(f"/models/{MODEL}/invocations", **{"X-Tfic-Version-Label": "canary"}) == "2"
    assert version(f"/models/{MODEL}/labels/canary/invocations") == "2"
    # The path wins over the header.
    assert version(f"/models/{MODEL}/versions/1/invocations", **{"X-Tfic-Version-Label": "canary"}) == "1"
    response = client.post("/invocations", content=images["png"], headers={**PNG, "X-Tfic-Version-Label": "beta"})
    error_of(response, 404, "NOT_FOUND")
    labels = {v["version"]: v["version_labels"] for v in client.get(f"/models/{MODEL}").json()["versions"]}
    assert labels == {1: ["stable"], 2: ["canary"]}
